"""The pyuvm skeleton shared by the compute-unit testbenches.

Each unit's testbench (``tb_*.py``) defines a scoreboard (a
:class:`pyverif.common.uvm.ScoreboardBase` whose ``predict`` calls ``spatten.contract.golden``),
a coverage collector (:class:`pyverif.common.uvm.CoverageBase`) and a :class:`UnitTest`
subclass whose :meth:`UnitTest.stimulus` drives the DUT through the
:mod:`pyverif.common.stream` agents and writes every request to ``self.requests`` and
every observed response to ``self.responses`` (both analysis ports).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import cocotb
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from pyuvm import ConfigDB, uvm_analysis_port, uvm_env, uvm_test

from pyverif.common.params import hw_params
from pyverif.common.seed import rng_for
from pyverif.common.stream import DecoupledPort
from pyverif.common.uvm import CoverageBase, ScoreboardBase

CLOCK_NS = 1


def to_signed(value: int, bits: int) -> int:
    """Two's complement reinterpretation of an unsigned ``bits``-bit value."""
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def mask(value: int, bits: int) -> int:
    """``value`` (signed or unsigned) as an unsigned ``bits``-bit pattern."""
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise ValueError(f"{value} does not fit {bits} bits")
    return value & ((1 << bits) - 1)


def width(port: DecoupledPort, field: str) -> int:
    return len(port.fields[field])


def vec(beat: dict[str, int], port: DecoupledPort, name: str, n: int, signed: bool = True) -> list[int]:
    """The ``n`` lanes ``<name>_0 .. <name>_{n-1}`` of a beat (``name`` empty: a bare Vec)."""
    keys = [f"{name}_{i}" if name else str(i) for i in range(n)]
    return [to_signed(beat[k], width(port, k)) if signed else beat[k] for k in keys]


def vec_fields(port: DecoupledPort, name: str, values: list[int]) -> dict[str, int]:
    """Beat fields for a Vec ``name`` from (signed) values, masked to the lane width."""
    out = {}
    for i, v in enumerate(values):
        key = f"{name}_{i}" if name else str(i)
        out[key] = mask(v, width(port, key))
    return out


async def wait_until(dut: SimHandleBase, cond: Callable[[], bool], limit: int, what: str) -> int:
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


def scaled(n: int) -> int:
    """A request count scaled by ``UNIT_REQUEST_SCALE`` (default 1; e.g. 0.1 for quick runs
    on a big preset), at least 1."""
    return max(1, round(n * float(os.environ.get("UNIT_REQUEST_SCALE", "1"))))


def multiplier_lanes(dut: SimHandleBase, params: dict[str, Any]) -> int:
    """Multipliers of the DUT: ``dotLanes``, or ``n`` for a ``...Lanes<n>`` test variant."""
    m = re.search(r"Lanes(\d+)$", dut._name)
    return int(m.group(1)) if m else int(params["dotLanes"])


class UnitEnv(uvm_env):
    """A scoreboard and a coverage collector, classes taken from the ConfigDB keys
    ``SCOREBOARD`` and ``COVERAGE`` (so a test can swap in a broken model)."""

    def build_phase(self) -> None:
        sb_cls = ConfigDB().get(self, "", "SCOREBOARD")
        cov_cls = ConfigDB().get(self, "", "COVERAGE")
        self.sb: ScoreboardBase = sb_cls.create("sb", self)
        self.cov: CoverageBase = cov_cls.create("cov", self)
        self.requests = uvm_analysis_port("requests", self)
        self.responses = uvm_analysis_port("responses", self)

    def connect_phase(self) -> None:
        self.requests.connect(self.sb.request_export)
        self.requests.connect(self.cov.analysis_export)
        self.responses.connect(self.sb.response_export)


class UnitTest(uvm_test):
    """Clock, reset, objection; subclasses set ``scoreboard``/``coverage`` and implement
    :meth:`stimulus`."""

    scoreboard: type[ScoreboardBase]
    coverage: type[CoverageBase]

    def build_phase(self) -> None:
        ConfigDB().set(None, "*", "SCOREBOARD", self.scoreboard)
        ConfigDB().set(None, "*", "COVERAGE", self.coverage)
        self.env = UnitEnv("env", self)
        self.dut = cocotb.top
        self.params: dict[str, Any] = hw_params().to_dict()
        self.rng = rng_for(type(self).__name__)

    async def run_phase(self) -> None:
        self.raise_objection()
        Clock(self.dut.clock, CLOCK_NS, unit="ns").start()
        self.dut.reset.value = 1
        await ClockCycles(self.dut.clock, 3)
        self.dut.reset.value = 0
        await RisingEdge(self.dut.clock)
        await self.stimulus()
        self.drop_objection()

    async def stimulus(self) -> None:
        raise NotImplementedError
