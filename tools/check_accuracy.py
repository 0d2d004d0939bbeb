#!/usr/bin/env python3
"""Re-run rows of a committed accuracy table and compare them with its JSON.

Reads a ``.json`` written by ``tools/eval_accuracy.py`` (causal models), re-evaluates the
chosen policies (``--policy``, repeatable; default: every row) with the same model, text,
context, decoded tokens and path (one pass or step by step, as each row records), and
compares:

- perplexity: relative difference at most ``--ppl-rtol`` (default 1e-4: float32 sums on
  another CPU or another torch build differ in the last bits, which moves the perplexity
  by about 1e-6 relative; 1e-4 leaves room for that and nothing else). That holds for
  dense attention and static patterns; with quantization or value top-k a last-bit
  difference can flip a code or a selection and move the perplexity by up to about 0.5%
  (``workloads/spatten/parallel.py``), so such rows repeat on the machine and torch build
  that made them, not necessarily elsewhere;
- K/V bytes fraction: relative difference at most ``--bits-rtol`` (default 1e-12: the bits
  are sums of integers, so only the last division may round; a different refetch or
  eviction decision moves it by far more).

Prints one line per row and exits 0 when every row is within tolerance, 1 when one is
not, 2 on bad input (a JSON not written by eval_accuracy.py, a policy not in it).

Example::

    python tools/check_accuracy.py hardware/workloads/accuracy/smollm2-135m-hw-austen-emma-ctx512.json \\
        --policy dense --policy kivi-hw
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import click
import torch

from tools.eval_accuracy import BadInput, _eval_one
from workloads.models import ModelError, load_model
from workloads.spatten.overrides import load_policy_spec
from workloads.spatten.policy import PolicyError
from workloads.text import TextError, load_tokens

SETTING = re.compile(r"^(\d+)-token dense prefill \+ (\d+) decoded tokens scored$")


def load_table(path: Path) -> dict:
    """The JSON of ``path`` with ``context`` and ``eval_tokens`` (from its setting when absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a JSON file written by eval_accuracy.py ({exc})") from None
    need = ("model", "text", "setting", "results")
    if not isinstance(data, dict) or any(k not in data for k in need) or not isinstance(data["results"], list):
        raise BadInput(f"{path}: not an eval_accuracy.py result (needs the keys {', '.join(need)})")
    m = SETTING.match(str(data["setting"]))
    if m is None:
        raise BadInput(f"{path}: setting {data['setting']!r}: only torch-engine tables of causal models can be "
                       "checked (expected '<N>-token dense prefill + <M> decoded tokens scored')")
    data.setdefault("context", int(m.group(1)))
    data.setdefault("eval_tokens", int(m.group(2)))
    for i, r in enumerate(data["results"]):
        for key in ("policy", "ppl", "kv_fraction"):
            if not isinstance(r, dict) or key not in r:
                raise BadInput(f"{path}: results[{i}]: missing {key!r}")
    return data


def compare(want: dict, got: dict, ppl_rtol: float, bits_rtol: float) -> tuple[bool, str]:
    """(within tolerance, a line saying how far) for one row."""
    dp = abs(float(got["ppl"]) / float(want["ppl"]) - 1.0)
    db = abs(float(got["kv_fraction"]) / float(want["kv_fraction"]) - 1.0) if want["kv_fraction"] else \
        abs(float(got["kv_fraction"]))
    ok = dp <= ppl_rtol and db <= bits_rtol and math.isfinite(dp)
    return ok, (f"{'ok  ' if ok else 'FAIL'} {want['policy']}: perplexity {got['ppl']:.6f} vs {want['ppl']:.6f} "
                f"(rel {dp:.2e}, tol {ppl_rtol:g}); K/V bytes {got['kv_fraction']:.9f} vs {want['kv_fraction']:.9f} "
                f"(rel {db:.2e}, tol {bits_rtol:g})")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policies", multiple=True, help="Row to re-run (its policy spec); repeat. Default: all.")
@click.option("--model", default=None, help="Model to load instead of the table's (e.g. a local path to the same model).")
@click.option("--ppl-rtol", type=float, default=1e-4, show_default=True, help="Relative perplexity tolerance.")
@click.option("--bits-rtol", type=float, default=1e-12, show_default=True, help="Relative K/V bytes tolerance.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads.")
def main(table: Path, policies: tuple[str, ...], model: str | None, ppl_rtol: float, bits_rtol: float,
         threads: int) -> None:
    """Re-run rows of an eval_accuracy.py table and compare them with it."""
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    data = load_table(table)
    rows = {str(r["policy"]): r for r in data["results"]}
    chosen = list(policies) or list(rows)
    missing = [p for p in chosen if p not in rows]
    if missing:
        raise BadInput(f"{table}: no row for {', '.join(missing)} (rows: {', '.join(rows)})")
    try:
        pols = [load_policy_spec(p) for p in chosen]
        lm = load_model(model or str(data["model"]))
        ids = load_tokens(lm.tokenizer, str(data["text"]), data["context"] + data["eval_tokens"])
    except (ModelError, PolicyError, TextError) as exc:
        raise BadInput(str(exc)) from exc
    if not lm.causal:
        raise BadInput(f"{table}: only causal-model tables can be checked")
    failed = 0
    for spec, pol in zip(chosen, pols, strict=True):
        want = rows[spec]
        path = "one-pass" if want.get("one_pass", False) else "step"  # the path the row was made on
        try:
            got = _eval_one(lm, (str(data["text"]), data["context"]), pol, ids, data["context"],
                            data["eval_tokens"], path)
        except PolicyError as exc:
            raise BadInput(f"{table}: {exc}") from exc
        ok, line = compare(want, got, ppl_rtol, bits_rtol)
        failed += not ok
        click.echo(line)
    click.echo(f"{len(chosen) - failed} of {len(chosen)} rows within tolerance ({table})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
