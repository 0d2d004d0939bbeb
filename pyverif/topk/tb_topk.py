"""pyuvm testbench of ``TopKEngine`` (SPEC.md section 3).

Layers: :class:`TopKRequest` items made by sequences -> :class:`TopKDriver` (``cmd`` and
``in`` streams, random idle cycles) -> DUT -> :class:`TopKMonitor` (``count`` and ``out``
streams, random back-pressure) -> :class:`TopKScoreboard` (reference:
``spatten.contract.golden.topk_select``) and :class:`TopKCoverage`.

Tests (run them through ``pyverif/topk/test_topk.py``):

- ``TopKRegressionTest``: corner cases plus ``TOPK_REQUESTS`` (default 1000) random
  requests, stalls on every stream.
- ``TopKBrokenModelTest``: a negative test. A factory override swaps in a scoreboard
  whose model breaks ties towards the *higher* position; the run must fail in the
  scoreboard (the pytest wrapper checks that it does, and why).
- ``TopKHangTest``: a negative test of the watchdog (``out`` never taken): the run must
  fail with a message naming the stalled stream.
- ``TopKPerfTest``: no stalls, fixed sizes; records cycles from the last input score to
  the last output beat (written to ``SPATTEN_TB_REPORT``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, Event, RisingEdge
from pyuvm import (ConfigDB, test, uvm_analysis_port, uvm_driver, uvm_env,
                   uvm_factory, uvm_monitor, uvm_sequence, uvm_sequence_item, uvm_sequencer,
                   uvm_test)

from pyverif.common.params import hw_params
from pyverif.common.seed import reproduce_hint, rng_for, run_seed
from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase, config, write_report
from pyverif.common.watchdog import Watchdog
from spatten.contract.golden import topk_select

CLOCK_NS = 2


# ------------------------------------------------------------------------------ items


class TopKRequest(uvm_sequence_item):
    """One request: ``k`` and the scores (position = index)."""

    def __init__(self, name: str = "topk_req", k: int = 0, scores: Iterable[int] = ()) -> None:
        super().__init__(name)
        self.k = k
        self.scores = list(scores)
        self.index = -1            # set by the driver: order of issue
        self.last_in_ns = -1       # set by the driver: when the last score was taken

    def randomize(self, rng: random.Random, capacity: int, score_bits: int) -> None:
        """Draw a size, a score profile and a ``k`` (corner values weighted up)."""
        top = (1 << score_bits) - 1
        n = rng.choice([1, capacity, rng.randint(1, capacity), rng.randint(1, capacity),
                        rng.randint(1, min(capacity, 8))])
        profile = rng.choice(["uniform", "uniform", "dups", "dups", "equal", "max", "ascending",
                              "descending", "small"])
        if profile == "uniform":
            s = [rng.randint(0, top) for _ in range(n)]
        elif profile == "dups":
            vals = [rng.randint(0, top) for _ in range(rng.randint(1, 4))]
            s = [rng.choice(vals) for _ in range(n)]
        elif profile == "equal":
            s = [rng.choice([0, top, rng.randint(0, top)])] * n
        elif profile == "max":
            s = [top if rng.random() < 0.5 else rng.randint(0, top) for _ in range(n)]
        elif profile == "small":
            s = [rng.randint(0, 3) for _ in range(n)]
        else:
            s = sorted(rng.randint(0, top) for _ in range(n))
            if profile == "descending":
                s.reverse()
        self.scores = s
        self.k = rng.choice([0, 1, n, n + rng.randint(1, 3), 0xFFFF, rng.randint(0, n),
                             rng.randint(1, n), rng.randint(1, n)])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopKRequest) and (self.k, self.scores) == (other.k, other.scores)

    def __str__(self) -> str:
        shown = self.scores if len(self.scores) <= 12 else self.scores[:12] + ["..."]
        return f"{self.get_name()} k={self.k} n={len(self.scores)} scores={shown}"


@dataclass
class TopKResponse:
    """What the engine returned for one request."""

    count: int
    items: list[tuple[int, int]] = field(default_factory=list)   # (position, score)
    lasts: list[bool] = field(default_factory=list)              # `last` flag of each item
    end_ns: int = -1                                             # when the final beat was taken
    count_ns: int = -1                                           # when the count beat was taken

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TopKResponse) and self.count == other.count
                and self.items == other.items and self.lasts == other.lasts)

    def __str__(self) -> str:
        shown = self.items if len(self.items) <= 12 else self.items[:12] + ["..."]
        bad_last = [i for i, f in enumerate(self.lasts) if f != (i == len(self.lasts) - 1)]
        return f"count={self.count} items(pos,score)={shown}" + (
            f" last-flag wrong at {bad_last}" if bad_last else "")


# ------------------------------------------------------------------------------ sequences


class TopKCornerSeq(uvm_sequence):
    """Deterministic corners: sizes 1 and capacity, k in {0, 1, n-1, n, n+1, 0xFFFF},
    all-equal, maximum-value, duplicate-heavy and sorted scores."""

    async def body(self) -> None:
        cap = config("CAPACITY", 64)
        top = (1 << config("SCORE_BITS", 17)) - 1
        rng = rng_for("corner-seq")
        cases: list[tuple[int, list[int]]] = []
        for k in (0, 1, 2, 0xFFFF):
            cases.append((k, [rng.randint(0, top)]))
        for k in (0, 1, cap // 2, cap - 1, cap, cap + 1):
            cases.append((k, [rng.randint(0, top) for _ in range(cap)]))
            cases.append((k, [top] * cap))
            cases.append((k, [rng.randint(0, 2) for _ in range(cap)]))
            cases.append((k, list(range(cap))))
            cases.append((k, list(range(cap, 0, -1))))
        cases.append((3, [top, 0, top, 0, top, top]))
        # More than `capacity` scores: the engine keeps the first `capacity`.
        cases.append((cap // 2, [rng.randint(0, top) for _ in range(cap + 3)]))
        for k, scores in cases:
            item = TopKRequest("corner", k, scores)
            await self.start_item(item)
            await self.finish_item(item)


class TopKRandomSeq(uvm_sequence):
    """``TOPK_REQUESTS`` random requests (see :meth:`TopKRequest.randomize`)."""

    async def body(self) -> None:
        cap = config("CAPACITY", 64)
        bits = config("SCORE_BITS", 17)
        rng = rng_for("random-seq")
        for _ in range(config("TOPK_REQUESTS", 1000)):
            item = TopKRequest("random")
            await self.start_item(item)
            item.randomize(rng, cap, bits)
            await self.finish_item(item)


class TopKRegressionSeq(uvm_sequence):
    """Corners, then random requests."""

    async def body(self) -> None:
        seqr = ConfigDB().get(None, "", "SEQR")
        await TopKCornerSeq("corners").start(seqr)
        await TopKRandomSeq("random").start(seqr)


class TopKPerfSeq(uvm_sequence):
    """Distinct random scores at the sizes in ``PERF_SIZES``, k = n/4 and k = n/2."""

    async def body(self) -> None:
        top = (1 << config("SCORE_BITS", 17)) - 1
        rng = rng_for("perf-seq")
        for n in config("PERF_SIZES", [64]):
            for k in (max(1, n // 4), max(1, n // 2)):
                for _ in range(config("PERF_REPEATS", 4)):
                    item = TopKRequest("perf", k, rng.sample(range(top + 1), n))
                    await self.start_item(item)
                    await self.finish_item(item)


# ------------------------------------------------------------------------------ BFM, driver, monitor


class TopKBfm:
    """The DUT's clock, reset and four stream agents (random stalls on all of them)."""

    def __init__(self, dut: SimHandleBase, idle_prob: float, stall_prob: float,
                 out_stall_prob: float | None = None) -> None:
        self.dut = dut
        self.cmd = StreamSource(dut, "io_cmd", dut.clock, rng_for("cmd"), idle_prob)
        self.inp = StreamSource(dut, "io_in", dut.clock, rng_for("in"), idle_prob)
        self.count = StreamSink(dut, "io_count", dut.clock, rng_for("count"), stall_prob)
        self.out = StreamSink(dut, "io_out", dut.clock, rng_for("out"),
                              stall_prob if out_stall_prob is None else out_stall_prob)
        self.reset_done = Event()

    async def reset(self) -> None:
        Clock(self.dut.clock, CLOCK_NS, unit="ns").start()
        self.dut.reset.value = 1
        await ClockCycles(self.dut.clock, 4)
        self.dut.reset.value = 0
        await RisingEdge(self.dut.clock)
        self.reset_done.set()

    def status(self) -> dict[str, int]:
        """The engine's status port."""
        d = self.dut
        return {"busy": int(d.io_status_busy.value), "phase": int(d.io_status_phase.value),
                "passes": int(d.io_status_passes.value),
                "received": int(d.io_status_received.value),
                "overflow": int(d.io_status_overflow.value)}


class TopKDriver(uvm_driver):
    """Sends ``k`` on ``cmd`` and the scores on ``in``; publishes each request."""

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.issued: list[TopKRequest] = []
        self.junk = rng_for("junk-lanes")

    async def run_phase(self) -> None:
        bfm: TopKBfm = ConfigDB().get(self, "", "BFM")
        await bfm.reset_done.wait()
        while True:
            req = await self.seq_item_port.get_next_item()
            req.index = len(self.issued)
            await bfm.cmd.send({"bits": req.k})
            n = len(req.scores)
            lanes = ConfigDB().get(None, "", "IN_LANES")
            if lanes == 1:
                done = [bfm.inp.send_nowait({"score": s, "last": int(i == n - 1)})
                        for i, s in enumerate(req.scores)]
            else:
                # beats of `lanes` scores, all but the last full; lanes past count are junk
                done = []
                for b in range(0, n, lanes):
                    chunk = req.scores[b:b + lanes]
                    beat = {f"scores_{i}": (chunk[i] if i < len(chunk) else self.junk.getrandbits(
                        ConfigDB().get(None, "", "SCORE_BITS"))) for i in range(lanes)}
                    beat.update(count=len(chunk), last=int(b + lanes >= n))
                    done.append(bfm.inp.send_nowait(beat))
            self.issued.append(req)
            self.ap.write(req)
            await done[-1].wait()
            req.last_in_ns = bfm.inp.last_taken_ns
            # status.overflow is sticky until the next command, which is not sent yet.
            await ClockCycles(bfm.dut.clock, 2)
            want = n > ConfigDB().get(None, "", "CAPACITY")
            if bfm.status()["overflow"] != want:
                raise AssertionError(f"request #{req.index} ({req}): status.overflow is "
                                     f"{bfm.status()['overflow']}, expected {int(want)}; {reproduce_hint()}")
            self.seq_item_port.item_done()


class TopKMonitor(uvm_monitor):
    """Collects a ``count`` beat and that many ``out`` beats into a :class:`TopKResponse`."""

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.responses: list[TopKResponse] = []

    async def run_phase(self) -> None:
        bfm: TopKBfm = ConfigDB().get(self, "", "BFM")
        while True:
            t_count, beat = await bfm.count.recv_timed()
            resp = TopKResponse(count=beat["bits"], end_ns=t_count, count_ns=t_count)
            lanes = ConfigDB().get(None, "", "OUT_LANES")
            while len(resp.items) < resp.count:
                t, b = await bfm.out.recv_timed()
                if lanes == 1:
                    resp.items.append((b["position"], b["score"]))
                    resp.lasts.append(bool(b["last"]))
                else:
                    # a block of `lanes` positions from `position` (aligned); `mask` says which
                    if b["position"] % lanes or not b["mask"]:
                        raise AssertionError(f"out beat {b}: position not a multiple of {lanes} "
                                             f"or an empty mask; {reproduce_hint()}")
                    sel = [i for i in range(lanes) if b["mask"] >> i & 1]
                    for i in sel:
                        resp.items.append((b["position"] + i, b[f"scores_{i}"]))
                        resp.lasts.append(bool(b["last"]) and i == sel[-1])
                resp.end_ns = max(resp.end_ns, t)
            self.responses.append(resp)
            self.ap.write(resp)


# ------------------------------------------------------------------------------ checking


class TopKScoreboard(ScoreboardBase):
    """Compares every response with ``spatten.contract.golden.topk_select``."""

    def select(self, scores: list[int], k: int) -> list[int]:
        """Selected positions, ascending (the reference model)."""
        return [int(j) for j in topk_select(scores, k)]

    def predict(self, request: TopKRequest) -> TopKResponse:
        scores = request.scores[:config("CAPACITY", 64)]   # the engine drops the rest
        sel = self.select(scores, request.k)
        return TopKResponse(count=len(sel), items=[(j, request.scores[j]) for j in sel],
                            lasts=[i == len(sel) - 1 for i in range(len(sel))])

    def describe(self, request: TopKRequest) -> str:
        return f"#{request.index} {request}"


class TopKTieFlipScoreboard(TopKScoreboard):
    """A deliberately wrong model (ties towards the *higher* position), for the
    negative test: the scoreboard must report mismatches."""

    def select(self, scores: list[int], k: int) -> list[int]:
        n = len(scores)
        order = sorted(range(n), key=lambda j: (-scores[j], -j))
        return sorted(order[:min(k, n)])


class TopKCoverage(CoverageBase):
    """Request-shape bins; all must be hit."""

    bins = ("size_1", "size_capacity", "overflow", "k_0", "k_1", "k_eq_n", "k_gt_n", "k_between",
            "duplicates", "all_equal", "max_scores", "tie_at_threshold")

    def sample(self, item: TopKRequest) -> Iterable[str]:
        cap = config("CAPACITY", 64)
        top = (1 << config("SCORE_BITS", 17)) - 1
        hit = ["overflow"] if len(item.scores) > cap else []
        s, k = item.scores[:cap], item.k
        n = len(s)
        if n == 1:
            hit.append("size_1")
        if n == cap:
            hit.append("size_capacity")
        hit.append("k_0" if k == 0 else "k_eq_n" if k == n else "k_gt_n" if k > n else "k_between")
        if k == 1:
            hit.append("k_1")
        if len(set(s)) < n:
            hit.append("duplicates")
        if n > 1 and len(set(s)) == 1:
            hit.append("all_equal")
        if top in s:
            hit.append("max_scores")
        if 0 < k < n:
            kth = sorted(s, reverse=True)[k - 1]
            if sorted(s, reverse=True)[k] == kth:
                hit.append("tie_at_threshold")
        return hit


# ------------------------------------------------------------------------------ env and tests


class TopKEnv(uvm_env):
    """Sequencer, driver, monitor, scoreboard and coverage around one engine."""

    def build_phase(self) -> None:
        self.seqr = uvm_sequencer("seqr", self)
        ConfigDB().set(None, "*", "SEQR", self.seqr)
        self.driver = TopKDriver.create("driver", self)
        self.monitor = TopKMonitor.create("monitor", self)
        self.scoreboard = TopKScoreboard.create("scoreboard", self)
        self.coverage = TopKCoverage.create("coverage", self)

    def connect_phase(self) -> None:
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)
        self.driver.ap.connect(self.scoreboard.request_export)
        self.driver.ap.connect(self.coverage.analysis_export)
        self.monitor.ap.connect(self.scoreboard.response_export)


@test()
class TopKRegressionTest(uvm_test):
    """Corners plus random requests with random stalls on all four streams."""

    idle_prob = 0.25
    stall_prob = 0.3
    out_stall_prob: float | None = None
    watchdog_cycles = 20000
    sequence = TopKRegressionSeq

    def build_phase(self) -> None:
        dut = cocotb.top
        params = hw_params()
        # TOPK_CAPACITY: set by the pytest wrapper for tops whose capacity is not maxTokens.
        capacity = int(os.environ.get("TOPK_CAPACITY", params.max_tokens))
        ConfigDB().set(None, "*", "CAPACITY", capacity)
        # a TopKEngine with inLanes / outLanes > 1 has Vec ports (scores_<i>, mask)
        in_lanes = 1 if hasattr(dut, "io_in_bits_score") else len(
            [n for n in dir(dut) if n.startswith("io_in_bits_scores_")])
        out_lanes = 1 if hasattr(dut, "io_out_bits_score") else len(dut.io_out_bits_mask)
        ConfigDB().set(None, "*", "IN_LANES", in_lanes)
        ConfigDB().set(None, "*", "OUT_LANES", out_lanes)
        ConfigDB().set(None, "*", "SCORE_BITS",
                       len(dut.io_in_bits_score if in_lanes == 1 else dut.io_in_bits_scores_0))
        ConfigDB().set(None, "*", "TOPK_REQUESTS", int(os.environ.get("TOPK_REQUESTS", "1000")))
        self.bfm = TopKBfm(dut, self.idle_prob, self.stall_prob, self.out_stall_prob)
        ConfigDB().set(None, "*", "BFM", self.bfm)
        self.env = TopKEnv("env", self)

    async def run_phase(self) -> None:
        self.raise_objection()
        bfm = self.bfm
        drv, mon = self.env.driver, self.env.monitor
        dog = Watchdog(bfm.dut.clock, limit=self.watchdog_cycles, probes={
            "cmd beats sent": lambda: bfm.cmd.sent, "in beats sent": lambda: bfm.inp.sent,
            "count beats taken": lambda: bfm.count.received, "out beats taken": lambda: bfm.out.received,
            "engine partition passes": lambda: bfm.status()["passes"],
            "engine phase": lambda: bfm.status()["phase"]},
            context={"engine status": bfm.status,
                     "requests issued / answered": lambda: (len(drv.issued), len(mon.responses)),
                     "seed": run_seed})
        await bfm.reset()
        await self.sequence.create("seq").start(self.env.seqr)
        while len(mon.responses) < len(drv.issued):
            await RisingEdge(bfm.dut.clock)
        await ClockCycles(bfm.dut.clock, 50)
        dog.stop()
        extra = bfm.count.queue.qsize() + bfm.out.queue.qsize()
        if extra:
            raise AssertionError(f"{extra} unexpected output beat(s) after the last response; "
                                 f"{reproduce_hint()}")
        self.drop_objection()


@test()
class TopKBrokenModelTest(TopKRegressionTest):
    """Negative test: a tie-flipping model must make the scoreboard fail."""

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(TopKScoreboard, TopKTieFlipScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
        ConfigDB().set(None, "*", "TOPK_REQUESTS", 100)


@test()
class TopKHangTest(TopKRegressionTest):
    """Negative test of the watchdog: ``out`` is never taken, so the engine stalls in its
    filter pass; the run must fail with a message naming the stalled stream."""

    out_stall_prob = 1.0
    watchdog_cycles = 2000
    sequence = TopKRandomSeq

    def build_phase(self) -> None:
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
        ConfigDB().set(None, "*", "TOPK_REQUESTS", 5)


@test()
class TopKPerfTest(TopKRegressionTest):
    """Cycle measurement: no stalls; sizes from ``PERF_SIZES`` (comma list)."""

    idle_prob = 0.0
    stall_prob = 0.0
    sequence = TopKPerfSeq

    def build_phase(self) -> None:
        super().build_phase()
        cap = ConfigDB().get(None, "", "CAPACITY")
        sizes = [int(x) for x in os.environ.get("PERF_SIZES", str(cap)).split(",")]
        ConfigDB().set(None, "*", "PERF_SIZES", sizes)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    def report_phase(self) -> None:
        rows: dict[str, list[tuple[int, int]]] = {}
        for req, resp in zip(self.env.driver.issued, self.env.monitor.responses):
            select = (resp.count_ns - req.last_in_ns) // CLOCK_NS
            total = (resp.end_ns - req.last_in_ns) // CLOCK_NS
            rows.setdefault(f"n={len(req.scores)} k={req.k}", []).append((select, total))
        summary = {}
        for key, v in rows.items():
            sel, tot = [a for a, _ in v], [b for _, b in v]
            summary[key] = {"select_mean": sum(sel) / len(sel), "select_max": max(sel),
                            "min": min(tot), "mean": sum(tot) / len(tot), "max": max(tot)}
            self.logger.info(f"perf {key}: cycles from the last input to the count beat (selection) "
                             f"mean {summary[key]['select_mean']:.1f} max {max(sel)}; to the last output "
                             f"min {min(tot)} mean {summary[key]['mean']:.1f} max {max(tot)}")
        write_report("perf", summary)
