"""DRAM configurations checked in Python with the rules of the C++ side
(``hardware/dpi/dram_config.cc`` and ``hbm2_presets.cc``), so that a bad YAML file is
reported before anything is built; and the backend choice (``ideal`` takes no config,
``ramulator2`` needs a checkout). Raises :class:`~spatten.errors.InputError`::

    from spatten.sim import dramconfig
    cfg = dramconfig.check_dram_config("hardware/dpi/configs/hbm2.yaml")
    dramconfig.check_backend("ramulator2", dram_config_given=False)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spatten.errors import InputError
from spatten.sim.dpi import dpi_module

__all__ = ["check_dram_config", "parse_dram_config", "check_backend"]


_ORG_PRESETS = {  # hbm2_presets.cc: density, dq, channel, pseudochannel, bankgroup, bank, row, column
    "HBM2_2Gb": (2048, 128, 1, 2, 4, 2, 1 << 14, 1 << 6),
    "HBM2_4Gb": (4096, 128, 1, 2, 4, 4, 1 << 14, 1 << 6),
    "HBM2_8Gb": (8192, 128, 1, 2, 4, 4, 1 << 15, 1 << 6),
}
_ORG_FIELDS = ("density", "dq", "channel", "pseudochannel", "bankgroup", "bank", "row", "column", "channel_width")
_TIMING_FIELDS = ("nBL", "nCL", "nRCDRD", "nRCDWR", "nRP", "nRAS", "nRC", "nWR", "nRTPS", "nRTPL", "nCWL", "nCCDS",
                  "nCCDL", "nRRDS", "nRRDL", "nWTRS", "nWTRL", "nRTW", "nFAW", "nRFC", "nRFCSB", "nREFI",
                  "nREFISB", "nRREFD")
_TIMING_PRESETS = {"HBM2_2Gbps": dict(
    rate=2000, nBL=4, nCL=7, nRCDRD=7, nRCDWR=7, nRP=7, nRAS=17, nRC=19, nWR=8, nRTPS=2, nRTPL=3, nCWL=2,
    nCCDS=1, nCCDL=2, nRRDS=2, nRRDL=3, nWTRS=3, nWTRL=4, nRTW=3, nFAW=15, nRFC=-1, nRFCSB=160, nREFI=3900,
    nREFISB=-1, nRREFD=8)}
_TRFC_NS = {2048: 160, 4096: 260, 8192: 350, 16384: 450}
_PREFETCH = 2


def _tdiv(a: int, b: int) -> int:
    """C++ integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _jedec_cycles(ns: float, tck_ps: int) -> int:
    ps = int(math.floor(ns * 1000.0 + 0.5)) if ns * 1000.0 >= 0 else -int(math.floor(-ns * 1000.0 + 0.5))
    return _tdiv(_tdiv(ps * 1000, tck_ps) + 974, 1000)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, msg: str) -> InputError:
        return InputError(f"DRAM config {self.source}: {key}: {msg}")

    def required(self, parent: Any, key: str, path: str) -> Any:
        if not isinstance(parent, dict) or key not in parent:
            raise self.fail(path + key, "missing field")
        return parent[key]

    @staticmethod
    def _scalar(n: Any) -> bool:
        return n is not None and not isinstance(n, (dict, list))

    def str(self, n: Any, path: str) -> str:
        if not self._scalar(n):
            raise self.fail(path, "expected a string")
        if isinstance(n, bool):
            return "true" if n else "false"
        return str(n)

    def integer(self, n: Any, path: str) -> int:
        if not self._scalar(n):
            raise self.fail(path, "expected an integer")
        if isinstance(n, bool) or not isinstance(n, int):
            raise self.fail(path, f"expected an integer, got '{n}'")
        return n

    def real(self, n: Any, path: str) -> float:
        if not self._scalar(n):
            raise self.fail(path, "expected a number")
        if isinstance(n, bool):
            raise self.fail(path, f"expected a number, got '{n}'")
        try:
            x = float(n)
        except (TypeError, ValueError):
            raise self.fail(path, f"expected a number, got '{n}'") from None
        if not math.isfinite(x):
            raise self.fail(path, f"expected a finite number, got '{n}'")
        return x

    def impl(self, parent: Any, key: str, path: str) -> str:
        n = self.required(parent, key, path)
        return self.str(self.required(n, "impl", path + key + "."), path + key + ".impl")


def _is_pow2(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


def _parse_org(rd: _Reader, org: Any) -> dict[str, int]:
    p = "MemorySystem.DRAM.org."
    if not isinstance(org, dict):
        raise rd.fail(p[:-1], "expected a mapping")
    o = {f: -1 for f in _ORG_FIELDS}
    o["channel_width"] = 64
    if "preset" in org:
        name = rd.str(org["preset"], p + "preset")
        if name not in _ORG_PRESETS:
            raise rd.fail(p + "preset", f"unknown organization preset '{name}'; known: {', '.join(sorted(_ORG_PRESETS))}")
        o.update(zip(_ORG_FIELDS[:8], _ORG_PRESETS[name]))
    for key, val in org.items():
        key = rd.str(key, p + "(key)")
        if key == "preset":
            continue
        if key not in _ORG_FIELDS:
            raise rd.fail(p + key, "unknown organization field")
        v = rd.integer(val, p + key)
        if v <= 0 or v > (1 << 30):
            raise rd.fail(p + key, f"must be a positive integer, got {v}")
        o[key] = v
    for name in _ORG_FIELDS:
        if o[name] < 0:
            raise rd.fail(p + name, "missing field (no preset gives it)")
    for name in ("channel", "pseudochannel", "bankgroup", "bank", "row", "column"):
        if not _is_pow2(o[name]):
            raise rd.fail(p + name, f"must be a power of two, got {o[name]}")
    if o["column"] < _PREFETCH:
        raise rd.fail(p + "column", f"must be at least the prefetch ({_PREFETCH})")
    bits = o["pseudochannel"] * o["bankgroup"] * o["bank"] * o["row"] * o["column"] * o["dq"]
    mb = bits >> 20
    if mb != o["density"]:
        raise rd.fail(p + "density", f"calculated channel density {mb} Mb (pseudochannel*bankgroup*bank*row*column*dq)"
                                     f" does not equal {o['density']} Mb")
    return o


def _parse_timing(rd: _Reader, timing: Any, density: int) -> dict[str, int]:
    p = "MemorySystem.DRAM.timing."
    if not isinstance(timing, dict):
        raise rd.fail(p[:-1], "expected a mapping")
    t = {f: -1 for f in _TIMING_FIELDS}
    t["rate"] = -1
    preset = False
    if "preset" in timing:
        name = rd.str(timing["preset"], p + "preset")
        if name not in _TIMING_PRESETS:
            raise rd.fail(p + "preset", f"unknown timing preset '{name}'; known: {', '.join(sorted(_TIMING_PRESETS))}")
        t.update(_TIMING_PRESETS[name])
        preset = True
    if "rate" in timing:
        if preset:
            raise rd.fail(p + "rate", "cannot change the transfer rate when a timing preset is used")
        r = rd.integer(timing["rate"], p + "rate")
        if r <= 0:
            raise rd.fail(p + "rate", "must be positive")
        t["rate"] = r
    if t["rate"] <= 0:
        raise rd.fail(p + "rate", "missing field (no preset gives it)")
    if t["rate"] // 2 == 0 or 1000000 // (t["rate"] // 2) == 0:
        raise rd.fail(p + "rate", f"{t['rate']} MT/s gives a clock period below 1 ps")
    tck_ps = 1000000 // (t["rate"] // 2)
    if tck_ps > (1 << 31) - 1:
        raise rd.fail(p + "rate", "out of range")
    if density in _TRFC_NS:
        t["nRFC"] = _jedec_cycles(_TRFC_NS[density], tck_ps)
    for key, val in timing.items():
        key = rd.str(key, p + "(key)")
        if key in ("preset", "rate"):
            continue
        nkey, ns = (("n" + key[1:]), True) if key.startswith("t") else (key, False)
        if nkey not in _TIMING_FIELDS:
            raise rd.fail(p + key, "unknown timing parameter")
        v = _jedec_cycles(rd.real(val, p + key), tck_ps) if ns else rd.integer(val, p + key)
        if v < 0 or v > 1000000:
            raise rd.fail(p + key, f"out of range: {v}")
        t[nkey] = v
    for name in _TIMING_FIELDS:
        if name in ("nREFISB", "nRFCSB"):
            continue
        if t[name] < 0:
            raise rd.fail(p + name, "missing field (no preset gives it)")
    if t["nBL"] <= 0 or t["nCL"] <= 0 or t["nREFI"] <= 0:
        raise rd.fail(p + "nBL/nCL/nREFI", "must be positive")
    return t


def parse_dram_config(text: str, source: str) -> dict[str, Any]:
    """Parse a Ramulator2-style DRAM YAML with the rules of ``hardware/dpi/dram_config.cc``
    (every check it makes, in its order); returns what it read (org, timing, controller)."""
    import yaml

    rd = _Reader(source)
    try:
        root = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"DRAM config {source}: not valid YAML: {e}") from None
    if not isinstance(root, dict):
        raise rd.fail("(top level)", "expected a mapping with a MemorySystem key")
    ms = rd.required(root, "MemorySystem", "")
    ms_impl = rd.str(rd.required(ms, "impl", "MemorySystem."), "MemorySystem.impl")
    if ms_impl != "GenericDRAM":
        raise rd.fail("MemorySystem.impl", f"unsupported '{ms_impl}' (expected GenericDRAM)")
    if "clock_ratio" in ms:
        if rd.integer(ms["clock_ratio"], "MemorySystem.clock_ratio") != 1:
            raise rd.fail("MemorySystem.clock_ratio", "only 1 is supported; the accelerator clock is set with +clock_mhz")
    dram = rd.required(ms, "DRAM", "MemorySystem.")
    dram_impl = rd.str(rd.required(dram, "impl", "MemorySystem.DRAM."), "MemorySystem.DRAM.impl")
    if dram_impl != "HBM2":
        raise rd.fail("MemorySystem.DRAM.impl", f"unsupported '{dram_impl}' (the built-in model implements HBM2)")
    org = _parse_org(rd, rd.required(dram, "org", "MemorySystem.DRAM."))
    timing = _parse_timing(rd, rd.required(dram, "timing", "MemorySystem.DRAM."), org["density"])
    ctrl = rd.required(ms, "Controller", "MemorySystem.")
    c_impl = rd.str(rd.required(ctrl, "impl", "MemorySystem.Controller."), "MemorySystem.Controller.impl")
    if c_impl != "Generic":
        raise rd.fail("MemorySystem.Controller.impl", f"unsupported '{c_impl}' (expected Generic)")
    if "read_queue_size" in ctrl:
        q = rd.integer(ctrl["read_queue_size"], "MemorySystem.Controller.read_queue_size")
        if not 1 <= q <= 4096:
            raise rd.fail("MemorySystem.Controller.read_queue_size", "must be in 1..4096")
    sched = rd.impl(ctrl, "Scheduler", "MemorySystem.Controller.")
    if sched == "FRFCFS_Cap":
        if "cap" in ctrl["Scheduler"]:
            if rd.integer(ctrl["Scheduler"]["cap"], "MemorySystem.Controller.Scheduler.cap") < 1:
                raise rd.fail("MemorySystem.Controller.Scheduler.cap", "must be positive")
    elif sched not in ("FRFCFS", "FCFS"):
        raise rd.fail("MemorySystem.Controller.Scheduler.impl",
                      f"unknown scheduler '{sched}'; known: FRFCFS, FRFCFS_Cap, FCFS")
    refresh = rd.impl(ctrl, "RefreshManager", "MemorySystem.Controller.")
    if refresh not in ("AllBank", "None"):
        raise rd.fail("MemorySystem.Controller.RefreshManager.impl",
                      f"unknown refresh manager '{refresh}'; known: AllBank, None")
    mapper = rd.impl(ms, "AddrMapper", "MemorySystem.")
    if mapper not in ("RoBaRaCoCh", "ChRaBaRoCo"):
        raise rd.fail("MemorySystem.AddrMapper.impl", f"unknown address mapper '{mapper}'; known: RoBaRaCoCh, ChRaBaRoCo")
    return {"org": org, "timing": timing, "scheduler": sched, "refresh": refresh, "mapper": mapper}


def check_dram_config(path: Path | str) -> dict[str, Any]:
    """Read and check a DRAM YAML file (see :func:`parse_dram_config`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"DRAM config {p}: file not found (see hardware/dpi/configs/)") from None
    except IsADirectoryError:
        raise InputError(f"DRAM config {p}: is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"DRAM config {p}: cannot open file ({e})") from None
    return parse_dram_config(text, str(p))


def check_backend(backend: str, dram_config_given: bool) -> None:
    """``ideal`` takes no DRAM config; ``ramulator2`` needs a Ramulator2 checkout."""
    if backend == "ideal" and dram_config_given:
        raise InputError("--dram ideal models no DRAM device, so --dram-config would be ignored; give one or "
                         "the other")
    if backend == "ramulator2":
        mod = dpi_module("build_ramulator2")
        src = mod.ramulator2_dir()
        if not mod.has_checkout(src):
            raise InputError(f"--dram ramulator2: no Ramulator2 checkout at {src} (set $SPATTEN_RAMULATOR2_DIR or "
                             f"clone it there; the next build compiles it in: see hardware/dpi/README.md and "
                             f"hardware/dpi/build_ramulator2.py)")
