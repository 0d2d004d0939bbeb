"""SpAtten pruning policies: dataclasses, schedules and strict YAML loading.

A policy says, for every layer of a model, how many tokens and heads survive, how many V
rows each head sums (local value pruning) and how K, Q and V are quantized (progressive
quantization). Presets live in ``workloads/policies/<name>.yaml``; ``load_policy`` accepts
a preset name or a path to a YAML file.

YAML layout (every key optional except ``name``; unknown keys are errors)::

    name: spatten-default
    description: free text
    prefill: dense            # dense | pruned  (causal models; encoders always prune)
    token_pruning:
      enabled: true
      schedule: {start: 0.1, end: 0.5, final_keep: 0.3}
      sink_tokens: 4          # first tokens never pruned (attention sinks)
      recent_tokens: 32       # most recent tokens never pruned
      min_tokens: 16          # never keep fewer than this many
      importance: cumulative  # cumulative (SpAtten: sum of received probability) or
                              # average (that sum / the requests that could attend to the token)
    head_pruning:
      enabled: false
      schedule: {start: 0.5, end: 1.0, final_keep: 0.75}
      min_heads: 1
    value_pruning:
      enabled: true
      keep: 0.3               # fraction of the kept tokens whose V rows each head sums
      min_tokens: 8
    quantization:
      enabled: true
      key_msb_bits: 8         # bits fetched first (quant_key_bit)
      key_lsb_bits: 4         # extra bits fetched on requantization (auto_requant_incre)
      query_bits: 16
      value_bits: 8
      requant_threshold: 0.1  # recompute with full K when max probability < this
      key_axis: tensor        # tensor (one K scale per layer and K/V head) | channel
                              # (KIVI: one scale per channel, per group of group_tokens tokens)
      value_axis: tensor      # tensor | token (KIVI: one scale per V row) | channel
      asymmetric: false       # min/max codes with a zero point (KIVI) instead of symmetric
      group_tokens: 0         # key_axis channel: tokens per scale group (0: the whole cache)
      residual_tokens: 0      # most recent tokens kept at 16 bits (KIVI's residual)
    eviction: {...}           # KV-cache methods, see eviction_policy.py

Which of these the accelerator runs is ``workloads/spatten/hardware.py``'s question.

Schedules (``start``, ``end``: fractions of the model depth) keep everything in layers
``l < round(start * n_layers)``, then ramp the keep ratio linearly down to ``final_keep``,
reached at layer ``round(end * n_layers) - 1`` and held to the last layer: "no pruning
in the first layers, then a ramp", as in the SpAtten paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from workloads.spatten.eviction_policy import Eviction, validate_eviction

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
DEFAULT_POLICY = "spatten-default"


class PolicyError(ValueError):
    """A policy file or value is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Schedule:
    """Keep ratio per layer: 1.0 before ``start``, linear ramp, ``final_keep`` from ``end``."""

    start: float = 0.0
    end: float = 0.0
    final_keep: float = 1.0

    def first_layer(self, n_layers: int) -> int:
        """Index of the first layer whose keep ratio may be below 1."""
        return min(n_layers, round(self.start * n_layers))

    def ratio(self, layer: int, n_layers: int) -> float:
        """Keep ratio of ``layer`` (0-based) in a model of ``n_layers`` layers."""
        s = self.first_layer(n_layers)
        e = max(s + 1, min(n_layers, round(self.end * n_layers)))
        if layer < s:
            return 1.0
        if layer >= e - 1:
            return self.final_keep
        return 1.0 + (self.final_keep - 1.0) * (layer - s + 1) / (e - s)


@dataclass(frozen=True)
class TokenPruning:
    """Cascade token pruning by cumulative importance."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=Schedule)
    sink_tokens: int = 0
    recent_tokens: int = 1
    min_tokens: int = 1
    importance: str = "cumulative"

    def keep_count(self, layer: int, n_layers: int, length: int) -> int:
        """Tokens kept at ``layer`` when the sequence has ``length`` tokens."""
        if not self.enabled:
            return length
        k = math.ceil(self.schedule.ratio(layer, n_layers) * length - 1e-9)
        return min(length, max(k, self.min_tokens))


@dataclass(frozen=True)
class HeadPruning:
    """Cascade head pruning by accumulated output magnitude."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=Schedule)
    min_heads: int = 1

    def keep_count(self, layer: int, n_layers: int, n_heads: int) -> int:
        """Heads kept at ``layer``."""
        if not self.enabled:
            return n_heads
        k = math.ceil(self.schedule.ratio(layer, n_layers) * n_heads - 1e-9)
        return min(n_heads, max(k, self.min_heads))


@dataclass(frozen=True)
class ValuePruning:
    """Local value pruning: each head sums the V rows of its top-k probabilities, or, with
    ``threshold > 0``, those whose probability is at least ``min(threshold, its largest)``;
    ``relative_threshold > 0`` sets that threshold per request to ``relative_threshold / N``
    (``N`` the keys the head attends: relative to uniform attention, so that longer caches
    do not prune more of the mass). ``keep`` and ``min_tokens`` are unused with either."""

    enabled: bool = False
    keep: float = 1.0
    min_tokens: int = 1
    threshold: float = 0.0
    relative_threshold: float = 0.0

    @property
    def thresholded(self) -> bool:
        """Value pruning by threshold (the accelerator's threshold mode)."""
        return self.enabled and (self.threshold > 0 or self.relative_threshold > 0)

    def threshold_for(self, n: int) -> float:
        """The threshold of a request over ``n`` keys (``thresholded`` policies)."""
        return self.relative_threshold / max(n, 1) if self.relative_threshold > 0 else self.threshold

    def keep_count(self, n_kept: int) -> int:
        """V rows summed per head when ``n_kept`` tokens survive."""
        if not self.enabled:
            return n_kept
        k = math.ceil(self.keep * n_kept - 1e-9)
        return min(n_kept, max(k, self.min_tokens))


@dataclass(frozen=True)
class Quantization:
    """Progressive quantization (all widths signed, symmetric linear)."""

    enabled: bool = False
    key_msb_bits: int = 8
    key_lsb_bits: int = 4
    query_bits: int = 16
    value_bits: int = 8
    requant_threshold: float = 0.1
    key_axis: str = "tensor"
    value_axis: str = "tensor"
    asymmetric: bool = False
    group_tokens: int = 0
    residual_tokens: int = 0

    @property
    def kivi(self) -> bool:
        """True when a KIVI-style feature (axes, zero points, groups, residual) is used."""
        return self.enabled and (
            self.key_axis != "tensor" or self.value_axis != "tensor" or self.asymmetric
            or self.group_tokens > 0 or self.residual_tokens > 0
        )

    @property
    def progressive(self) -> bool:
        """True when an MSB-only pass may be followed by a full-precision one."""
        return self.enabled and self.key_lsb_bits > 0 and self.requant_threshold > 0


@dataclass(frozen=True)
class Policy:
    """A complete SpAtten pruning configuration."""

    name: str
    description: str = ""
    prefill: str = "dense"
    token_pruning: TokenPruning = field(default_factory=TokenPruning)
    head_pruning: HeadPruning = field(default_factory=HeadPruning)
    value_pruning: ValuePruning = field(default_factory=ValuePruning)
    quantization: Quantization = field(default_factory=Quantization)
    eviction: Eviction = field(default_factory=Eviction)
    source: str = ""

    @property
    def extended(self) -> bool:
        """True when the policy needs ``kvattention.py`` (eviction or KIVI quantization)."""
        return self.eviction.enabled or self.quantization.kivi or self.value_pruning.thresholded

    @property
    def is_dense(self) -> bool:
        """True when the policy changes nothing (exact dense attention)."""
        return not (
            self.token_pruning.enabled
            or self.head_pruning.enabled
            or self.value_pruning.enabled
            or self.quantization.enabled
            or self.eviction.enabled
        )


def _fail(src: str, key: str, msg: str) -> PolicyError:
    return PolicyError(f"{src}: {key}: {msg}")


def _check_type(src: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise _fail(src, key, f"expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(src, key, f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(src, key, f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise _fail(src, key, f"expected a string, got {value!r}")
        return value
    raise TypeError(kind)


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _build(cls: type, data: Any, src: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(src, prefix or "<top>", f"expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise _fail(src, path, f"unknown key (expected one of: {', '.join(sorted(known))})")
        ftype = known[key].type
        if ftype in _SCALARS:
            kwargs[key] = _check_type(src, path, value, _SCALARS[ftype])
        else:
            sub = {
                "Schedule": Schedule,
                "TokenPruning": TokenPruning,
                "HeadPruning": HeadPruning,
                "ValuePruning": ValuePruning,
                "Quantization": Quantization,
                "Eviction": Eviction,
            }[ftype]
            kwargs[key] = _build(sub, value, src, path)
    return cls(**kwargs)


def _validate(p: Policy, src: str) -> None:
    if not p.name:
        raise _fail(src, "name", "missing or empty")
    if p.prefill not in ("dense", "pruned"):
        raise _fail(src, "prefill", f"expected 'dense' or 'pruned', got {p.prefill!r}")
    for sec, sched in (("token_pruning", p.token_pruning.schedule), ("head_pruning", p.head_pruning.schedule)):
        if not 0.0 <= sched.start <= 1.0:
            raise _fail(src, f"{sec}.schedule.start", f"must be in [0, 1], got {sched.start}")
        if not sched.start <= sched.end <= 1.0:
            raise _fail(src, f"{sec}.schedule.end", f"must be in [start, 1], got {sched.end}")
        if not 0.0 < sched.final_keep <= 1.0:
            raise _fail(src, f"{sec}.schedule.final_keep", f"must be in (0, 1], got {sched.final_keep}")
    tp = p.token_pruning
    if tp.importance not in ("cumulative", "average"):
        raise _fail(src, "token_pruning.importance", f"expected 'cumulative' or 'average', got {tp.importance!r}")
    for key in ("sink_tokens", "recent_tokens"):
        if getattr(tp, key) < 0:
            raise _fail(src, f"token_pruning.{key}", "must be >= 0")
    if tp.min_tokens < 1:
        raise _fail(src, "token_pruning.min_tokens", "must be >= 1")
    if p.head_pruning.min_heads < 1:
        raise _fail(src, "head_pruning.min_heads", "must be >= 1")
    vp = p.value_pruning
    if not 0.0 < vp.keep <= 1.0:
        raise _fail(src, "value_pruning.keep", f"must be in (0, 1], got {vp.keep}")
    if vp.min_tokens < 1:
        raise _fail(src, "value_pruning.min_tokens", "must be >= 1")
    if not 0.0 <= vp.threshold < 1.0:
        raise _fail(src, "value_pruning.threshold", f"must be in [0, 1), got {vp.threshold}")
    if not 0.0 <= vp.relative_threshold < 1.0:
        raise _fail(src, "value_pruning.relative_threshold", f"must be in [0, 1), got {vp.relative_threshold}")
    if vp.threshold > 0 and vp.relative_threshold > 0:
        raise _fail(src, "value_pruning.relative_threshold", "set threshold or relative_threshold, not both")
    q = p.quantization
    if not 1 <= q.key_msb_bits <= 16:
        raise _fail(src, "quantization.key_msb_bits", f"must be in 1..16, got {q.key_msb_bits}")
    if not 0 <= q.key_lsb_bits <= 15 or q.key_msb_bits + q.key_lsb_bits > 16:
        raise _fail(src, "quantization.key_lsb_bits", "must be in 0..15 with key_msb_bits + key_lsb_bits <= 16")
    if not 2 <= q.query_bits <= 16:
        raise _fail(src, "quantization.query_bits", f"must be in 2..16, got {q.query_bits}")
    if not 2 <= q.value_bits <= 16:
        raise _fail(src, "quantization.value_bits", f"must be in 2..16, got {q.value_bits}")
    if not 0.0 <= q.requant_threshold <= 1.0:
        raise _fail(src, "quantization.requant_threshold", f"must be in [0, 1], got {q.requant_threshold}")
    if q.key_axis not in ("tensor", "channel"):
        raise _fail(src, "quantization.key_axis", f"expected 'tensor' or 'channel', got {q.key_axis!r}")
    if q.value_axis not in ("tensor", "token", "channel"):
        raise _fail(src, "quantization.value_axis", f"expected 'tensor', 'token' or 'channel', got {q.value_axis!r}")
    if q.group_tokens < 0 or (q.group_tokens > 0 and q.key_axis != "channel"):
        raise _fail(src, "quantization.group_tokens", "must be >= 0, and > 0 only with key_axis: channel")
    if q.residual_tokens < 0:
        raise _fail(src, "quantization.residual_tokens", "must be >= 0")
    if p.eviction.enabled:
        validate_eviction(p.eviction, src, _fail, q.enabled)
    if p.extended and p.head_pruning.enabled:
        raise _fail(src, "head_pruning", "cannot be combined with eviction, KIVI quantization or a value_pruning threshold")
    if p.extended and p.prefill != "dense":
        raise _fail(src, "prefill", "eviction and KIVI quantization policies need a dense prefill")


def policy_from_dict(data: Any, source: str = "<dict>") -> Policy:
    """Build and validate a policy from parsed YAML; errors name ``source`` and the key."""
    if not isinstance(data, dict) or not data.get("name"):
        raise _fail(source, "name", "missing or empty (every policy needs a name)")
    p = _build(Policy, data, source, "")
    _validate(p, source)
    return Policy(**{f.name: getattr(p, f.name) for f in fields(Policy) if f.name != "source"}, source=source)


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(x.stem for x in POLICY_DIR.glob("*.yaml"))


def load_policy(spec: str | Path) -> Policy:
    """Load a preset by name (``dense``, ``spatten-paper``, ...) or a YAML file by path."""
    path = Path(spec)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        candidate = POLICY_DIR / f"{spec}.yaml"
        if not candidate.exists():
            raise PolicyError(
                f"unknown policy {str(spec)!r}: not a file and not a preset "
                f"(presets: {', '.join(preset_names())})"
            )
        path = candidate
    if not path.is_file():
        raise PolicyError(f"{path}: policy file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not a text file: {exc}") from exc
    return policy_from_dict(data, str(path))
