"""pyuvm testbench of ``Softmax`` (two score banks, with its ``Reciprocal`` divider),
reference ``spatten.contract.golden.softmax_fixed``: the summary beat (pmax, E, R, N) of every
pass and every p_j of every streamed pass, bit for bit.

The DUT has two independent sides, and the testbench drives them as the attention
controller does, from two coroutines:

- the pass side (:meth:`SoftmaxRandomTest._feed`): each pass picks a bank (``io_bank``,
  sampled with its first score) that no pending or running stream uses, sends its scores
  and takes its summary; the next pass's scores may be queued as soon as the previous
  pass's last score is taken (they wait while the previous pass computes);
- the stream side (:meth:`SoftmaxRandomTest._streams`): a pass in mode ``stream`` gets a
  ``stream`` command (its bank, and N and R from its summary) once its summary is taken,
  or, for a *late* stream, once the next pass's summary is taken too; its probabilities
  are taken under back-pressure while later passes collect into the other bank.
  A pass in mode ``noStream`` is never streamed (pass 1 before requantization); the next
  pass may reuse its bank.

``SoftmaxRandomTest``: first directed passes whose ``t_j`` sweep 0..255 (every exp2
table entry; scale 1, shift 0), then random passes (300 in all) of random N (1 and
capacity included), score shapes (random, all equal, extremes of a maxHeadDim dot
product, narrow, ties) and (scale, shift); random stalls on every input and output. A
per-cycle sampler records the concurrency each stream saw (scores collected into the other
bank, the other bank's exponent/reciprocal running) for the coverage bins.
``SoftmaxLatencyTest``: no stalls, N = maxTokens; cycles to the summary and to the last
probability. ``SoftmaxBrokenModelTest``: R off by one in the model; must fail.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import cocotb
import numpy as np
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.seed import run_seed
from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.common.watchdog import Watchdog
from pyverif.units.env import UnitTest, mask, scaled, wait_until
from spatten.contract.golden import softmax_fixed
from spatten.contract.params import from_dict

REQUESTS = scaled(300)


@dataclass
class SoftmaxItem:
    """One pass and what the test does with it: ``mode`` is ``stream`` (summary, then all
    probabilities through a stream command) or ``noStream`` (summary only). ``late``: the
    stream command waits for the next pass's summary. ``bank`` is chosen when the pass is
    fed; ``flags`` collect what the sampler saw (coverage)."""
    index: int
    scores: list[int]
    scale: int
    shift: int
    mode: str
    params: dict[str, Any] = field(repr=False)
    late: bool = False
    bank: int = -1
    flags: set[str] = field(default_factory=set)


class SoftmaxScoreboard(ScoreboardBase):
    def predict(self, item: SoftmaxItem) -> dict[str, Any]:
        e, E, R, p = softmax_fixed(np.array(item.scores, dtype=np.int64), item.scale, item.shift,
                                   from_dict(item.params))
        n = len(item.scores)
        summary = {"pmax": int(p.max()), "sumE": E, "recip": R, "n": n}
        probs = [{"p": int(x), "idx": j, "last": int(j == n - 1)} for j, x in enumerate(p)] \
            if item.mode == "stream" else []
        return {"summary": summary, "probs": probs}

    def describe(self, item: SoftmaxItem) -> str:
        return (f"pass {item.index} (N={len(item.scores)}, scale={item.scale}, shift={item.shift}, "
                f"{item.mode}{' late' if item.late else ''}, bank {item.bank}) scores={item.scores}")


class SoftmaxRoundingScoreboard(SoftmaxScoreboard):
    """A wrong model for the negative test: R rounded up instead of floored."""

    def predict(self, item: SoftmaxItem) -> dict[str, Any]:
        want = super().predict(item)
        want["summary"] = {**want["summary"], "recip": want["summary"]["recip"] + 1}
        return want


class SoftmaxCoverage(CoverageBase):
    """Data bins (sizes, score shapes, table corners) and usage bins of the two sides:
    ``overlap`` (scores collected into the other bank while this pass streamed),
    ``overlapCompute`` (a probability taken while the other bank's exponent, reciprocal or
    summary was pending), ``scoresWait`` (a pass's first score offered while the previous
    pass was still computing), ``streamWaits`` (a stream command offered while the
    previous stream ran), ``lateStream`` (streamed after the next pass's summary),
    ``noStreamBankReused`` (the pass after a non-streamed one collected into its bank).
    The running-maximum bins cover the collect-time exponents: ``maxFirst`` (the maximum
    at position 0: nothing to recompute), ``maxLast`` (first reached at N-1: everything
    before it recomputed), ``maxRisesOften`` (the running maximum rose at least 4 times)
    and ``maxRisesBackToBack`` (it rose at two consecutive positions, while the first
    one's exponent was still in the pipeline)."""

    bins = ("n1", "nCapacity", "allEqual", "extremeScores", "saturated", "shift0", "scale0",
            "lutEntry255", "streamed", "noStream", "noStreamBankReused", "bank0", "bank1",
            "overlap", "overlapCompute", "scoresWait", "streamWaits", "lateStream",
            "maxFirst", "maxLast", "maxRisesOften", "maxRisesBackToBack")

    def sample(self, item: SoftmaxItem) -> Iterable[str]:
        s, n = item.scores, len(item.scores)
        dmax, cap = int(item.params["maxHeadDim"]), int(item.params["maxTokens"])
        e, _, _, _ = softmax_fixed(np.array(s, dtype=np.int64), item.scale, item.shift, from_dict(item.params))
        cond = {"n1": n == 1, "nCapacity": n == cap, "allEqual": n > 1 and len(set(s)) == 1,
                "extremeScores": max(s) == dmax << 30 and min(s) < -(dmax << 29),
                "saturated": bool((e == 0).any()), "shift0": item.shift == 0, "scale0": item.scale == 0,
                "lutEntry255": item.scale == 1 and item.shift == 0 and min(s) == max(s) - 255,
                "streamed": item.mode == "stream", "noStream": item.mode == "noStream",
                "lateStream": item.mode == "stream" and item.late,
                "bank0": item.bank == 0, "bank1": item.bank == 1}
        rises, best = [], None
        for j, x in enumerate(s):
            if best is None or x > best:
                rises.append(j)
                best = x
        cond.update({"maxFirst": n > 1 and rises[-1] == 0, "maxLast": n > 1 and rises[-1] == n - 1,
                     "maxRisesOften": len(rises) >= 5,
                     "maxRisesBackToBack": any(b - a == 1 for a, b in zip(rises[1:], rises[2:]))})
        return [b for b, c in cond.items() if c] + sorted(item.flags)


def draw_scores(rng, n: int, dmax: int, kind: str) -> list[int]:
    """Scores reachable by a dot product of maxHeadDim 16-bit elements."""
    smax = dmax * (1 << 30)                    # sum of (-2^15)^2
    smin = -dmax * (1 << 15) * ((1 << 15) - 1)
    if kind == "equal":
        return [rng.randint(smin, smax)] * n
    if kind == "extreme":
        return [rng.choice([smin, smax]) for _ in range(n)]
    if kind == "narrow":
        base = rng.randint(smin // 2, smax // 2)
        return [base + rng.randint(-300, 300) for _ in range(n)]
    if kind == "rising":   # strictly increasing: the running maximum rises at every position
        out, x = [], rng.randint(smin // 2, 0)
        for _ in range(n):
            x += rng.randint(1, 1 << 12)
            out.append(x)
        return out
    if kind == "sink":     # the maximum first (an attention sink), the rest well below
        rest = [rng.randint(smin // 4, 0) for _ in range(n - 1)]
        return [max(rest, default=0) + rng.randint(1, 1 << 12)] + rest
    if kind == "ties":
        vals = [rng.randint(-1000, 1000) for _ in range(3)]
        return [rng.choice(vals) for _ in range(n)]
    return [rng.randint(smin, smax) >> rng.randint(0, 30) for _ in range(n)]


class SoftmaxBfm:
    """The agents of both sides: score source (random idle), summary sink, stream-command
    source, probability sink (random back-pressure). Summaries go to the oldest pass
    waiting for one; probabilities to the oldest stream whose command was taken (the next
    command may be offered while a stream runs: it must wait). Beats that belong to no
    pass or stream are recorded in :attr:`unexpected`."""

    def __init__(self, test: UnitTest, idle: float, stall: float) -> None:
        dut = self.dut = test.dut
        rng = test.rng
        self.scores = StreamSource(dut, "io_scores", dut.clock, rng, idle)
        self.stream = StreamSource(dut, "io_stream", dut.clock, rng, idle)
        self.summary = StreamSink(dut, "io_summary", dut.clock, rng, stall, callback=self._on_summary)
        self.probs = StreamSink(dut, "io_probs", dut.clock, rng, stall, callback=self._on_prob)
        self.score_bits = len(dut.io_scores_bits_s_0)
        self.k = len([n for n in dir(dut) if n.startswith("io_scores_bits_s_")])
        self.beat_rng = rng
        self.awaiting_summary: deque[SoftmaxItem] = deque()
        self.summaries: dict[int, dict[str, int]] = {}
        self.probs_of: dict[int, list[dict[str, int]]] = {}
        self.active: deque[SoftmaxItem] = deque()   # stream commands taken, probabilities due
        self.offered: SoftmaxItem | None = None      # a stream command offered, not yet taken
        self.unexpected: list[str] = []
        self.summary_hooks: list[Callable[[SoftmaxItem], None]] = []
        self.stream_end_hooks: list[Callable[[SoftmaxItem], None]] = []
        dut.io_bank.value = 0
        dut.io_cfg_scoreScale.value = 0
        dut.io_cfg_scoreShift.value = 0

    @property
    def streaming(self) -> SoftmaxItem | None:
        """The pass whose probabilities are streaming."""
        return self.active[0] if self.active else None

    def _on_summary(self, beat: dict[str, int]) -> None:
        if not self.awaiting_summary:
            self.unexpected.append(f"summary {beat} with no pass pending")
            return
        item = self.awaiting_summary.popleft()
        self.summaries[item.index] = beat
        for hook in self.summary_hooks:
            hook(item)

    @property
    def lanes(self) -> int:
        """C: probabilities a beat (the ``p_<i>`` fields of ``io_probs``)."""
        return sum(1 for name in self.probs.port.fields if name.startswith("p_"))

    def _on_prob(self, beat: dict[str, int]) -> None:
        """A beat of up to C probabilities: expanded into one record a position; the beat's
        framing (aligned ``idx``, full beats but the last, zero lanes past ``count``) is
        checked here."""
        item = self.streaming
        if item is None:
            self.unexpected.append(f"probability beat {beat} with no stream running")
            return
        c, count, idx = self.lanes, beat["count"], beat["idx"]
        got = self.probs_of[item.index]
        n = self.summaries[item.index]["n"]
        if idx != len(got) or idx % c or not 1 <= count <= c or (count < c and idx + count != n):
            self.unexpected.append(f"pass {item.index}: beat idx {idx} count {count} after {len(got)} "
                                   f"probabilities (C = {c}, N = {n})")
        if any(beat[f"p_{i}"] for i in range(count, c)):
            self.unexpected.append(f"pass {item.index}: beat {beat} has non-zero lanes past count")
        for i in range(count):
            got.append({"p": beat[f"p_{i}"], "idx": idx + i,
                        "last": int(bool(beat["last"]) and i == count - 1)})
        if len(got) >= n:
            self._end(item)

    def _end(self, item: SoftmaxItem) -> None:
        self.active.popleft()
        for hook in self.stream_end_hooks:
            hook(item)

    def load(self, item: SoftmaxItem) -> Event:
        """Drive cfg and bank, queue the scores; returns the event of the last score taken."""
        self.dut.io_cfg_scoreScale.value = item.scale
        self.dut.io_cfg_scoreShift.value = item.shift
        self.dut.io_bank.value = item.bank
        self.awaiting_summary.append(item)
        done = Event()
        n = len(item.scores)
        # beats of 1..K scores (full ones weighted up), never crossing a multiple of K
        j = 0
        while j < n:
            room = self.k - j % self.k
            c = min(n - j, room if self.beat_rng.random() < 0.5 else self.beat_rng.randint(1, room))
            lanes = item.scores[j:j + c] + [self.beat_rng.randint(-1000, 1000)] * (self.k - c)  # past count: ignored
            beat = {f"s_{i}": mask(v, self.score_bits) for i, v in enumerate(lanes)}
            done = self.scores.send_nowait({**beat, "count": c, "last": int(j + c == n)})
            j += c
        return done

    async def start_stream(self, item: SoftmaxItem) -> None:
        """Offer ``item``'s stream command (its bank, N and R as its summary gave them);
        return once it is taken."""
        summ = self.summaries[item.index]
        self.probs_of[item.index] = []
        if summ["n"] == 0:  # a wrong summary: nothing to stream (the scoreboard reports it)
            self.active.append(item)
            self._end(item)
            return
        self.offered = item
        await self.stream.send({"bank": item.bank, "n": summ["n"], "recip": summ["recip"]})
        self.offered = None
        self.active.append(item)


@test()
class SoftmaxRandomTest(UnitTest):
    """Random passes, streamed or not, overlapping streams, random stalls everywhere."""

    scoreboard = SoftmaxScoreboard
    coverage = SoftmaxCoverage
    requests = REQUESTS
    idle = 0.3
    stall = 0.3

    def make(self, r: int) -> SoftmaxItem:
        rng, p = self.rng, self.params
        cap, dmax = int(p["maxTokens"]), int(p["maxHeadDim"])
        per = max(1, cap - 1)
        if r * per < 256:  # directed first passes: t_j = 0..255 once each, every table entry
            fs = range(r * per + 1, min(256, (r + 1) * per + 1))
            return SoftmaxItem(r, [0] + [-f for f in fs], 1, 0, "stream", p)
        n = rng.choice([1, cap, rng.randint(1, 16), rng.randint(1, cap)])
        scores = draw_scores(rng, n, dmax, rng.choice(["random", "equal", "extreme", "narrow", "ties", "rising", "sink"]))
        scale = rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF), 369])
        shift = rng.choice([0, 63, rng.randint(0, 63), rng.randint(20, 40)])
        mode = rng.choice(["stream", "stream", "noStream"])
        return SoftmaxItem(r, scores, scale, shift, mode, p, late=mode == "stream" and rng.random() < 0.25)

    # ---- the pass side ----------------------------------------------------------------
    async def _feed(self, items: list[SoftmaxItem]) -> None:
        """Feed every pass: pick a bank no stream needs, send the scores, then either queue
        the next pass at once or wait for this pass's summary (and a random gap)."""
        bfm, rng, dut = self.bfm, self.rng, self.dut
        prev: SoftmaxItem | None = None
        for item in items:
            want = prev.bank if prev is not None and prev.mode == "noStream" and rng.random() < 0.6 \
                else rng.randint(0, 1)
            while self.locked[0] and self.locked[1]:   # both banks hold streams: wait for one
                await RisingEdge(dut.clock)
            if self.locked[want]:
                want ^= 1
            item.bank = want
            if prev is not None and prev.mode == "noStream" and prev.bank == want:
                prev.flags.add("noStreamBankReused")
            if item.mode == "stream":
                self.locked[want] += 1          # until its stream has ended
            self.feeding = item
            await bfm.load(item).wait()
            self.fed += 1
            if rng.random() < 0.5:              # wait for the summary, then a gap
                await wait_until(dut, lambda: item.index in bfm.summaries, 100 * (len(item.scores) + 40),
                                 f"the summary of pass {item.index} (N={len(item.scores)})")
                await ClockCycles(dut.clock, rng.choice([1, 1, rng.randint(1, 30)]))
            prev = item

    # ---- the stream side ----------------------------------------------------------------
    def _on_summary(self, item: SoftmaxItem) -> None:
        """Release stream commands in pass order: a pass's once its summary is in (a late
        one's once the next pass's summary is in too, or when no pass follows)."""
        self.summarized = max(self.summarized, item.index + 1)
        self._release()

    def _release(self) -> None:
        while self.pending_jobs:
            job = self.pending_jobs[0]
            need = job.index + (2 if job.late else 1)
            if self.summarized < min(need, self.total):
                break
            self.jobs.put_nowait(self.pending_jobs.popleft())

    async def _streams(self) -> None:
        """Offer the released stream commands in order, sometimes after a gap; the next
        one is offered as soon as the previous one is taken (it waits for that stream)."""
        rng = self.rng
        while True:
            item = await self.jobs.get()
            if rng.random() < 0.3:
                await ClockCycles(self.dut.clock, rng.randint(1, 40))
            await self.bfm.start_stream(item)

    def _on_stream_end(self, item: SoftmaxItem) -> None:
        self.locked[item.bank] -= 1
        self.streamed += 1

    # ---- the per-cycle sampler ------------------------------------------------------------
    async def _sample(self) -> None:
        """Coverage of the two sides' concurrency, and the interface rules that hold every
        cycle (outputs only while busy/streaming, never both sides on one bank)."""
        d, bfm = self.dut, self.bfm
        while True:
            await ReadOnly()
            sv, sr = int(d.io_scores_valid.value), int(d.io_scores_ready.value)
            busy, streaming = int(d.io_busy.value), int(d.io_streaming.value)
            pv, pr = int(d.io_probs_valid.value), int(d.io_probs_ready.value)
            cv, cr = int(d.io_stream_valid.value), int(d.io_stream_ready.value)
            if pv and not streaming:
                self.violations.append(f"io_probs_valid while io_streaming is low (seed {run_seed()})")
            if int(d.io_summary_valid.value) and not busy:
                self.violations.append("io_summary_valid while io_busy is low")
            item, fed = bfm.streaming, self.feeding
            if sv and not sr and busy and fed is not None:
                fed.flags.add("scoresWait")
            if cv and not cr and bfm.offered is not None:
                bfm.offered.flags.add("streamWaits")
            if item is not None:
                if sv and sr:
                    item.flags.add("overlap")
                    if fed is not None and fed.bank == item.bank:
                        self.violations.append(f"testbench: pass {fed.index} collects into bank {fed.bank} "
                                               f"while pass {item.index} streams from it")
                if pv and pr and busy and not sr:
                    item.flags.add("overlapCompute")
            await RisingEdge(d.clock)

    async def stimulus(self) -> None:
        dut = self.dut
        self.bfm = bfm = SoftmaxBfm(self, self.idle, self.stall)
        items = [self.make(r) for r in range(self.requests)]
        self.total = len(items)
        self.locked = [0, 0]
        self.feeding: SoftmaxItem | None = None
        self.fed = self.streamed = self.summarized = 0
        self.violations: list[str] = []
        self.jobs: Queue[SoftmaxItem] = Queue()
        self.pending_jobs: deque[SoftmaxItem] = deque(i for i in items if i.mode == "stream")
        bfm.summary_hooks.append(self._on_summary)
        bfm.stream_end_hooks.append(self._on_stream_end)
        dog = Watchdog(dut.clock, 3000, probes={
            "scores taken": lambda: bfm.scores.sent, "summaries taken": lambda: bfm.summary.received,
            "stream commands taken": lambda: bfm.stream.sent, "probabilities taken": lambda: bfm.probs.received},
            context={"passes fed / summarized / streamed": lambda: (self.fed, self.summarized, self.streamed),
                     "busy, streaming": lambda: (int(dut.io_busy.value), int(dut.io_streaming.value)),
                     "seed": run_seed})
        streams = cocotb.start_soon(self._streams())
        sampler = cocotb.start_soon(self._sample())
        await self._feed(items)
        await wait_until(dut, lambda: self.summarized == self.total, 200 * (int(self.params["maxTokens"]) + 40),
                         "the last summary")
        await wait_until(dut, lambda: self.streamed == len([i for i in items if i.mode == "stream"]),
                         400 * (int(self.params["maxTokens"]) + 40), "the last stream")
        for _ in range(5):  # nothing more may come out
            await RisingEdge(dut.clock)
            assert not int(dut.io_summary_valid.value) and not int(dut.io_probs_valid.value), \
                "output after the last pass"
        assert not int(dut.io_busy.value) and not int(dut.io_streaming.value), "busy/streaming at the end"
        dog.stop()
        streams.cancel()
        sampler.cancel()
        assert not bfm.unexpected, f"unexpected output beats: {bfm.unexpected[:5]}"
        assert not self.violations, f"interface rules broken: {self.violations[:5]}"
        for item in items:
            self.env.requests.write(item)
            self.env.responses.write({"summary": bfm.summaries.get(item.index),
                                      "probs": bfm.probs_of.get(item.index, [])})


@test()
class SoftmaxBrokenModelTest(SoftmaxRandomTest):
    """Negative test: a model with R off by one must make the scoreboard fail."""

    requests = 20

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(SoftmaxScoreboard, SoftmaxRoundingScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()


@test()
class SoftmaxLatencyTest(UnitTest):
    """No stalls, N = maxTokens: cycles from the first score to the summary, and from the
    stream command to the last probability."""

    scoreboard = SoftmaxScoreboard
    coverage = SoftmaxCoverage

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, p = self.dut, self.params
        n = int(p["maxTokens"])
        bfm = SoftmaxBfm(self, 0.0, 0.0)
        item = SoftmaxItem(0, draw_scores(self.rng, n, int(p["maxHeadDim"]), "random"), 369, 20, "stream", p,
                           bank=1)
        bfm.load(item)
        t_sum = await wait_until(dut, lambda: item.index in bfm.summaries, 4 * n + 200, "summary")
        cocotb.start_soon(bfm.start_stream(item))
        t_end = await wait_until(dut, lambda: len(bfm.probs_of.get(item.index, [])) == n, 2 * n + 200,
                                 "probabilities")
        self.env.requests.write(item)
        self.env.responses.write({"summary": bfm.summaries[item.index], "probs": bfm.probs_of[item.index]})
        self.logger.info(f"N={n}: summary {t_sum} cycles after the first score was offered, "
                         f"last probability {t_end} cycles after the stream command was offered")
        assert t_sum <= 2 * n + 2 + 26 + 8, f"summary took {t_sum} cycles"
        beats = -(-n // bfm.lanes)
        assert t_end <= beats + 3, f"probabilities took {t_end} cycles for {beats} beats of {bfm.lanes}"
