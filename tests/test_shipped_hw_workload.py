"""The shipped workloads of the best hardware-runnable policies (issue 14):
``hardware/workloads/smollm2-135m-ctx256-s4-kivi-hw6.{csv,npz}`` (per-channel K scales folded
into the query, per-channel V scales folded into the output) and, the best since session 12,
``smollm2-135m-ctx256-s4-kivi-hw-h2o95-vrel.{csv,npz}`` (the same folds at 8-bit V, H2O
eviction lists per K/V head, V rows by a probability threshold of 0.15 / N per request: the
threshold mode).

- Its K/V bytes in the accuracy table's definition (bits read per decode step, layer and
  query head vs 16-bit K and V of every token), counted two ways from the same CSV and
  npz, agree (exactly with value top-k; with the threshold, up to the rows whose
  probabilities straddle it within the fixed-point bound, each checked as such): from the CSV rows (the PyTorch run's decisions, what ``eval_accuracy.py``
  counts: ``kvattention.count_bits`` == ``export.kv_bytes_ratio``, tested in
  workloads/tests/test_eval_accuracy.py) and from the program run.py builds (the
  accelerator's own refetch and value decisions, from the bit-exact golden model).
- A slice of it runs on the eighth preset's RTL with every response bit-exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inputs_fixtures as fx

ROOT = Path(__file__).resolve().parents[1]
WL = ROOT / "hardware" / "workloads"
CSV = WL / "smollm2-135m-ctx256-s4-kivi-hw-h2o95-vrel.csv"
ALL = [WL / "smollm2-135m-ctx256-s4-kivi-hw6.csv", CSV]


def _row_fraction(rows, policy) -> float:
    from workloads.spatten.export import scale_bytes  # noqa: PLC0415

    fetched = sum(r.kv_bytes() + scale_bytes(policy, r) for r in rows)
    dense = sum(r.dense_kv_bytes() for r in rows)  # each row is one query head's request
    return fetched / dense


@pytest.mark.parametrize("csv", ALL, ids=lambda p: p.stem.split("-s4-")[1])
def test_shipped_workload_counts_the_same_bytes_both_ways(params_files, csv: Path) -> None:
    from spatten.contract.params import load_params  # noqa: PLC0415
    from spatten.sim import inputs, program  # noqa: PLC0415
    from workloads.csvschema import read_workload  # noqa: PLC0415
    from workloads.spatten.overrides import load_policy_spec  # noqa: PLC0415

    wl = read_workload(csv)
    tensors = inputs.load_tensors(csv.with_suffix(".npz"))
    meta = json.loads(str(tensors["meta"]))
    policy = load_policy_spec(meta["policy"])
    assert meta["scales"] == {"key": "channel", "value": "channel"}
    rows = [r for r in wl.rows if r.iteration_id == 0]  # one decode step: 30 layers x 9 heads
    prog = program.build(rows, load_params(params_files["eighth"]), tensors=tensors)
    attends = [c for c in prog.info if c.kind == "attend"]
    assert sum(c.heads for c in attends) == len(rows)
    hw = sum(c.head_kv_bits for c in attends) / sum(c.head_dense_kv_bits for c in attends)
    assert 0.2 < hw < 0.6
    checks = prog.float_checks.values()
    assert not any(fc.tie_violation for fc in checks)
    if not policy.value_pruning.thresholded:
        assert hw == pytest.approx(_row_fraction(rows, policy), rel=1e-12)
    else:
        # the model compares float p_j with the threshold, the accelerator its Q.16 p_j: the
        # rows on the other side within the fixed-point bound (ties, none beyond) differ
        assert any(fc.tie for fc in checks)
        assert hw == pytest.approx(_row_fraction(rows, policy), rel=2e-3)
        # each row's threshold is 0.15 / N, N the keys of its request (the H2O list's length,
        # growing with the cache over the 4 steps)
        assert policy.value_pruning.relative_threshold == 0.15
        assert all(float(r.extra["value_threshold"]) == 0.15 / r.key_fetch_num for r in wl.rows)
        assert len({r.key_fetch_num for r in wl.rows}) > 1


def test_shipped_workload_slice_runs_bit_exact_on_eighth(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = fx.run_py([str(CSV), "--preset", "eighth", "--limit", "18", "--out", str(out), "--no-dense"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["mismatches"] == 0 and s["checked_responses"] > 0 and s["query_heads"] == 18
    assert s["float_error"]["violations"] == 0
