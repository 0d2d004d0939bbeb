"""pytest entry points of the top-k engine testbench (``pyverif/topk/tb_topk.py``).

Run: ``.venv/bin/python -m pytest pyverif/topk -q`` (``WAVES=1`` for waveforms,
``SPATTEN_SEED=<n>`` to reproduce a seed; ``-m slow -k cycles`` for the cycle
measurements on the tiny and eighth presets).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyverif.common.negative import expect_scoreboard_failure
from spatten.sim import build as hwbuild

TB = "pyverif.topk.tb_topk"
#: Elaborated up front by the repository's conftest.py (one sbt run for all tops).
RTL_TOPS = [("TopKEngine", "tiny"), ("TopKEngineWide", "tiny"), ("ValueTopK", "tiny")]


@pytest.mark.parametrize("top", ["TopKEngine", "ValueTopK"])
def test_topk_regression(tmp_path: Path, top: str) -> None:
    """Corner cases plus 1,000 random requests on the tiny preset, random stalls on
    every stream; every response checked, every coverage bin hit. ``ValueTopK`` is the
    back end's value top-k: beats of keysPerCycle scores in (the last one partial), blocks
    of keysPerCycle positions with a mask out; every item's position, score and last flag
    checked."""
    report = tmp_path / "report.json"
    hwbuild.run_cocotb(top, "tiny", TB, testcase="TopKRegressionTest",
                       extra_env={"SPATTEN_TB_REPORT": str(report), "TOPK_REQUESTS": "1000"})
    data = json.loads(report.read_text())["TopKRegressionTest"]
    assert data["scoreboard"]["mismatches"] == 0
    assert data["scoreboard"]["checked"] >= 1000
    assert data["coverage"]["missed"] == []


def test_topk_wide_one_row(tmp_path: Path) -> None:
    """The head-ranking shape: 48-bit scores, capacity maxHeads, comparators >= capacity
    (every candidate in one row of the buffers); 300 random requests with stalls."""
    report = tmp_path / "report.json"
    params = hwbuild.elaborate("TopKEngineWide", "tiny").params
    hwbuild.run_cocotb("TopKEngineWide", "tiny", TB, testcase="TopKRegressionTest",
                       extra_env={"SPATTEN_TB_REPORT": str(report), "TOPK_REQUESTS": "300",
                                  "TOPK_CAPACITY": str(params["maxHeads"])})
    data = json.loads(report.read_text())["TopKRegressionTest"]
    assert data["scoreboard"]["mismatches"] == 0 and data["scoreboard"]["checked"] >= 300
    assert data["coverage"]["missed"] == []


def test_topk_scoreboard_catches_wrong_model(tmp_path: Path) -> None:
    """Negative test: with a tie-flipping model swapped in by a factory override the run
    must fail, and fail in the scoreboard with mismatches (not a hang or a crash)."""
    expect_scoreboard_failure("TopKEngine", "tiny", TB, "TopKBrokenModelTest", tmp_path)


def test_topk_watchdog_names_stalled_stream() -> None:
    """Negative test: with ``out`` never taken the run must fail through the watchdog,
    whose message names the stream that stopped."""
    with pytest.raises(AssertionError,
                       match=r"TopKHangTest: no progress for 2000 cycles[^$]*out beats taken = 0"):
        hwbuild.run_cocotb("TopKEngine", "tiny", TB, testcase="TopKHangTest")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "eighth"])
def test_topk_cycles(tmp_path: Path, preset: str) -> None:
    """Cycle measurement (not in CI): prints cycles from the last input to the last output."""
    report = tmp_path / "report.json"
    sizes = {"tiny": "16,64", "eighth": "64,1024,2048"}[preset]
    hwbuild.run_cocotb("TopKEngine", preset, TB, testcase="TopKPerfTest",
                       extra_env={"SPATTEN_TB_REPORT": str(report), "PERF_SIZES": sizes})
    perf = json.loads(report.read_text())["TopKPerfTest"]["perf"]
    for key, v in perf.items():
        print(f"{preset} {key}: selection mean {v['select_mean']:.1f} max {v['select_max']}; "
              f"last output min {v['min']} mean {v['mean']:.1f} max {v['max']}")
