"""CPU tests of ``tools/bench_gpu.py`` and ``spatten/sim/gpu_baseline.py``: workload CSV ->
SDPA calls per (step, layer), the grouping of query heads on K/V heads, the K/V lengths of
the dense and compacted variants, input errors (exit 2) and reading a result back. No GPU
needed; expected values are worked out by hand from the small CSVs written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spatten.sim import gpu_baseline
from spatten.sim.gpu_baseline import AttnCall, BenchError, plan_workload, read_heads
from tools import bench_gpu
from workloads import csvschema
from workloads.csvschema import WorkloadRow, write_workload

D = 16


def _row(step: int, layer: int, head: int, length: int, kept: int, kv: int | None) -> WorkloadRow:
    return WorkloadRow(
        iteration_id=step, layer_id=layer, head_id=head, embedding_length_D=D, sentence_length_L=length,
        key_fetch_num=kept, quant_key_bit=6, quant_query_bit=16, auto_requant_thres=0.05, if_requant=False,
        auto_requant_incre=4, value_fetch_num=max(1, kept // 2), quant_value_bit=8,
        if_accumulate_importance=True, if_rescale_previous_importance=False, if_topk=False, topk=-1,
        extra={} if kv is None else {"kv_head_id": str(kv)})


# (step, layer, head, L, key_fetch_num, kv_head_id)
GQA_ROWS = [
    # step 0, layer 0: 4 query heads on 2 K/V heads, nothing pruned
    (0, 0, 0, 40, 40, 0), (0, 0, 1, 40, 40, 0), (0, 0, 2, 40, 40, 1), (0, 0, 3, 40, 40, 1),
    # step 0, layer 1: head 2 pruned (K/V head 1 keeps one query head), 30 tokens kept
    (0, 1, 0, 40, 30, 0), (0, 1, 1, 40, 30, 0), (0, 1, 3, 40, 30, 1),
    # step 1, layer 0: heads of K/V head 0 keep different token counts (41 and 20)
    (1, 0, 0, 41, 41, 0), (1, 0, 1, 41, 20, 0), (1, 0, 2, 41, 41, 1), (1, 0, 3, 41, 41, 1),
]


@pytest.fixture()
def gqa_csv(tmp_path: Path) -> Path:
    p = tmp_path / "gqa.csv"
    write_workload(p, [_row(*r) for r in GQA_ROWS], "test-config")
    return p


def test_columns_follow_the_schema():
    assert gpu_baseline.COLUMNS == csvschema.COLUMNS


def test_read_heads_gqa(gqa_csv: Path):
    rows, grouped, config = read_heads(gqa_csv)
    assert grouped is True
    assert config == "test-config"
    assert [(r.step, r.layer, r.head, r.length, r.kept, r.kv_head) for r in rows] == GQA_ROWS
    assert [r.line for r in rows] == list(range(2, 2 + len(GQA_ROWS)))
    assert all(r.d == D for r in rows)


def test_plan_gqa_calls_by_hand(gqa_csv: Path):
    rows, _, _ = read_heads(gqa_csv)
    steps = plan_workload(rows)
    assert [s.step for s in steps] == [0, 1]
    assert [[lp.layer for lp in s.layers] for s in steps] == [[0, 1], [0]]
    s0l0, s0l1 = steps[0].layers
    s1l0 = steps[1].layers[0]
    # step 0 layer 0: one grouped call, 2 K/V heads x 2 query heads, all 40 tokens in both variants
    for v in ("dense", "compacted"):
        assert s0l0.calls[v] == (AttnCall(d=D, length=40, groups=((0, (0, 1)), (1, (2, 3)))),)
    c = s0l0.calls["dense"][0]
    assert (c.q_shape, c.kv_shape, c.per_group, c.kv_heads) == ((1, 4, 1, D), (1, 2, 40, D), 2, 2)
    # step 0 layer 1: group sizes 2 and 1 -> two calls; compacted to the 30 kept tokens
    assert s0l1.calls["dense"] == (AttnCall(D, 40, ((0, (0, 1)),)), AttnCall(D, 40, ((1, (3,)),)))
    assert s0l1.calls["compacted"] == (AttnCall(D, 30, ((0, (0, 1)),)), AttnCall(D, 30, ((1, (3,)),)))
    assert [x.kv_shape for x in s0l1.calls["compacted"]] == [(1, 1, 30, D), (1, 1, 30, D)]
    assert [x.q_shape for x in s0l1.calls["compacted"]] == [(1, 2, 1, D), (1, 1, 1, D)]
    # step 1 layer 0: dense is one grouped call; compacted splits K/V head 0 by kept count
    assert s1l0.calls["dense"] == (AttnCall(D, 41, ((0, (0, 1)), (1, (2, 3)))),)
    assert s1l0.calls["compacted"] == (
        AttnCall(D, 41, ((0, (0,)),)),
        AttnCall(D, 20, ((0, (1,)),)),
        AttnCall(D, 41, ((1, (2, 3)),)),
    )


def test_compacted_lengths_equal_key_fetch_num(gqa_csv: Path):
    rows, _, _ = read_heads(gqa_csv)
    kept = {(s, l, h): k for s, l, h, _L, k, _kv in GQA_ROWS}
    dense = {(s, l, h): L for s, l, h, L, _k, _kv in GQA_ROWS}
    for st in plan_workload(rows):
        for lp in st.layers:
            for variant, want in (("compacted", kept), ("dense", dense)):
                seen = []
                for c in lp.calls[variant]:
                    for _kv, qs in c.groups:
                        for h in qs:
                            assert c.kv_shape[2] == want[(st.step, lp.layer, h)]
                            seen.append(h)
                assert sorted(seen) == sorted(h.head for h in lp.heads)  # every head exactly once


def test_kv_bytes_per_step(gqa_csv: Path):
    rows, _, _ = read_heads(gqa_csv)
    s0, s1 = plan_workload(rows)
    # fp16 K and V: 2 tensors x 2 bytes x K/V heads x tokens x D
    assert s0.kv_bytes("dense") == 4 * D * (2 * 40 + 2 * 40)
    assert s0.kv_bytes("compacted") == 4 * D * (2 * 40 + 2 * 30)
    assert s1.kv_bytes("dense") == 4 * D * (2 * 41)
    assert s1.kv_bytes("compacted") == 4 * D * (41 + 20 + 41)


def test_plan_without_kv_head_column(tmp_path: Path):
    p = tmp_path / "mha.csv"
    write_workload(p, [_row(0, 0, h, 10, 5, None) for h in (0, 2, 3)] + [_row(0, 1, h, 10, 4, None) for h in (1, 3)],
                   "mha")
    rows, grouped, _ = read_heads(p)
    assert grouped is False
    (st,) = plan_workload(rows)
    l0, l1 = st.layers
    assert l0.calls["dense"] == (AttnCall(D, 10, ((0, (0,)), (2, (2,)), (3, (3,)))),)
    assert l0.calls["compacted"] == (AttnCall(D, 5, ((0, (0,)), (2, (2,)), (3, (3,)))),)
    assert l0.calls["compacted"][0].q_shape == (1, 3, 1, D)
    assert l0.calls["compacted"][0].kv_shape == (1, 3, 5, D)
    assert l1.calls["compacted"] == (AttnCall(D, 4, ((1, (1,)), (3, (3,)))),)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("key_fetch_num", "kfn", 1), "key_fetch_num: missing column"),
        (lambda t: t.replace("\n0,0,1,16.0,40,40,", "\n0,0,1,16.0,40,41,", 1), ":3: key_fetch_num: must be in 1..sentence_length_L (40), got 41"),
        (lambda t: t.replace("\n0,0,1,16.0,", "\n0,0,1,x,", 1), ":3: embedding_length_D"),
        (lambda t: t.replace("\n0,0,1,16.0,", "\n0,0,0,16.0,", 1), ":3: head_id: step 0 layer 0 head 0 already on line 2"),
        (lambda t: t.replace(",False,-1,0\n", ",False,-1,a\n", 1), ":2: kv_head_id: expected an integer"),
    ],
)
def test_bad_csv_is_named(gqa_csv: Path, edit, needle):
    gqa_csv.write_text(edit(gqa_csv.read_text()))
    with pytest.raises(BenchError) as exc:
        read_heads(gqa_csv)
    assert needle in str(exc.value)
    assert str(gqa_csv) in str(exc.value)


def test_cli_bad_csv_exits_2(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("iteration_id,layer_id\n0,0\n")
    res = CliRunner().invoke(bench_gpu.main, [str(bad), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert "head_id: missing column" in res.output
    assert not (tmp_path / "r.json").exists()


def test_cli_without_cuda_exits_2(gqa_csv: Path, tmp_path: Path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = CliRunner().invoke(bench_gpu.main, [str(gqa_csv), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert "no CUDA device" in res.output
    assert not (tmp_path / "r.json").exists()


def test_load_gpu_baseline(tmp_path: Path):
    p = tmp_path / "r.json"
    steps = [{"step": 0, "dense_us": {"median": 183.5, "p10": 180.0, "p90": 190.0},
              "compacted_us": {"median": 120.25, "p10": 119.0, "p90": 125.0},
              "dense_us_l2_warm": {"median": 170.0}, "compacted_us_l2_warm": {"median": 110.5}},
             {"step": 3, "dense_us": {"median": 200.0, "p10": 199.0, "p90": 201.0},
              "compacted_us": {"median": 90.0, "p10": 89.0, "p90": 91.0},
              "dense_us_l2_warm": {"median": 190.0}, "compacted_us_l2_warm": {"median": 80.0}}]
    bench_gpu.write_json_atomic(p, {"tool": "bench_gpu", "tool_version": 1, "steps": steps})
    assert gpu_baseline.load_gpu_baseline(p) == {0: {"dense_us": 183.5, "compacted_us": 120.25},
                                                 3: {"dense_us": 200.0, "compacted_us": 90.0}}
    assert gpu_baseline.load_gpu_baseline(p, l2="warm") == {0: {"dense_us": 170.0, "compacted_us": 110.5},
                                                            3: {"dense_us": 190.0, "compacted_us": 80.0}}
    p.write_text(json.dumps({"tool": "bench_gpu", "steps": [{"step": 0, "dense_us": {"median": 1.0}}]}))
    with pytest.raises(BenchError, match="steps\\[0\\]: missing or bad field 'compacted_us'"):
        gpu_baseline.load_gpu_baseline(p)
    p.write_text("{}")
    with pytest.raises(BenchError, match="not a bench_gpu.py result"):
        gpu_baseline.load_gpu_baseline(p)
