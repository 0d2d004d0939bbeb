"""Testbench of ``DotProductArray`` against ``workloads.golden.dot_scores``."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge

from pyverif.units.env import load_params, make_rng, start, wait_until
from pyverif.units.streams import Coverage, Field, Scoreboard, StreamSink, StreamSource
from workloads.golden import dot_scores

REQUESTS = 300
MIN16, MAX16 = -(1 << 15), (1 << 15) - 1


def _vec(rng, n: int, extreme: float) -> list[int]:
    return [rng.choice([MIN16, MAX16]) if rng.random() < extreme else rng.randint(MIN16, MAX16)
            for _ in range(n)]


def _agents(dut, p, rng, idle: float, stall: float, sb: Scoreboard):
    dmax = p.max_head_dim
    query = StreamSource(dut, "query", [Field("q", True, dmax), Field("d")], rng, idle=idle)
    keys = StreamSource(dut, "keys", [Field("k", True, dmax), Field("last")], rng, idle=idle)
    scores = StreamSink(dut, "scores", [Field("s", signed=True), Field("last")], rng, stall=stall,
                        on_beat=sb.observe)
    return query, keys, scores


@cocotb.test()
async def dot_random(dut: SimHandleBase) -> None:
    """Random D, queries and keys (with extremes), random stalls both sides."""
    p = load_params()
    rng = make_rng("dot_random")
    await start(dut)
    sb = Scoreboard("scores", dut._log)
    query, keys, _ = _agents(dut, p, rng, idle=0.3, stall=0.3, sb=sb)
    dmax = p.max_head_dim
    cov = Coverage(["d1", "dmax", "maxPositiveProduct", "maxNegativeProduct", "n1", "allExtreme"])
    for r in range(REQUESTS):
        d = rng.choice([1, dmax, rng.randint(1, dmax)])
        n = rng.choice([1, rng.randint(1, 12)])
        extreme = rng.choice([0.0, 0.3, 1.0])
        q = _vec(rng, dmax, extreme)          # elements >= d: garbage the array must ignore
        k = [_vec(rng, dmax, extreme) for _ in range(n)]
        if r % 25 == 0:  # the largest score: D = maxHeadDim products of (-2^15)^2
            d, q, k[0] = dmax, [MIN16] * dmax, [MIN16] * dmax
        want = dot_scores(np.array(q[:d]), np.array([row[:d] for row in k]))
        for j in range(n):
            sb.expect({"s": int(want[j]), "last": int(j == n - 1)}, f"request {r} key {j} (D={d})")
        prods = [q[i] * row[i] for row in k for i in range(d)]
        cov.hit("d1", d == 1)
        cov.hit("dmax", d == dmax)
        cov.hit("maxPositiveProduct", (1 << 30) in prods)
        cov.hit("maxNegativeProduct", -(MAX16 * (1 << 15)) in prods)
        cov.hit("n1", n == 1)
        cov.hit("allExtreme", d == dmax and all(x == MIN16 for x in q[:d]) and
                any(all(x == MIN16 for x in row[:d]) for row in k))
        # the query may only change between requests: wait until the previous keys are in
        await wait_until(dut, lambda: keys.idle_now, 100 * dmax, f"keys of request {r - 1} accepted")
        sent = query.sent
        query.send({"q": q, "d": d})
        await wait_until(dut, lambda: query.sent > sent, 1000, f"query of request {r} accepted")
        for j in range(n):
            keys.send({"k": k[j], "last": int(j == n - 1)})
    await wait_until(dut, lambda: not sb.pending, 10000, "all scores")
    sb.check()
    sb.self_test({"s": 5, "last": 1})
    dut._log.info(f"{REQUESTS} requests, {sb.matched} scores checked; coverage: {cov}")
    cov.check()


@cocotb.test()
async def dot_throughput(dut: SimHandleBase) -> None:
    """No stalls: keys stream at one per ceil(D / dotLanes) cycles."""
    p = load_params()
    rng = make_rng("dot_throughput")
    await start(dut)
    sb = Scoreboard("scores", dut._log)
    query, keys, _ = _agents(dut, p, rng, idle=0.0, stall=0.0, sb=sb)
    dmax = p.max_head_dim
    n = 200
    q = _vec(rng, dmax, 0.1)
    k = [_vec(rng, dmax, 0.1) for _ in range(n)]
    want = dot_scores(np.array(q), np.array(k))
    for j in range(n):
        sb.expect({"s": int(want[j]), "last": int(j == n - 1)}, f"key {j}")
    query.send({"q": q, "d": dmax})
    await wait_until(dut, lambda: query.sent == 1, 100, "query accepted")
    for j in range(n):
        keys.send({"k": k[j], "last": int(j == n - 1)})
    cycles = await wait_until(dut, lambda: not sb.pending, 100 * n, "all scores")
    sb.check()
    lanes = min(p.dot_lanes, dmax)
    per_key = -(-dmax // lanes)
    dut._log.info(f"{n} keys (D={dmax}, dotLanes={p.dot_lanes}) in {cycles} cycles")
    assert cycles <= n * per_key + 4, f"{n} keys took {cycles} cycles, expected <= {n * per_key + 4}"
