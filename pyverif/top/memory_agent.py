"""A test-side responder for the accelerator's DRAM read ports (SPEC.md section 6).

:class:`DramAgent` serves every channel of ``SpAttenCore``'s ``io_dram_<c>`` ports from a
:class:`spatten.contract.memimage.MemoryImage`: each accepted request (``req.valid && req.ready``
at a rising edge) is checked (burst-aligned, in range, on its own channel), and its burst
is returned in request order per channel after a random latency, with random idle cycles
on the response and random back-pressure (``req.ready`` low) on the request. This is a
stimulus/responder of the testbench, not a timing model of the product: the product's
DRAM timing lives in ``hardware/dpi/``.

For the hang test :meth:`DramAgent.stop_after` makes the agent stop answering after a
given number of responses, as a dead memory would.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge

from spatten.contract.memimage import MemoryImage
from spatten.contract.params import HwParams

__all__ = ["DramAgent", "DramProtocolError"]


class DramProtocolError(AssertionError):
    """The accelerator sent a request SPEC section 6 does not allow."""


class _Channel:
    def __init__(self, dut: SimHandleBase, c: int) -> None:
        pre = f"io_dram_{c}"
        self.req_valid = getattr(dut, f"{pre}_req_valid")
        self.req_ready = getattr(dut, f"{pre}_req_ready")
        self.req_bits = getattr(dut, f"{pre}_req_bits")
        self.resp_valid = getattr(dut, f"{pre}_resp_valid")
        self.resp_ready = getattr(dut, f"{pre}_resp_ready")
        self.resp_bits = getattr(dut, f"{pre}_resp_bits")
        self.pending: deque[tuple[int, int]] = deque()  # (due cycle, address)
        self.presenting = False
        self.ready = False
        self.last_due = 0


class DramAgent:
    """Answers the DRAM read ports of ``dut`` from ``mem``.

    ``latency`` is the (min, max) cycles from request to the earliest response cycle;
    ``req_stall`` the probability that ``req.ready`` is low in a cycle; ``resp_gap`` the
    probability that a due response waits one more cycle; ``queue_limit`` the requests a
    channel holds before it back-pressures (so ``maxInflight`` is exercised both ways).
    """

    def __init__(self, dut: SimHandleBase, clock: SimHandleBase, params: HwParams,
                 mem: MemoryImage, rng: random.Random, latency: tuple[int, int] = (2, 40),
                 req_stall: float = 0.15, resp_gap: float = 0.15, queue_limit: int = 64) -> None:
        self.p = params
        self.mem = mem
        self.rng = rng
        self.clock = clock
        self.latency = latency
        self.req_stall = req_stall
        self.resp_gap = resp_gap
        self.queue_limit = queue_limit
        self.ch = [_Channel(dut, c) for c in range(params.num_channels)]
        self.requests = 0
        self.responses = 0
        self.req_backpressure = 0   # cycles with req.valid and not req.ready
        self.resp_idle = 0          # cycles with a due response held back by the agent
        self.resp_backpressure = 0  # cycles with resp.valid and not resp.ready
        self.cycle = 0
        self._stop_after: int | None = None
        for c in self.ch:
            c.req_ready.value = 0
            c.resp_valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def stop_after(self, responses: int) -> None:
        """Stop answering (no response, no request taken) once ``responses`` are sent."""
        self._stop_after = responses

    @property
    def stopped(self) -> bool:
        return self._stop_after is not None and self.responses >= self._stop_after

    def _burst(self, c: int, addr: int) -> int:
        bb = self.p.burst_bytes
        if addr % bb:
            raise DramProtocolError(f"channel {c}: request address 0x{addr:x} is not {bb}-byte aligned")
        if addr >= 1 << self.p.dram_addr_bits:
            raise DramProtocolError(f"channel {c}: request address 0x{addr:x} is out of range")
        owner = (addr // bb) % self.p.num_channels
        if owner != c:
            raise DramProtocolError(f"channel {c}: address 0x{addr:x} belongs to channel {owner}")
        return int.from_bytes(self.mem.read(addr, bb), "little")

    async def _run(self) -> None:
        rng = self.rng
        lo, hi = self.latency
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1
            cyc = self.cycle
            stopped = self.stopped
            for i, c in enumerate(self.ch):
                # handshakes of the cycle that just ended
                if c.ready and int(c.req_valid.value):
                    addr = int(c.req_bits.value)
                    due = max(c.last_due, cyc + rng.randint(lo, hi))
                    c.last_due = due
                    c.pending.append((due, addr))
                    self.requests += 1
                elif int(c.req_valid.value):
                    self.req_backpressure += 1
                if c.presenting:
                    if int(c.resp_ready.value):
                        c.pending.popleft()
                        c.presenting = False
                        self.responses += 1
                    else:
                        self.resp_backpressure += 1
                # next cycle's outputs
                if not c.presenting and not self.stopped:
                    if c.pending and c.pending[0][0] <= cyc:
                        if rng.random() >= self.resp_gap:
                            c.resp_bits.value = self._burst(i, c.pending[0][1])
                            c.presenting = True
                        else:
                            self.resp_idle += 1
                c.resp_valid.value = int(c.presenting)
                c.ready = (not stopped and len(c.pending) < self.queue_limit
                           and rng.random() >= self.req_stall)
                c.req_ready.value = int(c.ready)
