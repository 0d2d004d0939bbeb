"""Ready/valid stream agents for Chisel ``Decoupled`` ports, with random stalls.

Signals follow firtool's flattening of a Chisel port ``io.<name>``: ``io_<name>_valid``,
``io_<name>_ready``, ``io_<name>_bits_<field>`` and, for a ``Vec`` field,
``io_<name>_bits_<field>_<i>`` (``io_<name>_bits_<i>`` for a bare ``Vec``).

Timing discipline (one clock, no combinational loops through the testbench): every agent
drives its outputs just after a rising edge and samples ``valid && ready`` in the
read-only phase of the same step, so a beat counts exactly when the DUT sees it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.triggers import ReadOnly, RisingEdge

Beat = dict[str, Any]
"""One beat: field name -> int (or list of ints for a Vec field)."""


@dataclass(frozen=True)
class Field:
    """One field of a stream's payload: ``lanes`` is the Vec length (0: scalar)."""

    name: str
    signed: bool = False
    lanes: int = 0


def _handles(dut: SimHandleBase, prefix: str, fld: Field) -> list[SimHandleBase]:
    base = f"{prefix}_{fld.name}" if fld.name else prefix
    if fld.lanes:
        return [getattr(dut, f"{base}_{i}") for i in range(fld.lanes)]
    return [getattr(dut, base)]


def write_value(handle: SimHandleBase, value: int) -> None:
    """Drive ``value`` (signed or unsigned) as two's complement at the handle's width."""
    width = len(handle)
    if not -(1 << (width - 1)) <= value < (1 << width):
        raise ValueError(f"{handle._name}: {value} does not fit {width} bits")
    handle.value = value & ((1 << width) - 1)


def read_value(handle: SimHandleBase, signed: bool) -> int:
    """Read a handle as a signed or unsigned integer."""
    v = handle.value
    if len(handle) == 1:  # a 1-bit signal reads as a Logic
        return int(v)
    return v.to_signed() if signed else v.to_unsigned()


class Payload:
    """The ``bits`` of one stream: writes and reads whole beats."""

    def __init__(self, dut: SimHandleBase, prefix: str, fields: list[Field]) -> None:
        self.fields = fields
        self.handles = {f.name: _handles(dut, prefix, f) for f in fields}

    def write(self, beat: Beat) -> None:
        for f in self.fields:
            if f.name not in beat:
                raise KeyError(f"beat {beat} lacks field {f.name!r}")
            vals = beat[f.name] if f.lanes else [beat[f.name]]
            if len(vals) != len(self.handles[f.name]):
                raise ValueError(f"field {f.name!r} needs {len(self.handles[f.name])} lanes, got {len(vals)}")
            for h, v in zip(self.handles[f.name], vals):
                write_value(h, int(v))

    def read(self) -> Beat:
        out: Beat = {}
        for f in self.fields:
            vals = [read_value(h, f.signed) for h in self.handles[f.name]]
            out[f.name] = vals if f.lanes else vals[0]
        return out


class StreamSource:
    """Drives a ``Flipped(Decoupled)`` DUT input from a queue of beats, idling a random
    number of cycles between beats with probability ``idle``; ``valid`` stays up until the
    beat is taken. ``sent`` counts accepted beats."""

    def __init__(self, dut: SimHandleBase, name: str, fields: list[Field], rng: random.Random,
                 idle: float = 0.0, clock: SimHandleBase | None = None) -> None:
        self.clock = clock if clock is not None else dut.clock
        self.valid = getattr(dut, f"io_{name}_valid")
        self.ready = getattr(dut, f"io_{name}_ready")
        self.payload = Payload(dut, f"io_{name}_bits", fields)
        self.rng = rng
        self.idle = idle
        self.queue: deque[Beat] = deque()
        self.sent = 0
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, beat: Beat) -> None:
        self.queue.append(beat)

    @property
    def idle_now(self) -> bool:
        """Nothing queued and nothing being offered."""
        return not self.queue and not int(self.valid.value)

    async def _run(self) -> None:
        current: Beat | None = None
        while True:
            await RisingEdge(self.clock)
            if current is None and self.queue and self.rng.random() >= self.idle:
                current = self.queue.popleft()
                self.payload.write(current)
            self.valid.value = 1 if current is not None else 0
            await ReadOnly()
            if current is not None and int(self.ready.value):
                current = None
                self.sent += 1


class StreamSink:
    """Takes beats from a ``Decoupled`` DUT output, dropping ``ready`` with probability
    ``stall`` each cycle, and hands each taken beat to ``on_beat`` (or collects it in
    ``beats``). ``budget`` (None: unlimited) caps how many beats are taken; ``ready``
    stays low once it is spent."""

    def __init__(self, dut: SimHandleBase, name: str, fields: list[Field], rng: random.Random,
                 stall: float = 0.0, on_beat: Callable[[Beat], None] | None = None,
                 clock: SimHandleBase | None = None) -> None:
        self.clock = clock if clock is not None else dut.clock
        self.valid = getattr(dut, f"io_{name}_valid")
        self.ready = getattr(dut, f"io_{name}_ready")
        self.payload = Payload(dut, f"io_{name}_bits", fields)
        self.rng = rng
        self.stall = stall
        self.on_beat = on_beat
        self.beats: list[Beat] = []
        self.budget: int | None = None
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.clock)
            allowed = self.budget is None or self.budget > 0
            ready = allowed and self.rng.random() >= self.stall
            self.ready.value = 1 if ready else 0
            await ReadOnly()
            if ready and int(self.valid.value):
                beat = self.payload.read()
                if self.budget is not None:
                    self.budget -= 1
                if self.on_beat is not None:
                    self.on_beat(beat)
                else:
                    self.beats.append(beat)


class Coverage:
    """Named coverage bins; :meth:`check` fails naming every bin never hit."""

    def __init__(self, bins: list[str]) -> None:
        self.hits = {b: 0 for b in bins}

    def hit(self, name: str, cond: bool = True) -> None:
        if name not in self.hits:
            raise KeyError(f"unknown coverage bin {name!r}")
        if cond:
            self.hits[name] += 1

    def check(self) -> None:
        missed = [b for b, n in self.hits.items() if n == 0]
        assert not missed, f"coverage bins never hit: {missed} (hits: {self.hits})"

    def __str__(self) -> str:
        return ", ".join(f"{b}={n}" for b, n in self.hits.items())


class Scoreboard:
    """In-order comparison of observed beats with expected ones.

    ``expect(beat, context)`` queues an expected beat (``context`` names the request in
    failure messages); ``observe(beat)`` compares the next one field by field. Mismatches
    and unexpected beats are collected; :meth:`check` fails listing the first few.
    :meth:`self_test` is the negative check: a deliberately altered beat must be caught."""

    def __init__(self, name: str, log) -> None:
        self.name = name
        self.log = log
        self.pending: deque[tuple[Beat, str]] = deque()
        self.errors: list[str] = []
        self.matched = 0

    def expect(self, beat: Beat, context: str) -> None:
        self.pending.append((beat, context))

    def _compare(self, want: Beat, got: Beat) -> list[str]:
        return [f"{k}: expected {want[k]}, got {got.get(k)}" for k in want if got.get(k) != want[k]]

    def observe(self, got: Beat) -> None:
        if not self.pending:
            self.errors.append(f"{self.name}: unexpected beat {got}")
            self.log.error(self.errors[-1])
            return
        want, ctx = self.pending.popleft()
        diffs = self._compare(want, got)
        if diffs:
            self.errors.append(f"{self.name} {ctx}: " + "; ".join(diffs))
            self.log.error(self.errors[-1])
        else:
            self.matched += 1

    def self_test(self, sample: Beat) -> None:
        """Fail unless altering any one integer field of ``sample`` is detected."""
        for k, v in sample.items():
            bad = dict(sample)
            bad[k] = [v[0] + 1] + list(v[1:]) if isinstance(v, list) else v + 1
            assert self._compare(sample, bad), f"{self.name}: the scoreboard missed a wrong {k!r}"

    def check(self) -> None:
        assert not self.errors, f"{len(self.errors)} mismatches, first: {self.errors[:5]}"
        assert not self.pending, f"{self.name}: {len(self.pending)} expected beats never came, first {self.pending[0]}"
