"""pytest entry point of the DPI DRAM channel testbench (``tb_dram_channel.py``).

Run: ``.venv/bin/python -m pytest pyverif/dram -q``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spatten.sim import build as hwbuild

TB = "pyverif.dram.tb_dram_channel"
RTL_TOPS = [("SimDramChannel", "tiny")]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 KiB memory image of random bytes."""
    p = tmp_path_factory.mktemp("dram") / "image.bin"
    p.write_bytes(random.Random(7).randbytes(1 << 16))
    return p


@pytest.mark.parametrize("backend", ["builtin", "ideal"])
def test_dram_channel(image: Path, tmp_path: Path, backend: str) -> None:
    stats = tmp_path / "stats.json"
    hwbuild.run_cocotb("SimDramChannel", "tiny", TB, dpi=True,
                       plusargs=[f"+dram_backend={backend}", f"+dram_image={image}", f"+dram_stats={stats}",
                                 "+ideal_latency=12"],
                       extra_env={"SPATTEN_DRAM_IMAGE": str(image), "SPATTEN_DRAM_REQUESTS": "300"})
    s = json.loads(stats.read_text())
    ch = s["channels"][0]
    assert s["backend"] == backend and ch["reads"] == 300 and ch["bytes"] == 300 * 32, ch
    if backend == "builtin":
        assert ch["row_hits"] + ch["row_misses"] + ch["row_conflicts"] == 300
    else:
        assert ch["max_latency_dram_cycles"] == 12


def test_dram_channel_checker_catches_wrong_data(image: Path, tmp_path: Path) -> None:
    """Negative test: the testbench compares against another image than the simulator
    reads, so the very first response must be reported as a mismatch."""
    other = tmp_path / "other.bin"
    other.write_bytes(random.Random(8).randbytes(1 << 16))
    with pytest.raises(AssertionError, match="expected 0x"):
        hwbuild.run_cocotb("SimDramChannel", "tiny", TB, dpi=True,
                           plusargs=[f"+dram_image={image}", "+dram_quiet"],
                           extra_env={"SPATTEN_DRAM_IMAGE": str(other), "SPATTEN_DRAM_REQUESTS": "20"})
