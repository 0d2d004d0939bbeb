"""Greedy generation and teacher-forced perplexity through an attention engine.

:func:`greedy` prefills the prompt and decodes one token at a time (argmax), every
attention call going through the engine (:mod:`spatten.loop.engines`); ``on_token`` gets
each token with the :class:`TokenStats` of the call that produced it (the prefill for
the first). :func:`perplexity` prefills ``context`` tokens of a text and scores the next
``n_eval`` tokens, teacher-forced, as ``tools/eval_accuracy.py`` does for ``torch``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from spatten.loop.engines import Engine
from spatten.loop.host import CallRecord

__all__ = ["TokenStats", "Generation", "greedy", "perplexity", "kept_overlap", "prompt_ids", "eos_ids",
           "PLAIN_FORMAT"]

PLAIN_FORMAT = "User: {text}\nAssistant:"
"""The prompt format of a tokenizer without a chat template (a base model)."""


def prompt_ids(tok, history: list[dict[str, str]]) -> torch.Tensor:
    """Token ids of a conversation: the tokenizer's chat template with the generation
    prompt when it has one, else :data:`PLAIN_FORMAT` turns."""
    if getattr(tok, "chat_template", None):
        ids = tok.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return ids
    text = "".join(PLAIN_FORMAT.format(text=m["content"]) if m["role"] == "user" else f" {m['content']}\n"
                   for m in history)
    return tok(text, return_tensors="pt").input_ids


def eos_ids(tok) -> set[int]:
    """Ids that end a reply: the tokenizer's EOS and the chat end-of-turn markers it has."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    for t in ("<|im_end|>", "<|endoftext|>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i >= 0 and i != tok.unk_token_id:
            ids.add(i)
    return ids


@dataclass(frozen=True)
class TokenStats:
    """Figures of the call that produced one token."""

    token: int
    length: int  # tokens in the K/V cache during the call
    kv_kept: float  # kept tokens over cache tokens, averaged over the layers
    heads_kept: float  # surviving heads over all heads, averaged over the layers
    dram_bytes: int
    cycles: int  # accelerator cycles (rtl), 0 otherwise
    seconds: float


@dataclass
class Generation:
    """A greedy generation: the new token ids, their figures and the calls' records."""

    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    stats: list[TokenStats] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Decoded tokens per second, the prefill excluded."""
        dec = [s.seconds for s in self.stats[1:]]
        return len(dec) / sum(dec) if dec and sum(dec) > 0 else 0.0


def _stats(token: int, rec: CallRecord, n_heads: int, seconds: float) -> TokenStats:
    layers = rec.layers
    kv = sum(len(l.kept) for l in layers) / (len(layers) * rec.length) if layers else 1.0
    hk = sum(len(l.heads) for l in layers) / (len(layers) * n_heads) if layers else 1.0
    return TokenStats(token, rec.length, kv, hk, rec.dram_bytes, rec.cycles, seconds)


def greedy(model: torch.nn.Module, engine: Engine, input_ids: torch.Tensor, max_new_tokens: int,
           eos_ids: set[int] | None = None,
           on_token: Callable[[int, TokenStats], None] | None = None) -> Generation:
    """Greedy decoding of ``max_new_tokens`` (stops early at an id in ``eos_ids``)."""
    gen = Generation(prompt_tokens=int(input_ids.shape[1]))
    n_heads = model.config.num_attention_heads
    t_all = time.perf_counter()
    with torch.no_grad(), engine.attach(model):
        t = time.perf_counter()
        out = model(input_ids=input_ids, use_cache=True)
        pkv = out.past_key_values
        for i in range(max_new_tokens):
            tok = int(torch.argmax(out.logits[0, -1]))
            rec = engine.last_call()
            st = _stats(tok, rec, n_heads, time.perf_counter() - t)
            gen.tokens.append(tok)
            gen.stats.append(st)
            gen.calls.append(rec)
            if on_token:
                on_token(tok, st)
            if (eos_ids and tok in eos_ids) or i == max_new_tokens - 1:
                break
            t = time.perf_counter()
            out = model(input_ids=torch.tensor([[tok]]), past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
    gen.seconds = time.perf_counter() - t_all
    return gen


def perplexity(model: torch.nn.Module, engine: Engine, ids: torch.Tensor, context: int, n_eval: int,
               on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """Perplexity of ``n_eval`` teacher-forced tokens after a ``context``-token prefill
    (``ids`` holds at least ``context + n_eval`` tokens), and the mean kept fraction."""
    nll: list[float] = []
    kept: list[float] = []
    fetched = dense = 0
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad(), engine.attach(model):
        out = model(input_ids=ids[:, :context], use_cache=True)
        pkv = out.past_key_values
        for s in range(n_eval):
            target = ids[:, context + s]
            nll.append(float(torch.nn.functional.cross_entropy(out.logits[0, -1].float().unsqueeze(0), target)))
            if s == n_eval - 1:
                break
            out = model(input_ids=ids[:, context + s: context + s + 1], past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            rec = engine.last_call()
            if rec.layers:
                kept.append(sum(len(l.kept) for l in rec.layers) / (len(rec.layers) * rec.length))
                fetched += rec.dram_bytes
                # dense: every token of every head and layer, 16-bit K and V
                dense += len(rec.layers) * cfg.num_attention_heads * 2 * rec.length * head_dim * 2
            if on_step:
                on_step(s + 1)
    mean = sum(nll) / len(nll)
    return {"nll": mean, "ppl": math.exp(mean), "tokens": len(nll),
            "kv_kept": sum(kept) / len(kept) if kept else 1.0,
            "kv_fraction": fetched / dense if dense else 1.0}


def kept_overlap(a: CallRecord, b: CallRecord) -> float:
    """Mean over layers of |kept_a & kept_b| / |kept_a | kept_b| (1.0: the same sets)."""
    vals = []
    for la, lb in zip(a.layers, b.layers):
        sa, sb = set(la.kept), set(lb.kept)
        u = sa | sb
        vals.append(len(sa & sb) / len(u) if u else 1.0)
    return sum(vals) / len(vals) if vals else 1.0
