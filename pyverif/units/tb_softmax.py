"""Testbench of ``Softmax`` (with its ``Reciprocal`` divider) against
``workloads.golden.softmax_fixed``: the summary beat (pmax, E, R, N) and every p_j, with
random stalls on the score input and on both outputs, and the discard path."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge

from pyverif.units.env import load_params, make_rng, start, wait_until
from pyverif.units.streams import Coverage, Field, Scoreboard, StreamSink, StreamSource
from workloads.golden import softmax_fixed

REQUESTS = 300


def _scores(rng, n: int, p, kind: str) -> list[int]:
    """Scores reachable by a dot product of D = maxHeadDim 16-bit elements."""
    smax = p.max_head_dim * (1 << 30)                 # sum of (-2^15)^2
    smin = -p.max_head_dim * (1 << 15) * ((1 << 15) - 1)
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


class SoftmaxEnv:
    """Agents and scoreboards of one DUT."""

    def __init__(self, dut: SimHandleBase, p, rng, idle: float, stall: float) -> None:
        self.dut = dut
        self.summary_sb = Scoreboard("summary", dut._log)
        self.probs_sb = Scoreboard("probs", dut._log)
        self.scores = StreamSource(dut, "scores", [Field("s", signed=True), Field("last")], rng, idle=idle)
        self.summary = StreamSink(dut, "summary", [Field("pmax"), Field("sumE"), Field("recip"), Field("n")],
                                  rng, stall=stall, on_beat=self.summary_sb.observe)
        self.probs = StreamSink(dut, "probs", [Field("p"), Field("idx"), Field("last")], rng, stall=stall,
                                on_beat=self.probs_sb.observe)
        self.summary.budget = 0
        self.probs.budget = 0
        dut.io_discard.value = 0

    def load(self, r: int, scores: list[int], scale: int, shift: int, p) -> tuple[dict, list[dict]]:
        """Set the config and queue the scores of request ``r``; return the expected beats."""
        self.dut.io_cfg_scoreScale.value = scale
        self.dut.io_cfg_scoreShift.value = shift
        for j, s in enumerate(scores):
            self.scores.send({"s": s, "last": int(j == len(scores) - 1)})
        e, E, R, prob = softmax_fixed(np.array(scores, dtype=np.int64), scale, shift, p)
        summary = {"pmax": int(prob.max()), "sumE": E, "recip": R, "n": len(scores)}
        probs = [{"p": int(x), "idx": j, "last": int(j == len(scores) - 1)} for j, x in enumerate(prob)]
        return summary, probs, e

    async def pulse_discard(self) -> None:
        self.dut.io_discard.value = 1
        await RisingEdge(self.dut.clock)
        self.dut.io_discard.value = 0


@cocotb.test()
async def softmax_random(dut: SimHandleBase) -> None:
    """Random passes with discards (see :func:`random_passes`)."""
    await random_passes(dut)


async def random_passes(dut: SimHandleBase) -> None:
    """Random N, score shapes and (scale, shift); pass streamed, or discarded at the
    summary or part-way through the probabilities."""
    p = load_params()
    rng = make_rng("softmax_random")
    await start(dut)
    env = SoftmaxEnv(dut, p, rng, idle=0.3, stall=0.3)
    cov = Coverage(["n1", "nCapacity", "allEqual", "extremeScores", "saturated", "discardAtSummary",
                    "discardMidStream", "streamed", "shift0", "scale0"])

    def make(r: int):
        n = rng.choice([1, p.max_tokens, rng.randint(1, 16), rng.randint(1, p.max_tokens)])
        kind = rng.choice(["random", "equal", "extreme", "narrow", "ties"])
        scores = _scores(rng, n, p, kind)
        scale = rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF), 369])
        shift = rng.choice([0, 63, rng.randint(0, 63), rng.randint(20, 40)])
        summary, probs, e = env.load(r, scores, scale, shift, p)
        cov.hit("n1", n == 1)
        cov.hit("nCapacity", n == p.max_tokens)
        cov.hit("allEqual", n > 1 and len(set(scores)) == 1)
        cov.hit("extremeScores", max(scores) == p.max_head_dim << 30 and min(scores) < -(p.max_head_dim << 29))
        cov.hit("saturated", bool((e == 0).any()))
        cov.hit("shift0", shift == 0)
        cov.hit("scale0", scale == 0)
        return n, summary, probs

    pending = make(0)
    for r in range(REQUESTS):
        n, summary, probs = pending
        mode = rng.choice(["stream", "stream", "stream", "summary", "mid"]) if n > 1 else \
            rng.choice(["stream", "summary"])
        ctx = f"request {r} (N={n})"
        dut._log.debug(f"{ctx}: {mode}")
        if mode == "summary":
            await wait_until(dut, lambda: int(dut.io_summary_valid.value), 100 * (n + 40), f"summary of {ctx}")
            await env.pulse_discard()
            cov.hit("discardAtSummary")
            if r + 1 < REQUESTS:
                pending = make(r + 1)
            continue
        env.summary_sb.expect(summary, ctx)
        env.summary.budget = 1
        await wait_until(dut, lambda: not env.summary_sb.pending, 100 * (n + 40), f"summary of {ctx}")
        if r + 1 < REQUESTS:   # the next pass's scores wait at the input meanwhile
            pending = make(r + 1)
        take = n if mode == "stream" else rng.randint(0, n - 1)
        for beat in probs[:take]:
            env.probs_sb.expect(beat, ctx)
        env.probs.budget = take
        await wait_until(dut, lambda: not env.probs_sb.pending, 100 * (n + 4), f"probabilities of {ctx}")
        if mode == "mid":
            await RisingEdge(dut.clock)
            await env.pulse_discard()
            cov.hit("discardMidStream")
        else:
            cov.hit("streamed")
    await wait_until(dut, lambda: not int(dut.io_busy.value), 100, "idle at the end")
    for _ in range(5):  # nothing more may come out
        await RisingEdge(dut.clock)
        assert not int(dut.io_summary_valid.value) and not int(dut.io_probs_valid.value), "output after the end"
    env.summary_sb.check()
    env.probs_sb.check()
    env.probs_sb.self_test({"p": 65536, "idx": 0, "last": 1})
    dut._log.info(f"{REQUESTS} passes: {env.summary_sb.matched} summaries, {env.probs_sb.matched} "
                  f"probabilities checked; coverage: {cov}")
    cov.check()


@cocotb.test()
async def softmax_latency(dut: SimHandleBase) -> None:
    """No stalls, N = maxTokens: cycles to the summary and to the last probability."""
    p = load_params()
    rng = make_rng("softmax_latency")
    await start(dut)
    env = SoftmaxEnv(dut, p, rng, idle=0.0, stall=0.0)
    n = p.max_tokens
    summary, probs, _ = env.load(0, _scores(rng, n, p, "random"), 369, 20, p)
    env.summary_sb.expect(summary, "latency pass")
    for b in probs:
        env.probs_sb.expect(b, "latency pass")
    env.summary.budget = 1
    env.probs.budget = n
    t_sum = await wait_until(dut, lambda: not env.summary_sb.pending, 1000, "summary")
    t_end = t_sum + await wait_until(dut, lambda: not env.probs_sb.pending, 1000, "probabilities")
    env.summary_sb.check()
    env.probs_sb.check()
    dut._log.info(f"N={n}: summary {t_sum} cycles after the first score was offered, "
                  f"last probability at {t_end}")
    assert t_sum <= n + n + 2 + 26 + 8, f"summary took {t_sum} cycles"
    assert t_end - t_sum <= n + 3, f"probabilities took {t_end - t_sum} cycles"
