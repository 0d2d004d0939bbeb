"""Testbench of ``ValueAccumulator`` against ``workloads.golden.weighted_sum`` and
``workloads.golden.head_importance_increment``."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase

from pyverif.units.env import load_params, make_rng, start, wait_until
from pyverif.units.streams import Coverage, Field, Scoreboard, StreamSink, StreamSource
from workloads.golden import head_importance_increment, weighted_sum

REQUESTS = 300
MIN16, MAX16 = -(1 << 15), (1 << 15) - 1


@cocotb.test()
async def value_random(dut: SimHandleBase) -> None:
    """Random D, M (0 included), probabilities and values with extremes; random stalls."""
    p = load_params()
    rng = make_rng("value_random")
    await start(dut)
    dmax = p.max_head_dim
    sb = Scoreboard("result", dut._log)
    rows = StreamSource(dut, "rows", [Field("p"), Field("v", True, dmax), Field("last"), Field("empty")],
                        rng, idle=0.3)
    StreamSink(dut, "result", [Field("o", True, dmax), Field("headImp")], rng, stall=0.3, on_beat=sb.observe)
    cov = Coverage(["m0", "m1", "mMax", "d1", "dmax", "maxMagnitude", "negative", "headImpNonZero"])
    pone = 1 << p.prob_frac_bits
    for r in range(REQUESTS):
        d = rng.choice([1, dmax, rng.randint(1, dmax)])
        m = rng.choice([0, 1, p.max_tokens, rng.randint(1, 12)])
        extreme = rng.random() < 0.2
        probs = [pone if extreme else rng.choice([0, pone, rng.randint(0, pone)]) for _ in range(m)]
        vals = [[rng.choice([MIN16, MAX16]) if extreme else rng.randint(MIN16, MAX16) for _ in range(dmax)]
                for _ in range(m)]
        if m:
            o = weighted_sum(np.array(probs), np.array([row[:d] for row in vals]))
        else:
            o = np.zeros(d, dtype=np.int64)
        full = [int(x) for x in o] + [0] * (dmax - d)
        sb.expect({"o": full, "headImp": head_importance_increment(o)}, f"request {r} (D={d}, M={m})")
        cov.hit("m0", m == 0)
        cov.hit("m1", m == 1)
        cov.hit("mMax", m == p.max_tokens)
        cov.hit("d1", d == 1)
        cov.hit("dmax", d == dmax)
        cov.hit("maxMagnitude", m == p.max_tokens and extreme and d == dmax)
        cov.hit("negative", any(x < 0 for x in full))
        cov.hit("headImpNonZero", head_importance_increment(o) > 0)
        # d is a per-request input: change it only once the previous result is out
        await wait_until(dut, lambda: rows.idle_now and len(sb.pending) <= 1, 100 * (p.max_tokens + 8),
                         f"result of request {r - 1}")
        dut.io_d.value = d
        if m == 0:
            rows.send({"p": 0, "v": [0] * dmax, "last": 1, "empty": 1})
        for j in range(m):
            rows.send({"p": probs[j], "v": vals[j], "last": int(j == m - 1), "empty": 0})
    await wait_until(dut, lambda: not sb.pending, 100 * (p.max_tokens + 8), "the last result")
    sb.check()
    sb.self_test({"o": [1] * dmax, "headImp": 3})
    dut._log.info(f"{REQUESTS} selections, {sb.matched} results checked; coverage: {cov}")
    cov.check()


@cocotb.test()
async def value_throughput(dut: SimHandleBase) -> None:
    """No stalls: rows stream at one per ceil(D / dotLanes) cycles."""
    p = load_params()
    rng = make_rng("value_throughput")
    await start(dut)
    dmax = p.max_head_dim
    sb = Scoreboard("result", dut._log)
    rows = StreamSource(dut, "rows", [Field("p"), Field("v", True, dmax), Field("last"), Field("empty")], rng)
    StreamSink(dut, "result", [Field("o", True, dmax), Field("headImp")], rng, on_beat=sb.observe)
    m = p.max_tokens
    probs = [rng.randint(0, 1 << 16) for _ in range(m)]
    vals = [[rng.randint(MIN16, MAX16) for _ in range(dmax)] for _ in range(m)]
    o = weighted_sum(np.array(probs), np.array(vals))
    sb.expect({"o": [int(x) for x in o], "headImp": head_importance_increment(o)}, "throughput selection")
    dut.io_d.value = dmax
    for j in range(m):
        rows.send({"p": probs[j], "v": vals[j], "last": int(j == m - 1), "empty": 0})
    cycles = await wait_until(dut, lambda: not sb.pending, 100 * m, "the result")
    sb.check()
    per_row = -(-dmax // min(p.dot_lanes, dmax))
    dut._log.info(f"M={m} rows (D={dmax}) to result in {cycles} cycles")
    assert cycles <= m * per_row + 6, f"{m} rows took {cycles} cycles"
