#!/usr/bin/env python3
"""Accuracy cost and K/V traffic of pruning and quantization policies, against dense, on real text.

Causal models: prefill ``--context`` tokens (dense), then decode ``--eval-tokens`` tokens
one at a time, teacher-forced from the text, under each policy; perplexity over the
decoded tokens. Encoders (BERT family): ``--windows`` windows of ``--context`` tokens;
the cosine similarity of the mean-pooled last hidden state with pruning vs dense. For
both: the K/V bits each policy reads over all attention requests (every decode step,
layer and query head; MSBs, LSBs when refetched, values and scales), relative to dense
(all tokens, 16-bit K and V, every head).

``--text`` and ``--context`` may repeat: every (text, context) pair gets its own table
``<out>-<text>-ctx<N>.{md,json,png}`` (just ``<out>.*`` for a single pair). Policies are
presets, YAML paths or ``PRESET@section.key=value@...`` overrides (one preset swept over
budgets), from ``--policy`` and/or ``--policy-list`` (a file, one spec a line, ``#``
comments). Evaluation is deterministic on one machine (CPU float32, one thread a process).
Dense attention and the static patterns (streaming, longformer) without quantization or
value pruning are evaluated in one teacher-forced pass (``workloads/spatten/parallel.py``),
which gives the step-by-step figures up to float rounding (1e-5); every other policy is
decoded step by step: quantization codes, refetch and threshold decisions and value top-k
flip where the one pass's K/V differ from the step path's in the last bits, and the
perplexity moves by up to about 0.5% (``parallel.py``'s docstring; ``parallel_reason``).
``--step-by-step`` decodes every policy step by step.

Writes atomically. Exit status: 0 on success, 2 on bad input (options, text, model,
policy, ``--merge`` files), as ``run.py`` and ``gen_workload.py``.

Example::

    python tools/eval_accuracy.py --model smollm2-135m --text austen:emma --context 512 \\
        --eval-tokens 2048 --policy-list hardware/workloads/accuracy/sweep.txt --jobs 16 \\
        --out hardware/workloads/accuracy/smollm2-135m
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

from workloads.accuracy_report import plot, render
from workloads.csvschema import atomic_write_bytes
from workloads.models import ModelError, load_model
from workloads.spatten.export import run_sequence
from workloads.spatten.hardware import runs_on_accelerator
from workloads.spatten.overrides import load_policy_spec
from workloads.spatten.parallel import parallel_reason, stateful_reason
from workloads.spatten.policy import Policy, PolicyError
from workloads.text import DEFAULT_TEXT, TextError, check_text, load_tokens


class BadInput(click.ClickException):
    """Bad input: exit status 2, as for a bad option."""

    exit_code = 2


DEFAULT_POLICIES = (
    "dense", "progressive-quant", "spatten-default", "spatten-balanced", "spatten-heads", "spatten-kv30",
    "sink-recent-heavy", "spatten-paper",
)


def _fraction(state) -> float:
    return state.kv_bits / state.kv_dense_bits if state.kv_dense_bits else 1.0


PATHS = ("auto", "step", "one-pass")


def eval_causal(lm, ids: torch.Tensor, pol: Policy, context: int, n_eval: int, path: str = "auto") -> dict[str, float]:
    """Perplexity of ``n_eval`` teacher-forced decoded tokens and the K/V bytes fraction.

    ``path``: ``auto`` runs one pass (``workloads/spatten/parallel.py``) where
    ``parallel_reason`` accepts the policy (the same numbers as decoding step by step, float
    rounding aside), else step by step; ``step`` always decodes step by step; ``one-pass``
    runs one pass for any policy ``stateful_reason`` accepts (to repeat a table row made
    that way: ``tools/check_accuracy.py``)."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    if path == "one-pass" and stateful_reason(pol) is not None:
        raise PolicyError(f"{pol.name}: cannot be evaluated in one pass: {stateful_reason(pol)}")
    one_pass = path == "one-pass" or (path == "auto" and parallel_reason(pol) is None)
    run = run_sequence(lm.model, ids, pol, context, n_eval - 1, True, record=False, parallel=one_pass)
    return {"nll": float(np.mean(run.nll)), "ppl": float(math.exp(np.mean(run.nll))),
            "kv_fraction": _fraction(run.state), "tokens": len(run.nll), "one_pass": one_pass}


def eval_encoder(lm, windows: list[torch.Tensor], pol: Policy) -> dict[str, float]:
    """Mean cosine similarity of pooled outputs vs dense, and the K/V bytes fraction."""
    sims, fetched, dense = [], 0.0, 0.0
    for ids in windows:
        ref = lm.model(input_ids=ids).last_hidden_state.mean(dim=1)[0]
        run = run_sequence(lm.model, ids, pol, ids.shape[1], 0, False, record=False)
        got = run.hidden.mean(dim=1)[0]
        sims.append(float(torch.nn.functional.cosine_similarity(ref, got, dim=0)))
        fetched, dense = fetched + run.state.kv_bits, dense + run.state.kv_dense_bits
    return {"similarity": float(np.mean(sims)), "min_similarity": float(np.min(sims)), "kv_fraction": fetched / dense}


_WORKER: dict[str, object] = {}


def _worker_init(model: str, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    _WORKER["lm"] = load_model(model)


def _worker_eval(args: tuple) -> dict[str, object]:
    return _eval_one(_WORKER["lm"], *args)


def _eval_engine(lm, pol: Policy, data, context: int, eval_tokens: int, engine: str, preset: str):
    """Perplexity with the accelerator in the loop (``spatten.loop``: golden model or RTL)."""
    from spatten.loop.engines import make_engine  # noqa: PLC0415
    from spatten.loop.generate import perplexity  # noqa: PLC0415

    with make_engine(engine, pol, preset=preset, capacity=context + eval_tokens) as eng:
        res = perplexity(lm.model, eng, data, context, eval_tokens)
        if engine == "rtl":
            res["cycles"] = eng.cycles
    return {**res, "engine": engine, "preset": preset}


def _eval_one(lm, key: tuple[str, int], pol: Policy, data, context: int, eval_tokens: int,
              path: str = "auto", engine: str = "torch", preset: str = "eighth") -> dict[str, object]:
    t = time.perf_counter()
    if engine != "torch":
        res = _eval_engine(lm, pol, data, context, eval_tokens, engine, preset)
    elif lm.causal:
        res = eval_causal(lm, data, pol, context, eval_tokens, path)
    else:
        res = eval_encoder(lm, data, pol)
    out = {"policy": pol.name, "hardware": runs_on_accelerator(pol), "seconds": round(time.perf_counter() - t, 1),
           **res}
    click.echo(f"{key[0]} ctx{key[1]} {pol.name}: {json.dumps(out)}", err=True)
    return out


def _evaluate_all(model: str, lm, tasks: list[tuple], jobs: int) -> list[dict[str, object]]:
    """Evaluate every task ``(key, policy, data, context, eval_tokens, path, engine, preset)`` (order
    kept); the accelerator engines run in this process, one task after the other."""
    if jobs <= 1 or any(t[6] != "torch" for t in tasks):
        return [_eval_one(lm, *t) for t in tasks]
    import concurrent.futures as cf  # noqa: PLC0415
    import multiprocessing as mp  # noqa: PLC0415

    with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                initargs=(model, torch.get_num_threads())) as pool:
        return list(pool.map(_worker_eval, tasks))


def _write(out: Path, header: dict[str, object], results: list[dict[str, object]], causal: bool) -> str:
    if causal:
        base = next((float(r["ppl"]) for r in results if r["policy"] == "dense"), None)
        if base is not None:
            for r in results:
                r["ppl_increase"] = float(r["ppl"]) / base - 1.0
    md = render(results, causal, header)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out.with_suffix(".json"), json.dumps({**header, "results": results}, indent=1).encode())
    atomic_write_bytes(out.with_suffix(".png"), plot(results, causal, f"{header['model']}, {header['text']}: {header['setting']}"))
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    return md


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
    header = {**first, "command": command + "\n" + "\n".join(str(r["command"]) for r in runs),
              "seconds": sum(float(r["seconds"]) for r in runs)}
    header.pop("results", None)
    click.echo(_write(out, header, results, "ppl" in results[0]))


def _policy_specs(policies: tuple[str, ...], policy_list: Path | None) -> list[str]:
    specs = list(policies)
    if policy_list is not None:
        try:
            lines = policy_list.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"--policy-list {policy_list}: cannot read: {exc}") from None
        for n, line in enumerate(lines, 1):
            spec = line.split("#", 1)[0].strip()
            if spec:
                specs.append(spec)
        if not specs:
            raise BadInput(f"--policy-list {policy_list}: no policy in the file")
    return specs or list(DEFAULT_POLICIES)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text.split("/")[-1]).strip("-") or "text"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", required=True, help="HF id (cache only), local dir, .gguf file, or smollm2-135m / minilm-l6.")
@click.option("--text", "texts", multiple=True, help=f"Text file, austen:<novel> or dataset:<name>[:<config>[:<split>]]; repeat. Default: {DEFAULT_TEXT}.")
@click.option("--context", "contexts", type=click.IntRange(min=3), multiple=True, help="Prefill tokens (encoders: window length); repeat. Default: 512.")
@click.option("--eval-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Decoded tokens scored (causal models).")
@click.option("--windows", type=click.IntRange(min=1), default=8, show_default=True, help="Windows (encoders).")
@click.option("--policy", "policies", multiple=True, help="Preset, YAML path or PRESET@section.key=value; repeat. Default: the shipped SpAtten presets.")
@click.option("--policy-list", type=click.Path(path_type=Path), default=None, help="File of policy specs, one a line.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output stem: writes .md, .json, .png.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Evaluations in parallel (one process each).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads per process.")
@click.option("--step-by-step", "stepwise", is_flag=True,
              help="Decode every policy token by token. Without it, dense attention and static patterns without "
                   "quantization or value pruning run in one teacher-forced pass (the same figures within 1e-5); "
                   "policies with quantization, refetch, threshold or value top-k decisions are always decoded "
                   "step by step (in one pass, codes and decisions flip where its K/V differ in the last bits, "
                   "about 0.5% of perplexity; see workloads/spatten/parallel.py).")
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Instead of evaluating, merge the .json of earlier runs (same model, text and setting).")
@click.option("--engine", type=click.Choice(["torch", "golden", "rtl"]), default="torch", show_default=True,
              help="Attention engine: the PyTorch algorithm, or the accelerator in the loop (bit-exact golden "
                   "model, or the Verilated RTL of --preset); causal models.")
@click.option("--preset", default="eighth", show_default=True, help="Hardware preset of --engine golden/rtl.")
def main(
    model: str, texts: tuple[str, ...], contexts: tuple[int, ...], eval_tokens: int, windows: int,
    policies: tuple[str, ...], policy_list: Path | None, out: Path, jobs: int, threads: int, stepwise: bool,
    merge: tuple[Path, ...], engine: str = "torch", preset: str = "eighth",
) -> None:
    """Perplexity (or output similarity) and K/V bytes of pruning and quantization policies vs dense."""
    command = "python tools/eval_accuracy.py " + " ".join(sys.argv[1:])
    if merge:
        _merge(merge, out, command)
        return
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    texts = texts or (DEFAULT_TEXT,)
    contexts = contexts or (512,)
    try:
        pols = [load_policy_spec(p) for p in _policy_specs(policies, policy_list)]
        names = [p.name for p in pols]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PolicyError(f"policy named twice: {', '.join(dup)}")
        if not any(p.is_dense for p in pols):
            pols.insert(0, load_policy_spec("dense"))
        for text in texts:  # before the model is loaded
            for context in contexts:
                check_text(text, min(context + eval_tokens, windows * (context - 2) + 2))
        lm = load_model(model)
        torch.set_grad_enabled(False)
        data = {}
        for text in texts:
            for context in contexts:
                if lm.causal:
                    data[(text, context)] = load_tokens(lm.tokenizer, text, context + eval_tokens)
                else:
                    full = load_tokens(lm.tokenizer, text, windows * (context - 2) + 2)[:, :-1]
                    cls_id, sep_id = lm.tokenizer.cls_token_id, lm.tokenizer.sep_token_id
                    data[(text, context)] = [
                        torch.cat([torch.tensor([[cls_id]]), full[:, i * (context - 2) : (i + 1) * (context - 2)],
                                   torch.tensor([[sep_id]])], dim=1)
                        for i in range(windows)
                    ]
    except (ModelError, PolicyError, TextError) as exc:
        raise BadInput(str(exc)) from exc
    if not lm.causal and any(p.extended for p in pols):
        raise BadInput("eviction, KIVI quantization and value-threshold policies need a causal model")
    if engine != "torch" and not lm.causal:
        raise BadInput(f"--engine {engine}: the accelerator engines run causal models only")
    if engine != "torch" and any(p.extended for p in pols):
        raise BadInput(f"--engine {engine}: eviction, KIVI quantization and value-threshold policies run "
                       f"on the workload path only (gen_workload.py + run.py), not in the loop")
    from spatten.errors import InputError, SpAttenError  # noqa: PLC0415
    from spatten.sim import procs  # noqa: PLC0415

    keys = list(data)
    tasks = [(k, p, data[k], k[1], eval_tokens, "step" if stepwise else "auto", engine, preset)
             for k in keys for p in pols]
    procs.handle_signals()
    try:
        results = _evaluate_all(model, lm, tasks, jobs)
    except SpAttenError as exc:
        if isinstance(exc, InputError):
            raise BadInput(str(exc)) from exc
        raise click.ClickException(str(exc)) from exc
    finally:
        procs.stop_all()
    seconds = round(time.perf_counter() - t0, 1)
    for i, (text, context) in enumerate(keys):
        res = results[i * len(pols) : (i + 1) * len(pols)]
        setting = (f"{context}-token dense prefill + {eval_tokens} decoded tokens scored" if lm.causal
                   else f"{windows} windows of {context} tokens")
        if engine != "torch":
            setting += f", engine {engine} ({preset})"
        header = {"model": model, "text": text, "setting": setting, "command": command, "seconds": seconds}
        stem = out if len(keys) == 1 else out.with_name(f"{out.name}-{_slug(text)}-ctx{context}")
        click.echo(_write(stem, header, res, lm.causal))


if __name__ == "__main__":
    main()
