"""From a workload CSV (and its tensors, when present) to what the accelerator runs.

A :class:`Program` is the command stream, the memory image it computes on, and the
expected response of every command, produced by the bit-exact golden model while the
program is built. Two modes:

- **functional** (an ``.npz`` of tensors beside the CSV, written by
  ``tools/gen_workload.py --tensors``): real queries, keys and values of the model,
  quantized per the row's bit widths (``spatten.contract.quant``), the kept tokens the PyTorch
  algorithm chose, and the requantization threshold of the row; the accelerator decides
  requantization and local value pruning itself, and its outputs are compared with the
  golden model (bit for bit) and with the PyTorch float output of the row.
- **synthetic** (a CSV alone, e.g. the original SpAtten workloads): seeded random
  Gaussian queries/keys/values at realistic logit spread; the row's fetch counts, bit
  widths and requantization are honoured: ``key_fetch_num`` keys are fetched,
  ``value_fetch_num`` values are selected (``valueTopK``; a row with a ``value_threshold``
  column selects by that threshold instead, the accelerator's threshold mode), and a row with
  ``if_requant=True`` is made to requantize (its threshold is set above any probability),
  one with ``False`` is not (requantization disabled).

Cascade token pruning: a row with ``if_topk`` is followed by a TOPK_TOKENS command with
``k = topk`` over the current kept list. In synthetic mode the kept ids it returns become
the next rows' token list (the golden model computes them while building, and the run
checks the accelerator returned the same ids); when a row asks for a different number of
keys than the current list holds (new decode steps add tokens, the original files
sometimes differ by a few), the list is trimmed to its ``key_fetch_num`` lowest positions
or extended with the most recent tokens not in it. In functional mode the kept list of
each row comes from the tensors.

The dense baseline of a workload (:func:`dense_rows`) fetches every token of the
sentence at 16 bits, no requantization, no value pruning, no cascade pruning.

Grouped requests: consecutive rows of one (step, layer, K/V head) -- the ``kv_head_id``
column; a file without it, or a multi-head model, makes groups of one -- that share the
token list, the planes and the bit widths become one ATTEND_GROUP
(:mod:`spatten.contract.grouped`) of up to ``maxGroupHeads`` heads; a group of one is a
plain ATTEND (an ATTEND_GROUP of one when the row has a ``value_threshold``). A row followed by a TOPK_TOKENS ends its group (the TOPK sees the
importance of the heads before it). The dense baseline is grouped the same way.

Prefill and encoders (:func:`execution_order`): a run of consecutive rows of one layer that
spans several ``iteration_id`` values (an encoder layer: every query position of the layer,
then the next layer) is sent head by head, query row after query row, so that up to
``maxGroupHeads`` query rows of one head over the same kept K/V become one ATTEND_GROUP
(its "heads" are query rows; each has its own query, softmax, output and value selection,
and adds its own ``p_j`` to token importance). The layer's rows all finish before the
TOPK_TOKENS that ends it, so the reordering changes no importance the TOPK sees (token
importance is a sum, saturating only at 2^32 - 1, and the golden model follows the same
command order).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from spatten.contract import quant
from spatten.contract.commands import (AttendCmd, ClearCmd, TopkHeadsCmd, TopkResp, TopkTokensCmd, Word,
                                      decode_response)
from spatten.contract.golden import GoldenAccelerator
from spatten.contract.grouped import SHARED_FIELDS, group_commands
from spatten.contract.memimage import stride
from spatten.contract.memimage import MemoryImage
from spatten.contract.params import HwParams
from workloads.csvschema import VALUE_THRESHOLD, WorkloadRow, value_threshold

LOGIT_STD = 3.0
"""Synthetic mode: standard deviation of the attention logits (natural-log units)."""

ALWAYS_REQUANT_Q16 = (1 << 17) - 1
"""A threshold above every probability (p <= 2^16): requantization always taken."""


@dataclass
class CommandInfo:
    """What one command of the program is, for the report."""

    kind: str  # "attend", "topk", "clear"
    row: int | None  # index into the rows, for ATTEND and the TOPK after a row
    iteration: int
    layer: int
    head: int
    n: int = 0
    d: int = 0
    k_msb_bits: int = 0
    k_lsb_bits: int = 0
    v_bits: int = 0
    m: int = 0  # values selected (golden; summed over a group's heads)
    requantized: bool = False  # pass 2 was final (golden; for a group: in any head)
    bursts: dict[str, int] = field(default_factory=dict)  # expected DRAM bursts by kind
    heads: int = 1  # query heads of the request (ATTEND_GROUP: more than one)
    head_ids: tuple[int, ...] = ()  # ATTEND_GROUP: the query heads, in packet order
    requant_heads: int = 0  # heads whose pass 2 was final
    dense_kv_bytes: int = 0  # K and V of the request's whole sentence at 16 bits, each row once
    # The accuracy table's count (tools/eval_accuracy.py, kvattention.count_bits): K/V bits of
    # every query head as if it read its own rows (MSBs of the listed keys, LSBs when that
    # head's pass 2 was final, its selected V rows, 16 bits a channel for host-folded
    # per-channel K and V scales), and dense: every token's K and V at 16 bits, every head.
    head_kv_bits: int = 0
    head_dense_kv_bits: int = 0


@dataclass(frozen=True)
class FloatCheck:
    """One ATTEND against the PyTorch float reference (``spatten.contract.reference``).

    ``err`` is ``max_i |o_i / 2^16 - o_float_i|`` in integer V units, where ``o_float`` is
    float attention on the same integers, keys of the final pass and selected positions;
    ``tol`` the bound of :func:`spatten.contract.reference.fixed_point_tolerance`. ``err_model``
    is the distance from the model's own float output (``out_ref``), quantization
    included, in the model's units; ``scale`` the largest |out_ref| of the row.

    Local value pruning: the model ranks float probabilities, the hardware its fixed-point
    ``p_j`` (each within :func:`spatten.contract.reference.probability_tolerance` of the float
    one). Where the float probabilities at the edge of the top-``M`` are closer than those
    bounds, the two may select different, equally valid sets (``tie``); ``err_model`` then
    compares the hardware's output with the swapped rows' float contributions exchanged
    for the model's choice (``o_hw + sum_{model} pi_j v_j - sum_{hw} pi_j v_j``), so that it
    still measures the replay (quantization, folds, kept lists) and not the tie. A
    selection that no such bound explains is a ``tie_violation``."""

    err: float
    tol: float
    err_model: float | None
    scale: float
    tie: bool = False
    tie_violation: bool = False


@dataclass
class Program:
    """A command stream with its memory image and expected responses."""

    params: HwParams
    mode: str  # "functional" or "synthetic"
    dense: bool
    commands: list[list[Word]] = field(default_factory=list)
    expected: list[list[Word]] = field(default_factory=list)
    info: list[CommandInfo] = field(default_factory=list)
    image: MemoryImage | None = None
    value_scale: dict[int, float] = field(default_factory=dict)  # command index -> s_v
    kept_checks: list[dict] = field(default_factory=list)
    """Functional mode: each TOPK's answer (the accelerator's own kept set, as the golden
    model computes it and the run checks) beside the set the PyTorch run kept there:
    ``{"iteration", "layer", "kind": "tokens"|"heads", "own", "recorded"}``."""
    # functional mode only: command index (ATTEND) or (command index, head) (ATTEND_GROUP)
    float_checks: dict = field(default_factory=dict)

    @property
    def words(self) -> list[Word]:
        return [w for c in self.commands for w in c]


def synthetic_kv_head(r: WorkloadRow) -> int:
    """Synthetic mode: the K/V head whose planes a row reads (its ``kv_head_id`` column when
    the CSV has one, else its own head)."""
    return int(r.extra.get("kv_head_id", r.head_id)) if getattr(r, "extra", None) else r.head_id


def dense_rows(rows: Sequence[WorkloadRow]) -> list[WorkloadRow]:
    """The same requests with nothing pruned or quantized: every token, 16-bit K and V."""
    return [replace(r, key_fetch_num=r.sentence_length_L, quant_key_bit=-1, quant_query_bit=-1,
                    auto_requant_thres=-1.0, if_requant=False, auto_requant_incre=-1,
                    value_fetch_num=r.sentence_length_L, quant_value_bit=-1,
                    if_accumulate_importance=False, if_rescale_previous_importance=False, if_topk=False,
                    topk=-1, extra={k: v for k, v in r.extra.items() if k != VALUE_THRESHOLD})
            for r in rows]


def _key_bits(r: WorkloadRow, functional: bool) -> tuple[int, int, bool]:
    """(kMsbBits, kLsbBits, requant) of a row."""
    if r.quant_key_bit == -1:
        return 16, 0, False
    lsb = r.auto_requant_incre if r.auto_requant_incre > 0 else 0
    if functional:
        # The row's threshold decides; LSBs exist whenever the policy has them.
        return r.quant_key_bit, lsb, lsb > 0 and r.auto_requant_thres > 0
    # Synthetic: honour the recorded decision. Without requantization the LSB plane is
    # never read, so the key is just its MSBs.
    return (r.quant_key_bit, lsb, True) if (r.if_requant and lsb > 0) else (r.quant_key_bit, 0, False)


class _Planes:
    """K/V planes in the image, made on first use, one set per (layer, kv-head, widths,
    scales).

    ``length`` (functional mode): the row's sentence length. The model quantized K and V
    with one scale per (layer, kv-head) over the cache *of that decode step* (its first
    ``length`` tokens, a prefix of the final cache), so the scales are taken over that
    prefix; steps whose scales agree share their planes (rows beyond a step's length,
    clipped at its scale, are never read by its requests)."""

    def __init__(self, image: MemoryImage, source: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
                 key_channel: bool = False, value_channel: bool = False) -> None:
        self.image = image
        self.source = source
        self.key_channel = key_channel  # per-channel K scales, folded into the query
        self.value_channel = value_channel  # per-channel V scales, folded into the output
        self.folds: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # memo -> (K, V channel scales)
        self.cache: dict[tuple, tuple[int, int, int, float, float]] = {}
        # the keys as pass 1 and pass 2 see them, and the values, as float64 (exact)
        self.arrays: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.keys: dict[tuple, tuple] = {}

    def get(self, layer: int, kvh: int, msb: int, lsb: int, vbits: int,
            length: int | None = None) -> tuple[int, int, int, float, float]:
        """(k_msb_base, k_lsb_base, v_base, s_k, s_v)."""
        key = self.key(layer, kvh, msb, lsb, vbits, length)
        if key not in self.cache:
            k, v = self.source(layer, kvh)
            if self.key_channel or self.value_channel:
                ck, cv = self.channel_scales(layer, kvh, msb, lsb, vbits, length)
                k, v = k / ck, v / cv  # codes round(k_c / s_c) at plane scale 1
            s_k = quant.symmetric_scale(k[:length], msb + lsb) if length is not None else None
            s_v = quant.symmetric_scale(v[:length], vbits) if length is not None else None
            if self.key_channel:
                s_k = 1.0
            if self.value_channel:
                s_v = 1.0
            qk = quant.quantize_key(k, msb, lsb, s_k)
            qv = quant.quantize_value(v, vbits, s_v)
            k_msb_base = self.image.add_plane(qk.msb, msb, True)
            k_lsb_base = self.image.add_plane(qk.lsb, lsb, False) if lsb > 0 else 0
            v_base = self.image.add_plane(qv.values, vbits, True)
            self.cache[key] = (k_msb_base, k_lsb_base, v_base, qk.scale, qv.scale)
            self.arrays[key] = (qk.msb_only.astype(np.float64), qk.full.astype(np.float64),
                                np.asarray(qv.values, dtype=np.float64))
        return self.cache[key]

    def key(self, layer: int, kvh: int, msb: int, lsb: int, vbits: int, length: int | None = None) -> tuple:
        """The cache key of a plane set: widths, and the scales of the step's prefix."""
        memo = (layer, kvh, msb, lsb, vbits, length)
        if memo not in self.keys:
            if length is None:
                self.keys[memo] = memo
            else:
                k, v = self.source(layer, kvh)
                ck, cv = self.channel_scales(layer, kvh, msb, lsb, vbits, length)
                self.keys[memo] = (layer, kvh, msb, lsb, vbits, quant.symmetric_scale(k[:length], msb + lsb),
                                   quant.symmetric_scale(v[:length], vbits), ck.tobytes(), cv.tobytes())
        return self.keys[memo]

    def channel_scales(self, layer: int, kvh: int, msb: int, lsb: int, vbits: int,
                       length: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The host-folded per-channel scales ``max_t |x[t, c]| / (2^(b-1) - 1)`` over the step's
        prefix (K at ``msb + lsb`` bits, V at ``vbits``; an all-zero channel: 1), or ones where
        the scales are per tensor. The planes then hold ``round(x[t, c] / s_c)`` at scale 1;
        the host multiplies the query by the K scales and the output by the V scales."""
        memo = (layer, kvh, msb, lsb, vbits, length)
        if memo not in self.folds:
            k, v = self.source(layer, kvh)

            def per_channel(x: np.ndarray, bits: int, on: bool) -> np.ndarray:
                if not on:
                    return np.ones(x.shape[1])
                amax = np.abs(x[:length]).max(axis=0) if len(x[:length]) else np.zeros(x.shape[1])
                if not np.all(np.isfinite(amax)):
                    raise ValueError(f"layer {layer} K/V head {kvh}: cannot quantize a tensor holding inf or nan")
                return np.where(amax > 0, amax / (2 ** (bits - 1) - 1), 1.0)

            self.folds[memo] = (per_channel(k, msb + lsb, self.key_channel),
                                per_channel(v, vbits, self.value_channel))
        return self.folds[memo]


def build(rows: Sequence[WorkloadRow], params: HwParams, *, tensors: dict | None = None, seed: int = 1,
          dense: bool = False, progress: Callable[[int, int], None] | None = None) -> Program:
    """Build the program of ``rows`` (already validated against ``params``).

    ``tensors`` is the loaded ``.npz`` (functional mode) or ``None`` (synthetic mode).
    ``dense`` marks a dense-baseline program (rows from :func:`dense_rows`).
    """
    functional = tensors is not None
    prog = Program(params=params, mode="functional" if functional else "synthetic", dense=dense)
    image = MemoryImage.for_params(params, start=params.burst_bytes * 16)
    prog.image = image
    golden = GoldenAccelerator(params, image)

    if functional:
        k_all = tensors["k"]
        v_all = tensors["v"]
        meta = json.loads(str(tensors["meta"]))
        default_scale = float(meta.get("softmax_scale", 0.0)) or 1.0 / math.sqrt(int(meta["head_dim"]))
        per_layer = meta.get("softmax_scale_per_layer")
        per_layer = json.loads(per_layer) if isinstance(per_layer, str) else per_layer
        row_kv_head = tensors["row_kv_head"]
        kept_offsets = tensors["kept_offsets"]
        kept_ids = tensors["kept_ids"]

        def source(layer: int, kvh: int) -> tuple[np.ndarray, np.ndarray]:
            return (np.asarray(k_all[layer, kvh], dtype=np.float64),
                    np.asarray(v_all[layer, kvh], dtype=np.float64))

        scales = meta.get("scales", {})
        for part, axis in scales.items():
            if part not in ("key", "value") or axis not in ("tensor", "channel"):
                raise ValueError(f"meta.scales: expected key/value: tensor|channel, got {part!r}: {axis!r}")
        planes = _Planes(image, source, key_channel=scales.get("key") == "channel",
                         value_channel=scales.get("value") == "channel")
    else:
        max_len = max(r.sentence_length_L for r in rows)
        d_of: dict[tuple[int, int], int] = {}
        for r in rows:  # the planes of a (layer, K/V head): as wide as its widest row
            kv = (r.layer_id, synthetic_kv_head(r))
            d_of[kv] = max(d_of.get(kv, 0), r.embedding_length_D)
        # Each (layer, K/V head) gets its own keys and values. Queries are N(0, 1) and keys
        # N(0, LOGIT_STD^2), so the logits q.k / sqrt(D) are N(0, LOGIT_STD^2).

        def source(layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
            d = d_of[(layer, head)]
            g = np.random.default_rng([seed, layer, head])
            k = g.standard_normal((max_len, d)) * LOGIT_STD
            v = g.standard_normal((max_len, d))
            return k, v

        planes = _Planes(image, source)

    def emit(cmd, info: CommandInfo, expected: list[Word]) -> None:
        prog.commands.append(cmd.encode())
        prog.expected.append(expected)
        prog.info.append(info)

    tag = 0

    def next_tag() -> int:
        nonlocal tag
        tag = (tag + 1) & 0xFFFF
        return tag

    clear = ClearCmd(tag=next_tag(), tokens=True, heads=True)
    emit(clear, CommandInfo("clear", None, rows[0].iteration_id if rows else 0, -1, -1),
         golden.execute_packet(clear.encode()))

    current: list[int] | None = None  # synthetic mode: the cascade's kept token list
    current_iter = None
    list_cache: dict[tuple[int, ...], int] = {}

    def token_list(ids: Sequence[int]) -> int:
        key = tuple(int(x) for x in ids)
        if key not in list_cache:
            list_cache[key] = image.add_tokens(np.asarray(key, dtype=np.int64))
        return list_cache[key]

    # Cascade head pruning: a layer whose rows have fewer heads than the layer before (all
    # heads before the first) starts with a TOPK_HEADS keeping that many.
    group_heads: dict[tuple[int, int], list[int]] = {}
    for r in rows:
        group_heads.setdefault((r.iteration_id, r.layer_id), []).append(r.head_id)
    n_heads = max(r.head_id for r in rows) + 1 if rows else 0
    if functional and "n_heads" in meta:
        n_heads = int(meta["n_heads"])
    prev_heads: dict[int, int] = {}
    pending: list[tuple] = []  # the group being formed: (cmd, row index, row, planes key, ids, q, scale, shift, s_v)
    pending_key = None

    def flush() -> None:
        """Emit the pending group: a plain ATTEND for one head, else an ATTEND_GROUP."""
        if not pending:
            return
        cmds = [replace(x[0], tag=0) for x in pending]
        t0 = next_tag()
        # a threshold head needs the ATTEND_GROUP head word (an ATTEND has no valueThresh bit)
        one = len(cmds) == 1 and not cmds[0].value_thresh
        cmd = replace(cmds[0], tag=t0) if one else group_commands(cmds, tag=t0)
        expected = golden.execute_packet(cmd.encode())
        t = golden.last_traffic
        results = golden.last_group
        c0, i0, r0 = pending[0][0], pending[0][1], pending[0][2]
        kv_row = stride(c0.d, 16, params.burst_bytes)
        info = CommandInfo("attend", i0, r0.iteration_id, r0.layer_id, r0.head_id, n=c0.n, d=c0.d,
                           k_msb_bits=c0.k_msb_bits, k_lsb_bits=c0.k_lsb_bits, v_bits=c0.v_bits,
                           m=sum(len(x.selected) for x in results),
                           requantized=any(bool(x.probs.requantized) for x in results),
                           bursts={"token_list": t.token_list, "k_msb": t.k_msb, "k_lsb": t.k_lsb,
                                   "v": t.v} if t else {},
                           heads=len(cmds), head_ids=tuple(x[2].head_id for x in pending),
                           requant_heads=sum(bool(x.probs.requantized) for x in results),
                           dense_kv_bytes=2 * r0.sentence_length_L * kv_row,
                           head_kv_bits=sum(c0.n * c0.d * (c0.k_msb_bits + (c0.k_lsb_bits if x.probs.requantized else 0))
                                            + len(x.selected) * c0.d * c0.v_bits
                                            + 16 * c0.d * ((planes.key_channel and c0.n > 0)
                                                           + (planes.value_channel and len(x.selected) > 0))
                                            for x in results),
                           head_dense_kv_bits=len(cmds) * 2 * r0.sentence_length_L * c0.d * 16)
        idx = len(prog.commands)
        emit(cmd, info, expected)
        prog.value_scale[idx] = pending[0][8]
        if functional and len(results) == len(pending):
            for h, ((c, _, r, pkey, ids, qv, sc, sh, s_v), res) in enumerate(zip(pending, results)):
                prog.float_checks[idx if len(pending) == 1 else (idx, h)] = _float_check(
                    planes.arrays[pkey], ids, qv, res, c.k_lsb_bits, sc, sh, s_v,
                    tensors["out_ref"][r.index] if "out_ref" in tensors else None, value_threshold(r))
        pending.clear()

    if functional:
        def kv_of(k: int) -> int:
            return int(row_kv_head[rows[k].index])
    else:
        def kv_of(k: int) -> int:
            return synthetic_kv_head(rows[k])
    order, runs = execution_order(rows, kv_of)
    for pos, i in enumerate(order):
        r = rows[i]
        prev = rows[order[pos - 1]] if pos else None
        nxt = rows[order[pos + 1]] if pos + 1 < len(order) else None
        if progress:
            progress(pos, len(rows))
        if runs[i] is not None and prev is not None and runs[order[pos - 1]] == runs[i]:
            pass  # inside a prefill run: one layer, every head present (no head pruning)
        elif prev is None or (prev.iteration_id, prev.layer_id) != (r.iteration_id, r.layer_id):
            heads_here = sorted(set(group_heads[(r.iteration_id, r.layer_id)]))
            before = prev_heads.get(r.iteration_id, n_heads)
            if len(heads_here) < before:
                flush()  # the heads before it answer first
                th = TopkHeadsCmd(tag=next_tag(), n=n_heads, k=len(heads_here))
                exp = golden.execute_packet(th.encode())
                emit(th, CommandInfo("topk_heads", i, r.iteration_id, r.layer_id, -1, n=n_heads), exp)
                if functional:
                    resp = decode_response(exp)
                    prog.kept_checks.append({"iteration": r.iteration_id, "layer": r.layer_id, "kind": "heads",
                                             "own": list(getattr(resp, "ids", ())), "recorded": heads_here})
            prev_heads[r.iteration_id] = len(heads_here)
        msb, lsb, requant = _key_bits(r, functional)
        vbits = quant.bits_or_16(r.quant_value_bit)
        qbits = quant.bits_or_16(r.quant_query_bit)
        if functional:
            t = r.index
            kvh = int(row_kv_head[t])
            ids = [int(x) for x in kept_ids[kept_offsets[t]:kept_offsets[t + 1]]]
            q_float = np.asarray(tensors["q"][t], dtype=np.float64)
        else:
            kvh = synthetic_kv_head(r)
            if current is None or r.iteration_id != current_iter:
                if current is None:
                    current = list(range(r.key_fetch_num))
                current_iter = r.iteration_id
            current = _fit_list(current, r.key_fetch_num, r.sentence_length_L)
            ids = current
            g = np.random.default_rng([seed, 1_000_003, i])
            q_float = g.standard_normal(r.embedding_length_D)
        length = r.sentence_length_L if functional else None
        k_msb_base, k_lsb_base, v_base, s_k, s_v = planes.get(r.layer_id, kvh, msb, lsb, vbits, length)
        if functional and (planes.key_channel or planes.value_channel):
            ck, cv = planes.channel_scales(r.layer_id, kvh, msb, lsb, vbits, length)
            q_float = q_float * ck  # the host folds the K scales into the query ...
            s_v = s_v * cv  # ... and multiplies the output by the V scales
        qq = quant.quantize_query(q_float, qbits)
        if functional:
            c = quant.score_unit(qq.scale, s_k, float(per_layer[r.layer_id]) if per_layer else default_scale)
        else:
            # The synthetic keys already carry the logit spread: q.k / sqrt(D) ~ N(0, 3^2).
            c = quant.score_unit(qq.scale, s_k, 1.0 / math.sqrt(r.embedding_length_D))
        score_scale, score_shift = quant.choose_score_scale(c)
        if functional:
            thr = quant.threshold_q16(r.auto_requant_thres) if requant else 0
        else:
            thr = ALWAYS_REQUANT_Q16 if requant else 0
        m = r.value_fetch_num
        vthr = value_threshold(r)
        cmd = AttendCmd(
            tag=0, n=len(ids), query=tuple(int(x) for x in qq.values),
            k_msb_base=k_msb_base, k_lsb_base=k_lsb_base, v_base=v_base,
            tokens_base=token_list(ids), k_msb_bits=msb, k_lsb_bits=lsb, v_bits=vbits,
            score_scale=score_scale, score_shift=score_shift,
            value_topk=(min(quant.threshold_q16(vthr), 0xFFFF) if vthr is not None
                        else 0 if m >= len(ids) else m), value_thresh=vthr is not None,
            head_id=r.head_id, requant=requant,
            requant_threshold=thr, accum_importance=r.if_accumulate_importance, d=r.embedding_length_D)
        # a prefill run groups query rows of one head (the same kept list and planes)
        key = ("run", runs[i], kvh) if runs[i] is not None else (r.iteration_id, r.layer_id, kvh)
        if pending and (pending_key != key or len(pending) >= params.max_group_heads
                        or any(getattr(cmd, k) != getattr(pending[0][0], k) for k in SHARED_FIELDS)):
            flush()
        pending.append((cmd, i, r, planes.key(r.layer_id, kvh, msb, lsb, vbits, length), ids, qq.values, score_scale, score_shift, s_v))
        pending_key = key
        if r.if_topk and r.topk >= 0:
            flush()  # the TOPK follows the heads before it
            tk = TopkTokensCmd(tag=next_tag(), n=len(ids), k=min(r.topk, len(ids)),
                               tokens_base=token_list(ids))
            exp = golden.execute_packet(tk.encode())
            emit(tk, CommandInfo("topk", i, r.iteration_id, r.layer_id, r.head_id, n=len(ids),
                                 bursts={"token_list": (2 * len(ids) + params.burst_bytes - 1)
                                         // params.burst_bytes}), exp)
            resp = decode_response(exp)
            if not functional:
                assert isinstance(resp, TopkResp)
                current = list(resp.ids)
            elif nxt is not None and nxt.iteration_id == r.iteration_id:
                t1 = nxt.index
                prog.kept_checks.append({"iteration": r.iteration_id, "layer": nxt.layer_id, "kind": "tokens",
                                         "own": list(getattr(resp, "ids", ())),
                                         "recorded": [int(x) for x in kept_ids[kept_offsets[t1]:kept_offsets[t1 + 1]]]})
    flush()
    if progress:
        progress(len(rows), len(rows))
    return prog


def execution_order(rows: Sequence[WorkloadRow], kv_head: Callable[[int], int]) -> tuple[list[int], list[int | None]]:
    """The order the host sends ``rows`` in, and for each row the prefill run it is in.

    Decoder rows (one ``iteration_id`` a layer run) keep the file's order (run ``None``).
    A maximal run of consecutive rows of one layer that spans more than one
    ``iteration_id`` (encoders: "layer, then query, then head"; a prefill recorded row by
    row) is a prefill run: its rows go in the order (K/V head, head, position in the file),
    so consecutive rows share a K/V head and can form one grouped request. A row with
    ``if_topk`` in such a run must be its last (the TOPK ends the layer); it stays last.
    ``kv_head(i)`` is the K/V head of row ``i``."""
    order: list[int] = []
    runs: list[int | None] = [None] * len(rows)
    i = 0
    n_runs = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1].layer_id == rows[i].layer_id:
            j += 1
        block = list(range(i, j + 1))
        prefill = len({rows[k].iteration_id for k in block}) > 1
        topk_inside = [k for k in block[:-1] if rows[k].if_topk and rows[k].topk >= 0]
        if prefill and not topk_inside:
            for k in block:
                runs[k] = n_runs
            n_runs += 1
            block.sort(key=lambda k: (kv_head(k), rows[k].head_id, k))
            last = block[-1]
            if rows[j].if_topk and rows[j].topk >= 0 and last != j:
                block.remove(j)
                block.append(j)
        order.extend(block)
        i = j + 1
    return order, runs


def _float_check(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], ids: Sequence[int], q_int: np.ndarray, res,
                 lsb_bits: int, score_scale: int, score_shift: int, s_v: float,
                 out_ref: np.ndarray | None, value_thr: float | None = None) -> FloatCheck:
    """Compare one golden ATTEND (bit-exact with the RTL) with the float reference
    (``value_thr``: the row's value threshold, for the threshold mode)."""
    from spatten.contract import reference

    k_pass1, k_full, v_all = arrays
    toks = np.asarray(ids, dtype=np.int64)
    k = (k_full if res.probs.requantized else k_pass1)[toks]
    v = v_all[toks]
    pi, o_ref = reference.attend_dequantized(np.asarray(q_int, dtype=np.float64), k, v, res.selected,
                                             score_scale, score_shift)
    pi = pi.numpy()
    o_hw = np.asarray(res.out, dtype=np.float64) / 65536.0
    err = float(np.max(np.abs(o_hw - o_ref.numpy()))) if o_hw.size else 0.0
    vmax = float(np.abs(v[res.selected]).max()) if len(res.selected) else 0.0
    tol = reference.fixed_point_tolerance(len(ids), len(res.selected), vmax)
    hw_sel = np.asarray(res.selected, dtype=np.int64)
    if value_thr is None:
        # the model's value selection: the float top-M (ties to the lower position), as workloads.spatten.selection
        model_sel = np.sort(np.argsort(-pi, kind="stable")[: len(hw_sel)])
    else:
        # the model's rule (workloads.spatten.selection): p_j >= min(T, max p)
        import torch  # noqa: PLC0415  (reference already needs it)

        from workloads.spatten.selection import value_threshold_mask  # noqa: PLC0415

        t_eff = min(value_thr, float(pi.max()))
        model_sel = np.flatnonzero(value_threshold_mask(torch.as_tensor(pi), value_thr).numpy())
    tie = tie_violation = False
    o_cmp = o_hw
    if not np.array_equal(model_sel, hw_sel):
        only_model = np.setdiff1d(model_sel, hw_sel)
        only_hw = np.setdiff1d(hw_sel, model_sel)
        bound = reference.probability_tolerance(pi, len(ids)).numpy()
        if value_thr is None:
            # the hardware may rank j above i when pi_i - pi_j <= bound_i + bound_j, for every swapped pair
            tie = bool(np.max(pi[only_model] - bound[only_model]) <= np.min(pi[only_hw] + bound[only_hw]))
        else:
            # each position on the other side of the threshold within its bound (plus the
            # threshold's Q.16 rounding, 2^-17)
            slack = 2.0 ** -17
            tie = bool(np.all(pi[only_model] - bound[only_model] <= t_eff + slack)
                       and np.all(pi[only_hw] + bound[only_hw] >= t_eff - slack))
        tie_violation = not tie
        o_cmp = o_hw + pi[only_model] @ v[only_model] - pi[only_hw] @ v[only_hw]
    err_model, scale = None, 0.0  # None: no out_ref to compare with
    if out_ref is not None:
        ref = np.asarray(out_ref, dtype=np.float64)
        err_model = float(np.max(np.abs(o_cmp * s_v - ref)))
        scale = float(np.max(np.abs(ref)))
    return FloatCheck(err, tol, err_model, scale, tie, tie_violation)


def _fit_list(ids: list[int], n: int, sentence_len: int) -> list[int]:
    """Synthetic mode: make the kept list exactly ``n`` long (see the module docstring)."""
    if len(ids) == n:
        return ids
    if len(ids) > n:
        return ids[:n]
    present = set(ids)
    extra = [t for t in range(sentence_len - 1, -1, -1) if t not in present][: n - len(ids)]
    return sorted(ids + extra)


def bytes_by_kind(prog: Program) -> dict[str, int]:
    """DRAM bytes the program reads, by kind (token lists, K MSB, K LSB, V), as the golden
    model decided them (requantization, value selection): the run checks that the
    accelerator decided the same, response by response."""
    b = prog.params.burst_bytes
    total = {"token_list": 0, "k_msb": 0, "k_lsb": 0, "v": 0}
    for info in prog.info:
        for kind, n in info.bursts.items():
            total[kind] += n * b
    return total
