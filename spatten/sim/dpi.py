"""The C++ side of the DRAM model as the simulator builds need it.

``hardware/dpi/dpi_build.py`` resolves ``hardware/dpi/sources.txt`` (and builds the
Ramulator2 backend when a checkout is present); the scripts there are not a package, so
:func:`dpi_module` loads them by path under their own names.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from spatten.errors import BuildError

__all__ = ["DpiSources", "dpi_module", "dpi_sources"]

DPI_DIR = Path(__file__).resolve().parents[2] / "hardware" / "dpi"


@dataclass(frozen=True)
class DpiSources:
    """The C++ side of the DRAM model: sources and flags (absolute paths)."""
    files: list[Path]
    cflags: list[str]
    ldflags: list[str]
    key: str
    note: str = ""


def dpi_module(name: str):
    """The Python module ``hardware/dpi/<name>.py`` (``dpi_build``, ``build_ramulator2``),
    loaded by path under its own name (so the one's ``import build_ramulator2`` finds the
    other)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    if name == "dpi_build":
        dpi_module("build_ramulator2")
    path = DPI_DIR / f"{name}.py"
    if not path.is_file():
        raise BuildError(f"{path} is missing: the DPI C++ sources cannot be resolved")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def dpi_sources() -> DpiSources:
    """The DPI sources and flags (``note`` says what was not built, e.g. Ramulator2)."""
    s = dpi_module("dpi_build").dpi_build_spec()
    return DpiSources([Path(f) for f in s.sources], list(s.cflags), list(s.ldflags), s.fingerprint(), s.note)
