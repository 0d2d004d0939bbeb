#!/usr/bin/env python3
"""Compare the built-in HBM2 model with Ramulator2 2.0 on the same requests.

Builds Ramulator2 from a checkout (``--ramulator2 DIR``, default ``$SPATTEN_RAMULATOR2_DIR``
or ``third_party/ramulator2``) with ``build_ramulator2.py``, builds the replay tool with
both backends (``build/dpi-replay-ramulator2/``), and drives both through the same port
code (``DramPort``) with:

1. idle read latency: a closed bank, then a row hit, then a row conflict, far apart;
2. sustained read bandwidth, sequential and random, 16 and 64 requests in flight;
3. total cycles of a synthetic trace shaped like the accelerator's (per head: the key
   MSB rows of all tokens, a compute gap, then the value rows of the top quarter of
   tokens; two channels, one request per cycle at most);
4. total cycles of each trace recorded from a real accelerator run
   (``run.py WORKLOAD --dram-trace`` writes ``<out>/sparse/dram.trace``), given with ``--trace``.

Refresh: Ramulator2 2.0's AllBank refresh manager looks up a "rank" level, which its
HBM2 device does not have, so it issues no refresh for HBM2. The built-in model does
refresh; to compare like with like, the built-in runs with ``configs/hbm2_norefresh.yaml``
(the same file with ``RefreshManager: None``) and Ramulator2 with ``configs/hbm2.yaml``.
The built-in model's numbers with refresh are shown beside them.

Prints a Markdown table; exits 1 when any figure differs by more than ``--tolerance``
(default 5%). Example::

    python hardware/dpi/compare_ramulator2.py --ramulator2 /work/ext/ramulator2
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
import build_ramulator2  # (sibling module: the script's folder is on the path; spatten.sim.build.dpi_module preloads it)

CONFIG = HERE / "configs" / "hbm2.yaml"
CONFIG_NOREF = HERE / "configs" / "hbm2_norefresh.yaml"


def build_replay(ram_dir: Path, jobs: int) -> Path:
    """Builds libramulator.so and the replay tool with the Ramulator2 backend."""
    sha = build_ramulator2.commit_of(ram_dir)
    lib = build_ramulator2.build(ram_dir, REPO / "build" / "ramulator2" / sha[:12], jobs)
    bdir = REPO / "build" / "dpi-replay-ramulator2"
    subprocess.run(["cmake", "-S", str(HERE / "tests"), "-B", str(bdir), "-G", "Ninja",
                    f"-DSPATTEN_RAMULATOR2_DIR={ram_dir}", f"-DSPATTEN_RAMULATOR2_LIB={lib}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(bdir), "--target", "spatten-dram-replay", "-j", str(jobs)],
                   check=True, stdout=subprocess.DEVNULL)
    return bdir / "spatten-dram-replay"


def write_trace(path: Path, entries: list[tuple[int, int]], channels: int) -> None:
    """Writes a replay trace (see dram_trace.h)."""
    lines = [f"# spatten-dram-trace v1 num_channels={channels} burst_bytes=32 addr_bits=32 clock_mhz=1000"]
    lines += [f"{c} {a:#x}" for c, a in entries]
    path.write_text("\n".join(lines) + "\n")


def idle_trace() -> list[tuple[int, int]]:
    """One channel: closed bank (miss), same row (hit), same bank other row (conflict).

    With RoBaRaCoCh and one channel, transaction index bits are column (5), pseudo-
    channel (1), bank group (2), bank (2), row: index 1024 is row 1 of bank 0.
    """
    return [(0, 0), (1000, 32), (2000, 1024 * 32)]


def accelerator_trace(heads: int, tokens: int, seed: int) -> list[tuple[int, int]]:
    """A trace shaped like the accelerator's DRAM traffic on 2 channels.

    Per head: the K MSB plane (D=64 at 8 bits: 64-byte rows, 2 bursts) of every token,
    64 cycles of softmax/top-k, then the V plane (D=64 at 16 bits: 128-byte rows,
    4 bursts) of a random quarter of the tokens in ascending order; 32 cycles between
    heads. At most one request per cycle (addresses alternate between the channels).
    """
    rng = random.Random(seed)
    out: list[tuple[int, int]] = []
    cycle = 0
    k_stride, v_stride = 64, 128
    for h in range(heads):
        k_base = h * tokens * k_stride
        v_base = 0x0100_0000 + h * tokens * v_stride
        for t in range(tokens):
            for b in range(k_stride // 32):
                out.append((cycle, k_base + t * k_stride + 32 * b))
                cycle += 1
        cycle += 64
        for t in sorted(rng.sample(range(tokens), tokens // 4)):
            for b in range(v_stride // 32):
                out.append((cycle, v_base + t * v_stride + 32 * b))
                cycle += 1
        cycle += 32
    return out


@dataclass
class Row:
    name: str
    builtin: float
    ramulator2: float
    builtin_refresh: float
    unit: str

    @property
    def diff(self) -> float:
        return 100.0 * (self.builtin - self.ramulator2) / self.ramulator2


def replay(tool: Path, backend: str, config: Path, args: list[str], latencies: Path | None = None) -> dict:
    cmd = [str(tool), "--backend", backend, "--config", str(config), *args]
    if latencies is not None:
        cmd += ["--latencies", str(latencies)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"compare: {' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ramulator2", type=Path, default=None, help="Ramulator2 2.0 checkout")
    ap.add_argument("--count", type=int, default=20000, help="requests per bandwidth run")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--tolerance", type=float, default=5.0, help="percent")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--trace", type=Path, action="append", default=[],
                    help="also replay a trace recorded from an accelerator run (run.py --dram-trace); repeatable")
    a = ap.parse_args()
    ram_dir = (a.ramulator2 or build_ramulator2.ramulator2_dir()).resolve()
    if not build_ramulator2.has_checkout(ram_dir):
        raise SystemExit(f"compare: no Ramulator2 checkout at {ram_dir}; pass --ramulator2 DIR")
    tool = build_replay(ram_dir, a.jobs)
    work = REPO / "build" / "dram-compare"
    work.mkdir(parents=True, exist_ok=True)
    configs = {"builtin": CONFIG_NOREF, "ramulator2": CONFIG, "builtin_refresh": CONFIG}
    backends = {"builtin": "builtin", "ramulator2": "ramulator2", "builtin_refresh": "builtin"}
    rows: list[Row] = []

    # 1. Idle latencies.
    trace = work / "idle.trace"
    write_trace(trace, idle_trace(), 1)
    lat: dict[str, list[int]] = {}
    for key in configs:
        lfile = work / f"idle-{key}.lat"
        replay(tool, backends[key], configs[key], ["--trace", str(trace)], lfile)
        lat[key] = [int(line.split()[2]) for line in lfile.read_text().splitlines()]
    for i, name in enumerate(["idle latency, closed bank", "idle latency, row hit", "idle latency, row conflict"]):
        rows.append(Row(name, lat["builtin"][i], lat["ramulator2"][i], lat["builtin_refresh"][i], "cycles"))

    # 2. Sustained bandwidth.
    for pattern in ("seq", "random"):
        for k in (16, 64):
            vals = {key: replay(tool, backends[key], configs[key],
                                ["--pattern", pattern, "--count", str(a.count), "--outstanding", str(k)])
                    for key in configs}
            rows.append(Row(f"{'sequential' if pattern == 'seq' else 'random'} bandwidth, {k} in flight",
                            *(vals[key]["total"]["bandwidth_GBps"] for key in configs), "GB/s"))

    # 3. Accelerator-shaped trace, 2 channels.
    trace = work / "accel.trace"
    write_trace(trace, accelerator_trace(a.heads, a.tokens, seed=1), 2)
    vals = {key: replay(tool, backends[key], configs[key], ["--trace", str(trace), "--depth", "32"]) for key in configs}
    rows.append(Row(f"accelerator-shaped trace ({a.heads} heads x {a.tokens} tokens, 2 channels), total",
                    *(float(vals[key]["total_cycles"]) for key in configs), "cycles"))

    # 4. Traces recorded from real accelerator runs.
    for t in a.trace:
        vals = {key: replay(tool, backends[key], configs[key], ["--trace", str(t), "--depth", "32"]) for key in configs}
        rows.append(Row(f"recorded accelerator trace {t.name}, total", *(float(vals[key]["total_cycles"]) for key in configs),
                        "cycles"))

    sha = build_ramulator2.commit_of(ram_dir)
    print(f"Built-in HBM2 model vs Ramulator2 {sha[:12]} (HBM2_8Gb, HBM2_2Gbps, FRFCFS, RoBaRaCoCh; "
          f"1 GHz accelerator clock)\n")
    print("| measurement | builtin | ramulator2 | difference | builtin with refresh |")
    print("|---|---:|---:|---:|---:|")
    failed = False
    for r in rows:
        ok = abs(r.diff) <= a.tolerance
        failed |= not ok
        print(f"| {r.name} ({r.unit}) | {r.builtin:.2f} | {r.ramulator2:.2f} | {r.diff:+.2f}%{'' if ok else ' FAIL'} "
              f"| {r.builtin_refresh:.2f} |")
    if a.json:
        a.json.write_text(json.dumps([r.__dict__ | {"diff_percent": r.diff} for r in rows], indent=1) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
