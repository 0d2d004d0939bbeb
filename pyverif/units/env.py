"""Shared set-up of the unit testbenches: parameters, seeded RNG, clock and reset."""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from workloads import params as hwparams
from workloads.params import HwParams


def load_params() -> HwParams:
    """The parameters the DUT was elaborated with (``SPATTEN_PARAMS``)."""
    path = os.environ.get("SPATTEN_PARAMS")
    if not path:
        raise RuntimeError("SPATTEN_PARAMS is not set: run the testbench through tools.hwbuild.run_cocotb")
    return hwparams.load(path)


def make_rng(salt: str) -> random.Random:
    """A generator seeded from ``SPATTEN_SEED`` and the test's name (independent streams)."""
    seed = int(os.environ.get("SPATTEN_SEED", "1"))
    return random.Random(f"{seed}:{salt}")


async def start(dut: SimHandleBase, reset_cycles: int = 3) -> None:
    """Start a 1 ns clock and hold ``reset`` for a few cycles."""
    cocotb.start_soon(Clock(dut.clock, 1, unit="ns").start())
    dut.reset.value = 1
    await ClockCycles(dut.clock, reset_cycles)
    dut.reset.value = 0
    await RisingEdge(dut.clock)


async def wait_until(dut: SimHandleBase, cond, limit: int, what: str) -> int:
    """Wait (at most ``limit`` cycles) until ``cond()`` holds in the settled (read-only)
    phase of a cycle; return just after that cycle's closing edge, where the caller may
    drive signals again. Fails naming ``what`` on timeout. Returns the cycles waited."""
    for n in range(limit):
        await ReadOnly()
        ok = cond()
        await RisingEdge(dut.clock)
        if ok:
            return n
    raise AssertionError(f"timeout after {limit} cycles waiting for {what}")
