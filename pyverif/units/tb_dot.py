"""pyuvm testbench of ``DotProductArray`` (reference: ``spatten.contract.golden.dot_scores``).

Tests: ``DotRandomTest`` (300 requests: random D, queries and keys with extremes, random
stalls on every stream), ``DotThroughputTest`` (no stalls; keys a cycle),
``DotBrokenModelTest`` (negative: an off-by-one model must make the scoreboard fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from pyuvm import test, uvm_factory

from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, multiplier_lanes, scaled, to_signed, vec_fields, wait_until
from spatten.contract.golden import dot_scores

REQUESTS = scaled(300)
MIN16, MAX16 = -(1 << 15), (1 << 15) - 1


@dataclass
class DotItem:
    """One key of one request: the score of ``k`` against ``q`` over ``d`` elements."""
    request: int
    q: list[int]
    k: list[int]
    d: int
    last: bool


class DotScoreboard(ScoreboardBase):
    def predict(self, item: DotItem) -> dict[str, int]:
        s = dot_scores(np.array(item.q[:item.d]), np.array([item.k[:item.d]]))[0]
        return {"s": int(s), "last": int(item.last)}

    def describe(self, item: DotItem) -> str:
        return f"request {item.request} (D={item.d}) q={item.q[:item.d]} k={item.k[:item.d]}"


class DotOffByOneScoreboard(DotScoreboard):
    """A wrong model, for the negative test."""

    def predict(self, item: DotItem) -> dict[str, int]:
        want = super().predict(item)
        return {**want, "s": want["s"] + 1}


class DotCoverage(CoverageBase):
    bins = ("d1", "dmax", "maxPositiveProduct", "maxNegativeProduct", "largestScore", "last")

    def sample(self, item: DotItem) -> Iterable[str]:
        dmax = len(item.q)
        prods = [a * b for a, b in zip(item.q[:item.d], item.k[:item.d])]
        hits = []
        if item.d == 1:
            hits.append("d1")
        if item.d == dmax:
            hits.append("dmax")
        if 1 << 30 in prods:
            hits.append("maxPositiveProduct")
        if MIN16 * MAX16 in prods:
            hits.append("maxNegativeProduct")
        if item.d == dmax and all(x == MIN16 for x in item.q + item.k):
            hits.append("largestScore")
        if item.last:
            hits.append("last")
        return hits


def _vec(rng, n: int, extreme: float) -> list[int]:
    return [rng.choice([MIN16, MAX16]) if rng.random() < extreme else rng.randint(MIN16, MAX16)
            for _ in range(n)]


@test()
class DotRandomTest(UnitTest):
    """Random D, queries and keys (with extremes), random stalls on all streams."""

    scoreboard = DotScoreboard
    coverage = DotCoverage
    idle, stall, requests = 0.3, 0.3, REQUESTS

    async def stimulus(self) -> None:
        dut, rng, dmax = self.dut, self.rng, int(self.params["maxHeadDim"])
        query = StreamSource(dut, "io_query", dut.clock, rng, self.idle)
        keys = StreamSource(dut, "io_keys", dut.clock, rng, self.idle)
        bits = len(dut.io_scores_bits_s)
        scores = StreamSink(dut, "io_scores", dut.clock, rng, self.stall, callback=lambda b: self.env.responses.write(
            {"s": to_signed(b["s"], bits), "last": b["last"]}))
        total = 0
        for r in range(self.requests):
            d, q, k = self.draw(r, dmax)
            # the query may only change between requests: the previous keys must be in
            await wait_until(dut, lambda: keys.pending == 0, 100 * dmax, f"keys of request {r - 1}")
            await query.send({"d": d, **vec_fields(query.port, "q", q)})
            for j, row in enumerate(k):
                self.env.requests.write(DotItem(r, q, row, d, j == len(k) - 1))
                keys.send_nowait({"last": int(j == len(k) - 1), **vec_fields(keys.port, "k", row)})
            total += len(k)
        await wait_until(dut, lambda: scores.received == total, 100 * total, "all scores")
        self.cycles = total

    def draw(self, r: int, dmax: int) -> tuple[int, list[int], list[list[int]]]:
        rng = self.rng
        d = rng.choice([1, dmax, rng.randint(1, dmax)])
        n = rng.choice([1, rng.randint(1, 12)])
        extreme = rng.choice([0.0, 0.3, 1.0])
        q = _vec(rng, dmax, extreme)  # elements >= d: garbage the array must ignore
        k = [_vec(rng, dmax, extreme) for _ in range(n)]
        if r % 25 == 0:  # the largest score: maxHeadDim products of (-2^15)^2
            d, q, k[0] = dmax, [MIN16] * dmax, [MIN16] * dmax
        return d, q, k


@test()
class DotThroughputTest(UnitTest):
    """No stalls: 200 keys at D = maxHeadDim in at most 200 * ceil(D / dotLanes) + 4 cycles."""

    scoreboard = DotScoreboard
    coverage = DotCoverage

    def build_phase(self) -> None:
        super().build_phase()
        from pyuvm import ConfigDB
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, rng, dmax = self.dut, self.rng, int(self.params["maxHeadDim"])
        lanes = multiplier_lanes(dut, self.params)
        query = StreamSource(dut, "io_query", dut.clock, rng)
        keys = StreamSource(dut, "io_keys", dut.clock, rng)
        bits = len(dut.io_scores_bits_s)
        scores = StreamSink(dut, "io_scores", dut.clock, rng, callback=lambda b: self.env.responses.write(
            {"s": to_signed(b["s"], bits), "last": b["last"]}))
        n = 200
        q = _vec(rng, dmax, 0.1)
        await query.send({"d": dmax, **vec_fields(query.port, "q", q)})
        for j in range(n):
            row = _vec(rng, dmax, 0.1)
            self.env.requests.write(DotItem(0, q, row, dmax, j == n - 1))
            keys.send_nowait({"last": int(j == n - 1), **vec_fields(keys.port, "k", row)})
        cycles = await wait_until(dut, lambda: scores.received == n, 100 * n, "all scores")
        per_key = -(-dmax // min(lanes, dmax))
        self.logger.info(f"{n} keys (D={dmax}, lanes={lanes}) in {cycles} cycles")
        assert cycles <= n * per_key + 4, f"{n} keys took {cycles} cycles, expected <= {n * per_key + 4}"


@test()
class DotBrokenModelTest(DotRandomTest):
    """Negative test: an off-by-one model must make the scoreboard fail."""

    requests = 10

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(DotScoreboard, DotOffByOneScoreboard)
        from pyuvm import ConfigDB
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
