"""Driving the native simulator: workload rows in, checked run results out.

Used by ``run.py`` and the benchmarks (``tools/bench_sim.py``). See ``run.py`` for the
whole flow and ``spatten/sim/program.py`` for how a workload becomes commands and memory.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatten.contract.commands import compare_responses, read_stream, split_packets, write_stream
from spatten.errors import InputError, SimulationError
from spatten.sim import procs
from spatten.sim.inputs import check_rows
from spatten.sim.program import Program
from workloads.csvschema import read_workload


@dataclass
class RunResult:
    """What one simulation of a program produced."""

    prog: Program
    start: list[int]
    end: list[int]
    dram_stats: dict | None = None
    states: dict[str, dict] = field(default_factory=dict)
    """Cycles by controller state, per pipeline stage: ``{"front": {name: cycles}, "back": ...}``
    (numbers until :func:`name_states` names them)."""
    mismatches: int = 0
    checked: int = 0
    wall_s: float = 0.0
    float_error: dict | None = None

    @property
    def cycles(self) -> int:
        return (max(self.end) - min(self.start) + 1) if self.end else 0

    def charged(self) -> list[int]:
        """Cycles charged to each command (see the module docstring)."""
        out, prev = [], min(self.start) if self.start else 0
        for e in self.end:
            out.append(max(0, e - prev))
            prev = max(prev, e)
        return out


def name_states(res: RunResult, names: dict[str, list[str]]) -> None:
    """Replace state numbers by the names the elaborator wrote (the ``states`` of ``contract.json``)."""
    res.states = {unit: {(names[unit][k] if k < len(names[unit]) else str(k)): v for k, v in counts.items()}
                  for unit, counts in res.states.items()}


def read_log(path: Path) -> tuple[list[int], list[int]]:
    start, end = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            start.append(int(row["start_cycle"]))
            end.append(int(row["end_cycle"]))
    return start, end


def progress(label: str):
    """A progress callback for ``program.build`` printing at most ~20 updates."""
    state = {"last": -1}

    def cb(i: int, n: int) -> None:
        pct = 100 * i // max(n, 1)
        if pct // 5 != state["last"] // 5 or i == n:
            state["last"] = pct
            print(f"\r  {label}: {i}/{n} rows ({pct}%)", file=sys.stderr, end="\n" if i == n else "", flush=True)
    return cb


def load_rows(path: Path, limit: int | None, step: int | None):
    """Read the workload (``workloads.csvschema``): the workload and its selected rows."""
    wl = read_workload(path)
    rows = [r for r in wl.rows if step is None or r.iteration_id == step][:limit]
    if not rows:
        raise InputError(f"{path}: no rows selected (--step {step}, --limit {limit})")
    return wl, rows


def check_against_hardware(path: Path, rows, params) -> None:
    """Reject rows this hardware preset cannot run, naming the line and field
    (``spatten.sim.inputs.check_rows``; raises ``InputError``)."""
    check_rows(path, rows, params)


class Simulation:
    """One program running on the native simulator, in the background.

    ``Simulation(...)`` writes the memory image and command stream and starts the
    simulator; ``result()`` waits for it, reads its outputs and compares every response
    with the golden model's. Two can run at once (the sparse run and the dense baseline).
    """

    def __init__(self, exe: Path, prog, workdir: Path, backend: str, dram_config: Path, label: str,
                 check: bool, stall_percent: int = 0, trace: bool = False, waves: bool = False) -> None:
        self.prog, self.workdir, self.label, self.check = prog, workdir, label, check
        workdir.mkdir(parents=True, exist_ok=True)
        image = workdir / "memory.bin"
        cmds = workdir / "commands.bin"
        self.resp = workdir / "responses.bin"
        self.log = workdir / "commands.csv"
        self.stats = workdir / "dram_stats.json"
        prog.image.save(image)
        write_stream(cmds, prog.words)
        print(f"  {label}: simulating {len(prog.commands)} commands "
              f"({image.stat().st_size / (1 << 20):.1f} MiB memory image)", file=sys.stderr)
        argv = [str(exe), "--commands", str(cmds), "--responses", str(self.resp), "--log", str(self.log),
                "--progress-every", str(max(1, len(prog.commands) // 10)), "--name", label,
                f"+dram_backend={backend}", f"+dram_image={image}", f"+dram_stats={self.stats}",
                f"+clock_mhz={prog.params.clock_mhz}", "+dram_quiet"]
        if backend != "ideal":
            argv.append(f"+dram_config={dram_config}")
        if stall_percent:
            argv += ["--stall-percent", str(stall_percent)]
        if trace:  # every DRAM request with its cycle, for hardware/dpi/compare_ramulator2.py --trace
            argv.append(f"+dram_trace={workdir / 'dram.trace'}")
        if waves:  # every signal, every cycle (exe built with tracing)
            argv += ["--waves", str(workdir / "waves.vcd")]
        self.t0 = time.monotonic()


        self.proc = procs.popen(argv)  # own process group, stopped on a signal or a failed run

    def result(self):
        self.proc.wait()
        return _collect(self, time.monotonic() - self.t0)


def simulate(exe: Path, prog, workdir: Path, backend: str, dram_config: Path, label: str,
             check: bool, stall_percent: int = 0):
    """Run one program on the native simulator and wait; compare every response."""
    return Simulation(exe, prog, workdir, backend, dram_config, label, check, stall_percent).result()


def _collect(sim: Simulation, wall: float):
    prog, label, check, log, stats, resp = sim.prog, sim.label, sim.check, sim.log, sim.stats, sim.resp
    proc = sim.proc

    if proc.returncode != 0:
        raise SimulationError(f"the simulator failed (exit {proc.returncode}); see the messages above")
    start, end = read_log(log)
    res = RunResult(prog=prog, start=start, end=end, wall_s=wall)
    if stats.is_file():
        res.dram_stats = json.loads(stats.read_text())
    states_file = Path(str(log) + ".states")
    if states_file.is_file():
        for line in states_file.read_text().splitlines()[1:]:
            unit, k, v = line.split(",")
            res.states.setdefault(unit, {})[int(k)] = int(v)
    if check:
        packets, rest = split_packets(read_stream(resp))
        if rest or len(packets) != len(prog.expected):
            raise SimulationError(f"{label}: expected {len(prog.expected)} responses, got "
                                       f"{len(packets)} (+{len(rest)} stray words)")
        shown = 0
        for i, (exp, act) in enumerate(zip(prog.expected, packets)):
            problems = compare_responses(exp, act)
            res.checked += 1
            if problems:
                res.mismatches += 1
                if shown < 5:
                    info = prog.info[i]
                    print(f"  MISMATCH {label} command {i} ({info.kind}, row {info.row}, layer "
                          f"{info.layer}, head {info.head}): " + "; ".join(problems[:4]), file=sys.stderr)
                    shown += 1
        if prog.float_checks:
            res.float_error = float_error(prog)
    return res


def float_error(prog) -> dict:
    """Summary of the float-reference checks of a functional program (the RTL matched the
    golden model bit for bit, so these hold for the RTL's outputs)."""
    checks = list(prog.float_checks.values())
    if not checks:
        return {}
    err = np.array([c.err for c in checks])
    ratio = np.array([c.err / c.tol if c.tol else 0.0 for c in checks])
    em = np.array([c.err_model for c in checks if c.err_model is not None])
    model = {"model_max_abs": float(em.max()), "model_mean_abs": float(em.mean()),
             "model_units": "the model's V units (quantization included), vs out_ref"} if em.size else \
        {"model_max_abs": None, "model_units": "not checked: the tensors have no out_ref"}
    return {"requests": len(checks), "max_abs": float(err.max()), "mean_abs": float(err.mean()),
            "units": "integer V units (o / 2^16 vs float attention on the same integers)",
            "max_over_tolerance": float(ratio.max()), "violations": int((ratio > 1).sum()),
            "tolerance": "spatten.contract.reference.fixed_point_tolerance(N, M, max|v|)",
            # valueTopK on near-equal probabilities (or a threshold between them): a different, equally
            # valid selection than the model's float one (within reference.probability_tolerance), or
            # one no bound explains
            "value_selection_ties": sum(c.tie for c in checks),
            "value_selection_violations": sum(c.tie_violation for c in checks), **model}
