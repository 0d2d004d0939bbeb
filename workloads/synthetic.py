"""Synthetic grouped-query long-context workloads: the SpAtten algorithm on seeded data.

No model and no text: for every layer and K/V head, keys and values are drawn from a seeded
generator with the structure that makes pruning meaningful (a few attention sinks and
"heavy hitter" tokens that every query of the head favours, over a Gaussian background
whose spread differs from head to head, so that some heads are peaked and some flat), and
every decode step draws a fresh query per query head. The PyTorch SpAtten algorithm
(``workloads.spatten.attention``, the same function a Hugging Face model runs) prunes and
quantizes it under a policy; the rows and tensors are those ``tools/gen_workload.py``
writes (``workloads.csvschema``), so ``run.py`` simulates the result functionally and
bit-exactly::

    from workloads.synthetic import SyntheticSpec, generate_synthetic
    built, meta = generate_synthetic(SyntheticSpec(seed=1), policy)

The cache holds ``context`` tokens before the first recorded decode step (their K/V exist
already, as after a prefill whose attention is not recorded, so importance starts at zero)
and grows by one token a step. Deterministic: the same spec gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import numpy as np
import torch

from workloads.spatten.attention import spatten_attention_forward
from workloads.spatten.export import BuiltWorkload, build_workload
from workloads.spatten.policy import Policy
from workloads.spatten.state import SpAttenState

__all__ = ["SyntheticSpec", "generate_synthetic", "synthetic_kv", "synthetic_query"]


@dataclass(frozen=True)
class SyntheticSpec:
    """The shape and the seed of a synthetic decode workload.

    ``heavy_fraction`` of the tokens (and the first ``sinks``) carry a key component of
    ``heavy_gain`` along the head's shared query direction; the background logits have a
    standard deviation drawn per (layer, K/V head) from ``logit_std``."""

    layers: int = 4
    q_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    context: int = 8192
    steps: int = 2
    seed: int = 1
    sinks: int = 4
    heavy_fraction: float = 0.01
    heavy_gain: float = 3.0
    query_bias: float = 2.0
    logit_std: tuple[float, float] = (1.0, 2.5)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("layers", "q_heads", "kv_heads", "head_dim", "context", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads ({self.q_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if not 0.0 <= self.heavy_fraction <= 1.0:
            raise ValueError(f"heavy_fraction must be in [0, 1], got {self.heavy_fraction}")
        if self.sinks < 0 or self.sinks > self.context:
            raise ValueError(f"sinks must be in 0..context, got {self.sinks}")
        lo, hi = self.logit_std
        if not 0.0 < lo <= hi:
            raise ValueError(f"logit_std must be (low, high) with 0 < low <= high, got {self.logit_std}")

    @property
    def tokens(self) -> int:
        """Tokens in the cache after the last step."""
        return self.context + self.steps


def _direction(spec: SyntheticSpec, layer: int, kvh: int) -> np.ndarray:
    """The unit vector the queries of (layer, K/V head) lean towards."""
    g = np.random.default_rng([spec.seed, 1, layer, kvh])
    u = g.standard_normal(spec.head_dim)
    return u / np.linalg.norm(u)


def synthetic_kv(spec: SyntheticSpec, layer: int, kvh: int) -> tuple[np.ndarray, np.ndarray]:
    """K and V of one (layer, K/V head): float32 ``[tokens, head_dim]`` each.

    Keys are ``sigma * N(0, I)`` (with a query of norm about ``sqrt(D)`` the logit
    ``q.k / sqrt(D)`` has standard deviation about ``sigma``), plus ``heavy_gain * sqrt(D) * u``
    on the sinks and the heavy tokens (logit ``heavy_gain * (query_bias + N(0, 1))`` more);
    values are ``N(0, I)``; all rounded to float16."""
    g = np.random.default_rng([spec.seed, 2, layer, kvh])
    d, t = spec.head_dim, spec.tokens
    lo, hi = spec.logit_std
    sigma = g.uniform(lo, hi)
    k = g.standard_normal((t, d)) * sigma
    heavy = g.random(t) < spec.heavy_fraction
    heavy[: spec.sinks] = True
    u = _direction(spec, layer, kvh)
    k[heavy] += spec.heavy_gain * math.sqrt(d) * u
    v = g.standard_normal((t, d))
    # float16 values (as the .npz stores them), so the algorithm sees what the run will
    return k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)


def synthetic_query(spec: SyntheticSpec, step: int, layer: int, head: int) -> np.ndarray:
    """The query of one (step, layer, query head): ``N(0, I)`` plus ``query_bias`` times
    its K/V head's direction ``u`` (float32 ``[head_dim]``)."""
    g = np.random.default_rng([spec.seed, 3, step, layer, head])
    kvh = head // (spec.q_heads // spec.kv_heads)
    q = g.standard_normal(spec.head_dim) + spec.query_bias * _direction(spec, layer, kvh)
    return q.astype(np.float32)


def generate_synthetic(spec: SyntheticSpec, policy: Policy,
                       on_step=None) -> tuple[BuiltWorkload, dict[str, object]]:
    """Run ``policy`` over ``spec``'s decode steps; returns the rows and tensors (as
    ``workloads.spatten.export.build_workload`` with tensors) and the ``meta`` dict."""
    spec.check()
    state = SpAttenState(policy=policy, n_layers=spec.layers, n_heads=spec.q_heads, n_kv_heads=spec.kv_heads,
                         head_dim=spec.head_dim, causal=True, record=True, record_tensors=True)
    state.reset()
    scale = spec.head_dim ** -0.5
    kv = [[synthetic_kv(spec, layer, h) for h in range(spec.kv_heads)] for layer in range(spec.layers)]
    modules = [SimpleNamespace(_spatten_state=state, _spatten_layer=layer) for layer in range(spec.layers)]
    with torch.no_grad():
        for step in range(spec.steps):
            tk = spec.context + step + 1  # the cache after this step's token is appended
            for layer in range(spec.layers):
                k = torch.from_numpy(np.stack([kv[layer][h][0][:tk] for h in range(spec.kv_heads)])).unsqueeze(0)
                v = torch.from_numpy(np.stack([kv[layer][h][1][:tk] for h in range(spec.kv_heads)])).unsqueeze(0)
                q = torch.from_numpy(np.stack([synthetic_query(spec, step, layer, h)
                                               for h in range(spec.q_heads)]))[None, :, None, :]
                spatten_attention_forward(modules[layer], q, k, v, None, scaling=scale)
            if on_step:
                on_step(step)
    meta: dict[str, object] = {
        "model": f"synthetic-gqa-seed{spec.seed}",
        "model_type": "synthetic",
        "n_layers": spec.layers,
        "n_heads": spec.q_heads,
        "n_kv_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "causal": True,
        "softmax_scale": scale,
        "softmax_scale_per_layer": [scale] * spec.layers,
        "context": spec.context,
        "steps": spec.steps,
        "policy": policy.name,
        "synthetic": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
        "dtypes": {"q": "float32", "out_ref": "float32", "k": "float16", "v": "float16"},
    }
    built = build_workload(state, tensors=True, meta=meta, kv_dtype="float16")
    return built, meta
