#!/usr/bin/env python3
"""How to compile the DPI DRAM's C++ into a simulator: sources and flags.

``hardware/dpi/sources.txt`` lists them; this module resolves it for the build driver
(``spatten/sim/build.py``) and the tests:

>>> spec = dpi_build_spec()            # doctest: +SKIP
>>> spec.sources, spec.cflags, spec.ldflags, spec.ramulator2, spec.note

When a Ramulator2 checkout is present (``$SPATTEN_RAMULATOR2_DIR`` or
``third_party/ramulator2``, detected by ``src/memory_system/memory_system.h``), its
library is built (``build_ramulator2.py``, cached under ``build/ramulator2/<sha>/``) and
the ``ramulator2-*`` lines of sources.txt are added; otherwise ``note`` says that the
ramulator2 backend is not built, and ``+dram_backend=ramulator2`` gives a clear error.
All paths in the result are absolute. For Verilator, pass the sources on its command
line, ``cflags`` through ``-CFLAGS`` and ``ldflags`` through ``-LDFLAGS``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
import build_ramulator2  # (sibling module: the script's folder is on the path; spatten.sim.build.dpi_module preloads it)


@dataclass
class DpiBuildSpec:
    """Everything a simulator build needs for the DPI DRAM."""

    sources: list[Path] = field(default_factory=list)
    cflags: list[str] = field(default_factory=list)
    ldflags: list[str] = field(default_factory=list)
    ramulator2: bool = False
    note: str = ""

    def fingerprint(self) -> str:
        """Hash of sources (contents), headers and flags: rebuild when it changes."""
        h = hashlib.sha256()
        files = sorted(set(self.sources) | set(HERE.glob("*.h")) | {HERE / "sources.txt"})
        for f in files:
            h.update(str(f).encode())
            h.update(f.read_bytes())
        h.update(" ".join(self.cflags + self.ldflags).encode())
        return h.hexdigest()[:16]


def parse_sources_txt(path: Path = HERE / "sources.txt") -> dict[str, list[str]]:
    """The lines of sources.txt by kind (src, cflags, ldflags, ramulator2-*)."""
    kinds: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        if not sep or kind not in ("src", "cflags", "ldflags", "ramulator2-src", "ramulator2-cflags",
                                   "ramulator2-ldflags"):
            raise ValueError(f"{path}:{n}: expected '<kind>: <value>' with kind src, cflags, ldflags or "
                             f"ramulator2-src/-cflags/-ldflags, got {line!r}")
        kinds.setdefault(kind, []).append(value.strip())
    return kinds


def dpi_build_spec(use_ramulator2: bool = True, jobs: int = 2) -> DpiBuildSpec:
    """Resolves sources.txt for this checkout (see the module docstring)."""
    k = parse_sources_txt()
    spec = DpiBuildSpec()
    spec.sources = [REPO / s for s in k.get("src", [])]
    cflags = " ".join(k.get("cflags", [])).split()
    spec.cflags = [f"-I{REPO / f[2:]}" if f.startswith("-I") and not f.startswith("-I/") else f for f in cflags]
    spec.ldflags = " ".join(k.get("ldflags", [])).split()
    ram = build_ramulator2.ramulator2_dir()
    if use_ramulator2 and build_ramulator2.has_checkout(ram):
        sha = build_ramulator2.commit_of(ram)
        lib = build_ramulator2.build(ram, REPO / "build" / "ramulator2" / sha[:12], jobs)
        subst = {"<RAMULATOR2>": str(ram), "<RAMULATOR2_LIB>": str(lib.parent)}

        def fill(s: str) -> str:
            for key, val in subst.items():
                s = s.replace(key, val)
            return s

        spec.sources += [REPO / s for s in k.get("ramulator2-src", [])]
        spec.cflags = [f for f in spec.cflags if not f.startswith("-std=")]
        spec.cflags += fill(" ".join(k.get("ramulator2-cflags", []))).split()
        spec.ldflags += fill(" ".join(k.get("ramulator2-ldflags", []))).split()
        spec.ramulator2 = True
        spec.note = f"Ramulator2 backend: compiled in ({ram}, commit {sha[:12]})"
    else:
        why = "disabled" if not use_ramulator2 else f"no checkout at {ram}"
        spec.note = (f"Ramulator2 backend: not built ({why}); +dram_backend=ramulator2 will stop with an "
                     "error. See hardware/dpi/README.md.")
    return spec


if __name__ == "__main__":
    s = dpi_build_spec()
    print(s.note)
    print("sources:", " ".join(map(str, s.sources)))
    print("cflags:", " ".join(s.cflags))
    print("ldflags:", " ".join(s.ldflags))
