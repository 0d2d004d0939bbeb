"""Child processes, signals and the output-folder lock of a simulation run.

Every simulator starts in its own process group (:func:`popen`) and is recorded; on
SIGINT or SIGTERM (:func:`handle_signals`) every recorded group and every other process
descended from this one (build tools started with ``subprocess.run``) is stopped, and
:class:`Interrupted` is raised in the main thread, so that the CLI exits with 128 +
the signal number. :func:`stop_all` stops whatever is still running (a failed run does
not leave its other simulation behind). :func:`deferred_signals` holds signals back
while a report is written, so a report is whole or absent. :func:`lock_output` refuses
a second run on the same output folder::

    from spatten.sim import procs
    procs.handle_signals()
    with procs.lock_output(out):
        try:
            p = procs.popen([exe, ...])
            ...
            with procs.deferred_signals():
                write the report
        finally:
            procs.stop_all()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

from spatten.errors import InputError

__all__ = ["Interrupted", "OutputBusy", "popen", "stop_all", "handle_signals", "deferred_signals",
           "lock_output", "descendants"]

_CHILDREN: list[subprocess.Popen] = []
_DEFER: list[int] = []  # depth marker when non-empty: signals are held
_PENDING: list[int] = []


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``signum`` says which (exit with ``128 + signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class OutputBusy(InputError):
    """Another run holds the output folder."""


def popen(argv: Sequence[str], **kw) -> subprocess.Popen:
    """Start a child in its own process group and record it (see :func:`stop_all`)."""
    p = subprocess.Popen(list(argv), start_new_session=True, **kw)
    _CHILDREN.append(p)
    return p


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below ``pid`` (default: this one), read from ``/proc``."""
    root = os.getpid() if pid is None else pid
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 2 and rest[0] != "Z":
            parent[int(entry)] = int(rest[1])
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt = [c for c, pp in parent.items() if pp in frontier]
        out += nxt
        frontier = nxt
    return out


def _signal_all(sig: int) -> None:
    for p in _CHILDREN:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
    for pid in descendants():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_all(timeout: float = 5.0) -> None:
    """Stop every recorded child group and every descendant: SIGTERM, then SIGKILL after
    ``timeout`` seconds; reap the recorded children."""
    if not _CHILDREN and not descendants():
        return
    _signal_all(signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = [p for p in _CHILDREN if p.poll() is None]
        if not alive and not descendants():
            break
        time.sleep(0.05)
    _signal_all(signal.SIGKILL)
    for p in _CHILDREN:
        with contextlib.suppress(Exception):
            p.wait(timeout=5)
    _CHILDREN.clear()


_STOPPING: list[int] = []


def _handler(signum: int, _frame) -> None:
    if _DEFER or _STOPPING:  # held back (a report being written), or already stopping
        if not _STOPPING:
            _PENDING.append(signum)
        return
    _STOPPING.append(signum)
    try:
        stop_all()
    finally:
        _STOPPING.clear()
    raise Interrupted(signum)


def handle_signals() -> None:
    """Install the SIGINT/SIGTERM handlers (main thread only)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the duration of the block (a report being written);
    a signal that arrived meanwhile takes effect when the block ends."""
    _DEFER.append(1)
    try:
        yield
    finally:
        _DEFER.pop()
        if not _DEFER and _PENDING:
            signum = _PENDING[0]
            _PENDING.clear()
            stop_all()
            raise Interrupted(signum)


@contextlib.contextmanager
def lock_output(out: Path) -> Iterator[None]:
    """An exclusive lock on the output folder (``<out>/.run.lock``, holding the pid);
    :class:`OutputBusy` when another run holds it."""
    lock = Path(out) / ".run.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputBusy(f"--out {out}: another run (pid {holder}) is writing there; wait for it or "
                             f"choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
