"""cocotb testbench of ``SimDramChannel``: the Chisel wrapper, the BlackBox resource and
the DPI C++ together.

Random burst-aligned reads of the channel (some beyond the memory image) go in with
random idle cycles; responses are taken with random back-pressure and each one is
checked, in request order, against the image file (``SPATTEN_DRAM_IMAGE``, the same
file the simulator got as ``+dram_image``). ``SPATTEN_DRAM_REQUESTS`` sets the count.
"""
from __future__ import annotations

import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from pyverif.common.params import hw_params
from pyverif.common.seed import reproduce_hint, rng_for, run_seed
from pyverif.common.stream import StreamSink, StreamSource


def expected_burst(image: bytes, addr: int, burst: int) -> int:
    """The burst at ``addr`` as the port returns it: byte 0 in bits [7:0], zero beyond the image."""
    chunk = image[addr:addr + burst]
    return int.from_bytes(chunk + bytes(burst - len(chunk)), "little")


@cocotb.test()
async def dram_channel_returns_image_in_order(dut) -> None:
    """Every response equals the image's burst at the address of the matching request."""
    p = hw_params().to_dict()
    seed = run_seed()
    rng = rng_for("dram_channel", seed)
    burst, channels = p["burstBytes"], p["numChannels"]
    image = Path(os.environ["SPATTEN_DRAM_IMAGE"]).read_bytes()
    count = int(os.environ.get("SPATTEN_DRAM_REQUESTS", "300"))
    cocotb.start_soon(Clock(dut.clock, 1, unit="ns").start())
    dut.reset.value = 1
    src = StreamSource(dut, "io_req", dut.clock, rng, idle_prob=0.3)
    sink = StreamSink(dut, "io_resp", dut.clock, rng, stall_prob=0.3)
    await ClockCycles(dut.clock, 5)
    dut.reset.value = 0
    await RisingEdge(dut.clock)
    # Channel 0's bursts: a mix of streaming runs and random jumps, some past the image
    # (those read zeros). The first run starts inside the image, so that every run checks
    # image data (the negative test relies on it: past the image both images read zeros).
    span = 2 * len(image) // burst // channels
    addrs: list[int] = []
    while len(addrs) < count:
        start = rng.randrange(span if addrs else span // 2)
        for k in range(rng.choice([1, 1, 4, 16])):
            addrs.append(((start + k) * channels) * burst)
    addrs = addrs[:count]
    for a in addrs:
        src.send_nowait({"bits": a})
    for i, a in enumerate(addrs):
        beat = await with_timeout(sink.recv(), 200 * count + 10000, "ns")
        want = expected_burst(image, a, burst)
        assert beat["bits"] == want, (f"response {i} (address {a:#x}): expected {want:#x}, got "
                                      f"{beat['bits']:#x}; {reproduce_hint(seed)}")
    await ClockCycles(dut.clock, 20)
    assert sink.received == count, f"{sink.received - count} responses more than requests"
