"""End-to-end tests of ``run.py``: a small workload on the tiny preset, every response
checked against the golden model, and malformed workloads rejected before any build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workloads.csvschema import WorkloadRow, write_workload

ROOT = Path(__file__).resolve().parents[1]
RTL_TOPS = [("SpAttenTop", "tiny")]


def _rows() -> list[WorkloadRow]:
    """2 decode steps x 2 layers x 2 heads, D = 16, ~40 tokens: cascade token pruning after
    layer 0, requantization on some rows, local value pruning, 6+4-bit keys."""
    rows = []
    for it in range(2):
        length = 40 + it
        for layer in range(2):
            n = length if layer == 0 else 30
            for head in range(2):
                last = head == 1
                rows.append(WorkloadRow(
                    iteration_id=it, layer_id=layer, head_id=head, embedding_length_D=16,
                    sentence_length_L=length, key_fetch_num=n, quant_key_bit=6, quant_query_bit=16,
                    auto_requant_thres=0.05, if_requant=(head + layer + it) % 2 == 0,
                    auto_requant_incre=4, value_fetch_num=max(1, n // 4), quant_value_bit=8,
                    if_accumulate_importance=True, if_rescale_previous_importance=False,
                    if_topk=layer == 0 and last, topk=30 if layer == 0 and last else -1))
    return rows


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env=dict(os.environ))


def test_run_tiny_workload_end_to_end(tmp_path: Path) -> None:
    csv = tmp_path / "tiny.csv"
    write_workload(csv, _rows(), "tests/test_run.py tiny workload")
    out = tmp_path / "out"
    proc = _run([str(csv), "--preset", "tiny", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    n_attend = len(_rows())
    n_topk = 2
    # every command of the sparse run (CLEAR + ATTENDs + TOPKs) and of the dense run was checked
    assert s["attend_requests"] == n_attend
    assert s["checked_responses"] == 1 + n_attend + n_topk
    assert s["mismatches"] == 0
    assert s["dense"]["checked_responses"] == 1 + n_attend and s["dense"]["mismatches"] == 0
    # traffic: 6-bit K MSB rows of 16 elements = 12 B -> one 32-byte burst per key
    by = s["dram_bytes"]
    assert by["k_msb"] == 32 * sum(r.key_fetch_num for r in _rows())
    assert by["v"] <= 32 * sum(r.value_fetch_num for r in _rows())
    assert 0 < s["requant_rate"] < 1
    # On the tiny preset (N ~ 40, one channel) the run is compute-bound, so pruning cuts
    # traffic but not necessarily cycles; the DRAM-bound claims are the eighth preset's.
    assert s["cycles"] > 0 and s["dense"]["cycles"] > 0
    dense_bytes = 2 * 32 * sum(r.sentence_length_L for r in _rows())  # 16-bit K and V rows: 32 B each
    assert s["dense"]["dram_bytes"] == dense_bytes + 32 * sum(-(-2 * r.sentence_length_L // 32) for r in _rows())
    assert s["dram_reduction"] > 1
    # the per-stage breakdown names the controller's stages and covers every cycle
    stages = s["controller_state_cycles"]
    assert {"keys", "summary"} <= set(stages["front"]) and {"probs", "values"} <= set(stages["back"])
    assert {"respO", "respSel"} <= set(stages["resp"])
    assert all(sum(stages[u].values()) >= s["cycles"] for u in ("front", "back", "resp"))
    # the key pass waits for K MSB rows (at least each request's first rows: the fill starts
    # at its keys or during the previous request's last head), only within `keys`
    assert 0 < stages["keyRowsWait"]["yes"] < stages["front"]["keys"]
    assert "waiting for K MSB rows from DRAM" in (out / "summary.md").read_text()
    # lower bounds by unit (tiny: K = 2, 16 lanes, D = 16; worked out by hand from _rows()):
    # P x V: beats of 2 rows, 2 cycles each (8 columns a row lane): m = 10, 10, 7, 7 per
    # step -> 10 + 10 + 8 + 8; probabilities: ceil(n / 2) per head; responses: ATTEND 2 +
    # D + ceil(n / 64) words (one selection-map word: n <= 64), CLEAR 1, each TOPK (30 kept) 1 + 8
    b = s["unit_bounds"]
    assert b["pxv_array"] == 2 * (10 + 10 + 8 + 8)
    assert b["probabilities"] == 2 * 20 + 2 * 15 + 2 * 21 + 2 * 15
    assert b["response"] == 8 * (2 + 16 + 1) + 1 + 2 * 9
    # dot array: one key a beat at D' = 16 on 16 lanes; pass 1 of every head, pass 2 of some
    n_keys = sum(r.key_fetch_num for r in _rows())
    assert n_keys < b["dot_array"] < 2 * n_keys
    assert b["dram"] == s["dram_bound_cycles"]
    # each is a lower bound of the RTL's cycles; the report names the largest
    assert all(v <= s["cycles"] for v in b.values()), (b, s["cycles"])
    assert s["binding_bound"] == max(b, key=b.get) and s["cycles_over_bound"] >= 1
    assert "lower bounds by unit" in (out / "summary.md").read_text()
    for f in ("summary.md", "summary.txt", "per_layer_cycles.png", "traffic.png", "roofline.png"):
        assert (out / f).is_file(), f
    line = (out / "summary.txt").read_text().strip().split(",")
    assert line[0] == str(csv) and int(line[1]) == s["cycles"]


def test_run_waves(tmp_path: Path) -> None:
    """--waves: a traced build records every signal of the SpAtten run; the VCD covers
    every simulated cycle (two dumps a cycle) and holds the accelerator's ports."""
    csv = tmp_path / "tiny.csv"
    write_workload(csv, _rows(), "tests/test_run.py tiny workload")
    out = tmp_path / "out"
    proc = _run([str(csv), "--preset", "tiny", "--out", str(out), "--limit", "2", "--no-dense", "--waves"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["mismatches"] == 0 and s["checked_responses"] == 4  # CLEAR, 2 ATTENDs, the TOPK after head 1
    vcd = out / "sparse" / "waves.vcd"
    assert vcd.is_file() and not (out / "sparse" / "waves.vcd.tmp").exists()
    text = vcd.read_text()
    assert "$enddefinitions" in text
    for sig in ("io_resp_valid", "io_status_state", "io_status_backState"):
        assert f" {sig} " in text, sig
    stamps = [int(line[1:]) for line in text.splitlines() if line.startswith("#")]
    # the log's cycle count: last response end + 1 cycles simulated after reset
    log_end = max(int(line.split(",")[3]) for line in (out / "sparse" / "commands.csv").read_text().splitlines()[1:])
    assert stamps and max(stamps) >= 2 * log_end


@pytest.mark.parametrize("mutate, expect", [
    (lambda t: t.replace("key_fetch_num,", "key_fetch_nom,", 1), "key_fetch_num"),
    (lambda t: t.replace(",40,40,6,", ",40,4x0,6,", 1), ":2: key_fetch_num"),
    (lambda t: t.replace(",6,16,0.05,", ",17,16,0.05,", 1), ":2: quant_key_bit"),
    (lambda t: t.replace(",40,40,6,", ",40,41,6,", 1), ":2: key_fetch_num"),
])
def test_malformed_csv_rejected_before_any_build(tmp_path: Path, mutate, expect: str) -> None:
    csv = tmp_path / "bad.csv"
    write_workload(csv, _rows(), "bad")
    csv.write_text(mutate(csv.read_text()))
    build = tmp_path / "build"
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), str(csv), "--preset", "tiny",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "SPATTEN_BUILD_DIR": str(build)})
    assert proc.returncode != 0
    assert expect in proc.stderr, proc.stderr
    assert str(csv) in proc.stderr or "bad.csv" in proc.stderr
    assert not build.exists(), "a malformed workload must be rejected before anything is built"
    assert not (tmp_path / "out").exists()


def test_original_workload_format_parses_unchanged() -> None:
    seed = ROOT.parent / "shared" / "seed-workloads" / "summary-gpt2-small-wikitext2-per8.csv"
    if not seed.is_file():
        pytest.skip("../shared/seed-workloads is not present on this machine")
    from spatten.sim.simulate import load_rows
    wl, rows = load_rows(seed, None, None)
    assert len(rows) == 4608 and wl.config_name.startswith("configs/gpt2/")
    assert rows[0].key_fetch_num == 993 and rows[0].value_fetch_num == 204
