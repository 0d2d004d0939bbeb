"""The workload CSV: one row per (decode step, layer, surviving head), SpAtten's format.

API::

    from workloads.csvschema import read_workload, write_workload, WorkloadRow, WorkloadError
    wl = read_workload("hardware/workloads/smollm2-135m-ctx1024-s32-spatten-default.csv")
    wl.rows            # list[WorkloadRow], file order (= execution order)
    wl.config_name     # the trailing line naming the pruning config (None if absent)
    wl.extra_columns   # names of columns after the 17 standard ones (e.g. ["kv_head_id"])
    wl.rows[0].key_fetch_num, wl.rows[0].extra["kv_head_id"]
    value_threshold(wl.rows[0])   # None, or the row's threshold (checked when read)
    write_workload(path, rows, config_name)   # atomic (temp file + rename)

Columns (the original SpAtten order; ``-1`` = unquantized / not used):

| column | type | meaning |
|---|---|---|
| iteration_id | int >= 0 | decode step (encoders: the query token's position) |
| layer_id | int >= 0 | layer |
| head_id | int >= 0 | query head (pruned heads have no row) |
| embedding_length_D | number, integral > 0 | head dimension, written ``64.0`` |
| sentence_length_L | int >= 1 | tokens in the K/V cache |
| key_fetch_num | int, 1..L | tokens surviving cascade token pruning (K rows fetched) |
| quant_key_bit | -1 or 1..16 | K MSB bits fetched first |
| quant_query_bit | -1 or 1..16 | query bits |
| auto_requant_thres | -1 or (0, 1] | max-probability threshold for requantization |
| if_requant | True/False | this row needed the LSB refetch (flat distribution) |
| auto_requant_incre | -1 or 0..15 | K LSB bits fetched on requantization |
| value_fetch_num | int, 0..key_fetch_num | V rows fetched (local value pruning) |
| quant_value_bit | -1 or 1..16 | V bits |
| if_accumulate_importance | True/False | accumulate token/head importance from this row |
| if_rescale_previous_importance | True/False | rescale the accumulated importance (the original's; we write False) |
| if_topk | True/False | after this row, run a token top-k selecting ``topk`` tokens for the next layer |
| topk | -1 or int >= 1 | tokens kept by that top-k (-1 when if_topk is False) |

Extra columns of ours follow: ``kv_head_id`` (the K/V head the query head reads; GQA);
``value_threshold`` (optional: ``-1``, or a probability in (0, 1): the row's V rows are
those whose probability is at least ``min(value_threshold, the largest)``, the accelerator's
threshold mode; ``value_fetch_num`` is then the count the generating model selected).
The file ends with one line whose first field names the pruning config and whose other
fields are empty. Rows appear in execution order: iteration, then layer, then head for
decoders; layer, then query, then head for encoders (an encoder layer needs every query
of the previous layer).

Tensors for functional runs (``<stem>.npz`` beside ``<stem>.csv``, numpy ``savez_compressed``):

| key | shape, dtype | content |
|---|---|---|
| meta | 0-d str | JSON: model, model_type, n_layers, n_heads, n_kv_heads, head_dim, causal, softmax_scale (layer 0), softmax_scale_per_layer, context, steps, policy, policy_file, text, command, dtypes |
| row_kv_head | [R] int32 | K/V head of CSV data row r (file order) |
| row_position | [R] int32 | absolute token position of the query of row r |
| row_id | [R, 3] int32 | (iteration_id, layer_id, head_id) of row r: run.py checks the tensors belong to the CSV's rows (files made before it existed lack it) |
| q | [R, D] float32 | query row after RoPE, unquantized |
| kept_offsets | [R+1] int32 | row r's kept token ids are ``kept_ids[kept_offsets[r]:kept_offsets[r+1]]`` |
| kept_ids | [sum key_fetch_num] int32 | ascending token ids attended by row r |
| out_ref | [R, D] float32 | output of the float pruned attention for row r (the model's own) |
| k | [L, KVH, T, D] float16 | K cache after the final step (after RoPE), T = context + steps |
| v | [L, KVH, T, D] float16 | V cache after the final step |
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from spatten.fileio import write_atomic
from spatten.errors import InputError

COLUMNS: tuple[str, ...] = (
    "iteration_id",
    "layer_id",
    "head_id",
    "embedding_length_D",
    "sentence_length_L",
    "key_fetch_num",
    "quant_key_bit",
    "quant_query_bit",
    "auto_requant_thres",
    "if_requant",
    "auto_requant_incre",
    "value_fetch_num",
    "quant_value_bit",
    "if_accumulate_importance",
    "if_rescale_previous_importance",
    "if_topk",
    "topk",
)

_BOOL_FIELDS = ("if_requant", "if_accumulate_importance", "if_rescale_previous_importance", "if_topk")
_BIT_FIELDS = ("quant_key_bit", "quant_query_bit", "quant_value_bit")


class WorkloadError(InputError):
    """A malformed workload file; the message names the file, line and field."""


@dataclass
class WorkloadRow:
    """One attention request: (decode step, layer, head)."""

    iteration_id: int
    layer_id: int
    head_id: int
    embedding_length_D: int
    sentence_length_L: int
    key_fetch_num: int
    quant_key_bit: int
    quant_query_bit: int
    auto_requant_thres: float
    if_requant: bool
    auto_requant_incre: int
    value_fetch_num: int
    quant_value_bit: int
    if_accumulate_importance: bool
    if_rescale_previous_importance: bool
    if_topk: bool
    topk: int
    extra: dict[str, str] = field(default_factory=dict)
    index: int = field(default=0, compare=False)
    """Place among the file's data rows (it indexes the tensors of the ``.npz``); set by
    :func:`read_workload`, else the caller's."""
    line: int = field(default=0, compare=False)
    """Line of the file the row came from (1 is the header; 0: not from a file)."""

    def kv_bytes(self) -> float:
        """K and V bytes this row fetches (MSBs, LSBs when requantized, kept V rows)."""
        kbits = 16 if self.quant_key_bit == -1 else self.quant_key_bit
        if self.if_requant and self.auto_requant_incre > 0:
            kbits += self.auto_requant_incre
        vbits = 16 if self.quant_value_bit == -1 else self.quant_value_bit
        d = self.embedding_length_D
        return (self.key_fetch_num * d * kbits + self.value_fetch_num * d * vbits) / 8

    def dense_kv_bytes(self) -> float:
        """K and V bytes of dense attention for this row: all L tokens, 16-bit K and V."""
        return 2 * self.sentence_length_L * self.embedding_length_D * 2


@dataclass
class Workload:
    """A parsed workload file."""

    path: str
    rows: list[WorkloadRow]
    config_name: str | None
    extra_columns: list[str]


VALUE_THRESHOLD = "value_threshold"


def value_threshold(row: WorkloadRow) -> float | None:
    """The row's ``value_threshold`` column: ``None`` when absent or ``-1``, else the
    probability (ValueError when it is neither)."""
    text = row.extra.get(VALUE_THRESHOLD, "-1").strip()
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"expected -1 or a probability in (0, 1), got {text!r}") from None
    if x == -1:
        return None
    if not 0 < x < 1:
        raise ValueError(f"expected -1 or a probability in (0, 1), got {text!r}")
    return x


def _err(path: str, line: int, fld: str, msg: str) -> WorkloadError:
    return WorkloadError(f"{path}:{line}: {fld}: {msg}")


def _int(path: str, line: int, fld: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _err(path, line, fld, f"expected an integer, got {text!r}") from None


def _float(path: str, line: int, fld: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise _err(path, line, fld, f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise _err(path, line, fld, f"expected a finite number, got {text!r}")
    return x


def _bool(path: str, line: int, fld: str, text: str) -> bool:
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise _err(path, line, fld, f"expected True or False, got {text!r}")


def _parse_row(path: str, line: int, rec: dict[str, str], extras: list[str]) -> WorkloadRow:
    v: dict[str, object] = {}
    for name in ("iteration_id", "layer_id", "head_id", "sentence_length_L", "key_fetch_num", "value_fetch_num", "topk"):
        v[name] = _int(path, line, name, rec[name])
    for name in _BIT_FIELDS + ("auto_requant_incre",):
        v[name] = _int(path, line, name, rec[name])
    for name in _BOOL_FIELDS:
        v[name] = _bool(path, line, name, rec[name])
    d = _float(path, line, "embedding_length_D", rec["embedding_length_D"])
    if d <= 0 or d != int(d):
        raise _err(path, line, "embedding_length_D", f"expected a positive whole number, got {rec['embedding_length_D']!r}")
    v["embedding_length_D"] = int(d)
    thres = _float(path, line, "auto_requant_thres", rec["auto_requant_thres"])
    if thres != -1 and not 0 < thres <= 1:
        raise _err(path, line, "auto_requant_thres", f"expected -1 or a value in (0, 1], got {thres}")
    v["auto_requant_thres"] = thres
    for name in ("iteration_id", "layer_id", "head_id"):
        if v[name] < 0:  # type: ignore[operator]
            raise _err(path, line, name, f"must be >= 0, got {v[name]}")
    big_l = int(v["sentence_length_L"])  # type: ignore[arg-type]
    kf = int(v["key_fetch_num"])  # type: ignore[arg-type]
    vf = int(v["value_fetch_num"])  # type: ignore[arg-type]
    if big_l < 1:
        raise _err(path, line, "sentence_length_L", f"must be >= 1, got {big_l}")
    if not 1 <= kf <= big_l:
        raise _err(path, line, "key_fetch_num", f"must be in 1..sentence_length_L ({big_l}), got {kf}")
    if not 0 <= vf <= kf:
        raise _err(path, line, "value_fetch_num", f"must be in 0..key_fetch_num ({kf}), got {vf}")
    for name in _BIT_FIELDS:
        b = int(v[name])  # type: ignore[arg-type]
        if b != -1 and not 1 <= b <= 16:
            raise _err(path, line, name, f"unknown bit width {b} (expected -1 or 1..16)")
    incre = int(v["auto_requant_incre"])  # type: ignore[arg-type]
    kbit = int(v["quant_key_bit"])  # type: ignore[arg-type]
    if incre != -1 and not 0 <= incre <= 15:
        raise _err(path, line, "auto_requant_incre", f"unknown bit width {incre} (expected -1 or 0..15)")
    if incre > 0 and kbit != -1 and kbit + incre > 16:
        raise _err(path, line, "auto_requant_incre", f"quant_key_bit + auto_requant_incre = {kbit + incre} > 16")
    if v["if_requant"] and (kbit == -1 or incre < 1):
        raise _err(path, line, "if_requant", "True needs quant_key_bit != -1 and auto_requant_incre >= 1")
    topk = int(v["topk"])  # type: ignore[arg-type]
    if v["if_topk"] and topk < 1:
        raise _err(path, line, "topk", f"if_topk is True: expected a count >= 1, got {topk}")
    if not v["if_topk"] and topk != -1:
        raise _err(path, line, "topk", f"if_topk is False: expected -1, got {topk}")
    return WorkloadRow(**v, extra={name: rec[name] for name in extras}, line=line)  # type: ignore[arg-type]


def read_workload(path: str | os.PathLike[str]) -> Workload:
    """Parse and validate a workload CSV (original SpAtten files are accepted unchanged).

    Raises ``WorkloadError`` naming the file, line and field for: a missing file, a header
    without the 17 standard columns in order, a row with too few or too many fields, a
    bad number or boolean, an unknown bit width, ``key_fetch_num > sentence_length_L``,
    ``value_fetch_num > key_fetch_num``, an inconsistent ``if_topk``/``topk`` pair, a
    config-name line that is not the last line, or a file without data rows.
    """
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is allowed
    except FileNotFoundError:
        raise WorkloadError(f"{p}: file not found") from None
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{p}: not UTF-8 text: {exc}") from None
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise WorkloadError(f"{p}: not a readable CSV: {exc}") from None
    if not lines:
        raise WorkloadError(f"{p}:1: header: file is empty")
    header = [h.strip() for h in lines[0]]
    for i, col in enumerate(COLUMNS):
        if i >= len(header) or header[i] != col:
            got = header[i] if i < len(header) else "end of header"
            raise _err(p, 1, col, f"missing column: expected {col!r} as column {i + 1}, got {got!r}")
    extras = header[len(COLUMNS) :]
    if len(set(extras)) != len(extras) or any(not e for e in extras):
        raise _err(p, 1, "header", f"extra column names must be unique and non-empty: {extras}")
    rows: list[WorkloadRow] = []
    config_name: str | None = None
    body = [(n + 2, rec) for n, rec in enumerate(lines[1:]) if any(x.strip() for x in rec)]
    for idx, (line, rec) in enumerate(body):
        is_config = all(not x.strip() for x in rec[1:])
        if is_config:
            if idx != len(body) - 1:
                raise _err(p, line, COLUMNS[0], f"config-name line {rec[0]!r} must be the last line")
            config_name = rec[0]
            continue
        if len(rec) != len(header):
            raise _err(p, line, "row", f"expected {len(header)} fields, got {len(rec)}")
        row = _parse_row(p, line, dict(zip(header, rec, strict=True)), extras)
        if VALUE_THRESHOLD in row.extra:
            try:
                value_threshold(row)
            except ValueError as exc:
                raise _err(p, line, VALUE_THRESHOLD, str(exc)) from None
        row.index = len(rows)
        rows.append(row)
    if not rows:
        raise WorkloadError(f"{p}: no data rows")
    return Workload(path=p, rows=rows, config_name=config_name, extra_columns=extras)


def _fmt(name: str, value: object) -> str:
    if name == "embedding_length_D":
        return f"{float(value):.1f}"  # type: ignore[arg-type]
    if name == "auto_requant_thres":
        return "-1" if value == -1 else repr(float(value))  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def format_workload(rows: list[WorkloadRow], config_name: str) -> str:
    """The CSV text of ``rows`` (header, rows, config-name line)."""
    if not rows:
        raise ValueError("a workload needs at least one row")
    if not config_name or "\n" in config_name:
        raise ValueError("config_name must be one non-empty line")
    extras = list(rows[0].extra)
    for r in rows:
        if list(r.extra) != extras:
            raise ValueError(f"every row needs the extra columns {extras}, got {list(r.extra)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(COLUMNS) + extras)
    for r in rows:
        w.writerow([_fmt(c, getattr(r, c)) for c in COLUMNS] + [r.extra[e] for e in extras])
    w.writerow([config_name] + [""] * (len(COLUMNS) + len(extras) - 1))
    return buf.getvalue()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`spatten.fileio.write_atomic`)."""
    write_atomic(path, data)


def write_workload(path: str | os.PathLike[str], rows: list[WorkloadRow], config_name: str) -> None:
    """Write a workload CSV atomically (temp file + rename); ``read_workload`` reads it back."""
    atomic_write_bytes(path, format_workload(rows, config_name).encode("utf-8"))
