"""Quantization and score-scale selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatten.contract import quant


def test_bits_or_16() -> None:
    assert quant.bits_or_16(-1) == 16 and quant.bits_or_16(6) == 6
    for bad in (0, 17, -2):
        with pytest.raises(ValueError, match="bit width"):
            quant.bits_or_16(bad)


def test_quantize_by_hand() -> None:
    # 4 bits: qmax = 7, scale = 3.5 / 7 = 0.5; x / s = [7, -3, 0.5 -> 0 (ties to even), 1.5 -> 2]
    t = quant.quantize(np.array([3.5, -1.5, 0.25, 0.75]), 4)
    assert t.scale == 0.5 and t.values.tolist() == [7, -3, 0, 2]
    # torch input, given scale, clipping to [-7, 7]
    t = quant.quantize(torch.tensor([100.0, -100.0]), 4, scale=1.0)
    assert t.values.tolist() == [7, -7]
    assert quant.quantize(np.zeros(3), 8).values.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="2..16 bits"):
        quant.quantize(np.ones(2), 1)
    with pytest.raises(ValueError, match="inf or nan"):
        quant.quantize(np.array([1.0, np.nan]), 8)


@pytest.mark.parametrize("bits", range(2, 17))
def test_quantize_error_within_half_step(bits: int) -> None:
    x = np.random.default_rng(bits).normal(size=(50, 16))
    t = quant.quantize(x, bits)
    assert np.abs(t.values).max() == (1 << (bits - 1)) - 1
    assert np.all(np.abs(t.dequantize() - x) <= t.scale / 2 + 1e-12)


@pytest.mark.parametrize("msb,lsb", [(1, 1), (2, 0), (6, 4), (4, 4), (8, 8), (1, 15), (16, 0)])
def test_split_join_key(msb: int, lsb: int) -> None:
    total = msb + lsb
    k = np.arange(-(1 << (total - 1)), 1 << (total - 1))
    hi, lo = quant.split_key(k, msb, lsb)
    assert hi.min() >= -(1 << (msb - 1)) and hi.max() <= (1 << (msb - 1)) - 1
    assert lo.min() >= 0 and lo.max() <= (1 << lsb) - 1
    assert np.array_equal(quant.join_key(hi, lo, lsb), k)
    # the MSB-only key is k rounded down to a multiple of 2^lsb
    assert np.array_equal(hi << lsb, np.floor(k / 2**lsb).astype(np.int64) * 2**lsb)


def test_quantize_key() -> None:
    x = np.random.default_rng(0).normal(size=(20, 8))
    qk = quant.quantize_key(x, 6, 4)
    assert np.abs(qk.full).max() == 511
    assert np.all(np.abs(qk.full * qk.scale - x) <= qk.scale / 2 + 1e-12)
    assert np.all(qk.full - qk.msb_only >= 0) and np.all(qk.full - qk.msb_only < 16)
    with pytest.raises(ValueError, match="msb"):
        quant.split_key(np.zeros(1, dtype=int), 10, 7)
    with pytest.raises(ValueError, match="10-bit signed"):
        quant.split_key(np.array([512]), 6, 4)


@pytest.mark.parametrize("c", [1e-9, 3.7e-6, 1e-4, 0.0123, 0.5, 1.0, 7.3, 100.0])
def test_choose_score_scale(c: float) -> None:
    scale, shift = quant.choose_score_scale(c)
    target = 256 * c / math.log(2)
    assert 0 <= shift <= 63 and 1 <= scale <= 0xFFFF
    if shift > 0:
        assert scale >= 1 << 15  # as many significant bits as 16 allow
    assert abs(scale / 2**shift - target) <= 0.5 / 2**shift  # nearest
    assert abs(quant.score_scale_value(scale, shift) - c) <= c * 2**-15


def test_choose_score_scale_edges() -> None:
    # c = ln 2 / 256 -> target exactly 1.0 -> scale 2^15 at shift 15
    assert quant.choose_score_scale(math.log(2) / 256) == (1 << 15, 15)
    # target just below 2^16 / 2^k must not round up to 65536
    s, sh = quant.choose_score_scale((65535.9 / 2**20) * math.log(2) / 256)
    assert s <= 0xFFFF and abs(s / 2**sh - 65535.9 / 2**20) <= 0.5 / 2**sh
    with pytest.raises(ValueError, match="too large"):
        quant.choose_score_scale(200.0)
    with pytest.raises(ValueError, match="positive"):
        quant.choose_score_scale(0.0)
    with pytest.raises(ValueError, match="too small"):
        quant.choose_score_scale(1e-30)
    # tiny but representable at shift 63: below 2^15, still > 0
    s, sh = quant.choose_score_scale(1e-18)  # 369e-18 * 2^63 = 3406
    assert sh == 63 and 0 < s < 1 << 15


def test_threshold_and_score_unit() -> None:
    assert quant.threshold_q16(0.05) == 3277  # 0.05 * 65536 = 3276.8
    assert quant.threshold_q16(1.0) == 65536 and quant.threshold_q16(5.0) == (1 << 17) - 1
    with pytest.raises(ValueError):
        quant.threshold_q16(-0.1)
    assert quant.score_unit(0.5, 0.25, 1 / 8) == 0.5 * 0.25 / 8
