"""The ``eviction`` section of a policy: KV-cache methods beside SpAtten's cascade.

YAML (every key optional; unknown keys are errors)::

    eviction:
      enabled: true
      method: h2o            # streaming | longformer | h2o | tova | snapkv | threshold
      budget: 0.25           # fraction of the cache's tokens each K/V head keeps
      sink_tokens: 4         # first tokens always kept (attention sinks / global tokens)
      recent_tokens: 32      # most recent tokens always kept (h2o, tova, snapkv, threshold)
      min_tokens: 16         # never fewer kept tokens than this
      start_layer: 0         # layers before it stay dense
      granularity: kv_head   # kv_head (one kept set per K/V head) | layer (one per layer)
      observation_window: 32 # snapkv: the last queries that vote
      pooling: 7             # snapkv: max-pool kernel over token positions (odd; 1 = none)
      layer_spread: 0.0      # pyramidkv: budget * (1 + spread) at layer 0 down to
                             # budget * (1 - spread) at the last layer (mean = budget)
      head_budgets: uniform  # uniform | adaptive (AdaKV: one top-k over all heads of a layer)
      adaptive_floor: 0.2    # adaptive: each head keeps at least this share of its budget
      global_stride: 0       # longformer: every n-th token is global too (0: none)
      threshold: 0.0         # threshold: keep keys whose predicted probability >= this

Methods (``workloads/spatten/selection.py`` has the code, ``kvattention.py`` the order):

- ``streaming`` (StreamingLLM): sinks + the most recent ``budget * T - sinks`` tokens.
- ``longformer``: a static pattern: global tokens (the sinks and every ``global_stride``-th
  token) + a local window filling the budget.
- ``h2o``: after each call, keep the sinks, the recent window and the heavy hitters by
  attention received, summed over every query so far; evicted tokens never return.
- ``tova``: as h2o, but ranked by the current query's attention only.
- ``snapkv``: as h2o, ranked by the attention of the last ``observation_window`` queries
  (prefill rows, then decode rows), max-pooled over ``pooling`` neighbouring positions.
- ``threshold`` (Sanger): every call, per query head, probabilities predicted from the
  MSB-only keys and query (needs ``quantization``); keys whose predicted probability is at
  least ``threshold`` (plus sinks and recent) are attended to with the full keys. The
  prediction reads every candidate's MSBs; only kept keys fetch LSBs and values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METHODS = ("streaming", "longformer", "h2o", "tova", "snapkv", "threshold")
SCORED = ("h2o", "tova", "snapkv")


@dataclass(frozen=True)
class Eviction:
    """A KV-cache selection method (see the module docstring)."""

    enabled: bool = False
    method: str = "h2o"
    budget: float = 1.0
    sink_tokens: int = 4
    recent_tokens: int = 32
    min_tokens: int = 16
    start_layer: int = 0
    granularity: str = "kv_head"
    observation_window: int = 32
    pooling: int = 7
    layer_spread: float = 0.0
    head_budgets: str = "uniform"
    adaptive_floor: float = 0.2
    global_stride: int = 0
    threshold: float = 0.0

    def layer_budget(self, layer: int, n_layers: int) -> float:
        """Kept fraction of ``layer`` (1 before ``start_layer``; pyramid when spread > 0)."""
        if layer < self.start_layer:
            return 1.0
        n = n_layers - self.start_layer
        if n <= 1 or self.layer_spread == 0.0:
            return self.budget
        x = (layer - self.start_layer) / (n - 1)
        return min(1.0, self.budget * (1.0 + self.layer_spread * (1.0 - 2.0 * x)))

    def keep_count(self, layer: int, n_layers: int, length: int) -> int:
        """Tokens each K/V head of ``layer`` keeps out of ``length``."""
        k = math.ceil(self.layer_budget(layer, n_layers) * length - 1e-9)
        return min(length, max(k, self.min_tokens))


def validate_eviction(e: Eviction, src: str, fail, quant_enabled: bool) -> None:
    """Raise ``fail(src, key, msg)`` for an invalid ``eviction`` section."""
    if e.method not in METHODS:
        raise fail(src, "eviction.method", f"expected one of {', '.join(METHODS)}, got {e.method!r}")
    if not 0.0 < e.budget <= 1.0:
        raise fail(src, "eviction.budget", f"must be in (0, 1], got {e.budget}")
    for key in ("sink_tokens", "recent_tokens", "start_layer", "global_stride"):
        if getattr(e, key) < 0:
            raise fail(src, f"eviction.{key}", "must be >= 0")
    if e.min_tokens < 1:
        raise fail(src, "eviction.min_tokens", "must be >= 1")
    if e.granularity not in ("kv_head", "layer"):
        raise fail(src, "eviction.granularity", f"expected 'kv_head' or 'layer', got {e.granularity!r}")
    if e.observation_window < 1:
        raise fail(src, "eviction.observation_window", "must be >= 1")
    if e.pooling < 1 or e.pooling % 2 == 0:
        raise fail(src, "eviction.pooling", f"must be an odd number >= 1, got {e.pooling}")
    if not 0.0 <= e.layer_spread < 1.0:
        raise fail(src, "eviction.layer_spread", f"must be in [0, 1), got {e.layer_spread}")
    if e.head_budgets not in ("uniform", "adaptive"):
        raise fail(src, "eviction.head_budgets", f"expected 'uniform' or 'adaptive', got {e.head_budgets!r}")
    if e.head_budgets == "adaptive" and (e.method not in SCORED or e.granularity != "kv_head"):
        raise fail(src, "eviction.head_budgets", "adaptive budgets need a scored method (h2o, tova, snapkv) "
                   "and granularity kv_head")
    if not 0.0 <= e.adaptive_floor <= 1.0:
        raise fail(src, "eviction.adaptive_floor", f"must be in [0, 1], got {e.adaptive_floor}")
    if not 0.0 <= e.threshold < 1.0:
        raise fail(src, "eviction.threshold", f"must be in [0, 1), got {e.threshold}")
    if e.method == "threshold":
        if e.threshold <= 0.0:
            raise fail(src, "eviction.threshold", "the threshold method needs a threshold > 0")
        if not quant_enabled:
            raise fail(src, "eviction.method", "threshold predicts from MSB-only keys: enable quantization")
