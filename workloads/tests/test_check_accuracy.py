"""tools/check_accuracy.py: a table re-run on the same machine passes; a perturbed
perplexity or K/V fraction fails; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tools.check_accuracy import main as check
from tools.eval_accuracy import main as evaluate
from workloads.tests.tiny_models import save_tiny, write_text

POLICIES = ["dense", "kivi-hw@quantization.requant_threshold=0.3",
            "h2o@eviction.budget=0.5@eviction.min_tokens=2@eviction.recent_tokens=2"]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check")
    model, text = save_tiny("llama", root / "llama"), write_text(root / "text.txt", 300)
    args = ["--model", str(model), "--text", str(text), "--context", "24", "--eval-tokens", "12",
            "--out", str(root / "t")]
    for p in POLICIES:
        args += ["--policy", p]
    res = CliRunner().invoke(evaluate, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return root / "t.json"


def test_check_passes_on_its_own_output(table: Path) -> None:
    res = CliRunner().invoke(check, [str(table)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"{len(POLICIES)} of {len(POLICIES)} rows within tolerance" in res.output
    assert res.output.count("ok  ") == len(POLICIES)


@pytest.mark.parametrize(("key", "factor", "row"), [("ppl", 1.001, 1), ("kv_fraction", 1.0 + 1e-6, 2)])
def test_check_fails_on_a_perturbed_table(table: Path, tmp_path: Path, key: str, factor: float, row: int) -> None:
    data = json.loads(table.read_text())
    data["results"][row][key] *= factor
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    res = CliRunner().invoke(check, [str(bad)], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert f"FAIL {POLICIES[row]}" in res.output and f"{len(POLICIES) - 1} of {len(POLICIES)} rows" in res.output


def test_check_one_row_and_bad_inputs(table: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(check, [str(table), "--policy", "dense"], catch_exceptions=False)
    assert res.exit_code == 0 and "1 of 1 rows within tolerance" in res.output
    res = CliRunner().invoke(check, [str(table), "--policy", "no-such"], catch_exceptions=False)
    assert res.exit_code == 2 and "no row for no-such" in res.output
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    res = CliRunner().invoke(check, [str(junk)], catch_exceptions=False)
    assert res.exit_code == 2 and "not an eval_accuracy.py result" in res.output
