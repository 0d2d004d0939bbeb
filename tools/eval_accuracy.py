#!/usr/bin/env python3
"""Accuracy cost and K/V traffic of SpAtten policies, against dense attention, on real text.

Causal models: prefill ``--context`` tokens (dense, as SpAtten's summarization stage),
then decode ``--eval-tokens`` tokens one at a time, teacher-forced from the text, under
each policy; perplexity over the decoded tokens. Encoders (BERT family): ``--windows``
windows of ``--context`` tokens; the cosine similarity of the mean-pooled last hidden
state with pruning vs dense. For both: the K/V bytes each policy fetches over all
attention requests (every decode step, layer and query head), relative to dense
(all tokens, 16-bit K and V, every head).

Writes ``<out>.md`` (table), ``<out>.json`` and ``<out>.png`` (plot), atomically.
Exit status: 0 on success, 2 on bad input (options, text, model, policy, ``--merge``
files), as ``run.py`` and ``gen_workload.py``.

Example::

    python tools/eval_accuracy.py --model smollm2-135m --context 512 --eval-tokens 512 \\
        --policy dense --policy spatten-default --policy spatten-paper \\
        --policy sink-recent-heavy --policy spatten-heads --out results/accuracy/smollm2
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

from workloads.csvschema import atomic_write_bytes
from workloads.models import ModelError, load_model
from workloads.spatten.export import kv_bytes_ratio, run_sequence
from workloads.spatten.policy import Policy, PolicyError, load_policy
from workloads.text import DEFAULT_TEXT, TextError, check_text, load_tokens


class BadInput(click.ClickException):
    """Bad input: exit status 2, as for a bad option."""

    exit_code = 2

DEFAULT_POLICIES = (
    "dense", "progressive-quant", "spatten-default", "spatten-balanced", "spatten-heads", "spatten-kv30",
    "sink-recent-heavy", "spatten-paper",
)


def eval_causal(lm, ids: torch.Tensor, pol: Policy, context: int, n_eval: int, bar) -> dict[str, float]:
    """Perplexity of ``n_eval`` teacher-forced decoded tokens and the K/V bytes fraction."""
    run = run_sequence(lm.model, ids, pol, context, n_eval - 1, True, record=True, on_step=lambda _i: bar.update(1))
    fetched, dense = kv_bytes_ratio(run.state) if run.state.records else (0.0, 1.0)
    return {"nll": float(np.mean(run.nll)), "ppl": float(math.exp(np.mean(run.nll))), "kv_fraction": fetched / dense,
            "tokens": len(run.nll)}


def eval_encoder(lm, windows: list[torch.Tensor], pol: Policy, bar) -> dict[str, float]:
    """Mean cosine similarity of pooled outputs vs dense, and the K/V bytes fraction."""
    sims, fetched, dense = [], 0.0, 0.0
    for ids in windows:
        with torch.no_grad():
            ref = lm.model(input_ids=ids).last_hidden_state.mean(dim=1)[0]
        run = run_sequence(lm.model, ids, pol, ids.shape[1], 0, False, record=True)
        got = run.hidden.mean(dim=1)[0]
        sims.append(float(torch.nn.functional.cosine_similarity(ref, got, dim=0)))
        f, d = kv_bytes_ratio(run.state)
        fetched, dense = fetched + f, dense + d
        bar.update(1)
    return {"similarity": float(np.mean(sims)), "min_similarity": float(np.min(sims)), "kv_fraction": fetched / dense}


_WORKER: dict[str, object] = {}


def _worker_init(model: str, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    _WORKER["lm"] = load_model(model)


def _worker_eval(args: tuple[Policy, object, int, int]) -> dict[str, object]:
    pol, data, context, eval_tokens = args
    return _eval_one(_WORKER["lm"], pol, data, context, eval_tokens)


class _NoBar:
    def update(self, _n: int) -> None:
        """Progress is reported per policy in parallel runs."""


def _eval_engine(lm, pol: Policy, data, context: int, eval_tokens: int, engine: str, preset: str):
    """Perplexity with the accelerator in the loop (``spatten.loop``: golden model or RTL)."""
    from spatten.loop.engines import make_engine  # noqa: PLC0415
    from spatten.loop.generate import perplexity  # noqa: PLC0415

    with make_engine(engine, pol, preset=preset, capacity=context + eval_tokens) as eng:
        res = perplexity(lm.model, eng, data, context, eval_tokens)
        if engine == "rtl":
            res["cycles"] = eng.cycles
    return {**res, "engine": engine, "preset": preset}


def _eval_one(lm, pol: Policy, data, context: int, eval_tokens: int, engine: str = "torch",
              preset: str = "eighth") -> dict[str, object]:
    t = time.perf_counter()
    if engine != "torch":
        res = _eval_engine(lm, pol, data, context, eval_tokens, engine, preset)
    elif lm.causal:
        res = eval_causal(lm, data, pol, context, eval_tokens, _NoBar())
    else:
        res = eval_encoder(lm, data, pol, _NoBar())
    out = {"policy": pol.name, "seconds": round(time.perf_counter() - t, 1), **res}
    click.echo(f"{pol.name}: {json.dumps(out)}", err=True)
    return out


def _evaluate_all(model: str, lm, pols: list[Policy], data, context: int, eval_tokens: int, jobs: int,
                  engine: str = "torch", preset: str = "eighth"):
    """Evaluate every policy, in ``jobs`` worker processes when jobs > 1 (order kept)."""
    if jobs <= 1 or engine != "torch":
        return [_eval_one(lm, p, data, context, eval_tokens, engine, preset) for p in pols]
    import concurrent.futures as cf  # noqa: PLC0415
    import multiprocessing as mp  # noqa: PLC0415

    with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                initargs=(model, torch.get_num_threads())) as pool:
        return list(pool.map(_worker_eval, [(p, data, context, eval_tokens) for p in pols]))


def render(results: list[dict[str, object]], causal: bool, header: dict[str, object]) -> str:
    """The markdown table."""
    lines = [f"# SpAtten accuracy: {header['model']}", "", "```", str(header["command"]), "```", ""]
    lines.append(f"text: `{header['text']}`, {header['setting']}, {header['seconds']} s")
    lines.append("")
    if causal:
        lines += ["| policy | perplexity | vs dense | K/V bytes vs dense |", "|---|---:|---:|---:|"]
        for r in results:
            lines.append(f"| {r['policy']} | {r['ppl']:.3f} | {r['ppl_increase'] * 100:+.2f}% | {r['kv_fraction'] * 100:.1f}% |")
    else:
        lines += ["| policy | cosine similarity (mean) | (min) | K/V bytes vs dense |", "|---|---:|---:|---:|"]
        for r in results:
            lines.append(f"| {r['policy']} | {r['similarity']:.4f} | {r['min_similarity']:.4f} | {r['kv_fraction'] * 100:.1f}% |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, object]], causal: bool, title: str) -> bytes:
    """A PNG: K/V bytes fraction vs accuracy, one labelled point per policy."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    key = "ppl_increase" if causal else "similarity"
    xs = [float(r["kv_fraction"]) * 100 for r in results]
    ys = [float(r[key]) * (100 if causal else 1) for r in results]
    ax.scatter(xs, ys)
    for i, (x, y, r) in enumerate(zip(xs, ys, results, strict=True)):
        ax.annotate(str(r["policy"]), (x, y), textcoords="offset points", xytext=(4, 4 + 9 * (i % 3)), fontsize=7)
    if causal and max(ys) > 50:
        ax.set_yscale("symlog", linthresh=2.0)  # keep small increases readable beside outliers
    ax.set_xlabel("K/V bytes fetched, % of dense (16-bit, all tokens)")
    ax.set_ylabel("perplexity increase vs dense (%)" if causal else "cosine similarity to dense")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _merge(paths: tuple[Path, ...], out: Path, command: str) -> None:
    """Combine earlier runs' JSON into one table and plot (policies in order, first run wins)."""
    runs = []
    for p in paths:
        try:
            r = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"--merge {p}: not a JSON file written by eval_accuracy.py ({e})") from None
        need = ("model", "text", "setting", "command", "seconds", "results")
        if not isinstance(r, dict) or any(k not in r for k in need) or not isinstance(r["results"], list) \
                or not r["results"] or not all(isinstance(x, dict) and "policy" in x for x in r["results"]):
            raise BadInput(f"--merge {p}: not an eval_accuracy.py result (needs the keys {', '.join(need)} and "
                           f"a non-empty list of results with a policy each)")
        runs.append(r)
    first = runs[0]
    for p, r in zip(paths, runs, strict=True):
        if (r["model"], r["text"], r["setting"]) != (first["model"], first["text"], first["setting"]):
            raise BadInput(f"{p}: model, text or setting differ from {paths[0]}")
    seen: dict[str, dict[str, object]] = {}
    for r in runs:
        for res in r["results"]:
            seen.setdefault(str(res["policy"]), res)
    results = list(seen.values())
    causal = "ppl" in results[0]
    header = {**first, "command": command + "\n" + "\n".join(str(r["command"]) for r in runs),
              "seconds": sum(float(r["seconds"]) for r in runs)}
    header.pop("results", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out.with_suffix(".json"), json.dumps({**header, "results": results}, indent=1).encode())
    atomic_write_bytes(out.with_suffix(".png"), plot(results, causal, f"{first['model']}: {first['setting']}"))
    md = render(results, causal, header)
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    click.echo(md)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", required=True, help="HF id (cache only), local dir, .gguf file, or smollm2-135m / minilm-l6.")
@click.option("--text", default=DEFAULT_TEXT, show_default=True, help="Text file, or dataset:<name>[:<config>[:<split>]].")
@click.option("--context", type=click.IntRange(min=3), default=512, show_default=True, help="Prefill tokens (encoders: window length).")
@click.option("--eval-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Decoded tokens scored (causal models).")
@click.option("--windows", type=click.IntRange(min=1), default=8, show_default=True, help="Windows (encoders).")
@click.option("--policy", "policies", multiple=True, help="Preset or YAML path; repeat. Default: the shipped presets.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output stem: writes .md, .json, .png.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Policies evaluated in parallel (one process and thread each).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads per process.")
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Instead of evaluating, merge the .json of earlier runs (same model, text and setting).")
@click.option("--engine", type=click.Choice(["torch", "golden", "rtl"]), default="torch", show_default=True,
              help="Attention engine: the PyTorch algorithm, or the accelerator in the loop (bit-exact golden "
                   "model, or the Verilated RTL of --preset); causal models.")
@click.option("--preset", default="eighth", show_default=True, help="Hardware preset of --engine golden/rtl.")
def main(
    model: str, text: str, context: int, eval_tokens: int, windows: int, policies: tuple[str, ...], out: Path,
    jobs: int, threads: int, merge: tuple[Path, ...], engine: str = "torch", preset: str = "eighth",
) -> None:
    """Perplexity (or output similarity) and K/V bytes of SpAtten policies vs dense."""
    command = "python tools/eval_accuracy.py " + " ".join(sys.argv[1:])
    if merge:
        _merge(merge, out, command)
        return
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        pols = [load_policy(p) for p in (policies or DEFAULT_POLICIES)]
        if not any(p.is_dense for p in pols):
            pols.insert(0, load_policy("dense"))
        check_text(text, min(context + eval_tokens, windows * (context - 2) + 2))  # before the model is loaded
        lm = load_model(model)
        torch.set_grad_enabled(False)
        if lm.causal:
            ids = load_tokens(lm.tokenizer, text, context + eval_tokens)
        else:
            full = load_tokens(lm.tokenizer, text, windows * (context - 2) + 2)[:, :-1]
            cls_id, sep_id = lm.tokenizer.cls_token_id, lm.tokenizer.sep_token_id
            wins = [
                torch.cat([torch.tensor([[cls_id]]), full[:, i * (context - 2) : (i + 1) * (context - 2)],
                           torch.tensor([[sep_id]])], dim=1)
                for i in range(windows)
            ]
    except (ModelError, PolicyError, TextError) as exc:
        raise BadInput(str(exc)) from exc
    if engine != "torch" and not lm.causal:
        raise BadInput(f"--engine {engine}: the accelerator engines run causal models only")
    from spatten.errors import InputError, SpAttenError  # noqa: PLC0415
    from spatten.sim import procs  # noqa: PLC0415

    procs.handle_signals()
    try:
        results = _evaluate_all(model, lm, pols, ids if lm.causal else wins, context, eval_tokens, jobs, engine,
                                preset)
    except SpAttenError as exc:
        if isinstance(exc, InputError):
            raise BadInput(str(exc)) from exc
        raise click.ClickException(str(exc)) from exc
    finally:
        procs.stop_all()
    if lm.causal:
        base = next(r["ppl"] for r, p in zip(results, pols, strict=True) if p.is_dense)
        for r in results:
            r["ppl_increase"] = float(r["ppl"]) / float(base) - 1.0
    setting = (f"{context}-token dense prefill + {eval_tokens} decoded tokens scored" if lm.causal
               else f"{windows} windows of {context} tokens")
    if engine != "torch":
        setting += f", engine {engine} ({preset})"
    header = {"model": model, "text": text, "setting": setting, "command": command,
              "seconds": round(time.perf_counter() - t0, 1)}
    md = render(results, lm.causal, header)
    png = plot(results, lm.causal, f"{model}: {setting}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out.with_suffix(".json"), json.dumps({**header, "results": results}, indent=1).encode())
    atomic_write_bytes(out.with_suffix(".png"), png)
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    click.echo(md)


if __name__ == "__main__":
    main()
