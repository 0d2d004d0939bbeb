"""Validation of every input of a simulation run, before anything is built.

Each check raises :class:`InputError` naming the file, the line or key, the field and
what is allowed; nothing here prints or exits (the CLIs do, with exit status 2)::

    from spatten.sim import inputs
    inputs.check_rows(csv_path, rows, params, preset, presets, params_of)   # CSV vs the hardware
    inputs.check_memory(csv_path, rows, params, tensors, dense=True)        # memory image vs the address space
    t = inputs.load_tensors(npz_path)                                       # a readable .npz
    note = inputs.check_tensors(npz_path, t, csv_path, wl.rows)             # tensors vs the CSV
    inputs.check_dram_config(yaml_path)                                     # as hardware/dpi/dram_config.cc (dramconfig.py)
    inputs.check_backend("ramulator2", dram_config_given=False)             # optional backends present
    out = inputs.check_out_dir("results/x")                                 # usable output folder
    inputs.check_no_error_responses(program, csv_path)                      # no request the hardware rejects
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from spatten.contract import quant
from spatten.contract.layout import layout
from spatten.errors import InputError
from spatten.sim.dramconfig import check_backend, check_dram_config, parse_dram_config  # re-exported

__all__ = ["InputError", "check_rows", "check_memory", "image_bytes", "load_tensors", "check_tensors", "REQUIRED_KEYS", "IDENTITY_KEY",
           "check_dram_config", "parse_dram_config", "check_backend", "check_out_dir",
           "check_no_error_responses"]




# ---------------------------------------------------------------------------------------
# CSV rows against the hardware configuration
# ---------------------------------------------------------------------------------------

def _needs(rows: Sequence[Any]) -> dict[str, int]:
    """The workload's largest head id + 1, head dimension and key-list length."""
    return {"max_heads": max(r.head_id for r in rows) + 1,
            "max_head_dim": max(r.embedding_length_D for r in rows),
            "max_tokens": max(max(r.sentence_length_L, r.key_fetch_num) for r in rows)}


_SIZE_FIELDS = {"head_id", "embedding_length_D", "sentence_length_L", "key_fetch_num"}
"""The fields whose limits a larger preset lifts (the others no preset does)."""
_LIMIT_KEYS = {"max_heads": "maxHeads", "max_head_dim": "maxHeadDim", "max_tokens": "maxTokens"}


def _fits(params: Any, needs: Mapping[str, int]) -> bool:
    return all(getattr(params, k) >= v for k, v in needs.items())


def check_rows(path: Path | str, rows: Sequence[Any], params: Any, preset: str = "",
               presets: Sequence[str] = (), params_of: Callable[[str], Any] | None = None) -> None:
    """Reject rows (``workloads.csvschema.WorkloadRow``) that ``params`` cannot run: ``head_id`` beyond
    ``maxHeads``, ``embedding_length_D`` beyond ``maxHeadDim``, ``sentence_length_L`` or
    ``key_fetch_num`` beyond ``maxTokens``, key bits beyond 16, 1-bit quantization (the
    host's symmetric quantizer needs 2..16 bits), a ``value_threshold`` that rounds to 0 in
    Q.16 (at most 2^-17: every V row would be summed where the model pruned).
    The message names the first offending line and field, how many rows fail, and, for a
    size limit, which larger preset of ``presets`` (looked up with ``params_of``) fits, or
    that none does."""
    from workloads.csvschema import value_threshold  # noqa: PLC0415 - the column's one reader

    bad: list[tuple[int, str, str]] = []
    for r in rows:
        vthr = value_threshold(r)
        if vthr is not None and quant.threshold_q16(vthr) == 0:
            bad.append((r.line, "value_threshold", f"{vthr!r} rounds to 0 in the accelerator's Q.16 "
                                                   f"probabilities (as every threshold up to 2^-17 = "
                                                   f"{2.0 ** -17:.3g} does): every V row would be summed where the "
                                                   f"model pruned; with value_pruning.relative_threshold c / N "
                                                   f"this happens from N = c * 2^17 keys on"))
        if r.head_id >= params.max_heads:
            bad.append((r.line, "head_id", f"{r.head_id} is beyond the preset's maxHeads={params.max_heads} "
                                           f"(heads 0..{params.max_heads - 1})"))
        if r.embedding_length_D > params.max_head_dim:
            bad.append((r.line, "embedding_length_D", f"{r.embedding_length_D} exceeds the preset's maxHeadDim={params.max_head_dim}"))
        if r.sentence_length_L > params.max_tokens:
            bad.append((r.line, "sentence_length_L", f"{r.sentence_length_L} keys exceed the preset's "
                                                      f"maxTokens={params.max_tokens} (the dense baseline fetches "
                                                      f"every one)"))
        elif r.key_fetch_num > params.max_tokens:
            bad.append((r.line, "key_fetch_num", f"{r.key_fetch_num} keys exceed the preset's "
                                                  f"maxTokens={params.max_tokens}"))
        for fld, bits in (("quant_key_bit", r.quant_key_bit), ("quant_query_bit", r.quant_query_bit),
                          ("quant_value_bit", r.quant_value_bit)):
            if bits == 1:  # found by tests/test_inputs.py's fuzz test
                bad.append((r.line, fld, "1 bit: symmetric quantization (spatten/contract/quant.py) needs 2..16 bits, "
                                         "sign and magnitude"))
        if r.quant_key_bit != -1 and r.auto_requant_incre > 0 and r.quant_key_bit + r.auto_requant_incre > 16:
            bad.append((r.line, "auto_requant_incre", f"quant_key_bit + auto_requant_incre = "
                                                       f"{r.quant_key_bit + r.auto_requant_incre} > 16"))
    if not bad:
        return
    line, fld, msg = bad[0]
    more = f" ({len(bad) - 1} more problems in other rows)" if len(bad) > 1 else ""
    hint = ""
    if presets and preset in presets and any(f in _SIZE_FIELDS for _, f, _ in bad):
        needs = _needs(rows)
        larger = list(presets)[list(presets).index(preset) + 1:]
        fit = None
        if params_of is not None:
            for name in larger:
                try:
                    if _fits(params_of(name), needs):
                        fit = name
                        break
                except Exception:  # noqa: BLE001 - a hint only; the error below stands
                    break
        need_txt = ", ".join(f"{_LIMIT_KEYS[k]} >= {v}" for k, v in needs.items())
        if fit:
            hint = f"; --preset {fit} fits this workload"
        else:
            largest = list(presets)[-1]
            hint = (f"; no preset fits: even the largest, {largest}, is too small (the workload needs "
                    f"{need_txt}: a new configuration in SpAttenParams.scala)") if params_of or not larger \
                else f"; choose a larger --preset ({', '.join(larger)})"
    raise InputError(f"{path}:{line}: {fld}: {msg}{more}{hint}")


# ---------------------------------------------------------------------------------------
# The memory image against the address space
# ---------------------------------------------------------------------------------------

IMAGE_START_BURSTS = 16
"""Bursts the program leaves free below its first plane (``spatten.sim.program.build``)."""


def image_bytes(rows: Sequence[Any], params: Any, tensors: Mapping[str, np.ndarray] | None = None,
                dense: bool = False) -> tuple[int, int, int]:
    """``(total, planes, lists)``: bytes of the memory image :func:`spatten.sim.program.build`
    writes for ``rows``, planes exact (one K MSB, K LSB and V plane per (layer, K/V head,
    widths) of every token, as the program makes them) and token lists an upper bound (one
    list per row; the program shares equal lists). ``dense``: the dense baseline's image
    (16-bit K and V of every (layer, head), no LSB plane). ``tensors`` (checked already):
    functional mode, planes of ``k``'s tokens per K/V head of ``row_kv_head``."""
    from spatten.contract.memimage import stride
    from spatten.sim.program import _key_bits, synthetic_kv_head  # the program's own rules

    b = params.burst_bytes
    functional = tensors is not None and not dense
    planes: dict[tuple, int] = {}
    if functional:
        n_tok, d_all = int(tensors["k"].shape[2]), int(tensors["k"].shape[3])
        kvh = tensors["row_kv_head"]
    else:
        n_tok = max(r.sentence_length_L for r in rows)
    for r in rows:
        if dense:
            msb, lsb, vbits = 16, 0, 16
        else:
            msb, lsb, _ = _key_bits(r, functional)
            vbits = 16 if r.quant_value_bit == -1 else r.quant_value_bit
        head = int(kvh[r.index]) if functional else synthetic_kv_head(r)
        d = d_all if functional else r.embedding_length_D
        planes[(r.layer_id, head, msb, lsb, vbits)] = n_tok * (
            stride(d, msb, b) + stride(d, lsb, b) + stride(d, vbits, b))
    lists = sum(-(-2 * (r.sentence_length_L if dense else r.key_fetch_num) // b) * b for r in rows)
    total = IMAGE_START_BURSTS * b + sum(planes.values()) + lists
    return total, sum(planes.values()), lists


def check_memory(path: Path | str, rows: Sequence[Any], params: Any,
                 tensors: Mapping[str, np.ndarray] | None = None, dense: bool = True) -> None:
    """Reject a workload whose memory image (the SpAtten run's, and the dense baseline's
    when ``dense``) does not fit the preset's ``2^dramAddrBits`` bytes (SPEC.md section 4),
    naming the file, the fields that size it and the limit."""
    limit = 1 << params.dram_addr_bits
    for which, is_dense in (("SpAtten", False), ("dense baseline", True)):
        if is_dense and not dense:
            continue
        total, planes, lists = image_bytes(rows, params, tensors, is_dense)
        if total > limit:
            gib = 1 << 30
            hint = " (run with --no-dense: the SpAtten run alone fits)" if is_dense else ""
            raise InputError(
                f"{path}: sentence_length_L, embedding_length_D, layer_id/head_id: the {which} run's memory image "
                f"needs {total / gib:.2f} GiB (K/V planes {planes / gib:.2f} GiB of every token of every "
                f"(layer, head), token lists up to {lists / gib:.3f} GiB), beyond the preset's address space of "
                f"2^dramAddrBits = 2^{params.dram_addr_bits} bytes ({limit / gib:.2f} GiB){hint}; run fewer rows "
                f"(--limit, --step) or a preset with more dramAddrBits")


# ---------------------------------------------------------------------------------------
# Tensors (.npz) against the CSV
# ---------------------------------------------------------------------------------------

REQUIRED_KEYS = ("meta", "row_kv_head", "q", "kept_offsets", "kept_ids", "k", "v")
IDENTITY_KEY = "row_id"
"""[R, 3] int32: (iteration_id, layer_id, head_id) of CSV data row r, written by the
generator so that a run can check that the tensors belong to the CSV's rows."""


def load_tensors(path: Path | str) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` (no pickles), naming the file and key on failure."""
    p = Path(path)
    try:
        z = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except Exception as e:  # noqa: BLE001 - numpy and zipfile raise many kinds on a damaged file
        size = p.stat().st_size if p.exists() else 0
        why = "empty file" if size == 0 else f"{type(e).__name__}: {e}"
        if "pickled" in str(e):
            why = "not a numpy .npz archive (numpy took it for a pickle)"
        raise InputError(f"{p}: not a readable .npz tensor archive ({why})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(f"{p}: a single .npy array, not an .npz archive of the keys {', '.join(REQUIRED_KEYS)}")
    out: dict[str, np.ndarray] = {}
    with z:
        for key in z.files:
            try:
                out[key] = z[key]
            except Exception as e:  # noqa: BLE001 - zlib, zipfile, numpy: a damaged member in any way
                raise InputError(f"{p}: key '{key}': cannot be read ({type(e).__name__}: {e})") from None
    return out


def _err(npz: Path, key: str, msg: str) -> InputError:
    return InputError(f"{npz}: key '{key}': {msg}")


def _int_array(npz: Path, t: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    a = t[key]
    if a.ndim != ndim or not np.issubdtype(a.dtype, np.integer):
        raise _err(npz, key, f"expected a {ndim}-D integer array, got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.int64)


def _float_array(npz: Path, t: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    a = t[key]
    if a.ndim != ndim or not (np.issubdtype(a.dtype, np.floating)):
        raise _err(npz, key, f"expected a {ndim}-D float array, got shape {a.shape} dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise _err(npz, key, "holds NaN or infinite values")
    return a


def check_tensors(npz: Path | str, t: Mapping[str, np.ndarray], csv: Path | str, rows: Sequence[Any]) -> str:
    """Check the tensors of ``npz`` against every data row of the CSV (``WorkloadRow``s,
    file order). Raises :class:`InputError`; returns a one-line note ("" when the rows'
    identity was verified through ``row_id``, else a note saying it could not be)."""
    npz = Path(npz)
    missing = [k for k in REQUIRED_KEYS if k not in t]
    if missing:
        raise InputError(f"{npz}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                         f"(a functional workload's .npz holds {', '.join(REQUIRED_KEYS)}; see workloads/csvschema.py)")
    n_rows = len(rows)
    # meta
    m = t["meta"]
    if m.ndim != 0 or m.dtype.kind not in "US":
        raise _err(npz, "meta", f"expected a 0-d JSON string, got shape {m.shape} dtype {m.dtype}")
    try:
        meta = json.loads(str(m))
    except json.JSONDecodeError as e:
        raise _err(npz, "meta", f"not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise _err(npz, "meta", f"expected a JSON object, got {type(meta).__name__}")
    scale = meta.get("softmax_scale", 0.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
        raise _err(npz, "meta", f"softmax_scale must be a finite number >= 0, got {scale!r}")
    if not scale:
        hd = meta.get("head_dim")
        if not isinstance(hd, int) or isinstance(hd, bool) or hd < 1:
            raise _err(npz, "meta", f"needs softmax_scale or a positive integer head_dim, got head_dim={hd!r}")
    per_layer = meta.get("softmax_scale_per_layer")
    if isinstance(per_layer, str):
        try:
            per_layer = json.loads(per_layer)
        except json.JSONDecodeError as e:
            raise _err(npz, "meta", f"softmax_scale_per_layer: not valid JSON: {e}") from None
    max_layer = max(r.layer_id for r in rows)
    if per_layer:
        if not isinstance(per_layer, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                for x in per_layer):
            raise _err(npz, "meta", "softmax_scale_per_layer must be a list of positive numbers")
        if len(per_layer) <= max_layer:
            raise _err(npz, "meta", f"softmax_scale_per_layer has {len(per_layer)} layers; {csv} uses layer "
                                    f"{max_layer}")
    # per-row arrays
    kvh = _int_array(npz, t, "row_kv_head", 1)
    if len(kvh) != n_rows:
        raise _err(npz, "row_kv_head", f"{len(kvh)} rows, but {csv} has {n_rows} data rows: the tensors "
                                       f"belong to another workload (or the CSV was edited)")
    q = _float_array(npz, t, "q", 2)
    if q.shape[0] != n_rows:
        raise _err(npz, "q", f"{q.shape[0]} rows, {csv} has {n_rows}")
    k = _float_array(npz, t, "k", 4)
    v = _float_array(npz, t, "v", 4)
    if v.shape != k.shape:
        raise _err(npz, "v", f"shape {v.shape} differs from k's {k.shape}")
    n_layers, n_kv, n_tok, d = k.shape
    if q.shape[1] != d:
        raise _err(npz, "q", f"head dimension {q.shape[1]} differs from k's {d}")
    if "out_ref" in t:
        o = _float_array(npz, t, "out_ref", 2)
        if o.shape != q.shape:
            raise _err(npz, "out_ref", f"shape {o.shape}, expected {q.shape} (like q)")
    offs = _int_array(npz, t, "kept_offsets", 1)
    ids = _int_array(npz, t, "kept_ids", 1)
    if len(offs) != n_rows + 1:
        raise _err(npz, "kept_offsets", f"{len(offs)} entries, expected {n_rows + 1} (data rows of {csv} + 1)")
    if offs[0] != 0 or offs[-1] != len(ids) or (np.diff(offs) < 0).any():
        raise _err(npz, "kept_offsets", f"must rise from 0 to len(kept_ids)={len(ids)}")
    ident = None
    if IDENTITY_KEY in t:
        ident = _int_array(npz, t, IDENTITY_KEY, 2)
        if ident.shape != (n_rows, 3):
            raise _err(npz, IDENTITY_KEY, f"shape {ident.shape}, expected ({n_rows}, 3) for the data rows of {csv}")
    counts = np.diff(offs)
    for idx, r in enumerate(rows):
        line = idx + 2

        def bad(key: str, msg: str) -> InputError:
            return _err(npz, key, f"row {idx} ({csv}:{line}): {msg}")

        if ident is not None and tuple(ident[idx]) != (r.iteration_id, r.layer_id, r.head_id):
            it, la, he = (int(x) for x in ident[idx])
            raise bad(IDENTITY_KEY, f"holds iteration {it}, layer {la}, head {he}; the CSV row says iteration "
                                    f"{r.iteration_id}, layer {r.layer_id}, head {r.head_id}")
        if r.embedding_length_D != d:
            raise bad("q", f"head dimension {d}, the CSV's embedding_length_D is {r.embedding_length_D}")
        if r.layer_id >= n_layers:
            raise bad("k", f"has {n_layers} layers, the CSV's layer_id is {r.layer_id}")
        if not 0 <= kvh[idx] < n_kv:
            raise bad("row_kv_head", f"K/V head {kvh[idx]} not in 0..{n_kv - 1} (k has {n_kv})")
        if "kv_head_id" in r.extra and r.extra["kv_head_id"].strip() != str(kvh[idx]):
            raise bad("row_kv_head", f"K/V head {kvh[idx]}, the CSV's kv_head_id is {r.extra['kv_head_id']!r}")
        if counts[idx] != r.key_fetch_num:
            raise bad("kept_offsets", f"{counts[idx]} kept token ids, the CSV's key_fetch_num is {r.key_fetch_num}")
        kept = ids[offs[idx]:offs[idx + 1]]
        if len(kept):
            lim = min(r.sentence_length_L, n_tok)
            if kept[0] < 0 or kept[-1] >= lim or (len(kept) > 1 and (np.diff(kept) <= 0).any()):
                raise bad("kept_ids", f"must be ascending token ids in 0..{lim - 1} (sentence_length_L="
                                      f"{r.sentence_length_L}, k holds {n_tok} tokens)")
    if ident is None:
        return (f"[run] note: {npz.name}: unverifiable identity (no '{IDENTITY_KEY}' array: made before it was "
                f"recorded); rows checked by count, shape, K/V head and kept-list length only")
    return ""


# ---------------------------------------------------------------------------------------
# Output folder
# ---------------------------------------------------------------------------------------

def check_out_dir(out: str | os.PathLike[str], keep: bool = True) -> Path:
    """An output folder the run can write: not empty text, not a file, creatable and
    writable (tried with a temporary file). Creates the folder and returns it; with
    ``keep=False`` (a check only) removes again the folders it created."""
    if str(out).strip() == "":
        raise InputError("--out: empty path (give a folder, e.g. results/<name>)")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {p}: exists and is not a folder")
    created = []
    q = p.absolute()
    while not q.exists() and q != q.parent:
        created.append(q)
        q = q.parent
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=p)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"--out {p}: not writable ({e.strerror or e})") from None
    finally:
        if not keep:
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
    return p


# ---------------------------------------------------------------------------------------
# Error responses
# ---------------------------------------------------------------------------------------

def check_no_error_responses(prog: Any, csv: Path | str) -> None:
    """Fail when the golden model answers any request of ``prog`` with an error response:
    a run must not report figures of requests the hardware refused."""
    lay = layout()
    err_op = lay.opcode("ERROR")
    bad = [i for i, exp in enumerate(prog.expected) if exp and lay.opcode_field.extract(int(exp[0][0])) == err_op]
    if not bad:
        return
    i = bad[0]
    info = prog.info[i]
    row = f"row {info.row}" if info.row is not None else "no row"
    if info.heads > 1 and info.row is not None:
        row = f"rows {info.row}..{info.row + info.heads - 1}"
    head = (f"head {info.head}" if info.heads <= 1 or not info.head_ids
            else "heads " + ", ".join(str(h) for h in info.head_ids))
    raise InputError(f"{csv}: {len(bad)} of {len(prog.expected)} requests would end in an error response "
                     f"(the first: command {i}, {info.kind}, {row}, layer {info.layer}, {head}); "
                     f"the hardware refuses them, so the run reports nothing")
