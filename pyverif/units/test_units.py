"""pytest entry points of the compute-unit testbenches (tiny preset).

Each test builds (cached) and runs one pyuvm test of a ``tb_*`` module through
``spatten.sim.build``; a failure names the failing test and the seed (reproduce with
``SPATTEN_SEED=<seed>``)::

    .venv/bin/python -m pytest pyverif/units -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyverif.common.negative import expect_scoreboard_failure
from spatten.sim import build as hwbuild

PRESET = "tiny"

CASES = [
    ("PlaneUnpacker", "pyverif.units.tb_unpacker", "UnpackRandomTest", True),
    ("KeyCombine", "pyverif.units.tb_keycombine", "KeyCombineRandomTest", True),
    ("DotProductArray", "pyverif.units.tb_dot", "DotRandomTest", True),
    ("DotProductArray", "pyverif.units.tb_dot", "DotThroughputTest", False),
    # 3 multipliers for D <= 16: the chunked path (ceil(D/3) cycles a key / a row)
    ("DotProductArrayLanes3", "pyverif.units.tb_dot", "DotRandomTest", True),
    ("DotProductArrayLanes3", "pyverif.units.tb_dot", "DotThroughputTest", False),
    ("Softmax", "pyverif.units.tb_softmax", "SoftmaxRandomTest", True),
    ("Softmax", "pyverif.units.tb_softmax", "SoftmaxLatencyTest", False),
    ("ValueAccumulator", "pyverif.units.tb_value", "ValueRandomTest", True),
    ("ValueAccumulator", "pyverif.units.tb_value", "ValueThroughputTest", False),
    ("ValueAccumulatorLanes3", "pyverif.units.tb_value", "ValueRandomTest", True),
    ("ValueAccumulatorLanes3", "pyverif.units.tb_value", "ValueThroughputTest", False),
    ("ImportanceBuffer", "pyverif.units.tb_importance", "ImportanceRandomTest", True),
    ("ImportanceBuffer", "pyverif.units.tb_importance", "ImportanceThroughputTest", False),
    # 2 row lanes of 3 multipliers: beats of 2 rows, each row in ceil(D/3) chunks
    ("ValueAccumulatorLanes6Rows2", "pyverif.units.tb_value", "ValueRandomTest", True),
    ("ValueAccumulatorLanes6Rows2", "pyverif.units.tb_value", "ValueThroughputTest", False),
]

NEGATIVE = [
    ("PlaneUnpacker", "pyverif.units.tb_unpacker", "UnpackBrokenModelTest"),
    ("KeyCombine", "pyverif.units.tb_keycombine", "KeyCombineBrokenModelTest"),
    ("DotProductArray", "pyverif.units.tb_dot", "DotBrokenModelTest"),
    ("Softmax", "pyverif.units.tb_softmax", "SoftmaxBrokenModelTest"),
    ("ValueAccumulator", "pyverif.units.tb_value", "ValueBrokenModelTest"),
    ("ImportanceBuffer", "pyverif.units.tb_importance", "ImportanceBrokenModelTest"),
]

RTL_TOPS = sorted({(top, PRESET) for top, _, _, _ in CASES})
"""Elaborated together at collection (see the repository's conftest.py)."""


@pytest.mark.parametrize("top,module,testcase,coverage", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_unit(tmp_path: Path, top: str, module: str, testcase: str, coverage: bool) -> None:
    """Every response checked against spatten.contract.golden; every coverage bin hit (random
    tests; the throughput tests check cycle counts instead)."""
    report = tmp_path / "report.json"
    hwbuild.run_cocotb(top, PRESET, module, testcase=testcase,
                       extra_env={"SPATTEN_TB_REPORT": str(report)})
    data = json.loads(report.read_text())[testcase]
    print(f"{testcase}: {data}")
    assert data["scoreboard"]["mismatches"] == 0 and data["scoreboard"]["checked"] > 0, data
    if coverage:
        assert data["coverage"]["missed"] == [], data


@pytest.mark.parametrize("top,module,testcase", NEGATIVE, ids=[c[2] for c in NEGATIVE])
def test_scoreboard_catches_wrong_model(tmp_path: Path, top: str, module: str, testcase: str) -> None:
    """Negative test: with a wrong reference model swapped in, the run must fail in the
    scoreboard with mismatches (not a hang or a crash)."""
    expect_scoreboard_failure(top, PRESET, module, testcase, tmp_path)
