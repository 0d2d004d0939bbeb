"""tools/golden_vs_float.py runs, reports, and its bound holds on a small sample."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tools import golden_vs_float
from spatten.tests.hwfixtures import TINY_DICT


def test_small_run(tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps(TINY_DICT))
    out = tmp_path / "stats.json"
    res = CliRunner().invoke(golden_vs_float.main, [
        "--requests", "60", "--seed", "3", "--max-d", "32", "--max-n", "200",
        "--params", str(params), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "holds on all 60 requests" in res.output
    stats = json.loads(out.read_text())
    assert stats["requests"] == 60 and stats["err_fx_over_tol"]["max"] <= 1.0
    assert 0 < stats["err_fx_rel"]["max"] < 0.01  # fixed point is close, but not exact
