"""The bit-exact golden model of the SpAtten accelerator (``hardware/SPEC.md``).

Every RTL output is compared with this model word for word (except the ``cycles`` field
of ATTEND responses, which only hardware has; see :mod:`spatten.contract.commands`).

Pure functions (the arithmetic of SPEC sections 2 and 3, usable by unit testbenches):

- :func:`exp2_lut` -- the ``EXP2LUT`` table.
- :func:`dot_scores` -- exact integer scores ``s_j = sum_i q_i k_ji``.
- :func:`softmax_fixed` -- ``(e, E, R, p)`` from scores, ``scoreScale``, ``scoreShift``.
- :func:`topk_select` -- exact top-k positions by ``(key, -position)``, ascending.
- :func:`attention_probs` -- pass 1, requantization decision, pass 2.
- :func:`value_positions`, :func:`weighted_sum` -- local value pruning and ``P x V``.
- :func:`head_importance_increment` -- ``sum_i |o_i| >> 16``.
- :func:`attend` -- all of one ATTEND on arrays already gathered in position order.

The stateful accelerator:

- :class:`GoldenAccelerator` ``(params, mem)`` -- ``execute(words) -> response words``
  for a command word stream (all opcodes, error responses included), holding the token
  importance ``imp[id]`` (one unsigned counter per 16-bit token id) and the head
  importance ``head_imp[h]`` (``maxHeads`` counters); ``run(cmd) -> Response`` for typed
  use. After each ATTEND, :attr:`GoldenAccelerator.last_attend` holds the intermediate
  values (:class:`AttendResult`) and :attr:`GoldenAccelerator.last_traffic` the bursts
  it needs from DRAM.

Arithmetic is exact: numpy int64 everywhere (every intermediate value is bounded well
below 2^63 for the parameter ranges :mod:`spatten.contract.params` accepts: ``|s_j| < 2^38``,
``d_j * scoreScale < 2^56``, ``e_j * R <= 2^recipShift``, ``|o_i| < 2^32``).

Commands whose behaviour SPEC leaves undefined -- a plane or list base that is not burst
aligned, or a row address at or beyond ``2^dramAddrBits`` -- raise
:class:`GoldenUndefined` instead of predicting a response.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from spatten.contract.commands import (
    AttendCmd, AttendResp, ClearCmd, ClearResp, Command, CommandError, ErrorResp,
    ReadImportanceCmd, ReadImportanceResp, Response, TopkHeadsCmd, TopkResp, TopkTokensCmd,
    Word, decode_command, decode_response, opcode_of, split_packets,
)
from spatten.contract.grouped import GroupAttendCmd, GroupAttendResp
from spatten.contract.memimage import MemImageError, MemoryImage, stride
from spatten.contract.params import HwParams
from spatten.errors import SpAttenError

__all__ = [
    "GoldenUndefined", "exp2_lut", "dot_scores", "softmax_fixed", "topk_select",
    "attention_probs", "value_positions", "weighted_sum", "head_importance_increment",
    "attend", "ProbResult",
    "AttendResult", "AttendTraffic", "GoldenAccelerator", "NUM_TOKEN_IDS",
]

NUM_TOKEN_IDS = 1 << 16
"""Token ids are unsigned 16-bit (SPEC 4), so the token importance array has 2^16 entries."""

_EXP_ZERO_INT_BITS = 32
"""SPEC 2: ``e_j = 0`` when the integer part of ``t_j`` is >= 32."""


class GoldenUndefined(SpAttenError, RuntimeError):
    """The command's behaviour is undefined by SPEC (misaligned base, address out of
    range): the golden model refuses to predict it."""


# ---- the arithmetic --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _exp2_lut(frac_bits: int, prob_frac_bits: int) -> tuple[int, ...]:
    """``round_half_up(2^P * 2^(-f / 2^F))`` for ``f = 0..2^F-1``, computed exactly.

    The float estimate is corrected with an exact integer test: ``y`` is the rounded
    value iff ``(2y-1)/2 <= x < (2y+1)/2`` with ``x = 2^(P - f/2^F)``, i.e. (raising to
    the power ``2^F``) ``(2y-1)^(2^F) <= 2^((P+1)*2^F - f) < (2y+1)^(2^F)``."""
    n = 1 << frac_bits
    out = []
    for f in range(n):
        y = int(np.floor(2.0 ** (prob_frac_bits - f / n) + 0.5))
        rhs = 1 << ((prob_frac_bits + 1) * n - f)
        while (2 * y - 1) ** n > rhs:
            y -= 1
        while (2 * y + 1) ** n <= rhs:
            y += 1
        out.append(y)
    return tuple(out)


def exp2_lut(params: HwParams) -> np.ndarray:
    """``EXP2LUT[f] = round_half_up(2^16 * 2^(-f/256))``, ``f = 0..255`` (for the SPEC's
    ``expLutFracBits = 8``, ``probFracBits = 16``), as int64. ``EXP2LUT[0] = 2^16``."""
    return np.array(_exp2_lut(params.exp_lut_frac_bits, params.prob_frac_bits), dtype=np.int64)


def _as_int_array(x: Sequence[int] | np.ndarray, ndim: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _check_range(a: np.ndarray, lo: int, hi: int, name: str) -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got [{a.min()}, {a.max()}]")


def dot_scores(q: Sequence[int] | np.ndarray, k: np.ndarray) -> np.ndarray:
    """``s_j = sum_i q_i * k_ji`` exactly (int64 ``[N]``); ``q`` is ``[D]``, ``k`` ``[N, D]``.

    Both are bounded to 16-bit two's complement, so ``|s_j| <= D * 2^30``."""
    qa = _as_int_array(q, 1, "q")
    ka = _as_int_array(k, 2, "k")
    if ka.shape[1] != qa.shape[0]:
        raise ValueError(f"k has {ka.shape[1]} columns, q has {qa.shape[0]} elements")
    _check_range(qa, -(1 << 15), (1 << 15) - 1, "q")
    _check_range(ka, -(1 << 15), (1 << 15) - 1, "k")
    return ka @ qa


def softmax_fixed(scores: Sequence[int] | np.ndarray, score_scale: int, score_shift: int,
                  params: HwParams) -> tuple[np.ndarray, int, int, np.ndarray]:
    """The fixed-point base-2 softmax of SPEC 2: returns ``(e, E, R, p)``.

    - ``d_j = max(s) - s_j``; ``t_j = (d_j * scoreScale) >> scoreShift`` (floor);
    - ``e_j = EXP2LUT[t_j mod 2^F] >> (t_j >> F)``, or 0 when ``t_j >> F >= 32``;
    - ``E = sum e_j``; ``R = floor(2^recipShift / E)``;
    - ``p_j = (e_j * R) >> (recipShift - probFracBits)``.
    ``e`` and ``p`` are int64 arrays (Q.16); ``E`` and ``R`` Python ints."""
    s = _as_int_array(scores, 1, "scores")
    if s.size == 0:
        raise ValueError("softmax of zero scores")
    if not 0 <= score_scale < (1 << 16):
        raise ValueError(f"score_scale must be an unsigned 16-bit value, got {score_scale}")
    if not 0 <= score_shift < (1 << 6):
        raise ValueError(f"score_shift must be an unsigned 6-bit value, got {score_shift}")
    frac = params.exp_lut_frac_bits
    lut = exp2_lut(params)
    d = s.max() - s
    if d.max() >= (1 << 46):
        raise ValueError(f"score range {int(d.max())} exceeds 2^46 (scores are bounded by D*2^30)")
    t = (d * np.int64(score_scale)) >> np.int64(score_shift)
    ip = t >> np.int64(frac)
    f = t & np.int64((1 << frac) - 1)
    e = np.where(ip >= _EXP_ZERO_INT_BITS, np.int64(0),
                 lut[f] >> np.minimum(ip, _EXP_ZERO_INT_BITS - 1))
    E = int(e.sum())
    R = (1 << params.recip_shift) // E
    p = (e * np.int64(R)) >> np.int64(params.recip_shift - params.prob_frac_bits)
    return e, E, R, p


def topk_select(keys: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest keys, ties broken towards the lower position,
    returned in ascending position order (SPEC 3). ``k >= n`` keeps all, ``k == 0`` none."""
    a = _as_int_array(keys, 1, "keys")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k >= a.size:
        return np.arange(a.size, dtype=np.int64)
    # A stable sort of -key leaves equal keys in position order: lower position first.
    order = np.argsort(-a, kind="stable")
    return np.sort(order[:k]).astype(np.int64)


@dataclass(frozen=True)
class ProbResult:
    """The final pass of the attention probabilities (SPEC 2 steps 1-3)."""

    scores: np.ndarray      #: s_j of the final pass
    e: np.ndarray           #: e_j (Q.16)
    E: int                  #: sum of e_j
    R: int                  #: floor(2^recipShift / E)
    p: np.ndarray           #: p_j (Q.16)
    pmax: int               #: max p_j
    requantized: bool       #: pass 2 (full-precision keys) was the final pass
    pmax_pass1: int         #: max p_j of pass 1 (MSB keys)


def attention_probs(q: Sequence[int] | np.ndarray, k_msb: np.ndarray, k_lsb: np.ndarray | None,
                    k_lsb_bits: int, score_scale: int, score_shift: int, requant: bool,
                    requant_threshold: int, params: HwParams) -> ProbResult:
    """Pass 1 on MSB keys; pass 2 on full keys when ``requant``, ``k_lsb_bits > 0`` and
    ``pmax < requant_threshold``. ``k_msb`` / ``k_lsb`` are the planes' values
    ``[N, D]`` in position order (``k_lsb`` may be ``None`` when pass 2 cannot happen)."""
    msb = _as_int_array(k_msb, 2, "k_msb")
    k1 = msb << np.int64(k_lsb_bits)
    s = dot_scores(q, k1)
    e, E, R, p = softmax_fixed(s, score_scale, score_shift, params)
    pmax1 = int(p.max())
    if requant and k_lsb_bits > 0 and pmax1 < requant_threshold:
        if k_lsb is None:
            raise ValueError("pass 2 was taken but no k_lsb plane was given")
        lsb = _as_int_array(k_lsb, 2, "k_lsb")
        _check_range(lsb, 0, (1 << k_lsb_bits) - 1, "k_lsb")
        s = dot_scores(q, k1 | lsb)
        e, E, R, p = softmax_fixed(s, score_scale, score_shift, params)
        return ProbResult(s, e, E, R, p, int(p.max()), True, pmax1)
    return ProbResult(s, e, E, R, p, pmax1, False, pmax1)


def value_positions(p: np.ndarray, value_topk: int, value_thresh: bool = False) -> np.ndarray:
    """SPEC 2 step 5: ``M = N`` if ``valueTopK`` is 0 or ``>= N``, else ``valueTopK``;
    the ``M`` positions with the largest ``p_j`` (lower position wins ties), ascending.
    With ``value_thresh``, ``valueTopK`` is a threshold ``T`` (Q.16): the positions with
    ``p_j >= min(T, pmax)``, ascending (so at least the largest)."""
    if value_thresh:
        pa = np.asarray(p, dtype=np.int64)
        return np.flatnonzero(pa >= min(int(value_topk), int(pa.max()))).astype(np.int64)
    n = len(p)
    m = n if value_topk == 0 or value_topk >= n else value_topk
    return topk_select(p, m)


def weighted_sum(p_selected: np.ndarray, v_selected: np.ndarray) -> np.ndarray:
    """``o_i = sum_j p_j * v_ji`` over the selected rows, exactly (int64 ``[D]``)."""
    pa = _as_int_array(p_selected, 1, "p")
    va = _as_int_array(v_selected, 2, "v")
    _check_range(va, -(1 << 15), (1 << 15) - 1, "v")
    return pa @ va


def head_importance_increment(out: np.ndarray) -> int:
    """SPEC 2 step 7: ``sum_i (|o_i| >> 16)``."""
    return int((np.abs(np.asarray(out, dtype=np.int64)) >> 16).sum())


@dataclass(frozen=True)
class AttendResult:
    """Everything one ATTEND computes (for scoreboards, unit tests and analysis)."""

    probs: ProbResult
    selected: np.ndarray    #: selected positions j, ascending
    out: np.ndarray         #: o_i (int64 [D])
    head_imp_increment: int  #: sum_i |o_i| >> 16


def attend(q: Sequence[int] | np.ndarray, k_msb: np.ndarray, k_lsb: np.ndarray | None,
           v: np.ndarray, *, k_lsb_bits: int, score_scale: int, score_shift: int,
           value_topk: int, params: HwParams, requant: bool = False,
           requant_threshold: int = 0, value_thresh: bool = False) -> AttendResult:
    """One ATTEND on arrays gathered in position order (``k_msb``, ``k_lsb``, ``v`` are
    ``[N, D]``: row ``j`` belongs to the ``j``-th kept token)."""
    pr = attention_probs(q, k_msb, k_lsb, k_lsb_bits, score_scale, score_shift, requant,
                         requant_threshold, params)
    sel = value_positions(pr.p, value_topk, value_thresh)
    va = _as_int_array(v, 2, "v")
    out = weighted_sum(pr.p[sel], va[sel])
    return AttendResult(pr, sel, out, head_importance_increment(out))


# ---- the accelerator -------------------------------------------------------------------

@dataclass(frozen=True)
class AttendTraffic:
    """Bursts one ATTEND reads from DRAM (each a whole ``burstBytes`` request), if each
    token list, K row and V row is fetched exactly once per pass that needs it."""

    token_list: int
    k_msb: int
    k_lsb: int
    v: int

    @property
    def total(self) -> int:
        return self.token_list + self.k_msb + self.k_lsb + self.v


class GoldenAccelerator:
    """The whole accelerator, functionally: command words in, response words out.

    ``mem`` is read (never written). State: ``imp`` (int64 ``[2^16]``, token importance
    by token id) and ``head_imp`` (int64 ``[maxHeads]``), both zero at reset.
    """

    def __init__(self, params: HwParams, mem: MemoryImage) -> None:
        if mem.burst_bytes != params.burst_bytes or mem.addr_bits != params.dram_addr_bits:
            raise ValueError(
                f"memory image geometry (burst {mem.burst_bytes} B, {mem.addr_bits} address "
                f"bits) does not match the parameters (burst {params.burst_bytes} B, "
                f"{params.dram_addr_bits} bits)")
        self.params = params
        self.mem = mem
        self.imp = np.zeros(NUM_TOKEN_IDS, dtype=np.int64)
        self.head_imp = np.zeros(params.max_heads, dtype=np.int64)
        self.last_attend: AttendResult | None = None
        self.last_traffic: AttendTraffic | None = None
        self.last_group: list[AttendResult] = []  # the heads of the last ATTEND (one, or a group's)
        self._pending: list[Word] = []

    # ---- streams -----------------------------------------------------------------------
    def execute(self, words: Iterable[Word]) -> list[Word]:
        """Consume command words; return the response words of every packet completed.
        A trailing packet without ``last`` waits for the next call."""
        packets, self._pending = split_packets([*self._pending, *words])
        out: list[Word] = []
        for pkt in packets:
            out.extend(self.execute_packet(pkt))
        return out

    def execute_packet(self, packet: Sequence[Word]) -> list[Word]:
        """Response words of one complete command packet."""
        try:
            cmd = decode_command(packet)
        except CommandError as e:
            return ErrorResp(tag=e.tag or 0, opcode=e.opcode or 0).encode()
        if cmd.problems(self.params):
            return ErrorResp(tag=cmd.tag, opcode=opcode_of(packet[0][0])).encode()
        return self._handle(cmd).encode()

    def run(self, cmd: Command) -> Response:
        """Typed convenience: encode ``cmd``, execute it, decode the response (an
        :class:`AttendResp` gets ``cycles=None``: the golden model has no cycle count)."""
        resp = decode_response(self.execute_packet(cmd.encode()))
        if isinstance(resp, GroupAttendResp):
            return dataclasses.replace(resp, sections=tuple(dataclasses.replace(x, cycles=None)
                                                            for x in resp.sections))
        return dataclasses.replace(resp, cycles=None) if isinstance(resp, AttendResp) else resp

    # ---- memory access -----------------------------------------------------------------
    def _tokens(self, base: int, n: int, what: str) -> np.ndarray:
        try:
            return self.mem.read_tokens(base, n)
        except MemImageError as e:
            raise GoldenUndefined(f"{what} token list: {e}") from e

    def _rows(self, base: int, toks: np.ndarray, d: int, bits: int, signed: bool,
              what: str) -> np.ndarray:
        try:
            return self.mem.read_rows(base, toks, d, bits, signed)
        except MemImageError as e:
            raise GoldenUndefined(f"{what} plane: {e}") from e

    def _bursts(self, nbytes: int) -> int:
        b = self.params.burst_bytes
        return (nbytes + b - 1) // b

    # ---- commands ----------------------------------------------------------------------
    def _handle(self, cmd: Command) -> Response:
        if isinstance(cmd, AttendCmd):
            resp = self._attend(cmd)
            self.last_group = [self.last_attend] if self.last_attend else []
            return resp
        if isinstance(cmd, GroupAttendCmd):
            return self._attend_group(cmd)
        if isinstance(cmd, TopkTokensCmd):
            ids = self._tokens(cmd.tokens_base, cmd.n, "TOPK_TOKENS")
            return TopkResp(cmd.tag, tuple(int(x) for x in ids[topk_select(self.imp[ids], cmd.k)]))
        if isinstance(cmd, TopkHeadsCmd):
            keys = self.head_imp[: cmd.n]
            return TopkResp(cmd.tag, tuple(int(x) for x in topk_select(keys, cmd.k)), heads=True)
        if isinstance(cmd, ClearCmd):
            if cmd.tokens:
                self.imp[:] = 0
            if cmd.heads:
                self.head_imp[:] = 0
            return ClearResp(cmd.tag)
        if isinstance(cmd, ReadImportanceCmd):
            ids = self._tokens(cmd.tokens_base, cmd.n, "READ_IMPORTANCE")
            return ReadImportanceResp(cmd.tag, tuple(int(x) for x in self.imp[ids]))
        raise TypeError(f"not a command: {cmd!r}")  # unreachable: decode_command checked

    def _attend(self, c: AttendCmd) -> AttendResp:
        p = self.params
        toks = self._tokens(c.tokens_base, c.n, "ATTEND")
        k_msb = self._rows(c.k_msb_base, toks, c.d, c.k_msb_bits, True, "K MSB")
        pass2_possible = c.requant and c.k_lsb_bits > 0
        k_lsb = (self._rows(c.k_lsb_base, toks, c.d, c.k_lsb_bits, False, "K LSB")
                 if pass2_possible else None)
        pr = attention_probs(c.query, k_msb, k_lsb, c.k_lsb_bits, c.score_scale, c.score_shift,
                             c.requant, c.requant_threshold, p)
        if c.accum_importance:
            np.add.at(self.imp, toks, pr.p)
            np.minimum(self.imp, p.imp_max, out=self.imp)
        sel = value_positions(pr.p, c.value_topk, c.value_thresh)
        v = self._rows(c.v_base, toks[sel], c.d, c.v_bits, True, "V")
        out = weighted_sum(pr.p[sel], v)
        inc = head_importance_increment(out)
        if c.accum_importance:
            self.head_imp[c.head_id] = min(int(self.head_imp[c.head_id]) + inc, p.head_imp_max)
        self.last_attend = AttendResult(pr, sel, out, inc)
        self.last_traffic = AttendTraffic(
            token_list=self._bursts(2 * c.n),
            k_msb=c.n * self._bursts(stride(c.d, c.k_msb_bits, p.burst_bytes)),
            k_lsb=(c.n * self._bursts(stride(c.d, c.k_lsb_bits, p.burst_bytes))
                   if pr.requantized else 0),
            v=len(sel) * self._bursts(stride(c.d, c.v_bits, p.burst_bytes)))
        selected = np.zeros(c.n, dtype=np.int64)
        selected[sel] = 1
        return AttendResp(tag=c.tag, n=c.n, requantized=pr.requantized, pmax=pr.pmax,
                          out=tuple(int(x) for x in out),
                          selected=tuple(int(x) for x in selected), head_id=c.head_id)

    def _attend_group(self, g: GroupAttendCmd) -> GroupAttendResp:
        """SPEC 2: the heads one after another as single-head ATTENDs (importance adds up
        in that order); the group reads its list and each K row once, the K LSB rows once
        when any head requantizes, and each V row selected by any head once."""
        p = self.params
        sections, results, union = [], [], set()
        for c in g.head_commands():
            sections.append(self._attend(c))
            results.append(self.last_attend)
            union.update(int(j) for j in self.last_attend.selected)
        self.last_group = results
        self.last_traffic = AttendTraffic(
            token_list=self._bursts(2 * g.n),
            k_msb=g.n * self._bursts(stride(g.d, g.k_msb_bits, p.burst_bytes)),
            k_lsb=(g.n * self._bursts(stride(g.d, g.k_lsb_bits, p.burst_bytes))
                   if any(r.probs.requantized for r in results) else 0),
            v=len(union) * self._bursts(stride(g.d, g.v_bits, p.burst_bytes)))
        return GroupAttendResp(tag=g.tag, d=g.d, sections=tuple(sections))
