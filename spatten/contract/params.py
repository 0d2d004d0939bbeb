"""Hardware parameters as seen from Python.

The Scala case class ``spatten.SpAttenParams`` is the single source of truth: elaboration
writes them into ``contract.json`` (key ``params``; keys in ``hardware/SPEC.md`` section 7)
and Python reads them here, never restating a width or a size. Every elaboration directory
has that file; ``spatten.sim.build.contract_json(preset)`` produces and caches it for a
named preset without elaborating hardware. :func:`load_params` also reads a bare
``params.json`` object.

Public API::

    p = load_params("build/.../contract.json")   # HwParams, validated
    p = from_dict(d, source="...")       # same, from an already parsed dict
    p.max_tokens, p.burst_bytes, ...     # snake_case attributes
    p.to_dict()                          # back to the JSON keys

Every key the Scala side writes is required and type-checked; a missing key, a wrong type
or a value the hardware would reject raises :class:`ParamsError` naming the file and the
key. Keys this module does not know yet are kept in :attr:`HwParams.extra` (so that adding
a parameter on the Scala side does not break readers that do not use it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from spatten.errors import ParamsError

__all__ = ["HwParams", "ParamsError", "load_params", "from_dict", "JSON_KEYS"]


# JSON key -> (attribute name, python type)
JSON_KEYS: dict[str, tuple[str, type]] = {
    "preset": ("preset", str),
    "maxHeadDim": ("max_head_dim", int),
    "maxTokens": ("max_tokens", int),
    "maxHeads": ("max_heads", int),
    "dotLanes": ("dot_lanes", int),
    "numChannels": ("num_channels", int),
    "burstBytes": ("burst_bytes", int),
    "dramAddrBits": ("dram_addr_bits", int),
    "topkParallelism": ("topk_parallelism", int),
    "clockMHz": ("clock_mhz", int),
    "maxInflight": ("max_inflight", int),
    "wordBits": ("word_bits", int),
    "expLutFracBits": ("exp_lut_frac_bits", int),
    "probFracBits": ("prob_frac_bits", int),
    "recipShift": ("recip_shift", int),
    "importanceBits": ("importance_bits", int),
    "headImportanceBits": ("head_importance_bits", int),
    "dataBits": ("data_bits", int),
    "maxRowBytes": ("max_row_bytes", int),
    "maxGroupHeads": ("max_group_heads", int),
    "keysPerCycle": ("keys_per_cycle", int),
}


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class HwParams:
    """One hardware configuration (SPEC section 7). Attributes mirror the JSON keys in
    snake_case; see ``SpAttenParams.scala`` for their meaning."""

    preset: str
    max_head_dim: int
    max_tokens: int
    max_heads: int
    dot_lanes: int
    num_channels: int
    burst_bytes: int
    dram_addr_bits: int
    topk_parallelism: int
    clock_mhz: int
    max_inflight: int
    word_bits: int
    exp_lut_frac_bits: int
    prob_frac_bits: int
    recip_shift: int
    importance_bits: int
    head_importance_bits: int
    data_bits: int
    max_row_bytes: int
    max_group_heads: int
    keys_per_cycle: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- derived values used by the host side -------------------------------------------
    @property
    def imp_max(self) -> int:
        """Saturation value of a token importance counter."""
        return (1 << self.importance_bits) - 1

    @property
    def head_imp_max(self) -> int:
        """Saturation value of a head importance counter."""
        return (1 << self.head_importance_bits) - 1

    @property
    def addr_limit(self) -> int:
        """First byte address that is out of range (``2^dramAddrBits``)."""
        return 1 << self.dram_addr_bits

    def to_dict(self) -> dict[str, Any]:
        """The parameters under their JSON keys (unknown keys included)."""
        d: dict[str, Any] = {k: getattr(self, a) for k, (a, _) in JSON_KEYS.items()}
        d.update(self.extra)
        return d


def _check(p: HwParams, source: str) -> None:
    """Reject values the Scala ``require``s or the fixed-point formats rule out."""

    def bad(key: str, msg: str) -> ParamsError:
        return ParamsError(f"{source}: key '{key}': {msg}")

    if not 1 <= p.max_head_dim <= 255:
        raise bad("maxHeadDim", f"must be in 1..255, got {p.max_head_dim}")
    if not 1 <= p.max_tokens <= 65535:
        raise bad("maxTokens", f"must be in 1..65535, got {p.max_tokens}")
    if not 1 <= p.max_heads <= 255:
        raise bad("maxHeads", f"must be in 1..255, got {p.max_heads}")
    if p.dot_lanes < 1:
        raise bad("dotLanes", f"must be positive, got {p.dot_lanes}")
    if not (_is_pow2(p.keys_per_cycle) and p.keys_per_cycle <= p.dot_lanes):
        raise bad("keysPerCycle", f"must be a power of two in 1..dotLanes, got {p.keys_per_cycle}")
    if not _is_pow2(p.num_channels):
        raise bad("numChannels", f"must be a power of two, got {p.num_channels}")
    if not (_is_pow2(p.burst_bytes) and p.burst_bytes >= 8):
        raise bad("burstBytes", f"must be a power of two >= 8, got {p.burst_bytes}")
    if not 16 <= p.dram_addr_bits <= 48:
        raise bad("dramAddrBits", f"must be in 16..48, got {p.dram_addr_bits}")
    if not _is_pow2(p.topk_parallelism):
        raise bad("topkParallelism", f"must be a power of two, got {p.topk_parallelism}")
    if p.max_inflight < 1:
        raise bad("maxInflight", f"must be positive, got {p.max_inflight}")
    if p.word_bits != 64:
        raise bad("wordBits", f"the command/response words are 64-bit (SPEC 5), got {p.word_bits}")
    if not 1 <= p.exp_lut_frac_bits <= 16:
        raise bad("expLutFracBits", f"must be in 1..16, got {p.exp_lut_frac_bits}")
    if not 1 <= p.prob_frac_bits <= 24:
        raise bad("probFracBits", f"must be in 1..24, got {p.prob_frac_bits}")
    if not p.prob_frac_bits < p.recip_shift <= 62:
        raise bad("recipShift", f"must be in probFracBits+1..62, got {p.recip_shift}")
    if not 1 <= p.importance_bits <= 63:
        raise bad("importanceBits", f"must be in 1..63, got {p.importance_bits}")
    if not 1 <= p.head_importance_bits <= 63:
        raise bad("headImportanceBits", f"must be in 1..63, got {p.head_importance_bits}")
    if p.data_bits != 16:
        raise bad("dataBits", f"q, K and V containers are 16-bit (SPEC 1), got {p.data_bits}")
    want_row = ((p.max_head_dim * p.data_bits // 8 + p.burst_bytes - 1) // p.burst_bytes) * p.burst_bytes
    if p.max_row_bytes != want_row:
        raise bad("maxRowBytes", f"inconsistent with maxHeadDim/burstBytes: expected {want_row}, "
                  f"got {p.max_row_bytes}")


def from_dict(d: Mapping[str, Any], source: str = "<dict>") -> HwParams:
    """Build and validate :class:`HwParams` from the parsed JSON object ``d``.

    ``source`` names where ``d`` came from in error messages (a file path)."""
    if not isinstance(d, Mapping):
        raise ParamsError(f"{source}: expected a JSON object, got {type(d).__name__}")
    kwargs: dict[str, Any] = {}
    for key, (attr, typ) in JSON_KEYS.items():
        if key not in d:
            raise ParamsError(f"{source}: missing key '{key}'")
        val = d[key]
        # bool is an int subclass in Python; JSON true/false is never a valid size.
        if typ is int and (isinstance(val, bool) or not isinstance(val, int)):
            raise ParamsError(f"{source}: key '{key}': expected an integer, got {val!r}")
        if typ is str and not isinstance(val, str):
            raise ParamsError(f"{source}: key '{key}': expected a string, got {val!r}")
        kwargs[attr] = val
    extra = {k: v for k, v in d.items() if k not in JSON_KEYS}
    p = HwParams(**kwargs, extra=extra)
    _check(p, source)
    return p


def load_params(path: str | Path) -> HwParams:
    """Read and validate the parameters of a ``contract.json`` (or a ``params.json``)
    written by ``spatten.Elaborate``. The one loader of parameters in the project."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ParamsError(f"{path}: cannot read parameter file: {e.strerror}") from e
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParamsError(f"{path}: not valid JSON: {e}") from e
    if isinstance(d, dict) and "contractVersion" in d:
        return from_dict(d.get("params"), source=f"{path}: params")
    return from_dict(d, source=str(path))


# dataclass field names, used by tests to check the table above stays complete
_FIELD_NAMES = tuple(f.name for f in fields(HwParams) if f.name != "extra")
assert set(_FIELD_NAMES) == {a for a, _ in JSON_KEYS.values()}
