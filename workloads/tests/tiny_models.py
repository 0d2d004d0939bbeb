"""Tiny random-weight GPT-2, Llama (GQA) and BERT models and a word-level tokenizer for tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

VOCAB = 64
TEXT_WORDS = [f"w{i}" for i in range(VOCAB - 4)]


def make_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random model: ``gpt2``, ``llama`` (4 query heads, 2 KV heads) or ``bert``."""
    torch.manual_seed(seed)
    if kind == "gpt2":
        m = GPT2LMHeadModel(
            GPT2Config(n_layer=4, n_head=4, n_embd=32, vocab_size=VOCAB, n_positions=256, bos_token_id=0, eos_token_id=1)
        )
    elif kind == "llama":
        m = LlamaForCausalLM(
            LlamaConfig(
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                hidden_size=32,
                intermediate_size=64,
                vocab_size=VOCAB,
                max_position_embeddings=256,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    elif kind == "bert":
        m = BertModel(
            BertConfig(
                num_hidden_layers=3,
                num_attention_heads=4,
                hidden_size=32,
                intermediate_size=64,
                vocab_size=VOCAB,
                max_position_embeddings=256,
            )
        )
    else:
        raise ValueError(kind)
    return m.eval()


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``w0 .. w59`` plus [UNK], [CLS], [SEP], [PAD]."""
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3}
    vocab.update({w: i + 4 for i, w in enumerate(TEXT_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]"
    )


def save_tiny(kind: str, directory: Path) -> Path:
    """Save a tiny model with its tokenizer into ``directory``; returns it."""
    make_model(kind).save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory


def write_text(path: Path, n_words: int, seed: int = 0) -> Path:
    """A text of ``n_words`` random vocabulary words."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(TEXT_WORDS), (n_words,), generator=g).tolist()
    path.write_text(" ".join(TEXT_WORDS[i] for i in idx) + "\n")
    return path
