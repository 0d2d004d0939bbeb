"""pyuvm testbench of ``Softmax`` (with its ``Reciprocal`` divider), reference
``workloads.golden.softmax_fixed``: the summary beat (pmax, E, R, N) and every p_j.

``SoftmaxRandomTest``: first directed passes whose ``t_j`` sweep 0..255 (every exp2
table entry; scale 1, shift 0), then random passes (300 in all) of random N (1 and
capacity included), score shapes (random, all equal, extremes of a maxHeadDim dot
product, narrow, ties) and (scale, shift); random stalls on the score input and on both
outputs; each pass is streamed, discarded while its summary is offered, or discarded
part-way through its probabilities. The next pass's scores are queued while a pass
streams (they must wait).
``SoftmaxLatencyTest``: no stalls, N = maxTokens; cycle counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from cocotb.triggers import RisingEdge
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, mask, scaled, wait_until
from workloads.golden import softmax_fixed
from workloads.params import from_dict

REQUESTS = scaled(300)


@dataclass
class SoftmaxItem:
    """One pass and what the test does with it: ``mode`` is ``stream`` (take all),
    ``summary`` (discard while the summary is offered) or ``mid`` (take ``take``
    probabilities, then discard)."""
    index: int
    scores: list[int]
    scale: int
    shift: int
    mode: str
    take: int
    params: dict[str, Any] = field(repr=False)


class SoftmaxScoreboard(ScoreboardBase):
    def predict(self, item: SoftmaxItem) -> dict[str, Any]:
        e, E, R, p = softmax_fixed(np.array(item.scores, dtype=np.int64), item.scale, item.shift,
                                   from_dict(item.params))
        n = len(item.scores)
        summary = None if item.mode == "summary" else \
            {"pmax": int(p.max()), "sumE": E, "recip": R, "n": n}
        probs = [{"p": int(x), "idx": j, "last": int(j == n - 1)} for j, x in enumerate(p)][:item.take]
        return {"summary": summary, "probs": probs}

    def describe(self, item: SoftmaxItem) -> str:
        return (f"pass {item.index} (N={len(item.scores)}, scale={item.scale}, shift={item.shift}, "
                f"{item.mode}) scores={item.scores}")


class SoftmaxRoundingScoreboard(SoftmaxScoreboard):
    """A wrong model for the negative test: R rounded up instead of floored."""

    def predict(self, item: SoftmaxItem) -> dict[str, Any]:
        want = super().predict(item)
        if want["summary"] is not None:
            want["summary"] = {**want["summary"], "recip": want["summary"]["recip"] + 1}
        return want


class SoftmaxCoverage(CoverageBase):
    bins = ("n1", "nCapacity", "allEqual", "extremeScores", "saturated", "discardAtSummary",
            "discardMidStream", "streamed", "shift0", "scale0", "lutEntry255")

    def sample(self, item: SoftmaxItem) -> Iterable[str]:
        s, n = item.scores, len(item.scores)
        dmax, cap = int(item.params["maxHeadDim"]), int(item.params["maxTokens"])
        e, _, _, _ = softmax_fixed(np.array(s, dtype=np.int64), item.scale, item.shift, from_dict(item.params))
        hits = {"stream": "streamed", "summary": "discardAtSummary", "mid": "discardMidStream"}[item.mode]
        cond = {"n1": n == 1, "nCapacity": n == cap, "allEqual": n > 1 and len(set(s)) == 1,
                "extremeScores": max(s) == dmax << 30 and min(s) < -(dmax << 29),
                "saturated": bool((e == 0).any()), "shift0": item.shift == 0, "scale0": item.scale == 0,
                "lutEntry255": item.scale == 1 and item.shift == 0 and min(s) == max(s) - 255}
        return [hits] + [b for b, c in cond.items() if c]


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
    if kind == "ties":
        vals = [rng.randint(-1000, 1000) for _ in range(3)]
        return [rng.choice(vals) for _ in range(n)]
    return [rng.randint(smin, smax) >> rng.randint(0, 30) for _ in range(n)]


class SoftmaxAgents:
    """Score source, summary and probability sinks with a take budget, discard pulse."""

    def __init__(self, test: UnitTest, idle: float, stall: float) -> None:
        dut = self.dut = test.dut
        self.stall = stall
        self.scores = StreamSource(dut, "io_scores", dut.clock, test.rng, idle)
        self.score_bits = len(dut.io_scores_bits_s)
        self.got_summary: list[dict[str, int]] = []
        self.got_probs: list[dict[str, int]] = []
        self.prob_budget = 0
        # discard may drop a presented beat: the stability check does not apply
        self.summary = StreamSink(dut, "io_summary", dut.clock, test.rng, 1.0, callback=self._on_summary,
                                  check_stable=False)
        self.probs = StreamSink(dut, "io_probs", dut.clock, test.rng, 1.0, callback=self._on_prob,
                                check_stable=False)
        dut.io_discard.value = 0

    def _on_summary(self, beat: dict[str, int]) -> None:
        self.got_summary.append(beat)
        self.summary.stall_prob = 1.0   # one summary per allowance

    def _on_prob(self, beat: dict[str, int]) -> None:
        self.got_probs.append(beat)
        self.prob_budget -= 1
        if self.prob_budget <= 0:
            self.probs.stall_prob = 1.0

    def allow_summary(self) -> None:
        self.summary.stall_prob = self.stall

    def allow_probs(self, n: int) -> None:
        self.prob_budget = n
        if n > 0:
            self.probs.stall_prob = self.stall

    def load(self, item: SoftmaxItem) -> None:
        self.dut.io_cfg_scoreScale.value = item.scale
        self.dut.io_cfg_scoreShift.value = item.shift
        for j, s in enumerate(item.scores):
            self.scores.send_nowait({"s": mask(s, self.score_bits), "last": int(j == len(item.scores) - 1)})

    async def pulse_discard(self) -> None:
        self.dut.io_discard.value = 1
        await RisingEdge(self.dut.clock)
        self.dut.io_discard.value = 0


@test()
class SoftmaxRandomTest(UnitTest):
    """Random passes, streamed or discarded, random stalls everywhere."""

    scoreboard = SoftmaxScoreboard
    coverage = SoftmaxCoverage
    requests = REQUESTS

    def make(self, r: int) -> SoftmaxItem:
        rng, p = self.rng, self.params
        cap, dmax = int(p["maxTokens"]), int(p["maxHeadDim"])
        per = max(1, cap - 1)
        if r * per < 256:  # directed first passes: t_j = 0..255 once each, every table entry
            fs = range(r * per + 1, min(256, (r + 1) * per + 1))
            return SoftmaxItem(r, [0] + [-f for f in fs], 1, 0, "stream", len(fs) + 1, p)
        n = rng.choice([1, cap, rng.randint(1, 16), rng.randint(1, cap)])
        scores = draw_scores(rng, n, dmax, rng.choice(["random", "equal", "extreme", "narrow", "ties"]))
        scale = rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF), 369])
        shift = rng.choice([0, 63, rng.randint(0, 63), rng.randint(20, 40)])
        mode = rng.choice(["stream", "stream", "stream", "summary", "mid"]) if n > 1 else \
            rng.choice(["stream", "summary"])
        take = {"stream": n, "summary": 0, "mid": rng.randint(0, n - 1) if n > 1 else 0}[mode]
        return SoftmaxItem(r, scores, scale, shift, mode, take, p)

    async def stimulus(self) -> None:
        dut = self.dut
        ag = SoftmaxAgents(self, 0.3, 0.3)
        item = self.make(0)
        ag.load(item)
        for r in range(self.requests):
            n = len(item.scores)
            self.env.requests.write(item)
            ag.got_summary, ag.got_probs = [], []
            what = f"pass {r} (N={n}, {item.mode})"
            if item.mode == "summary":
                await wait_until(dut, lambda: int(dut.io_summary_valid.value), 100 * (n + 40), f"summary of {what}")
                await ag.pulse_discard()
            else:
                ag.allow_summary()
                await wait_until(dut, lambda: len(ag.got_summary) == 1, 100 * (n + 40), f"summary of {what}")
            nxt = self.make(r + 1) if r + 1 < self.requests else None
            if nxt is not None:  # its scores wait at the input while this pass streams
                ag.load(nxt)
            if item.mode != "summary":
                ag.allow_probs(item.take)
                await wait_until(dut, lambda: len(ag.got_probs) == item.take, 100 * (n + 4), f"probabilities of {what}")
                if item.mode == "mid":
                    await RisingEdge(dut.clock)
                    await ag.pulse_discard()
            self.env.responses.write({"summary": ag.got_summary[0] if ag.got_summary else None,
                                      "probs": ag.got_probs})
            if nxt is not None:
                item = nxt
        await wait_until(dut, lambda: not int(dut.io_busy.value), 100, "idle at the end")
        ag.allow_summary()
        ag.allow_probs(1)
        for _ in range(5):  # nothing more may come out
            await RisingEdge(dut.clock)
            assert not int(dut.io_summary_valid.value) and not int(dut.io_probs_valid.value), \
                "output after the last pass"


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
    """No stalls, N = maxTokens: cycles to the summary and to the last probability."""

    scoreboard = SoftmaxScoreboard
    coverage = SoftmaxCoverage

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def stimulus(self) -> None:
        dut, p = self.dut, self.params
        n = int(p["maxTokens"])
        ag = SoftmaxAgents(self, 0.0, 0.0)
        item = SoftmaxItem(0, draw_scores(self.rng, n, int(p["maxHeadDim"]), "random"), 369, 20, "stream", n, p)
        self.env.requests.write(item)
        ag.allow_summary()
        ag.allow_probs(n)
        ag.load(item)
        t_sum = await wait_until(dut, lambda: len(ag.got_summary) == 1, 4 * n + 200, "summary")
        t_end = t_sum + await wait_until(dut, lambda: len(ag.got_probs) == n, 2 * n + 200, "probabilities")
        self.env.responses.write({"summary": ag.got_summary[0], "probs": ag.got_probs})
        self.logger.info(f"N={n}: summary {t_sum} cycles after the first score was offered, "
                         f"last probability at {t_end}")
        assert t_sum <= 2 * n + 2 + 26 + 8, f"summary took {t_sum} cycles"
        assert t_end - t_sum <= n + 3, f"probabilities took {t_end - t_sum} cycles"
