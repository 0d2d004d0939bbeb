"""The GPU baseline's workload plan, result format and power sampler -- everything of
``tools/bench_gpu.py`` that needs no torch and no CUDA, used by that tool and, later, by
``run.py --gpu-baseline``:

- :func:`read_heads` reads the fields of a workload CSV the baseline needs (following the
  column order of ``workloads/csvschema.py``, without importing it);
- :func:`plan_workload` turns its rows into steps -> layers -> SDPA calls per variant
  (:data:`VARIANTS`: ``dense`` reads ``sentence_length_L`` tokens a head, ``compacted`` only
  the ``key_fetch_num`` kept ones), with the K/V bytes each call reads;
- :func:`load_gpu_baseline` reads a ``bench_gpu.py`` JSON result back per step;
- :class:`PowerSampler` samples the board power (NVML through ``pynvml`` when importable,
  else ``nvidia-smi``).

Standard library only (``pynvml`` is optional), so ``tools/bench_gpu.py`` runs on a GPU
machine with only torch and click (``PYTHONPATH=. python3 tools/bench_gpu.py ...``). Bad
files raise :class:`BenchError`, an :class:`~spatten.errors.InputError`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spatten.errors import InputError
from workloads.csvschema import COLUMNS  # the 17 standard columns, in the original order (stdlib only)

__all__ = ["COLUMNS", "KV_HEAD_COLUMN", "VARIANTS", "BenchError", "HeadRow", "AttnCall", "LayerPlan",
           "StepPlan", "read_heads", "plan_layer", "plan_workload", "load_gpu_baseline", "percentile",
           "timing_stats", "file_sha256", "PowerSampler"]

KV_HEAD_COLUMN = "kv_head_id"
VARIANTS = ("dense", "compacted")


class BenchError(InputError):
    """Bad input or an unusable environment; the message says what and where (exit 2)."""


# ---------------------------------------------------------------------------------------
# Workload CSV -> attention calls (pure Python, tested on CPU)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadRow:
    """One CSV data row: one query head of one layer of one decode step."""

    line: int
    step: int
    layer: int
    head: int
    d: int
    length: int  # sentence_length_L: tokens in the dense K/V cache
    kept: int  # key_fetch_num: tokens kept after cascade token pruning
    kv_head: int  # kv_head_id, or head when the CSV has no kv_head_id column


@dataclass(frozen=True)
class AttnCall:
    """One SDPA call: ``groups`` K/V heads of ``length`` tokens, each read by the same
    number of query heads. ``groups[i]`` = (kv head id, query head ids reading it)."""

    d: int
    length: int
    groups: tuple[tuple[int, tuple[int, ...]], ...]

    @property
    def kv_heads(self) -> int:
        return len(self.groups)

    @property
    def per_group(self) -> int:
        return len(self.groups[0][1])

    @property
    def q_heads(self) -> int:
        return self.kv_heads * self.per_group

    @property
    def q_shape(self) -> tuple[int, int, int, int]:
        """(batch, query heads, query tokens, D)."""
        return (1, self.q_heads, 1, self.d)

    @property
    def kv_shape(self) -> tuple[int, int, int, int]:
        """(batch, K/V heads, tokens, D) of K and of V."""
        return (1, self.kv_heads, self.length, self.d)

    @property
    def kv_bytes(self) -> int:
        """fp16 K and V bytes the call reads (each K/V row once)."""
        return 2 * self.kv_heads * self.length * self.d * 2


@dataclass(frozen=True)
class LayerPlan:
    step: int
    layer: int
    heads: tuple[HeadRow, ...]
    calls: dict[str, tuple[AttnCall, ...]]  # variant -> calls


@dataclass(frozen=True)
class StepPlan:
    step: int
    layers: tuple[LayerPlan, ...]

    def calls(self, variant: str) -> list[AttnCall]:
        return [c for lp in self.layers for c in lp.calls[variant]]

    def kv_bytes(self, variant: str) -> int:
        return sum(c.kv_bytes for c in self.calls(variant))


def _field_int(path: str, line: int, name: str, text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise BenchError(f"{path}:{line}: {name}: expected an integer, got {text!r}") from None
    if v < low:
        raise BenchError(f"{path}:{line}: {name}: must be >= {low}, got {v}")
    return v


def read_heads(path: str | os.PathLike[str]) -> tuple[list[HeadRow], bool, str | None]:
    """Read a workload CSV: (rows in file order, whether it has ``kv_head_id``, config name).

    Only the fields the GPU baseline needs are parsed and checked; errors name the file,
    the line and the field.
    """
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{p}: file not found") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise BenchError(f"{p}: cannot read: {exc}") from None
    lines = list(csv.reader(text.splitlines()))
    if not lines:
        raise BenchError(f"{p}:1: header: file is empty")
    header = [h.strip() for h in lines[0]]
    for i, col in enumerate(COLUMNS):
        got = header[i] if i < len(header) else "end of header"
        if got != col:
            raise BenchError(f"{p}:1: {col}: missing column: expected {col!r} as column {i + 1}, got {got!r}")
    grouped = KV_HEAD_COLUMN in header[len(COLUMNS):]
    body = [(n + 2, rec) for n, rec in enumerate(lines[1:]) if any(x.strip() for x in rec)]
    rows: list[HeadRow] = []
    config: str | None = None
    seen: dict[tuple[int, int, int], int] = {}
    for idx, (line, rec) in enumerate(body):
        if all(not x.strip() for x in rec[1:]):
            if idx != len(body) - 1:
                raise BenchError(f"{p}:{line}: {COLUMNS[0]}: config-name line {rec[0]!r} must be the last line")
            config = rec[0]
            continue
        if len(rec) != len(header):
            raise BenchError(f"{p}:{line}: row: expected {len(header)} fields, got {len(rec)}")
        f = dict(zip(header, rec))
        step = _field_int(p, line, "iteration_id", f["iteration_id"], 0)
        layer = _field_int(p, line, "layer_id", f["layer_id"], 0)
        head = _field_int(p, line, "head_id", f["head_id"], 0)
        try:
            dval = float(f["embedding_length_D"])
        except ValueError:
            dval = -1.0
        if not (dval > 0 and dval == int(dval)):
            raise BenchError(f"{p}:{line}: embedding_length_D: expected a positive whole number, "
                             f"got {f['embedding_length_D']!r}")
        length = _field_int(p, line, "sentence_length_L", f["sentence_length_L"], 1)
        kept = _field_int(p, line, "key_fetch_num", f["key_fetch_num"], 1)
        if kept > length:
            raise BenchError(f"{p}:{line}: key_fetch_num: must be in 1..sentence_length_L ({length}), got {kept}")
        kv = _field_int(p, line, KV_HEAD_COLUMN, f[KV_HEAD_COLUMN], 0) if grouped else head
        key = (step, layer, head)
        if key in seen:
            raise BenchError(f"{p}:{line}: head_id: step {step} layer {layer} head {head} "
                             f"already on line {seen[key]}")
        seen[key] = line
        rows.append(HeadRow(line, step, layer, head, int(dval), length, kept, kv))
    if not rows:
        raise BenchError(f"{p}: no data rows")
    return rows, grouped, config


def plan_layer(heads: list[HeadRow] | tuple[HeadRow, ...], variant: str) -> tuple[AttnCall, ...]:
    """The SDPA calls of one layer: query heads grouped by (K/V head, K/V length, D); groups
    of equal (D, length, group size) share one call. Dense length = ``sentence_length_L``,
    compacted length = ``key_fetch_num``. Order: first appearance in the file."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    groups: dict[tuple[int, int, int], list[int]] = {}
    for h in heads:
        n = h.length if variant == "dense" else h.kept
        groups.setdefault((h.kv_head, n, h.d), []).append(h.head)
    buckets: dict[tuple[int, int, int], list[tuple[int, tuple[int, ...]]]] = {}
    for (kv, n, d), qs in groups.items():
        buckets.setdefault((d, n, len(qs)), []).append((kv, tuple(qs)))
    return tuple(AttnCall(d=d, length=n, groups=tuple(g)) for (d, n, _), g in buckets.items())


def plan_workload(rows: list[HeadRow]) -> list[StepPlan]:
    """Rows -> steps (file order of first appearance) -> layers -> calls per variant."""
    steps: dict[int, dict[int, list[HeadRow]]] = {}
    for r in rows:
        steps.setdefault(r.step, {}).setdefault(r.layer, []).append(r)
    out = []
    for s, layers in steps.items():
        lps = tuple(LayerPlan(step=s, layer=l, heads=tuple(hs), calls={v: plan_layer(hs, v) for v in VARIANTS})
                    for l, hs in layers.items())
        out.append(StepPlan(step=s, layers=lps))
    return out


def load_gpu_baseline(path: str | os.PathLike[str], l2: str = "flushed") -> dict[int, dict[str, float]]:
    """Per-step microseconds of a ``bench_gpu.py`` result: ``{step: {"dense_us": median,
    "compacted_us": median}}``, with the L2 cache flushed before each replay (``l2="flushed"``,
    the K/V read from HBM) or back-to-back replays (``l2="warm"``). Raises ``BenchError``
    naming the file and the missing field on a malformed result."""
    if l2 not in ("flushed", "warm"):
        raise ValueError(f"l2 must be 'flushed' or 'warm', got {l2!r}")
    suffix = "_us" if l2 == "flushed" else "_us_l2_warm"
    p = str(path)
    try:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{p}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{p}: not a JSON result: {exc}") from None
    if not isinstance(data, dict) or data.get("tool") != "bench_gpu" or not isinstance(data.get("steps"), list):
        raise BenchError(f"{p}: not a bench_gpu.py result (no 'tool': 'bench_gpu' with a 'steps' list)")
    out: dict[int, dict[str, float]] = {}
    for i, s in enumerate(data["steps"]):
        try:
            out[int(s["step"])] = {v + "_us": float(s[v + suffix]["median"]) for v in VARIANTS}
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"{p}: steps[{i}]: missing or bad field {exc}") from None
    return out


# ---------------------------------------------------------------------------------------
# Timing statistics and board power
# ---------------------------------------------------------------------------------------


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def timing_stats(xs: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile, rounded to 3 decimals."""
    return {"median": round(percentile(xs, 50), 3), "p10": round(percentile(xs, 10), 3),
            "p90": round(percentile(xs, 90), 3)}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class PowerSampler:
    """Board power samples (watts) in a background thread (pynvml) or an ``nvidia-smi -lms``
    subprocess; plus NVML's energy counter where the board has one."""

    def __init__(self, device_index: int, period_ms: int = 20):
        self.period = period_ms / 1000.0
        self.samples: list[tuple[float, float]] = []  # (monotonic time, watts)
        self.method = None
        self._nvml = None
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self.index = device_index
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._nvml = pynvml
            self.method = "nvml"
        except Exception:  # noqa: BLE001 - any failure: fall back to nvidia-smi
            self._nvml = None
            self.method = "nvidia-smi"

    # -- one-shot queries -------------------------------------------------------------
    def energy_mj(self) -> float | None:
        if self._nvml is None:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:  # noqa: BLE001 - not supported on this board
            return None

    def info(self) -> dict:
        """Driver, clocks and power limit, where readable."""
        out: dict = {}
        if self._nvml is not None:
            n, h = self._nvml, self._handle
            for key, fn in (
                ("driver", lambda: n.nvmlSystemGetDriverVersion()),
                ("sm_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                ("mem_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                ("max_sm_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
                ("max_mem_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM)),
                ("power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                ("temperature_c", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            ):
                try:
                    v = fn()
                    out[key] = v.decode() if isinstance(v, bytes) else v
                except Exception:  # noqa: BLE001 - field not supported
                    pass
            return out
        q = "driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit,temperature.gpu"
        keys = ("driver", "sm_clock_mhz", "mem_clock_mhz", "max_sm_clock_mhz", "max_mem_clock_mhz",
                "power_limit_w", "temperature_c")
        try:
            res = subprocess.run(["nvidia-smi", f"--id={self.index}", f"--query-gpu={q}",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
            vals = [x.strip() for x in res.stdout.strip().split(",")]
            if res.returncode == 0 and len(vals) == len(keys):
                for k, v in zip(keys, vals):
                    try:
                        out[k] = float(v) if k != "driver" else v
                    except ValueError:
                        pass
        except (OSError, subprocess.TimeoutExpired):
            pass
        return out

    # -- sampling ---------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._nvml_loop, daemon=True)
            self._thread.start()
            return
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", f"--id={self.index}", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
                 "-lms", str(int(self.period * 1000))],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self.method = None
            return
        self._thread = threading.Thread(target=self._smi_loop, daemon=True)
        self._thread.start()

    def _nvml_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0))
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(self.period)

    def _smi_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.strip())))
            except ValueError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def mean_between(self, t0: float, t1: float) -> tuple[float | None, int]:
        xs = [w for t, w in self.samples if t0 <= t <= t1]
        return (sum(xs) / len(xs) if xs else None), len(xs)
