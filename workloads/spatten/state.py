"""Per-sequence SpAtten state: importance, surviving tokens and heads, and the record.

One ``SpAttenState`` follows one sequence (batch size 1) through a prefill call and any
number of decode calls. Token ids are absolute positions in the sequence (0 .. T-1).

Cascade semantics (the definition the tests check):
- ``alive[l]`` is the set of tokens layer ``l`` attends to. Within a call, the set of layer
  ``l`` is a subset of the set of layer ``l-1``; across calls, the set of layer ``l`` is a
  subset of its previous set plus the new tokens. So a token pruned at (call s, layer l)
  is never fetched again at any layer >= l of any call >= s.
- Token importance: the attention probability a token receives, summed over surviving
  heads and query rows, accumulated over all layers and calls (float64). With the
  policy's ``importance: average`` the ranking divides it by ``token_seen``, the number
  of (head, query row) requests that could attend to the token.
- Head importance: the sum of |output| of a head (over query rows and head dimension),
  accumulated by head index over all layers and calls. Within a call, the heads of layer
  ``l`` are a subset of those of layer ``l-1``; every call starts with all heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workloads.spatten.policy import Policy


@dataclass
class LayerRecord:
    """What one (call, layer) did: enough to write CSV rows and tensors for it."""

    call: int
    layer: int
    length: int  # sentence length L (tokens in the cache)
    kept_ids: torch.Tensor  # int64 [N] ascending token ids attended to
    topk_applied: bool  # kept set came from a top-k over more candidates
    heads: list[int]  # surviving (query) head ids, ascending
    value_count: int  # V rows summed per head and query row
    query_positions: list[int]  # absolute position of each recorded query row
    requant: torch.Tensor  # bool [n_heads_alive, n_rows]
    q: torch.Tensor | None = None  # float32 [n_heads_alive, n_rows, D] (after RoPE)
    out: torch.Tensor | None = None  # float32 [n_heads_alive, n_rows, D]
    # eviction/KIVI path (kvattention.py): one token list per K/V head (eviction keeps a set
    # per K/V head) and the V rows each (head, row) sums; None: ``kept_ids``/``value_count``
    kept_per_kv: list[torch.Tensor] | None = None
    value_counts: torch.Tensor | None = None  # int64 [n_heads_alive, n_rows]


@dataclass
class SpAttenState:
    """Mutable state of the SpAtten algorithm for one sequence."""

    policy: Policy
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    causal: bool
    record: bool = False
    record_tensors: bool = False
    record_prefill: bool = False
    call: int = -1
    length: int = 0
    token_importance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    token_seen: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    head_importance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    alive: list[torch.Tensor] = field(default_factory=list)  # per layer, bool [T]
    alive_heads: list[torch.Tensor] = field(default_factory=list)  # per layer, bool [H], this call
    records: list[LayerRecord] = field(default_factory=list)
    last_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    softmax_scale: dict[int, float] = field(default_factory=dict)  # per layer, as the model passed it
    call_query_len: int = 0
    # K/V bits read and dense bits (16-bit K and V, all tokens) over counted requests
    # (causal: decode calls; encoders: every call), per query head and query row.
    kv_bits: float = 0.0
    kv_dense_bits: float = 0.0
    ext: dict[str, object] = field(default_factory=dict)
    parallel_from: int | None = None  # parallel.py: rows from here on are decode rows  # kvattention.py's per-sequence state

    def reset(self) -> None:
        """Forget everything (a new sequence starts)."""
        self.call = -1
        self.length = 0
        self.token_importance = torch.zeros(0, dtype=torch.float64)
        self.token_seen = torch.zeros(0, dtype=torch.float64)
        self.head_importance = torch.zeros(self.n_heads, dtype=torch.float64)
        self.alive = [torch.zeros(0, dtype=torch.bool) for _ in range(self.n_layers)]
        self.alive_heads = [torch.ones(self.n_heads, dtype=torch.bool) for _ in range(self.n_layers)]
        self.records = []
        self.last_kv = {}
        self.kv_bits = 0.0
        self.kv_dense_bits = 0.0
        self.ext = {}

    def counts_bytes(self) -> bool:
        """Whether this call's requests count in ``kv_bits`` (decode calls; encoder calls)."""
        return not self.causal or self.call_query_len == 1

    def begin_call(self, total_len: int, query_len: int) -> None:
        """Start a forward call whose cache holds ``total_len`` tokens, ``query_len`` new."""
        if total_len == query_len or total_len < self.length:
            self.reset()  # no cache: a new sequence starts
        new = total_len - self.length
        if new < 0:
            raise RuntimeError("SpAtten state: the cache shrank; use one state per sequence")
        self.call += 1
        self.call_query_len = query_len
        self.token_importance = torch.cat([self.token_importance, torch.zeros(new, dtype=torch.float64)])
        self.token_seen = torch.cat([self.token_seen, torch.zeros(new, dtype=torch.float64)])
        self.alive = [torch.cat([a, torch.ones(new, dtype=torch.bool)]) for a in self.alive]
        self.alive_heads = [torch.ones(self.n_heads, dtype=torch.bool) for _ in range(self.n_layers)]
        self.length = total_len

    def prunes_this_call(self) -> bool:
        """Whether pruning applies in the current call (causal prefill may stay dense)."""
        if not self.causal:
            return True
        is_prefill = self.call_query_len > 1
        return not is_prefill or self.policy.prefill == "pruned"
