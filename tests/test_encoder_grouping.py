"""Prefill / encoder rows: several query rows of one head over the same kept K/V become
one ATTEND_GROUP (spatten.sim.program.execution_order), bit-exact on the RTL, with the
K/V traffic of one fetch per group (expected figures counted here from the rows)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from spatten.sim.program import execution_order
from tests import inputs_fixtures as fx
from workloads.csvschema import WorkloadRow

RTL_TOPS = [("SpAttenTop", "tiny")]


def _row(it: int, layer: int, head: int, topk: bool = False) -> WorkloadRow:
    return WorkloadRow(iteration_id=it, layer_id=layer, head_id=head, embedding_length_D=8, sentence_length_L=4,
                       key_fetch_num=4, quant_key_bit=8, quant_query_bit=16, auto_requant_thres=0.1,
                       if_requant=False, auto_requant_incre=4, value_fetch_num=4, quant_value_bit=8,
                       if_accumulate_importance=True, if_rescale_previous_importance=False, if_topk=topk,
                       topk=2 if topk else -1)


def test_decoder_order_is_the_files() -> None:
    rows = [_row(it, layer, h) for it in range(2) for layer in range(2) for h in range(3)]
    order, runs = execution_order(rows, lambda i: rows[i].head_id // 3)
    assert order == list(range(len(rows))) and runs == [None] * len(rows)


def test_encoder_layer_goes_head_by_head_topk_last() -> None:
    # layer 0: 3 queries x 2 heads, TOPK on its last row; layer 1: 2 queries x 2 heads
    rows = [_row(q, 0, h, topk=(q == 2 and h == 1)) for q in range(3) for h in range(2)]
    rows += [_row(q, 1, h) for q in (0, 2) for h in range(2)]
    order, runs = execution_order(rows, lambda i: rows[i].head_id)
    got = [(rows[i].layer_id, rows[i].head_id, rows[i].iteration_id) for i in order]
    assert got == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 1, 2),
                   (1, 0, 0), (1, 0, 2), (1, 1, 0), (1, 1, 2)]
    assert rows[order[5]].if_topk  # the TOPK still ends layer 0
    assert runs[:6] == [0] * 6 and runs[6:] == [1] * 4


def test_encoder_workload_runs_grouped(tmp_path: Path) -> None:
    rows, t = fx.encoder_workload()
    csv = fx.write(tmp_path / "enc.csv", rows, t)
    out = tmp_path / "out"
    proc = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    g = 4  # tiny's maxGroupHeads: query rows of one head per request
    per_layer = {0: fx.ENC_TOKENS, 1: fx.ENC_KEEP}  # query rows a head
    groups = sum(fx.ENC_HEADS * math.ceil(nq / g) for nq in per_layer.values())
    assert s["attend_requests"] == groups and s["query_heads"] == len(rows)
    assert s["checked_responses"] == 1 + groups + 1 and s["mismatches"] == 0
    assert s["dense"]["mismatches"] == 0
    # 8-bit K MSB rows of 16 elements: one 32-byte burst a key, once per request
    keys = sum(fx.ENC_HEADS * math.ceil(nq / g) * nq for nq in per_layer.values())  # N = the layer's kept tokens
    assert s["dram_bytes"]["k_msb"] == 32 * keys
