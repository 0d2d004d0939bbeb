"""Which policies the accelerator runs, and why not the others.

The accelerator (``hardware/SPEC.md``) runs one ATTEND per (decode step, layer, head,
query row) over a host-written token list, with one symmetric scale per (layer, K/V head)
for the K planes and one for the V plane; it prunes tokens with TOPK_TOKENS on its own
importance (SpAtten's cascade) and V rows by count (local value pruning). ``gen_workload``
writes a workload only for policies this module accepts; ``eval_accuracy`` marks the rest
software-only in its tables.
"""

from __future__ import annotations

from workloads.spatten.policy import Policy


def software_only_reasons(policy: Policy) -> list[str]:
    """Why the accelerator cannot run ``policy`` as the workload generator writes it (empty: it can)."""
    q, e = policy.quantization, policy.eviction
    why: list[str] = []
    if e.enabled:
        if e.method == "threshold":
            why.append("eviction.method threshold: the accelerator has no threshold mode (it keeps V rows "
                       "by count, and refetches the LSBs of every key, not of the kept ones)")
        else:
            why.append(f"eviction.method {e.method}: its kept sets are per-request token lists, which the "
                       "accelerator takes, but the workload generator writes one kept set per layer "
                       "(SpAtten's cascade) only")
    if q.enabled and q.key_axis == "channel" and q.group_tokens > 0:
        why.append("quantization.group_tokens: per-channel K scales of token groups cannot fold into the "
                   "query (one scale per channel for the whole cache can)")
    elif q.enabled and q.key_axis == "channel":
        why.append("quantization.key_axis channel: the scales fold into the query on the host "
                   "(q_c * s_c), but the workload generator and host do not fold them yet")
    if q.enabled and q.value_axis == "token":
        why.append("quantization.value_axis token: the accelerator sums p_j * v_j over one V scale; "
                   "per-row V scales have no host fold")
    elif q.enabled and q.value_axis == "channel":
        why.append("quantization.value_axis channel: the scales fold into the output on the host "
                   "(o_c * s_c), but the host does not fold them yet")
    if q.enabled and q.asymmetric:
        why.append("quantization.asymmetric: the accelerator's K and V planes are symmetric "
                   "two's complement (a per-channel K zero point would cancel in softmax; V's would not)")
    if q.enabled and q.residual_tokens:
        why.append("quantization.residual_tokens: the accelerator has one K and one V width per request, "
                   "no 16-bit residual rows")
    return why


def runs_on_accelerator(policy: Policy) -> bool:
    """True when ``software_only_reasons`` is empty."""
    return not software_only_reasons(policy)
