"""The requests a closed-loop host sends, built on :mod:`spatten.contract.commands`.

:func:`attend_requests` is the one place that turns "these query heads of one K/V head
attend to this token list" into command packets: today one single-head ATTEND per query
head (``hardware/SPEC.md`` section 5); a grouped ATTEND carrying several query heads of
one K/V head changes only this function. :func:`attend_bytes` is the DRAM traffic of one
answered request, counted the way the golden model counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spatten.contract import quant
from spatten.contract.commands import AttendCmd, AttendResp
from spatten.contract.memimage import stride
from spatten.contract.params import HwParams
from spatten.loop.kvcache import PlaneSet, QuantSpec

__all__ = ["HeadQuery", "attend_requests", "attend_bytes", "list_bytes"]


@dataclass(frozen=True)
class HeadQuery:
    """One query head's request: its id, its float query row and what it decodes to."""

    head: int
    q: np.ndarray  # float [D], after RoPE
    q_scale: float  # the query's quantization scale
    q_int: tuple[int, ...]
    score_scale: int
    score_shift: int


def quantize_head(head: int, q: np.ndarray, spec: QuantSpec, s_k: float, softmax_scale: float) -> HeadQuery:
    """The query row of ``head`` in the request's integer format (one scale per row)."""
    qq = quant.quantize_query(q, spec.q_bits)
    scale, shift = quant.choose_score_scale(quant.score_unit(qq.scale, s_k, softmax_scale))
    return HeadQuery(head, q, qq.scale, tuple(int(x) for x in qq.values), scale, shift)


def attend_requests(tags: list[int], heads: Sequence[HeadQuery], planes: PlaneSet, spec: QuantSpec, *,
                    n: int, tokens_base: int, value_topk: int, accum: bool) -> list[AttendCmd]:
    """ATTEND commands for ``heads`` (query heads of one K/V head) over the ``n`` tokens
    of the list at ``tokens_base``; ``tags`` supplies one tag per command (popped)."""
    thr = quant.threshold_q16(spec.requant_threshold) if spec.requant else 0
    return [AttendCmd(tag=tags.pop(0), n=n, query=h.q_int, k_msb_base=planes.k_msb_base,
                      k_lsb_base=planes.k_lsb_base, v_base=planes.v_base, tokens_base=tokens_base,
                      k_msb_bits=spec.k_msb_bits, k_lsb_bits=spec.k_lsb_bits, v_bits=spec.v_bits,
                      score_scale=h.score_scale, score_shift=h.score_shift,
                      value_topk=0 if value_topk >= n else value_topk, head_id=h.head, requant=spec.requant,
                      requant_threshold=thr, accum_importance=accum, d=len(h.q_int))
            for h in heads]


def _bursts(nbytes: int, b: int) -> int:
    return (nbytes + b - 1) // b


def attend_bytes(cmd: AttendCmd, resp: AttendResp, params: HwParams) -> dict[str, int]:
    """DRAM bytes one ATTEND read (token list, K MSB, K LSB when pass 2 ran, the
    selected V rows), as :class:`spatten.contract.golden.AttendTraffic` counts them."""
    b = params.burst_bytes
    d = cmd.d
    return {"token_list": _bursts(2 * cmd.n, b) * b,
            "k_msb": cmd.n * _bursts(stride(d, cmd.k_msb_bits, b), b) * b,
            "k_lsb": cmd.n * _bursts(stride(d, cmd.k_lsb_bits, b), b) * b if resp.requantized else 0,
            "v": resp.m * _bursts(stride(d, cmd.v_bits, b), b) * b}


def list_bytes(n: int, params: HwParams) -> int:
    """DRAM bytes of a TOPK_TOKENS over ``n`` ids (its token list)."""
    b = params.burst_bytes
    return _bursts(2 * n, b) * b
