"""Tests of tools/gen_workload.py on tiny random-weight models saved to disk."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tools.gen_workload import main
from workloads.csvschema import read_workload
from workloads.tests.tiny_models import save_tiny, write_text

NO_QUANT_VP = """name: test-vp
token_pruning:
  enabled: true
  schedule: {start: 0.25, end: 1.0, final_keep: 0.4}
  sink_tokens: 1
  recent_tokens: 2
  min_tokens: 4
value_pruning: {enabled: true, keep: 0.5, min_tokens: 2}
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    out = {kind: save_tiny(kind, root / kind) for kind in ("gpt2", "llama", "bert")}
    out["text"] = write_text(root / "text.txt", 200)
    out["short"] = write_text(root / "short.txt", 10)
    out["policy"] = root / "vp.yaml"
    out["policy"].write_text(NO_QUANT_VP)
    return out


def _invoke(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


def _check_tensors(csv_path: Path, causal: bool, n_layers: int, n_kv: int, t_total: int, quantized: bool) -> None:
    wl = read_workload(csv_path)
    z = np.load(csv_path.with_suffix(".npz"))
    meta = json.loads(str(z["meta"]))
    r = len(wl.rows)
    d = meta["head_dim"]
    assert z["q"].shape == (r, d) and z["out_ref"].shape == (r, d)
    assert z["row_kv_head"].shape == (r,) and z["kept_offsets"].shape == (r + 1,)
    # the identity run.py checks: (iteration_id, layer_id, head_id) of every CSV row
    assert z["row_id"].dtype == np.int32
    assert z["row_id"].tolist() == [[w.iteration_id, w.layer_id, w.head_id] for w in wl.rows]
    assert z["kept_ids"].dtype == np.int32 and z["kept_offsets"].dtype == np.int32
    assert z["k"].shape == (n_layers, n_kv, t_total, d) == z["v"].shape
    assert z["k"].dtype == np.dtype(meta["dtypes"]["k"])
    assert meta["softmax_scale_per_layer"] == [d**-0.5] * n_layers == [meta["softmax_scale"]] * n_layers
    groups = meta["n_heads"] // meta["n_kv_heads"]
    for i, row in enumerate(wl.rows):
        ids = z["kept_ids"][z["kept_offsets"][i] : z["kept_offsets"][i + 1]]
        assert len(ids) == row.key_fetch_num
        assert np.all(np.diff(ids) > 0) and ids[-1] < row.sentence_length_L
        assert z["row_kv_head"][i] == row.head_id // groups == int(row.extra["kv_head_id"])
        if causal:
            assert z["row_position"][i] == row.sentence_length_L - 1 == ids[-1]
        if quantized:
            continue
        # Independent recomputation of the pruned attention of this row from the tensors.
        kvh = z["row_kv_head"][i]
        k = torch.from_numpy(z["k"][row.layer_id, kvh, ids].astype(np.float64))
        v = torch.from_numpy(z["v"][row.layer_id, kvh, ids].astype(np.float64))
        q = torch.from_numpy(z["q"][i].astype(np.float64))
        p = torch.softmax(k @ q / math.sqrt(d), dim=0)
        order = sorted(range(len(p)), key=lambda j: (-float(p[j]), j))[: row.value_fetch_num]
        sel = torch.zeros_like(p)
        sel[order] = 1
        exp = (p * sel) @ v
        np.testing.assert_allclose(z["out_ref"][i], exp.numpy(), atol=1e-6, rtol=1e-4, err_msg=f"row {i}")


@pytest.mark.parametrize(("kind", "n_kv"), [("gpt2", 4), ("llama", 2)])
def test_causal_workload_with_tensors(assets: dict[str, Path], tmp_path: Path, kind: str, n_kv: int) -> None:
    out = tmp_path / "wl.csv"
    res = _invoke("--model", str(assets[kind]), "--text", str(assets["text"]), "--context", "48", "--steps", "5",
                  "--policy", str(assets["policy"]), "--out", str(out), "--tensors", "--kv-dtype", "float32")
    assert res.exit_code == 0, res.output
    wl = read_workload(out)
    assert wl.config_name is not None and wl.config_name.endswith("vp.yaml")
    assert len(wl.rows) == 5 * 4 * 4  # steps x layers x heads (no head pruning)
    assert [r.iteration_id for r in wl.rows[::16]] == [0, 1, 2, 3, 4]
    assert wl.rows[0].sentence_length_L == 49 and wl.rows[-1].sentence_length_L == 53
    assert all(r.quant_key_bit == -1 and not r.if_requant for r in wl.rows)
    assert any(r.key_fetch_num < r.sentence_length_L for r in wl.rows)
    # if_topk marks the last row of a layer whose next layer ran a top-k, with the new count
    marks = [(i, r) for i, r in enumerate(wl.rows) if r.if_topk]
    assert marks
    for i, r in marks:
        assert i + 1 < len(wl.rows) and wl.rows[i + 1].key_fetch_num == r.topk
    _check_tensors(out, True, 4, n_kv, 53, quantized=False)
    summary = json.JSONDecoder().raw_decode(res.output, res.output.index("{"))[0]
    assert res.output.rstrip().endswith(f"simulate it: {summary['simulate']}")
    assert summary["simulate"].endswith(f"run.py {out}")
    assert 0 < summary["kv_bytes_fraction_of_dense"] < 1


def test_encoder_workload(assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bert.csv"
    res = _invoke("--model", str(assets["bert"]), "--text", str(assets["text"]), "--context", "40",
                  "--policy", str(assets["policy"]), "--out", str(out), "--tensors", "--kv-dtype", "float32")
    assert res.exit_code == 0, res.output
    wl = read_workload(out)
    layer0 = [r for r in wl.rows if r.layer_id == 0]
    assert len(layer0) == 40 * 4  # every query token of the first (dense) layer, every head
    assert [r.layer_id for r in wl.rows] == sorted(r.layer_id for r in wl.rows)  # layer-major
    last = [r for r in wl.rows if r.layer_id == 2]
    assert len(last) == last[0].key_fetch_num * 4  # only surviving tokens are queried
    _check_tensors(out, False, 3, 4, 40, quantized=False)


def test_default_policy_quantized_workload(assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "q.csv"
    res = _invoke("--model", str(assets["llama"]), "--text", str(assets["text"]), "--context", "64", "--steps", "2",
                  "--out", str(out), "--tensors")
    assert res.exit_code == 0, res.output
    wl = read_workload(out)
    assert wl.config_name == "workloads/policies/spatten-default.yaml"
    r = wl.rows[0]
    assert (r.quant_key_bit, r.auto_requant_incre, r.quant_value_bit, r.quant_query_bit) == (8, 4, 8, 16)
    assert r.auto_requant_thres == 0.1
    _check_tensors(out, True, 4, 2, 66, quantized=True)
    assert np.load(out.with_suffix(".npz"))["k"].dtype == np.float16  # the default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model-xyz"], "HF_HUB_OFFLINE=1 forbids downloading it"),
        (["--model", "/nonexistent/dir"], "no such model directory"),
        (["--model", "{gpt2}", "--text", "{short}"], "fewer than the 46 tokens needed"),  # before loading
        (["--model", "{gpt2}", "--text", "/nonexistent.txt"], "text file not found"),
        (["--model", "{gpt2}", "--policy", "{badpolicy}"], "value_pruning.keep: must be in (0, 1]"),
        (["--model", "{gpt2}", "--policy", "no-such-preset"], "unknown policy 'no-such-preset'"),
        (["--model", "{gpt2}", "--steps", "0"], "at least one decode step"),
        (["--model", "{gpt2}", "--text", "dataset:wikitext"], "pass a text file with --text instead"),
    ],
)
def test_bad_inputs_give_clear_errors_and_no_output(assets: dict[str, Path], tmp_path: Path, args, message) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvalue_pruning: {enabled: true, keep: 1.5}\n")
    subst = {"{gpt2}": str(assets["gpt2"]), "{short}": str(assets["short"]), "{badpolicy}": str(bad)}
    args = [subst.get(a, a) for a in args]
    if "--text" not in args:
        args += ["--text", str(assets["text"])]
    outdir = tmp_path / "out"
    outdir.mkdir()
    res = CliRunner().invoke(main, ["--quiet", "--context", "48", "--out", str(outdir / "w.csv"), "--tensors", *args])
    assert res.exit_code == 2, res.output  # bad input
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert os.listdir(outdir) == []
