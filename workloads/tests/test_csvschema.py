"""Tests of the workload CSV schema: original files, round trips, malformed input."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from workloads.csvschema import COLUMNS, WorkloadError, WorkloadRow, read_workload, value_threshold, write_workload

SEEDS = Path("/work/shared/seed-workloads")
HEADER = ",".join(COLUMNS)
GOOD = "0,0,0,64.0,993,993,6,16,0.05,True,4,204,6,True,False,False,-1"
CONFIG = "configs/x.yml" + "," * 16


def _write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "w.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _row(**kw: object) -> WorkloadRow:
    base = dict(
        iteration_id=0, layer_id=1, head_id=2, embedding_length_D=64, sentence_length_L=100, key_fetch_num=50,
        quant_key_bit=8, quant_query_bit=16, auto_requant_thres=0.1, if_requant=True, auto_requant_incre=4,
        value_fetch_num=20, quant_value_bit=8, if_accumulate_importance=True, if_rescale_previous_importance=False,
        if_topk=True, topk=40, extra={"kv_head_id": "0"},
    )
    base.update(kw)
    return WorkloadRow(**base)  # type: ignore[arg-type]


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed workloads not present on this machine")
@pytest.mark.parametrize("path", sorted(glob.glob(str(SEEDS / "*.csv"))), ids=os.path.basename)
def test_original_files_parse_and_round_trip_byte_identical(path: str, tmp_path: Path) -> None:
    wl = read_workload(path)
    assert wl.config_name and wl.config_name.startswith("configs/")
    assert wl.rows and wl.extra_columns == []
    out = tmp_path / "copy.csv"
    write_workload(out, wl.rows, wl.config_name)
    assert out.read_bytes() == Path(path).read_bytes()


@pytest.mark.skipif(not (SEEDS / "summary-gpt2-small-wikitext2-per8.csv").exists(), reason="seed workloads absent")
def test_original_values_are_parsed_as_written() -> None:
    wl = read_workload(SEEDS / "summary-gpt2-small-wikitext2-per8.csv")
    r = wl.rows[0]
    assert (r.iteration_id, r.layer_id, r.head_id, r.embedding_length_D, r.sentence_length_L) == (0, 0, 0, 64, 993)
    assert (r.key_fetch_num, r.quant_key_bit, r.quant_query_bit, r.auto_requant_thres) == (993, 6, 16, 0.05)
    assert (r.if_requant, r.auto_requant_incre, r.value_fetch_num, r.quant_value_bit) == (True, 4, 204, 6)
    assert (r.if_accumulate_importance, r.if_rescale_previous_importance, r.if_topk, r.topk) == (True, False, False, -1)
    assert len(wl.rows) == 32 * 12 * 12
    last = wl.rows[-1]
    assert (last.iteration_id, last.layer_id, last.head_id, last.sentence_length_L, last.key_fetch_num) == (31, 11, 11, 1024, 102)


def test_round_trip_with_extra_column(tmp_path: Path) -> None:
    rows = [_row(), _row(head_id=3, if_topk=False, topk=-1, if_requant=False, extra={"kv_head_id": "1"})]
    p = tmp_path / "sub" / "w.csv"
    write_workload(p, rows, "workloads/policies/x.yaml")
    wl = read_workload(p)
    assert wl.rows == rows
    assert wl.config_name == "workloads/policies/x.yaml"
    assert wl.extra_columns == ["kv_head_id"]
    text = p.read_text().splitlines()
    assert text[1].startswith("0,1,2,64.0,100,50,8,16,0.1,True,4,20,8,True,False,True,40,0")
    assert text[-1] == "workloads/policies/x.yaml" + "," * 17
    assert [f for f in os.listdir(p.parent) if f != "w.csv"] == []  # no temp files left


@pytest.mark.parametrize("value,ok", [("-1", None), ("0.0002", 0.0002), ("0.5", 0.5), ("0", False),
                                      ("1", False), ("abc", False), ("-0.5", False)])
def test_value_threshold_column(tmp_path: Path, value: str, ok: object) -> None:
    p = _write(tmp_path, HEADER + ",kv_head_id,value_threshold", GOOD + f",0,{value}")
    if ok is False:
        with pytest.raises(WorkloadError, match=f"w.csv:2: value_threshold: expected -1 or a probability in "
                                                f"\\(0, 1\\), got '{value}'"):
            read_workload(p)
    else:
        assert value_threshold(read_workload(p).rows[0]) == ok
    assert value_threshold(_row()) is None  # no column: count mode


def test_file_without_config_line_is_accepted(tmp_path: Path) -> None:
    wl = read_workload(_write(tmp_path, HEADER, GOOD))
    assert wl.config_name is None and len(wl.rows) == 1


def _bad(field: str, value: str) -> str:
    vals = GOOD.split(",")
    vals[COLUMNS.index(field)] = value
    return ",".join(vals)


@pytest.mark.parametrize(
    ("lines", "line", "field", "what"),
    [
        ([HEADER.replace(",if_requant", ""), GOOD, CONFIG], 1, "if_requant", "missing column"),
        ([HEADER, _bad("sentence_length_L", "99x"), CONFIG], 2, "sentence_length_L", "expected an integer"),
        ([HEADER, _bad("embedding_length_D", "abc"), CONFIG], 2, "embedding_length_D", "expected a number"),
        ([HEADER, _bad("embedding_length_D", "64.5"), CONFIG], 2, "embedding_length_D", "whole number"),
        ([HEADER, _bad("quant_key_bit", "17"), CONFIG], 2, "quant_key_bit", "unknown bit width 17"),
        ([HEADER, _bad("quant_value_bit", "0"), CONFIG], 2, "quant_value_bit", "unknown bit width 0"),
        ([HEADER, _bad("auto_requant_incre", "16"), CONFIG], 2, "auto_requant_incre", "unknown bit width"),
        ([HEADER, _bad("key_fetch_num", "994"), CONFIG], 2, "key_fetch_num", "1..sentence_length_L"),
        ([HEADER, _bad("value_fetch_num", "994"), CONFIG], 2, "value_fetch_num", "0..key_fetch_num"),
        ([HEADER, _bad("if_topk", "yes"), CONFIG], 2, "if_topk", "expected True or False"),
        ([HEADER, _bad("topk", "5"), CONFIG], 2, "topk", "if_topk is False"),
        ([HEADER, _bad("auto_requant_thres", "1.5"), CONFIG], 2, "auto_requant_thres", "(0, 1]"),
        ([HEADER, _bad("head_id", "-2"), CONFIG], 2, "head_id", ">= 0"),
        ([HEADER, GOOD + ",7", CONFIG], 2, "row", "expected 17 fields"),
        ([HEADER, GOOD, CONFIG, GOOD], 3, "iteration_id", "must be the last line"),
    ],
)
def test_malformed_input_is_rejected_with_file_line_field(tmp_path: Path, lines, line, field, what) -> None:
    p = _write(tmp_path, *lines)
    with pytest.raises(WorkloadError) as info:
        read_workload(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}:{line}: {field}:"), msg
    assert what in msg, msg


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="file not found"):
        read_workload(tmp_path / "nope.csv")
    with pytest.raises(WorkloadError, match="no data rows"):
        read_workload(_write(tmp_path, HEADER, CONFIG))


def test_write_rejects_bad_input_without_output(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    with pytest.raises(ValueError):
        write_workload(p, [], "cfg")
    with pytest.raises(ValueError):
        write_workload(p, [_row(), _row(extra={})], "cfg")
    assert list(tmp_path.iterdir()) == []


def test_kv_bytes() -> None:
    r = _row()  # 50 keys x 64 x (8 + 4 requant) bits + 20 values x 64 x 8 bits
    assert r.kv_bytes() == (50 * 64 * 12 + 20 * 64 * 8) / 8
    assert r.dense_kv_bytes() == 2 * 100 * 64 * 2
    assert _row(quant_key_bit=-1, quant_value_bit=-1, if_requant=False).kv_bytes() == (50 + 20) * 64 * 2
