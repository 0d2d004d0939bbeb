"""One seed per run, and independent random streams derived from it.

The seed comes from ``SPATTEN_SEED`` (set by ``spatten/sim/build.py``) or, failing that,
from cocotb's own seed (``COCOTB_RANDOM_SEED`` / its time-based default). Every component
draws from its own ``random.Random`` derived from ``(seed, name)``, so adding a component
does not perturb the others' streams. Reproduce a failing run with the seed it printed.
"""

from __future__ import annotations

import random

from spatten.sim.seed import env_seed

__all__ = ["run_seed", "rng_for", "reproduce_hint"]


def run_seed() -> int:
    """The seed of this run: ``SPATTEN_SEED`` if set, else cocotb's ``RANDOM_SEED``."""
    seed = env_seed()
    if seed is not None:
        return seed
    import cocotb  # imported lazily: this module is also used outside a simulation

    return int(cocotb.RANDOM_SEED)


def rng_for(name: str, seed: int | None = None) -> random.Random:
    """A random stream for the component ``name``, derived from the run seed."""
    base = run_seed() if seed is None else seed
    return random.Random(f"{base}:{name}")


def reproduce_hint(seed: int | None = None) -> str:
    """A one-line hint telling how to rerun with this run's seed."""
    base = run_seed() if seed is None else seed
    return f"seed {base} (rerun with SPATTEN_SEED={base})"
