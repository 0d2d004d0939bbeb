"""Where a closed-loop host's commands run: the golden model or the Verilated RTL.

Both take the host's memory writes (:class:`spatten.loop.kvcache.DeviceMemory`) and
execute a batch of commands, returning each decoded response with its cycles (``None``
for the golden model, which has no clock):

- :class:`GoldenDevice` -- :class:`spatten.contract.golden.GoldenAccelerator` on the host's
  memory image.
- :class:`RtlDevice` -- one ``VSpAttenTop --stream`` process
  (:class:`spatten.sim.stream.StreamingSimulator`) that gets every memory write as it
  happens. With ``check=True`` a golden model runs beside it and every response is
  compared word for word (cycles masked); a difference raises
  :class:`spatten.errors.SimulationError` naming the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from spatten.contract.commands import Command, Response, compare_responses, decode_response
from spatten.contract.golden import GoldenAccelerator
from spatten.contract.params import HwParams
from spatten.errors import SimulationError
from spatten.loop.kvcache import DeviceMemory

__all__ = ["GoldenDevice", "RtlDevice"]


class GoldenDevice:
    """The bit-exact model as the device."""

    kind = "golden"

    def __init__(self, params: HwParams, mem: DeviceMemory) -> None:
        self.params = params
        self.model = GoldenAccelerator(params, mem.image)
        self.cycles = 0

    def execute(self, cmds: Sequence[Command]) -> list[tuple[Response, int | None]]:
        return [(decode_response(self.model.execute_packet(c.encode())), None) for c in cmds]

    def close(self) -> None:
        pass


class RtlDevice:
    """The Verilated accelerator as the device (one long-lived simulator process)."""

    kind = "rtl"

    def __init__(self, params: HwParams, mem: DeviceMemory, exe: Path, workdir: Path, *, backend: str = "builtin",
                 dram_config: Path | None = None, check: bool = False) -> None:
        from spatten.sim.stream import StreamingSimulator

        self.params = params
        self.sim = StreamingSimulator(exe, workdir, backend=backend, dram_config=dram_config,
                                      clock_mhz=params.clock_mhz)
        self.golden = GoldenAccelerator(params, mem.image) if check else None
        self.checked = 0
        self.cycles = 0  # cycles of the batches run so far (the accelerator busy)
        # what the host wrote before the simulator existed (the image so far)
        if mem.image.size:
            self.sim.write(0, mem.image.read(0, mem.image.size))
        mem.listeners.append(self.sim.write)

    def execute(self, cmds: Sequence[Command]) -> list[tuple[Response, int | None]]:
        packets = [c.encode() for c in cmds]
        t0 = self.sim.cycle
        answers = self.sim.run(packets)
        self.cycles += self.sim.cycle - t0
        out: list[tuple[Response, int | None]] = []
        for cmd, pkt, ans in zip(cmds, packets, answers):
            if self.golden is not None:
                exp = self.golden.execute_packet(pkt)
                problems = compare_responses(exp, ans.words)
                if problems:
                    raise SimulationError(f"the RTL's response to {type(cmd).__name__} (tag {cmd.tag}) differs from "
                                          f"the golden model: {'; '.join(problems[:4])}")
                self.checked += 1
            out.append((decode_response(ans.words), ans.end - ans.start + 1))
        return out

    def close(self) -> None:
        self.sim.close()
