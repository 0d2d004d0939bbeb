"""pyuvm testbench of ``ImportanceBuffer``'s token side: beats of up to B (id, p) pairs a
cycle into banked counters (B = ``keysPerCycle``, bank ``id % B``), a stall on pairs that
share a bank. The reference is the golden model's step 4 (``GoldenAccelerator._attend``:
``imp[tok_j] += p_j``, then the saturation at ``2^32 - 1``), applied beat by beat.

``ImportanceRandomTest``: 120 rounds; each round sends 1..40 beats (counts 0..B, ids from a
small pool so that ids repeat and banks collide, or consecutive runs, p with extremes;
random idle between beats), sometimes after a CLEAR, then reads every id the round touched
and a few it did not through ``tokReadId``/``tokReadData`` and compares them with the model.
``ImportanceThroughputTest``: beats of B consecutive ids (distinct banks) back to back, one
beat a cycle; then the values are checked as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.stream import StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, scaled, wait_until

ROUNDS = scaled(120)
NUM_IDS = 1 << 16


@dataclass
class ImpRound:
    index: int
    clear: bool
    beats: list[list[tuple[int, int]]]   # (id, p) pairs of each beat
    reads: list[int]                     # ids read back after the round
    lanes: int
    flags: set[str] = field(default_factory=set)


class ImpModel:
    """The token counters across rounds (they persist from round to round)."""

    def __init__(self, imp_max: int) -> None:
        self.imp = np.zeros(NUM_IDS, dtype=np.int64)
        self.imp_max = imp_max

    def apply(self, item: ImpRound) -> list[int]:
        if item.clear:
            self.imp[:] = 0
        for beat in item.beats:
            if beat:
                ids = np.array([i for i, _ in beat], dtype=np.int64)
                ps = np.array([p for _, p in beat], dtype=np.int64)
                np.add.at(self.imp, ids, ps)                       # SPEC 2 step 4, as golden
                np.minimum(self.imp, self.imp_max, out=self.imp)
        return [int(self.imp[i]) for i in item.reads]


class ImpScoreboard(ScoreboardBase):
    def predict(self, item: ImpRound) -> list[int]:
        if not hasattr(self, "model"):
            self.model = ImpModel((1 << int(self.params_dict["importanceBits"])) - 1)
        return self.model.apply(item)

    def describe(self, item: ImpRound) -> str:
        return f"round {item.index} (clear={item.clear}, {len(item.beats)} beats, reads {item.reads[:8]}...)"


class ImpNoRepeatScoreboard(ImpScoreboard):
    """A wrong model for the negative test: an id repeated inside a beat counts once."""

    def predict(self, item: ImpRound) -> list[int]:
        dedup = [list({i: (i, p) for i, p in beat}.values()) for beat in item.beats]
        return super().predict(ImpRound(item.index, item.clear, dedup, item.reads, item.lanes))


class ImpCoverage(CoverageBase):
    bins = ("clear", "emptyBeat", "fullBeat", "bankConflict", "repeatInBeat", "distinctBanks", "pMax")

    def sample(self, item: ImpRound) -> Iterable[str]:
        b = item.lanes
        hits = {"clear": item.clear,
                "emptyBeat": any(not beat for beat in item.beats),
                "fullBeat": any(len(beat) == b for beat in item.beats),
                "bankConflict": any(len({i % b for i, _ in beat}) < len(beat) for beat in item.beats),
                "repeatInBeat": any(len({i for i, _ in beat}) < len(beat) for beat in item.beats),
                "distinctBanks": any(len(beat) == b and len({i % b for i, _ in beat}) == b for beat in item.beats),
                "pMax": any(p == (1 << 17) - 1 for beat in item.beats for _, p in beat)}
        if b == 1:  # one bank: nothing can be distinct or collide inside a beat
            hits["bankConflict"] = hits["distinctBanks"] = True
        return [k for k, v in hits.items() if v]


class ImpAgents:
    def __init__(self, test: UnitTest, idle: float) -> None:
        dut = self.dut = test.dut
        self.acc = StreamSource(dut, "io_tokAcc", dut.clock, test.rng, idle)
        self.lanes = sum(1 for k in self.acc.port.fields if k.startswith("id_"))
        dut.io_clear_valid.value = 0
        dut.io_clear_bits_tok.value = 0
        dut.io_clear_bits_head.value = 0
        dut.io_headAcc_valid.value = 0
        dut.io_tokReadId.value = 0
        dut.io_headReadId.value = 0

    def beat(self, pairs: list[tuple[int, int]]) -> dict[str, int]:
        out = {"count": len(pairs)}
        for i in range(self.lanes):
            idv, pv = pairs[i] if i < len(pairs) else (0, 0)
            out[f"id_{i}"] = idv
            out[f"prob_{i}"] = pv
        return out

    async def clear(self) -> None:
        await FallingEdge(self.dut.clock)
        self.dut.io_clear_valid.value = 1
        self.dut.io_clear_bits_tok.value = 1
        await FallingEdge(self.dut.clock)
        self.dut.io_clear_valid.value = 0
        self.dut.io_clear_bits_tok.value = 0

    async def read(self, ids: list[int]) -> list[int]:
        got = []
        for i in ids:
            await FallingEdge(self.dut.clock)
            self.dut.io_tokReadId.value = i
            await ReadOnly()
            got.append(int(self.dut.io_tokReadData.value))
        await RisingEdge(self.dut.clock)  # leave the read-only phase for the caller
        return got


def draw_beat(rng: Any, lanes: int, pool: list[int]) -> list[tuple[int, int]]:
    n = rng.choice([0, lanes, lanes, rng.randint(0, lanes)])
    if rng.random() < 0.4:  # a run of consecutive ids (distinct banks)
        base = rng.randrange(NUM_IDS - lanes)
        ids = [base + k for k in range(n)]
    else:
        ids = [rng.choice(pool) for _ in range(n)]
    top = (1 << 17) - 1
    return [(i, rng.choice([0, 1 << 16, top, rng.randint(0, top)])) for i in ids]


@test()
class ImportanceRandomTest(UnitTest):
    scoreboard = ImpScoreboard
    coverage = ImpCoverage
    rounds = ROUNDS

    async def stimulus(self) -> None:
        dut, rng = self.dut, self.rng
        self.env.sb.params_dict = self.params
        ag = ImpAgents(self, 0.3)
        for r in range(self.rounds):
            clear = r > 0 and rng.random() < 0.15
            if clear:
                await ag.clear()
            pool = [rng.randrange(NUM_IDS) for _ in range(rng.randint(1, 6))]
            beats = [draw_beat(rng, ag.lanes, pool) for _ in range(rng.randint(1, 40))]
            for b in beats:
                ag.acc.send_nowait(ag.beat(b))
            await wait_until(dut, lambda: ag.acc.pending == 0, 50 * len(beats) * ag.lanes + 100, f"round {r} beats")
            await RisingEdge(dut.clock)
            touched = sorted({i for b in beats for i, _ in b})
            reads = touched + [rng.randrange(NUM_IDS) for _ in range(3)]
            item = ImpRound(r, clear, beats, reads, ag.lanes)
            self.env.requests.write(item)
            self.env.responses.write(await ag.read(reads))


@test()
class ImportanceBrokenModelTest(ImportanceRandomTest):
    """Negative test: a model that counts a repeated id once per beat must fail."""

    rounds = 40

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(ImpScoreboard, ImpNoRepeatScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()


@test()
class ImportanceThroughputTest(UnitTest):
    """Beats of B consecutive ids, back to back: one beat a cycle."""

    scoreboard = ImpScoreboard
    coverage = ImpCoverage

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, rng = self.dut, self.rng
        self.env.sb.params_dict = self.params
        ag = ImpAgents(self, 0.0)
        n = 200
        base = rng.randrange(NUM_IDS - n * ag.lanes)
        beats = [[(base + b * ag.lanes + k, rng.randint(0, 1 << 16)) for k in range(ag.lanes)] for b in range(n)]
        for b in beats:
            ag.acc.send_nowait(ag.beat(b))
        cycles = await wait_until(dut, lambda: ag.acc.pending == 0, 10 * n + 100, "the beats")
        self.logger.info(f"{n} beats of {ag.lanes} consecutive ids in {cycles} cycles")
        await RisingEdge(dut.clock)
        reads = [i for b in beats for i, _ in b]
        self.env.requests.write(ImpRound(0, False, beats, reads, ag.lanes))
        self.env.responses.write(await ag.read(reads))
        assert cycles <= n + 3, f"{n} conflict-free beats took {cycles} cycles"
