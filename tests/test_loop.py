"""The attention engines (spatten/loop/) on the tiny preset with a tiny random Llama
(4 layers, 4 query heads, 2 K/V heads, head dim 8: it fits tiny's D <= 16, 8 heads,
64 tokens): the closed loop's decisions, the prefill's importance on chip, RTL against
golden token for token, and the failures (capacity, a killed simulator)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spatten.errors import InputError, SimulationError
from spatten.loop.engines import AcceleratorEngine, TorchEngine, make_engine
from spatten.loop.generate import greedy, kept_overlap
from spatten.sim import procs
from spatten.tests.hwfixtures import tiny
from workloads.spatten.policy import policy_from_dict
from workloads.tests.tiny_models import make_model, save_tiny

ROOT = Path(__file__).resolve().parent.parent
RTL_TOPS = [("SpAttenTop", "tiny")]

# Every mechanism active within a 64-token context: token pruning from layer 1, head
# pruning from layer 2, value pruning, progressive quantization.
POLICY = policy_from_dict({
    "name": "tiny-all",
    "token_pruning": {"enabled": True, "schedule": {"start": 0.25, "end": 0.75, "final_keep": 0.5},
                      "sink_tokens": 2, "recent_tokens": 4, "min_tokens": 8},
    "head_pruning": {"enabled": True, "schedule": {"start": 0.5, "end": 1.0, "final_keep": 0.5}, "min_heads": 1},
    "value_pruning": {"enabled": True, "keep": 0.6, "min_tokens": 4},
    "quantization": {"enabled": True, "key_msb_bits": 6, "key_lsb_bits": 4, "query_bits": 12, "value_bits": 8,
                     "requant_threshold": 0.2},
}, source="test_loop")

PROMPT = torch.tensor([[(7 * i + 3) % 60 + 4 for i in range(24)]])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model("llama", seed=3)


def _golden(capacity: int = 64) -> AcceleratorEngine:
    return AcceleratorEngine("golden", POLICY, tiny(), capacity)


def test_golden_closed_loop_decisions(model):
    with _golden() as eng:
        gen = greedy(model, eng, PROMPT, 10)
        host = eng.host
        imp = host.device.model.imp
    assert len(gen.tokens) == 10
    decode = gen.calls[1:]
    # the cascade: a TOPK_TOKENS answer decided layer >= 1's kept set, which the sinks,
    # the recent window and the answer make up, and later layers keep a subset
    asked = [(c, l) for c in decode for l in c.layers if l.topk_tokens is not None]
    assert asked, "no TOPK_TOKENS was asked"
    for c in decode:
        for i, l in enumerate(c.layers):
            if l.topk_tokens is not None:
                forced = {t for t in range(2)} | set(range(c.length - 4, c.length))
                assert set(l.kept) == forced | set(l.topk_tokens)
                assert len(l.kept) == POLICY.token_pruning.keep_count(i, 4, c.length)
            if i > 0:
                assert set(l.kept) <= set(c.layers[i - 1].kept) | {c.length - 1}
    # head pruning: layers 2-3 keep heads by TOPK_HEADS; value pruning: fewer V rows than keys
    assert any(l.topk_heads is not None for c in decode for l in c.layers)
    assert all(len(c.layers[3].heads) == POLICY.head_pruning.keep_count(3, 4, 4) for c in decode)
    assert all(l.value_count < len(l.kept) for c in decode for l in c.layers)
    # the kept sets carry over: a token pruned at (step s, layer l) is never back at l later
    for a, b in zip(decode, decode[1:]):
        for la, lb in zip(a.layers, b.layers):
            assert set(lb.kept) <= set(la.kept) | {b.length - 1}
    assert imp[: gen.calls[-1].length].min() > 0


def test_prefill_mass_on_chip(model):
    """After the prefill every prompt token holds importance, and the total is the mass of
    every (layer, head, row): each row's fixed-point probabilities sum to 2^16 minus at
    most one unit per token (the floor of p_j)."""
    with _golden() as eng, torch.no_grad(), eng.attach(model):
        model(input_ids=PROMPT, use_cache=True)
        imp = eng.host.device.model.imp
        p = PROMPT.shape[1]
        total = int(imp[:p].sum())
        rows_mass = 4 * 4 * p * 65536
        assert rows_mass - 4 * 4 * sum(range(1, p + 1)) <= total <= rows_mass
        assert imp[:p].min() > 0 and imp[p:].max() == 0
        assert eng.host.device.model.head_imp[:4].min() > 0


def test_torch_engine_agrees_roughly(model):
    """The float algorithm and the fixed-point loop start from the same prefill: the first
    token is the same, and the kept sets of the first decode step overlap."""
    t = TorchEngine(POLICY, tiny())
    gt = greedy(model, t, PROMPT, 3)
    with _golden() as g:
        gg = greedy(model, g, PROMPT, 3)
    assert gt.tokens[0] == gg.tokens[0]
    assert kept_overlap(gt.calls[1], gg.calls[1]) > 0.5


def test_capacity_is_checked(model):
    long = torch.tensor([[5 + i % 50 for i in range(70)]])
    with _golden() as eng, pytest.raises(InputError, match="exceed the capacity of preset tiny"):
        greedy(model, eng, long, 2)


def test_unknown_engine():
    with pytest.raises(InputError, match="unknown engine 'fpga'"):
        make_engine("fpga", POLICY, preset="tiny")


def test_average_importance_refused(model):
    pol = policy_from_dict({"name": "avg", "token_pruning": {"enabled": True, "importance": "average"}}, "t")
    with pytest.raises(InputError, match="importance 'average'"):
        with AcceleratorEngine("golden", pol, tiny(), 64) as eng, eng.attach(model):
            pass


def test_rtl_matches_golden(model, tmp_path):
    """The Verilated accelerator (one streaming process, every response also checked against
    the golden model) makes the same decisions and produces the same tokens."""
    with _golden() as g:
        gg = greedy(model, g, PROMPT, 8)
    rtl = make_engine("rtl", POLICY, preset="tiny", capacity=64, workdir=tmp_path, check=True)
    with rtl:
        gr = greedy(model, rtl, PROMPT, 8)
        assert rtl.host.device.checked > 0
        assert rtl.cycles > 0
    assert gr.tokens == gg.tokens
    for a, b in zip(gr.calls, gg.calls):
        assert [l.kept for l in a.layers] == [l.kept for l in b.layers]
        assert [l.heads for l in a.layers] == [l.heads for l in b.layers]
        assert a.dram_bytes == b.dram_bytes
    assert all(s.cycles > 0 for s in gr.stats)
    assert (tmp_path / "dram_stats.json").is_file()


def test_rtl_killed_mid_generation(model, tmp_path):
    rtl = make_engine("rtl", POLICY, preset="tiny", capacity=64, workdir=tmp_path)
    calls = []

    def kill_after_two(tok, st):
        calls.append(tok)
        if len(calls) == 2:
            os.kill(rtl.host.device.sim.pid, signal.SIGKILL)

    with rtl, pytest.raises(SimulationError, match="was killed by SIGKILL"):
        greedy(model, rtl, PROMPT, 8, on_token=kill_after_two)
    procs.stop_all()
    assert procs.descendants() == []


def test_chat_prompt_end_to_end(tmp_path):
    """tools/chat.py --prompt with a tiny random model (no chat template: the plain
    format) on the RTL: tokens, the per-token figures, exit 0, no process left."""
    d = save_tiny("llama", tmp_path / "m")
    pol = tmp_path / "p.yaml"
    import yaml
    pol.write_text(yaml.safe_dump({"name": "tiny-all", "token_pruning": {
        "enabled": True, "schedule": {"start": 0.25, "end": 0.75, "final_keep": 0.5}, "sink_tokens": 2,
        "recent_tokens": 4, "min_tokens": 8}, "head_pruning": {"enabled": True, "schedule": {
            "start": 0.5, "end": 1.0, "final_keep": 0.5}}, "value_pruning": {"enabled": True, "keep": 0.6,
                                                                               "min_tokens": 4}}))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "chat.py"), "--model", str(d), "--engine", "rtl",
                        "--preset", "tiny", "--policy", str(pol), "--prompt", " ".join(f"w{i}" for i in range(12)),
                        "--max-new-tokens", "6", "--per-token", "--workdir", str(tmp_path / "sim")],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip().startswith("[")]
    assert len(lines) == 6, r.stdout
    assert all("cycles" in l and "kv" in l and "dram" in l for l in lines)
    assert "[rtl] 6 tokens after a" in r.stderr
    r2 = subprocess.run([sys.executable, str(ROOT / "tools" / "chat.py"), "--model", str(d), "--engine", "rtl",
                         "--preset", "tiny", "--policy", str(pol), "--prompt", " ".join(["w1"] * 80)],
                        capture_output=True, text=True, timeout=600)
    assert r2.returncode == 2 and "holds at most 64 tokens" in r2.stderr


def test_replay_sends_topk_heads():
    """run.py's program: a layer whose rows have fewer heads than the layer before starts
    with a TOPK_HEADS keeping that many (n = all heads); the golden model answers it."""
    from spatten.contract.commands import TopkResp, decode_response
    from spatten.sim import program
    from workloads.csvschema import WorkloadRow

    rows = []
    for layer, heads in enumerate([[0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 3], [2, 3]]):
        for h in heads:
            rows.append(WorkloadRow(iteration_id=0, layer_id=layer, head_id=h, embedding_length_D=16,
                                    sentence_length_L=20, key_fetch_num=20, quant_key_bit=8, quant_query_bit=16,
                                    auto_requant_thres=-1, if_requant=False, auto_requant_incre=-1,
                                    value_fetch_num=12, quant_value_bit=8, if_accumulate_importance=True,
                                    if_rescale_previous_importance=False, if_topk=False, topk=-1))
    prog = program.build(rows, tiny())
    th = [(i, c) for i, c in enumerate(prog.info) if c.kind == "topk_heads"]
    assert [(c.layer, c.n) for _, c in th] == [(2, 4), (3, 4)]
    answers = [decode_response(prog.expected[i]) for i, _ in th]
    assert all(isinstance(a, TopkResp) and a.heads for a in answers)
    assert [len(a.ids) for a in answers] == [3, 2]
    # value pruning: every ATTEND fetched 12 of its 20 V rows
    assert all(c.m == 12 for c in prog.info if c.kind == "attend")


@pytest.mark.parametrize("args, expect", [
    (["--engine", "fpga"], "unknown engine; one of torch, golden, rtl"),
    (["--policy", "no-such-policy"], "--policy"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_chat_bad_input(args, expect):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "chat.py"), "--prompt", "hi", *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr
