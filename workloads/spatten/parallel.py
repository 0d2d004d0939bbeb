"""Teacher-forced decoding in one forward pass, for policies whose decisions are per row.

Decoding token by token under a policy (``export.run_sequence``) makes, at step ``t``,
decisions from the cache of ``t + 1`` tokens; the K/V of earlier tokens were computed by
earlier steps. A causal forward pass over the whole text computes the same K/V, row after
row, as long as row ``t`` attends exactly as decode step ``t`` would. That holds when a
row's decisions depend on that row alone (no eviction state carried between steps):

- no cascade token or head pruning and no h2o/tova/snapkv eviction (they carry state);
- static eviction patterns (streaming, longformer) and the threshold method: per row;
- quantization: K per channel in groups of ``group_tokens`` with ``residual_tokens >=
  group_tokens`` (every quantized key then lies in a complete group, whose scale no later
  token changes); scales over the whole cache (K per tensor or per channel, V per tensor
  or per channel) too: decode row ``t`` uses the scales of the cache's first ``t + 1``
  tokens, so the rows are split into runs whose prefix statistics (running max) are the
  same, each run quantized once with its own scales (``_runs``).

``stateful_reason(policy)`` says why the logic above does not hold for a policy (None: it
does). ``parallel_forward`` is the attention of one layer in that pass: rows before
``state.parallel_from`` are the dense prefill, the others decode rows under the policy,
with their K/V bits counted exactly as ``kvattention.count_bits`` counts decode calls
(``workloads/tests/test_eval_accuracy.py`` checks both paths agree on a tiny model).

Float rounding: the logic is the same, the arithmetic is not. The model's projections,
norms and MLP run on ``[n, hidden]`` in the pass and on ``[1, hidden]`` (and the prefill on
``[context, hidden]``) step by step; the GEMMs round differently, so Q, K and V differ by
about 1e-6 relative (SmolLM2-135M: 1e-6 at layer 0, 1e-4 by layer 10, dense perplexity
within 1e-5). That is harmless for continuous functions, but not for the discrete decisions
a policy takes on those values:

- quantization: every K/V/Q element is rounded to an integer code; an element within
  1e-6 of a rounding boundary takes the next code in one path and not in the other. One
  8-bit V code is ``max|v| / 127`` (SmolLM2-135M, emma, layer 11 of the first decode row:
  a single flipped V code moves the attention output by 8e-3, from inputs 8e-5 apart);
  the next layers carry it on, so per-token NLLs differ by up to 2e-2 and the perplexity
  of ``progressive-quant`` over 128 tokens after a 512-token prefill by 0.5% (35.495 one
  pass, 35.328 step by step). Step by step is no more stable: splitting its dense prefill
  in two calls (the same mathematics) gives 35.608 and 35.570;
- ``max p < requant_threshold`` (progressive refetch), the threshold method's
  ``p >= threshold`` and value pruning's top-k compare probabilities computed from those
  values (and, in this pass, by differently shaped matmuls): a borderline row flips.

Given the same Q/K/V the attention here equals the step path's within 6e-6 (every layer
and row of that case); there is no way to give the pass the step path's Q/K/V short of
running the model row by row. So ``parallel_reason`` (the tools' switch) sends every
policy with such decisions step by step, where the figures are reproducible bit for bit:
one pass is left for dense attention and the static patterns (streaming, longformer)
without quantization or value pruning, whose decisions depend on positions only.
``run_sequence(..., parallel=True)`` still runs any policy that ``stateful_reason`` accepts
(the tests check the logic on a tiny model, where no code flips).
"""

from __future__ import annotations

import dataclasses

import torch

from workloads.spatten import selection as sel
from workloads.spatten.kvattention import _fake_quant_rows, count_bits
from workloads.spatten.kvquant import (folds_key_scales, key_codes, prefix_stats, quantize_keys, quantize_values,
                                       whole_cache_scales)
from workloads.spatten.policy import Policy
from workloads.spatten.state import SpAttenState

ROW_BLOCK = 256  # decode rows per block (bounds the [H, rows, T] temporaries)


def parallel_reason(policy: Policy) -> str | None:
    """Why ``policy`` must be decoded step by step, or None when one pass gives the
    step-by-step figures within float rounding: a stateful policy (``stateful_reason``), or
    one with a discrete decision on rounded values (see the module doc)."""
    why = stateful_reason(policy)
    if why is not None:
        return why
    e, q, vp = policy.eviction, policy.quantization, policy.value_pruning
    if q.enabled:
        return ("quantization rounds K/V/Q to integer codes: the one pass's K/V differ from the step path's "
                "by float rounding, which flips codes at rounding boundaries")
    if e.enabled and e.method == "threshold":
        return "the threshold method keeps keys by comparing float probabilities with a threshold"
    if vp.enabled:
        return "value pruning's top-k ranks float probabilities (near-ties order either way)"
    return None


def stateful_reason(policy: Policy) -> str | None:
    """Why ``parallel_forward`` cannot compute ``policy`` (state carried between steps), or
    None when its logic is that of decoding step by step."""
    if policy.token_pruning.enabled or policy.head_pruning.enabled:
        return "cascade token/head pruning carries state between steps"
    e, q = policy.eviction, policy.quantization
    if e.enabled and e.method in sel.SCORED_METHODS:
        return f"eviction method {e.method} carries state between steps"
    if q.enabled and q.key_axis == "channel" and q.group_tokens > 0 and q.residual_tokens < q.group_tokens:
        return ("the key scales of the last, incomplete token group change as it fills (needs "
                "residual_tokens >= group_tokens)")
    return None


def _static_rows(state: SpAttenState, layer: int, totals: torch.Tensor, n: int) -> torch.Tensor:
    """The static pattern (streaming/longformer) of each row: [rows, T] kept."""
    e = state.policy.eviction
    frac = e.layer_budget(layer, state.n_layers)
    k = torch.clamp(torch.ceil(frac * totals.double() - 1e-9).long(), min=e.min_tokens)
    k = torch.minimum(k, totals)
    pos = torch.arange(n)
    glob = pos < e.sink_tokens
    if e.method == "longformer" and e.global_stride > 0:
        glob |= pos % e.global_stride == 0
    csum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(glob.long(), 0)])
    n_glob = csum[torch.clamp(totals - 1, min=0)]  # globals among positions < T - 1
    window = torch.clamp(k - n_glob, min=1)
    return glob.unsqueeze(0) | (pos.unsqueeze(0) >= (totals - window).unsqueeze(1))


def parallel_forward(
    state: SpAttenState, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float
) -> torch.Tensor:
    """Attention output [H, N, D] of one layer over the whole sequence (see the module doc)."""
    pol = state.policy
    e, qz, vp = pol.eviction, pol.quantization, pol.value_pruning
    _, n_heads, n, dim = query.shape
    n_kv = key.shape[1]
    g = n_heads // n_kv
    start = int(state.parallel_from or 0)
    q = query[0].float()
    k, v = key[0].float(), value[0].float()
    out = torch.empty(n_heads, n, dim)
    if start > 0:  # the dense prefill rows
        out[:, :start] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :start], k[:, :start].repeat_interleave(g, 0), v[:, :start].repeat_interleave(g, 0),
            is_causal=True, scale=scaling)
    if start >= n:
        return out
    pos = torch.arange(n)
    fold = folds_key_scales(qz)
    for s0, s1 in _runs(qz, k, v, start, n):
        if qz.enabled:  # the scales of the run's caches (residual rows are chosen per row below)
            nq = dataclasses.replace(qz, residual_tokens=0)
            if fold:  # integer codes; the scales fold into the query
                kf, km, s_k = key_codes(k[:, :s1], nq)
            else:
                kf, km = quantize_keys(k[:, :s1], nq)
            vq = quantize_values(v[:, :s1], nq)
            if s1 < n:  # tokens after the run: masked for all its rows
                kf, km, vq = (torch.cat([x, y[:, s1:]], dim=1) for x, y in ((kf, k), (km, k), (vq, v)))
        for b0 in range(s0, s1, ROW_BLOCK):
            b1 = min(s1, b0 + ROW_BLOCK)
            rows = b1 - b0
            totals = torch.arange(b0 + 1, b1 + 1)  # cache length of each decode row
            qb = q[:, b0:b1]
            if qz.enabled and fold:
                qb = _fake_quant_rows(qb * s_k.repeat_interleave(g, dim=0), qz.query_bits)  # the host's fold
            elif qz.enabled:
                qb = _fake_quant_rows(qb, qz.query_bits)
            qg = qb.reshape(n_kv, g * rows, dim)

            def scores(keys: torch.Tensor) -> torch.Tensor:
                return (torch.matmul(qg, keys.transpose(-1, -2)).view(n_heads, rows, n) * scaling)

            causal = pos.unsqueeze(0) < totals.unsqueeze(1)  # [rows, N]
            vis = causal.unsqueeze(0).expand(n_heads, rows, n)
            if e.enabled and e.method in ("streaming", "longformer") and layer >= e.start_layer:
                vis = vis & _static_rows(state, layer, totals, n).unsqueeze(0)
            s_exact = scores(k)
            if qz.enabled:
                res = pos.unsqueeze(0) >= (totals - qz.residual_tokens).unsqueeze(1)  # [rows, N]
                s_full = torch.where(res, s_exact, scores(kf))
                s_msb = torch.where(res, s_exact, scores(km))
            else:
                res = torch.zeros(rows, n, dtype=torch.bool)
                s_full = s_msb = s_exact

            def probs(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return torch.nan_to_num(torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1), nan=0.0)

            candidates = vis
            requant = torch.zeros(n_heads, rows, dtype=torch.bool)
            if e.enabled and e.method == "threshold" and layer >= e.start_layer:
                pred = probs(s_msb, vis)
                forced = (pos.unsqueeze(0) < e.sink_tokens) | (pos.unsqueeze(0) >= (totals - e.recent_tokens).unsqueeze(1))
                vis = vis & sel.threshold_keep(pred, e.threshold, forced.unsqueeze(0))
                p = probs(s_full, vis)
                requant[:] = True
            else:
                p = probs(s_msb, vis)
                if qz.enabled and qz.progressive:
                    requant = p.amax(dim=-1) < qz.requant_threshold
                    if bool(requant.any()):
                        p = torch.where(requant.unsqueeze(-1), probs(s_full, vis), p)
            n_att = vis.sum(dim=-1)
            if vp.enabled:
                n_val = torch.clamp(torch.ceil(vp.keep * n_att.double() - 1e-9).long(), min=vp.min_tokens)
                vsel = sel.topk_count_mask(p, torch.minimum(n_val, n_att)) & vis
                p_used = p * vsel
            else:
                vsel, p_used = vis, p
            if qz.enabled:
                pr = (p_used * res.unsqueeze(0)).reshape(n_kv, g * rows, n)
                pq = (p_used * ~res.unsqueeze(0)).reshape(n_kv, g * rows, n)
                ob = torch.matmul(pr, v) + torch.matmul(pq, vq)
            else:
                ob = torch.matmul(p_used.reshape(n_kv, g * rows, n), v)
            out[:, b0:b1] = ob.view(n_heads, rows, dim)
            count_bits(state, candidates, vis, vsel, requant, dim, n, res=res.unsqueeze(0), totals=totals)
    return out


def _runs(qz, k: torch.Tensor, v: torch.Tensor, start: int, n: int) -> list[tuple[int, int]]:
    """Decode rows ``start .. n-1`` as runs ``[s0, s1)`` whose caches have the same scales.

    A scale over the whole cache (``kvquant.whole_cache_scales``) is set by the running
    max (and min, asymmetric) of the cache's first ``t + 1`` tokens; a run ends where a
    new token changes any of them. Without such scales: one run."""
    if not whole_cache_scales(qz):
        return [(start, n)]
    k_axis = "tensor" if qz.key_axis == "tensor" else ("channel" if qz.group_tokens == 0 else "token")
    stats = torch.cat([prefix_stats(k, k_axis, qz.asymmetric), prefix_stats(v, qz.value_axis, qz.asymmetric)], dim=1)
    change = (stats[start + 1 : n] != stats[start : n - 1]).any(dim=1).nonzero().squeeze(1) + start + 1
    cuts = [start, *change.tolist(), n]
    return list(zip(cuts[:-1], cuts[1:], strict=True))
