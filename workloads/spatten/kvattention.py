"""Attention for policies with an ``eviction`` section or KIVI-style quantization.

Called by ``spatten_attention_forward`` (``attention.py``) when ``policy.extended``; causal
models only, dense prefill. One layer's call, in order:

1. the keys visible to each K/V head: the eviction method's kept set (static pattern, or
   the alive set its earlier calls left), intersected with SpAtten's cascade token
   pruning when that is enabled too (``attention._select_tokens``), and the causal mask;
2. quantization (decode calls): KIVI-style keys and values (``kvquant.py``), the query at
   ``query_bits`` (per-channel key scales over the whole cache: the query times the scales,
   then quantized, against the integer key codes -- the host's fold, as the accelerator
   computes it); probabilities from the MSB-only keys, recomputed with the full keys for
   rows whose maximum is below ``requant_threshold`` (SpAtten's progressive refetch of the
   K LSBs) -- or, for the ``threshold`` method, keys kept by their MSB-predicted probability
   and probabilities recomputed with the full keys over the kept keys;
3. local value pruning (each row sums the V rows of its top ``value_pruning.keep``, or of
   the probabilities at least ``min(T, the row's largest)``, ``T`` the policy's threshold or
   its relative threshold over the row's attended keys);
4. importance for the cascade, the eviction method's score and the eviction for the next call;
5. the K/V bits read, per query head and row, into ``state.kv_bits`` (``count_bits``).

Every step works on whole tensors: no Python loop over heads, rows or tokens.
"""

from __future__ import annotations

import torch

from workloads.spatten import selection as sel
from workloads.spatten.kvquant import folds_key_scales, key_codes, quantize_keys, quantize_values, scale_bits
from workloads.spatten.state import LayerRecord, SpAttenState


def _fake_quant_rows(x: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    s = torch.clamp(x.abs().amax(dim=-1, keepdim=True), min=1e-8) / qmax
    return torch.clamp(torch.round(x / s), -qmax, qmax) * s


def _visible(state: SpAttenState, layer: int, n_kv: int, total: int, tq: int) -> torch.Tensor:
    """Keys [Hkv, T] this call may attend to (before the causal mask and threshold)."""
    from workloads.spatten.attention import _select_tokens  # noqa: PLC0415  (attention imports us)

    pol = state.policy
    e = pol.eviction
    vis = torch.ones(n_kv, total, dtype=torch.bool)
    decode = tq == 1
    if e.enabled and layer >= e.start_layer:
        if e.method in ("streaming", "longformer"):
            if decode:
                vis &= sel.static_mask(e, layer, state.n_layers, total).unsqueeze(0)
        elif e.method in sel.SCORED_METHODS:
            ext = state.ext.setdefault(f"layer{layer}", {})
            alive = ext.get("alive")
            if alive is not None:
                alive = torch.cat([alive, torch.ones(n_kv, total - alive.shape[1], dtype=torch.bool)], dim=1)
                vis &= alive
    if pol.token_pruning.enabled and decode:
        kept, topk = _select_tokens(state, layer, total)
        state.alive[layer] = kept
        vis &= kept.unsqueeze(0)
        state.ext["topk_applied"] = topk
    else:
        state.ext["topk_applied"] = False
    return vis


def extended_forward(
    state: SpAttenState, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float
) -> torch.Tensor:
    """Attention output [H, tq, D] (float32) of one layer for ``policy.extended`` policies."""
    if not state.causal:
        raise RuntimeError("eviction and KIVI quantization policies support causal models only")
    pol = state.policy
    e, qz = pol.eviction, pol.quantization
    _, n_heads, tq, dim = query.shape
    n_kv, total = key.shape[1], key.shape[2]
    g = n_heads // n_kv
    decode = tq == 1
    q = query[0].float()
    k_raw, v_raw = key[0].float(), value[0].float()

    vis_kv = _visible(state, layer, n_kv, total, tq)  # [Hkv, T]
    vis = vis_kv.repeat_interleave(g, dim=0).unsqueeze(1).expand(n_heads, tq, total)
    if tq > 1:
        causal = torch.arange(total).unsqueeze(0) <= torch.arange(total - tq, total).unsqueeze(1)
        vis = vis & causal.unsqueeze(0)
    use_quant = qz.enabled and decode
    if use_quant and folds_key_scales(qz):  # integer key codes; the host folds s_c into the query
        k_full, k_msb, s_k = key_codes(k_raw, qz)
        v_use = quantize_values(v_raw, qz)
        q = _fake_quant_rows(q * s_k.repeat_interleave(g, dim=0), qz.query_bits)
    elif use_quant:
        k_full, k_msb = quantize_keys(k_raw, qz)
        v_use = quantize_values(v_raw, qz)
        q = _fake_quant_rows(q, qz.query_bits)  # per-row scale, as attention.py (16 bits too)
    else:
        k_full = k_msb = k_raw
        v_use = v_raw
    qg = q.reshape(n_kv, g * tq, dim)

    def probs(keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = torch.matmul(qg, keys.transpose(-1, -2)).view(n_heads, tq, total) * scaling
        s = s.masked_fill(~mask, float("-inf"))
        return torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)

    candidates = vis
    requant = torch.zeros(n_heads, tq, dtype=torch.bool)
    if e.enabled and e.method == "threshold" and decode and layer >= e.start_layer:
        pred = probs(k_msb, vis)
        forced = sel.forced_mask(total, e.sink_tokens, e.recent_tokens).view(1, 1, -1)
        vis = vis & sel.threshold_keep(pred, e.threshold, forced)
        p = probs(k_full, vis)
        requant[:] = True  # the kept keys' LSBs are fetched
    else:
        p = probs(k_msb, vis)
        if use_quant and qz.progressive:
            requant = p.amax(dim=-1) < qz.requant_threshold
            if bool(requant.any()):
                p = torch.where(requant.unsqueeze(-1), probs(k_full, vis), p)
    n_att = vis.sum(dim=-1)  # [H, tq]
    vp = pol.value_pruning
    if decode and vp.thresholded:
        thr = (vp.relative_threshold / n_att.clamp(min=1).double() if vp.relative_threshold > 0
               else torch.full(n_att.shape, vp.threshold, dtype=torch.float64))
        vsel = sel.value_threshold_mask(p, thr.to(p.dtype)) & vis
        p_used = p * vsel
    elif vp.enabled and decode:
        n_val = torch.clamp(torch.ceil(vp.keep * n_att.double() - 1e-9).long(), min=vp.min_tokens)
        n_val = torch.minimum(n_val, n_att)
        vsel = sel.topk_count_mask(p, n_val) & vis
        p_used = p * vsel
    else:
        vsel, p_used = vis, p
    out = torch.matmul(p_used.reshape(n_kv, g * tq, total), v_use).view(n_heads, tq, dim)

    if pol.token_pruning.enabled:
        state.token_importance += p.sum(dim=(0, 1)).double()
        state.token_seen += vis.sum(dim=(0, 1)).double()
    if e.enabled and e.method in sel.SCORED_METHODS and layer >= e.start_layer:
        ext = state.ext.setdefault(f"layer{layer}", {})
        score = sel.update_scores(e, ext, p.view(n_kv, g, tq, total).sum(dim=1))
        keep = e.keep_count(layer, state.n_layers, total)
        ext["alive"] = sel.evict(e, score, vis_kv, keep)
    if state.counts_bytes():
        count_bits(state, candidates, vis, vsel, requant, dim, total)
    if state.record and decode:
        _record(state, layer, total, vis_kv, vsel, requant, query, out, key, value)
    return out


def _record(state: SpAttenState, layer: int, total: int, vis_kv: torch.Tensor, vsel: torch.Tensor,
            requant: torch.Tensor, query: torch.Tensor, out: torch.Tensor, key: torch.Tensor,
            value: torch.Tensor) -> None:
    """A LayerRecord of this decode call: one token list per K/V head (what the host writes
    for the accelerator's grouped request), the V rows and the refetch of each head."""
    lists = [vis_kv[h].nonzero().squeeze(1).clone() for h in range(vis_kv.shape[0])]
    union = torch.unique(torch.cat(lists)) if lists else torch.zeros(0, dtype=torch.long)
    rec = LayerRecord(
        call=state.call, layer=layer, length=total, kept_ids=union,
        topk_applied=bool(state.ext.get("topk_applied", False)), heads=list(range(query.shape[1])),
        value_count=int(vsel.sum(dim=-1).max()), query_positions=[total - 1], requant=requant.clone(),
        kept_per_kv=lists, value_counts=vsel.sum(dim=-1).long(),
    )
    if state.record_tensors:
        rec.q = query[0].float().clone()
        rec.out = out.clone()
        state.last_kv[layer] = (key[0].detach(), value[0].detach())
    state.records.append(rec)


def count_bits(
    state: SpAttenState,
    candidates: torch.Tensor,
    attended: torch.Tensor,
    values: torch.Tensor,
    requant: torch.Tensor,
    dim: int,
    total: int,
    res: torch.Tensor | None = None,
    totals: torch.Tensor | None = None,
) -> None:
    """Add the K/V bits of these requests (one per query head and row) to ``state.kv_bits``.

    Keys: MSB bits per quantized kept key, plus the LSB bits when the row was requantized
    (threshold method: MSBs of every candidate, LSBs of the kept keys only), 16 bits for
    residual (unquantized) keys; values: ``value_bits`` per kept quantized V row, 16 for
    residual ones; scales: per-channel K scales (and zero points) once per request and
    group of ``group_tokens`` kept keys, per-token V scales per V row, per-channel V scales
    once per request (one per-tensor scale is not counted, as for the accelerator's rows).
    ``res`` (residual positions, broadcastable to ``attended``) and ``totals`` (cache length
    of each row) serve ``parallel.py``, whose rows have different cache lengths.
    """
    qz = state.policy.quantization
    if totals is None:
        state.kv_dense_bits += float(attended.shape[0] * attended.shape[1] * 2 * total * dim * 16)
    else:
        state.kv_dense_bits += float(attended.shape[0] * 2 * dim * 16 * int(totals.sum()))
    if not qz.enabled:
        state.kv_bits += float(16 * dim * (attended.sum() + values.sum()))
        return
    if res is None:
        res = torch.zeros(total, dtype=torch.bool)
        if qz.residual_tokens:
            res[max(0, total - qz.residual_tokens) :] = True
    n_q = (attended & ~res).sum(dim=-1).double()
    n_res = (attended & res).sum(dim=-1).double()
    if state.policy.eviction.enabled and state.policy.eviction.method == "threshold":
        c_q = (candidates & ~res).sum(dim=-1).double()
        c_res = (candidates & res).sum(dim=-1).double()
        kbits = qz.key_msb_bits * c_q + qz.key_lsb_bits * n_q + 16 * c_res
    else:
        lsb = requant.double() * (qz.key_lsb_bits if qz.progressive else 0)
        kbits = (qz.key_msb_bits + lsb) * n_q + 16 * n_res
    sb = scale_bits(qz)
    if qz.key_axis == "channel":
        kbits = kbits + sb * (torch.ceil(n_q / qz.group_tokens) if qz.group_tokens else (n_q > 0).double())
    v_q = (values & ~res).sum(dim=-1).double()
    v_res = (values & res).sum(dim=-1).double()
    vbits = qz.value_bits * v_q + 16 * v_res
    if qz.value_axis == "token":
        vbits = vbits + sb * v_q / dim
    elif qz.value_axis == "channel":
        vbits = vbits + sb * (v_q > 0).double()
    state.kv_bits += float(dim * (kbits.sum() + vbits.sum()))
