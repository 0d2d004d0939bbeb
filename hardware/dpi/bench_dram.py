#!/usr/bin/env python3
"""Simulation cost of the DRAM backends: CPU nanoseconds per accelerator cycle.

Builds the replay tool (``build/dpi-tests/``, CMake) and drives one or more ports with
closed-loop synthetic loads (``--outstanding`` requests in flight per channel), then
prints a Markdown table of CPU time per simulated accelerator cycle (all channels
together) for each backend and load. The port code is the same as in the simulator,
so the difference between ``builtin`` and ``ideal`` is the timing model's own cost.

    python hardware/dpi/bench_dram.py [--channels 2] [--count 50000]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = REPO / "build" / "dpi-tests"


def build_replay() -> Path:
    """Configures (once) and builds the replay tool; returns its path."""
    gen = ["-G", "Ninja"] if shutil.which("ninja") and not (BUILD / "CMakeCache.txt").exists() else []
    if not (BUILD / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(HERE / "tests"), "-B", str(BUILD), *gen], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(BUILD), "--target", "spatten-dram-replay", "-j", "2"], check=True,
                   stdout=subprocess.DEVNULL)
    return BUILD / "spatten-dram-replay"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--count", type=int, default=50000, help="requests per channel")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point; the fastest counts")
    a = ap.parse_args()
    tool = build_replay()
    print(f"CPU ns per accelerator cycle, {a.channels} channel(s), {a.count} requests per channel "
          f"(best of {a.repeat})\n")
    print("| backend | pattern | in flight | ns per cycle | simulated cycles |")
    print("|---|---|---:|---:|---:|")
    for backend in ("ideal", "builtin"):
        for pattern in ("seq", "random"):
            for k in (1, 16, 64):
                best = None
                for _ in range(a.repeat):
                    out = subprocess.run([str(tool), "--backend", backend, "--pattern", pattern, "--count",
                                          str(a.count), "--outstanding", str(k), "--channels", str(a.channels)],
                                         check=True, capture_output=True, text=True).stdout
                    d = json.loads(out)
                    if best is None or d["ns_per_cycle"] < best["ns_per_cycle"]:
                        best = d
                assert best is not None
                print(f"| {backend} | {pattern} | {k} | {best['ns_per_cycle']:.0f} | {best['total_cycles']} |")


if __name__ == "__main__":
    main()
