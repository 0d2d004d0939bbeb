"""The domain errors: which library error is which kind, and the exit status a CLI gives."""

from __future__ import annotations

import pytest

from spatten.contract.commands import CommandError
from spatten.contract.golden import GoldenUndefined
from spatten.contract.memimage import MemImageError
from spatten.errors import (EXIT_FAILURE, EXIT_INPUT, BuildError, ContractError, InputError, ParamsError,
                            SimulationError, SpAttenError, ToolMissingError, exit_code)
from spatten.sim.seed import env_seed
from workloads.csvschema import WorkloadError


@pytest.mark.parametrize("err, kind, code", [
    (WorkloadError("bad.csv:2: topk: ..."), InputError, EXIT_INPUT),
    (ParamsError("p.json: missing key"), ContractError, EXIT_FAILURE),
    (CommandError("AttendCmd.n=-1 ..."), ContractError, EXIT_FAILURE),
    (MemImageError("not 32-byte aligned"), ContractError, EXIT_FAILURE),
    (GoldenUndefined("address space"), SpAttenError, EXIT_FAILURE),
    (ToolMissingError("no java"), BuildError, EXIT_FAILURE),
    (SimulationError("simulator failed"), SpAttenError, EXIT_FAILURE),
])
def test_kinds_and_exit_codes(err: SpAttenError, kind: type, code: int) -> None:
    assert isinstance(err, kind) and isinstance(err, SpAttenError)
    assert exit_code(err) == code


def test_seed_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("SPATTEN_SEED", raising=False)
    assert env_seed() is None
    monkeypatch.setenv("SPATTEN_SEED", "0x10")
    assert env_seed() == 16
    monkeypatch.setenv("SPATTEN_SEED", "ten")
    with pytest.raises(InputError, match="SPATTEN_SEED must be an integer, got 'ten'"):
        env_seed()
