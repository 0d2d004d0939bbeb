"""pyuvm testbench of ``ValueAccumulator``, reference ``spatten.contract.golden.weighted_sum``
and ``spatten.contract.golden.head_importance_increment``.

``ValueRandomTest``: 300 selections of random D and M (0, 1 and maxTokens included),
probabilities and values with extremes, random stalls on both sides.
``ValueThroughputTest``: no stalls, M = maxTokens rows; cycle count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, multiplier_lanes, scaled, vec, vec_fields, wait_until
from spatten.contract.golden import head_importance_increment, weighted_sum

MIN16, MAX16 = -(1 << 15), (1 << 15) - 1
REQUESTS = scaled(300)


@dataclass
class ValueItem:
    index: int
    d: int
    probs: list[int]
    rows: list[list[int]]   # maxHeadDim lanes each; lanes >= d are noise
    dmax: int
    cap: int


class ValueScoreboard(ScoreboardBase):
    def predict(self, item: ValueItem) -> dict[str, Any]:
        if item.probs:
            o = weighted_sum(np.array(item.probs), np.array([r[:item.d] for r in item.rows]))
        else:
            o = np.zeros(item.d, dtype=np.int64)
        return {"o": [int(x) for x in o] + [0] * (item.dmax - item.d), "headImp": head_importance_increment(o)}

    def describe(self, item: ValueItem) -> str:
        return f"selection {item.index} (D={item.d}, M={len(item.probs)}) p={item.probs}"


class ValueNoSignScoreboard(ValueScoreboard):
    """A wrong model for the negative test: head importance of o_i without the abs."""

    def predict(self, item: ValueItem) -> dict[str, Any]:
        want = super().predict(item)
        return {**want, "headImp": sum(x >> 16 for x in want["o"])}


class ValueCoverage(CoverageBase):
    bins = ("m0", "m1", "mCapacity", "d1", "dmax", "maxMagnitude", "headImpNonZero")

    def sample(self, item: ValueItem) -> Iterable[str]:
        m = len(item.probs)
        cond = {"m0": m == 0, "m1": m == 1, "mCapacity": m == item.cap, "d1": item.d == 1,
                "dmax": item.d == item.dmax,
                "maxMagnitude": m == item.cap and item.d == item.dmax and all(p == 1 << 16 for p in item.probs)
                and all(x == MIN16 for r in item.rows for x in r),
                "headImpNonZero": m > 0 and ValueScoreboard.predict(None, item)["headImp"] > 0}  # type: ignore[arg-type]
        return [b for b, c in cond.items() if c]


class ValueAgents:
    def __init__(self, test: UnitTest, idle: float, stall: float) -> None:
        dut = test.dut
        self.dmax = int(test.params["maxHeadDim"])
        self.rows = StreamSource(dut, "io_rows", dut.clock, test.rng, idle)
        self.result = StreamSink(dut, "io_result", dut.clock, test.rng, stall,
                                 callback=lambda b: test.env.responses.write(
                                     {"o": vec(b, self.result.port, "o", self.dmax), "headImp": b["headImp"]}))

    def send(self, item: ValueItem) -> None:
        if not item.probs:
            self.rows.send_nowait({"p": 0, "last": 1, "empty": 1, **vec_fields(self.rows.port, "v", [0] * self.dmax)})
        for j, (p, row) in enumerate(zip(item.probs, item.rows)):
            self.rows.send_nowait({"p": p, "last": int(j == len(item.probs) - 1), "empty": 0,
                                   **vec_fields(self.rows.port, "v", row)})


@test()
class ValueRandomTest(UnitTest):
    scoreboard = ValueScoreboard
    coverage = ValueCoverage
    requests = REQUESTS

    async def stimulus(self) -> None:
        dut, rng, p = self.dut, self.rng, self.params
        dmax, cap = int(p["maxHeadDim"]), int(p["maxTokens"])
        ag = ValueAgents(self, 0.3, 0.3)
        one = 1 << 16
        for r in range(self.requests):
            d = rng.choice([1, dmax, rng.randint(1, dmax)])
            m = rng.choice([0, 1, cap, rng.randint(1, 12)])
            extreme = r % 20 == 0
            if extreme:
                d, m = dmax, cap
            probs = [one if extreme else rng.choice([0, one, rng.randint(0, one)]) for _ in range(m)]
            rows = [[MIN16 if extreme else rng.randint(MIN16, MAX16) for _ in range(dmax)] for _ in range(m)]
            item = ValueItem(r, d, probs, rows, dmax, cap)
            # d is a per-selection input: change it only once the previous result is out
            await wait_until(dut, lambda: ag.rows.pending == 0 and ag.result.received == r, 100 * (cap + 8),
                             f"result of selection {r - 1}")
            dut.io_d.value = d
            self.env.requests.write(item)
            ag.send(item)
        await wait_until(dut, lambda: ag.result.received == self.requests, 100 * (cap + 8), "the last result")


@test()
class ValueBrokenModelTest(ValueRandomTest):
    """Negative test: a head-importance model without |.| must make the scoreboard fail."""

    requests = 30

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(ValueScoreboard, ValueNoSignScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()


@test()
class ValueThroughputTest(UnitTest):
    """No stalls: M = maxTokens rows at one per ceil(D / dotLanes) cycles."""

    scoreboard = ValueScoreboard
    coverage = ValueCoverage

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, rng, p = self.dut, self.rng, self.params
        dmax, cap, lanes = int(p["maxHeadDim"]), int(p["maxTokens"]), multiplier_lanes(dut, p)
        ag = ValueAgents(self, 0.0, 0.0)
        item = ValueItem(0, dmax, [rng.randint(0, 1 << 16) for _ in range(cap)],
                         [[rng.randint(MIN16, MAX16) for _ in range(dmax)] for _ in range(cap)], dmax, cap)
        dut.io_d.value = dmax
        self.env.requests.write(item)
        ag.send(item)
        cycles = await wait_until(dut, lambda: ag.result.received == 1, 100 * cap, "the result")
        per_row = -(-dmax // min(lanes, dmax))
        self.logger.info(f"M={cap} rows (D={dmax}) to result in {cycles} cycles")
        assert cycles <= cap * per_row + 6, f"{cap} rows took {cycles} cycles"
