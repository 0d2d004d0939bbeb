#!/usr/bin/env python3
"""GPU baseline: the decode attention of a workload CSV on a CUDA GPU, dense and compacted.

    PYTHONPATH=. python3 tools/bench_gpu.py WORKLOAD.csv --out RESULT.json [--replays 200] [--warmup 20]

(from the repository root; in the project's ``.venv``, where ``spatten`` is installed, no
``PYTHONPATH`` is needed).

For every (decode step, layer) of a SpAtten workload CSV it runs the attention of one query
token at batch 1 in fp16 through PyTorch's ``scaled_dot_product_attention``, with the query
heads of that layer as the CSV lists them. Each SDPA backend of ``--backends`` (default
FlashAttention, cuDNN and memory-efficient) is timed on every step; per variant the fastest
backend (lowest mean of step medians) gives the figures, and every backend's are kept (on an
H200 with PyTorch 2.11, PyTorch's FlashAttention-2 took 1.45-1.54x cuDNN's time for one query
token). Where the CSV has a ``kv_head_id`` column the query heads that share a K/V head read
one K/V tensor (grouped-query attention, SDPA's ``enable_gqa``); without it every head has its
own K/V. Two variants:

- **dense**: each K/V head holds ``sentence_length_L`` tokens;
- **compacted**: each head's K/V holds only its ``key_fetch_num`` kept tokens, gathered
  ahead of time (the cache already compacted), so the kernel reads only those.

Heads of one layer that share the K/V length and group size run in one SDPA call; heads
with different kept counts run in separate calls. All layers of a step are captured in one
CUDA graph, which is replayed ``--warmup`` times and then timed ``--replays`` times with
CUDA events, once with the L2 cache flushed before every replay (the primary figure: the
K/V comes from HBM, as in a real decode step) and once back to back (``*_l2_warm``).
Then every step's graph is replayed round-robin for ``--power-seconds`` per variant while
the board power is sampled (NVML through ``pynvml`` when importable, else ``nvidia-smi``);
energy per step = mean power x the step's median time; idle power is sampled first. The
outputs of every call are checked against a float32 reference. Data are random normal
fp16 values (the kernels' time does not depend on them).

It needs only torch and click (no numpy): of this repo it imports only the standard-library
modules ``spatten.errors``, ``spatten.fileio`` and ``spatten.sim.gpu_baseline``, which reads
the CSV (following the column order of ``workloads/csvschema.py``), plans the calls and
samples the power. The JSON result is written atomically. Exit status: 0 done, 2 bad input
or no usable CUDA device, 1 a failed self-check (outputs wrong).

``spatten.sim.gpu_baseline.load_gpu_baseline(path)`` reads a result back as
``{step: {"dense_us": .., "compacted_us": ..}}`` (medians, L2 flushed) for reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import click

from spatten.fileio import write_atomic
from spatten.sim.gpu_baseline import (VARIANTS, AttnCall, BenchError, PowerSampler, StepPlan, file_sha256,
                                      plan_workload, read_heads, timing_stats)

TOOL_VERSION = 1
#: SDPA backends this tool knows, and those it times by default (math is never the fastest).
ALL_BACKENDS = ("flash", "cudnn", "efficient", "math")
DEFAULT_BACKENDS = ("flash", "cudnn", "efficient")


class CheckError(Exception):
    """The GPU outputs disagree with the float32 reference (exit 1)."""


def _backend_enum(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]


class StepRunner:
    """The tensors, the chosen backends and the CUDA graph of one (step, variant)."""

    def __init__(self, torch, plan: StepPlan, variant: str, backends: tuple[str, ...], gen):
        import torch.nn.functional as F
        from torch.nn.attention import sdpa_kernel

        self.torch = torch
        self.step = plan.step
        self.variant = variant
        self.calls = plan.calls(variant)
        self.items = []  # (call, q, k, v, backend, expanded)
        dev = torch.device("cuda")
        for c in self.calls:
            q = torch.randn(c.q_shape, generator=gen, device=dev, dtype=torch.float16)
            k = torch.randn(c.kv_shape, generator=gen, device=dev, dtype=torch.float16)
            v = torch.randn(c.kv_shape, generator=gen, device=dev, dtype=torch.float16)
            backend, expanded = self._choose(F, sdpa_kernel, q, k, v, c, backends)
            if expanded:  # no grouped kernel accepted it: one materialized K/V per query head
                k = k.repeat_interleave(c.per_group, dim=1).contiguous()
                v = v.repeat_interleave(c.per_group, dim=1).contiguous()
            self.items.append((c, q, k, v, backend, expanded))
        self.outs: list = []
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run_all(F, sdpa_kernel)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outs = self._run_all(F, sdpa_kernel)
        torch.cuda.synchronize()

    @staticmethod
    def _sdpa(F, sdpa_kernel, q, k, v, gqa: bool, backend: str):
        with sdpa_kernel([_backend_enum(backend)]):
            if gqa:
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return F.scaled_dot_product_attention(q, k, v)

    def _choose(self, F, sdpa_kernel, q, k, v, c: AttnCall, backends: tuple[str, ...]) -> tuple[str, bool]:
        gqa = c.per_group > 1
        tries = [(b, False) for b in backends]
        if gqa:
            tries += [(b, True) for b in backends]
        errors = []
        for b, expanded in tries:
            kk = k.repeat_interleave(c.per_group, dim=1) if expanded else k
            vv = v.repeat_interleave(c.per_group, dim=1) if expanded else v
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._sdpa(F, sdpa_kernel, q, kk, vv, gqa and not expanded, b)
                self.torch.cuda.synchronize()
                return b, expanded
            except RuntimeError as exc:
                errors.append(f"{b}{' (expanded)' if expanded else ''}: {str(exc).splitlines()[0]}")
        raise BenchError(f"no SDPA backend of {list(backends)} accepts q {c.q_shape}, k/v {c.kv_shape}: "
                         + "; ".join(errors))

    def _run_all(self, F, sdpa_kernel) -> list:
        outs = []
        for c, q, k, v, backend, expanded in self.items:
            outs.append(self._sdpa(F, sdpa_kernel, q, k, v, c.per_group > 1 and not expanded, backend))
        return outs

    def check(self) -> float:
        """Poison the outputs, replay the graph once, and return the max relative error
        (Frobenius, per call) of its outputs against a float32 reference."""
        torch = self.torch
        for out in self.outs:
            out.fill_(float("nan"))
        self.graph.replay()
        torch.cuda.synchronize()
        worst = 0.0
        for (c, q, k, v, _b, expanded), out in zip(self.items, self.outs):
            kk, vv = k.float(), v.float()
            if not expanded and c.per_group > 1:
                kk = kk.repeat_interleave(c.per_group, dim=1)
                vv = vv.repeat_interleave(c.per_group, dim=1)
            s = (q.float() @ kk.transpose(-1, -2)) / (c.d ** 0.5)
            ref = torch.softmax(s, dim=-1) @ vv
            err = float((out.float() - ref).norm() / ref.norm())
            if not err == err or err > 1e-2:  # NaN or far off
                raise CheckError(f"step {self.step} {self.variant}: call q {c.q_shape} k/v {c.kv_shape}: "
                                 f"relative error {err:.3g} against float32 (limit 1e-2)")
            worst = max(worst, err)
        return worst

    def backend_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _c, _q, _k, _v, b, expanded in self.items:
            key = b + ("+expanded_kv" if expanded else "")
            out[key] = out.get(key, 0) + 1
        return out


def _time_replays(torch, graph, warmup: int, replays: int, flush) -> list[float]:
    """Microseconds of each of ``replays`` graph replays (CUDA events), after ``warmup``.
    With ``flush`` (a large tensor), it is read before each replay so L2 holds none of the
    step's data."""
    for _ in range(warmup):
        graph.replay()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    sink = torch.empty((), device="cuda", dtype=torch.float32)
    for i in range(replays):
        if flush is not None:
            torch.sum(flush, dim=0, dtype=torch.float32, out=sink)
        starts[i].record()
        graph.replay()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)]


def _power_phase(torch, sampler: PowerSampler, runners: list[StepRunner], seconds: float) -> dict:
    """Replay the steps' graphs round-robin for about ``seconds``; mean power and GPU time."""
    for r in runners:  # warm the clocks
        r.graph.replay()
    torch.cuda.synchronize()
    e0 = sampler.energy_mj()
    t0 = time.monotonic()
    ev0 = torch.cuda.Event(enable_timing=True)
    ev1 = torch.cuda.Event(enable_timing=True)
    ev0.record()
    rounds = 0
    while time.monotonic() - t0 < seconds:
        for _ in range(10):
            for r in runners:
                r.graph.replay()
        rounds += 10
        torch.cuda.synchronize()  # keep the host from queueing far ahead of the timed window
    ev1.record()
    torch.cuda.synchronize()
    t1 = time.monotonic()
    e1 = sampler.energy_mj()
    gpu_s = ev0.elapsed_time(ev1) / 1000.0
    mean_w, n = sampler.mean_between(t0 + min(1.0, seconds / 3), t1)  # skip the first second (averaging window)
    out = {"seconds": round(t1 - t0, 3), "gpu_busy_seconds": round(gpu_s, 4), "rounds": rounds,
           "us_per_round": round(gpu_s * 1e6 / rounds, 2), "mean_power_w_samples": None if mean_w is None else round(mean_w, 2),
           "samples": n, "mean_power_w_energy_counter": None}
    if e0 is not None and e1 is not None and t1 > t0:
        out["mean_power_w_energy_counter"] = round((e1 - e0) / 1000.0 / (t1 - t0), 2)
    info = sampler.info()
    out["sm_clock_mhz_after"] = info.get("sm_clock_mhz")
    out["mem_clock_mhz_after"] = info.get("mem_clock_mhz")
    return out


def write_json_atomic(path: str | os.PathLike[str], data: dict) -> None:
    """``data`` as indented JSON with a final newline, written atomically."""
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def bench(workload: str, warmup: int, replays: int, power_seconds: float, idle_seconds: float,
          backend: str, flush_mib: int, seed: int, max_steps: int | None, log=print) -> dict:
    """Run the whole benchmark; returns the JSON-ready result."""
    rows, grouped, config = read_heads(workload)
    plans = plan_workload(rows)
    if max_steps is not None:
        plans = plans[:max_steps]
    try:
        import torch
    except ImportError:
        raise BenchError("PyTorch is not installed (pip install torch)") from None
    if not torch.cuda.is_available():
        raise BenchError("no CUDA device: torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    backends = tuple(x.strip() for x in backend.split(",") if x.strip())
    bad = [x for x in backends if x not in ALL_BACKENDS]
    if not backends or bad or len(set(backends)) != len(backends):
        raise BenchError(f"--backends: expected distinct names of {', '.join(ALL_BACKENDS)}, got {backend!r}")
    dev_index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev_index)
    sampler = PowerSampler(dev_index)
    info_start = sampler.info()
    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)

    # Idle power first, before any load (the CUDA context exists already).
    torch.cuda.synchronize()
    idle = {"seconds": idle_seconds, "mean_power_w_samples": None, "samples": 0, "mean_power_w_energy_counter": None}
    if idle_seconds > 0:
        sampler.start()
        e0, t0 = sampler.energy_mj(), time.monotonic()
        time.sleep(idle_seconds)
        e1, t1 = sampler.energy_mj(), time.monotonic()
        sampler.stop()
        m, n = sampler.mean_between(t0, t1)
        idle.update(mean_power_w_samples=None if m is None else round(m, 2), samples=n)
        if e0 is not None and e1 is not None:
            idle["mean_power_w_energy_counter"] = round((e1 - e0) / 1000.0 / (t1 - t0), 2)
    log(f"idle power: {idle['mean_power_w_energy_counter'] or idle['mean_power_w_samples']} W")

    flush = None
    if flush_mib > 0:
        flush = torch.randn(flush_mib * (1 << 20) // 2, device="cuda", dtype=torch.float16, generator=gen)

    # Every candidate backend: graphs of all steps, checked, timed; per variant the backend
    # with the lowest mean of step medians (L2 flushed) gives the figures.
    all_runners: dict[str, dict[str, list[StepRunner]]] = {}
    all_times: dict[str, dict[str, dict[int, dict[str, dict[str, float]]]]] = {}
    unavailable: dict[str, str] = {}
    worst = 0.0
    for b in backends:
        log(f"{b}: building {len(plans)} steps x {len(VARIANTS)} variants (CUDA graphs)")
        try:
            runners = {v: [StepRunner(torch, p, v, (b,), gen) for p in plans] for v in VARIANTS}
        except BenchError as exc:
            unavailable[b] = str(exc)
            log(f"{b}: unavailable: {exc}")
            torch.cuda.empty_cache()
            continue
        worst = max([worst] + [r.check() for v in VARIANTS for r in runners[v]])
        times: dict[str, dict[int, dict[str, dict[str, float]]]] = {v: {} for v in VARIANTS}
        for v in VARIANTS:
            for r in runners[v]:
                cold = _time_replays(torch, r.graph, warmup, replays, flush)
                warm = _time_replays(torch, r.graph, warmup, replays, None)
                times[v][r.step] = {"cold": timing_stats(cold), "warm": timing_stats(warm)}
            log(f"{b}: {v}: mean of step medians "
                f"{sum(t['cold']['median'] for t in times[v].values()) / len(plans):.1f} us (L2 flushed), "
                f"{sum(t['warm']['median'] for t in times[v].values()) / len(plans):.1f} us (L2 warm)")
        # The outputs must still be right after all the replays.
        worst = max([worst] + [r.check() for v in VARIANTS for r in runners[v]])
        all_runners[b] = runners
        all_times[b] = times
    if not all_runners:
        raise BenchError("no SDPA backend could run this workload: "
                         + "; ".join(f"{b}: {m}" for b, m in unavailable.items()))

    def mean_median(b: str, v: str) -> float:
        return sum(t["cold"]["median"] for t in all_times[b][v].values()) / len(plans)

    chosen = {v: min(all_runners, key=lambda b: mean_median(b, v)) for v in VARIANTS}
    runners = {v: all_runners[chosen[v]][v] for v in VARIANTS}
    times = {v: all_times[chosen[v]][v] for v in VARIANTS}
    log("fastest: " + ", ".join(f"{v} {chosen[v]} {mean_median(chosen[v], v):.1f} us" for v in VARIANTS))

    power: dict = {"method": sampler.method, "idle": idle}
    if power_seconds > 0:
        for v in VARIANTS:
            sampler.samples.clear()
            sampler.start()
            try:
                power[v] = _power_phase(torch, sampler, runners[v], power_seconds)
            finally:
                sampler.stop()
            log(f"{v}: power {power[v]['mean_power_w_energy_counter'] or power[v]['mean_power_w_samples']} W")

    def watts(d: dict | None) -> float | None:
        if not d:
            return None
        return d.get("mean_power_w_energy_counter") or d.get("mean_power_w_samples")

    idle_w = watts(idle)
    steps_out = []
    for p in plans:
        s: dict = {"step": p.step, "layers": len(p.layers), "query_heads": sum(len(lp.heads) for lp in p.layers)}
        for v in VARIANTS:
            t = times[v][p.step]
            s[f"{v}_calls"] = len(p.calls(v))
            s[f"{v}_kv_bytes"] = p.kv_bytes(v)
            s[f"{v}_backend"] = chosen[v]
            s[f"{v}_us"] = t["cold"]
            s[f"{v}_us_l2_warm"] = t["warm"]
            s[f"{v}_us_by_backend"] = {b: all_times[b][v][p.step]["cold"] for b in all_times}
            w = watts(power.get(v))
            s[f"{v}_energy_uj"] = None if w is None else round(w * t["cold"]["median"], 2)
            s[f"{v}_energy_above_idle_uj"] = (None if w is None or idle_w is None
                                              else round((w - idle_w) * t["cold"]["median"], 2))
        steps_out.append(s)

    def mean(key: str, sub: str | None = "median") -> float | None:
        vals = [s[key][sub] if sub else s[key] for s in steps_out]
        if any(x is None for x in vals):
            return None
        return round(sum(vals) / len(vals), 3)

    summary = {}
    for v in VARIANTS:
        summary[f"{v}_backend"] = chosen[v]
        summary[f"{v}_us_mean"] = mean(f"{v}_us")
        summary[f"{v}_us_mean_by_backend"] = {b: round(mean_median(b, v), 3) for b in all_times}
        summary[f"{v}_us_l2_warm_mean"] = mean(f"{v}_us_l2_warm")
        summary[f"{v}_energy_uj_mean"] = mean(f"{v}_energy_uj", None)
        summary[f"{v}_energy_above_idle_uj_mean"] = mean(f"{v}_energy_above_idle_uj", None)
        summary[f"{v}_kv_bytes_mean"] = mean(f"{v}_kv_bytes", None)
        summary[f"{v}_power_w"] = watts(power.get(v))
        summary[f"{v}_calls_by_kernel"] = {}
        for r in runners[v]:
            for b, n in r.backend_counts().items():
                summary[f"{v}_calls_by_kernel"][b] = summary[f"{v}_calls_by_kernel"].get(b, 0) + n
    summary["idle_power_w"] = idle_w
    summary["unavailable_backends"] = unavailable

    import platform

    return {
        "tool": "bench_gpu",
        "tool_version": TOOL_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", "tools/bench_gpu.py"] + sys.argv[1:]),
        "workload": {"path": workload, "sha256": file_sha256(workload), "config": config, "rows": len(rows),
                     "steps": len(plans), "kv_grouped": grouped},
        "device": {"name": torch.cuda.get_device_name(dev_index), "capability": list(torch.cuda.get_device_capability(dev_index)),
                   "multiprocessors": props.multi_processor_count, "memory_bytes": props.total_memory,
                   "torch": torch.__version__, "cuda": torch.version.cuda,
                   "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
                   "at_start": info_start},
        "method": {"batch": 1, "dtype": "float16", "query_tokens": 1, "api": "torch.nn.functional.scaled_dot_product_attention",
                   "backends_tried": list(backends),
                   "backend_choice": "per variant, the backend with the lowest mean of step medians (*_us); "
                                     "*_us_by_backend has every backend's figures; a grouped call that a backend "
                                     "refuses runs on K/V repeated per query head ('+expanded_kv')", "graph": "all layers of a step in one CUDA graph",
                   "warmup": warmup, "replays": replays, "l2_flush_mib": flush_mib, "seed": seed,
                   "timing": "CUDA events around each replay; *_us: a flush buffer is read before each replay "
                             "(K/V from HBM); *_us_l2_warm: back-to-back replays",
                   "energy": "mean board power while replaying all steps round-robin x the step's median time (*_us)",
                   "check_max_rel_err": worst},
        "power": power,
        "summary": summary,
        "steps": steps_out,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("workload", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="JSON result (written atomically).")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0), help="Untimed replays per step.")
@click.option("--replays", default=200, show_default=True, type=click.IntRange(1), help="Timed replays per step.")
@click.option("--power-seconds", default=3.0, show_default=True, type=click.FloatRange(0),
              help="Seconds of round-robin replay per variant while sampling power (0: no power figures).")
@click.option("--idle-seconds", default=2.0, show_default=True, type=click.FloatRange(0), help="Seconds of idle power sampling.")
@click.option("--backends", "backend", default=",".join(DEFAULT_BACKENDS), show_default=True,
              help=f"Comma-separated SDPA backends to time (of {', '.join(ALL_BACKENDS)}); the fastest "
                   "per variant gives the figures.")
@click.option("--l2-flush-mib", default=512, show_default=True, type=click.IntRange(0),
              help="Buffer read before each timed replay to empty L2 (0: no flush).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random fp16 data.")
@click.option("--steps", "max_steps", default=None, type=click.IntRange(1), help="Only the first N steps.")
def main(workload, out, warmup, replays, power_seconds, idle_seconds, backend, l2_flush_mib, seed, max_steps):
    """Time the decode attention of WORKLOAD (a SpAtten CSV) on a CUDA GPU; write JSON to --out."""
    try:
        result = bench(workload, warmup, replays, power_seconds, idle_seconds, backend, l2_flush_mib, seed,
                       max_steps, log=lambda m: click.echo(m, err=True))
    except BenchError as exc:
        click.echo(f"bench_gpu: error: {exc}", err=True)
        sys.exit(2)
    except CheckError as exc:
        click.echo(f"bench_gpu: self-check failed: {exc}", err=True)
        sys.exit(1)
    write_json_atomic(out, result)
    s = result["summary"]
    click.echo(f"{result['device']['name']}: {result['workload']['steps']} steps; per step (median, mean over steps): "
               f"dense {s['dense_us_mean']} us ({s['dense_backend']}), compacted {s['compacted_us_mean']} us "
               f"({s['compacted_backend']}); by backend: dense {s['dense_us_mean_by_backend']}, "
               f"compacted {s['compacted_us_mean_by_backend']} "
               f"(L2 warm: {s['dense_us_l2_warm_mean']} / {s['compacted_us_l2_warm_mean']} us); "
               f"power dense {s['dense_power_w']} W, compacted {s['compacted_power_w']} W, idle {s['idle_power_w']} W; "
               f"energy per step {s['dense_energy_uj_mean']} / {s['compacted_energy_uj_mean']} uJ -> {out}")


if __name__ == "__main__":
    main()
