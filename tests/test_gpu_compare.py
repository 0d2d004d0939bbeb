"""``run.py --gpu-baseline``: a GPU result checked against the workload before any build,
and the accelerator's time per decode step put beside the GPU's in the report.

The GPU result used here is the structure of a real ``tools/bench_gpu.py`` result
(``hardware/workloads/gpu/h200-smollm2-...json``: every top-level key, and its first step
as the template of every step) with the workload record and the per-step medians of the
small tiny-preset workload of ``inputs_fixtures.py``; the medians are made-up inputs, and
every expected figure is derived here from the run's own per-command cycles."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import inputs_fixtures as fx
from spatten.sim import gpu_compare
from spatten.sim.gpu_baseline import file_sha256
from spatten.errors import InputError
from workloads.csvschema import read_workload

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "hardware" / "workloads" / "gpu" / "h200-smollm2-135m-ctx1024-s32-spatten-default.json"
RTL_TOPS = [("SpAttenTop", "tiny")]

# made-up GPU medians per step (µs): dense, compacted
GPU_US = {0: (3.25, 2.5), 1: (4.0, 3.5)}


def _gpu_json(csv: Path, path: Path, rows: int, steps=GPU_US) -> Path:
    real = json.loads(REAL.read_text())
    data = copy.deepcopy(real)
    data["workload"] = {**real["workload"], "path": str(csv), "sha256": file_sha256(csv), "rows": rows,
                        "steps": len(steps)}
    template = real["steps"][0]
    data["steps"] = []
    for s, (dense, comp) in steps.items():
        st = copy.deepcopy(template)
        st["step"] = s
        st["dense_us"] = {**template["dense_us"], "median": dense}
        st["compacted_us"] = {**template["compacted_us"], "median": comp}
        data["steps"].append(st)
    path.write_text(json.dumps(data))
    return path


def _workload(tmp_path: Path) -> tuple[Path, list]:
    rows, t = fx.workload()
    return fx.write(tmp_path / "w.csv", rows, t), rows


def test_baseline_checked_against_the_workload(tmp_path: Path) -> None:
    csv, rows = _workload(tmp_path)
    wl = read_workload(csv)
    good = _gpu_json(csv, tmp_path / "gpu.json", len(rows))
    g = gpu_compare.load_for_workload(good, csv, wl.rows, wl.rows)
    assert g.steps == {s: {"dense_us": d, "compacted_us": c} for s, (d, c) in GPU_US.items()}
    assert g.device == "NVIDIA H200" and g.csv_sha256 == file_sha256(csv)

    # measured on another CSV: the SHA-256 differs
    other = tmp_path / "other.csv"
    fx.write(other, [replace(r, key_fetch_num=r.key_fetch_num) for r in rows[:-1]], None)
    bad = _gpu_json(other, tmp_path / "other.json", len(rows) - 1)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path}/other.json: measured on {other}") + ".*not on .*w.csv"):
        gpu_compare.load_for_workload(bad, csv, wl.rows, wl.rows)
    # a step of the run has no GPU time
    one = _gpu_json(csv, tmp_path / "one.json", len(rows), {0: GPU_US[0]})
    with pytest.raises(InputError, match="one.json: no GPU time for decode step 1"):
        gpu_compare.load_for_workload(one, csv, wl.rows, wl.rows)
    assert gpu_compare.load_for_workload(one, csv, wl.rows, [r for r in wl.rows if r.iteration_id == 0])
    # unreadable or not a bench_gpu.py result
    for name, text, expect in (("missing.json", None, "file not found"), ("junk.json", "{not json", "not a JSON"),
                               ("other_tool.json", '{"tool": "x", "steps": []}', "not a bench_gpu.py result")):
        p = tmp_path / name
        if text is not None:
            p.write_text(text)
        with pytest.raises(InputError, match=re.escape(f"{p}: {expect}")):
            gpu_compare.load_for_workload(p, csv, wl.rows, wl.rows)


def test_bad_baseline_rejected_before_any_build(tmp_path: Path, params_files) -> None:
    import shutil

    build = tmp_path / "build"
    (build / "contract").mkdir(parents=True)
    for f in params_files.values():
        shutil.copy(f, build / "contract" / f.name)
    csv, rows = _workload(tmp_path)
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    proc = fx.run_py([str(csv), "--preset", "tiny", "--gpu-baseline", str(junk), "--out", str(tmp_path / "o")],
                     {"SPATTEN_BUILD_DIR": str(build)})
    assert proc.returncode == 2 and f"{junk}: not a bench_gpu.py result" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in build.iterdir()) == ["contract"] and not (tmp_path / "o").exists()
    ok = fx.run_py([str(csv), "--preset", "tiny", "--check-only", "--gpu-baseline",
                    str(_gpu_json(csv, tmp_path / "g.json", len(rows)))], {"SPATTEN_BUILD_DIR": str(build)})
    assert ok.returncode == 0 and "GPU baseline" in ok.stderr and "measured on this CSV" in ok.stderr, ok.stderr


def test_run_reports_per_step_time_beside_the_gpu(tmp_path: Path) -> None:
    csv, rows = _workload(tmp_path)
    gpu = _gpu_json(csv, tmp_path / "gpu.json", len(rows))
    out = tmp_path / "out"
    proc = fx.run_py([str(csv), "--preset", "tiny", "--no-dense", "--gpu-baseline", str(gpu), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    g = s["gpu_baseline"]
    assert g["workload_matches"] and g["workload_sha256"] == file_sha256(csv) and g["l2"] == "flushed"
    assert g["complete_steps"] == 2 and g["partial_steps_left_out"] == []
    # every command is charged to its step; the steps' cycles add up to the run's
    assert sum(x["cycles"] for x in g["steps"]) == s["cycles"]
    assert all(x["cycles"] > 0 for x in g["steps"])
    clock = s["clock_mhz"]
    for x in g["steps"]:
        assert x["accel_us"] == pytest.approx(x["cycles"] / clock)
        assert (x["gpu_dense_us"], x["gpu_compacted_us"]) == GPU_US[x["step"]]
    mean_accel = sum(x["cycles"] for x in g["steps"]) / clock / 2
    assert g["accel_us_per_step"] == pytest.approx(mean_accel)
    assert g["accel_over_gpu_dense"] == pytest.approx(mean_accel / ((3.25 + 4.0) / 2))
    assert g["accel_over_gpu_compacted"] == pytest.approx(mean_accel / ((2.5 + 3.5) / 2))
    table = (out / "summary.md").read_text()
    assert "GPU baseline" in table and "sha256 matches" in table and "accelerator / GPU time" in table
    assert f"accelerator {mean_accel:.1f} us" in table and f"GPU {(3.25 + 4.0) / 2:.1f} us dense" in table

    # a run that cuts step 1 short compares step 0 only, and says so
    out2 = tmp_path / "out2"
    n0 = sum(r.iteration_id == 0 for r in rows)
    proc = fx.run_py([str(csv), "--preset", "tiny", "--no-dense", "--limit", str(n0 + 2), "--gpu-baseline", str(gpu),
                      "--out", str(out2)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    g2 = json.loads((out2 / "summary.json").read_text())["gpu_baseline"]
    assert g2["complete_steps"] == 1 and g2["partial_steps_left_out"] == [1]
    assert [x["step"] for x in g2["steps"]] == [0] and g2["gpu_dense_us_per_step"] == GPU_US[0][0]
    assert "partial step 1 left out" in (out2 / "summary.md").read_text()
