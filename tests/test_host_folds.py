"""Host folds on the accelerator (issue 14): a workload made with per-channel K scales
(folded into the query), per-channel V scales (folded into the output) and eviction (one
token list per K/V head), from a tiny random-weight Llama, runs on the tiny preset with
every response equal to the golden model's; its K/V bits per query head, counted from the
accelerator's own decisions, equal the accuracy table's count (``kvattention.count_bits``)
of the same run, and its outputs match the PyTorch model's float output (value top-k on
near-equal probabilities aside: ``program.FloatCheck``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import inputs_fixtures as fx
from workloads.csvschema import read_workload
from workloads.tests.tiny_models import save_tiny, write_text

E, Q, V = "eviction", "quantization", "value_pruning"
POLICIES = {
    # per-channel K and V scales, value top-k, TOVA eviction to 60% per K/V head
    "h2o-channel": (f"hw-kv@{E}.enabled=true@{E}.method=tova@{E}.budget=0.6@{E}.min_tokens=2@{E}.recent_tokens=2"
                    f"@{E}.sink_tokens=1@{V}.min_tokens=2@{V}.keep=0.5@{Q}.requant_threshold=0.3@{Q}.key_msb_bits=6"
                    f"@{Q}.key_lsb_bits=4"),
    # per-channel K scales, per-tensor V, no eviction
    "channel-k": f"kivi-hw@{Q}.value_axis=tensor@{Q}.value_bits=8@{Q}.key_msb_bits=6@{Q}.requant_threshold=0.3",
    # per-channel K and V scales, V rows by probability threshold (the threshold mode), the
    # threshold relative to the row's keys (0.75 / N: about 0.03 here)
    "threshold": f"kivi-hw@{Q}.value_bits=8@{Q}.key_msb_bits=6@{Q}.key_lsb_bits=2@{Q}.requant_threshold=0.3"
                 f"@{V}.enabled=true@{V}.relative_threshold=0.75",
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folds")
    return {"llama": save_tiny("llama", root / "llama"), "text": write_text(root / "text.txt", 200)}


@pytest.mark.parametrize("name", ["h2o-channel", "channel-k", "threshold"])
def test_folded_workload_runs_bit_exact_and_counts_the_same_bits(assets: dict[str, Path], tmp_path: Path,
                                                                  name: str) -> None:
    from tools.gen_workload import main as gen  # noqa: PLC0415

    csv = tmp_path / f"{name}.csv"
    res = CliRunner().invoke(gen, ["--quiet", "--model", str(assets["llama"]), "--text", str(assets["text"]),
                                   "--context", "24", "--steps", "3", "--policy", POLICIES[name], "--out", str(csv),
                                   "--tensors", "--kv-dtype", "float32"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.JSONDecoder().raw_decode(res.output, res.output.index("{"))[0]
    z = np.load(csv.with_suffix(".npz"))
    meta = json.loads(str(z["meta"]))
    rows = read_workload(csv).rows
    if name == "h2o-channel":
        assert meta["scales"] == {"key": "channel", "value": "channel"}
        # eviction: the K/V heads of one (step, layer) keep different token lists
        lists = {}
        for i, r in enumerate(rows):
            lists.setdefault((r.iteration_id, r.layer_id, r.extra["kv_head_id"]),
                             tuple(z["kept_ids"][z["kept_offsets"][i]:z["kept_offsets"][i + 1]]))
        per_layer = {}
        for (it, layer, _), ids in lists.items():
            per_layer.setdefault((it, layer), set()).add(ids)
        assert any(len(s) > 1 for s in per_layer.values())
        assert any(r.key_fetch_num < r.sentence_length_L for r in rows)
    elif name == "channel-k":
        assert meta["scales"] == {"key": "channel", "value": "tensor"}
    else:
        assert meta["scales"] == {"key": "channel", "value": "channel"}
        # the threshold selects a different number of V rows from row to row
        assert all(float(r.extra["value_threshold"]) == 0.75 / r.key_fetch_num for r in rows)
        assert len({r.value_fetch_num for r in rows}) > 1
    out = tmp_path / "out"
    proc = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out), "--no-dense"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["mismatches"] == 0 and s["checked_responses"] > 0 and s["query_heads"] == len(rows)
    # the accuracy table's count (torch decisions) == the count from the accelerator's decisions
    assert s["kv_fraction_per_query_head"] == pytest.approx(summary["kv_bytes_fraction_of_dense"], rel=1e-12)
    assert "K/V bits per query head vs dense" in proc.stdout
    # the folds are right: the accelerator's outputs, scaled back on the host, are the model's
    fe = s["float_error"]
    assert fe["violations"] == 0 and fe["model_max_abs"] is not None
    assert fe["model_max_abs"] < 2e-3 * max(1.0, float(np.abs(z["out_ref"]).max()))
    # valueTopK ranks fixed-point probabilities: on this random model's near-uniform attention
    # (16-27 keys within a few percent of 1/N) it picks other, equally valid V rows than the
    # model's float top-k in some rows -- each swap within the fixed-point probability bound
    assert fe["value_selection_violations"] == 0
    assert (fe["value_selection_ties"] > 0) == (name == "h2o-channel")


def test_float_check_tells_value_selection_ties_from_errors() -> None:
    """valueTopK ranks the fixed-point p_j: two keys whose float probabilities differ by
    less than the fixed-point bound get equal p_j, and the lower position wins where the
    model's float top-k takes the other. The check names that a tie and compares the output
    with the model's choice; a selection no bound explains is a violation."""
    import dataclasses  # noqa: PLC0415

    from spatten.contract import golden, reference  # noqa: PLC0415
    from spatten.sim.program import _float_check  # noqa: PLC0415
    from spatten.tests.hwfixtures import tiny  # noqa: PLC0415

    q, k, v = [1], np.array([[99], [100], [-2000]]), np.array([[3], [-5], [7]])
    scale, shift = 1, 8  # one score unit is 2^-16 of an octave: positions 0 and 1 are 1e-5 apart
    res = golden.attend(q, k, None, v, k_lsb_bits=0, score_scale=scale, score_shift=shift, value_topk=1,
                        params=tiny())
    assert res.probs.p[0] == res.probs.p[1] and res.selected.tolist() == [0]  # hardware: equal, lower wins
    pi, model_out = reference.attend_dequantized(q, k, v, [1], scale, shift)
    assert pi[1] > pi[0]  # the model's float top-1 is position 1
    arrays = (k.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    s_v = 0.5
    fc = _float_check(arrays, [0, 1, 2], q, res, 0, scale, shift, s_v, model_out.numpy() * s_v)
    assert fc.tie and not fc.tie_violation
    assert fc.err_model <= fc.tol * s_v  # the hardware's output with the model's choice: fixed-point error only
    wrong = dataclasses.replace(res, selected=np.array([2]))  # the smallest probability: no tie explains it
    fc = _float_check(arrays, [0, 1, 2], q, wrong, 0, scale, shift, s_v, model_out.numpy() * s_v)
    assert fc.tie_violation and not fc.tie
