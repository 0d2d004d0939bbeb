#!/usr/bin/env python3
"""Benchmark: simulation speed of the native simulator, and the cost of the DRAM model.

    python tools/bench_sim.py [--presets eighth,paper] [--layers 2] [--heads 12] [--context 1024]

For each preset it builds the native simulator (cached), makes one synthetic GPT-2-like
workload (``--layers`` x ``--heads`` ATTEND requests over ``--context`` tokens, 6-bit
keys with 4 LSB bits, local value pruning, cascade token pruning after each layer), and
runs it with the built-in HBM2 model and with the ideal fixed-latency memory, both
through the same DPI-C port. It prints simulated cycles per second, requests per second,
and how much the HBM2 model slows the simulation relative to the ideal memory (per
simulated cycle). Every response is checked against the golden model, as in run.py.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from spatten.contract.params import load_params
from spatten.errors import SpAttenError
from spatten.sim import build as hwbuild
from spatten.sim import program
from spatten.sim.simulate import simulate
from workloads.csvschema import WorkloadRow

ROOT = Path(__file__).resolve().parents[1]


def synthetic_rows(layers: int, heads: int, context: int, d: int = 64):
    """One decode step of a GPT-2-small-like pruned workload (``WorkloadRow``s)."""
    rows, n = [], context
    for layer in range(layers):
        for head in range(heads):
            last = head == heads - 1
            keep = max(1, int(n * 0.8)) if last else -1
            rows.append(WorkloadRow(
                iteration_id=0, layer_id=layer, head_id=head, embedding_length_D=d, sentence_length_L=context,
                key_fetch_num=n, quant_key_bit=6, quant_query_bit=16, auto_requant_thres=0.05,
                if_requant=head % 4 == 0, auto_requant_incre=4, value_fetch_num=max(1, n // 5),
                quant_value_bit=6, if_accumulate_importance=True, if_rescale_previous_importance=False,
                if_topk=last, topk=keep, index=len(rows)))
        n = max(1, int(n * 0.8))
    return rows


@click.command()
@click.option("--presets", default="eighth,paper", show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--heads", default=12, show_default=True)
@click.option("--context", default=1024, show_default=True)
@click.option("--backends", default="builtin,ideal", show_default=True)
def main(presets: str, layers: int, heads: int, context: int, backends: str) -> None:
    try:
        _bench(presets, layers, heads, context, backends)
    except SpAttenError as e:
        raise click.ClickException(str(e)) from None


def _bench(presets: str, layers: int, heads: int, context: int, backends: str) -> None:
    results = []
    cfg = ROOT / "hardware" / "dpi" / "configs" / "hbm2.yaml"
    for preset in presets.split(","):
        params = load_params(hwbuild.contract_json(preset))
        exe = hwbuild.build_native("SpAttenTop", preset, [ROOT / "hardware" / "harness" / "spatten_sim.cpp"])
        rows = synthetic_rows(layers, heads, context, d=min(64, params.max_head_dim))
        t0 = time.monotonic()
        prog = program.build(rows, params, seed=1)
        click.echo(f"[bench] {preset}: program of {len(prog.commands)} commands built in "
                   f"{time.monotonic() - t0:.1f} s", err=True)
        for backend in backends.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                res = simulate(exe, prog, Path(tmp), backend, cfg, f"{preset}/{backend}", check=True)
            if res.mismatches:
                raise click.ClickException(f"{preset}/{backend}: {res.mismatches} responses differ")
            results.append((preset, backend, len(rows), res.cycles, res.wall_s))

    click.echo(f"\n{'preset':8} {'DRAM':8} {'requests':>8} {'cycles':>12} {'wall s':>8} "
               f"{'cycles/s':>12} {'requests/s':>11}")
    for preset, backend, n, cyc, wall in results:
        click.echo(f"{preset:8} {backend:8} {n:>8} {cyc:>12,} {wall:>8.2f} {cyc / wall:>12,.0f} {n / wall:>11.1f}")
    by = {(p, b): (c, w) for p, b, _, c, w in results}
    for preset in presets.split(","):
        if (preset, "builtin") in by and (preset, "ideal") in by:
            (cb, wb), (ci, wi) = by[(preset, "builtin")], by[(preset, "ideal")]
            overhead = (wb / cb) / (wi / ci) - 1
            click.echo(f"{preset}: the HBM2 model costs {100 * overhead:+.1f}% wall time per simulated cycle "
                       f"over the ideal memory (both through DPI-C)")


if __name__ == "__main__":
    main()
