#!/usr/bin/env python3
"""Generate a SpAtten workload CSV (and tensors) from a Hugging Face model and real text.

Examples::

    python tools/gen_workload.py --model gpt2        # -> hardware/workloads/gpt2.csv
    python tools/gen_workload.py --model smollm2-135m --tensors \\
        --out hardware/workloads/smollm2-135m-ctx1024-s32-spatten-default.csv   # the shipped one

The default name is ``<model>.csv`` (an HF id's ``/`` becomes ``--``); settings that
differ from the defaults add ``-ctx<N>``, ``-s<N>``, ``-<policy>``. The tool ends by
printing the ``run.py`` command that simulates what it wrote.

Causal models prefill ``--context`` tokens of the text, then decode ``--steps`` tokens
teacher-forced from the same text; the CSV has one row per (decode step, layer,
surviving head). Encoders (BERT family) run one pass over ``--context`` tokens and get
one row per (layer, surviving query token, surviving head). Nothing is written unless
everything succeeded; both files are written atomically. The text, ``--steps``,
``--context`` and the policy are checked before the model is loaded. Exit status: 0 on
success, 2 on bad input (as ``run.py`` and ``eval_accuracy.py``).
"""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

from workloads.csvschema import atomic_write_bytes, format_workload
from workloads.models import ModelError, load_model, model_kind
from workloads.spatten.export import build_workload, kv_bytes_ratio, run_sequence, scales_meta
from workloads.spatten.hardware import software_only_reasons
from workloads.spatten.hooks import model_geometry
from workloads.spatten.overrides import load_policy_spec
from workloads.spatten.policy import DEFAULT_POLICY, PolicyError
from workloads.text import DEFAULT_TEXT, TextError, check_text, load_tokens

OUT_DIR = REPO / "hardware" / "workloads"


DEFAULT_CONTEXT, DEFAULT_STEPS = 1024, 32


class BadInput(click.ClickException):
    """Bad input (text, model, policy): exit status 2, as for a bad option."""

    exit_code = 2


def _slug(text: str) -> str:
    if model_kind(text) == "hub":  # HF id: keep its case, "/" -> "--" (HuggingFaceTB--SmolLM2-135M)
        return "--".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.") for part in text.split("/"))
    base = Path(text).stem if ("/" in text or text.endswith(".gguf")) else text
    return re.sub(r"[^A-Za-z0-9.]+", "-", base).strip("-").lower()


def default_name(model: str, context: int, steps: int, policy: str, causal: bool) -> str:
    """``<model>.csv`` for the default settings; each setting that differs adds its part
    (``-ctx<N>``, ``-s<N>`` for causal models, ``-<policy>``)."""
    parts = [_slug(model)]
    if context != DEFAULT_CONTEXT:
        parts.append(f"ctx{context}")
    if causal and steps != DEFAULT_STEPS:
        parts.append(f"s{steps}")
    if policy != DEFAULT_POLICY:
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "-", policy))
    return "-".join(parts) + ".csv"


def run_command(csv_path: Path) -> str:
    """The command that simulates ``csv_path`` (relative to the current directory when inside it)."""
    try:
        shown = csv_path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = csv_path.resolve()
    run_py = REPO / "run.py"
    try:
        run_shown = run_py.relative_to(Path.cwd().resolve())
    except ValueError:
        run_shown = run_py
    return f"python {shlex.quote(str(run_shown))} {shlex.quote(str(shown))}"


def config_line(policy_source: str, policy_name: str) -> str:
    """The trailing config-name line: the policy file, relative to the repo when inside it."""
    src = Path(policy_source).resolve()
    try:
        return str(src.relative_to(REPO))
    except ValueError:
        return policy_name if not policy_source else str(src)


def generate(
    model: str,
    text: str,
    context: int,
    steps: int,
    policy: str,
    out: Path | None,
    tensors: bool,
    quiet: bool = False,
    command: str = "",
    kv_dtype: str = "float16",
) -> tuple[Path, Path | None, dict[str, object]]:
    """Run the generator; returns (csv path, npz path or None, summary). Raises on bad input."""
    if context < 2:
        raise click.BadParameter("must be >= 2", param_hint="--context")
    if steps < 1:
        raise click.BadParameter("a causal model needs at least one decode step (encoders ignore --steps)",
                                 param_hint="--steps")
    pol = load_policy_spec(policy)
    why = software_only_reasons(pol)
    if why:
        raise PolicyError(f"{pol.source or policy}: policy {pol.name!r} is software-only (evaluate it with "
                          "tools/eval_accuracy.py); the accelerator cannot run it: " + "; ".join(why))
    out_dir = None
    if out is not None and (out.is_dir() or str(out).endswith("/")):
        out_dir, out = out, None
    if out is not None and out.suffix != ".csv":
        raise click.BadParameter(f"{out}: the output must be a .csv path or a directory", param_hint="--out")
    check_text(text, context - 2)  # before the model is loaded: empty, binary or too short (any model)
    t0 = time.perf_counter()
    lm = load_model(model)
    causal = lm.causal
    if not causal:
        steps = 0
        max_pos = getattr(lm.model.config, "max_position_embeddings", context)
        if context > max_pos:
            raise click.BadParameter(f"{model} accepts at most {max_pos} tokens", param_hint="--context")
    elif steps < 1:
        raise click.BadParameter("a causal model needs at least one decode step", param_hint="--steps")
    ids = load_tokens(lm.tokenizer, text, context + steps, encoder=not causal)
    geo = model_geometry(lm.model)
    t_load = time.perf_counter() - t0
    csv_path = out or (out_dir or OUT_DIR) / default_name(model, context, steps, pol.name, causal)
    npz_path = csv_path.with_suffix(".npz") if tensors else None

    label = "prefill + decode" if causal else "encode"
    with click.progressbar(length=steps + 1, label=label, file=sys.stderr if not quiet else io.StringIO()) as bar:
        run = run_sequence(
            lm.model, ids, pol, context, steps, causal, record=True, record_tensors=tensors,
            on_step=lambda _i: bar.update(1),
        )
    t_run = time.perf_counter() - t0 - t_load
    meta = {
        "model": model,
        "model_type": lm.model_type,
        "n_layers": geo["n_layers"],
        "n_heads": geo["n_heads"],
        "n_kv_heads": geo["n_kv_heads"],
        "head_dim": geo["head_dim"],
        "causal": causal,
        "softmax_scale": run.state.softmax_scale.get(0, float(geo["head_dim"]) ** -0.5),
        "softmax_scale_per_layer": [run.state.softmax_scale[i] for i in sorted(run.state.softmax_scale)],
        "context": context,
        "steps": steps,
        "policy": pol.name,
        "policy_file": config_line(pol.source, pol.name),
        "text": text,
        "command": command,
        "dtypes": {"q": "float32", "out_ref": "float32", "k": kv_dtype, "v": kv_dtype},
        "scales": scales_meta(pol),
    }
    built = build_workload(run.state, tensors=tensors, meta=meta, kv_dtype=kv_dtype)
    csv_text = format_workload(built.rows, config_line(pol.source, pol.name))
    fetched, dense = kv_bytes_ratio(run.state)
    if npz_path is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **built.tensors)  # type: ignore[arg-type]
        atomic_write_bytes(npz_path, buf.getvalue())
    try:
        atomic_write_bytes(csv_path, csv_text.encode("utf-8"))
    except BaseException:
        if npz_path is not None and npz_path.exists():
            npz_path.unlink()
        raise
    summary = {
        "rows": len(built.rows),
        "kv_bytes_fraction_of_dense": fetched / dense,
        "load_s": round(t_load, 1),
        "run_s": round(t_run, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "csv": str(csv_path),
        "npz": str(npz_path) if npz_path else None,
        "npz_bytes": npz_path.stat().st_size if npz_path else None,
        "simulate": run_command(csv_path),
    }
    if run.nll:
        summary["decode_ppl"] = float(np.exp(np.mean(run.nll)))
    return csv_path, npz_path, summary


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", required=True,
              help="HF id (from the HF cache, else downloaded), local dir, .gguf file, or smollm2-135m / minilm-l6.")
@click.option("--text", default=DEFAULT_TEXT, show_default=True, help="Text file, or dataset:<name>[:<config>[:<split>]].")
@click.option("--context", default=1024, show_default=True, help="Prefill tokens (encoders: sequence length).")
@click.option("--steps", default=32, show_default=True, help="Decode steps (ignored for encoders).")
@click.option("--policy", default=DEFAULT_POLICY, show_default=True, help="Preset name or YAML path, optionally with @section.key=value overrides.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output CSV, or a directory for the default name (default: hardware/workloads/<model>[-<settings>].csv).")
@click.option("--tensors/--no-tensors", default=False, help="Also write <stem>.npz for functional simulation.")
@click.option("--kv-dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="dtype of k and v in the npz (q and out_ref are always float32).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads (1 is fastest for decode on a small shared machine).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(
    model: str, text: str, context: int, steps: int, policy: str, out: Path | None, tensors: bool, kv_dtype: str,
    threads: int, quiet: bool,
) -> None:
    """Generate a SpAtten workload CSV from a model and real text."""
    command = "python tools/gen_workload.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    torch.set_num_threads(threads)
    try:
        _csv, _npz, summary = generate(model, text, context, steps, policy, out, tensors, quiet, command, kv_dtype)
    except (ModelError, PolicyError, TextError) as exc:
        raise BadInput(str(exc)) from exc
    click.echo(json.dumps(summary, indent=1))
    click.echo(f"simulate it: {summary['simulate']}")


if __name__ == "__main__":
    main()
