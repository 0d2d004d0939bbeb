#!/usr/bin/env python3
"""Time tools/gen_workload.py (default: SmolLM2-135M, 1,024-token context, 32 steps).

Prints wall time and this process's CPU time (the machine is shared, so wall time
depends on the load; the load average is printed too). Output goes to a temporary
folder unless ``--out`` is given.

    python tools/bench_gen_workload.py                 # the acceptance setting
    python tools/bench_gen_workload.py --no-tensors --steps 8
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import click
import torch

REPO = Path(__file__).resolve().parent.parent

from tools.gen_workload import generate
from workloads.spatten.policy import DEFAULT_POLICY
from workloads.text import DEFAULT_TEXT


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="smollm2-135m", show_default=True)
@click.option("--text", default=DEFAULT_TEXT, show_default=True)
@click.option("--context", default=1024, show_default=True)
@click.option("--steps", default=32, show_default=True)
@click.option("--policy", default=DEFAULT_POLICY, show_default=True)
@click.option("--tensors/--no-tensors", default=True, show_default=True)
@click.option("--limit-s", default=600.0, show_default=True, help="Budget; exit status 1 when the wall time exceeds it.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Keep the CSV here (default: temp dir).")
@click.option("--threads", default=1, show_default=True, help="torch threads (as gen_workload's default).")
def main(
    model: str, text: str, context: int, steps: int, policy: str, tensors: bool, limit_s: float, out: Path | None,
    threads: int,
) -> None:
    """Run gen_workload once and print its timing."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        target = out or Path(tmp) / "bench.csv"
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), _cpu_s()
        _csv, npz, summary = generate(model, text, context, steps, policy, target, tensors, quiet=True)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    result = {
        "model": model, "context": context, "steps": steps, "policy": policy, "tensors": tensors,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": torch.get_num_threads(),
        "loadavg_start": round(load0, 2), "loadavg_end": round(os.getloadavg()[0], 2), "limit_s": limit_s,
        "within_limit": wall <= limit_s, **{k: summary[k] for k in ("rows", "load_s", "run_s", "npz_bytes")},
    }
    click.echo(json.dumps(result, indent=1))
    if wall > limit_s:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
