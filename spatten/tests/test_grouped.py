"""ATTEND_GROUP (``spatten.contract.grouped``): packets and the golden model.

Expected values come from an independent formulation: the single-head ATTENDs of the
group's heads, run one after another on a second golden accelerator (SPEC 2 defines the
group that way), and DRAM traffic counted by hand from the selections.
"""

from __future__ import annotations

import numpy as np
import pytest

from spatten.contract import golden
from spatten.contract.commands import (AttendCmd, AttendResp, CommandError, ErrorResp, ReadImportanceCmd, TopkHeadsCmd,
                                       command_length, compare_responses, decode_command, decode_response)
from spatten.contract.grouped import GroupAttendCmd, GroupAttendResp, HeadQuery, group_commands
from spatten.contract.memimage import MemoryImage
from spatten.tests.hwfixtures import tiny

P = tiny()


def _group(seed: int = 0, heads: int = 3, n: int = 9, d: int = 8):
    rng = np.random.default_rng(seed)
    mem = MemoryImage.for_params(P)
    k = rng.integers(-512, 512, (32, d))
    v = rng.integers(-128, 128, (32, d))
    bases = dict(k_msb_base=mem.add_plane(k >> 4, 6, True), k_lsb_base=mem.add_plane(k & 15, 4, False),
                 v_base=mem.add_plane(v, 8, True))
    toks = rng.choice(32, n, replace=False)
    tl = mem.add_tokens(toks)
    cmds = [AttendCmd(tag=0, n=n, query=tuple(int(x) for x in rng.integers(-2000, 2000, d)), tokens_base=tl,
                      k_msb_bits=6, k_lsb_bits=4, v_bits=8, score_scale=int(rng.integers(1000, 60000)),
                      score_shift=int(rng.integers(20, 31)), value_topk=int(rng.integers(0, n + 1)), head_id=h,
                      requant=True, requant_threshold=int(rng.choice([0, 1 << 17 - 1, 30000])),
                      accum_importance=True, **bases)
            for h in range(heads)]
    return mem, toks, cmds


def test_packet_roundtrip_and_length() -> None:
    _, _, cmds = _group()
    g = group_commands(cmds, tag=77)
    words = g.encode()
    # 6 header words, then per head 1 head word + ceil(8/4) = 2 query words
    assert len(words) == 6 + 3 * 3 and words[-1][1] and not any(last for _, last in words[:-1])
    assert command_length(words[0][0], words[1][0]) == len(words)
    back = decode_command(words)
    assert back == g and isinstance(back, GroupAttendCmd) and back.tag == 77
    assert [h.head_id for h in back.heads] == [0, 1, 2]
    assert back.head_commands() == [AttendCmd(**{**c.__dict__, "tag": 77}) for c in cmds]


def test_group_is_its_heads_in_order() -> None:
    mem, toks, cmds = _group(seed=3, heads=4)
    a, b = golden.GoldenAccelerator(P, mem), golden.GoldenAccelerator(P, mem)
    g = group_commands(cmds, tag=5)
    resp = a.run(g)
    singles = [b.run(AttendCmd(**{**c.__dict__, "tag": 5})) for c in cmds]
    assert isinstance(resp, GroupAttendResp) and resp.d == 8
    assert resp.sections == tuple(singles)
    assert [s.head_id for s in resp.sections] == [0, 1, 2, 3]
    # importance summed over the heads, head importance per head: the same state
    assert np.array_equal(a.imp, b.imp) and np.array_equal(a.head_imp, b.head_imp)
    assert a.run(ReadImportanceCmd(1, len(toks), cmds[0].tokens_base)) == \
        b.run(ReadImportanceCmd(1, len(toks), cmds[0].tokens_base))
    assert a.run(TopkHeadsCmd(2, 4, 2)) == b.run(TopkHeadsCmd(2, 4, 2))
    # traffic: list and K MSB once, K LSB once if any head requantized, V the union
    t = a.last_traffic
    sel = set()
    for s in singles:
        sel |= set(s.token_ids(toks))
    row = lambda bits: -(-8 * bits // 8 // P.burst_bytes) or 1  # noqa: E731  (bursts of a row: 1 here)
    assert t.token_list == 1 and t.k_msb == 9 * row(6)
    assert t.k_lsb == (9 * row(4) if any(s.requantized for s in singles) else 0)
    assert t.v == len(sel) * row(8)


def test_value_threshold_heads() -> None:
    """valueThresh heads: the bit survives the packet, a plain ATTEND refuses it, and each
    head sums the V rows of p_j >= min(T, pmax) (computed here from the probabilities)."""
    mem, toks, cmds = _group(seed=4, heads=3, n=12)
    thr = [0, 3000, 65535]
    cmds = [AttendCmd(**{**c.__dict__, "value_thresh": True, "value_topk": t}) for c, t in zip(cmds, thr)]
    g = group_commands(cmds, tag=9)
    assert [h.value_thresh for h in decode_command(g.encode()).heads] == [True] * 3
    with pytest.raises(CommandError, match="valueThresh"):
        cmds[0].encode()
    acc = golden.GoldenAccelerator(P, mem)
    resp = acc.run(g)
    k_msb = mem.read_rows(cmds[0].k_msb_base, toks, 8, 6, True)
    k_lsb = mem.read_rows(cmds[0].k_lsb_base, toks, 8, 4, False)
    v = mem.read_rows(cmds[0].v_base, toks, 8, 8, True)
    union: set[int] = set()
    for c, s in zip(cmds, resp.sections):
        pr = golden.attention_probs(c.query, k_msb, k_lsb, 4, c.score_scale, c.score_shift, True,
                                    c.requant_threshold, P)
        want = [j for j in range(len(toks)) if pr.p[j] >= min(c.value_topk, pr.pmax)]
        assert list(s.positions) == want and s.m == len(want) >= 1
        assert list(s.out) == [int(sum(int(pr.p[j]) * int(v[j, i]) for j in want)) for i in range(8)]
        union |= set(want)
    assert resp.sections[0].m == len(toks)  # T = 0 keeps every position
    assert acc.last_traffic.v == len(union)


def test_response_words_and_cycles_masked() -> None:
    mem, _, cmds = _group(seed=1, heads=2)
    exp = golden.GoldenAccelerator(P, mem).execute_packet(group_commands(cmds, tag=3).encode())
    resp = decode_response(exp)
    assert isinstance(resp, GroupAttendResp) and len(resp.sections) == 2
    # the same packet with cycle counts in each section compares equal; another bit does not
    s0 = 1
    s1 = s0 + 2 + 8 + -(-resp.sections[0].n // 64)  # header, D outputs, selection map
    hw = list(exp)
    for s in (s0, s1):
        w, last = hw[s + 1]
        hw[s + 1] = (w | (1234 << 32), last)
    assert compare_responses(exp, hw) == []
    w, last = hw[s1 + 2]
    hw[s1 + 2] = (w ^ 1, last)
    assert compare_responses(exp, hw)


@pytest.mark.parametrize("heads", [0, 5])
def test_head_count_out_of_range_is_an_error(heads: int) -> None:
    mem, _, cmds = _group(heads=max(heads, 1))
    g = group_commands(cmds, tag=4)
    if heads == 0:
        g = GroupAttendCmd(**{**g.__dict__, "heads": ()})
    else:
        g = GroupAttendCmd(**{**g.__dict__, "heads": g.heads + tuple(
            HeadQuery(7, g.heads[0].query, 1, 0) for _ in range(heads - len(g.heads)))})
    assert g.problems(P)
    resp = decode_response(golden.GoldenAccelerator(P, mem).execute_packet(g.encode()))
    assert resp == ErrorResp(tag=4, opcode=6)


def test_group_of_one_answers_like_attend() -> None:
    mem, _, cmds = _group(heads=1)
    a = golden.GoldenAccelerator(P, mem).run(group_commands(cmds, tag=8))
    b = golden.GoldenAccelerator(P, mem).run(AttendCmd(**{**cmds[0].__dict__, "tag": 8}))
    assert isinstance(b, AttendResp) and a.sections == (b,)


def test_sharing_checked() -> None:
    _, _, cmds = _group(heads=2)
    other = AttendCmd(**{**cmds[1].__dict__, "n": cmds[1].n - 1})
    with pytest.raises(Exception, match="shares n"):
        group_commands([cmds[0], other])
