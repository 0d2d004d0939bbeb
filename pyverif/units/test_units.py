"""pytest entry points of the compute-unit testbenches (tiny preset).

Each test builds (cached) and runs one cocotb module through ``tools.hwbuild``; a failure
names the failing cocotb test and the seed (reproduce with ``SPATTEN_SEED=<seed>``)::

    .venv/bin/python -m pytest pyverif/units -q
"""

from __future__ import annotations

import pytest

from tools import hwbuild

PRESET = "tiny"

CASES = [
    ("PlaneUnpacker", "pyverif.units.tb_unpacker", None),
    ("KeyCombine", "pyverif.units.tb_keycombine", None),
    ("DotProductArray", "pyverif.units.tb_dot", None),
    ("Softmax", "pyverif.units.tb_softmax", None),
    ("ValueAccumulator", "pyverif.units.tb_value", None),
]

RTL_TOPS = [(top, PRESET) for top, _, _ in CASES]
"""Elaborated together at collection (see the repository's conftest.py)."""


@pytest.mark.parametrize("top,module,env", CASES, ids=[c[0] for c in CASES])
def test_unit(top: str, module: str, env: dict[str, str] | None) -> None:
    hwbuild.run_cocotb(top, PRESET, module, extra_env=env)
