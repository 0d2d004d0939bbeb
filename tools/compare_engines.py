#!/usr/bin/env python3
"""Greedy generation of one prompt through several attention engines, compared.

    python tools/compare_engines.py --policy spatten-default --engines rtl,golden,torch \\
        --max-new-tokens 64 --out results/loop/default.json

For each engine: the tokens, the kept token and head sets of every (decode step, layer),
tokens per second (decode only, and the prefill's time). Then, against the first engine:
whether the tokens are identical (and where they first differ), whether every kept set
is identical, and the mean kept-set overlap (|A & B| / |A | B| per layer, averaged).
Writes the comparison as JSON (atomically) and prints a table. Exit status: 0; 1 when
a simulator fails; 2 on bad input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from spatten.errors import SpAttenError, exit_code
from spatten.fileio import atomic_output

DEFAULT_PROMPT = ("A small robot lived in an old lighthouse by the sea. One winter a storm broke the great lamp, "
                  "and the robot had to warn the ships before morning. Tell the story.")


def _kept(gen) -> list[list[tuple]]:
    return [[(l.kept, l.heads) for l in c.layers] for c in gen.calls[1:]]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="smollm2-135m", show_default=True)
@click.option("--policy", default="spatten-default", show_default=True)
@click.option("--engines", default="rtl,golden,torch", show_default=True, help="Comma-separated; the first is the reference.")
@click.option("--preset", default="eighth", show_default=True)
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=False, help="The user message (chat template applied).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON of the comparison.")
def main(model: str, policy: str, engines: str, preset: str, prompt: str, max_new_tokens: int,
         out: Path | None) -> None:
    """Generate PROMPT with each engine and compare tokens and kept sets."""
    from spatten.sim import procs

    procs.handle_signals()
    code = 0
    try:
        _main(model, policy, [e.strip() for e in engines.split(",") if e.strip()], preset, prompt,
              max_new_tokens, out)
    except procs.Interrupted as e:
        click.echo(f"[compare] {e}", err=True)
        code = e.exit_code
    except SpAttenError as e:
        click.echo(f"[compare] error: {e}", err=True)
        code = exit_code(e)
    finally:
        procs.stop_all()
    sys.exit(code)


def _main(model, policy, names, preset, prompt, max_new, out) -> None:
    import torch

    from spatten.errors import InputError
    from spatten.loop.engines import ENGINES, make_engine
    from spatten.loop.generate import eos_ids, greedy, kept_overlap, prompt_ids
    from workloads.models import ModelError, load_model
    from workloads.spatten.policy import PolicyError, load_policy

    bad = [n for n in names if n not in ENGINES]
    if bad or not names:
        raise InputError(f"--engines: unknown engine(s) {', '.join(bad) or '(none)'}; known: {', '.join(ENGINES)}")
    try:
        pol = load_policy(policy)
        lm = load_model(model)
    except (PolicyError, ModelError) as e:
        raise InputError(str(e)) from None
    torch.set_grad_enabled(False)
    ids = prompt_ids(lm.tokenizer, [{"role": "user", "content": prompt}])
    results = {}
    for name in names:
        t = time.perf_counter()
        with make_engine(name, pol, preset=preset) as eng:
            gen = greedy(lm.model, eng, ids, max_new, eos_ids(lm.tokenizer))
        results[name] = gen
        click.echo(f"[compare] {name}: {len(gen.tokens)} tokens in {time.perf_counter() - t:.1f} s "
                   f"(prefill {gen.stats[0].seconds:.1f} s, decode {gen.decode_tokens_per_s:.3f} tokens/s)", err=True)
    ref_name = names[0]
    ref = results[ref_name]
    report = {"model": model, "policy": pol.name, "preset": preset, "prompt_tokens": int(ids.shape[1]),
              "command": "python tools/compare_engines.py " + " ".join(sys.argv[1:]), "engines": {}}
    lines = [f"prompt {int(ids.shape[1])} tokens, policy {pol.name}, preset {preset}; reference {ref_name}", "",
             f"{'engine':8} {'tokens':>6} {'same tokens':>12} {'first diff':>10} {'kept sets':>14} "
             f"{'overlap':>8} {'K/V kept':>8} {'tok/s':>7} {'prefill s':>9}"]
    for name in names:
        g = results[name]
        same = g.tokens == ref.tokens
        first = next((i for i, (a, b) in enumerate(zip(g.tokens, ref.tokens)) if a != b),
                     None if len(g.tokens) == len(ref.tokens) else min(len(g.tokens), len(ref.tokens)))
        n_cmp = (first if first is not None else len(g.tokens)) - 1  # decode calls with the same history
        ka, kb = _kept(g)[:max(n_cmp, 0)], _kept(ref)[:max(n_cmp, 0)]
        kept_same = ka == kb
        ov = [kept_overlap(a, b) for a, b in zip(g.calls[1:1 + max(n_cmp, 0)], ref.calls[1:1 + max(n_cmp, 0)])]
        dec = g.stats[1:]
        kv = sum(s.kv_kept for s in dec) / len(dec) if dec else 1.0
        entry = {"tokens": g.tokens, "text": lm.tokenizer.decode(g.tokens, skip_special_tokens=True),
                 "identical_tokens": same, "first_difference": first, "compared_steps": max(n_cmp, 0),
                 "identical_kept_sets": kept_same, "mean_kept_overlap": sum(ov) / len(ov) if ov else 1.0,
                 "kv_kept": kv, "decode_tokens_per_s": g.decode_tokens_per_s, "prefill_s": g.stats[0].seconds,
                 "dram_bytes": sum(s.dram_bytes for s in g.stats), "cycles": sum(s.cycles for s in g.stats),
                 "heads_kept": sum(s.heads_kept for s in dec) / len(dec) if dec else 1.0,
                 "value_pruned_layers": sum(1 for c in g.calls[1:] for l in c.layers if l.value_count < len(l.kept)),
                 "topk_heads_asked": sum(1 for c in g.calls[1:] for l in c.layers if l.topk_heads is not None)}
        report["engines"][name] = entry
        lines.append(f"{name:8} {len(g.tokens):>6} {str(same):>12} {str(first):>10} "
                     f"{('identical' if kept_same else 'differ') + f' ({max(n_cmp, 0)})':>14} "
                     f"{entry['mean_kept_overlap']:>8.3f} {kv * 100:>7.1f}% {g.decode_tokens_per_s:>7.3f} "
                     f"{g.stats[0].seconds:>9.1f}")
    lines.append("")
    for name in names:
        lines.append(f"{name}: {report['engines'][name]['text']!r}")
    click.echo("\n".join(lines))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out) as fh:
            fh.write(json.dumps(report, indent=1).encode())


if __name__ == "__main__":
    main()
