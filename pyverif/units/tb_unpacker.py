"""pyuvm testbench of ``PlaneUnpacker`` (SPEC 4 packing).

The stimulus rows are packed by the memory-image writer (``spatten.contract.memimage.pack_rows``)
and the expected elements come from ``spatten.contract.memimage.unpack_rows``: the RTL must read
back exactly what the image writer wrote. ``UnpackRandomTest``: 12 rows for each of the
32 (b, signed) modes in random order, random D, noise bytes past the row's stride, random
stalls on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, scaled, to_signed, wait_until
from spatten.contract.memimage import element_range, pack_rows, stride, unpack_rows

ROWS_PER_MODE = scaled(12)


@dataclass
class UnpackItem:
    """One row on the bus (``bus``: maxRowBytes bytes) and how to read it."""
    bus: bytes
    bits: int
    signed: bool
    d: int
    row_bytes: int
    max_row_bytes: int


class UnpackScoreboard(ScoreboardBase):
    def predict(self, item: UnpackItem) -> list[int]:
        row = np.frombuffer(item.bus[:item.row_bytes], dtype=np.uint8)[None, :]
        want = [int(x) for x in unpack_rows(row, item.d, item.bits, item.signed)[0]]
        if item.bits == 16 and not item.signed:  # a 16-bit output lane holds the raw pattern
            want = [to_signed(x, 16) for x in want]
        return want

    def compare(self, expected: list[int], actual: list[int]) -> bool:
        """Lanes >= D are don't-care."""
        return actual[:len(expected)] == expected

    def describe(self, item: UnpackItem) -> str:
        return f"b={item.bits} {'signed' if item.signed else 'unsigned'} D={item.d} row={item.bus.hex()}"


class UnpackMsbFirstScoreboard(UnpackScoreboard):
    """A wrong model for the negative test: elements packed from the row's other end."""

    def predict(self, item: UnpackItem) -> list[int]:
        want = super().predict(item)
        return want[::-1] if len(set(want)) > 1 else [w + 1 for w in want]


class UnpackCoverage(CoverageBase):
    bins = tuple(f"b{b}{'s' if s else 'u'}" for b in range(1, 17) for s in (True, False)) + \
        ("d1", "dmax", "fullRow")

    def sample(self, item: UnpackItem) -> Iterable[str]:
        hits = [f"b{item.bits}{'s' if item.signed else 'u'}"]
        dmax = item.max_row_bytes * 8 // 16
        if item.d == 1:
            hits.append("d1")
        if item.d == dmax:
            hits.append("dmax")
        if item.d * item.bits == item.max_row_bytes * 8:
            hits.append("fullRow")
        return hits


@test()
class UnpackRandomTest(UnitTest):
    """Every b in 1..16, signed and unsigned, random D, random stalls on both sides."""

    scoreboard = UnpackScoreboard
    coverage = UnpackCoverage
    rows_per_mode = ROWS_PER_MODE

    async def stimulus(self) -> None:
        dut, rng, p = self.dut, self.rng, self.params
        dmax, burst, max_row = int(p["maxHeadDim"]), int(p["burstBytes"]), int(p["maxRowBytes"])
        src = StreamSource(dut, "io_in", dut.clock, rng, 0.3)
        sink = StreamSink(dut, "io_out", dut.clock, rng, 0.3, callback=lambda b: self.env.responses.write(
            [to_signed(b[str(i)], 16) for i in range(dmax)]))
        modes = [(b, s) for b in range(1, 17) for s in (True, False)] * self.rows_per_mode
        rng.shuffle(modes)
        for bits, signed in modes:
            d = rng.choice([1, dmax, rng.randint(1, dmax)])
            lo, hi = element_range(bits, signed)
            vals = [rng.choice([lo, hi, 0]) if rng.random() < 0.25 else rng.randint(lo, hi) for _ in range(d)]
            row_bytes = stride(d, bits, burst)
            bus = bytearray(rng.randbytes(max_row))  # past the stride: noise that must not leak
            bus[:row_bytes] = pack_rows(np.array([vals]), bits, signed, row_bytes)[0].tobytes()
            self.env.requests.write(UnpackItem(bytes(bus), bits, signed, d, row_bytes, max_row))
            src.send_nowait({"row": int.from_bytes(bus, "little"), "bits": bits, "isSigned": int(signed)})
        await wait_until(dut, lambda: sink.received == len(modes), 20 * len(modes), "all unpacked rows")


@test()
class UnpackBrokenModelTest(UnpackRandomTest):
    """Negative test: a model with the element order reversed must make the scoreboard fail."""

    rows_per_mode = 1

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(UnpackScoreboard, UnpackMsbFirstScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
