"""pytest entry points of the top-k engine testbench (``pyverif/topk/tb_topk.py``).

Run: ``.venv/bin/python -m pytest pyverif/topk -q`` (``WAVES=1`` for waveforms,
``SPATTEN_SEED=<n>`` to reproduce a seed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools import hwbuild

TB = "pyverif.topk.tb_topk"


def test_topk_regression(tmp_path: Path) -> None:
    """Corner cases plus 1,000 random requests on the tiny preset, random stalls on
    every stream; every response checked, every coverage bin hit."""
    report = tmp_path / "report.json"
    hwbuild.run_cocotb("TopKEngine", "tiny", TB, testcase="TopKRegressionTest",
                       extra_env={"SPATTEN_TB_REPORT": str(report), "TOPK_REQUESTS": "1000"})
    data = json.loads(report.read_text())["TopKRegressionTest"]
    assert data["scoreboard"]["mismatches"] == 0
    assert data["scoreboard"]["checked"] >= 1000
    assert data["coverage"]["missed"] == []


def test_topk_scoreboard_catches_wrong_model(tmp_path: Path) -> None:
    """Negative test: with a tie-flipping model swapped in by a factory override the run
    must fail, and fail in the scoreboard with mismatches (not a hang or a crash)."""
    report = tmp_path / "report.json"
    with pytest.raises(AssertionError, match="TopKBrokenModelTest"):
        hwbuild.run_cocotb("TopKEngine", "tiny", TB, testcase="TopKBrokenModelTest",
                           extra_env={"SPATTEN_TB_REPORT": str(report)})
    data = json.loads(report.read_text())["TopKBrokenModelTest"]["scoreboard"]
    assert data["mismatches"] > 0 and data["unanswered"] == 0, data
    assert all("expected" in m for m in data["first"]), data


@pytest.mark.skipif(os.environ.get("TOPK_PERF") != "1", reason="set TOPK_PERF=1 to measure cycles")
@pytest.mark.parametrize("preset", ["tiny", "eighth"])
def test_topk_cycles(tmp_path: Path, preset: str) -> None:
    """Cycle measurement (not in CI): prints cycles from the last input to the last output."""
    report = tmp_path / "report.json"
    sizes = {"tiny": "16,64", "eighth": "64,1024,2048"}[preset]
    hwbuild.run_cocotb("TopKEngine", preset, TB, testcase="TopKPerfTest",
                       extra_env={"SPATTEN_TB_REPORT": str(report), "PERF_SIZES": sizes})
    perf = json.loads(report.read_text())["TopKPerfTest"]["perf"]
    for key, v in perf.items():
        print(f"{preset} {key}: min {v['min']} mean {v['mean']:.1f} max {v['max']}")
