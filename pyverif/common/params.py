"""The hardware parameters of the design under test (``SPATTEN_PARAMS``).

``tools/hwbuild.py`` sets ``SPATTEN_PARAMS`` to the ``params.json`` that elaboration
wrote for the preset under test (keys in ``hardware/SPEC.md`` section 7); testbenches
read sizes from it and never restate them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_params"]


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the parameter JSON (``path`` or ``$SPATTEN_PARAMS``) as a dict.

    Raises ``RuntimeError`` naming the variable or file when it is missing or malformed.
    """
    if path is None:
        env = os.environ.get("SPATTEN_PARAMS")
        if not env:
            raise RuntimeError("SPATTEN_PARAMS is not set: run the testbench through "
                               "tools/hwbuild.run_cocotb, which points it at params.json")
        path = env
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise RuntimeError(f"cannot read parameter file {p}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "preset" not in data:
        raise RuntimeError(f"{p}: expected a JSON object with a 'preset' key")
    return data
