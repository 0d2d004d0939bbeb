"""The native simulator as one long-lived process fed request by request.

``hardware/harness/spatten_sim.cpp --stream`` takes memory writes and command packets on
its stdin and answers on its stdout (the protocol is in the harness's header comment).
:class:`StreamingSimulator` starts it through :mod:`spatten.sim.procs` (own process
group, stopped on SIGINT/SIGTERM or by :func:`spatten.sim.procs.stop_all`) and turns a
simulator that dies or hangs into a :class:`~spatten.errors.SimulationError` that says
how it ended and what it last printed::

    sim = StreamingSimulator(exe, workdir)
    sim.write(addr, data)                 # bytes into the DPI DRAM's memory image
    answers = sim.run([cmd.encode(), ...])  # [(response words, start cycle, end cycle)]
    sim.close()
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from spatten.contract.commands import Word
from spatten.errors import SimulationError
from spatten.sim import procs

__all__ = ["StreamingSimulator", "Answer"]


@dataclass(frozen=True)
class Answer:
    """One command's response words and the cycles its first word entered / its response
    left the accelerator (the simulator's own clock, which stands still between runs)."""

    words: list[Word]
    start: int
    end: int


class StreamingSimulator:
    """One ``VSpAttenTop --stream`` process (see the module docstring)."""

    def __init__(self, exe: Path, workdir: Path, *, backend: str = "builtin", dram_config: Path | None = None,
                 clock_mhz: int = 1000, max_idle: int = 200000) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.stderr_path = workdir / "simulator.stderr"
        self.stats_path = workdir / "dram_stats.json"
        argv = [str(exe), "--stream", "--max-idle", str(max_idle), f"+dram_backend={backend}",
                f"+dram_stats={self.stats_path}", f"+clock_mhz={clock_mhz}", "+dram_quiet"]
        if backend != "ideal" and dram_config is not None:
            argv.append(f"+dram_config={dram_config}")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = procs.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=self._stderr)
        self.cycle = 0
        self.closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    # ---- protocol ------------------------------------------------------------------------
    def _died(self, doing: str) -> SimulationError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.flush()
        tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        if code is None:
            how = "stopped answering"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        msg = f"the simulator (pid {self.proc.pid}) {how} while {doing}"
        if tail:
            msg += ": " + " | ".join(tail)
        msg += f" (its messages: {self.stderr_path})"
        self.closed = True
        if code is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
        return SimulationError(msg)

    def _send(self, text: str, doing: str) -> None:
        if self.closed:
            raise SimulationError("the simulator was already closed")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(doing) from None

    def _line(self, doing: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise self._died(doing)
        return line.decode().rstrip("\n")

    def write(self, addr: int, data: bytes) -> None:
        """Write ``data`` at byte ``addr`` of the DRAM's memory (before the next :meth:`run`)."""
        if data:
            self._send(f"W {addr:x} {bytes(data).hex()}\n", f"writing {len(data)} bytes at {addr:#x}")

    def run(self, packets: Sequence[Sequence[Word]]) -> list[Answer]:
        """Send ``packets`` and simulate until each has its response; answers in order."""
        if not packets:
            return []
        lines = []
        for pkt in packets:
            lines.append("P " + " ".join(f"{int(d):x}" for d, _ in pkt))
        doing = f"running {len(packets)} commands"
        self._send("\n".join(lines) + "\nR\n", doing)
        out: list[Answer] = []
        for _ in packets:
            f = self._line(doing).split()
            if not f or f[0] != "A":
                raise SimulationError(f"the simulator answered {' '.join(f)!r}, expected a response line")
            words = [int(x, 16) for x in f[3:]]
            out.append(Answer([(w, i == len(words) - 1) for i, w in enumerate(words)], int(f[1]), int(f[2])))
        f = self._line(doing).split()
        if not f or f[0] != "D":
            raise SimulationError(f"the simulator answered {' '.join(f)!r}, expected the end of a run")
        self.cycle = int(f[1])
        return out

    def close(self) -> None:
        """Finish the simulation (DRAM statistics written) and wait for the process."""
        if self.closed:
            return
        self.closed = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"Q\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._stderr.close()
