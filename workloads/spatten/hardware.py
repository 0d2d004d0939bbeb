"""Which policies the accelerator runs, and why not the others.

The accelerator (``hardware/SPEC.md``) runs one ATTEND per (decode step, layer, head,
query row), or one ATTEND_GROUP per K/V head, over a host-written token list, with one
symmetric scale per (layer, K/V head) for the K planes and one for the V plane; it prunes
tokens with TOPK_TOKENS on its own importance (SpAtten's cascade) and V rows by count
(local value pruning) or by probability threshold (``value_pruning.threshold`` or
``relative_threshold``: an
ATTEND_GROUP head's ``valueThresh`` mode, ``p_j >= min(T, pmax)``). The host adds, for free:

- eviction (streaming, longformer, h2o, tova, snapkv, pyramidkv, adakv): the kept set of
  each K/V head is the request's token list (``kvattention._record`` -> ``gen_workload``);
- per-channel K scales over the whole cache (``quantization.key_axis: channel``, no token
  groups, symmetric): the planes hold ``round(k_c / s_c)``, the query is ``q_c * s_c``
  quantized to ``query_bits`` (``spatten/sim/program.py``, ``kvquant.key_codes``);
- per-channel V scales (``value_axis: channel``): the planes hold ``round(v_c / s_c)``, the
  host multiplies the output by ``s_c``.

``gen_workload`` writes a workload only for policies this module accepts; ``eval_accuracy``
marks the rest software-only in its tables.
"""

from __future__ import annotations

from workloads.spatten.policy import Policy


def software_only_reasons(policy: Policy) -> list[str]:
    """Why the accelerator cannot run ``policy`` as the workload generator writes it (empty: it can)."""
    q, e = policy.quantization, policy.eviction
    why: list[str] = []
    if e.enabled:
        if e.method == "threshold":
            why.append("eviction.method threshold: the accelerator's threshold mode selects V rows only "
                       "(value_pruning.threshold); it refetches the LSBs of every key, not of the kept ones, "
                       "and does not renormalize over the kept keys")
        elif policy.token_pruning.enabled:
            why.append(f"eviction.method {e.method} with token_pruning: the eviction keeps one token list per "
                       "K/V head, the cascade's TOPK_TOKENS one list per layer (the workload generator "
                       "writes either, not their intersection)")
    if (e.enabled or q.kivi) and policy.head_pruning.enabled:
        why.append("head_pruning with eviction or per-channel scales: the eviction/KIVI attention path "
                   "(kvattention.py) has no cascade head pruning")
    if q.enabled and q.key_axis == "channel" and q.group_tokens > 0:
        why.append("quantization.group_tokens: per-channel K scales of token groups cannot fold into the "
                   "query (one scale per channel for the whole cache can)")
    if q.enabled and q.value_axis == "token":
        why.append("quantization.value_axis token: the accelerator sums p_j * v_j over one V scale; "
                   "per-row V scales have no host fold")
    if q.enabled and q.asymmetric:
        why.append("quantization.asymmetric: the accelerator's K and V planes are symmetric "
                   "two's complement (a per-channel K zero point would cancel in softmax; V's would not)")
    if q.enabled and q.residual_tokens:
        why.append("quantization.residual_tokens: the accelerator has one K and one V width per request, "
                   "no 16-bit residual rows")
    if q.enabled and q.key_lsb_bits > 0 and not q.progressive and not (e.enabled and e.method == "threshold"):
        why.append("quantization.key_lsb_bits without a requant_threshold: the torch model keeps the MSBs of "
                   "(msb + lsb)-bit codes, the workload rows quantize straight to the MSB width")
    return why


def runs_on_accelerator(policy: Policy) -> bool:
    """True when ``software_only_reasons`` is empty."""
    return not software_only_reasons(policy)
