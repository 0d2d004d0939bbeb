"""SIGTERM/SIGINT to run.py's pid alone stop every child it started and leave no report;
a second run on the same --out is refused while the first holds it (issue 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import inputs_fixtures as fx
from spatten.sim.procs import descendants

ROOT = Path(__file__).resolve().parents[1]
RTL_TOPS = [("SpAttenTop", "tiny")]


def _long_workload(path: Path) -> Path:
    """Synthetic, on tiny: enough rows that the simulator runs for several seconds."""
    rows, _ = fx.workload()
    many = []
    for it in range(240):
        for r in rows:
            many.append(replace(r, iteration_id=it, sentence_length_L=64, key_fetch_num=64 if r.layer_id == 0 else 30,
                                value_fetch_num=32 if r.layer_id == 0 else 15, extra={}))
    from workloads.csvschema import write_workload
    write_workload(path, many, "tests/test_signals.py")
    return path


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    return None if rest[0] == "Z" else int(rest[2])


def _alive(pids: set[int], groups: set[int]) -> list[int]:
    """Processes among ``pids``, or in the process groups ``groups``, still running."""
    left = [p for p in pids if _pgid(p) is not None]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pgid(int(entry)) in groups:
            left.append(int(entry))
    return sorted(set(left))


def _start(csv: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), str(csv), "--preset", "tiny", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def _wait_for_simulator(proc: subprocess.Popen, out: Path, timeout: float = 300) -> set[int]:
    """Wait until run.py's SpAtten simulator runs; returns every descendant of run.py."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        kids = descendants(proc.pid)
        if (out / "sparse" / "commands.bin").is_file() and kids:
            return set(kids)
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the simulator never started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_child_and_leaves_no_report(tmp_path: Path, sig: signal.Signals) -> None:
    csv = _long_workload(tmp_path / "long.csv")
    out = tmp_path / "out"
    proc = _start(csv, out)
    kids = _wait_for_simulator(proc, out)
    groups = {g for g in (_pgid(k) for k in kids) if g is not None and g != _pgid(os.getpid())}
    if sig == signal.SIGTERM:
        # meanwhile a second run on the same --out is refused, before it builds anything
        second = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out)], timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"another run (pid {proc.pid}) is writing there" in second.stderr, second.stderr
        # that took a while on a loaded machine: look again at what runs now (the dense
        # simulator may have started, the sparse one ended)
        kids |= set(descendants(proc.pid))
        groups = {g for g in (_pgid(k) for k in kids) if g is not None and g != _pgid(os.getpid())}
    assert _alive(kids, groups), "nothing was running to stop"
    os.kill(proc.pid, sig)  # run.py's pid alone, as a CI cancel or a job scheduler does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    assert f"stopped by {sig.name}" in err, err
    time.sleep(0.2)
    assert _alive(kids, groups) == [], f"left running: {_alive(kids, groups)}"
    assert not (out / "summary.json").exists() and not list(out.glob("summary.*"))
    assert not list(out.glob(".summary*.tmp"))


def test_stop_all_stops_groups_and_grandchildren() -> None:
    """What run.py does on a failed run or a signal: every child it started, in its own
    process group or not, and their children, are stopped and reaped."""
    from spatten.sim import procs

    a = procs.popen(["sh", "-c", "sleep 60 & sleep 60"])  # a simulator with a child of its own
    b = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"])  # a build tool (subprocess.run) in our group
    time.sleep(0.3)
    kids = set(descendants())
    assert {a.pid, b.pid} <= kids and len(kids) >= 4
    procs.stop_all(timeout=5)
    b.wait(timeout=5)
    time.sleep(0.2)
    assert _alive(kids, {a.pid}) == []
    assert a.returncode is not None
