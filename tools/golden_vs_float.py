"""How far is the bit-exact golden model from float attention? Measure it.

Draws random ATTEND requests (head dim, kept tokens, bit widths, value top-k,
progressive quantization on/off, attention logits of realistic spread), runs the golden
model's arithmetic on them and compares with the PyTorch float reference that applies the
same pruning decisions (``spatten/contract/reference.py``):

- **fixed point**: golden vs float attention on the *same integers* with the score unit
  the hardware applies -- the error of the fixed-point softmax and accumulation alone,
  checked against the bound ``spatten.contract.reference.fixed_point_tolerance``;
- **quantized**: golden (dequantized) vs float attention on the *original floats* -- adds
  the quantization of q, K and V;
- **selection**: how often the top-k value selection, or the requantization decision,
  would differ if made on float probabilities.

::

    python tools/golden_vs_float.py --requests 10000 --seed 1
    python tools/golden_vs_float.py --params build/params/eighth-*.json --json out.json

Seeded and reproducible; prints a progress bar, then the tables and the tolerance the
RTL regression uses.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from spatten.contract import golden, quant, reference
from spatten.fileio import write_atomic
from spatten.contract.params import HwParams, from_dict, load_params


@dataclass
class Request:
    """One random request: float tensors, formats and options."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    msb_bits: int
    lsb_bits: int
    v_bits: int
    q_bits: int
    value_topk: int
    requant: bool
    threshold: float


def draw_request(rng: np.random.Generator, max_d: int, max_n: int) -> Request:
    """A request whose logits ``q.k / sqrt(D)`` have a spread typical of trained models
    (standard deviation 0.5 to 6 nats), with a few heavy-hitter keys (attention sinks)."""
    d = int(rng.integers(1, max_d + 1))
    n = int(np.exp(rng.uniform(0, np.log(max_n))))  # log-uniform in 1..max_n
    n = max(1, min(n, max_n))
    k = rng.standard_normal((n, d))
    heavy = rng.random(n) < 0.02
    k[heavy] *= rng.uniform(2, 5)
    v = rng.standard_normal((n, d)) * rng.uniform(0.1, 10)
    q = rng.standard_normal(d)
    spread = rng.uniform(0.5, 6.0)
    logits = k @ q / math.sqrt(d)
    std = float(logits.std()) if n > 1 and logits.std() > 0 else 1.0
    q *= spread / std
    total = int(rng.integers(2, 17))
    lsb = int(rng.integers(0, min(15, total - 1) + 1))
    value_topk = 0 if rng.random() < 0.3 else int(rng.integers(1, n + 1))
    return Request(q=q, k=k, v=v, msb_bits=total - lsb, lsb_bits=lsb,
                   v_bits=int(rng.integers(2, 17)), q_bits=16 if rng.random() < 0.5 else int(rng.integers(4, 17)),
                   value_topk=value_topk, requant=bool(rng.random() < 0.5),
                   threshold=float(rng.choice([0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0])))


def topk_float(p: np.ndarray, m: int) -> np.ndarray:
    """Top-m positions of float probabilities, same tie-break as the hardware."""
    return np.sort(np.argsort(-p, kind="stable")[:m])


def evaluate(req: Request, params: HwParams) -> dict[str, float]:
    """Run one request through the golden model and both references."""
    d = req.q.shape[0]
    qk = quant.quantize_key(req.k, req.msb_bits, req.lsb_bits)
    qv = quant.quantize_value(req.v, req.v_bits)
    qq = quant.quantize_query(req.q, req.q_bits)
    c = quant.score_unit(qq.scale, qk.scale, 1.0 / math.sqrt(d))
    scale, shift = quant.choose_score_scale(c)
    thr = quant.threshold_q16(req.threshold)
    r = golden.attend(qq.values, qk.msb, qk.lsb, qv.values, k_lsb_bits=req.lsb_bits,
                      score_scale=scale, score_shift=shift, value_topk=req.value_topk,
                      params=params, requant=req.requant, requant_threshold=thr)
    sel = r.selected
    n, m = req.k.shape[0], len(sel)
    # fixed point alone: same integers (final pass keys), hardware's score unit
    k_final = qk.full if r.probs.requantized else qk.msb_only
    p_fx, o_fx = reference.attend_dequantized(qq.values, k_final, qv.values, sel, scale, shift)
    p_fx, o_fx = p_fx.numpy(), o_fx.numpy()
    vmax_int = float(np.abs(qv.values[sel]).max())
    err_fx = float(np.abs(r.out / 65536.0 - o_fx).max())
    tol = reference.fixed_point_tolerance(n, m, vmax_int)
    p_err = float(np.abs(r.probs.p / 65536.0 - p_fx).max())
    # with quantization: original floats, standard scale
    p_fl, o_fl = reference.attend_float(req.q, req.k, req.v, sel, 1.0 / math.sqrt(d))
    p_fl, o_fl = p_fl.numpy(), o_fl.numpy()
    _, o_dense = reference.attend_float(req.q, req.k, req.v, np.arange(n), 1.0 / math.sqrt(d))
    vmax_fl = float(np.abs(req.v).max())
    o_golden_fl = reference.output_to_float(r.out, qv.scale).numpy()
    err_q = float(np.abs(o_golden_fl - o_fl).max())
    err_dense = float(np.abs(o_golden_fl - o_dense.numpy()).max())
    # decisions on float probabilities
    pass1_keys = qk.msb_only
    p1, _ = reference.attend_dequantized(qq.values, pass1_keys, qv.values, sel, scale, shift)
    float_requant = req.requant and req.lsb_bits > 0 and float(p1.max()) < thr / 65536.0
    pruned = m < n
    top_fx = topk_float(p_fx, m)
    eff_k = req.msb_bits + (req.lsb_bits if r.probs.requantized else 0)
    return {
        "n": n, "m": m, "d": d, "pruned": pruned,
        "err_fx_rel": err_fx / vmax_int if vmax_int else 0.0,
        "err_fx_over_tol": err_fx / tol if tol else 0.0,
        "p_err": p_err,
        "err_q_rel": err_q / vmax_fl,
        "err_dense_rel": err_dense / vmax_fl,
        "sel_diff_fx": pruned and not np.array_equal(top_fx, sel),
        "sel_mass_loss": float(p_fx[top_fx].sum() - p_fx[sel].sum()),
        "sel_diff_fl": pruned and not np.array_equal(topk_float(p_fl, m), sel),
        "requant": bool(r.probs.requantized),
        "requant_diff": bool(r.probs.requantized) != float_requant,
        "eff_bits": min(eff_k, req.v_bits, req.q_bits),
    }


def _row(name: str, x: np.ndarray) -> str:
    if x.size == 0:
        return f"{name:<44} {'-':>11} {'-':>11} {'-':>11}"
    return (f"{name:<44} {np.mean(x):11.3e} {np.percentile(x, 99):11.3e} {np.max(x):11.3e}")


def _atomic_json(path: Path, obj: object) -> None:
    write_atomic(path, json.dumps(obj, indent=2))


def _resolve_params(params_path: str | None, preset: str) -> HwParams:
    if params_path:
        return load_params(params_path)
    try:
        from spatten.sim import build as hwbuild
        return load_params(hwbuild.contract_json(preset))
    except Exception as e:  # noqa: BLE001 - report why and continue with a stated fallback
        raise click.ClickException(
            f"could not get the parameter JSON of preset '{preset}' ({e}); "
            "pass --params <contract.json>") from e


@click.command()
@click.option("--requests", "n_req", default=10000, show_default=True, help="random requests")
@click.option("--seed", default=1, show_default=True, help="random seed")
@click.option("--max-d", default=64, show_default=True, help="largest head dimension")
@click.option("--max-n", default=1024, show_default=True, help="largest number of kept tokens")
@click.option("--params", "params_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="contract.json (or params.json) written by spatten.Elaborate (default: that of --preset)")
@click.option("--preset", default="eighth", show_default=True,
              help="preset whose contract.json spatten.sim.build writes when --params is not given")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="also write the statistics as JSON here")
def main(n_req: int, seed: int, max_d: int, max_n: int, params_path: str | None, preset: str,
         json_out: str | None) -> None:
    """Error statistics of the golden model against float attention."""
    torch.set_num_threads(1)  # small tensors: threads only contend on a shared machine
    params = _resolve_params(params_path, preset)
    if max_d > params.max_head_dim or max_n > params.max_tokens:
        # the arithmetic does not depend on the buffer sizes: widen them for the study
        params = from_dict(dict(params.to_dict(), maxHeadDim=max(max_d, params.max_head_dim),
                                maxTokens=max(max_n, params.max_tokens),
                                maxRowBytes=-(-max(max_d, params.max_head_dim) * 2 // params.burst_bytes)
                                * params.burst_bytes), source="golden_vs_float")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, float]] = []
    with click.progressbar(range(n_req), label=f"golden vs float (seed {seed})",
                           file=sys.stderr) as bar:
        for _ in bar:
            rows.append(evaluate(draw_request(rng, max_d, max_n), params))

    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    pruned = col["pruned"].astype(bool)
    click.echo(f"\n{n_req} requests, seed {seed}, D in 1..{max_d}, N in 1..{max_n} (log-uniform), "
               f"K/V 2..16 bits, params '{params.preset}'\n")
    click.echo(f"{'metric':<44} {'mean':>11} {'p99':>11} {'max':>11}")
    click.echo("-" * 80)
    click.echo(_row("fixed point: max|o_g - o_f| / max|v|", col["err_fx_rel"]))
    click.echo(_row("fixed point: error / tolerance bound", col["err_fx_over_tol"]))
    click.echo(_row("fixed point: max|p_g - p_f| (probability)", col["p_err"]))
    click.echo(_row("quantized:   max|o_g - o_float| / max|V|", col["err_q_rel"]))
    for lo, hi in ((1, 4), (5, 8), (9, 12), (13, 16)):
        sel = (col["eff_bits"] >= lo) & (col["eff_bits"] <= hi)
        click.echo(_row(f"  narrowest of q/K used/V in {lo}..{hi} bits", col["err_q_rel"][sel]))
    click.echo(_row("vs dense:    max|o_g - o_dense| / max|V|", col["err_dense_rel"]))
    for lo, hi in ((1, 64), (65, 256), (257, 1024)):
        sel = (col["n"] >= lo) & (col["n"] <= hi)
        click.echo(_row(f"  fixed point / max|v|, N in {lo}..{hi}", col["err_fx_rel"][sel]))
    click.echo("")
    n_pruned = int(pruned.sum())
    click.echo(f"value selection differs from float top-k on the same integers: "
               f"{int(col['sel_diff_fx'].sum())} of {n_pruned} pruned requests "
               f"({100 * col['sel_diff_fx'].sum() / max(n_pruned, 1):.2f} %)")
    click.echo(_row("probability mass lost by that difference", col["sel_mass_loss"][pruned]))
    click.echo(f"value selection differs from float top-k on the original floats: "
               f"{int(col['sel_diff_fl'].sum())} of {n_pruned} "
               f"({100 * col['sel_diff_fl'].sum() / max(n_pruned, 1):.2f} %)")
    click.echo(f"requantization taken: {int(col['requant'].sum())} of {n_req}; decision differs "
               f"from float pmax: {int(col['requant_diff'].sum())}")
    worst = float(col["err_fx_over_tol"].max())
    click.echo("\nTolerance used by the RTL regression against the float reference on the same "
               "integers (V units):\n"
               "  |o_rtl / 2^16 - o_float| <= max|v_sel| * (KAPPA + 2^-16 * ((2.5 + 2^-16) * M"
               " + 1.5 * (1 + KAPPA) * N)),\n"
               f"  KAPPA = 2^(1/256) - 1 = {reference.KAPPA:.6g}  "
               "(derivation: spatten/contract/reference.py, fixed_point_tolerance)\n"
               f"  measured: worst error is {worst:.3f} of the bound "
               f"({'holds' if worst <= 1 else 'VIOLATED'} on all {n_req} requests).\n"
               "  The RTL must equal the golden model bit for bit; this bound is for RTL vs float.")
    if json_out:
        summary = {k: {"mean": float(np.mean(v)), "p99": float(np.percentile(v, 99)),
                       "max": float(np.max(v))} for k, v in col.items() if k.startswith(("err", "p_err", "sel_mass"))}
        summary.update(requests=n_req, seed=seed, pruned=n_pruned,
                       sel_diff_fx=int(col["sel_diff_fx"].sum()), sel_diff_fl=int(col["sel_diff_fl"].sum()),
                       requant=int(col["requant"].sum()), requant_diff=int(col["requant_diff"].sum()),
                       params=params.to_dict())
        _atomic_json(Path(json_out), summary)
    if worst > 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
