#!/usr/bin/env python3
"""Build Ramulator2 (2.0 API) as a shared library from a checkout, offline.

Ramulator2's own CMake fetches yaml-cpp, spdlog and argparse from GitHub. The library
part needs only yaml-cpp and spdlog (argparse is for its command-line front end), and
Debian packages both (``libyaml-cpp-dev``, ``libspdlog-dev``, ``libfmt-dev``). This
script compiles the library sources of a checkout with those system packages:
every ``src/**/*.cpp`` except ``src/main.cpp`` and the ``src/test``/``src/example``
folders, one object per source, linked into ``libramulator.so``.

The output goes to ``<out>/libramulator.so`` (default
``build/ramulator2/<commit or 'tree'>/``) and is rebuilt only when a source is newer.
Nothing of Ramulator2 is written into this repository's tracked files.

Usage::

    python hardware/dpi/build_ramulator2.py [--src third_party/ramulator2] [--jobs 2]

The path of the library is printed on the last line of stdout.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SRC = REPO / "third_party" / "ramulator2"


def ramulator2_dir() -> Path:
    """The Ramulator2 checkout to use: ``$SPATTEN_RAMULATOR2_DIR`` or third_party/ramulator2."""
    env = os.environ.get("SPATTEN_RAMULATOR2_DIR")
    return Path(env).resolve() if env else DEFAULT_SRC


def has_checkout(src: Path) -> bool:
    """True when ``src`` holds Ramulator2 sources (the marker file of its 2.0 tree)."""
    return (src / "src" / "memory_system" / "memory_system.h").is_file()


def pkg_config(*args: str) -> list[str]:
    """Flags from pkg-config, with a clear error when a package is missing."""
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"build_ramulator2: pkg-config {' '.join(args)} failed ({exc}); install "
            "libyaml-cpp-dev libspdlog-dev libfmt-dev") from exc
    return shlex.split(out)


def commit_of(src: Path) -> str:
    """The checkout's commit SHA, or 'tree' when it is not a git checkout."""
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "tree"


def library_sources(src: Path) -> list[Path]:
    """The .cpp files of the library, as Ramulator2's CMake lists them.

    ``src/CMakeLists.txt`` names the sub-folders (``add_subdirectory``); each folder's
    ``CMakeLists.txt`` lists its files in ``target_sources(...)`` (commented-out files,
    such as a stale plugin, are left out, as CMake does).
    """
    def strip(text: str) -> str:
        return "\n".join(line.split("#", 1)[0] for line in text.splitlines())

    top = strip((src / "src" / "CMakeLists.txt").read_text())
    subdirs = re.findall(r"add_subdirectory\(\s*([\w./-]+)\s*\)", top)
    out: list[Path] = []
    for sub in subdirs:
        cm = src / "src" / sub / "CMakeLists.txt"
        if not cm.is_file():
            continue
        for block in re.findall(r"target_sources\s*\(([^)]*)\)", strip(cm.read_text())):
            for tok in block.split():
                if tok.endswith(".cpp"):
                    out.append(src / "src" / sub / tok)
    if not out:
        raise SystemExit(f"build_ramulator2: found no sources in {src}/src/*/CMakeLists.txt")
    return out


def compile_flags(src: Path) -> list[str]:
    """Compiler flags for Ramulator2's sources (C++20, its src/ as include root)."""
    return ["-std=c++20", "-O2", "-fPIC", "-w", f"-I{src / 'src'}",
            *pkg_config("--cflags", "spdlog", "yaml-cpp")]


def build(src: Path, out: Path, jobs: int) -> Path:
    """Compile and link; returns the path of libramulator.so."""
    if not has_checkout(src):
        raise SystemExit(f"build_ramulator2: no Ramulator2 checkout at {src} "
                         "(expected src/memory_system/memory_system.h)")
    cxx = os.environ.get("CXX", "g++")
    flags = compile_flags(src)
    objdir = out / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    headers = list((src / "src").rglob("*.h"))
    newest_header = max((h.stat().st_mtime for h in headers), default=0.0)
    jobs_list = []
    objs = []
    for f in library_sources(src):
        obj = objdir / (str(f.relative_to(src / "src")).replace("/", "__") + ".o")
        objs.append(obj)
        if not obj.exists() or obj.stat().st_mtime < max(f.stat().st_mtime, newest_header):
            jobs_list.append((f, obj))

    def run(job: tuple[Path, Path]) -> tuple[Path, str]:
        f, obj = job
        tmp = obj.with_suffix(".o.tmp")
        res = subprocess.run([cxx, *flags, "-c", str(f), "-o", str(tmp)], capture_output=True, text=True)
        if res.returncode != 0:
            return f, res.stderr
        tmp.replace(obj)
        return f, ""

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for f, err in pool.map(run, jobs_list):
            print(f"[ramulator2] compiled {f.relative_to(src)}" if not err else f"[ramulator2] FAILED {f}",
                  file=sys.stderr)
            if err:
                raise SystemExit(f"build_ramulator2: compiling {f} failed:\n{err}")
    lib = out / "libramulator.so"
    if jobs_list or not lib.exists():
        tmp = out / "libramulator.so.tmp"
        subprocess.run([cxx, "-shared", "-o", str(tmp), *map(str, objs),
                        *pkg_config("--libs", "spdlog", "yaml-cpp")], check=True)
        tmp.replace(lib)
    return lib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=None, help="Ramulator2 checkout (default: "
                    "$SPATTEN_RAMULATOR2_DIR or third_party/ramulator2)")
    ap.add_argument("--out", type=Path, default=None, help="output folder")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    src = (a.src or ramulator2_dir()).resolve()
    out = a.out or (REPO / "build" / "ramulator2" / commit_of(src)[:12])
    print(build(src, out.resolve(), a.jobs))


if __name__ == "__main__":
    main()
