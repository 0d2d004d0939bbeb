"""Shared test parameters: the `tiny` preset's values, as SpAttenParams.scala defines them.

`test_params.py::test_tiny_matches_scala` checks these against the JSON the Scala side
writes (through `spatten.sim.build.contract_json`), so they cannot drift silently.
"""

from __future__ import annotations

from spatten.contract.params import HwParams, from_dict

TINY_DICT = {
    "preset": "tiny", "maxHeadDim": 16, "maxTokens": 64, "maxHeads": 8, "dotLanes": 16,
    "numChannels": 1, "burstBytes": 32, "dramAddrBits": 32, "topkParallelism": 4,
    "clockMHz": 1000, "maxInflight": 16, "wordBits": 64, "expLutFracBits": 8,
    "probFracBits": 16, "recipShift": 48, "importanceBits": 32, "headImportanceBits": 48,
    "dataBits": 16, "maxRowBytes": 32, "maxGroupHeads": 4, "keysPerCycle": 2,
}


def tiny() -> HwParams:
    """The tiny preset."""
    return from_dict(TINY_DICT, source="hwfixtures.TINY_DICT")


def wide() -> HwParams:
    """A larger configuration (D up to 64, N up to 1024) for pure-function tests."""
    d = dict(TINY_DICT, preset="wide", maxHeadDim=64, maxTokens=1024, maxRowBytes=128)
    return from_dict(d, source="hwfixtures.wide")
