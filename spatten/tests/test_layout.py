"""The generated contract as Python reads it: every field of every packet by name."""

from __future__ import annotations

import json
import random

import pytest

from spatten.contract import layout as lay_mod
from spatten.contract.layout import from_dict, layout, load_layout
from spatten.contract.params import load_params
from spatten.errors import ContractError
from spatten.tests.hwfixtures import tiny


def test_every_field_round_trips_alone() -> None:
    """Each field, packed alone with a random value, reads back as that value and leaves
    every other field of the packet zero (no overlaps, nothing outside its bits)."""
    lay = layout()
    rng = random.Random(3)
    for pk in lay.packets.values():
        for f in pk.fields.values():
            lo, hi = f.limits
            for v in (lo, hi, rng.randint(lo, hi)):
                words = pk.pack({f.name: v})
                assert len(words) == pk.header_words
                assert pk.get(words, f.name) == v, (pk.name, f.name, v)
                for g in pk.fields.values():
                    if g.name != f.name:
                        assert pk.get(words, g.name) == 0, (pk.name, f.name, g.name)
                assert words[f.word] & ~pk.used_mask(f.word) == 0


def test_tails_round_trip() -> None:
    rng = random.Random(4)
    for pk in layout().packets.values():
        for t in pk.tails:
            lo, hi = t.limits
            for n in (0, 1, t.lanes_per_word, t.lanes_per_word + 1, 13):
                vals = [rng.randint(lo, hi) for _ in range(n)]
                words = t.pack(vals)
                assert len(words) == t.words(n)
                assert t.unpack(words, n) == tuple(vals)
                if words:
                    assert words[-1] & ~t.used_mask(n) == 0


def test_opcodes_and_packets() -> None:
    lay = layout()
    assert len(set(lay.opcodes.values())) == len(lay.opcodes)
    for pk in lay.packets.values():
        if pk.direction == "section":  # one head of an ATTEND_GROUP: no opcode of its own
            assert not pk.opcodes and "opcode" not in pk.fields
            continue
        assert pk.field("opcode") == lay.opcode_field
        for o in pk.opcodes:
            assert lay.packet_for(pk.direction, lay.opcode(o)) is pk
    for pk in lay.packets.values():  # sections name packets and count fields that exist
        if pk.sections:
            assert lay.packet(pk.sections[0]) and pk.field(pk.sections[1])
    with pytest.raises(ContractError, match="no field 'nope'"):
        lay.packet("attend").field("nope")
    with pytest.raises(ContractError, match="does not fit"):
        lay.packet("attend").pack({"tag": -1})


def test_params_in_the_contract_match_the_fixture() -> None:
    from spatten.sim import build

    path = build.contract_json("tiny")
    assert load_params(path) == tiny()
    assert load_layout(path).params["preset"] == "tiny"


def test_malformed_contract(tmp_path) -> None:
    d = json.loads(build_contract_text())
    d["contractVersion"] = 99
    with pytest.raises(ContractError, match="contractVersion"):
        from_dict(d, "x.json")
    d = json.loads(build_contract_text())
    d["packets"]["attend"]["fields"][1]["word"] = 99
    with pytest.raises(ContractError, match="outside the header"):
        from_dict(d, "x.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ContractError, match="not valid JSON"):
        load_layout(bad)


def test_env_var_selects_the_contract(tmp_path, monkeypatch) -> None:
    p = tmp_path / "c.json"
    p.write_text(build_contract_text())
    monkeypatch.setenv(lay_mod.ENV, str(p))
    lay_mod.set_layout(None)
    try:
        assert layout().source == str(p)
    finally:
        lay_mod.set_layout(None)


def build_contract_text() -> str:
    from spatten.sim import build

    return build.contract_json("tiny").read_text()
