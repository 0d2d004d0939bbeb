#!/usr/bin/env python3
"""Simulate the SpAtten accelerator on a workload and report what pruning bought.

    python run.py hardware/workloads/<name>.csv [--preset eighth] [--dram builtin]

The workload is read and checked first (a malformed CSV is rejected before anything is
built). Then the native Verilator simulator of ``SpAttenTop`` with the DPI DRAM model is
built (cached under ``build/``), the workload's commands and memory image are made
(``tools/program.py``), the accelerator runs over every request, every response is
compared with the bit-exact golden model, a dense baseline of the same workload runs on
the same hardware, and the report goes to ``--out`` (default ``results/<workload>/``):
``summary.json``, ``summary.md`` (the table, also printed), ``summary.txt`` (the original
SpAtten line) and plots. Exit status: 0 when every response matched, 1 on a mismatch,
2 on bad input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = ["tiny", "eighth", "paper"]
DEFAULT_DRAM_CONFIG = ROOT / "hardware" / "dpi" / "configs" / "HBM2.yaml"


def _progress(label: str):
    """A progress callback for ``program.build`` printing at most ~20 updates."""
    state = {"last": -1}

    def cb(i: int, n: int) -> None:
        pct = 100 * i // max(n, 1)
        if pct // 5 != state["last"] // 5 or i == n:
            state["last"] = pct
            click.echo(f"\r  {label}: {i}/{n} rows ({pct}%)", err=True, nl=i == n)
    return cb


def load_rows(path: Path, limit: int | None, step: int | None):
    """Read the workload (``workloads.csvschema``) into ``tools.program.Row``s."""
    from tools.program import Row
    from workloads.csvschema import read_workload

    wl = read_workload(path)
    rows = []
    for idx, r in enumerate(wl.rows):
        if step is not None and r.iteration_id != step:
            continue
        rows.append(Row(
            line=idx + 2, iteration=r.iteration_id, layer=r.layer_id, head=r.head_id,
            d=int(r.embedding_length_D), sentence_len=r.sentence_length_L,
            key_fetch_num=r.key_fetch_num, quant_key_bit=r.quant_key_bit,
            quant_query_bit=r.quant_query_bit, requant_threshold=float(r.auto_requant_thres),
            if_requant=bool(r.if_requant), requant_incre=r.auto_requant_incre,
            value_fetch_num=r.value_fetch_num, quant_value_bit=r.quant_value_bit,
            accumulate_importance=bool(r.if_accumulate_importance),
            rescale_importance=bool(r.if_rescale_previous_importance),
            if_topk=bool(r.if_topk), topk=r.topk))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise click.UsageError(f"{path}: no rows selected (--step {step}, --limit {limit})")
    return wl, rows


def check_against_hardware(path: Path, rows, params) -> None:
    """Reject rows this hardware preset cannot run, naming the line and field."""
    for r in rows:
        if r.d > params.max_head_dim:
            raise click.ClickException(
                f"{path}:{r.line}: embedding_length_D={r.d} exceeds the preset's maxHeadDim="
                f"{params.max_head_dim}; choose a larger --preset")
        n = max(r.key_fetch_num, r.sentence_len)
        if n > params.max_tokens:
            raise click.ClickException(
                f"{path}:{r.line}: {n} keys exceed the preset's maxTokens={params.max_tokens}; "
                f"choose a larger --preset")


def simulate(exe: Path, prog, workdir: Path, backend: str, dram_config: Path, label: str,
             check: bool, stall_percent: int = 0):
    """Run one program on the native simulator; compare every response."""
    from tools.report import RunResult, read_log
    from workloads.commands import compare_responses, read_stream, split_packets, write_stream

    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "memory.bin"
    cmds = workdir / "commands.bin"
    resp = workdir / "responses.bin"
    log = workdir / "commands.csv"
    stats = workdir / "dram_stats.json"
    prog.image.save(image)
    write_stream(cmds, prog.words)
    click.echo(f"  {label}: simulating {len(prog.commands)} commands "
               f"({image.stat().st_size / (1 << 20):.1f} MiB memory image)", err=True)
    import subprocess
    t0 = time.monotonic()
    argv = [str(exe), "--commands", str(cmds), "--responses", str(resp), "--log", str(log),
            "--progress-every", str(max(1, len(prog.commands) // 10)),
            f"+dram_backend={backend}", f"+dram_image={image}", f"+dram_stats={stats}",
            f"+clock_mhz={prog.params.clock_mhz}"]
    if backend != "ideal":
        argv.append(f"+dram_config={dram_config}")
    if stall_percent:
        argv += ["--stall-percent", str(stall_percent)]
    proc = subprocess.run(argv)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise click.ClickException(f"the simulator failed (exit {proc.returncode}); see the messages above")
    start, end = read_log(log)
    res = RunResult(prog=prog, start=start, end=end, wall_s=wall)
    if stats.is_file():
        res.dram_stats = json.loads(stats.read_text())
    states_file = Path(str(log) + ".states")
    if states_file.is_file():
        for line in states_file.read_text().splitlines()[1:]:
            k, v = line.split(",")
            res.states[k] = int(v)
    if check:
        packets, rest = split_packets(read_stream(resp))
        if rest or len(packets) != len(prog.expected):
            raise click.ClickException(f"{label}: expected {len(prog.expected)} responses, got "
                                       f"{len(packets)} (+{len(rest)} stray words)")
        shown = 0
        for i, (exp, act) in enumerate(zip(prog.expected, packets)):
            problems = compare_responses(exp, act)
            res.checked += 1
            if problems:
                res.mismatches += 1
                if shown < 5:
                    info = prog.info[i]
                    click.echo(f"  MISMATCH {label} command {i} ({info.kind}, row {info.row}, layer "
                               f"{info.layer}, head {info.head}): " + "; ".join(problems[:4]), err=True)
                    shown += 1
        if prog.reference_out:
            res.float_error = float_error(prog, packets)
    return res


def float_error(prog, packets) -> dict:
    """Distance of the accelerator's outputs (as floats) from the PyTorch float outputs of
    the workload, relative to the largest |V| of the head."""
    from workloads.commands import AttendResp, decode_response

    errs, rel = [], []
    for i, ref in prog.reference_out.items():
        r = decode_response(packets[i])
        if not isinstance(r, AttendResp):
            continue
        out = np.asarray(r.out, dtype=np.float64) * prog.value_scale[i] / 65536.0
        e = np.abs(out - ref)
        errs.append(float(e.max()))
        rel.append(float(e.mean()))
    return {"max_abs": max(errs) if errs else 0.0, "mean_abs": float(np.mean(rel)) if rel else 0.0,
            "requests": len(errs)}


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
def main(workload: Path, preset: str, backend: str, dram_config: Path | None, limit: int | None,
         step: int | None, out: Path | None, dense: bool, check: bool, seed: int) -> None:
    """Simulate WORKLOAD (a workload CSV; tensors beside it as <name>.npz are used when present)."""
    from tools import hwbuild, program, report
    from workloads.csvschema import WorkloadError
    from workloads.params import load as load_params

    t_start = time.monotonic()
    try:
        wl, rows = load_rows(workload, limit, step)
    except WorkloadError as e:
        raise click.ClickException(str(e)) from None
    npz = workload.with_suffix(".npz")
    tensors = None
    if npz.is_file():
        tensors = dict(np.load(npz, allow_pickle=False))
        if limit is not None or step is not None:
            raise click.UsageError("--limit/--step select rows of the CSV; with tensors beside it, "
                                   "run the whole workload (or regenerate it smaller with gen_workload.py)")
    out = out or ROOT / "results" / workload.stem
    dram_config = dram_config or DEFAULT_DRAM_CONFIG
    if backend != "ideal" and not dram_config.is_file():
        raise click.ClickException(f"DRAM config {dram_config} does not exist (see hardware/dpi/configs/)")
    click.echo(f"[run] {workload}: {len(rows)} rows, {'functional (tensors)' if tensors else 'synthetic data'}; "
               f"preset {preset}, DRAM {backend}", err=True)

    params = load_params(hwbuild.params_json(preset))
    check_against_hardware(workload, rows, params)
    exe = hwbuild.build_native("SpAttenTop", preset, [ROOT / "hardware" / "harness" / "spatten_sim.cpp"])

    click.echo("[run] building the program (golden model on every request)", err=True)
    sparse_prog = program.build(rows, params, tensors=tensors, seed=seed, progress=_progress("SpAtten"))
    sparse = simulate(exe, sparse_prog, out / "sparse", backend, dram_config, "SpAtten", check)
    dense_res = None
    if dense:
        dense_prog = program.build(program.dense_rows(rows), params, tensors=None, seed=seed, dense=True,
                                   progress=_progress("dense"))
        dense_res = simulate(exe, dense_prog, out / "dense", backend, dram_config, "dense", check)

    s = report.summarize(workload, preset, backend, sparse, dense_res)
    s["run_wall_s"] = time.monotonic() - t_start
    files = report.write_all(s, params, out)
    click.echo(report.table(s))
    click.echo(f"[run] report: {', '.join(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f) for f in files)}",
               err=True)
    bad = sparse.mismatches + (dense_res.mismatches if dense_res else 0)
    if bad:
        click.echo(f"[run] FAILED: {bad} responses differ from the golden model", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
