"""pyuvm testbench of ``DotProductArray`` (reference: ``spatten.contract.golden.dot_scores``).

Keys go in beats of 1..keysPerBeat(D) rows (``min(keysPerCycle, lanes / D')``, ``D'`` = D
rounded up to a power of two; 1 on the chunked path ``D' > lanes``), scores come out in
the same beats. Tests: ``DotRandomTest`` (300 requests: random D, random beat sizes,
queries and keys with extremes, random stalls on every stream), ``DotThroughputTest``
(no stalls; keys a cycle at D = maxHeadDim and at the largest D of a full beat),
``DotBrokenModelTest`` (negative: an off-by-one model must make the scoreboard fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge
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
    beat: int = 1  # keys in this key's beat
    per_beat: int = 1  # the array's keys a beat at this d


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


def keys_per_beat(params: dict, lanes: int, d: int) -> int:
    """The array's keys a beat at head dimension ``d`` (SPEC.md section 2, step 1)."""
    dp = 1 << max(d - 1, 0).bit_length()
    return 1 if dp > lanes else min(int(params["keysPerCycle"]), lanes // dp)


class DotCoverage(CoverageBase):
    bins = ("d1", "dmax", "maxPositiveProduct", "maxNegativeProduct", "largestScore", "last", "fullBeat",
            "partialBeat")

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
        if item.beat > 1 and item.beat == item.per_beat:
            hits.append("fullBeat")
        if 1 <= item.beat < item.per_beat:
            hits.append("partialBeat")
        return hits


def _vec(rng, n: int, extreme: float) -> list[int]:
    return [rng.choice([MIN16, MAX16]) if rng.random() < extreme else rng.randint(MIN16, MAX16)
            for _ in range(n)]


class BeatSink(StreamSink):
    """Takes score beats and writes one response per score (``last`` on the final score of
    a beat that has it)."""

    def __init__(self, dut, prefix, clock, rng, stall, write, bits) -> None:
        self.scores = 0  # scores taken (beats: ``received``)
        self._write, self._bits = write, bits
        super().__init__(dut, prefix, clock, rng, stall, callback=self._beat)

    def _beat(self, b: dict) -> None:
        c = b["count"]
        assert 1 <= c <= len([k for k in b if k.startswith("s_")]), f"score beat with count {c}"
        for i in range(c):
            self._write({"s": to_signed(b[f"s_{i}"], self._bits), "last": int(b["last"] and i == c - 1)})
        self.scores += c


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
        bits = len(dut.io_scores_bits_s_0)
        self.keys_lanes = int(self.params["keysPerCycle"])
        scores = BeatSink(dut, "io_scores", dut.clock, rng, self.stall, self.env.responses.write, bits)
        lanes = multiplier_lanes(dut, self.params)
        total = 0
        for r in range(self.requests):
            d, q, k = self.draw(r, dmax)
            per = keys_per_beat(self.params, lanes, d)
            # the query may only change between requests: the previous keys must be in
            await wait_until(dut, lambda: keys.pending == 0, 100 * dmax, f"keys of request {r - 1}")
            await query.send({"d": d, **vec_fields(query.port, "q", q)})
            await ReadOnly()
            got = int(dut.io_keysPerBeat.value)
            assert got == per, f"request {r}: keysPerBeat {got} at D={d}, expected {per}"
            await RisingEdge(dut.clock)
            j = 0
            while j < len(k):
                c = min(len(k) - j, rng.choice([per, rng.randint(1, per)]))
                beat = {"count": c, "last": int(j + c == len(k))}
                for i in range(self.keys_lanes):
                    row = k[j + i] if i < c else _vec(rng, dmax, 0.5)  # lanes >= count: garbage
                    beat.update(vec_fields(keys.port, f"k_{i}", row))
                for i in range(c):
                    self.env.requests.write(DotItem(r, q, k[j + i], d, j + i == len(k) - 1, c, per))
                keys.send_nowait(beat)
                j += c
            total += len(k)
        await wait_until(dut, lambda: scores.scores == total, 100 * total, "all scores")
        self.cycles = total

    def draw(self, r: int, dmax: int) -> tuple[int, list[int], list[list[int]]]:
        rng = self.rng
        d = rng.choice([1, dmax, rng.randint(1, dmax)])
        n = rng.choice([1, rng.randint(1, 12), rng.randint(12, 40)])
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
        kpc = int(self.params["keysPerCycle"])
        query = StreamSource(dut, "io_query", dut.clock, rng)
        keys = StreamSource(dut, "io_keys", dut.clock, rng)
        bits = len(dut.io_scores_bits_s_0)
        scores = BeatSink(dut, "io_scores", dut.clock, rng, 0.0, self.env.responses.write, bits)
        n = 200
        # D = maxHeadDim, and the largest D whose beats are full (keysPerCycle keys, or as
        # many as the lanes hold)
        full = max(1, min(dmax, 1 << ((lanes // kpc).bit_length() - 1) if lanes >= kpc else 1))
        done = 0
        for d in sorted({dmax, full}, reverse=True):
            per = keys_per_beat(self.params, lanes, d)
            await wait_until(dut, lambda: keys.pending == 0, 100 * n, "keys")
            q = _vec(rng, dmax, 0.1)
            await query.send({"d": d, **vec_fields(query.port, "q", q)})
            rows = [_vec(rng, dmax, 0.1) for _ in range(n)]
            start = scores.scores
            for j in range(0, n, per):
                c = min(per, n - j)
                beat = {"count": c, "last": int(j + c == n)}
                for i in range(kpc):
                    beat.update(vec_fields(keys.port, f"k_{i}", rows[j + i] if i < c else rows[j]))
                for i in range(c):
                    self.env.requests.write(DotItem(0, q, rows[j + i], d, j + i == n - 1, c, per))
                keys.send_nowait(beat)
            cycles = await wait_until(dut, lambda: scores.scores == start + n, 100 * n, "all scores")
            per_key = -(-d // min(lanes, dmax)) if per == 1 else 1
            beats = -(-n // per)
            self.logger.info(f"{n} keys (D={d}, lanes={lanes}, {per} a beat) in {cycles} cycles")
            assert cycles <= beats * per_key + 4, f"{n} keys at D={d} took {cycles} cycles, expected <= {beats * per_key + 4}"
            done += n


@test()
class DotBrokenModelTest(DotRandomTest):
    """Negative test: an off-by-one model must make the scoreboard fail."""

    requests = 10

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(DotScoreboard, DotOffByOneScoreboard)
        from pyuvm import ConfigDB
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
