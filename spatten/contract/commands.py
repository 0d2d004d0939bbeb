"""Command and response packets of the accelerator (``hardware/SPEC.md`` section 5).

Both streams carry 64-bit words with a ``last`` flag marking the final word of a packet.
Here a word is a ``(data, last)`` tuple (:data:`Word`), a packet a list of words.

Typed packets (frozen dataclasses), each with ``encode() -> list[Word]``:

==========================  ===================  ==========================================
command                     opcode               response
==========================  ===================  ==========================================
:class:`AttendCmd`          ``ATTEND``           :class:`AttendResp`
:class:`TopkTokensCmd`      ``TOPK_TOKENS``      :class:`TopkResp` (``heads=False``)
:class:`TopkHeadsCmd`       ``TOPK_HEADS``       :class:`TopkResp` (``heads=True``)
:class:`ClearCmd`           ``CLEAR``            :class:`ClearResp`
:class:`ReadImportanceCmd`  ``READ_IMPORTANCE``  :class:`ReadImportanceResp`
(unknown / out of range)    --                   :class:`ErrorResp` (opcode ``ERROR``)
==========================  ===================  ==========================================

Every field is placed and read by name through :mod:`spatten.contract.layout` (the
generated ``contract.json``): this module holds no opcode value and no bit position. The
dataclasses use snake_case names; ``_FIELDS`` of each maps them to the contract's.

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

The ``cycles`` field of :class:`AttendResp` is a hardware measurement: the golden model leaves it 0 / ``None``, it is excluded from dataclass
equality, and :func:`compare_responses` masks it.

The word-level helpers (field packing through the layout, opcode and tag of a word,
streams and their files) are in :mod:`spatten.contract.packets`; the names are
re-exported here.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import ClassVar, Sequence, Union

from spatten.contract.layout import layout
from spatten.contract.packets import (  # noqa: F401 (re-exported: the packet API in one place)
    WORD_MASK, CommandError, Word, attend_cycles, attend_cycles_mask, compare_responses, decode_fields,
    encode_fields, is_attend, is_error, opcode_of, read_stream, split_packets, tag_of, write_stream,
)
from spatten.contract.params import HwParams

__all__ = [
    "Word", "CommandError", "AttendCmd", "TopkTokensCmd", "TopkHeadsCmd",
    "ClearCmd", "ReadImportanceCmd", "AttendResp", "TopkResp", "ClearResp",
    "ReadImportanceResp", "ErrorResp", "Command", "Response", "decode_command",
    "decode_response", "split_packets", "compare_responses", "write_stream", "read_stream",
    "command_length", "opcode_of", "tag_of", "is_attend", "is_error", "attend_cycles",
    "attend_cycles_mask",
]


class _Packed:
    """A typed packet whose header fields are its attributes (``_PACKET``, ``_FIELDS``)."""

    def encode(self) -> list[Word]:
        return encode_fields(self)


# ---- commands --------------------------------------------------------------------------

class _Command(_Packed):
    """A command: encoded from its attributes; valid unless :meth:`problems` says why not."""

    def problems(self, params: HwParams) -> list[str]:
        """Why the accelerator would answer this command with an error (empty: valid)."""
        return []


class _ListCommand(_Command):
    """A command over a token list of ``n`` ids at ``tokens_base``."""

    n: int
    tokens_base: int

    def problems(self, params: HwParams) -> list[str]:
        p = [f"n={self.n} > maxTokens={params.max_tokens}"] if self.n > params.max_tokens else []
        return p + _base_problems(params, tokens_base=self.tokens_base)


def _base_problems(params: HwParams, **bases: int) -> list[str]:
    """SPEC 5: every DRAM base of a command must be burst-aligned and below
    ``2^dramAddrBits`` (checked on the base alone, used or not), else an error response."""
    out = []
    for name, base in bases.items():
        if base % params.burst_bytes or base >= params.addr_limit:
            out.append(f"{name}={base:#x} is not a {params.burst_bytes}-byte aligned address below "
                       f"2^{params.dram_addr_bits}")
    return out


@dataclass(frozen=True)
class AttendCmd:
    """ATTEND: one head, one query row (SPEC 2 and 5). ``d`` defaults to ``len(query)``.

    Bases are byte addresses (64-bit words). ``requant_threshold`` is Q.16 (17 bits),
    ``score_scale``/``score_shift`` as in SPEC 2 (see :func:`spatten.contract.quant.choose_score_scale`).
    """

    _PACKET: ClassVar[str] = "attend"
    _FIELDS: ClassVar[dict[str, str]] = {
        "tag": "tag", "n": "n", "value_topk": "valueTopK", "head_id": "headId", "d": "d",
        "k_msb_bits": "kMsbBits", "k_lsb_bits": "kLsbBits", "v_bits": "vBits", "requant": "requant",
        "accum_importance": "accumImportance", "score_shift": "scoreShift",
        "requant_threshold": "requantThreshold", "score_scale": "scoreScale", "k_msb_base": "kMsbBase",
        "k_lsb_base": "kLsbBase", "v_base": "vBase", "tokens_base": "listBase"}

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
    value_thresh: bool = False

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
        if self.value_thresh:
            raise CommandError("AttendCmd.value_thresh: an ATTEND has no valueThresh bit; send the head "
                               "as a one-head ATTEND_GROUP (grouped.group_commands)", tag=self.tag)
        return encode_fields(self, tails=[("query", self.query)])

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
class TopkTokensCmd(_ListCommand):
    """TOPK_TOKENS: keep the ``k`` ids of the list with the largest ``imp[id]``."""

    _PACKET: ClassVar[str] = "topkTokens"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "n": "n", "k": "k", "tokens_base": "listBase"}

    tag: int
    n: int
    k: int
    tokens_base: int


@dataclass(frozen=True)
class TopkHeadsCmd(_Command):
    """TOPK_HEADS: keep the ``k`` heads among ``0..n-1`` with the largest ``headImp``."""

    _PACKET: ClassVar[str] = "topkHeads"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "n": "n", "k": "k"}

    tag: int
    n: int
    k: int

    def problems(self, params: HwParams) -> list[str]:
        if self.n > params.max_heads:
            return [f"n={self.n} > maxHeads={params.max_heads}"]
        return []


@dataclass(frozen=True)
class ClearCmd(_Command):
    """CLEAR: zero all token and/or all head importance counters."""

    _PACKET: ClassVar[str] = "clear"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "tokens": "clearTok", "heads": "clearHead"}

    tag: int
    tokens: bool = True
    heads: bool = True


@dataclass(frozen=True)
class ReadImportanceCmd(_ListCommand):
    """READ_IMPORTANCE: read ``imp[id]`` of the ``n`` ids of a token list."""

    _PACKET: ClassVar[str] = "readImportance"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "n": "n", "tokens_base": "listBase"}

    tag: int
    n: int
    tokens_base: int


Command = Union[AttendCmd, TopkTokensCmd, TopkHeadsCmd, ClearCmd, ReadImportanceCmd]

_COMMANDS: dict[str, type] = {c._PACKET: c for c in (AttendCmd, TopkTokensCmd, TopkHeadsCmd, ClearCmd,
                                                     ReadImportanceCmd)}


def command_length(word0: int, word1: int | None = None) -> int | None:
    """Words of a well-formed command packet given its first word(s); ``None`` for an
    unknown opcode. ATTEND needs ``word1`` (for D)."""
    pk = layout().packet_for("command", opcode_of(word0))
    if pk is None:
        return None
    if pk.sections:  # ATTEND_GROUP
        from spatten.contract.grouped import group_command_length
        return group_command_length(word0, word1)
    n = pk.header_words
    for t in pk.tails:
        f = pk.field(t.count)
        if f.word > 1 or (f.word == 1 and word1 is None):
            raise ValueError(f"the length of a {pk.name} packet depends on {t.count} in word {f.word}")
        n += t.words(f.extract(word0 if f.word == 0 else word1))
    return n


def decode_command(packet: Sequence[Word]) -> Command:
    """Decode one command packet (reserved bits ignored).

    Raises :class:`CommandError` (with ``opcode`` and ``tag`` set) for an unknown opcode,
    or when ``last`` is not exactly on the packet's final word at the length its opcode
    (and, for ATTEND, D) implies."""
    if not packet:
        raise CommandError("empty command packet")
    w = [int(x) for x, _ in packet]
    for x in w:
        if not 0 <= x <= WORD_MASK:
            raise CommandError(f"command word 0x{x:x} is not a 64-bit value")
    op, tag = opcode_of(w[0]), tag_of(w[0])
    pk = layout().packet_for("command", op)
    if pk is None:
        raise CommandError(f"unknown opcode {op}", op, tag)
    want = command_length(w[0], w[1] if len(w) > 1 else 0)
    lasts = [bool(last) for _, last in packet]
    if len(w) != want or not lasts[-1] or any(lasts[:-1]):
        raise CommandError(
            f"opcode {op} packet has {len(w)} words (last flags {lasts}), expected {want} "
            "with last on the final word", op, tag)
    if pk.sections:  # ATTEND_GROUP
        from spatten.contract.grouped import decode_group_command
        return decode_group_command(w)  # type: ignore[return-value]
    cls = _COMMANDS[pk.name]
    kw = decode_fields(cls, pk, w)
    pos = pk.header_words
    for t in pk.tails:  # only ATTEND has one: the query
        count = pk.get(w, t.count)
        kw[t.name] = t.unpack(w[pos:pos + t.words(count)], count)
        pos += t.words(count)
    return cls(**kw)


# ---- responses -------------------------------------------------------------------------

@dataclass(frozen=True)
class AttendResp:
    """ATTEND response. ``out`` are the ``o_i`` (signed 64-bit, Q.16 times V units),
    ``selected`` one bit per list position (``1``: its V row is among the ``m`` selected;
    ``len(selected) == n``); :meth:`token_ids` maps them to ids through the request's
    token list. ``cycles`` is hardware-only (``None`` from the golden model; not compared)."""

    _PACKET: ClassVar[str] = "attendResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "m": "m", "requantized": "requantized", "n": "n",
                                         "pmax": "pmax", "cycles": "cycles", "head_id": "headId"}
    _TAILS: ClassVar[dict[str, str]] = {"o": "out", "sel": "selected"}

    tag: int
    n: int
    requantized: bool
    pmax: int
    out: tuple[int, ...]
    selected: tuple[int, ...]
    cycles: int | None = field(default=None, compare=False)
    head_id: int = 0

    def __post_init__(self) -> None:
        if len(self.selected) != self.n or any(b not in (0, 1) for b in self.selected):
            raise CommandError(f"AttendResp (tag {self.tag}): selected must be {self.n} bits (one a "
                               f"list position), got {len(self.selected)} values")

    @property
    def m(self) -> int:
        return sum(self.selected)

    @property
    def positions(self) -> tuple[int, ...]:
        """The selected list positions, ascending."""
        return tuple(j for j, b in enumerate(self.selected) if b)

    def token_ids(self, token_list: Sequence[int]) -> tuple[int, ...]:
        """The selected token ids, in ascending position, given the request's list."""
        return tuple(int(token_list[j]) for j in self.positions)

    def encode(self) -> list[Word]:
        return encode_fields(self, tails=[("out", self.out), ("selected", self.selected)])


@dataclass(frozen=True)
class TopkResp:
    """TOPK_TOKENS (``heads=False``) or TOPK_HEADS (``heads=True``) response: the kept
    ids in ascending position."""

    _PACKET: ClassVar[str] = "topkResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "count": "count"}
    _TAILS: ClassVar[dict[str, str]] = {"ids": "ids"}

    tag: int
    ids: tuple[int, ...]
    heads: bool = False

    def encode(self) -> list[Word]:
        return encode_fields(self, "TOPK_HEADS" if self.heads else "TOPK_TOKENS", {"count": len(self.ids)},
                       [("ids", self.ids)])


@dataclass(frozen=True)
class ClearResp(_Packed):
    """CLEAR response (one word)."""

    _PACKET: ClassVar[str] = "clearResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag"}

    tag: int


@dataclass(frozen=True)
class ReadImportanceResp:
    """READ_IMPORTANCE response: ``imp[tok_j]`` for each listed id, in list order."""

    _PACKET: ClassVar[str] = "readImportanceResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "count": "n"}
    _TAILS: ClassVar[dict[str, str]] = {"importance": "values"}

    tag: int
    values: tuple[int, ...]

    def encode(self) -> list[Word]:
        return encode_fields(self, values={"count": len(self.values)}, tails=[("values", self.values)])


@dataclass(frozen=True)
class ErrorResp(_Packed):
    """Error response (opcode ``ERROR``): ``opcode`` is the offending command's opcode."""

    _PACKET: ClassVar[str] = "errorResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "opcode": "badOpcode"}

    tag: int
    opcode: int


Response = Union[AttendResp, TopkResp, ClearResp, ReadImportanceResp, ErrorResp]

_RESPONSES: dict[str, type] = {c._PACKET: c for c in (AttendResp, TopkResp, ClearResp, ReadImportanceResp,
                                                      ErrorResp)}


def _reserved_zero(word: int, used_mask: int, what: str) -> None:
    if word & ~used_mask & WORD_MASK:
        raise CommandError(f"{what}: reserved bits set: 0x{word & ~used_mask & WORD_MASK:016x}")


def decode_response(packet: Sequence[Word]) -> Response:
    """Decode one response packet, strictly: ``last`` exactly on the final word, the
    length implied by the header, reserved bits and unused lanes zero."""
    if not packet:
        raise CommandError("empty response packet")
    w = [int(x) for x, _ in packet]
    lasts = [bool(last) for _, last in packet]
    if not lasts[-1] or any(lasts[:-1]):
        raise CommandError(f"response packet: last flags {lasts}, expected only on the final word")
    lay = layout()
    op, tag = opcode_of(w[0]), tag_of(w[0])
    pk = lay.packet_for("response", op)
    if pk is None:
        raise CommandError(f"unknown response opcode {op} (tag {tag})", op, tag)
    if pk.sections:  # ATTEND_GROUP: one ATTEND response section a head
        from spatten.contract.grouped import decode_group_response
        return decode_group_response(packet)  # type: ignore[return-value]
    for i in range(min(len(w), pk.header_words)):
        _reserved_zero(w[i], pk.used_mask(i), f"{pk.name} (tag {tag}) word {i}")
    if len(w) < pk.header_words:
        raise CommandError(f"{pk.name} (tag {tag}) has {len(w)} words, expected at least "
                           f"{pk.header_words}", op, tag)
    # Tail lengths: from their count fields; a tail counted by a field of the command
    # (attendResp's ``o``, by D) takes the words the others leave.
    counts = {t.name: pk.get(w, t.count) for t in pk.tails if t.count in pk.fields}
    known = sum(t.words(counts[t.name]) for t in pk.tails if t.name in counts)
    free = [t for t in pk.tails if t.name not in counts]
    if free:
        rest = len(w) - pk.header_words - known
        if rest < 0:
            raise CommandError(f"{pk.name} (tag {tag}) too short for its {', '.join(counts)} "
                               f"({', '.join(str(c) for c in counts.values())})", op, tag)
        counts[free[0].name] = rest * free[0].lanes_per_word
    else:
        expected = pk.header_words + known
        if len(w) != expected:
            raise CommandError(f"opcode {op} response (tag {tag}) has {len(w)} words, "
                               f"expected {expected}", op, tag)
    cls = _RESPONSES[pk.name]
    kw = decode_fields(cls, pk, w)
    pos = pk.header_words
    for t in pk.tails:
        n = counts[t.name]
        tw = w[pos:pos + t.words(n)]
        full = (1 << (t.lane_bits * t.lanes_per_word)) - 1
        for j, x in enumerate(tw):
            _reserved_zero(x, t.used_mask(n) if j == len(tw) - 1 else full, f"{pk.name} {t.name} word {j}")
        kw[cls._TAILS[t.name]] = t.unpack(tw, n)  # type: ignore[attr-defined]
        pos += len(tw)
    if cls is TopkResp:
        kw["heads"] = op == lay.opcode("TOPK_HEADS")
    if cls is AttendResp:
        kw["selected"] = tuple(kw["selected"])
        if sum(kw["selected"]) != pk.get(w, "m"):
            raise CommandError(f"{pk.name} (tag {tag}): m = {pk.get(w, 'm')} but {sum(kw['selected'])} "
                               f"positions are selected", op, tag)
    return cls(**kw)
