"""HwParams: loading, validation, and agreement with the Scala side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spatten.contract import params
from spatten.tests.hwfixtures import TINY_DICT, tiny


def test_from_dict_reads_every_key() -> None:
    p = tiny()
    assert p.max_head_dim == 16 and p.max_tokens == 64 and p.burst_bytes == 32
    assert p.imp_max == 2**32 - 1 and p.head_imp_max == 2**48 - 1 and p.addr_limit == 2**32
    assert p.to_dict() == TINY_DICT


def test_missing_key_names_source_and_key() -> None:
    d = dict(TINY_DICT)
    del d["burstBytes"]
    with pytest.raises(params.ParamsError, match=r"somefile\.json: missing key 'burstBytes'"):
        params.from_dict(d, source="somefile.json")


@pytest.mark.parametrize("key,value", [("maxTokens", "64"), ("maxTokens", 64.0),
                                       ("maxTokens", True), ("preset", 3)])
def test_wrong_type(key: str, value: object) -> None:
    with pytest.raises(params.ParamsError, match=f"key '{key}': expected"):
        params.from_dict(dict(TINY_DICT, **{key: value}))


@pytest.mark.parametrize("key,value", [("burstBytes", 24), ("maxTokens", 0), ("numChannels", 3),
                                       ("dramAddrBits", 60), ("maxRowBytes", 64), ("wordBits", 32)])
def test_bad_value(key: str, value: int) -> None:
    with pytest.raises(params.ParamsError, match=f"key '{key}'"):
        params.from_dict(dict(TINY_DICT, **{key: value}))


def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(dict(TINY_DICT, newThing=3)))
    p = params.load_params(f)
    assert p.extra == {"newThing": 3}
    assert p == tiny()


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(params.ParamsError, match="cannot read"):
        params.load_params(tmp_path / "absent.json")
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    with pytest.raises(params.ParamsError, match=r"bad\.json: not valid JSON"):
        params.load_params(f)


def test_tiny_matches_scala() -> None:
    """The single source of truth: the JSON elaborated from SpAttenParams.scala."""
    hwbuild = pytest.importorskip("spatten.sim.build")
    if shutil.which("java") is None:
        pytest.skip("java is not installed: cannot elaborate the parameter JSON with sbt")
    try:
        path = hwbuild.contract_json("tiny")
    except hwbuild.ToolMissingError as e:
        pytest.skip(f"sbt toolchain unavailable: {e}")
    p = params.load_params(path)
    assert p == tiny(), f"{path} differs from the test fixture TINY_DICT"
