"""The hardware parameters of the design under test (``SPATTEN_PARAMS``).

``spatten/sim/build.py`` sets ``SPATTEN_PARAMS`` to the ``contract.json`` that elaboration
wrote for the preset under test (keys in ``hardware/SPEC.md`` section 7); testbenches
read sizes from it and never restate them. Parsing and validation are
``spatten.contract.params``'s (one reader for the whole project).
"""

from __future__ import annotations

import os

from spatten.contract.params import HwParams, load_params

__all__ = ["hw_params"]


def hw_params(path: str | os.PathLike[str] | None = None) -> HwParams:
    """The validated parameters from ``path`` or ``$SPATTEN_PARAMS``.

    Raises ``RuntimeError`` when the variable is unset, ``spatten.contract.params.ParamsError``
    (naming the file and key) when the file is malformed.
    """
    if path is None:
        path = os.environ.get("SPATTEN_PARAMS")
        if not path:
            raise RuntimeError("SPATTEN_PARAMS is not set: run the testbench through "
                               "spatten.sim.build.run_cocotb, which points it at contract.json")
    return load_params(path)

