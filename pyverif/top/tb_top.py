"""cocotb + pyuvm tests of the whole accelerator (run through ``pyverif/top/test_top.py``).

Environment (besides ``SPATTEN_PARAMS`` / ``SPATTEN_SEED`` from ``spatten/sim/build.py``):

- ``SPATTEN_NREQ``: number of random requests (default 200);
- ``SPATTEN_MAX_TOKENS`` / ``SPATTEN_MAX_DIM``: caps on N and D of the stimulus (default:
  the preset's limits), to keep large-preset smoke runs short;
- ``SPATTEN_STIM``: a JSON file of pre-generated packets and ``SPATTEN_IMAGE`` its memory
  image (the DPI variant: the DRAM inside ``SpAttenTop`` loads the same image);
- ``SPATTEN_TB_REPORT``: a JSON file receiving scoreboard / coverage / hang summaries.

Tests: ``TopRandomTest`` (the regression), ``TopCorruptTest`` (negative: a monitor that
flips one bit of one response must make the scoreboard fail), ``TopHangTest`` (negative:
the memory agent stops answering; the watchdog must fail the test naming the stage),
``TopDpiTest`` (``SpAttenTop`` with the DPI DRAM: only the command/response streams).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from pyuvm import ConfigDB, uvm_factory, uvm_sequence, uvm_test

from pyverif.common.params import hw_params
from pyverif.common.seed import reproduce_hint, rng_for, run_seed
from pyverif.common.uvm import write_report
from pyverif.common.watchdog import Watchdog
from pyverif.top.env import (ctrl_states, RandomRequestSequence, RequestItem, ResponseMonitor,
                             TopEnv, TopScoreboard, make_generator)
from pyverif.top.stimulus import Stimulus, StimulusGenerator
from spatten.contract.commands import CommandError, Word, attend_cycles, attend_cycles_mask, decode_command
from spatten.contract.packets import cycles_words
from spatten.contract.memimage import MemoryImage
from spatten.contract.params import HwParams

__all__ = ["TopRandomTest", "TopRegression", "TopPerfTest", "TopCorruptTest", "TopHangTest", "TopSmoke", "TopDpiTest"]


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text, 0)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {text!r}") from exc


class _Pregenerated:
    """Stimulus read from ``SPATTEN_STIM`` / ``SPATTEN_IMAGE`` (same interface as the
    generator: ``mem`` and ``next()``)."""

    def __init__(self, params: HwParams, stim: Path, image: Path) -> None:
        self.mem = MemoryImage.load(image, params.burst_bytes, params.dram_addr_bits)
        data = json.loads(stim.read_text())
        self.items: list[Stimulus] = []
        for entry in data:
            words: list[Word] = [(int(w), bool(l)) for w, l in entry["words"]]
            try:
                cmd = decode_command(words)
            except CommandError:
                cmd = None
            self.items.append(Stimulus(words, entry["what"], cmd))
        self._next = 0

    def next(self) -> Stimulus:
        item = self.items[self._next]
        self._next += 1
        return item


class TopRandomTest(uvm_test):
    """Random requests against the golden model, every response word checked."""

    dram_agent = True
    nreq_default = 200
    watchdog_cycles = 20000

    def build_phase(self) -> None:
        self.params = hw_params()
        ConfigDB().set(None, "*", "PARAMS", self.params)
        stim, image = os.environ.get("SPATTEN_STIM"), os.environ.get("SPATTEN_IMAGE")
        if stim and image:
            gen = _Pregenerated(self.params, Path(stim), Path(image))
            nreq = len(gen.items)
        else:
            gen = make_generator(self.params,
                                 max_tokens=_env_int("SPATTEN_MAX_TOKENS", 0) or None,
                                 max_dim=_env_int("SPATTEN_MAX_DIM", 0) or None)
            nreq = _env_int("SPATTEN_NREQ", self.nreq_default)
        self.nreq = nreq
        ConfigDB().set(None, "*", "STIMULUS", gen)
        ConfigDB().set(None, "*", "NREQ", nreq)
        ConfigDB().set(None, "*", "DRAM_AGENT", self.dram_agent)
        ConfigDB().set(None, "*", "CMD_IDLE", 0.1)
        ConfigDB().set(None, "*", "RESP_STALL", 0.2)
        self.env = TopEnv("env", self)

    def _status(self) -> dict[str, str]:
        d = cocotb.top
        names = ctrl_states()

        def name(unit: str, st: int) -> str:
            return names[unit][st] if st < len(names[unit]) else f"#{st}"

        def fetch(prefix: str) -> str:
            return (f"issued={int(getattr(d, prefix + '_issued').value)} "
                    f"delivered={int(getattr(d, prefix + '_delivered').value)} "
                    f"inflight={int(getattr(d, prefix + '_inflight').value)}")
        return {
            "controller": (f"state={name('front', int(d.io_status_state.value))} "
                           f"back={name('back', int(d.io_status_backState.value))} "
                           f"resp={name('resp', int(d.io_status_respState.value))} "
                           f"pass={int(d.io_status_pass.value)}"),
            "fetcher": f"keys: {fetch('io_status_fetch')}; values: {fetch('io_status_valueFetch')}",
            "datapath": (f"keysIssued={int(d.io_status_keysIssued.value)} "
                         f"scoresDone={int(d.io_status_scoresDone.value)} "
                         f"probsDone={int(d.io_status_probsDone.value)} "
                         f"valuesIssued={int(d.io_status_valuesIssued.value)} "
                         f"valuesDone={int(d.io_status_valuesDone.value)} "
                         f"softmaxBusy={int(d.io_status_softmaxBusy.value)} "
                         f"valueTopkPhase={int(d.io_status_valueTopkPhase.value)} "
                         f"rankTopkPhase={int(d.io_status_rankTopkPhase.value)}"),
            "streams": (f"cmd words sent={self.env.driver.source.sent} "
                        f"resp packets={self.env.monitor.packets} of {self.nreq} "
                        f"requestsDone={int(d.io_status_requestsDone.value)}"),
        }

    def _start_watchdog(self) -> Watchdog:
        d = cocotb.top
        env = self.env
        probes = {
            "cmd words": lambda: env.driver.source.sent,
            "resp words": lambda: env.monitor.sink.received,
            "controller state": lambda: (int(d.io_status_state.value), int(d.io_status_backState.value),
                                         int(d.io_status_respState.value)),
            "fetch issued": lambda: (int(d.io_status_fetch_issued.value), int(d.io_status_valueFetch_issued.value)),
            "fetch delivered": lambda: (int(d.io_status_fetch_delivered.value),
                                        int(d.io_status_valueFetch_delivered.value)),
            "scores": lambda: int(d.io_status_scoresDone.value),
            "probs": lambda: int(d.io_status_probsDone.value),
            "values": lambda: int(d.io_status_valuesDone.value),
            "topk phases": lambda: (int(d.io_status_valueTopkPhase.value),
                                    int(d.io_status_rankTopkPhase.value)),
        }
        context = {k: (lambda k=k: self._status()[k]) for k in ("controller", "fetcher", "datapath", "streams")}
        if env.dram is not None:
            dram = env.dram
            probes["dram requests"] = lambda: dram.requests
            probes["dram responses"] = lambda: dram.responses
            context["dram agent"] = lambda: (f"requests={dram.requests} responses={dram.responses} "
                                             f"stopped={dram.stopped}")
        return _ReportingWatchdog(d.clock, self.watchdog_cycles, probes, context)

    async def run_phase(self) -> None:
        self.raise_objection()
        d = cocotb.top
        cocotb.start_soon(Clock(d.clock, 1, unit="ns").start())
        d.reset.value = 1
        await ClockCycles(d.clock, 5)
        d.reset.value = 0
        await RisingEdge(d.clock)
        self.configure()
        dog = self._start_watchdog()
        seq = self.sequence()
        await seq.start(self.env.seqr)
        while self.env.monitor.packets < self.nreq:
            await RisingEdge(d.clock)
        dog.stop()
        self.cycles = int(d.io_cycle.value) if hasattr(d, "io_cycle") else None
        write_report("run", {"requests": self.nreq, "cycles": self.cycles, "seed": run_seed()})
        self.drop_objection()

    def configure(self) -> None:
        """Hook for variants, called after reset."""

    def sequence(self) -> uvm_sequence:
        """The stimulus sequence (variants override)."""
        return RandomRequestSequence("random")


class _ReportingWatchdog(Watchdog):
    """The shared watchdog, sampling its probes every :attr:`period` cycles (reading a
    dozen signals every cycle would dominate the run time) and also writing its diagnosis
    to the report file."""

    period = 16

    def _report(self, last_change: dict[str, int], values: dict[str, object]) -> str:
        msg = super()._report(last_change, values) + f"\n  {reproduce_hint()}"
        write_report("hang", {"message": msg})
        return msg


@pyuvm.test()
class TopRegression(TopRandomTest):
    """The regression (``SPATTEN_NREQ`` requests)."""


class CorruptingResponseMonitor(ResponseMonitor):
    """Flips one bit (outside the masked cycles field) of one response packet."""

    def _word(self, beat: dict[str, int]) -> None:
        super()._word(beat)

    def transform(self, packet: list[Word]) -> list[Word]:
        if not hasattr(self, "_victim"):
            self._victim = rng_for("corrupt").randint(3, 8)
        if self.packets - 1 != self._victim:
            return packet
        rng = rng_for("corrupt-bit")
        i = rng.randrange(len(packet))
        _, cycles_mask = attend_cycles_mask()
        masked = i in cycles_words(packet)
        bit = rng.choice([b for b in range(64) if not cycles_mask >> b & 1]) if masked else rng.randrange(64)
        w, last = packet[i]
        self.logger.info(f"corrupting response packet {self.packets - 1}, word {i}, bit {bit}")
        write_report("corruption", {"packet": self.packets - 1, "word": i, "bit": bit})
        return [*packet[:i], (w ^ (1 << bit), last), *packet[i + 1:]]


@pyuvm.test()
class TopCorruptTest(TopRandomTest):
    """Negative test: one corrupted response word must be reported by the scoreboard."""

    nreq_default = 20

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(ResponseMonitor, CorruptingResponseMonitor)
        os.environ.setdefault("SPATTEN_NREQ", "20")
        super().build_phase()


@pyuvm.test()
class TopHangTest(TopRandomTest):
    """Negative test: the memory stops answering; the watchdog must name the stage."""

    watchdog_cycles = 2000
    nreq_default = 30

    def configure(self) -> None:
        stop = rng_for("hang").randint(20, 200)
        write_report("hang_setup", {"stop_after_responses": stop})
        self.env.dram.stop_after(stop)


class PerfSequence(uvm_sequence):
    """One ATTEND at a time (the next only after the previous response), for each shape
    of ``SPATTEN_PERF``: ``N:D:kMsbBits:vBits:valueTopK[:kLsbBits:requant]`` items
    separated by commas. Each request's cycle count and DRAM bursts are recorded."""

    async def body(self) -> None:
        gen = ConfigDB().get(None, "", "STIMULUS")
        shapes = ConfigDB().get(None, "", "PERF_SHAPES")
        monitor = ConfigDB().get(None, "", "MONITOR")
        clock = cocotb.top.clock
        for i, shape in enumerate(shapes):
            n, d, kb, vb, vk = shape[:5]
            lsb = shape[5] if len(shape) > 5 else 0
            requant = bool(shape[6]) if len(shape) > 6 else False
            layer = gen.make_layer(d, n, kb, lsb, vb)
            stim = gen.attend(layer=layer, n=n, value_topk=vk, requant=requant,
                              requant_threshold=(1 << 17) - 1)
            item = RequestItem("perf", stim)
            await self.start_item(item)
            await self.finish_item(item)
            while monitor.packets <= i:
                await RisingEdge(clock)


@pyuvm.test()
class TopPerfTest(TopRandomTest):
    """Cycles per ATTEND for the shapes of ``SPATTEN_PERF`` with an ideal memory agent
    (fixed latency ``SPATTEN_DRAM_LAT``, one burst a cycle per channel, no stalls): the
    report's ``perf`` rows give cycles and the DRAM bound ``bursts / numChannels``."""

    def build_phase(self) -> None:
        shapes = [tuple(int(x) for x in item.split(":"))
                  for item in os.environ.get("SPATTEN_PERF", "64:16:8:8:0").split(",")]
        os.environ["SPATTEN_NREQ"] = str(len(shapes))
        uvm_factory().set_type_override_by_type(TopScoreboard, PerfScoreboard)
        super().build_phase()
        gen = StimulusGenerator(self.params, rng_for("perf"), layers=0)
        ConfigDB().set(None, "*", "STIMULUS", gen)
        ConfigDB().set(None, "*", "PERF_SHAPES", shapes)
        ConfigDB().set(None, "*", "CMD_IDLE", 0.0)
        ConfigDB().set(None, "*", "RESP_STALL", 0.0)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        self.nreq = len(shapes)

    def connect_phase(self) -> None:
        ConfigDB().set(None, "*", "MONITOR", self.env.monitor)

    def sequence(self) -> uvm_sequence:
        return PerfSequence("perf")

    def configure(self) -> None:
        dram = self.env.dram
        lat = _env_int("SPATTEN_DRAM_LAT", 20)
        dram.latency = (lat, lat)
        dram.req_stall = 0.0
        dram.resp_gap = 0.0
        dram.queue_limit = 1 << 20



class PerfScoreboard(TopScoreboard):
    """The scoreboard, also recording per ATTEND the cycles field and the golden model's
    DRAM bursts (written to the report as ``perf`` rows)."""

    def build_phase(self) -> None:
        super().build_phase()
        self.rows: list[dict[str, int]] = []
        self._pending: dict[str, int] | None = None

    def predict(self, request: Stimulus) -> list[Word]:
        expected = super().predict(request)
        cmd = request.command
        tr = self.golden.last_traffic
        self._pending = {"n": cmd.n, "d": cmd.d or len(cmd.query), "k_msb_bits": cmd.k_msb_bits,
                         "k_lsb_bits": cmd.k_lsb_bits, "v_bits": cmd.v_bits,
                         "m": len(self.golden.last_attend.selected),
                         "requantized": int(self.golden.last_attend.probs.requantized),
                         "bursts": tr.total, "bursts_k": tr.k_msb + tr.k_lsb, "bursts_v": tr.v}
        return expected

    def compare(self, expected: list[Word], actual: list[Word]) -> bool:
        ok = super().compare(expected, actual)
        if self._pending is not None and len(actual) > 1:
            row = dict(self._pending)
            row["cycles"] = attend_cycles(actual)
            nch = ConfigDB().get(None, "", "PARAMS").num_channels
            row["dram_bound"] = -(-row["bursts"] // nch)
            self.rows.append(row)
        return ok

    def report_phase(self) -> None:
        write_report("perf", {"rows": self.rows})
        for r in self.rows:
            self.logger.info(f"perf {r}")


@pyuvm.test()
class TopSmoke(TopRandomTest):
    """A short run (large presets): every word checked, coverage reported but not
    required (too few requests to hit every bin)."""

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)


@pyuvm.test()
class TopDpiTest(TopRandomTest):
    """``SpAttenTop``: the DRAM is the DPI model inside the top, loaded from the image."""

    dram_agent = False

    def build_phase(self) -> None:
        super().build_phase()
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
