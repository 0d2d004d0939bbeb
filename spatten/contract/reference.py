"""PyTorch float reference of one ATTEND request (float64 throughout).

The reference applies the *same pruning decisions* as the hardware -- the same kept tokens
(rows of ``k`` and ``v``, in position order) and the same selected positions of local
value pruning -- and computes, as SPEC section 2 does, a softmax over all kept keys and
``o = sum_{j selected} p_j v_j`` without renormalizing over the selected ones.

Two comparisons, two error sources:

- :func:`attend_dequantized` on the hardware's integers (final-pass keys, values, query)
  with the score unit the hardware actually applies (:func:`spatten.contract.quant.score_scale_value`):
  differences from the golden model are the fixed-point arithmetic alone (truncation of
  ``t_j`` to 8 fractional bits, the exp2 table, the reciprocal, floors). Bounded by
  :func:`fixed_point_tolerance`.
- :func:`attend_float` on the original float tensors: adds the quantization error.

Convert hardware results with :func:`probs_to_float` (``p / 2^16``) and
:func:`output_to_float` (``o * scale_v / 2^16``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

__all__ = [
    "attend_float", "attend_dequantized", "output_to_float", "probs_to_float",
    "fixed_point_tolerance", "probability_tolerance", "KAPPA",
]

KAPPA = 2.0 ** (1.0 / 256.0) - 1.0
"""Largest relative error of ``2^(-t/256)`` caused by flooring ``t`` to 8 fractional bits."""


def _t(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def _sel(selected: Sequence[int] | Any) -> torch.Tensor:
    return torch.as_tensor(selected, dtype=torch.long).reshape(-1)


def attend_float(q: Any, k: Any, v: Any, selected: Sequence[int] | Any,
                 softmax_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Float attention of one query row over the kept keys.

    ``q`` ``[D]``, ``k`` and ``v`` ``[N, D]`` (row ``j`` = position ``j``), ``selected`` the
    positions whose values are summed. Returns ``(p [N], o [D])`` with
    ``p = softmax(softmax_scale * k @ q)`` and ``o = p[selected] @ v[selected]``."""
    qt, kt, vt = _t(q), _t(k), _t(v)
    if kt.ndim != 2 or vt.shape != kt.shape or qt.shape != (kt.shape[1],):
        raise ValueError(f"shapes must be q [D], k/v [N, D]; got q {tuple(qt.shape)}, "
                         f"k {tuple(kt.shape)}, v {tuple(vt.shape)}")
    p = torch.softmax((kt @ qt) * softmax_scale, dim=0)
    s = _sel(selected)
    return p, p[s] @ vt[s]


def attend_dequantized(q_int: Any, k_int: Any, v_int: Any, selected: Sequence[int] | Any,
                       score_scale: int, score_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float attention on the hardware's integers: ``k_int`` are the final pass's keys
    (``msb << kLsbBits`` or the full key), the score unit is the one the hardware applies.

    Returns ``(p [N], o [D])`` with ``o`` in integer V units (compare with golden
    ``o / 2^16``). Integer scores are below 2^53, so float64 holds them exactly."""
    c = math.ldexp(score_scale, -score_shift) * math.log(2.0) / 256.0
    return attend_float(q_int, k_int, v_int, selected, c)


def probs_to_float(p: Any) -> torch.Tensor:
    """Hardware Q.16 probabilities as floats."""
    return _t(p) / 65536.0


def output_to_float(o: Any, scale_v: float = 1.0) -> torch.Tensor:
    """Hardware outputs ``o_i`` (Q.16 times integer V units) as floats: ``o * scale_v / 2^16``."""
    return _t(o) * (scale_v / 65536.0)


def fixed_point_tolerance(n: int, m: int, v_abs_max: float) -> float:
    """Bound on ``|o_golden / 2^16 - o_dequantized|`` (integer V units) for one request
    with ``n`` kept tokens, ``m`` selected, ``v_abs_max = max |v|`` over the selected rows.

    Derivation (SPEC 2, ``x_j = d_j * scoreScale / 2^scoreShift / 256`` real): the float
    probability is ``pi_j = 2^-x_j / sum_k 2^-x_k``. The hardware floors ``t_j = floor(256 x_j)``,
    so ``u_j = 2^16 * 2^(-t_j/256)`` is ``2^16 * 2^-x_j`` times a factor in ``[1, 2^(1/256))``;
    the ratio ``u_j / sum u`` is within a factor ``2^(+-1/256)`` of ``pi_j`` (relative error
    ``KAPPA``). The table rounds to +-1/2 and the shift floors: ``e_j = u_j + eps_j``,
    ``eps_j in (-3/2, 1/2]``, and ``E = sum e >= 2^16`` (the maximum gives exactly 2^16),
    so ``2^16 |e_j/E - u_j/U| <= 3/2 + (1+KAPPA) pi_j * 3n/2``. ``R`` and the final
    floor lose less than ``1 + 2^-16`` units of ``p_j``. Summing ``|dp_j| * |v_j|`` over the
    ``m`` selected positions (``sum pi_j <= 1``)::

        tol = v_abs_max * (KAPPA + 2^-16 * ((5/2 + 2^-16) * m + (3/2) * (1 + KAPPA) * n))

    ``tools/golden_vs_float.py`` measures the actual error against this bound."""
    return v_abs_max * (KAPPA + 2.0 ** -16 * ((2.5 + 2.0 ** -16) * m
                                              + 1.5 * (1.0 + KAPPA) * n))


def probability_tolerance(p: Any, n: int) -> torch.Tensor:
    """Bound on ``|p_golden_j / 2^16 - pi_j|`` for each position of one request with ``n``
    kept tokens, ``pi`` the float probabilities of :func:`attend_dequantized`: the per-position
    terms of :func:`fixed_point_tolerance`'s derivation, ``KAPPA pi_j + 2^-16 ((5/2 + 2^-16)
    + (3/2)(1 + KAPPA) pi_j n)``.

    Local value pruning ranks the hardware's ``p_j``: where two float probabilities are
    closer than the sum of their bounds, the hardware may order them either way, so its
    ``valueTopK`` may select a different (equally valid) set than a float top-k."""
    pt = _t(p)
    return KAPPA * pt + 2.0 ** -16 * ((2.5 + 2.0 ** -16) + 1.5 * (1.0 + KAPPA) * pt * n)
