"""SpAtten pruned attention as a Hugging Face attention function.

``spatten_attention_forward`` has the signature of transformers' attention interface
(``module, query, key, value, attention_mask, scaling, dropout, **kwargs``) and is
registered under the name ``"spatten"`` by :mod:`workloads.spatten.hooks`. It receives
the query after RoPE and the whole K/V cache (``[1, heads, T, D]``), applies, in order:

1. cascade token pruning (top-k of cumulative token importance, see ``state.py``);
2. cascade head pruning (top-k of accumulated head output magnitude);
3. progressive quantization: probabilities from MSB-only keys, recomputed with the full
   keys for the query rows whose maximum probability is below the threshold;
4. local value pruning: each head and query row sums only the V rows of its top-k
   probabilities (probabilities are not renormalized, exactly as the accelerator does);

and accumulates token and head importance. Ties in every top-k go to the lower index
(the rule of ``hardware/SPEC.md`` section 3).

Quantization here is the float model of the accelerator's formats: symmetric linear,
one scale per (layer, KV head) for K and V (max |x| over the cache), one per query row
for Q; the full key has ``key_msb_bits + key_lsb_bits`` bits and the MSB-only key is
``floor(k / 2^lsb) * 2^lsb`` (``hardware/SPEC.md`` section 1).
"""

from __future__ import annotations

import torch

from workloads.spatten.state import LayerRecord, SpAttenState


def _fake_quant(x: torch.Tensor, bits: int, scale: torch.Tensor) -> torch.Tensor:
    """Integer codes of ``x`` at ``bits`` signed bits with ``scale`` (returned as float)."""
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(x / scale), -qmax, qmax)


def _scale(x: torch.Tensor, bits: int, dims: tuple[int, ...]) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(x.abs().amax(dim=dims, keepdim=True), min=1e-8) / qmax


def _stable_topk_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of the last dim, ties to the lower index."""
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]
    mask = torch.zeros_like(score, dtype=torch.bool)
    return mask.scatter_(-1, order, True)


def _select_tokens(state: SpAttenState, layer: int, total: int) -> tuple[torch.Tensor, bool]:
    """Token mask of ``layer`` for this call and whether a top-k produced it."""
    tp = state.policy.token_pruning
    if not (tp.enabled and state.prunes_this_call()):
        return torch.ones(total, dtype=torch.bool), False
    cand = state.alive[layer].clone()
    if layer > 0:
        cand &= state.alive[layer - 1]
    k = tp.keep_count(layer, state.n_layers, total)
    if int(cand.sum()) <= k:
        return cand, False
    score = state.token_importance.clone()
    if tp.importance == "average":
        score = score / state.token_seen.clamp(min=1.0)
    forced = torch.zeros(total, dtype=torch.bool)
    forced[: tp.sink_tokens] = True
    if tp.recent_tokens:
        forced[total - tp.recent_tokens :] = True
    score[forced] = float("inf")
    score[~cand] = float("-inf")
    return _stable_topk_mask(score, k), True


def _select_heads(state: SpAttenState, layer: int) -> torch.Tensor:
    """Surviving heads of ``layer`` in this call."""
    hp = state.policy.head_pruning
    n = state.n_heads
    if not (hp.enabled and state.prunes_this_call()):
        return torch.ones(n, dtype=torch.bool)
    cand = state.alive_heads[layer - 1].clone() if layer > 0 else torch.ones(n, dtype=torch.bool)
    k = hp.keep_count(layer, state.n_layers, n)
    if int(cand.sum()) <= k:
        return cand
    score = state.head_importance.clone()
    score[~cand] = float("-inf")
    return _stable_topk_mask(score, k)


def _additive_mask(
    attention_mask: torch.Tensor | None, causal: bool, tq: int, tk: int, idx: torch.Tensor
) -> torch.Tensor | None:
    """The attention mask restricted to the kept columns, as an additive [1|H, Tq, N] bias."""
    if attention_mask is not None:
        m = attention_mask[0]
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=torch.float32).masked_fill(~m, float("-inf"))
        return m[..., -tq:, :][..., idx]
    if causal and tq > 1:
        pos_q = torch.arange(tk - tq, tk).unsqueeze(1)
        allowed = idx.unsqueeze(0) <= pos_q
        return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")).unsqueeze(0)
    return None


def spatten_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """SpAtten attention for one layer; returns ``([1, Tq, H, D] output, None)``."""
    state: SpAttenState | None = getattr(module, "_spatten_state", None)
    if state is None:
        raise RuntimeError("spatten attention used outside workloads.spatten.hooks.spatten_context")
    layer: int = module._spatten_layer  # type: ignore[assignment]
    bsz, n_heads, tq, dim = query.shape
    n_kv, tk = key.shape[1], key.shape[2]
    if bsz != 1:
        raise ValueError(f"SpAtten attention tracks one sequence: batch size must be 1, got {bsz}")
    if scaling is None:
        scaling = dim**-0.5
    state.softmax_scale[module._spatten_layer] = float(scaling)  # type: ignore[attr-defined]
    if layer == 0:
        state.begin_call(tk, tq)
    elif state.length != tk:
        raise RuntimeError(f"layer {layer} sees {tk} tokens but layer 0 saw {state.length}")
    pol = state.policy
    if state.parallel_from is not None:  # teacher-forced decoding in one pass: parallel.py
        from workloads.spatten.parallel import parallel_forward  # noqa: PLC0415

        out = parallel_forward(state, layer, query, key, value, float(scaling))
        return out.to(query.dtype).transpose(0, 1).unsqueeze(0), None
    if pol.extended:  # eviction methods and KIVI quantization: kvattention.py
        from workloads.spatten.kvattention import extended_forward  # noqa: PLC0415

        out = extended_forward(state, layer, query, key, value, float(scaling))
        return out.to(query.dtype).transpose(0, 1).unsqueeze(0), None

    kept, topk_applied = _select_tokens(state, layer, tk)
    if pol.token_pruning.enabled and state.prunes_this_call():
        state.alive[layer] = kept
    heads = _select_heads(state, layer)
    state.alive_heads[layer] = heads
    idx = kept.nonzero().squeeze(1)
    n_kept = idx.numel()

    q = query[0].float()
    k_all, v_all = key[0].float(), value[0].float()
    kk, vk = k_all[:, idx], v_all[:, idx]
    qz = pol.quantization
    use_quant = qz.enabled and state.prunes_this_call()
    if use_quant:
        kbits = qz.key_msb_bits + qz.key_lsb_bits
        s_k = _scale(k_all, kbits, (1, 2))
        k_int = _fake_quant(kk, kbits, s_k)
        k_full = k_int * s_k
        k_msb = torch.floor(k_int / 2**qz.key_lsb_bits) * 2**qz.key_lsb_bits * s_k
        s_v = _scale(v_all, qz.value_bits, (1, 2))
        vk = _fake_quant(vk, qz.value_bits, s_v) * s_v
        s_q = _scale(q, qz.query_bits, (2,))
        q = _fake_quant(q, qz.query_bits, s_q) * s_q
    else:
        k_full = k_msb = kk
    groups = n_heads // n_kv
    if groups > 1:
        k_full = k_full.repeat_interleave(groups, dim=0)
        k_msb = k_msb.repeat_interleave(groups, dim=0) if use_quant else k_full
        vk = vk.repeat_interleave(groups, dim=0)
    bias = _additive_mask(attention_mask, state.causal, tq, tk, idx)

    def probs(keys: torch.Tensor) -> torch.Tensor:
        s = torch.matmul(q, keys.transpose(-1, -2)) * scaling
        if bias is not None:
            s = s + bias
        return torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)

    p = probs(k_msb)
    requant = torch.zeros(n_heads, tq, dtype=torch.bool)
    if use_quant and qz.progressive:
        requant = p.amax(dim=-1) < qz.requant_threshold
        if bool(requant.any()):
            p = torch.where(requant.unsqueeze(-1), probs(k_full), p)
    n_values = pol.value_pruning.keep_count(n_kept) if state.prunes_this_call() else n_kept
    p_used = p * _stable_topk_mask(p, n_values) if n_values < n_kept else p
    out = torch.matmul(p_used, vk)
    out = out * heads.view(-1, 1, 1).to(out.dtype)

    if pol.token_pruning.enabled or pol.head_pruning.enabled:
        # Only computed requests count: surviving heads, and (multi-row calls) the query
        # rows of surviving tokens -- a pruned token's query is not computed by SpAtten.
        w = heads.view(-1, 1, 1).to(p.dtype)
        if tq > 1:
            w = w * kept[tk - tq :].view(1, -1, 1).to(p.dtype)
        state.token_importance[idx] += (p * w).sum(dim=(0, 1)).double()
        visible = torch.ones(1, tq, n_kept) if bias is None else (bias > -1e30).to(p.dtype)
        state.token_seen[idx] += (visible * w).sum(dim=(0, 1)).double()
        state.head_importance += (out * w).abs().sum(dim=(1, 2)).double()

    if state.counts_bytes():
        _count_bits(state, heads, kept, tk, tq, dim, n_kept, n_values, requant, use_quant)
    _record(state, layer, tk, tq, idx, topk_applied, heads, n_values, requant, query, out, key, value)
    return out.to(query.dtype).transpose(0, 1).unsqueeze(0), None


def _count_bits(
    state: SpAttenState,
    heads: torch.Tensor,
    kept: torch.Tensor,
    tk: int,
    tq: int,
    dim: int,
    n_kept: int,
    n_values: int,
    requant: torch.Tensor,
    use_quant: bool,
) -> None:
    """K/V bits of this call's requests, as ``WorkloadRow.kv_bytes`` counts the rows
    ``export.build_workload`` writes (surviving heads; encoders: surviving query rows)."""
    qz = state.policy.quantization
    rows = torch.ones(tq, dtype=torch.bool) if state.causal else kept[tk - tq :]
    live = heads.view(-1, 1) & rows.view(1, -1)
    n_req = int(live.sum())
    kbits = qz.key_msb_bits if use_quant else 16
    vbits = qz.value_bits if use_quant else 16
    lsb = qz.key_lsb_bits if use_quant and qz.progressive else 0
    bits = n_req * (n_kept * kbits + n_values * vbits) + int((requant & live).sum()) * n_kept * lsb
    state.kv_bits += float(bits * dim)
    state.kv_dense_bits += float(state.n_heads * tq * 2 * tk * dim * 16)


def _record(
    state: SpAttenState,
    layer: int,
    tk: int,
    tq: int,
    idx: torch.Tensor,
    topk_applied: bool,
    heads: torch.Tensor,
    n_values: int,
    requant: torch.Tensor,
    query: torch.Tensor,
    out: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
) -> None:
    """Append a LayerRecord when this call is one the state records."""
    if not state.record:
        return
    if state.causal:
        if tq != 1 and not state.record_prefill:
            return
        rows = list(range(tq))
        positions = [tk - tq + r for r in rows]
    else:
        alive = set(idx.tolist())
        rows = [r for r in range(tq) if (tk - tq + r) in alive]
        positions = [tk - tq + r for r in rows]
    hid = heads.nonzero().squeeze(1)
    rsel = torch.tensor(rows, dtype=torch.long)
    rec = LayerRecord(
        call=state.call,
        layer=layer,
        length=tk,
        kept_ids=idx.clone(),
        topk_applied=topk_applied,
        heads=hid.tolist(),
        value_count=n_values,
        query_positions=positions,
        requant=requant[hid][:, rsel].clone(),
    )
    if state.record_tensors:
        rec.q = query[0].float()[hid][:, rsel].clone()
        rec.out = out[hid][:, rsel].clone()
        state.last_kv[layer] = (key[0].detach(), value[0].detach())
    state.records.append(rec)
