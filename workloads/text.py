"""Evaluation text: a file (default: the GPL-3 text every Debian machine has) or a dataset.

``load_tokens(tokenizer, source, n)`` returns the first ``n`` token ids of the text.
``source`` is a path; ``austen:<novel>`` (a Jane Austen novel from the Debian package
``r-cran-janeaustenr``: ``emma``, ``persuasion``, ``prideprejudice``, ``mansfieldpark``,
``northangerabbey``, ``sensesensibility``; see ``AUSTEN_DIRS``); or
``dataset:<name>[:<config>[:<split>]]`` when the optional
``datasets`` package is installed (it is not part of the pinned environment: it pulls in
pyarrow and pandas, which nothing else here needs). Datasets load as ``datasets`` loads
them: from the HF cache, else downloaded, ``HF_HUB_OFFLINE`` / ``HF_HOME`` / ``HF_ENDPOINT``
honoured; an unreachable hub is reported within seconds (``workloads/hub.py``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from workloads import hub
from workloads.rdata import RDataError, lazyload_object

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"
AUSTEN_PACKAGE = "r-cran-janeaustenr"


def austen_dirs() -> list[Path]:
    """Where the janeaustenr R package is looked for, in order: ``$JANEAUSTENR_DIR``, the
    Debian install path, and the copy ``tools/setup.sh`` unpacks into ``build/debs``."""
    repo = Path(__file__).resolve().parent.parent
    env = os.environ.get("JANEAUSTENR_DIR")
    sub = Path("usr/lib/R/site-library/janeaustenr")
    return [*([Path(env)] if env else []), Path("/") / sub, repo / "build" / "debs" / sub]


class TextError(ValueError):
    """The text cannot be read or is too short."""


def _read_austen(source: str) -> str:
    novel = source.split(":", 1)[1]
    for d in austen_dirs():
        rdx = d / "data" / "Rdata.rdx"
        if rdx.is_file():
            break
    else:
        raise TextError(
            f"{source}: the Debian package {AUSTEN_PACKAGE} is not installed (looked in "
            f"{', '.join(str(d) for d in austen_dirs())}); run tools/setup.sh, which unpacks it into "
            f"build/debs, or: apt-get download {AUSTEN_PACKAGE} && dpkg -x {AUSTEN_PACKAGE}_*.deb build/debs"
        )
    try:
        lines = lazyload_object(rdx, novel)
    except RDataError as exc:
        raise TextError(f"{source}: {exc}") from exc
    if not isinstance(lines, list) or not all(isinstance(x, str) or x is None for x in lines):
        raise TextError(f"{source}: {rdx}: {novel!r} is not a character vector")
    return "\n".join(x or "" for x in lines)


def read_text(source: str) -> str:
    """The text of a file, of a Jane Austen novel (``austen:<novel>``) or of a dataset
    split (``dataset:name[:config[:split]]``)."""
    if source.startswith("austen:"):
        return _read_austen(source)
    if source.startswith("dataset:"):
        if importlib.util.find_spec("datasets") is None:
            raise TextError(
                f"{source}: the 'datasets' package is not installed (pip install datasets); "
                "pass a text file with --text instead"
            )
        import datasets  # noqa: PLC0415  (optional dependency)

        parts = source.split(":")[1:] + [None, None]
        name, config, split = parts[0], parts[1], parts[2] or "test"
        if not hub.offline() and not Path(name).exists():
            try:
                hub.probe(name, "dataset")
            except hub.HubUnreachable as exc:
                raise TextError(
                    f"{source}: {exc}. If the dataset is in the HF cache ({hub.cache_dir()}), "
                    "set HF_HUB_OFFLINE=1 to use it; or pass a text file with --text."
                ) from exc
            except (OSError, ValueError) as exc:  # the hub's HTTP errors
                raise TextError(f"{source}: {hub.reason(exc, name, 'dataset')}") from exc
        try:
            ds = datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # datasets raises many kinds; report them all the same way
            raise TextError(f"{source}: cannot load dataset: {hub.reason(exc, name, 'dataset')}") from exc
        column = "text" if "text" in ds.column_names else ds.column_names[0]
        return "\n".join(str(x) for x in ds[column])
    path = Path(source)
    if not path.is_file():
        raise TextError(f"{source}: text file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TextError(f"{source}: not UTF-8 text: {exc}") from exc


def check_text(source: str, n: int) -> None:
    """Reject, before any model is loaded, a text file that cannot give ``n`` tokens:
    missing, not UTF-8, binary (NUL or other control bytes), empty, or shorter in bytes
    than ``n`` (no tokenizer makes more tokens than bytes). Datasets are checked when
    loaded (:func:`load_tokens`)."""
    if source.startswith("dataset:"):
        return
    text = read_text(source)
    if not text.strip():
        raise TextError(f"{source}: the text is empty")
    bad = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in text or bad > len(text) // 100:
        raise TextError(f"{source}: binary data, not text ({bad} control characters)")
    size = len(text.encode("utf-8"))
    if size < n:
        raise TextError(f"{source}: text has {size} bytes, so fewer than the {n} tokens needed")


def load_tokens(tokenizer: PreTrainedTokenizerBase, source: str, n: int, encoder: bool = False) -> torch.Tensor:
    """The first ``n`` token ids of ``source`` as a ``[1, n]`` tensor; error when shorter.

    With ``encoder`` (BERT family) the ids are ``[CLS] text[: n - 2] [SEP]``.
    """
    ids = tokenizer(read_text(source), add_special_tokens=False, return_tensors="pt").input_ids
    need = n - 2 if encoder else n
    if ids.shape[1] < need:
        raise TextError(f"{source}: text has {ids.shape[1]} tokens, {need} are needed")
    if encoder:
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            raise TextError("encoder tokenizer has no [CLS]/[SEP] tokens")
        return torch.cat([torch.tensor([[cls_id]]), ids[:, :need], torch.tensor([[sep_id]])], dim=1)
    return ids[:, :n]
