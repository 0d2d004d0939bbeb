"""The float reference: hand-checked softmax/outputs, unit conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatten.contract import reference


def test_attend_float_by_hand() -> None:
    # scores k @ q = [2, 0, 0] * 0.5 -> softmax of [1, 0, 0] = [e, 1, 1] / (e + 2)
    q = [1.0, 0.0]
    k = [[2.0, 5.0], [0.0, 1.0], [0.0, -1.0]]
    v = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    p, o = reference.attend_float(q, k, v, [0, 2], 0.5)
    z = math.e + 2
    assert p.tolist() == pytest.approx([math.e / z, 1 / z, 1 / z], rel=1e-15)
    # no renormalization over the selected positions 0 and 2
    assert o.tolist() == pytest.approx([(math.e * 1 + 5) / z, (math.e * 2 + 6) / z], rel=1e-15)


def test_attend_dequantized_uses_hardware_unit() -> None:
    # scale / 2^shift = 256 -> one score unit is one octave: p ratio 2 per unit
    p, o = reference.attend_dequantized([1], [[3], [2], [0]], [[1], [1], [1]], [0, 1, 2], 1 << 20, 12)
    assert (p[0] / p[1]).item() == pytest.approx(2.0, rel=1e-12)
    assert (p[1] / p[2]).item() == pytest.approx(4.0, rel=1e-12)
    assert o.item() == pytest.approx(1.0, rel=1e-12)


def test_conversions() -> None:
    assert reference.probs_to_float([65536, 32768]).tolist() == [1.0, 0.5]
    assert reference.output_to_float(np.array([131072, -65536]), 0.25).tolist() == [0.5, -0.25]
    assert reference.output_to_float(torch.tensor([65536]), 1.0).dtype == torch.float64


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="shapes"):
        reference.attend_float([1.0, 2.0], [[1.0]], [[1.0]], [0], 1.0)


def test_tolerance_formula() -> None:
    # KAPPA = 2^(1/256) - 1; tol = vmax * (KAPPA + 2^-16 ((2.5 + 2^-16) m + 1.5 (1 + KAPPA) n))
    assert reference.KAPPA == pytest.approx(0.0027112750502024854, rel=1e-12)
    t = reference.fixed_point_tolerance(100, 10, 128.0)
    assert t == pytest.approx(128 * (reference.KAPPA + (25.0 + 150.0 * (1 + reference.KAPPA)) / 65536),
                              rel=1e-6)
