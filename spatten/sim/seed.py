"""The seed of a run: ``SPATTEN_SEED`` parsed in one place.

The pytest entry points (:func:`run_seed`) and the testbenches (``pyverif.common.seed``)
read the variable through :func:`env_seed`; :func:`spatten.sim.build.run_cocotb` passes
the seed it ran with on to the simulator in the same variable.
"""

from __future__ import annotations

import os
import random

from spatten.errors import InputError

__all__ = ["ENV", "env_seed", "run_seed"]

ENV = "SPATTEN_SEED"


def env_seed() -> int | None:
    """``SPATTEN_SEED`` as an integer (decimal or ``0x``), or None when it is unset or empty."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise InputError(f"{ENV} must be an integer, got {text!r}") from None


def run_seed() -> int:
    """The seed for a new run: ``SPATTEN_SEED`` when set, else a fresh random one (printed
    with every failure, so any run can be reproduced)."""
    seed = env_seed()
    return seed if seed is not None else random.SystemRandom().randrange(1, 2**24)
