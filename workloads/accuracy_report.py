"""Tables and Pareto plots of ``tools/eval_accuracy.py`` results (no model code here).

A result is a dict with ``policy``, ``kv_fraction`` (K/V bits read over dense 16-bit
bits) and, for causal models, ``ppl`` and ``ppl_increase``; for encoders ``similarity``
and ``min_similarity``. ``family`` is the policy name before any ``@`` override, so a
budget sweep of one preset is one line on the plot. ``hardware`` says whether the
accelerator runs the policy (``workloads/spatten/hardware.py``).
"""

from __future__ import annotations

import io


def family(policy: str) -> str:
    """The preset a result came from (``h2o@eviction.budget=0.1`` -> ``h2o``)."""
    return policy.split("@", 1)[0]


def pareto(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """The results no other result beats on both perplexity and K/V bytes, by bytes."""
    pts = sorted(results, key=lambda r: (float(r["kv_fraction"]), float(r["ppl"])))
    front, best = [], float("inf")
    for r in pts:
        if float(r["ppl"]) < best:
            front.append(r)
            best = float(r["ppl"])
    return front


def smallest_within(results: list[dict[str, object]], limit: float) -> dict[str, object] | None:
    """The result with the fewest K/V bytes whose perplexity increase is at most ``limit``."""
    ok = [r for r in results if float(r["ppl_increase"]) <= limit]
    return min(ok, key=lambda r: float(r["kv_fraction"])) if ok else None


def render(results: list[dict[str, object]], causal: bool, header: dict[str, object]) -> str:
    """The markdown table: every policy, then (causal) the Pareto front and the best points."""
    lines = [f"# SpAtten accuracy: {header['model']}", "", "```", str(header["command"]), "```", ""]
    lines.append(f"text: `{header['text']}`, {header['setting']}, {header['seconds']} s")
    lines.append("")
    if not causal:
        lines += ["| policy | cosine similarity (mean) | (min) | K/V bytes vs dense |", "|---|---:|---:|---:|"]
        for r in results:
            lines.append(f"| {r['policy']} | {r['similarity']:.4f} | {r['min_similarity']:.4f} | {r['kv_fraction'] * 100:.1f}% |")
        return "\n".join(lines) + "\n"
    lines.append("K/V bytes: bits read (MSBs, LSBs when refetched, values, scales) over dense 16-bit K and V of "
                 "every token, for every decode step, layer and query head. `sw` = software-only (the "
                 "accelerator cannot run it, see workloads/spatten/hardware.py); `hw` = runs on it.")
    lines.append("")
    lines += ["| policy | perplexity | vs dense | K/V bytes vs dense | runs on |", "|---|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['policy']} | {r['ppl']:.3f} | {r['ppl_increase'] * 100:+.2f}% | "
                     f"{r['kv_fraction'] * 100:.1f}% | {'hw' if r.get('hardware') else 'sw'} |")
    lines += ["", "Pareto front (no other policy has both fewer K/V bytes and a lower perplexity):", "",
              "| policy | vs dense | K/V bytes vs dense |", "|---|---:|---:|"]
    for r in pareto(results):
        lines.append(f"| {r['policy']} | {r['ppl_increase'] * 100:+.2f}% | {r['kv_fraction'] * 100:.1f}% |")
    lines.append("")
    for limit in (0.01, 0.02):
        for hw in (False, True):
            pool = [r for r in results if r.get("hardware")] if hw else results
            best = smallest_within(pool, limit)
            what = "accelerator policies" if hw else "all policies"
            lines.append(f"- fewest K/V bytes within +{limit * 100:.0f}% perplexity, {what}: "
                         + (f"`{best['policy']}`, {best['kv_fraction'] * 100:.1f}% ({best['ppl_increase'] * 100:+.2f}%)"
                            if best else "none"))
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, object]], causal: bool, title: str) -> bytes:
    """A PNG: K/V bytes fraction vs accuracy; one line per policy family (budget sweep)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    key = "ppl_increase" if causal else "similarity"
    fams: dict[str, list[dict[str, object]]] = {}
    for r in results:
        fams.setdefault(family(str(r["policy"])), []).append(r)
    markers = "os^vD<>ph*"
    for i, (name, rs) in enumerate(sorted(fams.items())):
        rs = sorted(rs, key=lambda r: float(r["kv_fraction"]))
        xs = [float(r["kv_fraction"]) * 100 for r in rs]
        ys = [float(r[key]) * (100 if causal else 1) for r in rs]
        ax.plot(xs, ys, marker=markers[i % len(markers)], linestyle="-" if len(rs) > 1 else "none",
                label=name, markersize=4, linewidth=1)
    if causal:
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("symlog", linthresh=2.0)
    ax.set_xlabel("K/V bytes read, % of dense (16-bit, all tokens)")
    ax.set_ylabel("perplexity increase vs dense (%)" if causal else "cosine similarity to dense")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
