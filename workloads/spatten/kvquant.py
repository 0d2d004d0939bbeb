"""KIVI-style K/V quantization (float model), vectorized over K/V heads and tokens.

``quantize_keys`` returns the full-precision (MSB + LSB) keys and the MSB-only keys of the
cache; ``quantize_values`` the quantized values. Codes are symmetric (``round(x / s)``,
clamped to ``+-(2^(b-1) - 1)``) or, with ``asymmetric``, min/max codes
``round((x - min) / s)`` in ``0 .. 2^b - 1`` with ``s = (max - min) / (2^b - 1)``. Scale groups:

- keys, ``key_axis: tensor``: one scale per K/V head over the whole cache (the accelerator's
  format); ``channel``: one per K/V head and channel, over groups of ``group_tokens`` token
  positions (0: the whole cache). A per-channel scale of the whole cache folds into the
  query on the host (``q_c * s_c``); a per-channel zero point adds the same amount to every
  score of a query row, which softmax ignores.
- values, ``value_axis: tensor`` (per K/V head), ``token`` (per V row: KIVI; no fold exists
  on the accelerator, whose output sums ``p_j * v_j`` over integer V), ``channel`` (per K/V
  head and channel: folds into the output on the host, ``o_c * s_c``).

The MSB-only key is ``floor(code / 2^lsb) * 2^lsb`` dequantized (``hardware/SPEC.md`` s. 1).
The ``residual_tokens`` most recent tokens stay unquantized (KIVI's full-precision window).
"""

from __future__ import annotations

import torch

from workloads.spatten.policy import Quantization


def _codes(x: torch.Tensor, bits: int, dims: tuple[int, ...], asym: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, scale, offset) of ``x`` with one scale per slice reduced over ``dims``."""
    if asym:
        lo = x.amin(dim=dims, keepdim=True)
        hi = x.amax(dim=dims, keepdim=True)
        scale = torch.clamp(hi - lo, min=1e-8) / (2**bits - 1)
        return torch.clamp(torch.round((x - lo) / scale), 0, 2**bits - 1), scale, lo
    qmax = 2 ** (bits - 1) - 1
    scale = torch.clamp(x.abs().amax(dim=dims, keepdim=True), min=1e-8) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax), scale, torch.zeros_like(scale)


def _grouped(x: torch.Tensor, group: int) -> tuple[torch.Tensor, int]:
    """``x`` [Hkv, T, D] as [Hkv, ceil(T/group), group, D] (zero padded) and the pad."""
    hk, t, d = x.shape
    pad = (-t) % group
    if pad:
        x = torch.cat([x, x[:, -1:].expand(hk, pad, d)], dim=1)  # repeat the last row: stats unchanged
    return x.view(hk, (t + pad) // group, group, d), pad


def quantize_keys(k: torch.Tensor, q: Quantization) -> tuple[torch.Tensor, torch.Tensor]:
    """(full keys, MSB-only keys), both dequantized, for the cache ``k`` [Hkv, T, D]."""
    bits = q.key_msb_bits + q.key_lsb_bits
    hk, t, d = k.shape
    if q.key_axis == "tensor":
        codes, scale, off = _codes(k, bits, (1, 2), q.asymmetric)
    elif q.group_tokens > 0:
        xg, pad = _grouped(k, q.group_tokens)
        codes, scale, off = _codes(xg, bits, (2,), q.asymmetric)
        codes = codes.view(hk, -1, d)[:, :t]
        scale = scale.expand(-1, -1, q.group_tokens, -1).reshape(hk, -1, d)[:, :t]
        off = off.expand(-1, -1, q.group_tokens, -1).reshape(hk, -1, d)[:, :t]
    else:
        codes, scale, off = _codes(k, bits, (1,), q.asymmetric)
    step = 2**q.key_lsb_bits
    full = codes * scale + off
    msb = torch.floor(codes / step) * step * scale + off
    if q.residual_tokens:
        r = min(q.residual_tokens, t)
        full[:, t - r :] = k[:, t - r :]
        msb[:, t - r :] = k[:, t - r :]
    return full, msb


def quantize_values(v: torch.Tensor, q: Quantization) -> torch.Tensor:
    """Dequantized values of the cache ``v`` [Hkv, T, D]."""
    dims = {"tensor": (1, 2), "token": (2,), "channel": (1,)}[q.value_axis]
    codes, scale, off = _codes(v, q.value_bits, dims, q.asymmetric)
    out = codes * scale + off
    if q.residual_tokens:
        r = min(q.residual_tokens, v.shape[1])
        out[:, -r:] = v[:, -r:]
    return out


def scale_bits(q: Quantization) -> int:
    """Bits of one scale (16) plus one zero point (16) when asymmetric."""
    return 32 if q.asymmetric else 16
