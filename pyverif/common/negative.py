"""The shared negative test of the testbenches: with a wrong reference model swapped in
(a factory override in the ``*BrokenModelTest``), the run must fail, and fail in its
scoreboard with mismatches, not by a hang or a crash.

Called from the pytest entry points (outside the simulator)::

    from pyverif.common.negative import expect_scoreboard_failure
    expect_scoreboard_failure("TopKEngine", "tiny", "pyverif.topk.tb_topk", "TopKBrokenModelTest", tmp_path)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def expect_scoreboard_failure(top: str, preset: str, module: str, testcase: str, tmp_path: Path) -> dict:
    """Run ``testcase`` and check that it failed with scoreboard mismatches (and no request
    left unanswered); returns the scoreboard's report."""
    from spatten.sim import build as hwbuild

    report = tmp_path / "report.json"
    with pytest.raises(AssertionError, match=testcase):
        hwbuild.run_cocotb(top, preset, module, testcase=testcase,
                           extra_env={"SPATTEN_TB_REPORT": str(report)})
    data = json.loads(report.read_text())[testcase]["scoreboard"]
    assert data["mismatches"] > 0 and data["unanswered"] == 0, data
    assert all("expected" in m for m in data["first"]), data
    return data
