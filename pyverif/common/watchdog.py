"""A cycle watchdog that fails with a message naming what stopped making progress.

Give it named *probes* (callables returning a counter or any comparable value, e.g. a
driver's beats sent, a monitor's beats received, a DUT status register) and a limit.
While it is armed, if no probe changes for ``limit`` cycles it raises
:class:`ProgressTimeout` listing every probe, its value and the cycles since it last
changed, plus any extra ``context`` (e.g. the DUT's phase), so a hang reads as
"out stalled at 17 beats for 5000 cycles while the engine is in phase 3".
"""

from __future__ import annotations

from typing import Any, Callable

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, RisingEdge

__all__ = ["ProgressTimeout", "Watchdog"]


class ProgressTimeout(AssertionError):
    """Nothing observed by the watchdog changed for its limit of cycles."""


class Watchdog:
    """Fails the test when no probe changes for ``limit`` cycles while armed."""

    #: Cycles between two samples of the probes (a subclass may sample less often when
    #: reading its probes every cycle would dominate the run time).
    period: int = 1

    def __init__(self, clock: SimHandleBase, limit: int,
                 probes: dict[str, Callable[[], Any]],
                 context: dict[str, Callable[[], Any]] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"watchdog limit must be positive, got {limit}")
        self.clock = clock
        self.limit = limit
        self.probes = probes
        self.context = context or {}
        self.cycle = 0
        self.armed = True
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Disarm for good (call at the end of the run phase)."""
        self.armed = False
        self._task.cancel()

    def _report(self, last_change: dict[str, int], values: dict[str, Any]) -> str:
        lines = [f"no progress for {self.limit} cycles (cycle {self.cycle}):"]
        for name, value in values.items():
            lines.append(f"  {name} = {value!r}, unchanged for {self.cycle - last_change[name]} cycles")
        for name, fn in self.context.items():
            try:
                lines.append(f"  [{name}] {fn()!r}")
            except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the hang
                lines.append(f"  [{name}] unreadable: {exc}")
        return "\n".join(lines)

    async def _run(self) -> None:
        values = {name: fn() for name, fn in self.probes.items()}
        last_change = {name: 0 for name in self.probes}
        newest = 0
        while True:
            if self.period == 1:
                await RisingEdge(self.clock)
            else:
                await ClockCycles(self.clock, self.period)
            self.cycle += self.period
            for name, fn in self.probes.items():
                v = fn()
                if v != values[name]:
                    values[name] = v
                    last_change[name] = self.cycle
                    newest = self.cycle
            if self.armed and self.cycle - newest >= self.limit:
                raise ProgressTimeout(self._report(last_change, values))
