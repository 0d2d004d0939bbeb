"""``tools/gen_synthetic.py`` / ``workloads/synthetic.py``: a synthetic grouped-query
workload in the project's CSV + npz format, deterministic from its seed, pruned and
quantized by the SpAtten algorithm, accepted by ``run.py`` and simulated bit-exactly (a
small one on the tiny preset; the D = 128, 32-over-8-heads, 8,192-token one is the paper
preset's, see README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import inputs_fixtures as fx
from spatten.sim import inputs
from workloads.csvschema import read_workload
from workloads.spatten.policy import load_policy
from workloads.synthetic import SyntheticSpec, generate_synthetic, synthetic_kv

ROOT = Path(__file__).resolve().parents[1]
RTL_TOPS = [("SpAttenTop", "tiny")]

# fits the tiny preset: D 16, 8 query heads over 2 K/V heads, 56 + 2 tokens
SMALL = ["--layers", "3", "--q-heads", "8", "--kv-heads", "2", "--head-dim", "16", "--context", "56", "--steps", "2"]
POLICY = """name: test-synthetic
prefill: dense
token_pruning:
  enabled: true
  schedule: {start: 0.3, end: 0.7, final_keep: 0.5}
  sink_tokens: 2
  recent_tokens: 8
  min_tokens: 12
  importance: cumulative
quantization:
  enabled: true
  key_msb_bits: 6
  key_lsb_bits: 4
  query_bits: 16
  value_bits: 8
  requant_threshold: 0.3
"""


def _gen(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    pol = tmp_path / "policy.yaml"
    pol.write_text(POLICY)
    csv = tmp_path / f"{name}.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_synthetic.py"), *SMALL, "--policy", str(pol),
                           "--out", str(csv), *extra], cwd=ROOT, capture_output=True, text=True)
    return proc, csv


def test_synthetic_workload_format_and_determinism(tmp_path: Path) -> None:
    proc, csv = _gen(tmp_path, "a")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    wl = read_workload(csv)
    rows = wl.rows
    assert len(rows) == summary["rows"] == 2 * 3 * 8  # steps x layers x query heads (no head pruning)
    assert {r.embedding_length_D for r in rows} == {16}
    assert {r.sentence_length_L for r in rows if r.iteration_id == 0} == {57}
    assert {r.sentence_length_L for r in rows if r.iteration_id == 1} == {58}
    assert all(int(r.extra["kv_head_id"]) == r.head_id // 4 for r in rows)
    # the policy: layer 0 attends to all, later layers keep fewer (cascade), 6+4-bit keys
    kept = {r.layer_id: r.key_fetch_num for r in rows if r.iteration_id == 0}
    assert kept[0] == 57 and kept[2] <= kept[1] < kept[0] and kept[2] >= 12
    assert all(r.quant_key_bit == 6 and r.auto_requant_incre == 4 and r.quant_value_bit == 8 for r in rows)
    assert any(r.if_topk for r in rows)
    # the tensors are the CSV's (the run's own check) and hold the generator's K/V
    npz = csv.with_suffix(".npz")
    t = inputs.load_tensors(npz)
    assert inputs.check_tensors(npz, t, csv, rows) == ""
    assert t["k"].shape == (3, 2, 58, 16) and t["k"].dtype == np.float16
    meta = json.loads(str(t["meta"]))
    assert (meta["n_heads"], meta["n_kv_heads"], meta["head_dim"]) == (8, 2, 16)
    spec = SyntheticSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["synthetic"].items()})
    k, v = synthetic_kv(spec, 1, 1)
    assert np.array_equal(t["k"][1, 1], k.astype(np.float16)) and np.array_equal(t["v"][1, 1], v.astype(np.float16))
    # the same options give the same files; another seed other data
    proc2, csv2 = _gen(tmp_path, "b")
    assert proc2.returncode == 0, proc2.stderr
    assert csv2.read_bytes() == csv.read_bytes()
    t2 = inputs.load_tensors(csv2.with_suffix(".npz"))
    assert all(np.array_equal(t[key], t2[key]) for key in t if key != "meta")
    proc3, csv3 = _gen(tmp_path, "c", "--seed", "2")
    assert proc3.returncode == 0 and not np.array_equal(inputs.load_tensors(csv3.with_suffix(".npz"))["k"], t["k"])


def test_synthetic_heads_differ_in_spread() -> None:
    """Some heads peaked, some flat: both requantization outcomes occur at full size."""
    spec = SyntheticSpec(layers=1, q_heads=8, kv_heads=4, head_dim=32, context=512, steps=1)
    built, _ = generate_synthetic(spec, load_policy("spatten-default"))
    req = [r.if_requant for r in built.rows]
    assert any(req) and not all(req)


def test_bad_options_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_synthetic.py"), "--q-heads", "6", "--kv-heads",
                           "4", "--out", str(tmp_path / "x.csv")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "q_heads (6) must be a multiple of kv_heads (4)" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_synthetic_workload_runs_bit_exact_on_tiny(tmp_path: Path) -> None:
    proc, csv = _gen(tmp_path, "run")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    run = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out)])
    assert run.returncode == 0, run.stdout + run.stderr
    s = json.loads((out / "summary.json").read_text())
    rows = read_workload(csv).rows
    assert s["mode"] == "functional" and s["query_heads"] == len(rows)
    assert s["attend_requests"] < len(rows)  # grouped: the query heads of a K/V head together
    assert s["mismatches"] == 0 and s["dense"]["mismatches"] == 0
    assert s["checked_responses"] == 1 + s["attend_requests"] + sum(r.if_topk for r in rows)
    assert s["float_error"]["violations"] == 0
