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


def folds_key_scales(q: Quantization) -> bool:
    """True when the keys have one symmetric scale per (K/V head, channel) over the whole
    cache and no residual rows: the accelerator's format once the host folds the scales
    into the query (``q_c * s_c``, then quantized to ``query_bits``)."""
    return (q.enabled and q.key_axis == "channel" and q.group_tokens == 0 and not q.asymmetric
            and q.residual_tokens == 0)


def key_codes(k: torch.Tensor, q: Quantization) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(full codes, MSB-only codes, scale [Hkv, 1, D]) of symmetric per-channel keys over the
    whole cache ``k`` [Hkv, T, D] (``folds_key_scales``): what the accelerator's K planes hold."""
    codes, scale, _ = _codes(k, q.key_msb_bits + q.key_lsb_bits, (1,), False)
    step = 2**q.key_lsb_bits
    return codes, torch.floor(codes / step) * step, scale


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


def whole_cache_scales(q: Quantization) -> bool:
    """True when some scale is taken over the whole cache (K per tensor, K per channel with
    no token groups, V per tensor or per channel): it changes as the cache grows."""
    return q.enabled and (q.key_axis == "tensor" or q.group_tokens == 0 or q.value_axis != "token")


def prefix_stats(x: torch.Tensor, axis: str, asym: bool) -> torch.Tensor:
    """[T, S]: the statistics (max |x|; with ``asym`` min and max) that set the scales of a
    cache holding the first ``t + 1`` tokens of ``x`` [Hkv, T, D], for every t (scales over
    ``axis``: ``tensor`` or ``channel``; ``token`` scales are per row: no statistics)."""
    hk, t, d = x.shape
    if axis == "token":
        return torch.zeros(t, 0)
    parts = [x.abs()] if not asym else [x, -x]
    out = []
    for a in parts:
        m = torch.cummax(a, dim=1).values  # [Hkv, T, D]
        if axis == "tensor":
            m = m.amax(dim=2, keepdim=True)
        out.append(m.permute(1, 0, 2).reshape(t, -1))
    return torch.cat(out, dim=1)


def scale_bits(q: Quantization) -> int:
    """Bits of one scale (16) plus one zero point (16) when asymmetric."""
    return 32 if q.asymmetric else 16
