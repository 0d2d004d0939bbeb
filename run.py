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
SpAtten line) and plots. Exit status: 0 when every response matched, 1 on a mismatch
(or a failed simulation), 2 on bad input (found before anything is built: ``--check-only``
stops there), 128 + the signal on SIGINT/SIGTERM (130/143; every child is stopped first
and no report is left half-written).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from spatten.contract.params import from_dict, load_params
from spatten.errors import SpAttenError, exit_code
from spatten.sim import build as hwbuild
from spatten.sim import gpu_compare, inputs, procs, program, report
from spatten.sim.simulate import Simulation, load_rows, name_states, progress

ROOT = Path(__file__).resolve().parent

DEFAULT_DRAM_CONFIG = ROOT / "hardware" / "dpi" / "configs" / "hbm2.yaml"


_written: list[Path] = []
"""The report's files, once written whole (a signal deferred past the writing still stops the run)."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("workload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", default="eighth", show_default=True,
              help="Hardware parameter preset: a name in SpAttenParams.scala (the contract lists them).")
@click.option("--dram", "backend", type=click.Choice(["builtin", "ramulator2", "ideal"]), default="builtin",
              show_default=True, help="DRAM backend of the DPI model.")
@click.option("--dram-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Ramulator2-style YAML of the DRAM [default: {DEFAULT_DRAM_CONFIG.relative_to(ROOT)}].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Run only the first N rows.")
@click.option("--step", type=click.IntRange(min=0), default=None, help="Run only decode step (iteration_id) K.")
@click.option("--out", type=str, default=None,
              help="Output directory [default: results/<workload name>]; one run at a time (locked).")
@click.option("--dense/--no-dense", default=True, show_default=True,
              help="Also run the dense baseline of the workload.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare every response with the golden model.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of synthetic data.")
@click.option("--dram-trace", is_flag=True, help="Record the SpAtten run's DRAM requests to <out>/sparse/dram.trace.")
@click.option("--waves", is_flag=True,
              help="Record every signal of the SpAtten run to <out>/sparse/waves.vcd (a separate simulator build "
                   "with tracing; large and slow: use with --limit or --step).")
@click.option("--gpu-baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A tools/bench_gpu.py result measured on this CSV (hardware/workloads/gpu/): the report puts "
                   "the accelerator's time per decode step (cycles / clockMHz) beside the GPU's, dense and "
                   "compacted (L2 flushed), with the ratios.")
@click.option("--check-only", is_flag=True,
              help="Check every input (CSV against the preset, tensors against the CSV, DRAM config, --out) "
                   "and stop: exit 0 when all are usable, 2 when not; nothing is built.")
def main(**kw) -> None:
    """Simulate WORKLOAD (a workload CSV; tensors beside it as <name>.npz are used when present)."""
    procs.handle_signals()  # SIGINT/SIGTERM stop every simulator and build tool started here
    code = 0
    try:
        code = _main(**kw)
    except procs.Interrupted as e:
        done = (f"the report was written before it came ({_written[0]})" if _written
                else "no report written")
        click.echo(f"[run] {e}: every child process stopped, {done}", err=True)
        code = e.exit_code
    except SpAttenError as e:
        click.echo(f"[run] error: {e}", err=True)
        code = exit_code(e)
    finally:
        procs.stop_all()  # a failed run leaves no simulation behind
    sys.exit(code)


def _main(workload: Path, preset: str, backend: str, dram_config: Path | None, limit: int | None,
          step: int | None, out: str | None, dense: bool, check: bool, seed: int, dram_trace: bool,
          waves: bool, check_only: bool, gpu_baseline: Path | None) -> int:
    t_start = time.monotonic()
    # Every input is checked before anything is built (InputError: exit 2).
    wl, rows = load_rows(workload, limit, step)
    gpu = gpu_compare.load_for_workload(gpu_baseline, workload, wl.rows, rows) if gpu_baseline else None
    inputs.check_backend(backend, dram_config is not None)
    npz = workload.with_suffix(".npz")
    tensors = None
    if npz.exists():
        tensors = inputs.load_tensors(npz)
        note = inputs.check_tensors(npz, tensors, workload, wl.rows)
        if note:
            click.echo(note, err=True)
    dram_config = dram_config or DEFAULT_DRAM_CONFIG
    if backend != "ideal":
        inputs.check_dram_config(dram_config)
    # The contract (parameters of every preset, no hardware elaborated; cached) decides
    # what the rows may ask for.
    contract = hwbuild.load_contract(preset)
    presets = contract["presets"]
    params = from_dict(contract["params"], source=f"contract of preset {preset}")
    inputs.check_rows(workload, rows, params, preset, list(presets),
                      lambda p: from_dict(presets[p], source=f"contract of preset {p}"))
    inputs.check_memory(workload, rows, params, tensors, dense=dense)
    out_dir = inputs.check_out_dir(ROOT / "results" / workload.stem if out is None else out, keep=not check_only)
    click.echo(f"[run] {workload}: {len(rows)} rows, {'functional (tensors)' if tensors else 'synthetic data'}; "
               f"preset {preset}, DRAM {backend}", err=True)
    if check_only:
        click.echo(f"[run] inputs OK: {workload}{' + ' + npz.name if tensors else ''}, preset {preset}, "
                   f"DRAM {backend}, --out {out_dir}"
                   + (f", GPU baseline {gpu_baseline} (measured on this CSV)" if gpu else ""), err=True)
        return 0
    with procs.lock_output(out_dir):
        return _simulate(workload, preset, backend, dram_config, limit, step, out_dir, dense, check, seed,
                         dram_trace, waves, rows, tensors, t_start, gpu, wl.rows)


def _simulate(workload, preset, backend, dram_config, limit, step, out, dense, check, seed, dram_trace, waves,
              rows, tensors, t_start, gpu=None, all_rows=()) -> int:
    import torch

    torch.set_num_threads(1)  # the float checks are small; threads only contend with the simulator
    # One elaboration of SpAttenTop (cached): the run's parameters and state names, and the
    # native builds below, all come from the same build directory.
    rtl = hwbuild.elaborate("SpAttenTop", preset)
    params = load_params(rtl.contract_path)
    harness = [ROOT / "hardware" / "harness" / "spatten_sim.cpp"]
    exe = hwbuild.build_native("SpAttenTop", preset, harness)
    if waves and limit is None and step is None:
        click.echo("[run] warning: --waves over the whole workload makes a very large file; "
                   "consider --limit or --step", err=True)
    wave_exe = hwbuild.build_native("SpAttenTop", preset, harness, waves=True) if waves else exe

    click.echo("[run] building the program (golden model on every request)", err=True)
    sparse_prog = program.build(rows, params, tensors=tensors, seed=seed, progress=progress("SpAtten"))
    inputs.check_no_error_responses(sparse_prog, workload)
    # The sparse simulation runs in the background while the dense baseline is built.
    sparse_sim = Simulation(wave_exe, sparse_prog, out / "sparse", backend, dram_config, "SpAtten", check,
                            trace=dram_trace, waves=waves)
    dense_sim = None
    if dense:
        dense_prog = program.build(program.dense_rows(rows), params, tensors=None, seed=seed, dense=True,
                                   progress=progress("dense"))
        inputs.check_no_error_responses(dense_prog, workload)
        dense_sim = Simulation(exe, dense_prog, out / "dense", backend, dram_config, "dense", check)
    sparse = sparse_sim.result()
    dense_res = dense_sim.result() if dense_sim else None

    for res in (sparse, dense_res):
        if res is not None:
            name_states(res, rtl.states)
    s = report.summarize(workload, preset, backend, sparse, dense_res)
    if gpu is not None:
        s["gpu_baseline"] = gpu_compare.compare(gpu, sparse.prog.info, sparse.charged(), params.clock_mhz,
                                                all_rows, rows)
    s["run_wall_s"] = time.monotonic() - t_start
    with procs.deferred_signals():  # the report is written whole or not at all
        files = report.write_all(s, params, out)
        _written[:] = files
    click.echo(report.table(s))
    click.echo(f"[run] report: {', '.join(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f) for f in files)}",
               err=True)
    bad = sparse.mismatches + (dense_res.mismatches if dense_res else 0)
    if bad:
        click.echo(f"[run] FAILED: {bad} responses differ from the golden model", err=True)
        return 1
    if sparse.float_error and sparse.float_error["violations"]:
        click.echo(f"[run] FAILED: {sparse.float_error['violations']} outputs exceed the float-reference "
                   f"tolerance", err=True)
        return 1
    if sparse.float_error and sparse.float_error.get("value_selection_violations"):
        click.echo(f"[run] FAILED: {sparse.float_error['value_selection_violations']} value selections differ from "
                   f"the model's float top-k by more than the fixed-point probability bound", err=True)
        return 1
    return 0


if __name__ == "__main__":
    main()
