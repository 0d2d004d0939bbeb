"""The accelerator per decode step beside a measured GPU (``run.py --gpu-baseline FILE``).

``FILE`` is a ``tools/bench_gpu.py`` result (``hardware/workloads/gpu/``). Before anything
is built, :func:`load_for_workload` checks that it was measured on the very workload CSV
being run (the SHA-256 of the CSV's bytes recorded in the result, and its row count) and
that it has a time for every decode step the run covers. After the run,
:func:`compare` puts the accelerator's time per decode step at the preset's clock
(cycles charged to the step's commands / ``clockMHz``) beside the GPU's medians, dense and
compacted, with the L2 cache flushed before each replay (the primary figure of the
result; K/V read from HBM as in a real decode step), and their ratios. Only the decode
steps the run covers whole are compared (``--limit`` may cut one short).

Cycles are charged to commands by completion (``RunResult.charged``), so a step's cycles
are those between the last response of the previous step and its own last response.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from spatten.errors import InputError
from spatten.sim.gpu_baseline import file_sha256, load_gpu_baseline

__all__ = ["GpuBaseline", "load_for_workload", "compare", "table_rows"]


@dataclass(frozen=True)
class GpuBaseline:
    """A checked GPU result: per-step medians (µs) and where they come from."""

    path: str
    device: str
    csv_sha256: str
    steps: dict[int, dict[str, float]]  # {step: {"dense_us", "compacted_us"}}, L2 flushed
    backends: dict[str, str]


def load_for_workload(path: Path | str, csv: Path | str, all_rows: Sequence[Any],
                      run_rows: Sequence[Any]) -> GpuBaseline:
    """Read ``path`` and check it against the workload ``csv`` (every data row
    ``all_rows``, the rows run ``run_rows``); :class:`InputError` naming the file when it
    is unreadable, not a ``bench_gpu.py`` result, measured on another workload, or
    missing a step the run covers."""
    p = str(path)
    steps = load_gpu_baseline(p)  # BenchError (an InputError) naming the file when malformed
    data = json.loads(Path(p).read_text(encoding="utf-8"))
    wl = data.get("workload")
    if not isinstance(wl, dict) or not isinstance(wl.get("sha256"), str):
        raise InputError(f"{p}: no 'workload' object with the 'sha256' of the CSV it was measured on")
    sha = file_sha256(csv)
    if wl["sha256"] != sha:
        raise InputError(f"{p}: measured on {wl.get('path', '?')} (sha256 {wl['sha256'][:12]}..., "
                         f"{wl.get('rows', '?')} rows), not on {csv} (sha256 {sha[:12]}..., {len(all_rows)} rows): "
                         f"a GPU baseline compares only on the workload it timed")
    if wl.get("rows") is not None and wl.get("rows") != len(all_rows):
        raise InputError(f"{p}: records {wl.get('rows')} rows for {csv}, which has {len(all_rows)}")
    missing = sorted({r.iteration_id for r in run_rows} - set(steps))
    if missing:
        raise InputError(f"{p}: no GPU time for decode step {missing[0]} of {csv} "
                         f"({len(missing)} step{'s' if len(missing) > 1 else ''} missing)")
    dev = data.get("device") if isinstance(data.get("device"), dict) else {}
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    return GpuBaseline(path=p, device=str(dev.get("name", "unknown GPU")), csv_sha256=sha, steps=steps,
                       backends={v: str(summary.get(f"{v}_backend", "?")) for v in ("dense", "compacted")})


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def compare(gpu: GpuBaseline, info: Sequence[Any], charged: Sequence[int], clock_mhz: float,
            all_rows: Sequence[Any], run_rows: Sequence[Any]) -> dict:
    """The comparison for the report (``summary.json``'s ``gpu_baseline``): per complete
    step the accelerator's cycles and µs and the GPU's µs, and the means and ratios
    (``accel_over_gpu_*`` > 1: the accelerator is slower)."""
    whole = Counter(r.iteration_id for r in all_rows)
    ran = Counter(r.iteration_id for r in run_rows)
    complete = sorted(s for s in ran if ran[s] == whole[s])
    cycles: Counter[int] = Counter()
    charged = list(charged)
    if charged:  # the run's cycles count both ends (max end - min start + 1): the first command
        charged[0] += 1  # gets the cycle its first word entered, so the steps add up to the run
    for c, n in zip(info, charged):
        cycles[c.iteration] += n
    steps = []
    for s in complete:
        g = gpu.steps[s]
        us = cycles[s] / clock_mhz
        steps.append({"step": s, "cycles": cycles[s], "accel_us": us, "gpu_dense_us": g["dense_us"],
                      "gpu_compacted_us": g["compacted_us"]})
    out: dict = {
        "file": gpu.path, "device": gpu.device, "workload_sha256": gpu.csv_sha256, "workload_matches": True,
        "l2": "flushed", "backends": gpu.backends, "clock_mhz": clock_mhz,
        "complete_steps": len(steps), "partial_steps_left_out": sorted(s for s in ran if ran[s] != whole[s]),
        "steps": steps,
    }
    if steps:
        a = _mean([x["accel_us"] for x in steps])
        d = _mean([x["gpu_dense_us"] for x in steps])
        c = _mean([x["gpu_compacted_us"] for x in steps])
        out.update({"accel_us_per_step": a, "gpu_dense_us_per_step": d, "gpu_compacted_us_per_step": c,
                    "accel_over_gpu_dense": a / d if d else None,
                    "accel_over_gpu_compacted": a / c if c else None})
    return out


def table_rows(g: dict) -> list[tuple[str, str]]:
    """Rows of the report table for ``summary.json``'s ``gpu_baseline``."""
    rows = [("GPU baseline", f"{g['file']} ({g['device']}; measured on this CSV: sha256 matches; L2 flushed)")]
    if not g.get("complete_steps"):
        rows.append(("per decode step", "no decode step of the workload ran whole: nothing to compare"))
        return rows
    n = g["complete_steps"]
    left = g["partial_steps_left_out"]
    rows.append(("per decode step", f"accelerator {g['accel_us_per_step']:.1f} us at {g['clock_mhz']:g} MHz; "
                                    f"GPU {g['gpu_dense_us_per_step']:.1f} us dense, "
                                    f"{g['gpu_compacted_us_per_step']:.1f} us compacted "
                                    f"(mean of {n} step{'s' if n > 1 else ''}"
                                    + (f"; partial step {', '.join(map(str, left))} left out" if left else "") + ")"))

    d, c = g["accel_over_gpu_dense"], g["accel_over_gpu_compacted"]
    verdict = ("the accelerator is slower" if d > 1 and c > 1 else "the accelerator is faster" if d < 1 and c < 1
               else "faster than one, slower than the other")
    rows.append(("accelerator / GPU time", f"{d:.2f} of dense, {c:.2f} of compacted ({verdict})"))
    return rows
