"""Command and response packets of the accelerator (``hardware/SPEC.md`` section 5).

Both streams carry 64-bit words with a ``last`` flag marking the final word of a packet.
Here a word is a ``(data, last)`` tuple (:data:`Word`), a packet a list of words.

Typed packets (frozen dataclasses), each with ``encode() -> list[Word]``:

========================  =======  ================================================
command                   opcode   response
========================  =======  ================================================
:class:`AttendCmd`        1        :class:`AttendResp`
:class:`TopkTokensCmd`    2        :class:`TopkResp` (``heads=False``)
:class:`TopkHeadsCmd`     3        :class:`TopkResp` (``heads=True``)
:class:`ClearCmd`         4        :class:`ClearResp`
:class:`ReadImportanceCmd` 5       :class:`ReadImportanceResp`
(unknown / out of range)  --       :class:`ErrorResp` (opcode ``0xFF``)
========================  =======  ================================================

Module functions: :func:`decode_command`, :func:`decode_response`, :func:`split_packets`,
:func:`compare_responses` (word-by-word, cycles masked), :func:`write_stream` and
:func:`read_stream` (the binary stream file of the native harness).

Range checks come in two kinds. *Encoding* checks that every field fits its bit range
and raises :class:`CommandError` otherwise (a packet that cannot be written). *Validity*
against a hardware configuration (``N <= maxTokens`` ...) is :meth:`AttendCmd.problems`
etc.: such commands can be encoded -- tests send them on purpose -- and the accelerator
answers them with an :class:`ErrorResp`.

Decoding a command ignores reserved bits (as the hardware does); decoding a response
requires reserved bits and unused lanes to be zero (it is used to check the RTL).

The ``cycles`` field of :class:`AttendResp` (word 1, bits ``[63:32]``) is a hardware
measurement: the golden model leaves it 0 / ``None``, it is excluded from dataclass
equality, and :func:`compare_responses` masks it.

Stream file format (native harness)
-----------------------------------
A sequence of 16-byte records, no header: bytes ``0..7`` the word (uint64
little-endian), bytes ``8..15`` flags (uint64 little-endian; bit 0 = ``last``, every
other bit zero). The file size is a multiple of 16. C++ reads it as
``struct { uint64_t data; uint64_t flags; }``. Files are written atomically.
"""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from spatten.fileio import atomic_output
from spatten.contract.params import HwParams
from spatten.errors import ContractError

__all__ = [
    "Word", "CommandError", "OP_ATTEND", "OP_TOPK_TOKENS", "OP_TOPK_HEADS", "OP_CLEAR",
    "OP_READ_IMPORTANCE", "OP_ERROR", "AttendCmd", "TopkTokensCmd", "TopkHeadsCmd",
    "ClearCmd", "ReadImportanceCmd", "AttendResp", "TopkResp", "ClearResp",
    "ReadImportanceResp", "ErrorResp", "Command", "Response", "decode_command",
    "decode_response", "split_packets", "compare_responses", "write_stream", "read_stream",
    "ATTEND_CYCLES_MASK", "command_length",
]

Word = tuple[int, bool]
"""One stream word: ``(data, last)``, ``0 <= data < 2^64``."""

OP_ATTEND = 1
OP_TOPK_TOKENS = 2
OP_TOPK_HEADS = 3
OP_CLEAR = 4
OP_READ_IMPORTANCE = 5
OP_ERROR = 0xFF

ATTEND_CYCLES_MASK = 0xFFFF_FFFF << 32
"""Bits of word 1 of an ATTEND response holding the (hardware-only) cycle count."""

_U64 = (1 << 64) - 1
_STREAM_RECORD = struct.Struct("<QQ")


class CommandError(ContractError):
    """A field does not fit, or a packet is malformed.

    ``opcode`` and ``tag`` are set when known (used to build the error response)."""

    def __init__(self, msg: str, opcode: int | None = None, tag: int | None = None) -> None:
        super().__init__(msg)
        self.opcode = opcode
        self.tag = tag


# ---- bit helpers -----------------------------------------------------------------------

def _fit(owner: str, name: str, value: int, bits: int, signed: bool = False) -> int:
    """Check ``value`` fits ``bits`` bits and return it as an unsigned bit pattern."""
    if isinstance(value, bool):
        value = int(value)
    try:
        value = operator.index(value)  # ints and numpy integers; floats are refused
    except TypeError:
        raise CommandError(f"{owner}.{name}: expected an integer, got {value!r}") from None
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise CommandError(
            f"{owner}.{name}={value} does not fit {'signed' if signed else 'unsigned'} "
            f"{bits} bits [{lo}, {hi}]")
    return value & ((1 << bits) - 1)


def _get(word: int, hi: int, lo: int) -> int:
    return (word >> lo) & ((1 << (hi - lo + 1)) - 1)


def _sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _pack16(values: Sequence[int], owner: str, name: str, signed: bool = False) -> list[int]:
    """Four 16-bit lanes per word, element ``i`` in bits ``[16*(i%4)+15 : 16*(i%4)]``."""
    lo, hi = (-(1 << 15), (1 << 15) - 1) if signed else (0, 0xFFFF)
    try:
        raw = np.asarray(values)
        a = raw.astype(np.int64).reshape(-1)
        ok = bool(raw.size == 0 or (raw.dtype.kind in "iu" and a.min() >= lo and a.max() <= hi))
    except (OverflowError, TypeError, ValueError):
        ok = False
    if not ok:  # find the first offending element for the message
        for i, v in enumerate(values):
            _fit(owner, f"{name}[{i}]", v, 16, signed)
    u = np.zeros(-(-a.size // 4) * 4, dtype=np.uint64)
    u[: a.size] = (a & 0xFFFF).astype(np.uint64)
    lanes = u.reshape(-1, 4)
    words = lanes[:, 0] | lanes[:, 1] << np.uint64(16) | lanes[:, 2] << np.uint64(32) | lanes[:, 3] << np.uint64(48)
    return [int(w) for w in words]


def _unpack16(words: Sequence[int], n: int, signed: bool = False) -> tuple[int, ...]:
    out = []
    for i in range(n):
        v = _get(words[i // 4], 16 * (i % 4) + 15, 16 * (i % 4))
        out.append(_sext(v, 16) if signed else v)
    return tuple(out)


def _with_last(words: Sequence[int]) -> list[Word]:
    return [(w, i == len(words) - 1) for i, w in enumerate(words)]


def _header(opcode: int, tag: int, owner: str) -> int:
    return opcode | (_fit(owner, "tag", tag, 16) << 8)


# ---- commands --------------------------------------------------------------------------

def _base_problems(params: HwParams, **bases: int) -> list[str]:
    """SPEC 5: every DRAM base of a command must be burst-aligned and below
    ``2^dramAddrBits`` (checked on the base alone, used or not), else an error response."""
    out = []
    for name, base in bases.items():
        if base % params.burst_bytes or base >> params.dram_addr_bits:
            out.append(f"{name}={base:#x} is not a {params.burst_bytes}-byte aligned address below "
                       f"2^{params.dram_addr_bits}")
    return out


@dataclass(frozen=True)
class AttendCmd:
    """ATTEND: one head, one query row (SPEC 2 and 5). ``d`` defaults to ``len(query)``.

    Bases are byte addresses (64-bit words). ``requant_threshold`` is Q.16 (17 bits),
    ``score_scale``/``score_shift`` as in SPEC 2 (see :func:`spatten.contract.quant.choose_score_scale`).
    """

    tag: int
    n: int
    query: tuple[int, ...]
    k_msb_base: int
    v_base: int
    tokens_base: int
    k_msb_bits: int
    v_bits: int
    score_scale: int
    score_shift: int
    k_lsb_bits: int = 0
    k_lsb_base: int = 0
    value_topk: int = 0
    head_id: int = 0
    requant: bool = False
    requant_threshold: int = 0
    accum_importance: bool = False
    d: int | None = None

    def __post_init__(self) -> None:
        q = []
        for i, x in enumerate(self.query):
            try:
                q.append(operator.index(x))
            except TypeError:
                raise CommandError(f"AttendCmd.query[{i}]: expected an integer, got {x!r}") from None
        object.__setattr__(self, "query", tuple(q))
        if self.d is None:
            object.__setattr__(self, "d", len(self.query))

    def encode(self) -> list[Word]:
        o = "AttendCmd"
        w0 = (_header(OP_ATTEND, self.tag, o) | _fit(o, "n", self.n, 16) << 24
              | _fit(o, "value_topk", self.value_topk, 16) << 40
              | _fit(o, "head_id", self.head_id, 8) << 56)
        w1 = (_fit(o, "d", self.d, 8) | _fit(o, "k_msb_bits", self.k_msb_bits, 5) << 8
              | _fit(o, "k_lsb_bits", self.k_lsb_bits, 5) << 13
              | _fit(o, "v_bits", self.v_bits, 5) << 18
              | _fit(o, "requant", self.requant, 1) << 23
              | _fit(o, "accum_importance", self.accum_importance, 1) << 24
              | _fit(o, "score_shift", self.score_shift, 6) << 25
              | _fit(o, "requant_threshold", self.requant_threshold, 17) << 31
              | _fit(o, "score_scale", self.score_scale, 16) << 48)
        bases = [_fit(o, nm, getattr(self, nm), 64)
                 for nm in ("k_msb_base", "k_lsb_base", "v_base", "tokens_base")]
        return _with_last([w0, w1, *bases, *_pack16(self.query, o, "query", signed=True)])

    def problems(self, params: HwParams) -> list[str]:
        """Why the accelerator would answer this command with an error (empty: valid)."""
        p: list[str] = []
        if not 1 <= self.n <= params.max_tokens:
            p.append(f"N={self.n} not in 1..maxTokens={params.max_tokens}")
        if not 1 <= self.d <= params.max_head_dim:
            p.append(f"D={self.d} not in 1..maxHeadDim={params.max_head_dim}")
        if not 1 <= self.k_msb_bits <= 16:
            p.append(f"kMsbBits={self.k_msb_bits} not in 1..16")
        if not 0 <= self.k_lsb_bits <= 15:
            p.append(f"kLsbBits={self.k_lsb_bits} not in 0..15")
        if self.k_msb_bits + self.k_lsb_bits > 16:
            p.append(f"kMsbBits+kLsbBits={self.k_msb_bits + self.k_lsb_bits} > 16")
        if not 1 <= self.v_bits <= 16:
            p.append(f"vBits={self.v_bits} not in 1..16")
        if self.head_id >= params.max_heads:
            p.append(f"headId={self.head_id} not in 0..maxHeads-1={params.max_heads - 1}")
        if len(self.query) != self.d:
            p.append(f"query has {len(self.query)} elements, D={self.d}")
        return p + _base_problems(params, k_msb_base=self.k_msb_base, k_lsb_base=self.k_lsb_base,
                                  v_base=self.v_base, tokens_base=self.tokens_base)


@dataclass(frozen=True)
class TopkTokensCmd:
    """TOPK_TOKENS: keep the ``k`` ids of the list with the largest ``imp[id]``."""

    tag: int
    n: int
    k: int
    tokens_base: int

    def encode(self) -> list[Word]:
        o = "TopkTokensCmd"
        w0 = (_header(OP_TOPK_TOKENS, self.tag, o) | _fit(o, "n", self.n, 16) << 24
              | _fit(o, "k", self.k, 16) << 40)
        return _with_last([w0, _fit(o, "tokens_base", self.tokens_base, 64)])

    def problems(self, params: HwParams) -> list[str]:
        p = [f"n={self.n} > maxTokens={params.max_tokens}"] if self.n > params.max_tokens else []
        return p + _base_problems(params, tokens_base=self.tokens_base)


@dataclass(frozen=True)
class TopkHeadsCmd:
    """TOPK_HEADS: keep the ``k`` heads among ``0..n-1`` with the largest ``headImp``."""

    tag: int
    n: int
    k: int

    def encode(self) -> list[Word]:
        o = "TopkHeadsCmd"
        return _with_last([_header(OP_TOPK_HEADS, self.tag, o) | _fit(o, "n", self.n, 16) << 24
                           | _fit(o, "k", self.k, 16) << 40])

    def problems(self, params: HwParams) -> list[str]:
        if self.n > params.max_heads:
            return [f"n={self.n} > maxHeads={params.max_heads}"]
        return []


@dataclass(frozen=True)
class ClearCmd:
    """CLEAR: zero all token and/or all head importance counters."""

    tag: int
    tokens: bool = True
    heads: bool = True

    def encode(self) -> list[Word]:
        o = "ClearCmd"
        return _with_last([_header(OP_CLEAR, self.tag, o) | _fit(o, "tokens", self.tokens, 1) << 24
                           | _fit(o, "heads", self.heads, 1) << 25])

    def problems(self, params: HwParams) -> list[str]:
        return []


@dataclass(frozen=True)
class ReadImportanceCmd:
    """READ_IMPORTANCE: read ``imp[id]`` of the ``n`` ids of a token list."""

    tag: int
    n: int
    tokens_base: int

    def encode(self) -> list[Word]:
        o = "ReadImportanceCmd"
        w0 = _header(OP_READ_IMPORTANCE, self.tag, o) | _fit(o, "n", self.n, 16) << 24
        return _with_last([w0, _fit(o, "tokens_base", self.tokens_base, 64)])

    def problems(self, params: HwParams) -> list[str]:
        p = [f"n={self.n} > maxTokens={params.max_tokens}"] if self.n > params.max_tokens else []
        return p + _base_problems(params, tokens_base=self.tokens_base)


Command = Union[AttendCmd, TopkTokensCmd, TopkHeadsCmd, ClearCmd, ReadImportanceCmd]


def command_length(word0: int, word1: int | None = None) -> int | None:
    """Words of a well-formed command packet given its first word(s); ``None`` for an
    unknown opcode. ATTEND needs ``word1`` (for D)."""
    op = word0 & 0xFF
    if op == OP_ATTEND:
        if word1 is None:
            raise ValueError("the length of an ATTEND packet depends on D in word 1")
        return 6 + (_get(word1, 7, 0) + 3) // 4
    return {OP_TOPK_TOKENS: 2, OP_TOPK_HEADS: 1, OP_CLEAR: 1, OP_READ_IMPORTANCE: 2}.get(op)


def decode_command(packet: Sequence[Word]) -> Command:
    """Decode one command packet (reserved bits ignored).

    Raises :class:`CommandError` (with ``opcode`` and ``tag`` set) for an unknown opcode,
    or when ``last`` is not exactly on the packet's final word at the length its opcode
    (and, for ATTEND, D) implies."""
    if not packet:
        raise CommandError("empty command packet")
    w = [int(x) for x, _ in packet]
    for x in w:
        if not 0 <= x <= _U64:
            raise CommandError(f"command word 0x{x:x} is not a 64-bit value")
    op, tag = w[0] & 0xFF, _get(w[0], 23, 8)
    if op not in (OP_ATTEND, OP_TOPK_TOKENS, OP_TOPK_HEADS, OP_CLEAR, OP_READ_IMPORTANCE):
        raise CommandError(f"unknown opcode {op}", op, tag)
    want = command_length(w[0], w[1] if len(w) > 1 else 0)
    lasts = [bool(last) for _, last in packet]
    if len(w) != want or not lasts[-1] or any(lasts[:-1]):
        raise CommandError(
            f"opcode {op} packet has {len(w)} words (last flags {lasts}), expected {want} "
            "with last on the final word", op, tag)
    if op == OP_ATTEND:
        w1 = w[1]
        d = _get(w1, 7, 0)
        return AttendCmd(
            tag=tag, n=_get(w[0], 39, 24), value_topk=_get(w[0], 55, 40), head_id=_get(w[0], 63, 56),
            d=d, k_msb_bits=_get(w1, 12, 8), k_lsb_bits=_get(w1, 17, 13), v_bits=_get(w1, 22, 18),
            requant=bool(_get(w1, 23, 23)), accum_importance=bool(_get(w1, 24, 24)),
            score_shift=_get(w1, 30, 25), requant_threshold=_get(w1, 47, 31),
            score_scale=_get(w1, 63, 48), k_msb_base=w[2], k_lsb_base=w[3], v_base=w[4],
            tokens_base=w[5], query=_unpack16(w[6:], d, signed=True))
    if op == OP_TOPK_TOKENS:
        return TopkTokensCmd(tag=tag, n=_get(w[0], 39, 24), k=_get(w[0], 55, 40), tokens_base=w[1])
    if op == OP_TOPK_HEADS:
        return TopkHeadsCmd(tag=tag, n=_get(w[0], 39, 24), k=_get(w[0], 55, 40))
    if op == OP_CLEAR:
        return ClearCmd(tag=tag, tokens=bool(_get(w[0], 24, 24)), heads=bool(_get(w[0], 25, 25)))
    return ReadImportanceCmd(tag=tag, n=_get(w[0], 39, 24), tokens_base=w[1])


# ---- responses -------------------------------------------------------------------------

@dataclass(frozen=True)
class AttendResp:
    """ATTEND response. ``out`` are the ``o_i`` (signed 64-bit, Q.16 times V units),
    ``token_ids`` the selected ids in ascending position; ``m == len(token_ids)``.
    ``cycles`` is hardware-only (``None`` from the golden model; not compared)."""

    tag: int
    n: int
    requantized: bool
    pmax: int
    out: tuple[int, ...]
    token_ids: tuple[int, ...]
    cycles: int | None = field(default=None, compare=False)

    @property
    def m(self) -> int:
        return len(self.token_ids)

    def encode(self) -> list[Word]:
        o = "AttendResp"
        w0 = (_header(OP_ATTEND, self.tag, o) | _fit(o, "m", self.m, 16) << 24
              | _fit(o, "requantized", self.requantized, 1) << 40 | _fit(o, "n", self.n, 16) << 48)
        w1 = _fit(o, "pmax", self.pmax, 17) | _fit(o, "cycles", self.cycles or 0, 32) << 32
        outs = [_fit(o, f"out[{i}]", x, 64, signed=True) for i, x in enumerate(self.out)]
        return _with_last([w0, w1, *outs, *_pack16(self.token_ids, o, "token_ids")])


@dataclass(frozen=True)
class TopkResp:
    """TOPK_TOKENS (``heads=False``) or TOPK_HEADS (``heads=True``) response: the kept
    ids in ascending position."""

    tag: int
    ids: tuple[int, ...]
    heads: bool = False

    def encode(self) -> list[Word]:
        o = "TopkResp"
        op = OP_TOPK_HEADS if self.heads else OP_TOPK_TOKENS
        w0 = _header(op, self.tag, o) | _fit(o, "count", len(self.ids), 16) << 24
        return _with_last([w0, *_pack16(self.ids, o, "ids")])


@dataclass(frozen=True)
class ClearResp:
    """CLEAR response (one word)."""

    tag: int

    def encode(self) -> list[Word]:
        return _with_last([_header(OP_CLEAR, self.tag, "ClearResp")])


@dataclass(frozen=True)
class ReadImportanceResp:
    """READ_IMPORTANCE response: ``imp[tok_j]`` for each listed id, in list order."""

    tag: int
    values: tuple[int, ...]

    def encode(self) -> list[Word]:
        o = "ReadImportanceResp"
        w0 = _header(OP_READ_IMPORTANCE, self.tag, o) | _fit(o, "count", len(self.values), 16) << 24
        return _with_last([w0, *(_fit(o, f"values[{i}]", v, 32) for i, v in enumerate(self.values))])


@dataclass(frozen=True)
class ErrorResp:
    """Error response (opcode 0xFF): ``opcode`` is the offending command's opcode."""

    tag: int
    opcode: int

    def encode(self) -> list[Word]:
        o = "ErrorResp"
        return _with_last([_header(OP_ERROR, self.tag, o) | _fit(o, "opcode", self.opcode, 16) << 24])


Response = Union[AttendResp, TopkResp, ClearResp, ReadImportanceResp, ErrorResp]


def _reserved_zero(word: int, used_mask: int, what: str) -> None:
    if word & ~used_mask & _U64:
        raise CommandError(f"{what}: reserved bits set: 0x{word & ~used_mask & _U64:016x}")


def decode_response(packet: Sequence[Word]) -> Response:
    """Decode one response packet, strictly: ``last`` exactly on the final word, the
    length implied by the header, reserved bits and unused lanes zero."""
    if not packet:
        raise CommandError("empty response packet")
    w = [int(x) for x, _ in packet]
    lasts = [bool(last) for _, last in packet]
    if not lasts[-1] or any(lasts[:-1]):
        raise CommandError(f"response packet: last flags {lasts}, expected only on the final word")
    op, tag = w[0] & 0xFF, _get(w[0], 23, 8)

    def length(expected: int) -> None:
        if len(w) != expected:
            raise CommandError(f"opcode {op} response (tag {tag}) has {len(w)} words, "
                               f"expected {expected}", op, tag)

    def ids_from(words: Sequence[int], count: int, what: str) -> tuple[int, ...]:
        if count % 4:
            _reserved_zero(words[-1], (1 << (16 * (count % 4))) - 1, f"{what} last id word")
        return _unpack16(words, count)

    if op == OP_ATTEND:
        m, n = _get(w[0], 39, 24), _get(w[0], 63, 48)
        _reserved_zero(w[0], (1 << 41) - 1 | 0xFFFF << 48, "attend response word 0")
        if len(w) < 2:
            raise CommandError(f"attend response (tag {tag}) has {len(w)} words", op, tag)
        _reserved_zero(w[1], (1 << 17) - 1 | ATTEND_CYCLES_MASK, "attend response word 1")
        d = len(w) - 2 - (m + 3) // 4
        if d < 0:
            raise CommandError(f"attend response (tag {tag}) too short for M={m}", op, tag)
        return AttendResp(tag=tag, n=n, requantized=bool(_get(w[0], 40, 40)),
                          pmax=_get(w[1], 16, 0), cycles=_get(w[1], 63, 32),
                          out=tuple(_sext(x, 64) for x in w[2:2 + d]),
                          token_ids=ids_from(w[2 + d:], m, "attend response"))
    if op in (OP_TOPK_TOKENS, OP_TOPK_HEADS):
        count = _get(w[0], 39, 24)
        _reserved_zero(w[0], (1 << 40) - 1, "top-k response word 0")
        length(1 + (count + 3) // 4)
        return TopkResp(tag=tag, ids=ids_from(w[1:], count, "top-k response"),
                        heads=op == OP_TOPK_HEADS)
    if op == OP_CLEAR:
        _reserved_zero(w[0], (1 << 24) - 1, "clear response")
        length(1)
        return ClearResp(tag=tag)
    if op == OP_READ_IMPORTANCE:
        count = _get(w[0], 39, 24)
        _reserved_zero(w[0], (1 << 40) - 1, "read-importance response word 0")
        length(1 + count)
        for i, x in enumerate(w[1:]):
            _reserved_zero(x, 0xFFFF_FFFF, f"read-importance response value {i}")
        return ReadImportanceResp(tag=tag, values=tuple(w[1:]))
    if op == OP_ERROR:
        _reserved_zero(w[0], (1 << 40) - 1, "error response")
        length(1)
        return ErrorResp(tag=tag, opcode=_get(w[0], 39, 24))
    raise CommandError(f"unknown response opcode {op} (tag {tag})", op, tag)


# ---- streams ---------------------------------------------------------------------------

def split_packets(words: Iterable[Word]) -> tuple[list[list[Word]], list[Word]]:
    """Split a word stream at ``last`` flags: ``(complete packets, trailing partial packet)``."""
    packets: list[list[Word]] = []
    cur: list[Word] = []
    for data, last in words:
        cur.append((int(data), bool(last)))
        if last:
            packets.append(cur)
            cur = []
    return packets, cur


def compare_responses(expected: Sequence[Word], actual: Sequence[Word]) -> list[str]:
    """Word-by-word comparison of two response streams, with the cycles field of ATTEND
    responses masked. Returns human-readable mismatches (empty: equal)."""
    errs: list[str] = []
    exp_p, exp_rest = split_packets(expected)
    act_p, act_rest = split_packets(actual)
    if exp_rest or act_rest:
        errs.append(f"unterminated packet: expected {len(exp_rest)} / actual {len(act_rest)} "
                    "trailing words without last")
    if len(exp_p) != len(act_p):
        errs.append(f"expected {len(exp_p)} response packets, got {len(act_p)}")
    for k, (e, a) in enumerate(zip(exp_p, act_p)):
        if len(e) != len(a):
            errs.append(f"packet {k}: expected {len(e)} words, got {len(a)}")
        masked = (e[0][0] & 0xFF) == OP_ATTEND
        for i, ((ew, el), (aw, al)) in enumerate(zip(e, a)):
            mask = ~ATTEND_CYCLES_MASK & _U64 if masked and i == 1 else _U64
            if (ew & mask) != (aw & mask) or el != al:
                errs.append(f"packet {k} word {i}: expected 0x{ew & mask:016x} last={el}, "
                            f"got 0x{aw & mask:016x} last={al}")
    return errs


def write_stream(path: str | Path, words: Iterable[Word]) -> Path:
    """Write a word stream file (format in the module docstring) atomically."""
    path = Path(path)
    with atomic_output(path) as f:
        for i, (data, last) in enumerate(words):
            data = int(data)
            if not 0 <= data <= _U64:
                raise CommandError(f"{path}: word {i} = {data} is not a 64-bit value")
            f.write(_STREAM_RECORD.pack(data, 1 if last else 0))
    return path


def read_stream(path: str | Path) -> list[Word]:
    """Read a word stream file written by :func:`write_stream` (or the native harness)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CommandError(f"{path}: cannot read stream file: {e.strerror}") from e
    if len(raw) % _STREAM_RECORD.size:
        raise CommandError(f"{path}: size {len(raw)} is not a multiple of "
                           f"{_STREAM_RECORD.size} (one record per word)")
    out: list[Word] = []
    for i, (data, flags) in enumerate(_STREAM_RECORD.iter_unpack(raw)):
        if flags & ~1:
            raise CommandError(f"{path}: record {i}: flags 0x{flags:x} has bits other than "
                               "bit 0 (last)")
        out.append((data, bool(flags & 1)))
    return out
