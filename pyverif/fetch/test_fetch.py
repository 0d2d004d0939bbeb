"""pytest entry points of the row-fetcher and DRAM-arbiter testbench
(``pyverif/fetch/tb_fetch.py``).

Run: ``.venv/bin/python -m pytest pyverif/fetch -q`` (``SPATTEN_SEED=<n>`` to reproduce a
seed, ``FETCH_ROWS=<n>`` for longer runs, ``WAVES=1`` for waveforms).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyverif.common.negative import expect_scoreboard_failure
from spatten.sim import build as hwbuild

TB = "pyverif.fetch.tb_fetch"

# (top, preset): RowFetcher alone on tiny (1 channel, 1-burst rows) and on eighth
# (2 channels, rows of up to 4 bursts, 2-burst groups); two fetchers behind one
# DramArbiter (test top FetchPair) on both.
RANDOM = [("RowFetcher", "tiny"), ("RowFetcher", "eighth"), ("FetchPair", "tiny"), ("FetchPair", "eighth")]
THROUGHPUT = [("RowFetcher", "tiny"), ("RowFetcher", "eighth")]
# rows at random token ids, full beats: rows a cycle (paper: 16 channels, 8 rows a beat)
RANDOM_ROWS = [("RowFetcher", "eighth"), pytest.param("RowFetcher", "paper", marks=pytest.mark.slow)]

#: Elaborated up front by the repository's conftest.py (one sbt run for all tops).
RTL_TOPS = sorted(set(RANDOM))

ROWS = 400


def _run(tmp_path: Path, top: str, preset: str, testcase: str) -> dict:
    report = tmp_path / "report.json"
    hwbuild.run_cocotb(top, preset, TB, testcase=testcase,
                       extra_env={"SPATTEN_TB_REPORT": str(report), "FETCH_ROWS": str(ROWS)})
    data = json.loads(report.read_text())[testcase]
    print(f"{top} ({preset}) {testcase}: {data['run']}")
    return data


@pytest.mark.parametrize("top,preset", RANDOM, ids=[f"{t}-{p}" for t, p in RANDOM])
def test_fetch_random(tmp_path: Path, top: str, preset: str) -> None:
    """400 random rows per client, random stalls on every stream and DRAM port; every row
    rebuilt from the memory image and checked group by group, every cycle checked
    (credits, routing, stability), every coverage bin hit."""
    data = _run(tmp_path, top, preset, "FetchRandomTest")
    clients = 2 if top == "FetchPair" else 1
    assert data["scoreboard"]["mismatches"] == 0, data["scoreboard"]
    # rows of 0 bursts deliver nothing and are not paired (about 4% of the rows)
    assert data["scoreboard"]["checked"] >= 0.9 * ROWS * clients, data["scoreboard"]
    assert data["coverage"]["missed"] == [], data["coverage"]


@pytest.mark.parametrize("top,preset", THROUGHPUT, ids=[f"{t}-{p}" for t, p in THROUGHPUT])
def test_fetch_throughput(tmp_path: Path, top: str, preset: str) -> None:
    """No stalls, a fixed 8-cycle memory: a linear fetch streams at least 90% of
    W = min(numChannels, keysPerCycle * maxRowBursts) bursts a cycle (and every row is still
    checked)."""
    data = _run(tmp_path, top, preset, "FetchThroughputTest")
    assert data["scoreboard"]["mismatches"] == 0 and data["scoreboard"]["checked"] == ROWS, data["scoreboard"]
    assert data["run"]["burstsPerCycle"] >= 0.9 * data["run"]["width"], data["run"]


@pytest.mark.parametrize("top,preset", RANDOM_ROWS, ids=["RowFetcher-eighth", "RowFetcher-paper"])
def test_fetch_random_rows(tmp_path: Path, top: str, preset: str) -> None:
    """No stalls, a fixed 8-cycle memory (one request a channel a cycle), full beats of
    2-burst rows at random token ids (channels collide): every row checked; at least half
    of the ideal min(keysPerCycle, numChannels / 2) rows a cycle; rows a cycle printed."""
    data = _run(tmp_path, top, preset, "FetchRandomRowsTest")
    assert data["scoreboard"]["mismatches"] == 0 and data["scoreboard"]["checked"] == ROWS, data["scoreboard"]
    r = data["run"]
    ideal = min(r["keysPerCycle"], r["channels"] / 2)
    print(f"{top} ({preset}): {r['rowsPerCycle']} rows of 2 bursts a cycle (ideal {ideal})")
    assert r["rowsPerCycle"] >= 0.5 * ideal, r


def test_fetch_scoreboard_catches_wrong_model(tmp_path: Path) -> None:
    """Negative test: with a model that reads the neighbouring token's row swapped in by a
    factory override, the run must fail in the scoreboard with mismatches (not a hang or
    a crash)."""
    expect_scoreboard_failure("RowFetcher", "tiny", TB, "FetchBrokenModelTest", tmp_path)
