#!/usr/bin/env python3
"""Generate a synthetic grouped-query long-context workload (CSV + tensors), no model needed.

    python tools/gen_synthetic.py                       # D 128, 32 query heads over 8 K/V heads,
                                                        # 8,192-token context, 4 layers, 2 steps
    python tools/gen_synthetic.py --layers 2 --steps 1 --context 512 --out /tmp/x.csv

Keys and values are seeded random data with attention sinks and heavy-hitter tokens
(``workloads/synthetic.py``); the SpAtten algorithm of ``workloads/spatten/`` prunes and
quantizes them under ``--policy`` exactly as it does a Hugging Face model's, and the files
are in the format ``tools/gen_workload.py`` writes (``workloads/csvschema.py``): ``run.py``
simulates them functionally, every response checked against the golden model. The same
options and seed give the same files. The default name is
``hardware/workloads/synthetic-gqa-d<D>-h<Q>x<KV>-ctx<N>-l<L>-s<S>[-seed<K>][-<policy>].csv``.
Exit status: 0 on success, 2 on bad input.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

from workloads.csvschema import atomic_write_bytes, format_workload
from workloads.spatten.policy import DEFAULT_POLICY, PolicyError, load_policy
from workloads.synthetic import SyntheticSpec, generate_synthetic

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "hardware" / "workloads"


def default_name(spec: SyntheticSpec, policy: str) -> str:
    name = (f"synthetic-gqa-d{spec.head_dim}-h{spec.q_heads}x{spec.kv_heads}-ctx{spec.context}"
            f"-l{spec.layers}-s{spec.steps}")
    if spec.seed != 1:
        name += f"-seed{spec.seed}"
    if policy != DEFAULT_POLICY:
        name += "-" + Path(policy).stem
    return name + ".csv"


def _config_line(source: str, name: str) -> str:
    try:
        return str(Path(source).resolve().relative_to(REPO))
    except (ValueError, OSError):
        return name


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--layers", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--q-heads", type=click.IntRange(min=1), default=32, show_default=True, help="Query heads.")
@click.option("--kv-heads", type=click.IntRange(min=1), default=8, show_default=True, help="K/V heads (GQA groups).")
@click.option("--head-dim", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--context", type=click.IntRange(min=2), default=8192, show_default=True,
              help="Tokens in the cache before the first decode step.")
@click.option("--steps", type=click.IntRange(min=1), default=2, show_default=True, help="Decode steps recorded.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--policy", default=DEFAULT_POLICY, show_default=True, help="Policy preset name or YAML path.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output CSV (the .npz goes beside it) [default: hardware/workloads/<default name>].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads.")
def main(layers: int, q_heads: int, kv_heads: int, head_dim: int, context: int, steps: int, seed: int,
         policy: str, out: Path | None, threads: int) -> None:
    """Write a synthetic GQA decode workload and its tensors."""
    command = "python tools/gen_synthetic.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    torch.set_num_threads(threads)
    spec = SyntheticSpec(layers=layers, q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim, context=context,
                         steps=steps, seed=seed)
    try:
        spec.check()
        pol = load_policy(policy)
    except (ValueError, PolicyError) as exc:
        raise click.UsageError(str(exc)) from exc
    if out is not None and out.suffix != ".csv":
        raise click.BadParameter(f"{out}: the output must be a .csv path", param_hint="--out")
    csv_path = out or OUT_DIR / default_name(spec, policy)
    npz_path = csv_path.with_suffix(".npz")
    t0 = time.perf_counter()
    with click.progressbar(length=steps, label="decode", file=sys.stderr) as bar:
        built, meta = generate_synthetic(spec, pol, on_step=lambda _s: bar.update(1))
    meta["command"] = command
    meta["policy_file"] = _config_line(pol.source, pol.name)
    assert built.tensors is not None
    built.tensors["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez_compressed(buf, **built.tensors)
    csv_text = format_workload(built.rows, _config_line(pol.source, pol.name))
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(npz_path, buf.getvalue())
    try:
        atomic_write_bytes(csv_path, csv_text.encode("utf-8"))
    except BaseException:
        npz_path.unlink(missing_ok=True)
        raise
    fetched = sum(r.kv_bytes() for r in built.rows)
    dense = sum(r.dense_kv_bytes() for r in built.rows)
    summary = {
        "rows": len(built.rows),
        "kv_bytes_fraction_of_dense_per_head": fetched / dense if dense else None,
        "requant_rows": sum(r.if_requant for r in built.rows),
        "kept_tokens_by_layer": {str(r.layer_id): r.key_fetch_num for r in built.rows if r.iteration_id == 0},
        "seconds": round(time.perf_counter() - t0, 1),
        "csv": str(csv_path),
        "npz": str(npz_path),
        "npz_bytes": npz_path.stat().st_size,
        "simulate": f"python run.py {csv_path} --preset paper",
    }
    click.echo(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
