"""Fixtures of the input-check tests (test_inputs.py, test_fuzz_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def params_files() -> dict[str, Path]:
    """The contract of every preset (written once, no hardware elaborated; cached under build/)."""
    from spatten.sim import build as hwbuild

    return {p: hwbuild.contract_json(p) for p in ("tiny", "eighth", "paper")}


@pytest.fixture(scope="module")
def tiny(params_files):
    from spatten.contract.params import load_params

    return load_params(params_files["tiny"])
