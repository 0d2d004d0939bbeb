"""The command and response word layouts, read from the generated ``contract.json``.

Scala elaboration writes ``contract.json`` from one layout object
(``hardware/src/main/scala/spatten/Contract.scala``): the opcodes and, for every packet,
its header fields (name, word, low bit, width, signedness) and its tails (lanes of
``laneBits`` bits, ``lanesPerWord`` a word). This module is the only Python code that
turns a field name into bit arithmetic; :mod:`spatten.contract.commands` and the top
testbench get and put every field by name through it, so changing a field's position or
width is a change in the Scala layout object only.

::

    lay = layout()                            # the contract in use (see layout())
    lay.opcode("ATTEND")                       # 1
    pk = lay.packet("attend")
    w0, w1, *rest = pk.pack({"opcode": 1, "tag": 7, "n": 40, ...})   # header words
    pk.get([w0], "tag")                        # 7
    pk.pack_tail("query", [1, -2, 3])          # tail words, lane 0 lowest
    lay.packet_for("response", op)             # the response packet of an opcode

Values handed to :meth:`Packet.pack` must already fit their fields (the caller checks and
names the field in its own terms, :meth:`Field.check`); bits not covered by a field are
reserved and packed as zero.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from spatten.errors import ContractError

__all__ = ["Field", "Tail", "Packet", "Layout", "load_layout", "layout", "set_layout", "ENV"]

ENV = "SPATTEN_CONTRACT"
"""Environment variable naming the ``contract.json`` to use (set for every testbench by
:func:`spatten.sim.build.run_cocotb`)."""

CONTRACT_VERSION = 1


def _mask(bits: int) -> int:
    return (1 << bits) - 1


def _limits(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, _mask(bits))


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


@dataclass(frozen=True)
class Field:
    """``width`` bits from bit ``lo`` of header word ``word``."""

    name: str
    word: int
    lo: int
    width: int
    signed: bool = False

    @property
    def mask(self) -> int:
        """The field's bits in its word."""
        return _mask(self.width) << self.lo

    @property
    def limits(self) -> tuple[int, int]:
        """The smallest and largest value the field holds."""
        return _limits(self.width, self.signed)

    def fits(self, value: int) -> bool:
        lo, hi = self.limits
        return lo <= value <= hi

    def extract(self, word: int) -> int:
        """The field's value in ``word`` (sign-extended when the field is signed)."""
        v = (word >> self.lo) & _mask(self.width)
        return _signed(v, self.width) if self.signed else v

    def place(self, value: int) -> int:
        """``value`` (which must fit) at the field's bits of an otherwise zero word."""
        return (int(value) & _mask(self.width)) << self.lo


@dataclass(frozen=True)
class Tail:
    """Elements after the header: ``lanesPerWord`` lanes of ``laneBits`` each, lane ``i``
    in bits ``[laneBits*i + laneBits-1 : laneBits*i]``; ``count`` names the field that
    gives the number of elements."""

    name: str
    lane_bits: int
    lanes_per_word: int
    signed: bool
    count: str

    @property
    def limits(self) -> tuple[int, int]:
        """The smallest and largest value a lane holds."""
        return _limits(self.lane_bits, self.signed)

    def words(self, count: int) -> int:
        """Words that ``count`` elements take."""
        return -(-count // self.lanes_per_word)

    def pack(self, values: Iterable[int]) -> list[int]:
        """The tail words of ``values`` (which must fit); unused lanes zero."""
        vals = [int(v) & _mask(self.lane_bits) for v in values]
        out = []
        for i in range(0, len(vals), self.lanes_per_word):
            w = 0
            for j, v in enumerate(vals[i:i + self.lanes_per_word]):
                w |= v << (self.lane_bits * j)
            out.append(w)
        return out

    def unpack(self, words: Sequence[int], count: int) -> tuple[int, ...]:
        """The first ``count`` elements of the tail ``words``."""
        out = []
        for i in range(count):
            w = words[i // self.lanes_per_word]
            v = (w >> (self.lane_bits * (i % self.lanes_per_word))) & _mask(self.lane_bits)
            out.append(_signed(v, self.lane_bits) if self.signed else v)
        return tuple(out)

    def used_mask(self, count: int) -> int:
        """Bits of the last tail word that ``count`` elements use (all, when it is full)."""
        rem = count % self.lanes_per_word
        return _mask(self.lane_bits * (rem or self.lanes_per_word))


@dataclass(frozen=True)
class Packet:
    """One command or response packet: its header fields and its tails, in order."""

    name: str
    direction: str
    opcodes: tuple[str, ...]
    header_words: int
    fields: Mapping[str, Field]
    tails: tuple[Tail, ...]
    sections: tuple[str, str] | None = None
    """``(section packet, count field)``: the packet ends with ``count`` copies of the
    section packet (grouped ATTEND), each starting on a fresh word."""

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise ContractError(f"packet {self.name} has no field {name!r}; fields: "
                                f"{', '.join(self.fields)}") from None

    def tail(self, name: str) -> Tail:
        for t in self.tails:
            if t.name == name:
                return t
        raise ContractError(f"packet {self.name} has no tail {name!r}")

    def get(self, words: Sequence[int], name: str) -> int:
        """Field ``name`` of the packet whose header words are ``words``."""
        f = self.field(name)
        return f.extract(int(words[f.word]))

    def pack(self, values: Mapping[str, int]) -> list[int]:
        """The header words from field values by name (fields not given and reserved bits
        zero). Every value must fit its field (:meth:`Field.fits`)."""
        words = [0] * self.header_words
        for name, v in values.items():
            f = self.field(name)
            if not f.fits(int(v)):
                lo, hi = f.limits
                raise ContractError(f"{self.name}.{name}={v} does not fit [{lo}, {hi}]")
            words[f.word] |= f.place(v)
        return words

    def used_mask(self, word: int) -> int:
        """Bits of header word ``word`` that some field covers (the rest are reserved)."""
        m = 0
        for f in self.fields.values():
            if f.word == word:
                m |= f.mask
        return m


@dataclass(frozen=True)
class Layout:
    """The whole contract: opcodes, packets, parameters, state names."""

    source: str
    preset: str
    word_bits: int
    opcodes: Mapping[str, int]
    packets: Mapping[str, Packet]
    params: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]]
    states: Mapping[str, list[str]]

    def opcode(self, name: str) -> int:
        try:
            return self.opcodes[name]
        except KeyError:
            raise ContractError(f"{self.source}: no opcode {name!r}") from None

    def packet(self, name: str) -> Packet:
        try:
            return self.packets[name]
        except KeyError:
            raise ContractError(f"{self.source}: no packet {name!r}") from None

    def packet_for(self, direction: str, opcode: int) -> Packet | None:
        """The ``direction`` ("command" or "response") packet of opcode value ``opcode``,
        or None when the opcode is unknown in that direction."""
        for p in self.packets.values():
            if p.direction == direction and any(self.opcodes[o] == opcode for o in p.opcodes):
                return p
        return None

    @property
    def opcode_field(self) -> Field:
        """The opcode field (the same in every packet: word 0)."""
        return next(iter(self.packets.values())).field("opcode")


def _fail(source: str, msg: str) -> ContractError:
    return ContractError(f"{source}: {msg}")


def from_dict(d: Mapping[str, Any], source: str = "<dict>") -> Layout:
    """A :class:`Layout` from the parsed ``contract.json`` object ``d`` (checked)."""
    try:
        if d.get("contractVersion") != CONTRACT_VERSION:
            raise _fail(source, f"contractVersion {d.get('contractVersion')!r}, this reader knows "
                        f"{CONTRACT_VERSION}")
        word_bits = int(d["wordBits"])
        opcodes = {str(k): int(v) for k, v in d["opcodes"].items()}
        packets: dict[str, Packet] = {}
        for name, p in d["packets"].items():
            fields = {}
            for f in p["fields"]:
                fl = Field(str(f["name"]), int(f["word"]), int(f["lo"]), int(f["width"]), bool(f["signed"]))
                if not (0 <= fl.word < int(p["headerWords"]) and fl.width >= 1
                        and 0 <= fl.lo and fl.lo + fl.width <= word_bits):
                    raise _fail(source, f"packet {name}: field {fl.name} outside the header words")
                if fl.name in fields:
                    raise _fail(source, f"packet {name}: field {fl.name} twice")
                fields[fl.name] = fl
            if "opcode" not in fields and p["direction"] != "section":
                raise _fail(source, f"packet {name}: no opcode field")
            tails = tuple(Tail(str(t["name"]), int(t["laneBits"]), int(t["lanesPerWord"]), bool(t["signed"]),
                               str(t["count"])) for t in p["tails"])
            ops = tuple(p.get("opcodes") or ([p["opcode"]] if p.get("opcode") else []))
            for o in ops:
                if o not in opcodes:
                    raise _fail(source, f"packet {name}: unknown opcode {o!r}")
            sec = p.get("sections")
            sections = (str(sec["packet"]), str(sec["count"])) if sec else None
            packets[str(name)] = Packet(str(name), str(p["direction"]), ops, int(p["headerWords"]), fields, tails,
                                        sections)
        return Layout(source, str(d["preset"]), word_bits, opcodes, packets, dict(d["params"]),
                      {k: dict(v) for k, v in d["presets"].items()},
                      {k: list(v) for k, v in d["states"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ContractError):
            raise
        raise _fail(source, f"malformed contract ({type(e).__name__}: {e})") from None


def load_layout(path: str | os.PathLike[str]) -> Layout:
    """Read and check a ``contract.json`` written by ``spatten.Elaborate``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise _fail(str(path), f"cannot read the contract: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise _fail(str(path), f"not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise _fail(str(path), "expected a JSON object")
    return from_dict(d, str(path))


_current: Layout | None = None


def set_layout(lay: Layout | str | os.PathLike[str] | None) -> None:
    """Use ``lay`` (a layout or the path of a ``contract.json``) from now on; None forgets
    the current one (the next :func:`layout` resolves it again)."""
    global _current
    _current = lay if isinstance(lay, Layout) or lay is None else load_layout(lay)


def layout() -> Layout:
    """The contract in use: the one given to :func:`set_layout`, else the file named by
    ``$SPATTEN_CONTRACT`` (testbenches), else the ``tiny`` preset's contract from the
    cached pseudo-top elaboration (:func:`spatten.sim.build.contract_json`; the packet
    layout is the same for every preset)."""
    global _current
    if _current is None:
        path = os.environ.get(ENV)
        if not path:
            from spatten.sim.build import contract_json  # the build driver, only when needed

            path = str(contract_json("tiny"))
        _current = load_layout(path)
    return _current
