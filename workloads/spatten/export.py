"""Running a model under a policy and turning the records into workload rows and tensors.

``run_sequence`` drives one sequence: causal models prefill ``context`` tokens and then
decode ``steps`` tokens one at a time (teacher-forced from the text, so a workload is
reproducible); encoders run one forward pass over ``context`` tokens. ``build_workload``
maps the recorded (call, layer) decisions to CSV rows (``workloads.csvschema``) and, on
request, to the tensors of the ``.npz`` contract documented there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from workloads.csvschema import WorkloadRow
from workloads.spatten.hooks import spatten_context
from workloads.spatten.policy import Policy
from workloads.spatten.state import LayerRecord, SpAttenState


@dataclass
class SequenceRun:
    """The outcome of ``run_sequence``."""

    state: SpAttenState
    nll: list[float] = field(default_factory=list)  # per decoded token (causal models)
    hidden: torch.Tensor | None = None  # final hidden states (encoders)


def run_sequence(
    model: torch.nn.Module,
    ids: torch.Tensor,
    policy: Policy,
    context: int,
    steps: int,
    causal: bool,
    record: bool = True,
    record_tensors: bool = False,
    on_step: Callable[[int], None] | None = None,
    parallel: bool = False,
) -> SequenceRun:
    """Prefill ``context`` tokens of ``ids`` then decode ``steps`` (causal), or encode ``context``.

    For causal models ``ids`` must hold ``context + steps + 1`` tokens when ``nll`` is
    wanted for every step (the last token is only a target), else ``context + steps``.
    ``on_step(i)`` is called after the prefill (i = 0) and after each decode step.
    ``parallel`` runs the whole text in one pass instead (``parallel.py``; no records): the
    logic of decoding step by step for the policies ``stateful_reason`` accepts, the same
    numbers up to float rounding for those ``parallel_reason`` accepts (with quantization or
    value top-k, rounding flips codes and decisions).
    """
    with torch.no_grad(), spatten_context(model, policy, record=record, record_tensors=record_tensors) as state:
        if not causal:
            out = model(input_ids=ids[:, :context])
            if on_step:
                on_step(0)
            return SequenceRun(state=state, hidden=out.last_hidden_state)
        run = SequenceRun(state=state)
        if parallel:  # one teacher-forced pass (parallel.py)
            state.parallel_from = context
            n = min(ids.shape[1] - 1, context + steps)
            logits = model(input_ids=ids[:, :n]).logits[0, context - 1 :].float()
            nll = torch.nn.functional.cross_entropy(logits, ids[0, context : n + 1], reduction="none")
            run.nll = [float(x) for x in nll]
            return run
        out = model(input_ids=ids[:, :context], use_cache=True)
        pkv = out.past_key_values
        logits = out.logits[0, -1]
        if on_step:
            on_step(0)
        for s in range(steps):
            tok = ids[:, context + s : context + s + 1]
            run.nll.append(float(torch.nn.functional.cross_entropy(logits.float().unsqueeze(0), tok[0])))
            out = model(input_ids=tok, past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            logits = out.logits[0, -1]
            if on_step:
                on_step(s + 1)
        if ids.shape[1] > context + steps:
            nxt = ids[:, context + steps]
            run.nll.append(float(torch.nn.functional.cross_entropy(logits.float().unsqueeze(0), nxt)))
        return run


def _row_fields(policy: Policy) -> dict[str, object]:
    q = policy.quantization
    if not q.enabled:
        return {
            "quant_key_bit": -1,
            "quant_query_bit": -1,
            "auto_requant_thres": -1,
            "auto_requant_incre": -1,
            "quant_value_bit": -1,
        }
    return {
        "quant_key_bit": q.key_msb_bits,
        "quant_query_bit": q.query_bits,
        "auto_requant_thres": q.requant_threshold if q.progressive else -1,
        "auto_requant_incre": q.key_lsb_bits if q.progressive else -1,
        "quant_value_bit": q.value_bits,
    }


@dataclass
class BuiltWorkload:
    """CSV rows and (optionally) the functional-simulation tensors."""

    rows: list[WorkloadRow]
    tensors: dict[str, np.ndarray] | None


def build_workload(
    state: SpAttenState, tensors: bool, meta: dict[str, object] | None = None, kv_dtype: str = "float16"
) -> BuiltWorkload:
    """Rows (and tensors) for every recorded (call, layer, query row, surviving head)."""
    records = state.records
    if not records:
        raise ValueError("nothing was recorded: run with record=True and at least one decode step")
    policy = state.policy
    first_call = records[0].call
    groups = state.n_heads // state.n_kv_heads
    pruning = policy.token_pruning.enabled or policy.head_pruning.enabled
    later_selection = [False] * len(records)
    seen = False
    for i in range(len(records) - 1, -1, -1):
        later_selection[i] = seen
        r = records[i]
        seen = seen or r.topk_applied or len(r.heads) < state.n_heads
    fixed = _row_fields(policy)
    vp = policy.value_pruning

    def extra(head: int, n_keys: int) -> dict[str, str]:
        """kv_head_id, and the row's threshold (the model's ``threshold_for`` its keys)."""
        vthr = {"value_threshold": repr(vp.threshold_for(n_keys))} if vp.thresholded else {}
        return {"kv_head_id": str(head // groups), **vthr}

    rows: list[WorkloadRow] = []
    q_rows: list[np.ndarray] = []
    out_rows: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    kv_head: list[int] = []
    positions: list[int] = []
    identity: list[tuple[int, int, int]] = []  # (iteration_id, layer_id, head_id) of each row
    for gi, rec in enumerate(records):
        nxt = records[gi + 1] if gi + 1 < len(records) else None
        n_rows = len(rec.query_positions) * len(rec.heads)
        k_ids = rec.kept_ids.numpy().astype(np.int32)
        per_kv = None if rec.kept_per_kv is None else [x.numpy().astype(np.int32) for x in rec.kept_per_kv]
        j = 0
        for ri, pos in enumerate(rec.query_positions):
            for hi, head in enumerate(rec.heads):
                j += 1
                if per_kv is not None:  # eviction: the token list of the head's K/V head
                    k_ids = per_kv[head // groups]
                last = j == n_rows
                topk_here = bool(last and nxt is not None and nxt.topk_applied)
                rows.append(
                    WorkloadRow(
                        iteration_id=(rec.call - first_call) if state.causal else pos,
                        layer_id=rec.layer,
                        head_id=head,
                        embedding_length_D=state.head_dim,
                        sentence_length_L=rec.length,
                        key_fetch_num=len(k_ids),
                        if_requant=bool(rec.requant[hi, ri]),
                        value_fetch_num=(rec.value_count if rec.value_counts is None
                                         else int(rec.value_counts[hi, ri])),
                        if_accumulate_importance=bool(pruning and later_selection[gi]),
                        if_rescale_previous_importance=False,
                        if_topk=topk_here,
                        topk=int(nxt.kept_ids.numel()) if topk_here and nxt is not None else -1,
                        extra=extra(head, len(k_ids)),
                        **fixed,  # type: ignore[arg-type]
                    )
                )
                if tensors:
                    assert rec.q is not None and rec.out is not None
                    q_rows.append(rec.q[hi, ri].numpy())
                    out_rows.append(rec.out[hi, ri].numpy())
                    kept.append(k_ids)
                    kv_head.append(head // groups)
                    positions.append(pos)
                    identity.append((rows[-1].iteration_id, rows[-1].layer_id, rows[-1].head_id))
    if not tensors:
        return BuiltWorkload(rows=rows, tensors=None)
    lengths = np.array([len(k) for k in kept], dtype=np.int64)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("too many kept ids for int32 offsets")
    kv = [state.last_kv[layer] for layer in range(state.n_layers)]
    tens = {
        "meta": np.array(json.dumps(meta or {})),
        "row_kv_head": np.array(kv_head, dtype=np.int32),
        "row_position": np.array(positions, dtype=np.int32),
        "row_id": np.array(identity, dtype=np.int32).reshape(-1, 3),
        "q": np.stack(q_rows).astype(np.float32),
        "kept_offsets": offsets.astype(np.int32),
        "kept_ids": np.concatenate(kept).astype(np.int32),
        "out_ref": np.stack(out_rows).astype(np.float32),
        "k": torch.stack([k for k, _ in kv]).to(getattr(torch, kv_dtype)).numpy(),
        "v": torch.stack([v for _, v in kv]).to(getattr(torch, kv_dtype)).numpy(),
    }
    return BuiltWorkload(rows=rows, tensors=tens)


def scale_bytes(policy: Policy, row: WorkloadRow) -> float:
    """Bytes of the per-channel scales a row's request needs (16 bits a channel for K when its
    scales fold into the query, for V when per channel), as ``kvattention.count_bits`` counts
    them; per-tensor scales are not counted (one number per plane)."""
    from workloads.spatten.kvquant import folds_key_scales  # noqa: PLC0415

    q, d = policy.quantization, row.embedding_length_D
    k = folds_key_scales(q) and row.key_fetch_num > 0
    v = q.enabled and q.value_axis == "channel" and row.value_fetch_num > 0
    return 2.0 * d * (int(k) + int(v))


def scales_meta(policy: Policy) -> dict[str, str]:
    """The npz meta ``scales``: ``key``/``value``: ``channel`` where the host folds per-channel
    scales (into the query; into the output), else ``tensor`` (``spatten/sim/program.py``)."""
    from workloads.spatten.kvquant import folds_key_scales  # noqa: PLC0415

    q = policy.quantization
    return {"key": "channel" if folds_key_scales(q) else "tensor",
            "value": "channel" if q.enabled and q.value_axis == "channel" else "tensor"}


def kv_bytes_ratio(state: SpAttenState) -> tuple[float, float]:
    """(bytes fetched, dense bytes) over the recorded rows, dense counting every head."""
    built = build_workload(state, tensors=False)
    fetched = sum(r.kv_bytes() for r in built.rows) + sum(scale_bytes(state.policy, r) for r in built.rows)
    per_group = {}
    for rec in state.records:
        n_q = len(rec.query_positions) if state.causal else rec.length  # encoders: every query row
        per_group[(rec.call, rec.layer)] = (rec.length, n_q)
    dense = sum(2 * length * state.head_dim * 2 * n_q * state.n_heads for length, n_q in per_group.values())
    return fetched, float(dense)
