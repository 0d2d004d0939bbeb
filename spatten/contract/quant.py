"""From float tensors to the accelerator's integer formats (``hardware/SPEC.md`` section 1).

Choices (all symmetric, round to nearest, ties to even, ``numpy.rint``):

- **Keys**: one scale per (layer, kv-head) -- the caller passes all the keys of one head
  of one layer (``[tokens, D]``) to :func:`quantize_key`. Keys are quantized to
  ``T = kMsbBits + kLsbBits`` bits, ``k = clip(rint(x / s), -(2^(T-1)-1), 2^(T-1)-1)``
  with ``s = max|x| / (2^(T-1)-1)``, then split into the MSB plane ``msb = k >> kLsbBits``
  (signed ``kMsbBits``-bit, arithmetic shift = floor) and the LSB plane
  ``lsb = k & (2^kLsbBits - 1)`` (unsigned), so ``k = (msb << kLsbBits) | lsb``. The MSB-only
  key ``msb << kLsbBits`` is ``k`` truncated towards minus infinity; its average bias
  (half an LSB step times ``sum_i q_i``) is the same for every token, and softmax is
  invariant to it.
- **Values**: one scale per (layer, kv-head), ``vBits`` bits, same rule.
- **Queries**: one scale per query row, ``quant_query_bit`` bits (<= 16), stored in the
  16-bit query field.
- A bit width of ``-1`` (the workload CSV's "unquantized") means 16 (:func:`bits_or_16`).
- Symmetric quantization needs at least 2 bits; the range excludes ``-2^(T-1)`` so that
  negation is exact and the grid is symmetric.
- **Score scale**: one integer score unit ``q_int . k_int`` is worth
  ``c = s_q * s_k * softmax_scale`` (``softmax_scale`` is ``1/sqrt(D)`` for standard
  attention) in natural-log units. :func:`choose_score_scale` returns
  ``(scoreScale, scoreShift)`` with ``scoreScale / 2^scoreShift ~= 256 * log2(e) * c`` and
  ``scoreScale`` in ``[2^15, 2^16)`` whenever ``scoreShift`` can reach it (relative
  error <= 2^-16).
- **Thresholds** (``requantThreshold``) are Q.16: :func:`threshold_q16`.

Inputs may be numpy arrays or torch tensors; outputs are numpy (int64 / float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "bits_or_16", "symmetric_scale", "quantize", "dequantize", "QTensor", "QuantKey",
    "quantize_key", "split_key", "join_key", "quantize_value", "quantize_query", "score_unit",
    "choose_score_scale", "score_scale_value", "threshold_q16", "LOG2E",
]

LOG2E = 1.0 / math.log(2.0)
"""``log2(e)``."""


def _np(x: Any) -> np.ndarray:
    """numpy float64 view of a numpy array, torch tensor or sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def bits_or_16(bits: int) -> int:
    """``-1`` (unquantized, in the workload CSV) means 16; otherwise ``bits`` in 1..16."""
    if bits == -1:
        return 16
    if not 1 <= bits <= 16:
        raise ValueError(f"bit width must be -1 (unquantized) or 1..16, got {bits}")
    return bits


def _qmax(bits: int) -> int:
    if not 2 <= bits <= 16:
        raise ValueError(f"symmetric quantization needs 2..16 bits, got {bits}")
    return (1 << (bits - 1)) - 1


def symmetric_scale(x: Any, bits: int) -> float:
    """``max|x| / (2^(bits-1) - 1)``; 1.0 for an all-zero tensor."""
    a = _np(x)
    amax = float(np.abs(a).max()) if a.size else 0.0
    if not math.isfinite(amax):
        raise ValueError("cannot quantize a tensor holding inf or nan")
    return amax / _qmax(bits) if amax > 0 else 1.0


@dataclass(frozen=True)
class QTensor:
    """Integers ``values`` (int64) with ``values * scale ~= x``, at ``bits`` bits signed."""

    values: np.ndarray
    scale: float
    bits: int

    def dequantize(self) -> np.ndarray:
        return dequantize(self.values, self.scale)


def quantize(x: Any, bits: int, scale: float | None = None) -> QTensor:
    """Symmetric quantization of ``x`` to signed ``bits`` bits (scale from ``x`` unless given)."""
    a = _np(x)
    q = _qmax(bits)
    s = symmetric_scale(a, bits) if scale is None else float(scale)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"scale must be positive and finite, got {s}")
    v = np.clip(np.rint(a / s), -q, q).astype(np.int64)
    return QTensor(v, s, bits)


def dequantize(values: Any, scale: float) -> np.ndarray:
    """``values * scale`` as float64."""
    return np.asarray(values, dtype=np.float64) * scale


def split_key(k: Any, msb_bits: int, lsb_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``(msb_bits + lsb_bits)``-bit signed keys into the MSB (signed) and LSB
    (unsigned) planes: ``msb = k >> lsb_bits``, ``lsb = k & (2^lsb_bits - 1)``."""
    ka = np.asarray(k, dtype=np.int64)
    total = msb_bits + lsb_bits
    if not (1 <= msb_bits <= 16 and 0 <= lsb_bits <= 15 and total <= 16):
        raise ValueError(f"need 1 <= msb_bits, 0 <= lsb_bits, msb+lsb <= 16; got {msb_bits}+{lsb_bits}")
    lo, hi = -(1 << (total - 1)), (1 << (total - 1)) - 1
    if ka.size and (ka.min() < lo or ka.max() > hi):
        raise ValueError(f"keys must be {total}-bit signed [{lo}, {hi}], got [{ka.min()}, {ka.max()}]")
    return ka >> lsb_bits, ka & ((1 << lsb_bits) - 1)


def join_key(msb: Any, lsb: Any, lsb_bits: int) -> np.ndarray:
    """``(msb << lsb_bits) | lsb``: the full-precision key of pass 2."""
    return (np.asarray(msb, dtype=np.int64) << lsb_bits) | np.asarray(lsb, dtype=np.int64)


@dataclass(frozen=True)
class QuantKey:
    """Keys of one (layer, kv-head) as the two planes, plus the scale of the full key."""

    msb: np.ndarray
    lsb: np.ndarray
    scale: float
    msb_bits: int
    lsb_bits: int

    @property
    def full(self) -> np.ndarray:
        """The full-precision integer key ``(msb << lsb_bits) | lsb``."""
        return join_key(self.msb, self.lsb, self.lsb_bits)

    @property
    def msb_only(self) -> np.ndarray:
        """The key pass 1 uses: ``msb << lsb_bits``."""
        return np.asarray(self.msb, dtype=np.int64) << self.lsb_bits


def quantize_key(k: Any, msb_bits: int, lsb_bits: int, scale: float | None = None) -> QuantKey:
    """Quantize keys ``[tokens, D]`` of one head to ``msb_bits + lsb_bits`` bits and split."""
    t = quantize(k, msb_bits + lsb_bits, scale)
    msb, lsb = split_key(t.values, msb_bits, lsb_bits)
    return QuantKey(msb, lsb, t.scale, msb_bits, lsb_bits)


def quantize_value(v: Any, bits: int, scale: float | None = None) -> QTensor:
    """Quantize values ``[tokens, D]`` of one head to ``bits`` bits."""
    return quantize(v, bits, scale)


def quantize_query(q: Any, bits: int = 16) -> QTensor:
    """Quantize one query row ``[D]`` to ``bits`` (<= 16) bits with its own scale."""
    return quantize(q, bits)


def score_unit(scale_q: float, scale_k: float, softmax_scale: float) -> float:
    """Real (natural-log) value ``c`` of one integer score unit ``q_int . k_int``."""
    return scale_q * scale_k * softmax_scale


def choose_score_scale(c: float) -> tuple[int, int]:
    """``(scoreScale, scoreShift)`` with ``scoreScale / 2^scoreShift ~= 256 * log2(e) * c``.

    ``scoreShift`` (0..63) is chosen as large as possible with ``scoreScale < 2^16``, so
    ``scoreScale`` lands in ``[2^15, 2^16)`` unless ``c`` is too small even at shift 63.
    Raises ``ValueError`` for ``c <= 0``, non-finite ``c``, ``c`` so large that
    ``scoreScale`` would exceed 65535 at shift 0, or so small that it rounds to 0."""
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"score unit c must be positive and finite, got {c}")
    target = 256.0 * LOG2E * c
    if round(target) > 0xFFFF:
        raise ValueError(f"score unit c={c} is too large: 256*log2(e)*c = {target:.1f} > 65535")
    shift = min(63, max(0, 15 - math.floor(math.log2(target))))
    scale = round(math.ldexp(target, shift))
    while scale > 0xFFFF:  # floor(log2) rounding at a power of two
        shift -= 1
        scale = round(math.ldexp(target, shift))
    while shift < 63 and round(math.ldexp(target, shift + 1)) <= 0xFFFF:
        shift += 1
        scale = round(math.ldexp(target, shift))
    if scale == 0:
        raise ValueError(f"score unit c={c} is too small for a 16-bit scale at shift 63")
    return scale, shift


def score_scale_value(score_scale: int, score_shift: int) -> float:
    """The score unit ``c`` the hardware actually applies: ``scale / 2^shift / (256 log2 e)``."""
    return math.ldexp(score_scale, -score_shift) / (256.0 * LOG2E)


def threshold_q16(x: float) -> int:
    """A probability threshold (0..~2) as the 17-bit Q.16 ``requantThreshold``."""
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"threshold must be a non-negative probability, got {x}")
    return min(round(x * 65536), (1 << 17) - 1)
