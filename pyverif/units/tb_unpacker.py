"""Testbenches of ``PlaneUnpacker`` (SPEC 4 packing) and ``KeyCombine`` (SPEC 1).

The reference is the memory-image writer's packer (``workloads.memimage.pack_rows``) for
the stimulus and ``workloads.memimage.unpack_rows`` for the expected elements: the RTL
must read back exactly what the image writer wrote.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from pyverif.units.env import load_params, make_rng, start, wait_until
from pyverif.units.streams import Coverage, Field, StreamSink, StreamSource
from workloads.memimage import element_range, pack_rows, stride, unpack_rows

REQUESTS_PER_MODE = 12  # per (b, signed): 16 * 2 * 12 = 384 rows


def _random_row(rng, d: int, bits: int, signed: bool) -> np.ndarray:
    lo, hi = element_range(bits, signed)
    extremes = [lo, hi, 0, -1 if signed else 1]
    vals = [rng.choice(extremes) if rng.random() < 0.25 else rng.randint(lo, hi) for _ in range(d)]
    return np.array([vals], dtype=np.int64)


@cocotb.test()
async def unpack_random(dut: SimHandleBase) -> None:
    """Every b in 1..16, signed and unsigned, random D, random stalls on both sides."""
    p = load_params()
    rng = make_rng("unpack_random")
    await start(dut)
    src = StreamSource(dut, "in", [Field("row"), Field("bits"), Field("isSigned")], rng, idle=0.3)
    sink = StreamSink(dut, "out", [Field("", signed=True, lanes=p.max_head_dim)], rng, stall=0.3)
    cov = Coverage([f"b{b}{'s' if s else 'u'}" for b in range(1, 17) for s in (True, False)]
                   + ["d1", "dmax", "fullRow"])
    expected = []
    modes = [(b, s) for b in range(1, 17) for s in (True, False)] * REQUESTS_PER_MODE
    rng.shuffle(modes)
    for bits, signed in modes:
        d = rng.choice([1, p.max_head_dim, rng.randint(1, p.max_head_dim)])
        vals = _random_row(rng, d, bits, signed)
        row_bytes = stride(d, bits, p.burst_bytes)
        packed = pack_rows(vals, bits, signed, row_bytes)
        # bytes past the row's stride are whatever the bus carries: fill with noise that
        # must not leak into elements < D
        bus = bytearray(rng.randbytes(p.max_row_bytes))
        bus[:row_bytes] = packed[0].tobytes()
        want = unpack_rows(np.frombuffer(bytes(bus[:row_bytes]), dtype=np.uint8)[None, :], d, bits, signed)[0]
        src.send({"row": int.from_bytes(bus, "little"), "bits": bits, "isSigned": int(signed)})
        expected.append((bits, signed, d, want))
        cov.hit(f"b{bits}{'s' if signed else 'u'}")
        cov.hit("d1", d == 1)
        cov.hit("dmax", d == p.max_head_dim)
        cov.hit("fullRow", d * bits == p.max_row_bytes * 8)
    await wait_until(dut, lambda: len(sink.beats) == len(expected), 20 * len(expected), "all unpacked rows")
    errors = 0
    for n, ((bits, signed, d, want), beat) in enumerate(zip(expected, sink.beats)):
        got = beat[""][:d]
        if bits == 16 and not signed:  # a 16-bit output lane holds the raw pattern
            want = [int(w) - (1 << 16) if w >= (1 << 15) else int(w) for w in want]
        if [int(w) for w in want] != got:
            errors += 1
            dut._log.error(f"row {n} (b={bits}, {'signed' if signed else 'unsigned'}, D={d}): "
                           f"expected {[int(w) for w in want]}, got {got}")
    assert errors == 0, f"{errors} of {len(expected)} rows mismatched"
    dut._log.info(f"{len(expected)} rows checked; coverage: {cov}")
    cov.check()
