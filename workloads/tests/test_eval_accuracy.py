"""The accuracy evaluation: K/V bit counting, the eviction/KIVI attention path against the
SpAtten path, tools/eval_accuracy.py end to end on tiny random-weight models, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tools.eval_accuracy import main
from workloads.spatten.export import kv_bytes_ratio, run_sequence
from workloads.spatten.overrides import load_policy_spec
from workloads.spatten.policy import PolicyError, policy_from_dict
from workloads.spatten.selection import static_mask
from workloads.tests.tiny_models import make_model, save_tiny, write_text

SPATTEN = {
    "name": "s",
    "token_pruning": {"enabled": True, "schedule": {"start": 0.25, "end": 0.75, "final_keep": 0.5},
                      "sink_tokens": 1, "recent_tokens": 2, "min_tokens": 4},
    "value_pruning": {"enabled": True, "keep": 0.6, "min_tokens": 2},
    "quantization": {"enabled": True, "key_msb_bits": 6, "key_lsb_bits": 4, "value_bits": 8,
                     "requant_threshold": 0.3},
}


def _ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 64, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_bits_counted_in_attention_match_the_workload_rows(kind: str) -> None:
    """state.kv_bits (counted while attending) equals what the exported rows' kv_bytes sum to."""
    model = make_model(kind)
    pol = policy_from_dict(SPATTEN)
    causal = kind != "bert"
    ids = _ids(40)
    run = run_sequence(model, ids, pol, 24 if causal else 40, 12 if causal else 0, causal, record=True)
    fetched, dense = kv_bytes_ratio(run.state)
    assert run.state.kv_bits == pytest.approx(8 * fetched, rel=1e-12)
    assert run.state.kv_dense_bits == pytest.approx(8 * dense, rel=1e-12)
    assert 0 < fetched < dense


def test_extended_path_matches_the_spatten_path() -> None:
    """An eviction section that keeps everything sends the policy through kvattention.py;
    cascade token pruning, value pruning and progressive quantization must then give the
    same perplexity (float rounding aside) and exactly the same K/V bits."""
    model = make_model("llama")
    legacy = policy_from_dict(SPATTEN)
    ext = policy_from_dict({**SPATTEN, "name": "e", "eviction": {"enabled": True, "method": "streaming",
                                                                  "budget": 1.0}})
    assert ext.extended and not legacy.extended
    ids = _ids(45)
    a = run_sequence(model, ids, legacy, 24, 20, True, record=False)
    b = run_sequence(model, ids, ext, 24, 20, True, record=False)
    assert b.nll == pytest.approx(a.nll, rel=1e-4, abs=1e-5)
    assert b.state.kv_bits == a.state.kv_bits and b.state.kv_dense_bits == a.state.kv_dense_bits


def test_keep_everything_is_dense() -> None:
    model = make_model("llama")
    dense = run_sequence(model, _ids(40), policy_from_dict({"name": "dense"}), 20, 19, True)
    for method in ("h2o", "tova", "snapkv"):
        pol = policy_from_dict({"name": method, "eviction": {"enabled": True, "method": method, "budget": 1.0}})
        run = run_sequence(model, _ids(40), pol, 20, 19, True, record=False)
        assert run.nll == pytest.approx(dense.nll, rel=1e-5, abs=1e-6), method
        assert run.state.kv_bits == run.state.kv_dense_bits


def test_streaming_bits_are_its_window() -> None:
    """16-bit K and V of exactly the static pattern's tokens, per query head and step."""
    model = make_model("llama")  # 4 layers, 4 query heads, head dim 8
    pol = policy_from_dict({"name": "st", "eviction": {"enabled": True, "method": "streaming", "budget": 0.3,
                                                       "sink_tokens": 2, "min_tokens": 3}})
    context, steps = 20, 10
    run = run_sequence(model, _ids(context + steps + 1), pol, context, steps, True, record=False)
    kept = dense = 0
    for t in range(context + 1, context + steps + 1):  # cache lengths of the decode calls
        for layer in range(4):
            kept += int(static_mask(pol.eviction, layer, 4, t).sum()) * 4
            dense += t * 4
    assert run.state.kv_bits == 2 * 16 * 8 * kept
    assert run.state.kv_dense_bits == 2 * 16 * 8 * dense


def test_eviction_really_evicts_and_costs_accuracy() -> None:
    model = make_model("llama")
    ids = _ids(60)
    dense = run_sequence(model, ids, policy_from_dict({"name": "dense"}), 30, 29, True)
    for spec in ("h2o@eviction.budget=0.3", "snapkv@eviction.budget=0.3", "tova@eviction.budget=0.3",
                 "adakv@eviction.budget=0.3", "pyramidkv@eviction.budget=0.3", "streaming@eviction.budget=0.3",
                 "longformer@eviction.budget=0.3@eviction.global_stride=8", "sanger@eviction.threshold=0.05",
                 *(f"{p}@quantization.residual_tokens=4@quantization.group_tokens=8"
                   for p in ("kivi", "h2o-kivi", "spatten-kivi"))):
        pol = load_policy_spec(spec)
        pol = policy_from_dict({**_as_dict(pol), "eviction": {**_as_dict(pol)["eviction"], "min_tokens": 2,
                                                             "recent_tokens": 2, "sink_tokens": 1}}) \
            if pol.eviction.enabled else pol
        run = run_sequence(model, ids, pol, 30, 29, True, record=False)
        frac = run.state.kv_bits / run.state.kv_dense_bits
        # head dim 8: KIVI's scales and zero points cost 4 bits an element here
        assert frac < (0.75 if "kivi" in spec else 0.5), (spec, frac)
        assert run.nll != pytest.approx(dense.nll, rel=1e-6), spec


def _as_dict(pol) -> dict:
    import dataclasses  # noqa: PLC0415

    d = dataclasses.asdict(pol)
    d.pop("source")
    return d


def test_override_specs() -> None:
    p = load_policy_spec("h2o@eviction.budget=0.15@eviction.recent_tokens=8")
    assert p.name == "h2o@eviction.budget=0.15@eviction.recent_tokens=8"
    assert p.eviction.budget == 0.15 and p.eviction.recent_tokens == 8 and p.eviction.method == "h2o"
    q = load_policy_spec("spatten-default@quantization.value_bits=6")
    assert q.quantization.value_bits == 6 and q.token_pruning.enabled
    for spec, msg in [("h2o@eviction.budget", "not section.key=value"), ("h2o@eviction.budgett=0.1", "unknown key"),
                      ("h2o@eviction.budget=2", "eviction.budget: must be in"), ("nope@eviction.budget=0.1", "unknown policy"),
                      ("h2o@eviction..x=1", "empty key")]:
        with pytest.raises(PolicyError, match=msg):
            load_policy_spec(spec)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-assets")
    return {"llama": save_tiny("llama", root / "llama"), "bert": save_tiny("bert", root / "bert"),
            "text": write_text(root / "text.txt", 300), "root": root}


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_eval_cli_end_to_end(assets: dict[str, Path], tmp_path: Path) -> None:
    plist = tmp_path / "sweep.txt"
    plist.write_text("# a sweep\ndense\nstreaming@eviction.budget=0.5@eviction.min_tokens=2  # half\nkivi\n")
    out = tmp_path / "acc" / "tiny"
    res = _run("--model", str(assets["llama"]), "--text", str(assets["text"]), "--context", "24", "--context", "40",
               "--eval-tokens", "16", "--policy", "h2o@eviction.budget=0.4@eviction.min_tokens=2",
               "--policy-list", str(plist), "--out", str(out))
    assert res.exit_code == 0, res.output
    for ctx in (24, 40):
        stem = out.with_name(f"tiny-text-txt-ctx{ctx}")
        data = json.loads(stem.with_suffix(".json").read_text())
        assert data["setting"] == f"{ctx}-token dense prefill + 16 decoded tokens scored"
        rows = {r["policy"]: r for r in data["results"]}
        assert list(rows) == ["h2o@eviction.budget=0.4@eviction.min_tokens=2", "dense",
                              "streaming@eviction.budget=0.5@eviction.min_tokens=2", "kivi"]
        assert rows["dense"]["ppl_increase"] == 0.0 and rows["dense"]["kv_fraction"] == 1.0
        assert rows["dense"]["hardware"] and not rows["kivi"]["hardware"]
        assert all(r["tokens"] == 16 for r in rows.values())
        # streaming at 50%: about half the tokens (sinks and rounding up add a little)
        assert 0.5 <= rows["streaming@eviction.budget=0.5@eviction.min_tokens=2"]["kv_fraction"] < 0.6
        # kivi: 4-bit K MSBs (+ LSBs on refetch) and V, 32 residual tokens at 16 bits, scales
        assert 0.2 < rows["kivi"]["kv_fraction"] < 1.0
        md = stem.with_suffix(".md").read_text()
        assert "| kivi |" in md and "| sw |" in md and "Pareto front" in md
        assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # deterministic: the same run gives the same numbers
    res = _run("--model", str(assets["llama"]), "--text", str(assets["text"]), "--context", "24",
               "--eval-tokens", "16", "--policy", "kivi", "--out", str(tmp_path / "again"))
    again = {r["policy"]: r for r in json.loads((tmp_path / "again.json").read_text())["results"]}
    first = {r["policy"]: r for r in json.loads(out.with_name("tiny-text-txt-ctx24.json").read_text())["results"]}
    assert again["kivi"]["nll"] == first["kivi"]["nll"] and again["kivi"]["kv_fraction"] == first["kivi"]["kv_fraction"]


@pytest.mark.parametrize("args,message", [
    (["--policy", "h2o@eviction.budget=7"], "eviction.budget: must be in"),
    (["--policy", "no-such-preset"], "unknown policy"),
    (["--policy", "h2o", "--policy", "h2o"], "policy named twice: h2o"),
    (["--policy-list", "EMPTY"], "no policy in the file"),
    (["--policy-list", "MISSING"], "cannot read"),
    (["--text", "austen:no-such-novel"], "no-such-novel"),
    (["--text", "SHORT"], "fewer than the"),
])
def test_eval_cli_bad_inputs(assets: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    (tmp_path / "short.txt").write_text("w1 w2 w3\n")
    subst = {"EMPTY": str(tmp_path / "empty.txt"), "MISSING": str(tmp_path / "missing.txt"),
             "SHORT": str(tmp_path / "short.txt")}
    args = [subst.get(a, a) for a in args]
    res = CliRunner().invoke(main, ["--model", str(assets["llama"]), "--context", "24", "--eval-tokens", "8",
                                    "--out", str(tmp_path / "o" / "x"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_eval_cli_rejects_eviction_on_encoders(assets: dict[str, Path], tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["--model", str(assets["bert"]), "--text", str(assets["text"]), "--context", "16",
                                    "--windows", "2", "--policy", "h2o", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "need a causal model" in res.output


def test_gen_workload_rejects_software_only_policies(assets: dict[str, Path], tmp_path: Path) -> None:
    from tools.gen_workload import main as gen  # noqa: PLC0415

    for spec, why in [("kivi", "value_axis token"), ("sanger", "not of the kept ones"),
                      ("kivi-hw@quantization.group_tokens=8", "cannot fold into the query"),
                      ("spatten-default@eviction.enabled=true@eviction.method=h2o", "with token_pruning"),
                      ("kivi-hw@quantization.residual_tokens=4", "no 16-bit residual rows")]:
        res = CliRunner().invoke(gen, ["--model", str(assets["llama"]), "--text", str(assets["text"]), "--context",
                                       "24", "--steps", "2", "--policy", spec, "--out", str(tmp_path / "w.csv")])
        assert res.exit_code == 2, res.output
        assert "software-only" in res.output and why in res.output, res.output
    assert not (tmp_path / "w.csv").exists()


@pytest.mark.parametrize("spec", [
    "dense",
    "streaming@eviction.budget=0.3@eviction.min_tokens=2@eviction.sink_tokens=1",
    "longformer@eviction.budget=0.4@eviction.global_stride=5@eviction.min_tokens=2",
    "kivi@quantization.group_tokens=4@quantization.residual_tokens=6@quantization.requant_threshold=0.3",
    "sanger@eviction.threshold=0.05@eviction.recent_tokens=2@quantization.group_tokens=4@quantization.residual_tokens=4",
    "kivi@quantization.group_tokens=4@quantization.residual_tokens=4@value_pruning.enabled=true@value_pruning.keep=0.5",
    # scales over the whole cache: rows in runs of equal prefix scales (per-channel K folded into the query)
    "progressive-quant@quantization.requant_threshold=0.3",
    "kivi-hw@quantization.requant_threshold=0.3",
    "kivi-hw@quantization.key_msb_bits=3@value_pruning.enabled=true@value_pruning.keep=0.4@value_pruning.min_tokens=2",
    "kivi-hw@eviction.enabled=true@eviction.method=streaming@eviction.budget=0.5@eviction.min_tokens=2",
    "kivi@quantization.group_tokens=0@quantization.residual_tokens=3",
    "kivi@quantization.value_axis=channel@quantization.group_tokens=4@quantization.residual_tokens=4",
])
def test_one_pass_equals_step_by_step(spec: str) -> None:
    """parallel.py's single teacher-forced pass has the logic of decoding step by step: the
    same perplexity and bits (on this tiny model no code or decision sits within float
    rounding of a boundary; test_one_pass_is_only_auto_where_no_decision_can_flip)."""
    from workloads.spatten.parallel import stateful_reason  # noqa: PLC0415

    model = make_model("llama")
    pol = load_policy_spec(spec)
    assert stateful_reason(pol) is None
    ids = _ids(50)
    a = run_sequence(model, ids, pol, 20, 29, True, record=False)
    b = run_sequence(model, ids, pol, 20, 29, True, record=False, parallel=True)
    assert len(a.nll) == len(b.nll) == 30
    assert b.nll == pytest.approx(a.nll, rel=2e-5, abs=2e-5)
    assert b.state.kv_bits == a.state.kv_bits and b.state.kv_dense_bits == a.state.kv_dense_bits


def test_stateful_policies_need_the_step_by_step_path() -> None:
    from workloads.spatten.parallel import parallel_reason, stateful_reason  # noqa: PLC0415

    for spec in ("h2o", "snapkv", "spatten-default", "kivi@quantization.residual_tokens=8"):
        assert stateful_reason(load_policy_spec(spec)), spec
        assert parallel_reason(load_policy_spec(spec)), spec


def test_a_last_bit_difference_flips_a_quantization_code() -> None:
    """Why quantized policies are decoded step by step: V that differ in one element by one
    float32 ulp (as the one pass's and the step path's K/V do, their GEMMs being shaped
    differently) give attention outputs a whole V code apart when that element sits on a
    rounding boundary (issue 14: SmolLM2-135M, progressive-quant, 0.5% of perplexity)."""
    import types  # noqa: PLC0415

    from workloads.spatten.attention import spatten_attention_forward  # noqa: PLC0415
    from workloads.spatten.hooks import new_state  # noqa: PLC0415

    model = make_model("llama")  # 4 query heads, 2 K/V heads, head dim 8
    pol = load_policy_spec("progressive-quant")
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 1, 8, generator=g), torch.randn(1, 2, 12, 8, generator=g)
    v = torch.randn(1, 2, 12, 8, generator=g).clamp(-1.2, 1.2)
    v[0, 0, 0, 0] = 1.27  # max |v| of K/V head 0: one scale s_v = 1.27 / 127 (attention.py)
    s_v = v[0, 0].abs().amax() / 127
    xs = [2.5 * s_v]  # near the boundary between codes 2 and 3: the float32 values around it
    for _ in range(16):
        xs = [torch.nextafter(xs[0], torch.tensor(0.0)), *xs, torch.nextafter(xs[-1], torch.tensor(1.0))]
    x = next(a for a, b in zip(xs, xs[1:]) if torch.round(a / s_v) != torch.round(b / s_v))
    state = new_state(model, pol)
    mod = types.SimpleNamespace(_spatten_state=state, _spatten_layer=0)
    outs = []
    for val in (x, torch.nextafter(x, torch.tensor(1.0))):  # one ulp apart, codes 2 and 3
        vv = v.clone()
        vv[0, 0, 5, 2] = val
        state.reset()
        outs.append(spatten_attention_forward(mod, q, k, vv, None, 8**-0.5)[0][0, 0, :2, 2])
    p = torch.softmax(q[0, :2, 0] @ k[0, 0].T * 8**-0.5, dim=-1)[:, 5]  # about the weight of row 5
    jump = (outs[1] - outs[0]).abs()
    assert torch.all(jump > 0.5 * p * s_v), (jump, p * s_v)  # a whole code times p, not an ulp


@pytest.mark.parametrize("spec", [
    "progressive-quant", "kivi-hw", "sanger", "dense@value_pruning.enabled=true@value_pruning.keep=0.5",
    "streaming@quantization.enabled=true",
])
def test_one_pass_is_only_auto_where_no_decision_can_flip(spec: str) -> None:
    """eval_accuracy decodes step by step every policy with a discrete decision on rounded
    values (quantization codes, refetch, threshold, value top-k): its figures are then the
    step-by-step ones bit for bit. Dense and unquantized static patterns keep the one pass."""
    from tools.eval_accuracy import eval_causal  # noqa: PLC0415
    from workloads.spatten.parallel import parallel_reason  # noqa: PLC0415

    lm = type("LM", (), {"model": make_model("llama")})()
    pol = load_policy_spec(spec)
    assert parallel_reason(pol)
    ids = _ids(40)
    got = eval_causal(lm, ids, pol, 20, 19)
    ref = run_sequence(lm.model, ids, pol, 20, 18, True, record=False)
    assert not got["one_pass"] and got["nll"] == float(np.mean(ref.nll))
    for spec in ("dense", "streaming@eviction.budget=0.3@eviction.min_tokens=2", "longformer"):
        assert parallel_reason(load_policy_spec(spec)) is None, spec
        assert eval_causal(lm, ids, load_policy_spec(spec), 20, 19)["one_pass"], spec


def test_host_folded_policies_run_on_the_accelerator() -> None:
    """Per-channel K scales over the whole cache, per-channel V scales and eviction (token
    lists per K/V head) are host folds and value pruning by threshold is the accelerator's
    threshold mode: no reason left; token groups, per-token V, zero points, residual rows and
    Sanger's key threshold (LSBs of the kept keys only) stay software-only."""
    from workloads.spatten.hardware import software_only_reasons  # noqa: PLC0415

    for spec in ("kivi-hw", "hw-kv", "h2o", "snapkv", "tova", "streaming", "longformer", "pyramidkv", "adakv",
                 "hw-kv@eviction.enabled=true@eviction.method=snapkv@eviction.budget=0.7",
                 "kivi-hw@value_pruning.enabled=true@value_pruning.threshold=0.0002"):
        assert software_only_reasons(load_policy_spec(spec)) == [], spec
    for spec in ("kivi", "snapkv-kivi", "sanger", "spatten-kivi"):
        assert software_only_reasons(load_policy_spec(spec)), spec


def test_channel_key_scales_fold_into_the_query() -> None:
    """The torch model's per-channel keys are what the accelerator computes on: integer codes
    round(k_c / s_c) against the query times the scales, quantized to 16 bits."""
    from workloads.spatten.kvquant import folds_key_scales, key_codes, quantize_keys  # noqa: PLC0415

    pol = load_policy_spec("kivi-hw")
    assert folds_key_scales(pol.quantization)
    assert not folds_key_scales(load_policy_spec("kivi").quantization)
    g = torch.Generator().manual_seed(3)
    k = torch.randn(2, 30, 8, generator=g) * torch.tensor([0.1, 1, 5, 1, 1, 20, 1, 0.5])
    full, msb, s = key_codes(k, pol.quantization)
    qmax = 2 ** (pol.quantization.key_msb_bits + pol.quantization.key_lsb_bits - 1) - 1
    assert torch.equal(full, torch.round(full)) and full.abs().max() <= qmax
    assert torch.allclose(s, k.abs().amax(dim=1, keepdim=True) / qmax)
    assert torch.equal(msb, torch.floor(full / 16) * 16)
    deq_full, deq_msb = quantize_keys(k, pol.quantization)
    assert torch.allclose(deq_full, full * s) and torch.allclose(deq_msb, msb * s)
