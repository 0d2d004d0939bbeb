"""The project's domain errors. Libraries raise these and never import click; the
command-line tools (``run.py``, ``tools/*.py``) turn them into messages and exit codes
(:data:`EXIT_INPUT` for bad input, :data:`EXIT_FAILURE` for everything else)::

    SpAttenError
    ├── InputError            bad user input: a workload CSV, an .npz, an option value
    ├── ContractError         a value the hardware contract rules out
    │   └── ParamsError       a parameter file missing a key or holding an impossible value
    ├── BuildError            a build step (sbt, Verilator, g++) failed
    │   └── ToolMissingError  a tool the build needs is not installed
    └── SimulationError       the simulator failed or its outputs are incomplete

Each keeps the built-in base it had before the split (``ValueError`` for values,
``RuntimeError`` for steps), so ``except ValueError`` around a parser still works.
"""

from __future__ import annotations

__all__ = ["SpAttenError", "InputError", "ContractError", "ParamsError", "BuildError", "ToolMissingError",
           "SimulationError", "EXIT_FAILURE", "EXIT_INPUT", "exit_code"]

EXIT_FAILURE = 1
"""Exit status of a failed run: a mismatch, a failed build or simulation."""

EXIT_INPUT = 2
"""Exit status of a run refused for bad input (the same as click's usage errors)."""


class SpAttenError(Exception):
    """Every error this project raises on purpose; its message is meant for the user."""


class InputError(SpAttenError, ValueError):
    """Bad user input (a CSV, an npz, a configuration); the message names file/row/field."""


class ContractError(SpAttenError, ValueError):
    """A value that the hardware contract (``hardware/SPEC.md``, ``contract.json``) rules out."""


class ParamsError(ContractError):
    """A parameter file is missing a key, has a wrong type or an impossible value."""


class BuildError(SpAttenError, RuntimeError):
    """A build step failed; the message names the step and shows the end of its log."""


class ToolMissingError(BuildError):
    """A tool the build needs is not installed; the message says how to get it."""


class SimulationError(SpAttenError, RuntimeError):
    """The simulator failed or did not produce the outputs the run needs."""


def exit_code(err: SpAttenError) -> int:
    """The exit status a command-line tool gives for ``err``."""
    return EXIT_INPUT if isinstance(err, InputError) else EXIT_FAILURE
