"""The closed loop: a Hugging Face model's attention computed by the accelerator.

:class:`AcceleratorHost` is a transformers attention function (the interface
``workloads/spatten/attention.py`` uses) whose decode calls run on a device
(:mod:`spatten.loop.device`: the golden model or the RTL). It is the host a real SpAtten
has, and makes the decisions of the PyTorch algorithm with the accelerator's answers:

- **Prefill** (a call of several query rows; the policies' ``prefill: dense``): the model
  gets dense float attention, as in the algorithm; the accelerator runs every prefill
  row of every head as an ATTEND with importance accumulation (token ``j`` of row ``r``
  at position ``p_r``: the ``p_r + 1`` tokens ``0..p_r``), so its token and head
  importance start from the prefill's attention mass, as the algorithm's do. Their
  outputs are not used. (``hardware/SPEC.md`` 5: there is no command that loads
  importance; running the rows is how it gets on chip.)
- **Decode** (one query row), layer by layer: the layer's candidate tokens are the
  previous layer's kept tokens (and the new ones); when the policy keeps ``k`` of more
  candidates, the host keeps the attention sinks and the recent window itself and asks
  TOPK_TOKENS for the rest (``k`` minus those) over the others; when it keeps fewer heads
  than survive, TOPK_HEADS. Those answers are the kept sets: the next layer's candidates
  and the next call's. Then one ATTEND per surviving query head over the kept list,
  ``valueTopK`` from the policy's value pruning, progressive quantization from its
  bits and threshold; the output is ``o / 2^16`` times the V scale, pruned heads give zero.
- K, Q and V are quantized per call as the algorithm does (:mod:`spatten.loop.kvcache`).

Per call, :class:`CallRecord` keeps what was decided (kept ids and heads per layer), the
DRAM bytes of every request and, on the RTL, the accelerator's cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from spatten.contract.commands import AttendResp, ClearCmd, ErrorResp, TopkHeadsCmd, TopkResp, TopkTokensCmd
from spatten.errors import InputError, SimulationError
from spatten.loop.kvcache import DeviceMemory, KVCache, QuantSpec
from spatten.loop.requests import attend_bytes, attend_requests, list_bytes, quantize_head

__all__ = ["AcceleratorHost", "CallRecord", "LayerDecision"]


@dataclass
class LayerDecision:
    """What one layer of one call kept and fetched."""

    kept: tuple[int, ...]
    heads: tuple[int, ...]
    topk_tokens: tuple[int, ...] | None = None  # the TOPK_TOKENS answer, when asked
    topk_heads: tuple[int, ...] | None = None
    value_count: int = 0
    requantized: int = 0  # requests whose pass 2 was final


@dataclass
class CallRecord:
    """One forward call (prefill or a decode step)."""

    call: int
    length: int
    query_len: int
    layers: list[LayerDecision] = field(default_factory=list)
    dram_bytes: int = 0
    cycles: int = 0
    requests: int = 0


class AcceleratorHost:
    """The attention of a model of ``geometry`` on ``device`` (see the module docstring)."""

    def __init__(self, policy, params, device_factory, geometry: dict, capacity: int) -> None:
        if policy.token_pruning.enabled and policy.token_pruning.importance != "cumulative":
            raise InputError(f"policy {policy.name}: token_pruning.importance "
                             f"{policy.token_pruning.importance!r} cannot run on the accelerator, whose "
                             "TOPK_TOKENS ranks the cumulative importance (use importance: cumulative)")
        if not geometry["causal"]:
            raise InputError("the accelerator engines run causal (decoder) models only")
        self.policy, self.params = policy, params
        self.n_layers, self.n_heads = int(geometry["n_layers"]), int(geometry["n_heads"])
        self.n_kv, self.d = int(geometry["n_kv_heads"]), int(geometry["head_dim"])
        problems = []
        if self.d > params.max_head_dim:
            problems.append(f"head dim {self.d} > maxHeadDim {params.max_head_dim}")
        if self.n_heads > params.max_heads:
            problems.append(f"{self.n_heads} heads > maxHeads {params.max_heads}")
        if problems:
            raise InputError(f"the model does not fit preset {params.preset}: {'; '.join(problems)}")
        self.capacity = min(capacity, params.max_tokens, 1 << 16)
        self.quant = QuantSpec.from_policy(policy)
        self.mem = DeviceMemory(params)
        self.device = device_factory(params, self.mem)
        self.kv = KVCache(self.mem, params, self.quant, self.n_layers, self.n_kv, self.d, self.capacity)
        self.accum = policy.token_pruning.enabled or policy.head_pruning.enabled
        self._tag = 0
        self.length = 0
        self.call = -1
        self.alive: list[np.ndarray] = []
        self.alive_heads: list[np.ndarray] = []
        self.records: list[CallRecord] = []

    # ---- device -------------------------------------------------------------------------
    def _tags(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            self._tag = (self._tag + 1) & 0xFFFF
            out.append(self._tag)
        return out

    def _run(self, cmds, want):
        """Execute ``cmds``; every response must be a ``want``."""
        answers = self.device.execute(cmds)
        for cmd, (resp, _) in zip(cmds, answers):
            if isinstance(resp, ErrorResp) or not isinstance(resp, want):
                raise SimulationError(f"the accelerator refused {type(cmd).__name__} (tag {cmd.tag}): "
                                      f"{'; '.join(cmd.problems(self.params)) or resp}")
        return answers

    def close(self) -> None:
        self.device.close()

    # ---- calls ----------------------------------------------------------------------------
    def _begin_call(self, total: int, tq: int) -> CallRecord:
        if total > self.capacity:
            raise InputError(f"{total} tokens exceed the capacity of preset {self.params.preset} "
                             f"({self.capacity} tokens: maxTokens {self.params.max_tokens})")
        if total == tq or total < self.length:  # a new sequence
            self.length = 0
            self.alive = [np.zeros(0, dtype=bool) for _ in range(self.n_layers)]
            self._run([ClearCmd(tag=self._tags(1)[0], tokens=True, heads=True)], object)
        new = total - self.length
        self.call += 1
        self.alive = [np.concatenate([a, np.ones(new, dtype=bool)]) for a in self.alive]
        self.alive_heads = [np.ones(self.n_heads, dtype=bool) for _ in range(self.n_layers)]
        self.length = total
        rec = CallRecord(self.call, total, tq)
        self.records.append(rec)
        return rec

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        layer: int = module._spatten_layer
        bsz, n_heads, tq, d = query.shape
        total = key.shape[2]
        if bsz != 1:
            raise ValueError(f"the accelerator host tracks one sequence: batch size must be 1, got {bsz}")
        if scaling is None:
            scaling = d ** -0.5
        if layer == 0:
            self._begin_call(total, tq)
        elif total != self.length:
            raise RuntimeError(f"layer {layer} sees {total} tokens but layer 0 saw {self.length}")
        rec = self.records[-1]
        dev_cycles = getattr(self.device, "cycles", 0)
        k = key[0].detach().float().numpy().astype(np.float64)
        v = value[0].detach().float().numpy().astype(np.float64)
        self.kv.update(layer, k, v)
        if tq > 1:
            out = self._prefill(layer, query, key, value, attention_mask, float(scaling), rec)
        else:
            out = self._decode(layer, query[0, :, 0].detach().float().numpy().astype(np.float64),
                               float(scaling), rec)
        rec.cycles += getattr(self.device, "cycles", 0) - dev_cycles
        return out.to(query.dtype).transpose(0, 1).unsqueeze(0), None

    # ---- prefill ----------------------------------------------------------------------------
    def _prefill(self, layer, query, key, value, attention_mask, scaling, rec: CallRecord) -> torch.Tensor:
        tq, total = query.shape[2], key.shape[2]
        groups = self.n_heads // self.n_kv
        q = query[0].float()
        kk = key[0].float().repeat_interleave(groups, dim=0)
        vv = value[0].float().repeat_interleave(groups, dim=0)
        s = torch.matmul(q, kk.transpose(-1, -2)) * scaling
        if attention_mask is not None:
            m = attention_mask[0]
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=torch.float32).masked_fill(~m, float("-inf"))
            s = s + m[..., -tq:, :total]
        else:
            pos_q = torch.arange(total - tq, total).unsqueeze(1)
            s = s.masked_fill(torch.arange(total).unsqueeze(0) > pos_q, float("-inf"))
        out = torch.matmul(torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0), vv)
        rec.layers.append(LayerDecision(tuple(range(total)), tuple(range(self.n_heads)), value_count=total))
        if self.accum:  # the prefill's attention mass, on chip
            qn = query[0].detach().float().numpy().astype(np.float64)
            cmds = []
            for r in range(tq):
                n = total - tq + r + 1
                for kvh in range(self.n_kv):
                    ps = self.kv.planes[(layer, kvh)]
                    heads = [quantize_head(h, qn[h, r], self.quant, ps.s_k, scaling)
                             for h in range(kvh * groups, (kvh + 1) * groups)]
                    cmds += attend_requests(self._tags(len(heads)), heads, ps, self.quant, n=n,
                                            tokens_base=self.kv.all_tokens_base, value_topk=n, accum=True)
            self._account(cmds, self._run(cmds, AttendResp), rec, rec.layers[-1])
        return out

    # ---- decode -----------------------------------------------------------------------------
    def _select_tokens(self, layer: int, total: int) -> tuple[np.ndarray, bool, list]:
        """(candidates, whether a TOPK_TOKENS decides, (rest ids, forced mask, k_rest))."""
        tp = self.policy.token_pruning
        if not tp.enabled:
            return np.ones(total, dtype=bool), False, []
        cand = self.alive[layer].copy()
        if layer > 0:
            cand &= self.alive[layer - 1]
        k = tp.keep_count(layer, self.n_layers, total)
        if int(cand.sum()) <= k:
            return cand, False, []
        forced = np.zeros(total, dtype=bool)
        forced[: tp.sink_tokens] = True
        if tp.recent_tokens:
            forced[max(0, total - tp.recent_tokens):] = True
        forced &= cand
        k_rest = k - int(forced.sum())
        if k_rest <= 0:  # the sinks and the window fill it: the lowest ids among them (as the algorithm)
            keep = np.zeros(total, dtype=bool)
            keep[np.flatnonzero(forced)[:k]] = True
            return keep, False, []
        return cand, True, [np.flatnonzero(cand & ~forced), forced, k_rest]

    def _decode(self, layer: int, q: np.ndarray, scaling: float, rec: CallRecord) -> torch.Tensor:
        total = self.length
        hp, vp = self.policy.head_pruning, self.policy.value_pruning
        kept, ask_tokens, tok_args = self._select_tokens(layer, total)
        cmds: list = []
        if ask_tokens:
            rest, forced, k_rest = tok_args
            base = self.kv.write_list(layer, rest)
            cmds.append(TopkTokensCmd(tag=self._tags(1)[0], n=len(rest), k=k_rest, tokens_base=base))
        heads = np.ones(self.n_heads, dtype=bool)
        if hp.enabled:
            heads = self.alive_heads[layer - 1].copy() if layer > 0 else heads
            kh = hp.keep_count(layer, self.n_layers, self.n_heads)
            if int(heads.sum()) > kh:
                cmds.append(TopkHeadsCmd(tag=self._tags(1)[0], n=self.n_heads, k=kh))
        dec = LayerDecision((), ())
        if cmds:
            answers = self._run(cmds, TopkResp)
            for cmd, (resp, _) in zip(cmds, answers):
                if isinstance(cmd, TopkTokensCmd):
                    dec.topk_tokens = resp.ids
                    kept = forced.copy()
                    kept[list(resp.ids)] = True
                    rec.dram_bytes += list_bytes(cmd.n, self.params)
                else:
                    dec.topk_heads = resp.ids
                    heads = np.zeros(self.n_heads, dtype=bool)
                    heads[list(resp.ids)] = True
            rec.requests += len(cmds)
        if self.policy.token_pruning.enabled:
            self.alive[layer] = kept
        self.alive_heads[layer] = heads
        ids = np.flatnonzero(kept)
        n = len(ids)
        n_values = vp.keep_count(n)
        dec.kept, dec.heads, dec.value_count = tuple(int(x) for x in ids), tuple(int(h) for h in np.flatnonzero(heads)), n_values
        rec.layers.append(dec)
        base = self.kv.write_list(layer, ids)
        groups = self.n_heads // self.n_kv
        cmds = []
        for kvh in range(self.n_kv):
            ps = self.kv.planes[(layer, kvh)]
            hq = [quantize_head(h, q[h], self.quant, ps.s_k, scaling)
                  for h in range(kvh * groups, (kvh + 1) * groups) if heads[h]]
            if hq:
                cmds += attend_requests(self._tags(len(hq)), hq, ps, self.quant, n=n, tokens_base=base,
                                        value_topk=n_values, accum=self.accum)
        answers = self._account(cmds, self._run(cmds, AttendResp), rec, dec)
        out = torch.zeros(self.n_heads, 1, self.d, dtype=torch.float64)
        for cmd, (resp, _) in zip(cmds, answers):
            s_v = self.kv.planes[(layer, cmd.head_id // groups)].s_v
            out[cmd.head_id, 0] = torch.tensor(resp.out, dtype=torch.float64) * (s_v / 65536.0)
        return out.float()

    def _account(self, cmds, answers, rec: CallRecord, dec: LayerDecision):
        for cmd, (resp, _) in zip(cmds, answers):
            rec.dram_bytes += sum(attend_bytes(cmd, resp, self.params).values())
            dec.requantized += int(resp.requantized)
        rec.requests += len(cmds)
        return answers
