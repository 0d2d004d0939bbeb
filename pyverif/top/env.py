"""The pyuvm environment of the top-level testbench (``SpAttenCore`` / ``SpAttenTop``).

Components:

- :class:`RequestItem`, :class:`RandomRequestSequence`: command packets from a
  :class:`pyverif.top.stimulus.StimulusGenerator` (held in the ``ConfigDB`` as
  ``"STIMULUS"``; its memory image is the one the memory agent and the golden model read).
- :class:`RequestDriver`: drives each packet's words on ``io_cmd`` (random idle cycles)
  and publishes the packet on ``ap`` for the scoreboard.
- :class:`ResponseMonitor`: takes ``io_resp`` words (random back-pressure), cuts them
  into packets at ``last`` and publishes each packet on ``ap``.
- :class:`TopScoreboard`: predicts every response with
  :class:`spatten.contract.golden.GoldenAccelerator` (in request order) and compares every word
  (only the ATTEND cycles field masked); feeds :class:`TopCoverage`.
- :class:`TopCoverage`: functional bins (fails on a missed bin).
- :class:`StallProbe`: counts back-pressure cycles on the command and response streams.
- :class:`TopEnv`: all of the above plus, for ``SpAttenCore``, the
  :class:`pyverif.top.memory_agent.DramAgent`.
"""

from __future__ import annotations

import random
from typing import Any, Iterable

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge
from pyuvm import (ConfigDB, uvm_analysis_port, uvm_driver, uvm_env, uvm_monitor, uvm_sequence,
                   uvm_sequence_item, uvm_sequencer)

from pyverif.common.seed import rng_for
from pyverif.common.stream import StreamSink, StreamSource
from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.top.memory_agent import DramAgent
from pyverif.top.stimulus import Stimulus, StimulusGenerator
from spatten.contract.commands import AttendCmd, Word, compare_responses, opcode_of, tag_of
from spatten.contract.layout import layout
from spatten.contract.golden import GoldenAccelerator
from spatten.contract.params import HwParams

__all__ = ["RequestItem", "RandomRequestSequence", "RequestDriver", "ResponseMonitor",
           "TopScoreboard", "TopCoverage", "StallProbe", "TopEnv", "ctrl_states"]

def ctrl_states() -> dict[str, tuple[str, ...]]:
    """Controller state names by number, per pipeline stage (``front``, ``back``), from the
    elaboration's ``contract.json`` (``CtrlState.names`` and ``BackState.names``)."""
    return {unit: tuple(v) for unit, v in layout().states.items()}


class RequestItem(uvm_sequence_item):
    """One command packet."""

    def __init__(self, name: str = "request", stim: Stimulus | None = None) -> None:
        super().__init__(name)
        self.stim = stim

    def __str__(self) -> str:
        s = self.stim
        return f"{s.what} tag={tag_of(s.words[0][0])} ({len(s.words)} words)" if s else "empty"


class RandomRequestSequence(uvm_sequence):
    """``count`` random command packets (``ConfigDB`` ``"NREQ"``)."""

    async def body(self) -> None:
        gen: StimulusGenerator = ConfigDB().get(None, "", "STIMULUS")
        count: int = ConfigDB().get(None, "", "NREQ")
        for _ in range(count):
            item = RequestItem("request", gen.next())
            await self.start_item(item)
            await self.finish_item(item)


class RequestDriver(uvm_driver):
    """Drives command packets on ``io_cmd``; publishes each packet (a word list) on ``ap``."""

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)

    def start_of_simulation_phase(self) -> None:
        dut = cocotb.top
        idle: float = ConfigDB().get(self, "", "CMD_IDLE")
        self.source = StreamSource(dut, "io_cmd", dut.clock, rng_for("cmd"), idle_prob=idle)
        self.sent_packets = 0

    async def run_phase(self) -> None:
        while True:
            item = await self.seq_item_port.get_next_item()
            stim: Stimulus = item.stim
            self.ap.write(stim)
            events = [self.source.send_nowait({"data": w, "last": int(last)}) for w, last in stim.words]
            await events[-1].wait()
            self.sent_packets += 1
            self.seq_item_port.item_done()


class ResponseMonitor(uvm_monitor):
    """Takes response words with random back-pressure; publishes packets on ``ap``."""

    def build_phase(self) -> None:
        self.ap = uvm_analysis_port("ap", self)
        self.packets = 0
        self._words: list[Word] = []

    def start_of_simulation_phase(self) -> None:
        dut = cocotb.top
        stall: float = ConfigDB().get(self, "", "RESP_STALL")
        self.sink = StreamSink(dut, "io_resp", dut.clock, rng_for("resp"), stall_prob=stall,
                               callback=self._word)

    def _word(self, beat: dict[str, int]) -> None:
        self._words.append((beat["data"], bool(beat["last"])))
        if beat["last"]:
            packet, self._words = self._words, []
            self.packets += 1
            self.ap.write(self.transform(packet))

    def transform(self, packet: list[Word]) -> list[Word]:
        """Hook for variants (the negative test corrupts a packet here)."""
        return packet


class TopScoreboard(ScoreboardBase):
    """Every response word against the golden model (cycles field masked)."""

    def build_phase(self) -> None:
        super().build_phase()
        self.cov_ap = uvm_analysis_port("cov_ap", self)
        self.golden = GoldenAccelerator(ConfigDB().get(None, "", "PARAMS"),
                                        ConfigDB().get(None, "", "STIMULUS").mem)
        self._last_errors: list[str] = []

    def predict(self, request: Stimulus) -> list[Word]:
        expected = self.golden.execute_packet(request.words)
        attend = (self.golden.last_attend if request.what == "ATTEND" else
                  list(self.golden.last_group) if request.what == "ATTEND_GROUP" else None)
        self.cov_ap.write((request, expected, attend))
        return expected

    def compare(self, expected: list[Word], actual: list[Word]) -> bool:
        self._last_errors = compare_responses(expected, actual)
        return not self._last_errors

    def describe(self, request: Stimulus) -> str:
        errs = "; ".join(self._last_errors[:4])
        return f"{request.what} tag={tag_of(request.words[0][0])}: {errs}"


class TopCoverage(CoverageBase):
    """Functional coverage of the top-level regression.

    Request bins come from (command, golden response, golden ATTEND intermediates);
    stream bins from the back-pressure counters (set by the environment)."""

    request_bins = (
        "attend_n1", "attend_k1", "attend_k_all", "attend_p_tie_at_cut", "attend_max_magnitude",
        "requant_taken", "requant_not_taken", "msb_only_keys", "full_precision_keys",
        "op_attend", "op_topk_tokens", "op_topk_heads", "op_clear", "op_read_importance",
        "op_error", "topk_k0", "topk_all", "token_id_high",
        "op_attend_group", "group_heads_max", "group_requant_mixed", "group_value_shared",
        "group_value_threshold")
    stream_bins = ("backpressure_cmd", "backpressure_resp")
    dram_bins = ("backpressure_dram_req", "dram_resp_idle")

    def build_phase(self) -> None:
        super().build_phase()
        dram: bool = ConfigDB().get(self, "", "DRAM_AGENT")
        self.bins = self.request_bins + self.stream_bins + (self.dram_bins if dram else ())
        self.stream_counts: dict[str, int] = {}

    def sample(self, item: tuple[Stimulus, list[Word], Any]) -> Iterable[str]:
        stim, expected, attend = item
        lay = layout()
        op = {v: k for k, v in lay.opcodes.items()}[opcode_of(expected[0][0])]
        yield "op_" + op.lower()
        if op == "ERROR":
            return
        cmd = stim.command
        if op in ("TOPK_TOKENS", "TOPK_HEADS"):
            kept = lay.packet("topkResp").get([expected[0][0]], "count")
            if cmd.k == 0 and cmd.n > 0:
                yield "topk_k0"
            if cmd.n > 0 and kept == cmd.n:
                yield "topk_all"
        if op == "ATTEND_GROUP" and attend:
            heads = attend  # the golden results of the group's heads, in order
            if len(heads) == ConfigDB().get(None, "", "PARAMS").max_group_heads:
                yield "group_heads_max"
            req = {bool(h.probs.requantized) for h in heads}
            if len(req) == 2:
                yield "group_requant_mixed"
            sels = [set(h.selected.tolist()) for h in heads]
            if sum(len(x) for x in sels) > len(set().union(*sels)):
                yield "group_value_shared"
            if any(h.value_thresh and 1 < len(r.selected) < r.probs.p.size
                   for h, r in zip(cmd.heads, heads)):
                yield "group_value_threshold"  # a threshold between the probabilities
            return
        if op != "ATTEND" or attend is None:
            return
        assert isinstance(cmd, AttendCmd)
        p = attend.probs.p
        n = len(p)
        m = len(attend.selected)
        if n == 1:
            yield "attend_n1"
        if cmd.accum_importance and max(self.golden_ids(stim)) >= 1 << 15:
            yield "token_id_high"
        if m == 1 and n > 1:
            yield "attend_k1"
        if m == n and n > 1:
            yield "attend_k_all"
        if 0 < m < n:
            cut = sorted(p.tolist(), reverse=True)[m - 1]
            sel = set(attend.selected.tolist())
            if any(p[j] == cut for j in range(n) if j not in sel):
                yield "attend_p_tie_at_cut"
        lay = stim.layer
        if lay is not None and lay.kind == "extreme" and min(cmd.query) == -(1 << 15):
            yield "attend_max_magnitude"
        if cmd.k_lsb_bits == 0:
            yield "msb_only_keys"
        else:
            yield "full_precision_keys"
        if attend.probs.requantized:
            yield "requant_taken"
        elif cmd.requant and cmd.k_lsb_bits > 0:
            yield "requant_not_taken"

    @staticmethod
    def golden_ids(stim: Stimulus) -> list[int]:
        """The token ids of an ATTEND's list (read back from the image)."""
        gen = ConfigDB().get(None, "", "STIMULUS")
        cmd = stim.command
        return gen.mem.read_tokens(cmd.tokens_base, cmd.n).tolist()

    def report_phase(self) -> None:
        counts = self.stream_counts
        for b in self.stream_bins + self.dram_bins:
            if counts.get(b, 0) and b in self.bins:
                self.hits[b] += counts[b]
        super().report_phase()


class StallProbe:
    """Counts back-pressure cycles on the command and response streams (until both
    have been seen: coverage needs no more)."""

    def __init__(self, dut: SimHandleBase) -> None:
        self.dut = dut
        self.cmd = 0
        self.resp = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        d = self.dut
        while not (self.cmd and self.resp):  # the bins need one cycle each; then stop
            await RisingEdge(d.clock)
            if int(d.io_cmd_valid.value) and not int(d.io_cmd_ready.value):
                self.cmd += 1
            if int(d.io_resp_valid.value) and not int(d.io_resp_ready.value):
                self.resp += 1


class TopEnv(uvm_env):
    """Driver, monitor, scoreboard, coverage, and the DRAM agent when the top has ports."""

    def build_phase(self) -> None:
        self.seqr = uvm_sequencer("seqr", self)
        self.driver = RequestDriver.create("driver", self)
        self.monitor = ResponseMonitor.create("monitor", self)
        self.scoreboard = TopScoreboard.create("scoreboard", self)
        self.coverage = TopCoverage.create("coverage", self)

    def connect_phase(self) -> None:
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)
        self.driver.ap.connect(self.scoreboard.request_export)
        self.monitor.ap.connect(self.scoreboard.response_export)
        self.scoreboard.cov_ap.connect(self.coverage.analysis_export)

    def start_of_simulation_phase(self) -> None:
        dut = cocotb.top
        self.probe = StallProbe(dut)
        self.dram: DramAgent | None = None
        if ConfigDB().get(self, "", "DRAM_AGENT"):
            params: HwParams = ConfigDB().get(None, "", "PARAMS")
            gen: StimulusGenerator = ConfigDB().get(None, "", "STIMULUS")
            self.dram = DramAgent(dut, dut.clock, params, gen.mem, rng_for("dram"))

    def extract_phase(self) -> None:
        counts = {"backpressure_cmd": self.probe.cmd, "backpressure_resp": self.probe.resp}
        if self.dram is not None:
            counts["backpressure_dram_req"] = self.dram.req_backpressure
            counts["dram_resp_idle"] = self.dram.resp_idle
        self.coverage.stream_counts = counts


def make_generator(params: HwParams, **kw: Any) -> StimulusGenerator:
    """The run's stimulus generator, seeded from the run seed."""
    return StimulusGenerator(params, random.Random(rng_for("stimulus").getrandbits(64)), **kw)
