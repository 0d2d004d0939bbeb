"""Unit tests of the SpAtten PyTorch library on tiny random GPT-2, Llama (GQA) and BERT models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from workloads.spatten import load_policy, preset_names, spatten_context
from workloads.spatten.export import run_sequence
from workloads.spatten.policy import Policy, PolicyError, policy_from_dict
from workloads.tests.tiny_models import make_model

KINDS = ("gpt2", "llama", "bert")


def _policy(**sections: Any) -> Policy:
    return policy_from_dict({"name": "test", **sections})


def _run(kind: str, policy: Policy, ctx: int = 40, steps: int = 12, seed: int = 1, tensors: bool = True):
    model = make_model(kind)
    ids = torch.randint(4, 64, (1, ctx + steps + 1), generator=torch.Generator().manual_seed(seed))
    return model, ids, run_sequence(model, ids, policy, ctx, steps, kind != "bert", record_tensors=tensors)


def _reference_logits(kind: str, model: torch.nn.Module, ids: torch.Tensor, ctx: int, steps: int) -> torch.Tensor:
    with torch.no_grad():
        if kind == "bert":
            return model(input_ids=ids[:, :ctx]).last_hidden_state
        return model(input_ids=ids[:, : ctx + steps]).logits


def _patched_logits(kind: str, model: torch.nn.Module, ids: torch.Tensor, policy: Policy, ctx: int, steps: int):
    with torch.no_grad(), spatten_context(model, policy):
        if kind == "bert":
            return model(input_ids=ids[:, :ctx]).last_hidden_state
        out = model(input_ids=ids[:, :ctx], use_cache=True)
        logits, pkv = [out.logits], out.past_key_values
        for s in range(steps):
            out = model(input_ids=ids[:, ctx + s : ctx + s + 1], past_key_values=pkv, use_cache=True)
            logits.append(out.logits)
            pkv = out.past_key_values
        return torch.cat(logits, dim=1)


@pytest.mark.parametrize("kind", KINDS)
def test_dense_policy_equals_unpatched_model(kind: str) -> None:
    model = make_model(kind)
    ids = torch.randint(4, 64, (1, 50), generator=torch.Generator().manual_seed(3))
    ref = _reference_logits(kind, model, ids, 40, 10)
    got = _patched_logits(kind, model, ids, load_policy("dense"), 40, 10)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert model.config._attn_implementation != "spatten"  # restored after the block


@pytest.mark.parametrize("kind", KINDS)
def test_value_pruning_keep_all_equals_no_pruning(kind: str) -> None:
    model = make_model(kind)
    ids = torch.randint(4, 64, (1, 50), generator=torch.Generator().manual_seed(4))
    ref = _reference_logits(kind, model, ids, 40, 10)
    pol = _policy(value_pruning={"enabled": True, "keep": 1.0, "min_tokens": 1}, prefill="pruned")
    got = _patched_logits(kind, model, ids, pol, 40, 10)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


CASCADE = {
    "prefill": "dense",
    "token_pruning": {
        "enabled": True,
        "schedule": {"start": 0.25, "end": 1.0, "final_keep": 0.3},
        "sink_tokens": 2,
        "recent_tokens": 3,
        "min_tokens": 4,
    },
}


@pytest.mark.parametrize("kind", KINDS)
def test_pruned_tokens_never_reappear_and_counts_follow_schedule(kind: str) -> None:
    pol = _policy(**CASCADE)
    model, _ids, run = _run(kind, pol, tensors=False)
    st = run.state
    by_key = {(r.call, r.layer): set(r.kept_ids.tolist()) for r in st.records}
    n_layers = st.n_layers
    for rec in st.records:
        kept = set(rec.kept_ids.tolist())
        length = rec.length
        cand = set(range(length))
        if rec.layer > 0:
            cand &= by_key[(rec.call, rec.layer - 1)]  # cascade within a call
        if (rec.call - 1, rec.layer) in by_key:
            cand &= by_key[(rec.call - 1, rec.layer)] | {length - 1}  # across calls: only the new token is new
        assert kept <= cand, f"call {rec.call} layer {rec.layer}: pruned tokens reappeared {sorted(kept - cand)}"
        expect = min(len(cand), pol.token_pruning.keep_count(rec.layer, n_layers, length))
        assert len(kept) == expect, f"call {rec.call} layer {rec.layer}: kept {len(kept)}, schedule says {expect}"
        assert set(range(2)) <= kept, "attention sinks must survive"
        recent = set(range(length - 3, length)) & cand
        assert recent <= kept, "recent window must survive"
        if rec.layer < pol.token_pruning.schedule.first_layer(n_layers) and len(cand) == length:
            assert len(kept) == length
    if kind != "bert":
        assert len({r.call for r in st.records}) == 12  # one call per decode step


def test_schedule_ramp_shape() -> None:
    pol = _policy(token_pruning={"enabled": True, "schedule": {"start": 0.1, "end": 0.5, "final_keep": 0.3}})
    ratios = [pol.token_pruning.schedule.ratio(layer, 30) for layer in range(30)]
    assert ratios[:3] == [1.0, 1.0, 1.0]  # start 0.1 of 30 layers: layers 0..2 dense
    assert all(a >= b for a, b in zip(ratios, ratios[1:], strict=False))  # non-increasing ramp
    assert ratios[14:] == [0.3] * 16  # end 0.5: final ratio from layer 14 on
    assert ratios[3] < 1.0


def _expected_decode_output(rec, state, hi: int, vcount: int) -> torch.Tensor:
    """Independent float reference for one recorded decode row (no quantization)."""
    head = rec.heads[hi]
    kvh = head // (state.n_heads // state.n_kv_heads)
    k, v = state.last_kv[rec.layer]
    idx = rec.kept_ids
    q = rec.q[hi, 0].double()
    scores = (k[kvh, idx].double() @ q) / math.sqrt(state.head_dim)
    p = torch.softmax(scores, dim=0)
    # top-vcount by probability, ties to the lower position
    order = sorted(range(len(p)), key=lambda j: (-float(p[j]), j))[:vcount]
    sel = torch.zeros_like(p)
    sel[order] = 1.0
    return (p * sel) @ v[kvh, idx].double()


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_local_value_pruning_matches_independent_reference(kind: str) -> None:
    pol = _policy(**CASCADE, value_pruning={"enabled": True, "keep": 0.25, "min_tokens": 2})
    _model, _ids, run = _run(kind, pol, steps=1)
    st = run.state
    assert st.records, "no decode records"
    for rec in st.records:
        n = rec.kept_ids.numel()
        vcount = pol.value_pruning.keep_count(n)
        assert rec.value_count == vcount < n
        for hi in range(len(rec.heads)):
            exp = _expected_decode_output(rec, st, hi, vcount)
            torch.testing.assert_close(rec.out[hi, 0].double(), exp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_progressive_quantization_requant_equals_full_precision(kind: str) -> None:
    # threshold 1.0: every row is flat enough to requantize, so MSB 4 + LSB 4 == 8-bit keys.
    prog = _policy(quantization={"enabled": True, "key_msb_bits": 4, "key_lsb_bits": 4, "value_bits": 8,
                                 "query_bits": 16, "requant_threshold": 1.0})
    full = _policy(quantization={"enabled": True, "key_msb_bits": 8, "key_lsb_bits": 0, "value_bits": 8,
                                 "query_bits": 16, "requant_threshold": 0.0})
    _m, _i, a = _run(kind, prog, steps=4)
    _m, _i, b = _run(kind, full, steps=4)
    assert all(bool(r.requant.all()) for r in a.state.records)
    for ra, rb in zip(a.state.records, b.state.records, strict=True):
        torch.testing.assert_close(ra.out, rb.out, rtol=0, atol=0)
    assert not any(bool(r.requant.any()) for r in b.state.records)


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_progressive_quantization_low_threshold_uses_msb_only(kind: str) -> None:
    never = _policy(quantization={"enabled": True, "key_msb_bits": 4, "key_lsb_bits": 4, "value_bits": 8,
                                  "query_bits": 16, "requant_threshold": 1e-9})
    _m, _i, a = _run(kind, never, steps=3)
    assert not any(bool(r.requant.any()) for r in a.state.records)
    st = a.state
    rec = st.records[-1]
    k, v = st.last_kv[rec.layer]
    # MSB-only keys: 8-bit codes with the low 4 bits cleared, per (layer, kv head) scale.
    for hi, head in enumerate(rec.heads):
        kvh = head // (st.n_heads // st.n_kv_heads)
        kk = k[kvh].float()
        s_k = kk.abs().max().clamp(min=1e-8) / 127
        codes = torch.clamp(torch.round(kk / s_k), -127, 127)
        k_msb = torch.floor(codes / 16) * 16 * s_k
        vv = v[kvh].float()
        s_v = vv.abs().max().clamp(min=1e-8) / 127
        vq = torch.clamp(torch.round(vv / s_v), -127, 127) * s_v
        q = rec.q[hi, 0]
        s_q = q.abs().max().clamp(min=1e-8) / 32767
        qq = torch.clamp(torch.round(q / s_q), -32767, 32767) * s_q
        p = torch.softmax((k_msb @ qq) / math.sqrt(st.head_dim), dim=0)
        torch.testing.assert_close(rec.out[hi, 0], p @ vq, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_head_pruning_cascade_and_counts(kind: str) -> None:
    pol = _policy(head_pruning={"enabled": True, "schedule": {"start": 0.25, "end": 1.0, "final_keep": 0.5},
                                "min_heads": 1}, prefill="pruned")
    model, ids, run = _run(kind, pol, steps=3)
    st = run.state
    prev: dict[int, set[int]] = {}
    for rec in st.records:
        heads = set(rec.heads)
        if rec.layer > 0 and rec.call in prev:
            assert heads <= prev[rec.call], "a head pruned in an earlier layer came back in this call"
        prev[rec.call] = heads
        assert len(heads) == pol.head_pruning.keep_count(rec.layer, st.n_layers, st.n_heads)
    assert any(len(r.heads) < st.n_heads for r in st.records)


def test_batch_size_other_than_one_is_rejected() -> None:
    model = make_model("gpt2")
    with spatten_context(model, load_policy("dense")), pytest.raises(ValueError, match="batch size must be 1"):
        model(input_ids=torch.zeros(2, 5, dtype=torch.long))


def test_presets_load_and_include_required_ones() -> None:
    names = preset_names()
    for required in ("dense", "spatten-paper", "sink-recent-heavy", "spatten-default"):
        assert required in names
        assert load_policy(required).name == required
    assert load_policy("dense").is_dense


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\ntoken_pruning: {enabled: yes_please}\n", "token_pruning.enabled: expected true/false"),
        ("name: x\nbogus: 1\n", "bogus: unknown key"),
        ("name: x\nquantization: {key_msb_bits: 12, key_lsb_bits: 8}\n", "key_lsb_bits"),
        ("name: x\ntoken_pruning: {schedule: {final_keep: 0}}\n", "final_keep"),
        ("name: x\nvalue_pruning: [1, 2]\n", "value_pruning: expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("description: no name\n", "name"),
    ],
)
def test_malformed_policy_files_are_rejected(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=match) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_unknown_policy_name() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'nope'.*presets: "):
        load_policy("nope")


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_average_importance_counts_requests(kind: str) -> None:
    pol = _policy(token_pruning={"enabled": True, "importance": "average", "sink_tokens": 1, "recent_tokens": 2,
                                 "min_tokens": 3, "schedule": {"start": 0.25, "end": 1.0, "final_keep": 0.3}})
    _m, _i, run = _run(kind, pol, ctx=40, steps=5, tensors=False)
    st = run.state
    # token 0 (a sink, never pruned) is seen by every head of every layer of every query row
    assert float(st.token_seen[0]) == st.n_heads * st.n_layers * (40 + 5)
    # token j < 40 of the dense prefill is seen by the 40 - j prefill rows, at most, plus decode rows
    assert float(st.token_seen[39]) <= st.n_heads * st.n_layers * (1 + 5)
    # the newest token was seen only by its own decode row, in the layers that kept it
    assert float(st.token_seen[-1]) == st.n_heads * st.n_layers
    cum = _run(kind, _policy(token_pruning={**pol.token_pruning.__dict__, "schedule": pol.token_pruning.schedule.__dict__,
                                             "importance": "cumulative"}), ctx=40, steps=5, tensors=False)[2]
    kept_avg = [set(r.kept_ids.tolist()) for r in st.records]
    kept_cum = [set(r.kept_ids.tolist()) for r in cum.state.records]
    assert kept_avg != kept_cum  # the ranking differs
