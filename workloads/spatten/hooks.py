"""Plugging SpAtten into Hugging Face models (transformers 5.x attention interface).

transformers 5 routes every GPT-2, Llama and BERT self-attention through
``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`` with the query after RoPE and
the K/V cache after its update. We register ``"spatten"`` there (and the eager mask
builder under the same name in ``ALL_MASK_ATTENTION_FUNCTIONS``), and
``spatten_context`` switches a model to it for the duration of a ``with`` block::

    with spatten_context(model, load_policy("spatten-default")) as state:
        model(input_ids)          # pruned attention; state holds importance, records
    # the model is back to its previous attention implementation
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from workloads.spatten.attention import spatten_attention_forward
from workloads.spatten.policy import Policy
from workloads.spatten.state import SpAttenState

ATTN_NAME = "spatten"

# Self-attention module classes whose forward calls the attention interface, per family.
ATTENTION_CLASSES = ("GPT2Attention", "LlamaAttention", "BertSelfAttention")


def register() -> None:
    """Register the ``spatten`` attention function and mask builder (idempotent)."""
    AttentionInterface.register(ATTN_NAME, spatten_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, eager_mask)


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention modules of ``model`` in layer order (cross-attention excluded)."""
    mods = [
        m
        for m in model.modules()
        if type(m).__name__ in ATTENTION_CLASSES and not getattr(m, "is_cross_attention", False)
    ]
    if not mods:
        raise ValueError(
            f"{type(model).__name__}: no supported self-attention modules found "
            f"(supported: {', '.join(ATTENTION_CLASSES)})"
        )
    return sorted(mods, key=lambda m: m.layer_idx if m.layer_idx is not None else 0)


def model_geometry(model: torch.nn.Module) -> dict[str, int | bool]:
    """n_layers, n_heads, n_kv_heads, head_dim and causality of a supported model."""
    cfg = model.config
    n_heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    return {
        "n_layers": len(attention_modules(model)),
        "n_heads": n_heads,
        "n_kv_heads": getattr(cfg, "num_key_value_heads", None) or n_heads,
        "head_dim": head_dim,
        "causal": bool(attention_modules(model)[0].is_causal),
    }


def new_state(model: torch.nn.Module, policy: Policy, **flags: bool) -> SpAttenState:
    """A fresh SpAttenState sized for ``model``."""
    g = model_geometry(model)
    state = SpAttenState(
        policy=policy,
        n_layers=int(g["n_layers"]),
        n_heads=int(g["n_heads"]),
        n_kv_heads=int(g["n_kv_heads"]),
        head_dim=int(g["head_dim"]),
        causal=bool(g["causal"]),
        **flags,
    )
    state.reset()
    return state


@contextmanager
def spatten_context(
    model: torch.nn.Module,
    policy: Policy,
    record: bool = False,
    record_tensors: bool = False,
    record_prefill: bool = False,
) -> Iterator[SpAttenState]:
    """Run ``model`` with SpAtten attention under ``policy`` inside the block.

    ``record`` keeps a LayerRecord per (decode call, layer) (every call for encoders,
    and prefill calls too with ``record_prefill``); ``record_tensors`` adds the query and
    output rows and the last K/V seen per layer. Batch size must be 1.
    """
    register()
    mods = attention_modules(model)
    state = new_state(
        model, policy, record=record, record_tensors=record_tensors, record_prefill=record_prefill
    )
    previous = model.config._attn_implementation
    for i, m in enumerate(mods):
        m._spatten_state = state
        m._spatten_layer = i
    model.set_attn_implementation(ATTN_NAME)
    try:
        yield state
    finally:
        model.set_attn_implementation(previous)
        for m in mods:
            del m._spatten_state
            del m._spatten_layer
