"""Token selection of the eviction methods (``eviction_policy.py``), vectorized over heads.

Every function works on whole ``[heads, tokens]`` tensors (no Python loop over heads or
tokens). Ties in every top-k go to the lower token index (``hardware/SPEC.md`` s. 3).
"""

from __future__ import annotations

import torch

from workloads.spatten.eviction_policy import SCORED as SCORED_METHODS
from workloads.spatten.eviction_policy import Eviction

__all__ = ["SCORED_METHODS", "evict", "forced_mask", "static_mask", "threshold_keep", "topk_count_mask", "topk_mask",
           "update_scores"]


def topk_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of the last dim, ties to the lower index."""
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, order, True)


def topk_count_mask(score: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mask of the ``counts[...]`` largest entries of each last-dim row (ties: lower index)."""
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(score.shape[-1]).expand_as(order))
    return rank < counts.unsqueeze(-1)


def forced_mask(length: int, sinks: int, recent: int) -> torch.Tensor:
    """Positions always kept: the first ``sinks`` and the last ``recent`` of ``length``."""
    pos = torch.arange(length)
    return (pos < sinks) | (pos >= length - recent)


def static_mask(e: Eviction, layer: int, n_layers: int, length: int) -> torch.Tensor:
    """The kept positions [T] of ``streaming`` and ``longformer`` for a cache of ``length``.

    Global tokens (the sinks, and with ``global_stride`` every stride-th position) plus the
    most recent tokens filling the budget ``keep_count``.
    """
    k = e.keep_count(layer, n_layers, length)
    pos = torch.arange(length)
    glob = pos < e.sink_tokens
    if e.method == "longformer" and e.global_stride > 0:
        glob |= pos % e.global_stride == 0
    n_glob = int(glob[: max(0, length - 1)].sum())
    window = max(1, k - n_glob)
    return glob | (pos >= length - window)


def pool_scores(score: torch.Tensor, kernel: int) -> torch.Tensor:
    """Max over ``kernel`` neighbouring positions (SnapKV's clustering), same length."""
    if kernel <= 1:
        return score
    return torch.nn.functional.max_pool1d(score.unsqueeze(0), kernel, stride=1, padding=kernel // 2)[0]


def update_scores(e: Eviction, ext: dict[str, torch.Tensor], p_kv: torch.Tensor) -> torch.Tensor:
    """Fold this call's probabilities ``p_kv`` [Hkv, rows, T] into the layer's state ``ext``
    and return the ranking score [Hkv, T] of ``e.method`` (before pooling / granularity)."""
    hk, rows, t = p_kv.shape
    if e.method == "h2o":
        old = ext.get("score")
        acc = torch.zeros(hk, t, dtype=torch.float64)
        if old is not None:
            acc[:, : old.shape[1]] = old
        acc += p_kv.sum(dim=1).double()
        ext["score"] = acc
        return acc
    if e.method == "tova":
        return p_kv[:, -1].double()
    # snapkv: the last observation_window query rows vote
    old = ext.get("obs")
    new = p_kv.transpose(0, 1).double()  # [rows, Hkv, T]
    if old is not None:
        old = torch.cat([old, torch.zeros(old.shape[0], hk, t - old.shape[2], dtype=torch.float64)], dim=2)
        new = torch.cat([old, new], dim=0)
    ext["obs"] = new[-e.observation_window :]
    return pool_scores(ext["obs"].sum(dim=0), e.pooling)


def evict(e: Eviction, score: torch.Tensor, alive: torch.Tensor, keep: int) -> torch.Tensor:
    """The alive mask [Hkv, T] after eviction to ``keep`` tokens per K/V head.

    Forced tokens (sinks, recent) first, then the best ``score`` among the alive ones.
    ``granularity: layer`` ranks by the score summed over K/V heads (one set per layer);
    ``head_budgets: adaptive`` (AdaKV) keeps ``keep * Hkv`` tokens in all: each head its
    forced tokens and ``adaptive_floor * keep`` best, the rest by one top-k over all heads.
    """
    hk, t = score.shape
    if e.granularity == "layer":
        score = score.sum(dim=0, keepdim=True).expand(hk, t)
        alive = alive.all(dim=0, keepdim=True).expand(hk, t)
    forced = forced_mask(t, e.sink_tokens, e.recent_tokens).unsqueeze(0) & alive
    sc = score.masked_fill(forced, float("inf")).masked_fill(~alive, float("-inf"))
    if e.head_budgets == "uniform":
        return topk_mask(sc, keep) & alive
    floor = max(int(e.adaptive_floor * keep), int(forced.sum(dim=1).max()))
    first = topk_mask(sc, min(floor, t)) & alive
    rest = hk * keep - int(first.sum())
    if rest <= 0:
        return first
    flat = sc.masked_fill(first, float("-inf")).reshape(-1)
    second = topk_mask(flat, min(rest, flat.numel())).view(hk, t)
    return (first | second) & alive


def threshold_keep(pred: torch.Tensor, threshold: float, forced: torch.Tensor) -> torch.Tensor:
    """Keys kept by the threshold method: predicted probability >= ``threshold``, the forced
    positions, and each row's most probable key (a row never keeps nothing)."""
    best = torch.zeros_like(pred, dtype=torch.bool).scatter_(-1, pred.argmax(dim=-1, keepdim=True), True)
    return (pred >= threshold) | forced | best


def value_threshold_mask(p: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """V rows of value pruning by threshold (the accelerator's threshold mode, SPEC 2 step 5):
    ``p_j >= min(threshold, max_j p_j)`` along the last axis, so each row keeps its largest
    (``threshold``: a number, or one per row, shaped as ``p`` without its last axis)."""
    t = torch.as_tensor(threshold, dtype=p.dtype)
    if t.dim():
        t = t.unsqueeze(-1)
    return p >= torch.minimum(p.amax(dim=-1, keepdim=True), t)
