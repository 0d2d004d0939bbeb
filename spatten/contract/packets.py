"""Packets as words: field packing through the generated layout, and word streams.

The helpers :mod:`spatten.contract.commands` builds its typed packets on: every field is
checked (:class:`CommandError`, naming the packet and field) and placed by name through
:mod:`spatten.contract.layout`; the opcode and tag of a first word; the cycle count of an
ATTEND response (hardware-only, masked in comparisons). Then streams: splitting at
``last``, comparing two response streams, and the stream file of the native harness.

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
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from spatten.contract.layout import Field, Packet, Tail, layout
from spatten.errors import ContractError
from spatten.fileio import atomic_output

__all__ = ["Word", "WORD_MASK", "CommandError", "encode_fields", "decode_fields", "opcode_of", "tag_of", "is_attend", "is_error", "attend_cycles",
           "attend_cycles_mask", "split_packets", "compare_responses", "write_stream", "read_stream"]

Word = tuple[int, bool]
"""One stream word: ``(data, last)``, ``0 <= data < 2^64``."""

WORD_MASK = (1 << 64) - 1
_STREAM_RECORD = struct.Struct("<QQ")


class CommandError(ContractError):
    """A field does not fit, or a packet is malformed.

    ``opcode`` and ``tag`` are set when known (used to build the error response)."""

    def __init__(self, msg: str, opcode: int | None = None, tag: int | None = None) -> None:
        super().__init__(msg)
        self.opcode = opcode
        self.tag = tag


# ---- field helpers ---------------------------------------------------------------------

def _fit(owner: str, name: str, value: Any, bits: int, signed: bool = False) -> int:
    """Check ``value`` is an integer that fits ``bits`` bits; return it."""
    if isinstance(value, bool):
        value = int(value)
    try:
        value = operator.index(value)  # ints and numpy integers; floats are refused
    except TypeError:
        raise CommandError(f"{owner}.{name}: expected an integer, got {value!r}") from None
    lo, hi = Field("value", 0, 0, bits, signed).limits
    if not lo <= value <= hi:
        raise CommandError(
            f"{owner}.{name}={value} does not fit {'signed' if signed else 'unsigned'} "
            f"{bits} bits [{lo}, {hi}]")
    return value


def _fit_field(owner: str, name: str, value: Any, f: Field) -> int:
    return _fit(owner, name, value, f.width, f.signed)


def _pack_tail(t: Tail, values: Sequence[int], owner: str, name: str) -> list[int]:
    """The words of tail ``t`` holding ``values``, each checked to fit a lane."""
    lo, hi = t.limits
    if t.lane_bits < 64:
        try:
            raw = np.asarray(values)
            a = raw.astype(np.int64).reshape(-1)
            ok = bool(raw.size == 0 or (raw.dtype.kind in "iu" and a.min() >= lo and a.max() <= hi))
        except (OverflowError, TypeError, ValueError):
            ok = False
        if ok:  # vectorized: the golden model encodes every response of a workload
            lanes = t.lanes_per_word
            u = np.zeros(-(-a.size // lanes) * lanes, dtype=np.uint64)
            u[: a.size] = (a & ((1 << t.lane_bits) - 1)).astype(np.uint64)
            grid = u.reshape(-1, lanes)
            words = np.zeros(grid.shape[0], dtype=np.uint64)
            for j in range(lanes):
                words |= grid[:, j] << np.uint64(t.lane_bits * j)
            return [int(w) for w in words]
    checked = [_fit(owner, f"{name}[{i}]", v, t.lane_bits, t.signed) for i, v in enumerate(values)]
    return t.pack(checked)


def _with_last(words: Sequence[int]) -> list[Word]:
    return [(w, i == len(words) - 1) for i, w in enumerate(words)]


def encode_fields(obj: Any, opcode: str | None = None, values: dict[str, int] | None = None,
            tails: Sequence[tuple[str, Sequence[int]]] = ()) -> list[Word]:
    """The packet of ``obj`` (a dataclass with ``_PACKET`` and ``_FIELDS``): header fields
    from its attributes by name (``values`` adds computed ones, keyed by attribute name),
    then the tails ``(python name, values)`` in the packet's tail order."""
    lay = layout()
    pk = lay.packet(obj._PACKET)
    owner = type(obj).__name__
    given = {py: getattr(obj, py) for py in obj._FIELDS if py not in (values or {})}
    given.update(values or {})
    header = {"opcode": lay.opcode(opcode or pk.opcodes[0])} if pk.opcodes else {}  # sections have none
    for py, v in given.items():
        f = pk.field(obj._FIELDS[py])
        header[f.name] = _fit_field(owner, py, 0 if v is None else v, f)
    words = pk.pack(header)
    for t, (py, vals) in zip(pk.tails, tails):
        words += _pack_tail(t, vals, owner, py)
    return _with_last(words)


def decode_fields(cls: type, pk: Packet, words: Sequence[int]) -> dict[str, Any]:
    """The header fields of ``words`` under ``cls``'s attribute names (booleans as bool)."""
    init = {f.name: f.type for f in fields(cls) if f.init}
    out: dict[str, Any] = {}
    for py, cn in cls._FIELDS.items():  # type: ignore[attr-defined]
        if py in init:
            v = pk.get(words, cn)
            out[py] = bool(v) if init[py] in ("bool", bool) else v
    return out


def opcode_of(word0: int) -> int:
    """The opcode of a packet from its first word."""
    return layout().opcode_field.extract(word0)


def tag_of(word0: int) -> int:
    """The tag of a packet from its first word (the same field in every packet)."""
    return layout().packet("clear").get([word0], "tag")


def is_attend(word0: int) -> bool:
    """Whether the packet starting with ``word0`` is an ATTEND command or response."""
    return opcode_of(word0) == layout().opcode("ATTEND")


def is_error(word0: int) -> bool:
    """Whether the response starting with ``word0`` is an error response."""
    return opcode_of(word0) == layout().opcode("ERROR")


def attend_cycles_mask() -> tuple[int, int]:
    """``(word, mask)``: the bits of an ATTEND response holding its (hardware-only) cycle count."""
    f = layout().packet("attendResp").field("cycles")
    return f.word, f.mask


def attend_cycles(packet: Sequence[Word]) -> int:
    """The cycle count an ATTEND response carries."""
    return layout().packet("attendResp").get([w for w, _ in packet], "cycles")


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


def cycles_words(packet: Sequence[Word]) -> set[int]:
    """The words of a response packet holding a (hardware-only) cycles field: word 1 of
    an ATTEND response, word 1 of every section of an ATTEND_GROUP response (none when its
    sections do not parse), none for the others."""
    lay = layout()
    if is_attend(packet[0][0]):
        return {attend_cycles_mask()[0]}
    if opcode_of(packet[0][0]) != lay.opcode("ATTEND_GROUP"):
        return set()
    from spatten.contract.grouped import section_lengths
    try:
        starts = section_lengths([w for w, _ in packet])
    except CommandError:
        return set()
    return {s + lay.packet("attendResp").field("cycles").word for s, _ in starts}


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
    _, cycles_mask = attend_cycles_mask()
    for k, (e, a) in enumerate(zip(exp_p, act_p)):
        if len(e) != len(a):
            errs.append(f"packet {k}: expected {len(e)} words, got {len(a)}")
        masked = cycles_words(e)
        for i, ((ew, el), (aw, al)) in enumerate(zip(e, a)):
            mask = ~cycles_mask & WORD_MASK if i in masked else WORD_MASK
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
            if not 0 <= data <= WORD_MASK:
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
