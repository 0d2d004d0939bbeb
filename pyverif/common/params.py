"""The hardware parameters of the design under test (``SPATTEN_PARAMS``).

``tools/hwbuild.py`` sets ``SPATTEN_PARAMS`` to the ``params.json`` that elaboration
wrote for the preset under test (keys in ``hardware/SPEC.md`` section 7); testbenches
read sizes from it and never restate them. Parsing and validation are
``workloads.params``'s (one reader for the whole project).
"""

from __future__ import annotations

import os
from typing import Any

from workloads.params import HwParams, load

__all__ = ["hw_params", "load_params"]


def hw_params(path: str | os.PathLike[str] | None = None) -> HwParams:
    """The validated parameters from ``path`` or ``$SPATTEN_PARAMS``.

    Raises ``RuntimeError`` when the variable is unset, ``workloads.params.ParamsError``
    (naming the file and key) when the file is malformed.
    """
    if path is None:
        path = os.environ.get("SPATTEN_PARAMS")
        if not path:
            raise RuntimeError("SPATTEN_PARAMS is not set: run the testbench through "
                               "tools/hwbuild.run_cocotb, which points it at params.json")
    return load(path)


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The same parameters as a dict keyed as in the JSON (``maxTokens``, ...)."""
    return hw_params(path).to_dict()
