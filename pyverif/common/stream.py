"""Valid/ready stream agents for Chisel ``Decoupled`` ports, with random stalls.

A Chisel port ``io.in`` of type ``Decoupled(bundle)`` becomes the Verilog signals
``io_in_valid``, ``io_in_ready`` and ``io_in_bits_<field>`` (or ``io_in_bits`` for a
plain ``UInt``). :class:`DecoupledPort` finds them by prefix; beats are ``dict``\\ s from
field name to integer (the single field of a plain ``UInt`` is called ``"bits"``).

:class:`StreamSource` drives a port the DUT consumes, inserting random idle cycles;
:class:`StreamSink` takes beats from a port the DUT produces, deasserting ``ready`` at
random (back-pressure). Both sample the handshake at the rising edge and keep
per-port counters that :mod:`pyverif.common.watchdog` reports. The sink also checks the
usual stream rule that a presented beat stays valid and unchanged until it is taken.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.queue import Queue
from cocotb.triggers import Event, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["DecoupledPort", "StreamSource", "StreamSink", "StreamProtocolError"]

Beat = dict[str, int]


class StreamProtocolError(AssertionError):
    """A valid/ready rule was broken by the design under test."""


class DecoupledPort:
    """The ``valid``/``ready``/``bits*`` signals of one ``Decoupled`` port of ``dut``."""

    def __init__(self, dut: SimHandleBase, prefix: str) -> None:
        self.prefix = prefix
        try:
            self.valid = getattr(dut, f"{prefix}_valid")
            self.ready = getattr(dut, f"{prefix}_ready")
        except AttributeError as exc:
            raise AttributeError(f"{prefix}: the DUT has no {prefix}_valid/{prefix}_ready "
                                 f"signals ({exc})") from exc
        self.fields: dict[str, SimHandleBase] = {}
        whole = f"{prefix}_bits"
        for handle in dut:
            name = handle._name
            if name == whole:
                self.fields["bits"] = handle
            elif name.startswith(whole + "_"):
                self.fields[name[len(whole) + 1:]] = handle
        if not self.fields:
            raise AttributeError(f"{prefix}: the DUT has no {whole} or {whole}_* signals")

    def read(self) -> Beat:
        """The current value of every field."""
        return {name: int(h.value) for name, h in self.fields.items()}

    def write(self, beat: Beat) -> None:
        """Drive every field from ``beat`` (a missing field is driven to 0)."""
        unknown = set(beat) - set(self.fields)
        if unknown:
            raise KeyError(f"{self.prefix}: no field(s) {sorted(unknown)}; "
                           f"fields are {sorted(self.fields)}")
        for name, h in self.fields.items():
            h.value = int(beat.get(name, 0))


class StreamSource:
    """Drives beats into a port the DUT consumes (``valid`` and ``bits`` are ours).

    Before presenting each beat it idles for a cycle with probability ``idle_prob``
    (repeatedly, so idle runs are geometric). ``send`` waits until the beat is taken;
    ``send_nowait`` only queues it.
    """

    def __init__(self, dut: SimHandleBase, prefix: str, clock: SimHandleBase,
                 rng: random.Random, idle_prob: float = 0.0) -> None:
        self.port = DecoupledPort(dut, prefix)
        self.clock = clock
        self.rng = rng
        self.idle_prob = idle_prob
        self.sent = 0
        self.last_taken_ns = -1
        self._queue: deque[tuple[Beat, Event]] = deque()
        self._current: tuple[Beat, Event] | None = None
        self.port.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    @property
    def pending(self) -> int:
        """Beats queued or presented but not yet taken."""
        return len(self._queue) + (self._current is not None)

    def send_nowait(self, beat: Beat) -> Event:
        """Queue ``beat``; the returned event fires when the DUT takes it."""
        done = Event()
        self._queue.append((beat, done))
        return done

    async def send(self, beat: Beat) -> None:
        """Queue ``beat`` and wait until the DUT takes it."""
        await self.send_nowait(beat).wait()

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.clock)
            if self._current is not None and int(self.port.ready.value):
                self.last_taken_ns = int(get_sim_time("ns"))
                self._current[1].set()
                self._current = None
                self.sent += 1
            if self._current is None:
                if self._queue and self.rng.random() >= self.idle_prob:
                    self._current = self._queue.popleft()
                    self.port.write(self._current[0])
                    self.port.valid.value = 1
                else:
                    self.port.valid.value = 0


class StreamSink:
    """Takes beats from a port the DUT produces (``ready`` is ours).

    Each cycle ``ready`` is deasserted with probability ``stall_prob``. Taken beats go
    to :meth:`recv` and to the optional ``callback``.
    """

    def __init__(self, dut: SimHandleBase, prefix: str, clock: SimHandleBase,
                 rng: random.Random, stall_prob: float = 0.0,
                 callback: Callable[[Beat], Any] | None = None,
                 check_stable: bool = True) -> None:
        self.port = DecoupledPort(dut, prefix)
        self.clock = clock
        self.rng = rng
        self.stall_prob = stall_prob
        self.callback = callback
        self.check_stable = check_stable
        self.received = 0
        self.queue: Queue[tuple[int, Beat]] = Queue()
        self.port.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def recv(self) -> Beat:
        """The next taken beat."""
        return (await self.queue.get())[1]

    async def recv_timed(self) -> tuple[int, Beat]:
        """The next taken beat with the simulation time (ns) of its handshake edge."""
        return await self.queue.get()

    async def _run(self) -> None:
        ready = False
        held: Beat | None = None  # a beat presented but not taken last cycle
        while True:
            await RisingEdge(self.clock)
            valid = bool(int(self.port.valid.value))
            beat = self.port.read() if valid else None
            if self.check_stable and held is not None:
                if not valid:
                    raise StreamProtocolError(
                        f"{self.port.prefix}: valid dropped before the beat {held} was taken")
                if beat != held:
                    raise StreamProtocolError(
                        f"{self.port.prefix}: beat changed while waiting: {held} -> {beat}")
            if valid and ready:
                assert beat is not None
                self.received += 1
                self.queue.put_nowait((int(get_sim_time("ns")), beat))
                if self.callback is not None:
                    self.callback(beat)
                held = None
            else:
                held = beat
            ready = self.rng.random() >= self.stall_prob
            self.port.ready.value = int(ready)
