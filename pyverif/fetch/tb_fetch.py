# Over 450 lines on purpose: one pyuvm testbench (items, BFM, agents, scoreboard, coverage, tests) reads best in one file.
"""pyuvm testbench of the DRAM row fetcher ``RowFetcher`` and, through the test top
``FetchPair`` (two fetchers behind one ``DramArbiter``), of the arbiter.

Layers, per client (one for ``RowFetcher``, two for ``FetchPair``): :class:`FetchRowItem`
items made by sequences (random plane base, token index and burst count per row; the
bursts a row covers get random bytes in the memory image the first time) ->
:class:`FetchDriver` (``rows`` stream: beats of 1..keysPerCycle rows, random idle) -> DUT
-> :class:`FetchMonitor` (``out`` stream of row beats, random ``maxRows`` and
back-pressure with long blocked windows) -> :class:`FetchScoreboard` (rebuilds every row
from the memory image, bursts past its end zero; rows in order per client) and
:class:`FetchCoverage`.

Shared: the DRAM ports are served by :class:`pyverif.top.memory_agent.DramAgent` (in-order
responses per channel, random latency, request back-pressure, address checks: aligned, in
range, on its channel). :class:`FetchPortChecker` samples every cycle: per client and
channel, requests accepted minus responses never exceeds ``maxInflight`` (the credits);
the responses are never back-pressured; ``idle`` implies nothing in flight; a stalled
row beat keeps the rows it offers (its ``count`` may only grow, up to ``maxRows``);
and for ``FetchPair`` every client request is passed to DRAM in the same cycle and every
DRAM response goes to the client whose request it answers (a FIFO of client ids per
channel). A :class:`pyverif.common.watchdog.Watchdog` names the stalled stream on a hang.

Tests (run them through ``pyverif/fetch/test_fetch.py``):

- ``FetchRandomTest``: ``FETCH_ROWS`` (default 400) random rows per client, random stalls
  everywhere; every coverage bin must be hit (bins that cannot occur on the preset, e.g.
  channel wrap-around with one channel, are not listed).
- ``FetchThroughputTest`` (``RowFetcher`` only): no stalls, a fixed 8-cycle memory, rows of
  ``maxRowBursts`` bursts: at least 90% of ``W = min(numChannels, keysPerCycle *
  maxRowBursts)`` bursts a cycle.
- ``FetchRandomRowsTest`` (``RowFetcher`` only): no stalls, a fixed 8-cycle memory, full
  beats of rows of ``ROW_BURSTS`` (default 2) bursts at random token ids (channel
  collisions): reports rows a cycle.
- ``FetchBrokenModelTest``: a negative test. A factory override swaps in a model that
  reads the neighbouring token's row; the run must fail in the scoreboard.
"""

from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge
from pyuvm import (ConfigDB, test, uvm_agent, uvm_analysis_port, uvm_component,
                   uvm_driver, uvm_env, uvm_factory, uvm_monitor, uvm_sequence, uvm_sequence_item,
                   uvm_sequencer, uvm_test)

from pyverif.common.params import hw_params
from pyverif.common.seed import reproduce_hint, rng_for, run_seed
from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase, config, write_report
from pyverif.common.watchdog import Watchdog
from pyverif.top.memory_agent import DramAgent
from spatten.contract.memimage import MemoryImage
from spatten.contract.params import HwParams

CLOCK_NS = 1
INDEX_MAX = (1 << 16) - 1     # FetchRow.index is a 16-bit token id


def width(p: HwParams) -> int:
    """``W``: bursts a fetcher can stream a cycle on a linear fetch of whole rows (one a
    channel, ``keysPerCycle`` rows a beat)."""
    return min(p.num_channels, p.keys_per_cycle * (p.max_row_bytes // p.burst_bytes))


def _hex(x: int) -> str:
    s = f"{x:x}"
    return f"0x{s[:6]}..{s[-6:]}" if len(s) > 14 else f"0x{s}"


# ------------------------------------------------------------------------------ memory


class FetchMemory:
    """The DRAM contents: a :class:`spatten.contract.memimage.MemoryImage` whose bursts get random
    bytes the first time a row covers them and are never rewritten (so a burst reads the
    same whenever it is requested), and the plane bases rows are drawn from: the bottom
    of memory, bases on odd bursts (rows that start off channel 0), random ones, and the
    top, where a row of token 0xFFFF with ``maxRowBursts`` bursts ends at the last byte."""

    def __init__(self, p: HwParams, rng: random.Random) -> None:
        self.p = p
        self.rng = rng
        self.img = MemoryImage.for_params(p)
        self.written: set[int] = set()
        bb = p.burst_bytes
        self.max_row_bursts = p.max_row_bytes // bb
        self.top = (1 << p.dram_addr_bits) - (INDEX_MAX + 1) * self.max_row_bursts * bb
        bursts = self.top // bb
        self.bases = sorted({0, bb, 3 * bb, self.top,
                             *(rng.randrange(bursts) * bb for _ in range(3))})

    def touch(self, item: "FetchRowItem") -> None:
        """Give the bursts of ``item`` random contents (once)."""
        for b in item.bursts(self.p.burst_bytes):
            if b not in self.written:
                self.written.add(b)
                self.img.write(b * self.p.burst_bytes, self.rng.randbytes(self.p.burst_bytes))

    def burst(self, b: int) -> int:
        """Burst number ``b`` as the DRAM port carries it (byte 0 in bits [7:0])."""
        return int.from_bytes(self.img.read(b * self.p.burst_bytes, self.p.burst_bytes), "little")


# ------------------------------------------------------------------------------ items


class FetchRowItem(uvm_sequence_item):
    """One row request of one client: ``row_bursts`` bursts from byte address
    ``base + index * row_bursts * burstBytes``."""

    def __init__(self, name: str = "row", client: int = 0, index: int = 0, base: int = 0,
                 row_bursts: int = 1) -> None:
        super().__init__(name)
        self.client = client
        self.index = index
        self.base = base
        self.row_bursts = row_bursts
        self.seq = -1      # place in its client's row stream, set by the driver

    def first_burst(self, bb: int) -> int:
        return self.base // bb + self.index * self.row_bursts

    def bursts(self, bb: int) -> range:
        b0 = self.first_burst(bb)
        return range(b0, b0 + self.row_bursts)

    def randomize(self, rng: random.Random, mem: FetchMemory, prev: "FetchRowItem | None") -> None:
        """Corner values weighted up: 0, 1 and ``maxRowBursts`` bursts; token 0, 0xFFFF,
        small, random and the previous token + 1 (a linear fetch); the previous row's base
        or another."""
        mrb = mem.max_row_bursts
        r = rng.random()
        self.row_bursts = 0 if r < 0.04 else 1 if r < 0.35 else mrb if r < 0.7 else rng.randint(1, mrb)
        same = prev is not None and rng.random() < 0.5
        self.base = prev.base if same else rng.choice(mem.bases)
        kind = rng.random()
        if same and kind < 0.25 and prev.index < INDEX_MAX:
            self.index, self.row_bursts = prev.index + 1, prev.row_bursts
        elif kind < 0.35:
            self.index = rng.choice([0, INDEX_MAX])
        elif kind < 0.6:
            self.index = rng.randint(0, 63)
        else:
            self.index = rng.randint(0, INDEX_MAX)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FetchRowItem) and (self.client, self.index, self.base, self.row_bursts) == \
            (other.client, other.index, other.base, other.row_bursts)

    def __str__(self) -> str:
        return (f"client {self.client} row #{self.seq}: index {self.index} base 0x{self.base:x} "
                f"rowBursts {self.row_bursts}")


@dataclass
class FetchedRow:
    """What one client delivered for one row: the row's bits (burst ``b`` in bits
    ``[b * burstBits, (b + 1) * burstBits)``, bursts past the row's end zero)."""

    client: int
    data: int = 0

    def __str__(self) -> str:
        return f"client {self.client} row {_hex(self.data)}"


@dataclass
class FetchEvent:
    """A cycle-level coverage event from :class:`FetchPortChecker`."""

    name: str


# ------------------------------------------------------------------------------ sequences


class FetchRandomSeq(uvm_sequence):
    """For one client: corner rows (the last row of the address space, the first row of
    memory, a row of 0 bursts, a linear run), then random rows (see
    :meth:`FetchRowItem.randomize`), ``ROWS`` in all."""

    def __init__(self, name: str = "random", client: int = 0) -> None:
        super().__init__(name)
        self.client = client

    def corners(self, mem: FetchMemory) -> list[tuple[int, int, int]]:
        """(index, base, rowBursts) of the corner rows."""
        mrb, bb = mem.max_row_bursts, mem.p.burst_bytes
        return [(INDEX_MAX - 1, mem.top, mrb), (INDEX_MAX, mem.top, mrb), (0, 0, 1), (0, 0, 0),
                (0, bb, mrb), (1, bb, mrb), (2, bb, mrb), (INDEX_MAX, mem.top, 1)]

    async def body(self) -> None:
        bfm: FetchBfm = ConfigDB().get(None, "", "BFM")
        rng = rng_for(f"rows{self.client}")
        corners = self.corners(bfm.mem)
        prev = None
        for r in range(config("ROWS", 400)):
            item = FetchRowItem("row", self.client)
            await self.start_item(item)
            if r < len(corners):
                item.index, item.base, item.row_bursts = corners[r]
            else:
                item.randomize(rng, bfm.mem, prev)
            bfm.mem.touch(item)
            await self.finish_item(item)
            prev = item


class FetchStreamSeq(FetchRandomSeq):
    """A linear fetch: ``ROWS`` consecutive rows of ``maxRowBursts`` bursts from one base."""

    async def body(self) -> None:
        bfm: FetchBfm = ConfigDB().get(None, "", "BFM")
        base = bfm.mem.bases[1]
        for r in range(config("ROWS", 400)):
            item = FetchRowItem("row", self.client, r, base, bfm.mem.max_row_bursts)
            await self.start_item(item)
            bfm.mem.touch(item)
            await self.finish_item(item)


# ------------------------------------------------------------------------------ BFM, driver, monitor


class FetchBfm:
    """Clock, reset and the stream agents of every client, plus the DRAM agent.

    Signal names: ``RowFetcher`` has ``io_rows``, ``io_out``, ``io_maxRows``,
    ``io_status_*``, ``io_idle``; ``FetchPair`` the same with ``_<client>`` after the port name, and
    ``io_probe_<client>_<channel>_*``. Both have ``io_dram_<channel>_*``."""

    def __init__(self, dut: SimHandleBase, params: HwParams, knobs: "FetchRandomTest") -> None:
        self.dut = dut
        self.p = params
        self.knobs = knobs
        self.pair = hasattr(dut, "io_rows_0_valid")
        self.clients = 2 if self.pair else 1
        self.width = width(params)
        self.mem = FetchMemory(params, rng_for("memory"))
        self.reset_done = Event()
        self.rows: list[StreamSource] = []
        self.groups: list[StreamSink] = []
        self.dram: DramAgent | None = None
        self.k = params.keys_per_cycle
        self.sent_rows = [0] * self.clients
        self.sent_bursts = [0] * self.clients
        self.nonempty_rows = [0] * self.clients
        self.max_rows_free = [Event() for _ in range(self.clients)]  # see _blocker

    def port(self, name: str, client: int) -> str:
        return f"io_{name}_{client}" if self.pair else f"io_{name}"

    def status(self, client: int) -> dict[str, int]:
        pre = self.port("status", client)
        return {k: int(getattr(self.dut, f"{pre}_{k}").value) for k in ("issued", "delivered", "inflight")}

    def idle(self, client: int) -> int:
        return int(getattr(self.dut, self.port("idle", client)).value)

    async def reset(self) -> None:
        d, k = self.dut, self.knobs
        Clock(d.clock, CLOCK_NS, unit="ns").start()
        d.reset.value = 1
        for c in range(self.clients):
            getattr(d, self.port("rows", c) + "_valid").value = 0
            getattr(d, self.port("out", c) + "_ready").value = 0
            getattr(d, self.port("maxRows", c)).value = self.k
        await ClockCycles(d.clock, 4)
        d.reset.value = 0
        await RisingEdge(d.clock)
        for c in range(self.clients):
            self.rows.append(StreamSource(d, self.port("rows", c), d.clock, rng_for(f"rows-src{c}"), k.idle_prob))
            # stability of the meaningful fields is checked by FetchPortChecker (lanes past
            # `count` are don't-care and may change)
            self.groups.append(StreamSink(d, self.port("out", c), d.clock, rng_for(f"groups{c}"),
                                          k.stall_prob, check_stable=False))
            cocotb.start_soon(self._blocker(c, rng_for(f"block{c}")))
            if k.vary_max_rows:
                cocotb.start_soon(self._max_rows(c, rng_for(f"maxrows{c}")))
        self.dram = DramAgent(d, d.clock, self.p, self.mem.img, rng_for("dram"), latency=k.latency,
                              req_stall=k.req_stall, resp_gap=k.resp_gap,
                              queue_limit=self.clients * self.p.max_inflight)
        self.reset_done.set()

    async def _blocker(self, client: int, rng: random.Random) -> None:
        """Now and then hold ``groups`` blocked for a while (the fetcher's credits run out:
        a window lasts long enough for ``maxInflight`` requests a channel to be issued).
        Every run has one window early; ``maxRows`` stays at ``keysPerCycle`` (its value
        from reset) until the rows piled up in it have left, so that some leave as beats of
        2+ rows (``beatOutMulti`` whatever the seed); then :meth:`_max_rows` varies it."""
        k = self.knobs
        sink = self.groups[client]
        cap = self.p.max_inflight
        first = rng.randint(30, 200)
        while k.block_prob > 0:
            await RisingEdge(self.dut.clock)
            first -= 1
            if first == 0 or rng.random() < k.block_prob:
                sink.stall_prob = 1.0
                await ClockCycles(self.dut.clock, rng.randint(cap, 4 * cap + 100))
                sink.stall_prob = k.stall_prob
                if first == 0:
                    cocotb.start_soon(self._release_max_rows(client, 4 * cap + 100))

    async def _release_max_rows(self, client: int, cycles: int) -> None:
        await ClockCycles(self.dut.clock, cycles)
        self.max_rows_free[client].set()

    async def _max_rows(self, client: int, rng: random.Random) -> None:
        """``maxRows`` changes at random, only between beats (right after a handshake or
        while nothing is offered), once the first blocked window has drained."""
        sig = getattr(self.dut, self.port("maxRows", client))
        v = getattr(self.dut, self.port("out", client) + "_valid")
        if self.knobs.block_prob > 0:
            await self.max_rows_free[client].wait()
        while True:
            await RisingEdge(self.dut.clock)
            if rng.random() < 0.05 and not int(v.value):
                sig.value = rng.randint(1, self.k)

    def expect_row(self, item: FetchRowItem) -> None:
        """Count a row sent."""
        c = item.client
        self.sent_rows[c] += 1
        self.sent_bursts[c] += item.row_bursts
        if item.row_bursts:
            self.nonempty_rows[c] += 1


class FetchDriver(uvm_driver):
    """Sends rows on ``rows`` in beats of 1..keysPerCycle rows (full beats weighted up;
    keeping up to two beats queued, so beats can go back to back), with now and then a
    longer idle gap; publishes each row."""

    client = 0

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.ev = uvm_analysis_port("ev", self)

    async def run_phase(self) -> None:
        bfm: FetchBfm = ConfigDB().get(self, "", "BFM")
        rng = rng_for(f"driver{self.client}")
        await bfm.reset_done.wait()
        src = bfm.rows[self.client]
        left = config("ROWS", 400)
        while left:
            want = min(left, bfm.k if rng.random() < 0.5 or bfm.knobs.idle_prob == 0 else rng.randint(1, bfm.k))
            items = []
            for _ in range(want):
                item = await self.seq_item_port.get_next_item()
                item.seq = bfm.sent_rows[self.client] + len(items)
                items.append(item)
                self.seq_item_port.item_done()
            left -= want
            if bfm.knobs.idle_prob > 0 and rng.random() < 0.03:
                await ClockCycles(bfm.dut.clock, rng.randint(5, 60))
            while src.pending >= 2:
                await RisingEdge(bfm.dut.clock)
            beat = {"count": len(items)}
            for i in range(bfm.k):
                it = items[i] if i < len(items) else items[0]  # lanes past count: don't care
                beat.update({f"rows_{i}_index": it.index, f"rows_{i}_base": it.base,
                             f"rows_{i}_rowBursts": it.row_bursts if i < len(items) else rng.randint(0, 1)})
            src.send_nowait(beat)
            for item in items:
                bfm.expect_row(item)
                self.ap.write(item)
            if len(items) == bfm.k and bfm.k > 1:
                self.ev.write(FetchEvent("beatInFull"))
            nch, bb = bfm.p.num_channels, bfm.p.burst_bytes
            chans = [b % nch for it in items for b in it.bursts(bb)]
            if len(chans) != len(set(chans)):
                self.ev.write(FetchEvent("channelCollision"))


class FetchMonitor(uvm_monitor):
    """Takes ``out`` beats: each of the first ``count`` rows is one :class:`FetchedRow`."""

    client = 0

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.ev = uvm_analysis_port("ev", self)
        self.rows = 0

    async def run_phase(self) -> None:
        bfm: FetchBfm = ConfigDB().get(self, "", "BFM")
        await bfm.reset_done.wait()
        sink = bfm.groups[self.client]
        while True:
            beat = await sink.recv()
            count = beat["count"]
            if not 1 <= count <= bfm.k:
                raise AssertionError(f"client {self.client}: a row beat with count {count}; {reproduce_hint()}")
            if count > 1:
                self.ev.write(FetchEvent("beatOutMulti"))
            for i in range(count):
                self.rows += 1
                self.ap.write(FetchedRow(self.client, beat[f"rows_{i}"]))


class FetchPortChecker(uvm_component):
    """Per-cycle checks and cycle-level coverage events (see the module docstring)."""

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.cycle = 0
        self.first_row_cycle: int | None = None
        self.last_group_cycle = 0
        self.max_outstanding = 0

    def _fail(self, msg: str) -> None:
        raise AssertionError(f"cycle {self.cycle}: {msg}; {reproduce_hint()}")

    async def run_phase(self) -> None:
        bfm: FetchBfm = ConfigDB().get(self, "", "BFM")
        await bfm.reset_done.wait()
        d, p = bfm.dut, bfm.p
        nch, ncl, cap = p.num_channels, bfm.clients, p.max_inflight
        sig = lambda name: getattr(d, name)  # noqa: E731
        rows_v = [sig(bfm.port("rows", i) + "_valid") for i in range(ncl)]
        rows_r = [sig(bfm.port("rows", i) + "_ready") for i in range(ncl)]
        grp_v = [sig(bfm.port("out", i) + "_valid") for i in range(ncl)]
        grp_r = [sig(bfm.port("out", i) + "_ready") for i in range(ncl)]
        grp_bits = [{f: sig(f"{bfm.port('out', i)}_bits_{f}")
                     for f in ["count"] + [f"rows_{k}" for k in range(bfm.k)]}
                    for i in range(ncl)]
        max_rows = [sig(bfm.port("maxRows", i)) for i in range(ncl)]
        inflight = [sig(bfm.port("status", i) + "_inflight") for i in range(ncl)]
        ring = nch * cap
        nearly_full = ring - bfm.k * (p.max_row_bytes // p.burst_bytes)
        rows_out = [0] * ncl
        dreq_v = [sig(f"io_dram_{c}_req_valid") for c in range(nch)]
        dreq_r = [sig(f"io_dram_{c}_req_ready") for c in range(nch)]
        dresp_v = [sig(f"io_dram_{c}_resp_valid") for c in range(nch)]
        dresp_r = [sig(f"io_dram_{c}_resp_ready") for c in range(nch)]
        if bfm.pair:
            probe = [[{k: sig(f"io_probe_{i}_{c}_{k}") for k in ("reqValid", "reqReady", "respValid", "respReady")}
                      for c in range(nch)] for i in range(ncl)]
        idles = [sig(bfm.port("idle", i)) for i in range(ncl)]
        accepted = [[0] * nch for _ in range(ncl)]
        delivered = [[0] * nch for _ in range(ncl)]
        route: list[deque[int]] = [deque() for _ in range(nch)]
        last_client = [-1] * nch
        prev_row_fire = [-2] * ncl
        held: list[tuple | None] = [None] * ncl
        emit = lambda name: self.ap.write(FetchEvent(name))  # noqa: E731
        while True:
            await ReadOnly()
            self.cycle += 1
            cyc = self.cycle
            # ---- idle implies nothing in flight (before this cycle's handshakes)
            for i in range(ncl):
                if int(idles[i].value):
                    busy = [c for c in range(nch) if accepted[i][c] != delivered[i][c]]
                    if busy:
                        self._fail(f"client {i}: io_idle is high with requests in flight on channels {busy}")
            # ---- rows
            for i in range(ncl):
                v, r = int(rows_v[i].value), int(rows_r[i].value)
                if v and r:
                    if self.first_row_cycle is None:
                        self.first_row_cycle = cyc
                    if prev_row_fire[i] == cyc - 1:
                        emit("rowsBackToBack")
                    prev_row_fire[i] = cyc
                elif v:
                    emit("rowsStalled")
            # ---- client requests (and, for the pair, the arbiter's pass-through)
            for c in range(nch):
                dfire = int(dreq_v[c].value) and int(dreq_r[c].value)
                if int(dreq_v[c].value) and not int(dreq_r[c].value):
                    emit("dramReqBackpressure")
                if bfm.pair:
                    fires = [i for i in range(ncl)
                             if int(probe[i][c]["reqValid"].value) and int(probe[i][c]["reqReady"].value)]
                    if sum(int(probe[i][c]["reqValid"].value) for i in range(ncl)) == ncl:
                        emit("arbiterContention")
                    if len(fires) != int(dfire):
                        self._fail(f"channel {c}: client request handshakes {fires} but DRAM request "
                                   f"handshake {bool(dfire)}")
                else:
                    fires = [0] if dfire else []
                for i in fires:
                    accepted[i][c] += 1
                    route[c].append(i)
                    if bfm.pair and len(set(route[c])) == ncl:
                        emit("bothClientsInFlight")
            # ---- DRAM responses: never back-pressured, routed to the client that asked
            for c in range(nch):
                rv, rr = int(dresp_v[c].value), int(dresp_r[c].value)
                if rv and not rr:
                    self._fail(f"channel {c}: a DRAM response is back-pressured (resp_ready low)")
                if bfm.pair:
                    to = [i for i in range(ncl) if int(probe[i][c]["respValid"].value)]
                    if to != ([route[c][0]] if rv and route[c] else []):
                        self._fail(f"channel {c}: DRAM response valid={rv} presented to clients {to}; "
                                   f"the oldest request in flight is client "
                                   f"{route[c][0] if route[c] else None}'s (in flight: {list(route[c])})")
                if rv and rr:
                    if not route[c]:
                        self._fail(f"channel {c}: a DRAM response with no request in flight")
                    i = route[c].popleft()
                    delivered[i][c] += 1
                    if bfm.pair and last_client[c] not in (-1, i):
                        emit("responseSwitch")
                    last_client[c] = i
            # ---- row beats: stability under back-pressure (rows offered stay; count may
            # only grow, up to maxRows), never more rows than sent
            for i in range(ncl):
                v, r = int(grp_v[i].value), int(grp_r[i].value)
                now = self._beat(grp_bits[i]) if v else None
                if now is not None and now[0] > int(max_rows[i].value):
                    self._fail(f"client {i}: a row beat of {now[0]} rows with maxRows {int(max_rows[i].value)}")
                if held[i] is not None:
                    if now is None or now[0] < held[i][0] or now[1][:held[i][0]] != held[i][1]:
                        self._fail(f"client {i}: a stalled row beat changed: {held[i]} -> {now}")
                if v and not r:
                    emit("groupBackpressure")
                    held[i] = now
                else:
                    held[i] = None
                if v and r:
                    self.last_group_cycle = cyc
                    rows_out[i] += now[0]
                    if rows_out[i] > bfm.nonempty_rows[i]:
                        self._fail(f"client {i}: {rows_out[i]} rows delivered, only {bfm.nonempty_rows[i]} sent")
            for i in range(ncl):
                if int(inflight[i].value) > nearly_full:
                    emit("ringFull")
                for c in range(nch):
                    out = accepted[i][c] - delivered[i][c]
                    if out > cap:
                        self._fail(f"client {i} channel {c}: {out} requests in flight, more than "
                                   f"maxInflight={cap}")
                    if out == cap:
                        emit("creditsExhausted")
                    self.max_outstanding = max(self.max_outstanding, out)
            await RisingEdge(d.clock)

    @staticmethod
    def _beat(bits: dict[str, SimHandleBase]) -> tuple:
        count = int(bits["count"].value)
        lanes = [k for k in bits if k.startswith("rows_")]
        return (count, tuple(int(bits[k].value) for k in lanes[:count]))


# ------------------------------------------------------------------------------ checking


class FetchScoreboard(ScoreboardBase):
    """Rebuilds every non-empty row from the memory image (its bursts, the rest of the
    ``maxRowBursts`` zero). Rows of 0 bursts must deliver nothing (they are left out of the
    pairing: an extra row would misalign every later row). Rows pair in order within each
    client."""

    def build_phase(self) -> None:
        super().build_phase()
        self.empty_rows = 0

    def address(self, item: FetchRowItem, bb: int) -> int:
        """Byte address of the row (the reference model's one formula)."""
        return item.base + item.index * item.row_bursts * bb

    def predict(self, item: FetchRowItem) -> FetchedRow:
        bfm: FetchBfm = ConfigDB().get(None, "", "BFM")
        bb = bfm.p.burst_bytes
        b0 = self.address(item, bb) // bb
        data = sum(bfm.mem.burst(b0 + i) << (8 * bb * i) for i in range(item.row_bursts))
        return FetchedRow(item.client, data)

    def describe(self, request: FetchRowItem) -> str:
        return str(request)

    def check_phase(self) -> None:
        reqs, resps = [], []
        while self.request_fifo.can_get():
            reqs.append(self.request_fifo.try_get()[1])
        while self.response_fifo.can_get():
            resps.append(self.response_fifo.try_get()[1])
        self.empty_rows = sum(1 for r in reqs if r.row_bursts == 0)
        # stable sorts: in order within each client
        for r in sorted((r for r in reqs if r.row_bursts), key=lambda r: r.client):
            self.request_fifo.analysis_export.write(r)
        for r in sorted(resps, key=lambda r: r.client):
            self.response_fifo.analysis_export.write(r)
        super().check_phase()


class FetchNextRowScoreboard(FetchScoreboard):
    """A wrong model for the negative test: it reads the neighbouring token's row
    (index XOR 1)."""

    def address(self, item: FetchRowItem, bb: int) -> int:
        return item.base + (item.index ^ 1) * item.row_bursts * bb


class FetchCoverage(CoverageBase):
    """Row-shape bins (from the driver), beat bins (driver and monitor) and cycle-level bins
    (from the checker). Bins that cannot occur on the preset are not listed: the
    multi-channel ones need two channels (``rowCrossesChannels``, ``rowStartsOffChannel0``),
    ``rowBurstsMid`` needs ``maxRowBursts > 2``, the beat ones ``keysPerCycle > 1``, the
    arbiter ones the ``FetchPair`` top."""

    bins: tuple[str, ...] = ()

    def build_phase(self) -> None:
        super().build_phase()
        bfm: FetchBfm = ConfigDB().get(None, "", "BFM")
        p = bfm.p
        self.mrb = p.max_row_bytes // p.burst_bytes
        self.nch = p.num_channels
        self.w = bfm.width
        self.top = 1 << p.dram_addr_bits
        self.bb = p.burst_bytes
        bins = ["rowBursts0", "rowBursts1", "rowBurstsMax", "index0", "indexMax", "indexSequential",
                "baseChanged", "baseSame", "topOfMemory", "rowsBackToBack", "rowsStalled",
                "groupBackpressure", "dramReqBackpressure", "ringFull"]
        if p.max_inflight <= bfm.knobs.latency[1]:
            # maxInflight requests at the DRAM on one channel need that much latency
            bins.append("creditsExhausted")
        if self.mrb > 2:
            bins.append("rowBurstsMid")
        if self.nch > 1:
            bins += ["rowCrossesChannels", "rowStartsOffChannel0"]
        if p.keys_per_cycle > 1:
            bins += ["beatInFull", "beatOutMulti", "channelCollision"]
        if bfm.pair:
            bins += ["arbiterContention", "bothClientsInFlight", "responseSwitch"]
        self.bins = tuple(bins)
        self.prev: dict[int, FetchRowItem] = {}

    def sample(self, item: FetchRowItem | FetchEvent) -> Iterable[str]:
        if isinstance(item, FetchEvent):
            return [item.name] if item.name in self.bins else []
        rb, hits = item.row_bursts, []
        hits += ["rowBursts0"] if rb == 0 else []
        hits += ["rowBursts1"] if rb == 1 else []
        hits += ["rowBurstsMax"] if rb == self.mrb else []
        hits += ["rowBurstsMid"] if 1 < rb < self.mrb and self.mrb > 2 else []
        hits += ["index0"] if item.index == 0 else []
        hits += ["indexMax"] if item.index == INDEX_MAX else []
        prev = self.prev.get(item.client)
        if prev is not None:
            hits.append("baseSame" if prev.base == item.base else "baseChanged")
            if prev.base == item.base and item.index == prev.index + 1 and rb == prev.row_bursts:
                hits.append("indexSequential")
        self.prev[item.client] = item
        if rb:
            b0 = item.first_burst(self.bb)
            if (b0 + rb) * self.bb == self.top:
                hits.append("topOfMemory")
            if self.nch > 1:
                if rb > 1:
                    hits.append("rowCrossesChannels")
                if b0 % self.nch:
                    hits.append("rowStartsOffChannel0")
        return hits


# ------------------------------------------------------------------------------ env and tests


class FetchAgent(uvm_agent):
    """Sequencer, driver and monitor of one client."""

    client = 0

    def build_phase(self) -> None:
        self.seqr = uvm_sequencer("seqr", self)
        self.driver = FetchDriver("driver", self)
        self.monitor = FetchMonitor("monitor", self)
        self.driver.client = self.monitor.client = self.client

    def connect_phase(self) -> None:
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)


class FetchEnv(uvm_env):
    """One agent per client, the port checker, one scoreboard and one coverage collector."""

    def build_phase(self) -> None:
        bfm: FetchBfm = ConfigDB().get(self, "", "BFM")
        self.agents = []
        for i in range(bfm.clients):
            a = FetchAgent(f"agent{i}", self)
            a.client = i
            self.agents.append(a)
        self.checker = FetchPortChecker("checker", self)
        self.scoreboard = FetchScoreboard.create("scoreboard", self)
        self.coverage = FetchCoverage.create("coverage", self)

    def connect_phase(self) -> None:
        for a in self.agents:
            a.driver.ap.connect(self.scoreboard.request_export)
            a.driver.ap.connect(self.coverage.analysis_export)
            a.monitor.ap.connect(self.scoreboard.response_export)
            a.driver.ev.connect(self.coverage.analysis_export)
            a.monitor.ev.connect(self.coverage.analysis_export)
        self.checker.ap.connect(self.coverage.analysis_export)


@test()
class FetchRandomTest(uvm_test):
    """``FETCH_ROWS`` random rows per client, random stalls on every stream and port."""

    idle_prob = 0.3          # rows source: idle cycles
    stall_prob = 0.3         # groups sink: back-pressure
    block_prob = 1 / 300     # groups sink: start of a long blocked window, per cycle
    latency = (1, 40)        # DRAM: cycles from request to earliest response
    req_stall = 0.15         # DRAM: request back-pressure
    resp_gap = 0.15          # DRAM: a due response held back a cycle
    watchdog_cycles = 4000
    sequence = FetchRandomSeq
    vary_max_rows = True     # out: maxRows changed at random between beats

    def build_phase(self) -> None:
        ConfigDB().set(None, "*", "ROWS", int(os.environ.get("FETCH_ROWS", "400")))
        self.bfm = FetchBfm(cocotb.top, hw_params(), self)
        ConfigDB().set(None, "*", "BFM", self.bfm)
        self.env = FetchEnv("env", self)

    async def run_phase(self) -> None:
        self.raise_objection()
        bfm, env = self.bfm, self.env
        d = bfm.dut
        await bfm.reset()
        mons = [a.monitor for a in env.agents]
        probes = {f"rows sent {i}": (lambda i=i: bfm.rows[i].sent) for i in range(bfm.clients)}
        probes.update({f"groups taken {i}": (lambda i=i: bfm.groups[i].received) for i in range(bfm.clients)})
        probes.update({"dram requests": lambda: bfm.dram.requests, "dram responses": lambda: bfm.dram.responses})
        dog = Watchdog(d.clock, self.watchdog_cycles, probes, context={
            **{f"status {i}": (lambda i=i: bfm.status(i)) for i in range(bfm.clients)},
            "rows delivered / sent": lambda: [(m.rows, bfm.nonempty_rows[m.client]) for m in mons],
            "seed": run_seed})
        seqs = [cocotb.start_soon(self.sequence("seq", i).start(a.seqr)) for i, a in enumerate(env.agents)]
        for s in seqs:
            await s
        while any(m.rows < bfm.nonempty_rows[m.client] or bfm.rows[m.client].pending for m in mons):
            await RisingEdge(d.clock)
        for _ in range(20):  # nothing more may come out; everything delivered
            await RisingEdge(d.clock)
            for i in range(bfm.clients):
                assert not int(getattr(d, bfm.port("out", i) + "_valid").value), \
                    f"client {i}: a group after the last row; {reproduce_hint()}"
        dog.stop()
        for i in range(bfm.clients):
            st = bfm.status(i)
            want = bfm.sent_bursts[i] & 0xFFFFFFFF
            assert bfm.idle(i) and st == {"issued": want, "delivered": want, "inflight": 0}, \
                f"client {i}: at the end idle={bfm.idle(i)} status={st}, expected {want} bursts; {reproduce_hint()}"
        total = sum(bfm.sent_bursts)
        assert bfm.dram.requests == bfm.dram.responses == total, \
            f"DRAM requests {bfm.dram.requests}, responses {bfm.dram.responses}, expected {total}"
        chk = env.checker
        cycles = chk.last_group_cycle - (chk.first_row_cycle or 0) + 1
        self.run_info = {"rows": sum(bfm.sent_rows), "bursts": total, "cycles": cycles,
                         "burstsPerCycle": round(total / cycles, 3), "width": bfm.width,
                         "maxOutstanding": chk.max_outstanding, "seed": run_seed()}
        write_report("run", self.run_info)
        self.logger.info(f"run: {self.run_info}")
        self.drop_objection()


@test()
class FetchThroughputTest(FetchRandomTest):
    """No stalls, a fixed 8-cycle memory, a linear fetch of ``maxRowBursts``-burst rows:
    at least 90% of ``W`` bursts a cycle."""

    idle_prob = 0.0
    stall_prob = 0.0
    block_prob = 0.0
    latency = (8, 8)
    req_stall = 0.0
    resp_gap = 0.0
    sequence = FetchStreamSeq
    vary_max_rows = False

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)

    async def run_phase(self) -> None:
        self.raise_objection()
        await super().run_phase()
        rate, w = self.run_info["burstsPerCycle"], self.bfm.width
        assert rate >= 0.9 * w, f"{rate} bursts a cycle, expected at least 90% of W={w}; {reproduce_hint()}"
        self.drop_objection()


class FetchRandomRowsSeq(FetchRandomSeq):
    """``ROWS`` rows of ``ROW_BURSTS`` bursts at random token ids of one plane."""

    async def body(self) -> None:
        bfm: FetchBfm = ConfigDB().get(None, "", "BFM")
        rng = rng_for(f"rows{self.client}")
        rb = min(int(os.environ.get("ROW_BURSTS", "2")), bfm.mem.max_row_bursts)
        for _ in range(config("ROWS", 400)):
            item = FetchRowItem("row", self.client, rng.randint(0, INDEX_MAX), 0, rb)
            await self.start_item(item)
            bfm.mem.touch(item)
            await self.finish_item(item)


@test()
class FetchRandomRowsTest(FetchThroughputTest):
    """No stalls, a fixed 8-cycle memory, full beats of rows at random token ids: reports
    rows a cycle (channel collisions included)."""

    sequence = FetchRandomRowsSeq

    async def run_phase(self) -> None:
        self.raise_objection()
        await FetchRandomTest.run_phase(self)
        info = self.run_info
        info["rowsPerCycle"] = round(info["rows"] / info["cycles"], 3)
        info["keysPerCycle"], info["channels"] = self.bfm.k, self.bfm.p.num_channels
        write_report("run", info)
        self.logger.info(f"rows a cycle: {info['rowsPerCycle']} ({info})")
        self.drop_objection()


@test()
class FetchBrokenModelTest(FetchRandomTest):
    """Negative test: a model that reads the neighbouring token's row must make the
    scoreboard fail."""

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(FetchScoreboard, FetchNextRowScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
        ConfigDB().set(None, "*", "ROWS", 30)
