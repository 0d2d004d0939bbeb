"""Seeded fuzz test of run.py's input checks (issue 11): corrupted CSVs and tensors end in
a clear message or a correct run, never a traceback or a wrong figure
(``SPATTEN_FUZZ_CASES`` cases, 200 by default, about 10 s; ``SPATTEN_FUZZ_SEED``)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

import inputs_fixtures as fx
from spatten.sim import inputs
from workloads.csvschema import WorkloadError, write_workload

RTL_TOPS = [("SpAttenTop", "tiny")]


# ---------------------------------------------------------------------------------------
# 7. fuzz: corrupted CSVs and tensors end in a clear message or a correct run
# ---------------------------------------------------------------------------------------

FIELD_GARBAGE = ["", "x", "-1", "-2", "0", "1e9", "nan", "inf", "1.5", "True", "99999999999999999999", " 3", "\x00",
                 "64.0", "65", "8", "16", "17", "\"", "1,2"]


def _corrupt_csv(text: str, g: random.Random) -> str:
    lines = text.split("\n")
    kind = g.choice(["drop", "swap", "garbage", "truncate", "dupline", "dropline", "bytes"])
    i = g.randrange(len(lines))
    fields = lines[i].split(",")
    if kind == "drop" and len(fields) > 1:
        del fields[g.randrange(len(fields))]
    elif kind == "swap" and len(fields) > 1:
        a, b = g.randrange(len(fields)), g.randrange(len(fields))
        fields[a], fields[b] = fields[b], fields[a]
    elif kind == "garbage":
        fields[g.randrange(len(fields))] = g.choice(FIELD_GARBAGE)
    elif kind == "truncate":
        return text[: g.randrange(len(text))]
    elif kind == "dupline":
        lines.insert(i, lines[i])
        return "\n".join(lines)
    elif kind == "dropline":
        del lines[i]
        return "\n".join(lines)
    elif kind == "bytes":
        b = bytearray(text.encode())
        b[g.randrange(len(b))] = g.randrange(256)
        return b.decode("utf-8", errors="surrogateescape")
    lines[i] = ",".join(fields)
    return "\n".join(lines)


def _corrupt_npz(t: dict, blob: bytes, g: random.Random) -> tuple[dict | None, bytes | None]:
    kind = g.choice(["truncate", "bytes", "dropkey", "swapkeys", "shape", "dtype", "values", "meta", "empty"])
    if kind == "truncate":
        return None, blob[: g.randrange(len(blob))]
    if kind == "bytes":
        b = bytearray(blob)
        for _ in range(g.randint(1, 8)):
            b[g.randrange(len(b))] = g.randrange(256)
        return None, bytes(b)
    if kind == "empty":
        return None, b""
    t = dict(t)
    keys = sorted(t)
    if kind == "dropkey":
        del t[g.choice(keys)]
    elif kind == "swapkeys":
        a, b2 = g.sample(keys, 2)
        t[a], t[b2] = t[b2], t[a]
    elif kind == "shape":
        k = g.choice(keys)
        a = np.asarray(t[k])
        t[k] = a.reshape(-1)[: max(0, a.size - g.randint(1, 3))] if a.size else np.zeros(2)
    elif kind == "dtype":
        k = g.choice(keys)
        try:
            t[k] = np.asarray(t[k]).astype(g.choice([np.float32, np.int64, np.int8, np.bool_, "U3"]))
        except ValueError:  # text that is no number
            t[k] = np.asarray(t[k]).astype("U3")
    elif kind == "values":
        k = g.choice([k for k in keys if k != "meta"])
        a = np.array(t[k], copy=True)
        if a.size:
            flat = a.reshape(-1)
            j = g.randrange(flat.size)
            pool = [-1, 0, 1, 2**20, 41, 64] if a.dtype.kind in "iu" else [np.nan, np.inf, -1e4, 0.0, 3.5]
            try:
                flat[j] = g.choice(pool)
            except (OverflowError, ValueError):
                flat[j] = 0
        t[k] = a
    elif kind == "meta":
        m = json.loads(str(t["meta"]))
        key = g.choice(["softmax_scale", "head_dim", "softmax_scale_per_layer"])
        m[key] = g.choice([None, "x", -1, 0, [0.1], [], {"a": 1}, float("nan")])
        t["meta"] = np.array(g.choice([json.dumps(m), "{not json", "[]"]))
    return t, None


def _validate(csv: Path, params) -> tuple[list, dict | None]:
    """The checks run.py makes before building (in its order), in-process."""
    from spatten.sim.simulate import load_rows

    wl, rows = load_rows(csv, None, None)
    npz = csv.with_suffix(".npz")
    tensors = None
    if npz.exists():
        tensors = inputs.load_tensors(npz)
        inputs.check_tensors(npz, tensors, csv, wl.rows)
    inputs.check_rows(csv, rows, params)
    return rows, tensors


def test_fuzz_corrupted_inputs(tmp_path: Path, tiny) -> None:
    """Seeded random corruptions of a valid CSV (synthetic mode) and of a valid CSV + npz
    (functional mode): each is rejected with InputError/WorkloadError naming the file, or
    accepted; an accepted one must make a complete program in which no request ends in
    an error response and, in functional mode, every ATTEND covers the CSV's kept count.
    No other exception (a traceback) is allowed."""
    from spatten.sim import program

    n_cases = int(os.environ.get("SPATTEN_FUZZ_CASES", "200"))
    seed = int(os.environ.get("SPATTEN_FUZZ_SEED", "11"))
    g = random.Random(seed)
    rows, t = fx.workload()
    base_csv = tmp_path / "base.csv"
    write_workload(base_csv, rows, "fuzz")
    base_text = base_csv.read_text()
    base_blob = fx.npz_bytes(t)
    tally = {"rejected": 0, "accepted": 0, "tracebacks": 0, "wrong": 0}
    failures = []
    for case in range(n_cases):
        d = tmp_path / f"c{case % 4}"
        d.mkdir(exist_ok=True)
        csv = d / "w.csv"
        functional = case % 2 == 1
        npz = csv.with_suffix(".npz")
        npz.unlink(missing_ok=True)
        text = base_text
        if not functional or g.random() < 0.3:
            text = _corrupt_csv(text, g)
        csv.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        if functional:
            tt, blob = _corrupt_npz(t, base_blob, g) if g.random() < 0.85 else (t, None)
            npz.write_bytes(blob if blob is not None else fx.npz_bytes(tt))
        try:
            rows_ok, tensors = _validate(csv, tiny)
        except (inputs.InputError, WorkloadError) as e:
            tally["rejected"] += 1
            if str(csv) not in str(e) and str(npz) not in str(e):
                tally["wrong"] += 1
                failures.append((case, "message names no file", str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - a traceback is the failure counted here
            tally["tracebacks"] += 1
            failures.append((case, "traceback", f"{type(e).__name__}: {e}"))
            continue
        tally["accepted"] += 1
        try:
            prog = program.build(rows_ok, tiny, tensors=tensors)
            inputs.check_no_error_responses(prog, csv)
            attends = [i for i in prog.info if i.kind == "attend"]
            assert sum(info.heads for info in attends) == len(rows_ok)  # a group: consecutive rows
            for info in attends:
                assert info.head == rows_ok[info.row].head_id
                for r in rows_ok[info.row:info.row + info.heads]:
                    assert info.n == r.key_fetch_num and info.layer == r.layer_id
        except Exception as e:  # noqa: BLE001
            tally["wrong"] += 1
            failures.append((case, "accepted input gave a bad program", f"{type(e).__name__}: {e}"))
    print(f"fuzz: {n_cases} cases (seed {seed}): {tally}")
    assert tally["rejected"] > n_cases // 4 and tally["accepted"] > 0, tally
    assert not failures, failures[:10]
