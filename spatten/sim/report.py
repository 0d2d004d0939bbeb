"""The report of a run: ``summary.json``, a table, a ``summary.txt`` line, and plots.

Cycles are attributed to commands by completion: command ``i`` is charged the cycles
between the previous response's end and its own (the accelerator may overlap commands,
so per-command latencies would double-count). These sum to the run's total.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from spatten.fileio import atomic_output, write_atomic
from spatten.sim.program import Program, bytes_by_kind
from spatten.sim.simulate import RunResult


def peak_bytes_per_cycle(res: RunResult) -> tuple[float, str]:
    """Peak DRAM bytes per accelerator cycle, and where the figure comes from.

    The ports move at most one burst per channel per cycle (SPEC 6). The DRAM model reports
    its own peak (``peak_GBps`` in its statistics: for the built-in HBM2, every
    pseudo-channel's data bus busy, one burst per ``max(nBL, nCCDS)`` DRAM cycles, with no
    refresh and no row misses); the smaller of the two is the peak, so the DRAM-bound
    cycle count derived from it is a true lower bound."""
    p = res.prog.params
    port = float(p.num_channels * p.burst_bytes)
    dram = ((res.dram_stats or {}).get("total") or {}).get("peak_GBps")
    if dram:
        per_cycle = dram * 1e3 / p.clock_mhz  # GB/s -> bytes per accelerator cycle
        if per_cycle < port:
            return per_cycle, "DRAM data buses"
    return port, "ports, one burst per channel per cycle"


def macs(prog: Program) -> int:
    """Multiply-accumulates of the program: N*D per key pass of each head, M*D for P x V."""
    return sum((c.heads + c.requant_heads) * c.n * c.d + c.m * c.d
               for c in prog.info if c.kind == "attend")


def _pow2_at_least(d: int) -> int:
    return 1 << max(d - 1, 0).bit_length()


def _dot_cycles(p, n: int, d: int) -> int:
    """Cycles the dot-product array needs for one pass of ``n`` keys of dimension ``d``
    (SPEC.md section 2, "Throughput of the key side"): ``min(keysPerCycle, dotLanes / D')``
    keys a beat for ``D' <= dotLanes``, else one key every ``ceil(d / dotLanes)`` cycles."""
    dp = _pow2_at_least(d)
    if dp > p.dot_lanes:
        return n * -(-d // p.dot_lanes)
    return -(-n // min(p.keys_per_cycle, p.dot_lanes // dp))


def _pxv_cycles(p, m: int, d: int) -> int:
    """Cycles the P x V array needs for ``m`` selected rows of dimension ``d``: beats of up to
    ``keysPerCycle`` rows, each ``ceil(d / cols)`` cycles, ``cols = min(dotLanes /
    keysPerCycle, maxHeadDim)`` (``ValueAccumulator``)."""
    rows = p.keys_per_cycle
    cols = min(p.dot_lanes // rows, p.max_head_dim)
    return -(-m // rows) * -(-d // cols)


def unit_bounds(prog: Program, dram_bound: float) -> dict[str, float]:
    """Lower bounds on a run's cycles, one per unit that every request passes through, each
    from that unit's throughput in SPEC.md section 2 (not a model of the run: a unit cannot
    do its work in fewer cycles, whatever else overlaps it):

    - ``dram``: ``dram_bound``, the bytes the program reads at the peak bandwidth
      (:func:`peak_bytes_per_cycle`; computed by :func:`summarize`);
    - ``dot_array``: every key pass of every head (pass 1 of each query head, pass 2 of each
      that requantized) at the dot-product array's keys a beat for its ``d``;
    - ``pxv_array``: the selected V rows (a group's heads summed, so a bound) through the
      P x V array;
    - ``probabilities``: each head's ``n`` probabilities streamed ``keysPerCycle`` a beat
      from the softmax into the back end;
    - ``response``: the response words (one 64-bit word a cycle on the response stream),
      counted from the golden model's expected responses.

    The largest is the run's lower bound; the report names it."""
    p = prog.params
    dot = pxv = probs = 0
    for c in prog.info:
        if c.kind != "attend":
            continue
        dot += (c.heads + c.requant_heads) * _dot_cycles(p, c.n, c.d)
        pxv += _pxv_cycles(p, c.m, c.d)
        probs += c.heads * -(-c.n // p.keys_per_cycle)
    return {"dram": dram_bound,
            "dot_array": float(dot), "pxv_array": float(pxv), "probabilities": float(probs),
            "response": float(sum(len(e) for e in prog.expected))}


def grouped_dense_kv_bytes(prog: Program) -> int:
    """The grouped dense minimum: K and V of every request's whole sentence at 16 bits,
    each row once per (step, layer, K/V head) request (what a dense grouped-query kernel
    reads)."""
    return sum(c.dense_kv_bytes for c in prog.info if c.kind == "attend")


def summarize(workload: Path, preset: str, backend: str, sparse: RunResult,
              dense: RunResult | None) -> dict:
    p = sparse.prog.params
    clock_hz = p.clock_mhz * 1e6
    by_kind = bytes_by_kind(sparse.prog)
    total = sum(by_kind.values())
    peak, peak_source = peak_bytes_per_cycle(sparse)
    lower = total / peak if peak else 0.0
    bounds = unit_bounds(sparse.prog, lower)
    binding = max(bounds, key=lambda k: bounds[k])
    attends = [i for i, c in enumerate(sparse.prog.info) if c.kind == "attend"]
    per_layer: dict[int, dict] = defaultdict(lambda: {"cycles": 0, "bytes": 0, "requests": 0})
    charged = sparse.charged()
    b = p.burst_bytes
    for i, info in enumerate(sparse.prog.info):
        if info.layer < 0:
            continue
        per_layer[info.layer]["cycles"] += charged[i]
        per_layer[info.layer]["bytes"] += sum(info.bursts.values()) * b
        per_layer[info.layer]["requests"] += info.kind == "attend"
    s: dict = {
        "workload": str(workload), "preset": preset, "dram_backend": backend,
        "mode": sparse.prog.mode, "clock_mhz": p.clock_mhz,
        "commands": len(sparse.prog.commands), "attend_requests": len(attends),
        "cycles": sparse.cycles, "time_us": sparse.cycles / clock_hz * 1e6,
        "dram_bytes": {**by_kind, "total": total},
        "bandwidth_gbps": total / (sparse.cycles / clock_hz) / 1e9 if sparse.cycles else 0.0,
        "peak_bandwidth_gbps": peak * clock_hz / 1e9,
        "peak_bandwidth_source": peak_source,
        "bandwidth_utilization": (total / sparse.cycles) / peak if sparse.cycles and peak else 0.0,
        "dram_bound_cycles": lower,
        "cycles_over_dram_bound": sparse.cycles / lower if lower else None,
        "unit_bounds": bounds,
        "binding_bound": binding,
        "cycles_over_bound": sparse.cycles / bounds[binding] if bounds[binding] else None,
        "query_heads": sum(sparse.prog.info[i].heads for i in attends),
        "requant_rate": (sum(sparse.prog.info[i].requant_heads for i in attends)
                         / max(1, sum(sparse.prog.info[i].heads for i in attends))) if attends else 0.0,
        "kv_bytes": by_kind["k_msb"] + by_kind["k_lsb"] + by_kind["v"],
        "grouped_dense_kv_bytes": grouped_dense_kv_bytes(sparse.prog),
        "checked_responses": sparse.checked, "mismatches": sparse.mismatches,
        "kv_fraction_of_grouped_dense": ((by_kind["k_msb"] + by_kind["k_lsb"] + by_kind["v"])
                                         / grouped_dense_kv_bytes(sparse.prog)) if attends else None,
        "kv_fraction_per_query_head": (sum(sparse.prog.info[i].head_kv_bits for i in attends)
                                       / max(1, sum(sparse.prog.info[i].head_dense_kv_bits for i in attends)))
                                      if attends else None,
        "per_layer": {str(k): v for k, v in sorted(per_layer.items())},
        "controller_state_cycles": sparse.states,
        "macs": macs(sparse.prog),
        "sim_wall_s": sparse.wall_s,
        "sim_cycles_per_s": sparse.cycles / sparse.wall_s if sparse.wall_s else None,
    }
    if sparse.dram_stats:
        s["dram_model"] = sparse.dram_stats
    if sparse.prog.kept_checks:
        s["own_vs_recorded"] = own_vs_recorded(sparse.prog.kept_checks)
    if sparse.float_error:
        s["float_error"] = sparse.float_error
    if dense is not None:
        dense_bytes = sum(bytes_by_kind(dense.prog).values())
        dense_layer: dict[int, int] = defaultdict(int)
        for i, c in zip(dense.prog.info, dense.charged()):
            if i.layer >= 0:
                dense_layer[i.layer] += c
        s["dense"] = {
            "cycles": dense.cycles, "dram_bytes": dense_bytes,
            "checked_responses": dense.checked, "mismatches": dense.mismatches,
            "per_layer_cycles": {str(k): v for k, v in sorted(dense_layer.items())},
            "macs": macs(dense.prog),
        }
        s["speedup"] = dense.cycles / sparse.cycles if sparse.cycles else None
        s["dram_reduction"] = dense_bytes / total if total else None
    return s


def own_vs_recorded(checks: list[dict]) -> dict:
    """How far the accelerator's own TOPK answers are from the kept sets the PyTorch run
    recorded (replay uses the recorded ones): per (step, layer) and kind, the overlap
    ``|own & recorded| / |recorded|``; means by kind. The accelerator's importance starts
    at the replay's CLEAR (no prefill mass) and its TOPK_TOKENS ranks every listed id (the
    algorithm keeps the sinks and the recent window first), so 1.0 is not expected."""
    per = []
    for c in checks:
        rec, own = set(c["recorded"]), set(c["own"])
        per.append({"iteration": c["iteration"], "layer": c["layer"], "kind": c["kind"], "kept": len(rec),
                    "overlap": len(rec & own) / len(rec) if rec else 1.0})
    out: dict = {"per_step_layer": per}
    for kind in ("tokens", "heads"):
        vals = [x["overlap"] for x in per if x["kind"] == kind]
        if vals:
            out[f"{kind}_mean_overlap"] = sum(vals) / len(vals)
            out[f"{kind}_min_overlap"] = min(vals)
            out[f"{kind}_selections"] = len(vals)
    return out


def table(s: dict) -> str:
    """A human-readable table of the summary."""
    mb = 1 / (1 << 20)
    rows = [
        ("workload", s["workload"]), ("preset / DRAM", f"{s['preset']} / {s['dram_backend']}"),
        ("mode", s["mode"]), ("ATTEND requests", f"{s['attend_requests']} ({s.get('query_heads', 0)} query heads)"),
        ("responses checked", f"{s['checked_responses']} ({s['mismatches']} mismatches)"),
        ("cycles", f"{s['cycles']:,}"), ("time", f"{s['time_us']:.1f} us at {s['clock_mhz']} MHz"),
        ("DRAM read", f"{s['dram_bytes']['total'] * mb:.2f} MiB (K MSB {s['dram_bytes']['k_msb'] * mb:.2f}, "
                      f"K LSB {s['dram_bytes']['k_lsb'] * mb:.2f}, V {s['dram_bytes']['v'] * mb:.2f}, "
                      f"lists {s['dram_bytes']['token_list'] * mb:.2f})"),
        ("bandwidth", f"{s['bandwidth_gbps']:.1f} GB/s of {s['peak_bandwidth_gbps']:.1f} GB/s peak "
                      f"({100 * s['bandwidth_utilization']:.1f}%; peak of the {s.get('peak_bandwidth_source', 'ports')})"),
        ("DRAM-bound lower bound", f"{s['dram_bound_cycles']:,.0f} cycles"
                                   + (f" (run is {s['cycles_over_dram_bound']:.2f}x)" if s['cycles_over_dram_bound'] else "")),
        ("requantization rate", f"{100 * s['requant_rate']:.1f}% of the query heads"),
    ]
    if s.get("unit_bounds"):
        b, name = s["unit_bounds"], s["binding_bound"]
        rows.append(("lower bounds by unit", ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in
                                                        sorted(b.items(), key=lambda kv: -kv[1]))
                     + f" cycles; the largest, {name.replace('_', ' ')}, is the run's bound"
                     + (f" (run is {s['cycles_over_bound']:.2f}x)" if s.get("cycles_over_bound") else "")))
    if s.get("kv_fraction_of_grouped_dense") is not None:
        rows.append(("K/V read vs grouped dense", f"{s['kv_bytes'] / 1e6:.1f} MB of {s['grouped_dense_kv_bytes'] / 1e6:.1f} MB "
                     f"({100 * s['kv_fraction_of_grouped_dense']:.1f}%; dense = each K/V row once per "
                     "(step, layer, K/V head), 16-bit)"))
    if s.get("kv_fraction_per_query_head") is not None:
        rows.append(("K/V bits per query head vs dense", f"{100 * s['kv_fraction_per_query_head']:.2f}% (the accuracy "
                     "table's definition: each query head's MSBs, LSBs when refetched, selected V rows and folded "
                     "scales, vs 16-bit K and V of every token)"))
    if "dense" in s:
        rows += [("dense cycles", f"{s['dense']['cycles']:,}"),
                 ("speed-up over dense", f"{s['speedup']:.2f}x"),
                 ("DRAM reduction", f"{s['dram_reduction']:.2f}x")]
    if s.get("gpu_baseline"):
        from spatten.sim.gpu_compare import table_rows
        rows += table_rows(s["gpu_baseline"])
    if s.get("float_error"):
        fe = s["float_error"]
        rows.append(("vs float, same integers", f"max {fe['max_abs']:.3g}, mean {fe['mean_abs']:.3g} V units; "
                                                f"max {fe['max_over_tolerance']:.2f} of the tolerance, "
                                                f"{fe['violations']} violations in {fe['requests']}"))
        rows.append(("vs the model's float", f"max {fe['model_max_abs']:.3g}, mean {fe['model_mean_abs']:.3g} "
                                             f"(quantization included)" if fe.get("model_max_abs") is not None
                     else "not checked (the tensors have no out_ref)"))
        if fe.get("value_selection_ties") or fe.get("value_selection_violations"):
            rows.append(("V rows vs the model's choice", f"{fe['value_selection_ties']} near-tie selections "
                                                        f"(top-k or threshold, within the fixed-point bound), "
                                                        f"{fe['value_selection_violations']} beyond it"))
    ovr = s.get("own_vs_recorded")
    for kind in ("tokens", "heads"):
        if ovr and f"{kind}_mean_overlap" in ovr:
            rows.append((f"own TOPK_{kind.upper()} vs recorded",
                         f"overlap mean {100 * ovr[f'{kind}_mean_overlap']:.1f}%, min "
                         f"{100 * ovr[f'{kind}_min_overlap']:.1f}% over {ovr[f'{kind}_selections']} selections "
                         f"(replay used the recorded sets)"))
    if s.get("sim_cycles_per_s"):
        rows.append(("simulation speed", f"{s['sim_cycles_per_s']:,.0f} cycles/s ({s['sim_wall_s']:.1f} s)"))
    w = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(w)}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'layer'.ljust(6)} {'cycles':>12} {'dense cycles':>14} {'MiB':>8} {'requests':>9}")
    dense_layer = s.get("dense", {}).get("per_layer_cycles", {})
    for layer, v in s["per_layer"].items():
        lines.append(f"{layer.ljust(6)} {v['cycles']:>12,} {dense_layer.get(layer, 0):>14,} "
                     f"{v['bytes'] * mb:>8.2f} {v['requests']:>9}")
    if s.get("controller_state_cycles"):
        lines.append("")
        for unit, label in (("front", "front end (lists, keys, softmax)"), ("back", "back end (probabilities, values)"),
                            ("resp", "responder (ATTEND responses, beside the back end's next job)")):
            counts = s["controller_state_cycles"].get(unit, {})
            if counts:
                lines.append(f"cycles by {label}: " + ", ".join(
                    f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        wait = s["controller_state_cycles"].get("keyRowsWait", {}).get("yes")
        if wait is not None:
            keys = s["controller_state_cycles"].get("front", {}).get("keys", 0)
            lines.append(f"of the front end's keys: {wait:,} cycles waiting for K MSB rows from DRAM "
                         f"(pass 1, the next beat's rows not yet filled), {keys - wait:,} the others")
    return "\n".join(lines) + "\n"


def summary_txt_line(s: dict, params) -> str:
    """The original SpAtten ``summary.txt`` line: workload, cycles, buffer lines, top-k
    parallelism."""
    return f"{s['workload']},{s['cycles']},{params.max_tokens},{params.topk_parallelism}\n"


def plots(s: dict, out: Path) -> list[Path]:
    """per_layer_cycles.png, traffic.png, roofline.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        with atomic_output(out / name) as fh:
            fig.savefig(fh, dpi=110, format="png")
        plt.close(fig)
        made.append(out / name)

    layers = list(s["per_layer"].keys())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = range(len(layers))
    ax.bar([x - 0.2 for x in xs], [s["per_layer"][k]["cycles"] for k in layers], 0.4, label="SpAtten")
    if "dense" in s:
        ax.bar([x + 0.2 for x in xs], [s["dense"]["per_layer_cycles"].get(k, 0) for k in layers], 0.4,
               label="dense")
    ax.set_xticks(list(xs), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("cycles")
    ax.set_title("Cycles per layer")
    ax.legend()
    save(fig, "per_layer_cycles.png")

    mb = 1 / (1 << 20)
    fig, ax = plt.subplots(figsize=(5, 4))
    kinds = ["k_msb", "k_lsb", "v", "token_list"]
    labels = {"k_msb": "K MSB", "k_lsb": "K LSB", "v": "V", "token_list": "token lists"}
    bottom = 0.0
    for k in kinds:
        val = s["dram_bytes"][k] * mb
        ax.bar(["SpAtten"], [val], bottom=[bottom], label=labels[k])
        bottom += val
    if "dense" in s:
        ax.bar(["dense"], [s["dense"]["dram_bytes"] * mb], color="grey", label="dense (all)")
    ax.set_ylabel("MiB read from DRAM")
    ax.set_title("DRAM traffic")
    ax.legend()
    save(fig, "traffic.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    peak_bw = s["peak_bandwidth_gbps"] * 1e9 / (s["clock_mhz"] * 1e6)  # bytes/cycle
    lanes = s.get("dot_lanes") or 1
    import numpy as np
    oi = np.logspace(-2, 3, 200)
    ax.loglog(oi, np.minimum(lanes, oi * peak_bw), "k-", label="roof")
    for name, m, by, cyc in [("SpAtten", s["macs"], s["dram_bytes"]["total"], s["cycles"])] + (
            [("dense", s["dense"]["macs"], s["dense"]["dram_bytes"], s["dense"]["cycles"])] if "dense" in s else []):
        if by and cyc:
            ax.loglog([m / by], [m / cyc], "o", label=name)
    ax.set_xlabel("operational intensity (MAC / DRAM byte)")
    ax.set_ylabel("MAC / cycle")
    ax.set_title("Roofline")
    ax.legend()
    save(fig, "roofline.png")
    return made


def write_all(s: dict, params, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    s = dict(s)
    s["dot_lanes"] = params.dot_lanes
    write_atomic(out / "summary.json", json.dumps(s, indent=2, default=float) + "\n")
    txt = table(s)
    write_atomic(out / "summary.md", txt)
    prev = (out / "summary.txt").read_text() if (out / "summary.txt").is_file() else ""
    write_atomic(out / "summary.txt", prev + summary_txt_line(s, params))
    return [out / "summary.json", out / "summary.md", out / "summary.txt"] + plots(s, out)
