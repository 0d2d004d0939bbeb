"""run.py on a grouped-query workload: the host sends one ATTEND_GROUP per (step, layer,
K/V head), every response is bit-exact, and the traffic is what SPEC 2 says a group
reads (expected bytes counted here from the rows, not from the code under test)."""

from __future__ import annotations

import json
from pathlib import Path

from tests import inputs_fixtures as fx

RTL_TOPS = [("SpAttenTop", "tiny")]


def test_gqa_workload_runs_grouped(tmp_path: Path) -> None:
    rows, t = fx.workload()
    csv = fx.write(tmp_path / "gqa.csv", rows, t)
    out = tmp_path / "out"
    proc = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    per_group = fx.HEADS // fx.KV_HEADS  # 2 query heads a K/V head; tiny's maxGroupHeads is 4
    groups = len(rows) // per_group
    assert s["attend_requests"] == groups and s["query_heads"] == len(rows)
    n_topk = sum(r.if_topk for r in rows)
    assert s["checked_responses"] == 1 + groups + n_topk and s["mismatches"] == 0
    assert s["dense"]["checked_responses"] == 1 + groups and s["dense"]["mismatches"] == 0
    # 8-bit K MSB rows of 16 elements (16 B): one 32-byte burst a key, once per group
    by = s["dram_bytes"]
    assert by["k_msb"] == 32 * sum(r.key_fetch_num for r in rows) // per_group
    # V: at most every kept row once per group (the union of the heads' selections)
    assert 0 < by["v"] <= 32 * sum(r.key_fetch_num for r in rows) // per_group
    # grouped dense: 16-bit K and V rows (32 B each) of the whole sentence, once per group
    dense_kv = 2 * 32 * sum(r.sentence_length_L for r in rows) // per_group
    assert s["grouped_dense_kv_bytes"] == dense_kv
    assert s["kv_fraction_of_grouped_dense"] == (by["k_msb"] + by["k_lsb"] + by["v"]) / dense_kv
    lists = 32 * sum(-(-2 * r.sentence_length_L // 32) for r in rows) // per_group
    assert s["dense"]["dram_bytes"] == dense_kv + lists
