"""pyuvm testbench of ``ValueAccumulator``, reference ``spatten.contract.golden.weighted_sum``
and ``spatten.contract.golden.head_importance_increment``.

The DUT takes beats of up to R rows (``io_beats``: ``p_<r>``, ``v_<r>_<i>``, ``count``,
``last``, ``empty``); R is the number of ``p_<r>`` fields.

``ValueRandomTest``: 300 selections of random D and M (0, 1 and maxTokens included),
probabilities and values with extremes, beats of random sizes 1..R, random stalls on both
sides.
``ValueThroughputTest``: no stalls, M = maxTokens rows in full beats; cycle count
(``ceil(M / R) * ceil(D / cols)``, ``cols = min(lanes / R, maxHeadDim)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import re

import numpy as np
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, scaled, vec, vec_fields, wait_until
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
    beats: list[int] = field(default_factory=list)   # rows of each beat sent
    beat_rows: int = 1                               # R of the DUT


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
    bins = ("m0", "m1", "mCapacity", "d1", "dmax", "maxMagnitude", "headImpNonZero", "partialBeat", "fullBeat")
    beat_bins = ("partialBeat", "fullBeat")

    def sample(self, item: ValueItem) -> Iterable[str]:
        if item.beat_rows == 1:  # one row lane: every beat is one row, the beat bins do not apply
            self.bins = tuple(b for b in type(self).bins if b not in self.beat_bins)
        m = len(item.probs)
        cond = {"m0": m == 0, "m1": m == 1, "mCapacity": m == item.cap, "d1": item.d == 1,
                "dmax": item.d == item.dmax,
                "maxMagnitude": m == item.cap and item.d == item.dmax and all(p == 1 << 16 for p in item.probs)
                and all(x == MIN16 for r in item.rows for x in r),
                "headImpNonZero": m > 0 and ValueScoreboard.predict(None, item)["headImp"] > 0,  # type: ignore[arg-type]
                "partialBeat": any(0 < c < item.beat_rows for c in item.beats),
                "fullBeat": item.beat_rows > 1 and item.beat_rows in item.beats}
        cond = {b: c for b, c in cond.items() if b in self.bins}
        return [b for b, c in cond.items() if c]


def unit_shape(dut: Any, params: dict[str, Any]) -> tuple[int, int]:
    """(multipliers, row lanes) of the DUT: ``dotLanes`` and ``keysPerCycle``, or those of a
    ``...Lanes<n>`` (one row lane) / ``...Lanes<n>Rows<r>`` test variant."""
    m = re.search(r"Lanes(\d+)(?:Rows(\d+))?$", dut._name)
    if not m:
        return int(params["dotLanes"]), int(params["keysPerCycle"])
    return int(m.group(1)), int(m.group(2) or 1)


class ValueAgents:
    def __init__(self, test: UnitTest, idle: float, stall: float) -> None:
        dut = test.dut
        self.dmax = int(test.params["maxHeadDim"])
        self.rng = test.rng
        self.rows = StreamSource(dut, "io_beats", dut.clock, test.rng, idle)
        self.r = sum(1 for k in self.rows.port.fields if re.fullmatch(r"p_\d+", k))
        lanes, rows = unit_shape(dut, test.params)
        assert rows == self.r, f"{dut._name}: {self.r} row lanes on the port, {rows} expected"
        self.result = StreamSink(dut, "io_result", dut.clock, test.rng, stall,
                                 callback=lambda b: test.env.responses.write(
                                     {"o": vec(b, self.result.port, "o", self.dmax), "headImp": b["headImp"]}))

    def _beat(self, probs: list[int], rows: list[list[int]], last: bool, empty: bool) -> dict[str, int]:
        beat = {"count": len(probs), "last": int(last), "empty": int(empty)}
        for r in range(self.r):
            beat[f"p_{r}"] = probs[r] if r < len(probs) else 0
            row = rows[r] if r < len(rows) else [self.rng.randint(MIN16, MAX16) for _ in range(self.dmax)]
            beat.update(vec_fields(self.rows.port, f"v_{r}", row))  # lanes past count: noise
        return beat

    def send(self, item: ValueItem, full: bool = False) -> None:
        """The rows of ``item`` in beats of random sizes 1..R (all R when ``full``)."""
        item.beat_rows = self.r
        if not item.probs:
            self.rows.send_nowait({**self._beat([], [], True, True), "count": self.rng.randint(0, self.r)})
            return
        j, m = 0, len(item.probs)
        while j < m:
            c = min(m - j, self.r if full else self.rng.choice([self.r, self.rng.randint(1, self.r)]))
            item.beats.append(c)
            self.rows.send_nowait(self._beat(item.probs[j:j + c], item.rows[j:j + c], j + c == m, False))
            j += c


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
    """No stalls: M = maxTokens rows in full beats of R, one beat per ceil(D / cols) cycles."""

    scoreboard = ValueScoreboard
    coverage = ValueCoverage

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, rng, p = self.dut, self.rng, self.params
        dmax, cap = int(p["maxHeadDim"]), int(p["maxTokens"])
        lanes, rows = unit_shape(dut, p)
        ag = ValueAgents(self, 0.0, 0.0)
        item = ValueItem(0, dmax, [rng.randint(0, 1 << 16) for _ in range(cap)],
                         [[rng.randint(MIN16, MAX16) for _ in range(dmax)] for _ in range(cap)], dmax, cap)
        dut.io_d.value = dmax
        self.env.requests.write(item)
        ag.send(item, full=True)
        cycles = await wait_until(dut, lambda: ag.result.received == 1, 100 * cap, "the result")
        per_beat = -(-dmax // min(lanes // rows, dmax))
        beats = -(-cap // rows)
        self.logger.info(f"M={cap} rows (D={dmax}) in {beats} beats of {rows} to result in {cycles} cycles")
        assert cycles <= beats * per_beat + 6, f"{cap} rows in {beats} beats took {cycles} cycles"
