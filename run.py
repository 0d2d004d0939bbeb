#!/usr/bin/env python3
"""Simulate the SpAtten accelerator on a workload and report what pruning bought.

    python run.py hardware/workloads/<name>.csv [--preset eighth] [--dram builtin]

The workload is read and checked first (a malformed CSV is rejected before anything is
built). Then the native Verilator simulator of ``SpAttenTop`` with the DPI DRAM model is
built (cached under ``build/``), the workload's commands and memory image are made
(``spatten.sim.program``), the accelerator runs over every request, every response is
compared with the bit-exact golden model, a dense baseline of the same workload runs on
the same hardware, and the report goes to ``--out`` (default ``results/<workload>/``):
``summary.json``, ``summary.md`` (the table, also printed), ``summary.txt`` (the original
SpAtten line) and plots. Exit status: 0 when every response matched, 1 on a mismatch,
2 on bad input.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from spatten.contract.params import load_params
from spatten.errors import EXIT_FAILURE, InputError, SpAttenError, exit_code
from spatten.sim import build as hwbuild
from spatten.sim import program, report
from spatten.sim.simulate import Simulation, check_against_hardware, load_rows, name_states, progress

ROOT = Path(__file__).resolve().parent

PRESETS = ["tiny", "eighth", "paper"]
DEFAULT_DRAM_CONFIG = ROOT / "hardware" / "dpi" / "configs" / "hbm2.yaml"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("workload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", type=click.Choice(PRESETS), default="eighth", show_default=True,
              help="Hardware parameter preset (SpAttenParams.scala).")
@click.option("--dram", "backend", type=click.Choice(["builtin", "ramulator2", "ideal"]), default="builtin",
              show_default=True, help="DRAM backend of the DPI model.")
@click.option("--dram-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Ramulator2-style YAML of the DRAM [default: {DEFAULT_DRAM_CONFIG.relative_to(ROOT)}].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Run only the first N rows.")
@click.option("--step", type=click.IntRange(min=0), default=None, help="Run only decode step (iteration_id) K.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: results/<workload name>].")
@click.option("--dense/--no-dense", default=True, show_default=True,
              help="Also run the dense baseline of the workload.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare every response with the golden model.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of synthetic data.")
@click.option("--dram-trace", is_flag=True, help="Record the SpAtten run's DRAM requests to <out>/sparse/dram.trace.")
@click.option("--waves", is_flag=True,
              help="Record every signal of the SpAtten run to <out>/sparse/waves.vcd (a separate simulator build "
                   "with tracing; large and slow: use with --limit or --step).")
def main(workload: Path, preset: str, backend: str, dram_config: Path | None, limit: int | None,
         step: int | None, out: Path | None, dense: bool, check: bool, seed: int, dram_trace: bool,
         waves: bool) -> None:
    """Simulate WORKLOAD (a workload CSV; tensors beside it as <name>.npz are used when present)."""
    import torch

    torch.set_num_threads(1)  # the float checks are small; threads only contend with the simulator
    try:
        bad = _run(workload, preset, backend, dram_config, limit, step, out, dense, check, seed, dram_trace, waves)
    except SpAttenError as e:
        click.echo(f"[run] error: {e}", err=True)
        sys.exit(exit_code(e))
    if bad:
        sys.exit(EXIT_FAILURE)


def _run(workload: Path, preset: str, backend: str, dram_config: Path | None, limit: int | None,
         step: int | None, out: Path | None, dense: bool, check: bool, seed: int, dram_trace: bool,
         waves: bool) -> bool:
    """The whole run; True when a response or a float check failed."""
    t_start = time.monotonic()
    wl, rows = load_rows(workload, limit, step)
    npz = workload.with_suffix(".npz")
    tensors = None
    if npz.is_file():
        tensors = dict(np.load(npz, allow_pickle=False))
    out = out or ROOT / "results" / workload.stem
    dram_config = dram_config or DEFAULT_DRAM_CONFIG
    if backend != "ideal" and not dram_config.is_file():
        raise InputError(f"DRAM config {dram_config} does not exist (see hardware/dpi/configs/)")
    click.echo(f"[run] {workload}: {len(rows)} rows, {'functional (tensors)' if tensors else 'synthetic data'}; "
               f"preset {preset}, DRAM {backend}", err=True)

    # One elaboration of SpAttenTop (cached): its parameters and state names, and the
    # native builds below, all come from the same build directory.
    rtl = hwbuild.elaborate("SpAttenTop", preset)
    params = load_params(rtl.contract_path)
    check_against_hardware(workload, rows, params)
    harness = [ROOT / "hardware" / "harness" / "spatten_sim.cpp"]
    exe = hwbuild.build_native("SpAttenTop", preset, harness)
    if waves and limit is None and step is None:
        click.echo("[run] warning: --waves over the whole workload makes a very large file; "
                   "consider --limit or --step", err=True)
    wave_exe = hwbuild.build_native("SpAttenTop", preset, harness, waves=True) if waves else exe

    click.echo("[run] building the program (golden model on every request)", err=True)
    sparse_prog = program.build(rows, params, tensors=tensors, seed=seed, progress=progress("SpAtten"))
    # The sparse simulation runs in the background while the dense baseline is built.
    sparse_sim = Simulation(wave_exe, sparse_prog, out / "sparse", backend, dram_config, "SpAtten", check,
                            trace=dram_trace, waves=waves)
    dense_sim = None
    if dense:
        dense_prog = program.build(program.dense_rows(rows), params, tensors=None, seed=seed, dense=True,
                                   progress=progress("dense"))
        dense_sim = Simulation(exe, dense_prog, out / "dense", backend, dram_config, "dense", check)
    sparse = sparse_sim.result()
    dense_res = dense_sim.result() if dense_sim else None

    states = rtl.states
    for res in (sparse, dense_res):
        if res is not None:
            name_states(res, states)
    s = report.summarize(workload, preset, backend, sparse, dense_res)
    s["run_wall_s"] = time.monotonic() - t_start
    files = report.write_all(s, params, out)
    click.echo(report.table(s))
    click.echo(f"[run] report: {', '.join(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f) for f in files)}",
               err=True)
    bad = sparse.mismatches + (dense_res.mismatches if dense_res else 0)
    if bad:
        click.echo(f"[run] FAILED: {bad} responses differ from the golden model", err=True)
        return True
    if sparse.float_error and sparse.float_error["violations"]:
        click.echo(f"[run] FAILED: {sparse.float_error['violations']} outputs exceed the float-reference "
                   f"tolerance", err=True)
        return True
    return False


if __name__ == "__main__":
    main()
