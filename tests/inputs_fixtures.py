"""A small functional workload for the tiny preset (CSV + tensors), made here from
seeded random tensors, in the layout ``workloads/spatten/export.py`` writes, for the
input-validation and signal tests."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from workloads.csvschema import WorkloadRow, write_workload

ROOT = Path(__file__).resolve().parents[1]

LAYERS, HEADS, KV_HEADS, D, STEPS, CONTEXT = 2, 4, 2, 16, 2, 40


def workload(seed: int = 0, identity: bool = True, out_ref: bool = True) -> tuple[list[WorkloadRow], dict]:
    """(rows, tensors): STEPS x LAYERS x HEADS rows; layer 0 attends to every token,
    layer 1 to 30 of them (a seeded ascending subset), GQA with 2 query heads a K/V head."""
    g = np.random.default_rng(seed)
    t_total = CONTEXT + STEPS
    k = g.standard_normal((LAYERS, KV_HEADS, t_total, D)).astype(np.float16)
    v = g.standard_normal((LAYERS, KV_HEADS, t_total, D)).astype(np.float16)
    scale = D ** -0.5
    rows, q, outs, kept, kvh, ident = [], [], [], [], [], []
    for it in range(STEPS):
        length = CONTEXT + it
        for layer in range(LAYERS):
            ids = np.arange(length) if layer == 0 else np.sort(g.choice(length, 30, replace=False))
            for head in range(HEADS):
                last = head == HEADS - 1
                rows.append(WorkloadRow(
                    iteration_id=it, layer_id=layer, head_id=head, embedding_length_D=D, sentence_length_L=length,
                    key_fetch_num=len(ids), quant_key_bit=8, quant_query_bit=16, auto_requant_thres=0.1,
                    if_requant=False, auto_requant_incre=4, value_fetch_num=max(1, len(ids) // 2),
                    quant_value_bit=8, if_accumulate_importance=True, if_rescale_previous_importance=False,
                    if_topk=layer == 0 and last, topk=30 if layer == 0 and last else -1,
                    extra={"kv_head_id": str(head // 2)}))
                qq = g.standard_normal(D).astype(np.float32)
                kk = k[layer, head // 2, ids].astype(np.float64)
                vv = v[layer, head // 2, ids].astype(np.float64)
                s = kk @ qq * scale
                p = np.exp(s - s.max())
                outs.append((p / p.sum() @ vv).astype(np.float32))
                q.append(qq)
                kept.append(ids.astype(np.int32))
                kvh.append(head // 2)
                ident.append((it, layer, head))
    offs = np.zeros(len(kept) + 1, dtype=np.int32)
    offs[1:] = np.cumsum([len(x) for x in kept])
    meta = {"model": "tests/inputs_fixtures.py", "n_layers": LAYERS, "n_heads": HEADS, "n_kv_heads": KV_HEADS,
            "head_dim": D, "causal": True, "softmax_scale": scale, "softmax_scale_per_layer": [scale] * LAYERS}
    t = {"meta": np.array(json.dumps(meta)), "row_kv_head": np.array(kvh, dtype=np.int32),
         "row_position": np.array([r.sentence_length_L - 1 for r in rows], dtype=np.int32),
         "q": np.stack(q), "kept_offsets": offs, "kept_ids": np.concatenate(kept), "k": k, "v": v}
    if out_ref:
        t["out_ref"] = np.stack(outs)
    if identity:
        t["row_id"] = np.array(ident, dtype=np.int32)
    return rows, t


def npz_bytes(t: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **t)
    return buf.getvalue()


def write(path: Path, rows: list[WorkloadRow], t: dict | None) -> Path:
    """Write ``path`` (.csv) and, when ``t``, the .npz beside it."""
    write_workload(path, rows, "tests/inputs_fixtures.py")
    if t is not None:
        path.with_suffix(".npz").write_bytes(npz_bytes(t))
    return path


def run_py(args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


ENC_LAYERS, ENC_HEADS, ENC_D, ENC_TOKENS, ENC_KEEP = 2, 3, 16, 24, 14


def encoder_workload(seed: int = 0) -> tuple[list[WorkloadRow], dict]:
    """(rows, tensors) of a small bidirectional encoder in the CSV's encoder order (layer,
    then query position, then head): layer 0 has every position as a query over all
    ``ENC_TOKENS`` tokens and ends with a TOPK_TOKENS keeping ``ENC_KEEP``; layer 1 has the
    kept positions as queries over the kept tokens. Multi-head (K/V head = head)."""
    g = np.random.default_rng(seed)
    k = g.standard_normal((ENC_LAYERS, ENC_HEADS, ENC_TOKENS, ENC_D)).astype(np.float16)
    v = g.standard_normal((ENC_LAYERS, ENC_HEADS, ENC_TOKENS, ENC_D)).astype(np.float16)
    scale = ENC_D ** -0.5
    kept1 = np.sort(g.choice(ENC_TOKENS, ENC_KEEP, replace=False))
    rows, q, outs, kept, kvh, ident = [], [], [], [], [], []
    for layer in range(ENC_LAYERS):
        ids = np.arange(ENC_TOKENS) if layer == 0 else kept1
        for pos in ids:
            for head in range(ENC_HEADS):
                last = layer == 0 and pos == ids[-1] and head == ENC_HEADS - 1
                rows.append(WorkloadRow(
                    iteration_id=int(pos), layer_id=layer, head_id=head, embedding_length_D=ENC_D,
                    sentence_length_L=ENC_TOKENS, key_fetch_num=len(ids), quant_key_bit=8, quant_query_bit=16,
                    auto_requant_thres=0.1, if_requant=False, auto_requant_incre=4, value_fetch_num=len(ids),
                    quant_value_bit=8, if_accumulate_importance=True, if_rescale_previous_importance=False,
                    if_topk=bool(last), topk=ENC_KEEP if last else -1, extra={"kv_head_id": str(head)}))
                qq = g.standard_normal(ENC_D).astype(np.float32)
                kk = k[layer, head, ids].astype(np.float64)
                vv = v[layer, head, ids].astype(np.float64)
                s = kk @ qq * scale
                p = np.exp(s - s.max())
                outs.append((p / p.sum() @ vv).astype(np.float32))
                q.append(qq)
                kept.append(ids.astype(np.int32))
                kvh.append(head)
                ident.append((int(pos), layer, head))
    offs = np.zeros(len(kept) + 1, dtype=np.int32)
    offs[1:] = np.cumsum([len(x) for x in kept])
    meta = {"model": "tests/inputs_fixtures.py (encoder)", "n_layers": ENC_LAYERS, "n_heads": ENC_HEADS,
            "n_kv_heads": ENC_HEADS, "head_dim": ENC_D, "causal": False, "softmax_scale": scale,
            "softmax_scale_per_layer": [scale] * ENC_LAYERS}
    t = {"meta": np.array(json.dumps(meta)), "row_kv_head": np.array(kvh, dtype=np.int32),
         "row_position": np.array([r.iteration_id for r in rows], dtype=np.int32),
         "q": np.stack(q), "kept_offsets": offs, "kept_ids": np.concatenate(kept), "k": k, "v": v,
         "out_ref": np.stack(outs), "row_id": np.array(ident, dtype=np.int32)}
    return rows, t
