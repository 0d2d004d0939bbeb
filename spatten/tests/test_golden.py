"""The golden model against hand computations and independent formulations.

No expected value here comes from the code under test: they are worked out by hand
(comments show the arithmetic), computed by a different method (Decimal powers, rank
counting, float softmax within the analytic bound), or are properties SPEC states.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, getcontext

import numpy as np
import pytest

from spatten.contract import golden
from spatten.contract.commands import (
    AttendCmd, AttendResp, ClearCmd, ClearResp, ErrorResp, ReadImportanceCmd,
    ReadImportanceResp, TopkHeadsCmd, TopkResp, TopkTokensCmd, decode_response,
)
from spatten.contract.memimage import MemoryImage
from spatten.contract.reference import KAPPA
from spatten.tests.hwfixtures import tiny, wide

P = tiny()


# ---- exp2 table ------------------------------------------------------------------------

def test_exp2_lut_against_decimal() -> None:
    getcontext().prec = 60
    lut = golden.exp2_lut(P)
    assert len(lut) == 256
    for f in range(256):
        x = Decimal(2) ** (Decimal(16) - Decimal(f) / Decimal(256))
        assert lut[f] == int(x.to_integral_value(rounding=ROUND_HALF_UP)), f
    # by hand: 2^16 = 65536; 2^16/sqrt(2) = 46340.95; 2^15 * 2^(1/256) = 32856.84
    assert (lut[0], lut[128], lut[255]) == (65536, 46341, 32857)


# ---- softmax ---------------------------------------------------------------------------

def test_softmax_equal_scores() -> None:
    # d = 0 -> e = 2^16 each; E = 2^17; R = 2^48 / 2^17 = 2^31; p = 2^16 * 2^31 >> 32 = 2^15
    e, E, R, p = golden.softmax_fixed([7, 7], 1, 0, P)
    assert e.tolist() == [65536, 65536] and E == 131072 and R == 2**31 and p.tolist() == [32768] * 2


def test_softmax_by_hand() -> None:
    # scores [256, 0], scale 1, shift 0: t = [0, 256] -> e = [65536, 65536 >> 1 = 32768]
    # E = 98304 = 3 * 2^15; R = floor(2^48 / E) = floor(2^33 / 3) = 2863311530
    # p0 = floor(65536 * R / 2^32) = floor(R / 2^16) = 43690 (43690.67)
    # p1 = floor(32768 * R / 2^32) = floor(R / 2^17) = 21845 (21845.33)
    e, E, R, p = golden.softmax_fixed([256, 0], 1, 0, P)
    assert e.tolist() == [65536, 32768] and E == 98304 and R == 2863311530
    assert p.tolist() == [43690, 21845]


def test_softmax_shift_floor_and_cutoff() -> None:
    lut = [int((Decimal(2) ** (16 - Decimal(f) / 256)).to_integral_value(ROUND_HALF_UP))
           for f in range(256)]
    # d = 3, scale 100, shift 2: t = floor(300 / 4) = 75 -> e = LUT[75]
    e, _, _, _ = golden.softmax_fixed([0, -3], 100, 2, P)
    assert e.tolist() == [65536, lut[75]]
    # t = d (scale 1): 4096 = 16.0 -> 65536 >> 16 = 1; 4352 = 17.0 -> 0;
    # 8191 -> LUT[255] >> 31 = 0; 8192 = 32.0 -> 0 by the cut-off; 600 = 2 + 88/256
    e, _, _, _ = golden.softmax_fixed([8192, 8192 - 4096, 8192 - 4352, 1, 0, 8192 - 600], 1, 0, P)
    assert e.tolist() == [65536, 1, 0, 0, 0, lut[88] >> 2]


def test_softmax_single_token() -> None:
    # N = 1: e = 2^16, E = 2^16, R = 2^32, p = 2^16 exactly
    e, E, R, p = golden.softmax_fixed([-123456], 65535, 0, P)
    assert (E, R, p.tolist()) == (65536, 2**32, [65536])


def test_softmax_within_analytic_bound() -> None:
    """p_j / 2^16 vs the float softmax with the same score unit, per the bound derived in
    spatten.contract.reference.fixed_point_tolerance (per element)."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 300))
        s = rng.integers(-(1 << 20), 1 << 20, n)
        scale, shift = int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(14, 30))
        _, _, _, p = golden.softmax_fixed(s, scale, shift, P)
        x = (s.max() - s) * scale / 2.0**shift / 256.0
        pi = np.exp2(-x) / np.exp2(-x).sum()
        bound = KAPPA * pi + 2.0**-16 * (2.5 + 1.5 * (1 + KAPPA) * n * pi) + 1e-12
        assert np.all(np.abs(p / 65536.0 - pi) <= bound)


# ---- top-k -----------------------------------------------------------------------------

def _topk_by_rank(keys: list[int], k: int) -> list[int]:
    """Independent formulation: j is kept iff fewer than k items beat it, where i beats j
    when keys[i] > keys[j] or (keys[i] == keys[j] and i < j)."""
    n = len(keys)
    return [j for j in range(n)
            if sum(keys[i] > keys[j] or (keys[i] == keys[j] and i < j) for i in range(n)) < k]


def test_topk_against_rank_counting() -> None:
    rng = np.random.default_rng(3)
    for _ in range(400):
        n = int(rng.integers(1, 40))
        keys = rng.integers(0, int(rng.choice([2, 5, 1000])), n).tolist()  # many ties
        k = int(rng.integers(0, n + 3))
        assert golden.topk_select(keys, k).tolist() == _topk_by_rank(keys, k)


def test_topk_edges() -> None:
    assert golden.topk_select([5, 5, 5, 5], 2).tolist() == [0, 1]  # ties: lower positions
    assert golden.topk_select([1, 9, 9, 3], 1).tolist() == [1]
    assert golden.topk_select([1, 9, 9, 3], 0).tolist() == []
    assert golden.topk_select([1, 9, 9, 3], 4).tolist() == [0, 1, 2, 3]
    assert golden.topk_select([1, 9, 9, 3], 99).tolist() == [0, 1, 2, 3]
    assert golden.topk_select([7], 1).tolist() == [0]
    assert golden.topk_select([2**48 - 1, 0, 2**48 - 1], 2).tolist() == [0, 2]


# ---- attend (pure) ---------------------------------------------------------------------

def test_attend_by_hand() -> None:
    # D = 1, q = [1], keys [1], [0] (no LSB): s = [1, 0]; scale 256, shift 0:
    # t = [0, 256] -> p = [43690, 21845] (test_softmax_by_hand).
    # v = [3], [-6]: o = 43690*3 - 21845*6 = 131070 - 131070 = 0
    r = golden.attend([1], [[1], [0]], None, [[3], [-6]], k_lsb_bits=0, score_scale=256,
                      score_shift=0, value_topk=0, params=P)
    assert r.probs.p.tolist() == [43690, 21845] and r.selected.tolist() == [0, 1]
    assert r.out.tolist() == [0] and r.head_imp_increment == 0
    # value_topk = 1 keeps position 0: o = 131070; |o| >> 16 = 1
    r = golden.attend([1], [[1], [0]], None, [[3], [-6]], k_lsb_bits=0, score_scale=256,
                      score_shift=0, value_topk=1, params=P)
    assert r.selected.tolist() == [0] and r.out.tolist() == [131070] and r.head_imp_increment == 1


def test_attend_requant_taken_and_not() -> None:
    # MSB keys all equal -> pass 1 uniform, pmax = 2^16 / 4 = 16384 (E = 4 * 2^16,
    # R = 2^30, p = 2^16 * 2^30 >> 32 = 2^14).
    # Full keys (msb << 2) | lsb: lsb [0, 0, 0, 3] -> with q = [1], s = [4, 4, 4, 7];
    # scale 256 shift 0 -> t = [768, 768, 768, 0] -> e = [8192, 8192, 8192, 65536],
    # E = 90112, R = floor(2^48 / 90112) = 3123612578 (2^48 / 90112 = 3123612578.9)
    # p = [floor(8192 R / 2^32), ..., floor(65536 R / 2^32)] = [5957, 5957, 5957, 47662]
    # (8192 * 3123612578 / 2^32 = 5957.82; 65536 * 3123612578 / 2^32 = 47662.6)
    msb, lsb = [[1]] * 4, [[0], [0], [0], [3]]
    kw = dict(k_lsb_bits=2, score_scale=256, score_shift=0, value_topk=0, params=P)
    v = [[1]] * 4
    r = golden.attend([1], msb, lsb, v, requant=True, requant_threshold=16385, **kw)
    assert r.probs.requantized and r.probs.pmax_pass1 == 16384
    assert r.probs.p.tolist() == [5957, 5957, 5957, 47662] and r.probs.pmax == 47662
    r = golden.attend([1], msb, lsb, v, requant=True, requant_threshold=16384, **kw)  # not <
    assert not r.probs.requantized and r.probs.p.tolist() == [16384] * 4
    r = golden.attend([1], msb, lsb, v, requant=False, requant_threshold=65536, **kw)
    assert not r.probs.requantized
    r = golden.attend([1], msb, None, v, requant=True, requant_threshold=65536,
                      **dict(kw, k_lsb_bits=0))  # no LSB plane: never pass 2
    assert not r.probs.requantized


def test_value_topk_choices() -> None:
    p = np.array([10, 30, 30, 20, 5])
    assert golden.value_positions(p, 0).tolist() == [0, 1, 2, 3, 4]
    assert golden.value_positions(p, 5).tolist() == [0, 1, 2, 3, 4]
    assert golden.value_positions(p, 9).tolist() == [0, 1, 2, 3, 4]
    assert golden.value_positions(p, 1).tolist() == [1]
    assert golden.value_positions(p, 3).tolist() == [1, 2, 3]


def test_value_threshold_choices() -> None:
    """Threshold mode: the positions with p_j >= min(T, pmax), at least the largest."""
    p = np.array([10, 30, 30, 20, 5])
    assert golden.value_positions(p, 20, value_thresh=True).tolist() == [1, 2, 3]
    assert golden.value_positions(p, 21, value_thresh=True).tolist() == [1, 2]
    assert golden.value_positions(p, 0, value_thresh=True).tolist() == [0, 1, 2, 3, 4]
    assert golden.value_positions(p, 5, value_thresh=True).tolist() == [0, 1, 2, 3, 4]
    assert golden.value_positions(p, 65535, value_thresh=True).tolist() == [1, 2]  # above pmax: the max


# ---- the accelerator -------------------------------------------------------------------

def _setup(n_rows: int = 32, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    mem = MemoryImage.for_params(P)
    k = rng.integers(-512, 512, (n_rows, d))  # 10-bit keys: 6 MSB + 4 LSB
    msb, lsb = k >> 4, k & 15
    v = rng.integers(-128, 128, (n_rows, d))
    bases = dict(k_msb_base=mem.add_plane(msb, 6, True), k_lsb_base=mem.add_plane(lsb, 4, False),
                 v_base=mem.add_plane(v, 8, True))
    return rng, mem, msb, lsb, v, bases


def test_accelerator_matches_pure_attend_with_gathered_rows() -> None:
    rng, mem, msb, lsb, v, bases = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    toks = np.array([31, 2, 17, 2, 5, 0, 30])  # any order, duplicates allowed
    tl = mem.add_tokens(toks)
    q = rng.integers(-2000, 2000, 8)
    cmd = AttendCmd(tag=9, n=len(toks), query=tuple(q), tokens_base=tl, k_msb_bits=6,
                    k_lsb_bits=4, v_bits=8, score_scale=50000, score_shift=30, value_topk=3,
                    requant=True, requant_threshold=65536, **bases)
    resp = acc.run(cmd)
    ref = golden.attend(q, msb[toks], lsb[toks], v[toks], k_lsb_bits=4, score_scale=50000,
                        score_shift=30, value_topk=3, requant=True, requant_threshold=65536,
                        params=P)
    assert isinstance(resp, AttendResp) and resp.cycles is None
    assert resp.out == tuple(ref.out.tolist()) and resp.m == 3 and resp.n == 7
    assert resp.token_ids(toks) == tuple(toks[ref.selected].tolist())
    assert resp.positions == tuple(int(j) for j in ref.selected)
    assert resp.requantized and resp.pmax == ref.probs.pmax
    # o_i = sum over selected of p_j v_ji, recomputed with Python ints
    exp = [sum(int(ref.probs.p[j]) * int(v[toks[j], i]) for j in ref.selected) for i in range(8)]
    assert list(resp.out) == exp
    t = acc.last_traffic
    assert (t.token_list, t.k_msb, t.k_lsb, t.v) == (1, 7, 7, 3)  # rows of <= 32 B: 1 burst


def test_importance_accumulation_and_saturation() -> None:
    rng, mem, msb, lsb, v, bases = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    toks = np.array([4, 9, 4])
    tl = mem.add_tokens(toks)
    # q = 0: all scores 0, p = 2^16 / 3 each: E = 3 * 2^16, R = floor(2^32 / 3) = 1431655765,
    # p = floor(2^16 * R / 2^32) = floor(R / 2^16) = 21845
    cmd = AttendCmd(tag=1, n=3, query=(0,) * 8, tokens_base=tl, k_msb_bits=6, k_lsb_bits=4,
                    v_bits=8, score_scale=1, score_shift=0, accum_importance=True, head_id=2,
                    **bases)
    resp = acc.run(cmd)
    assert resp.pmax == 21845
    assert acc.imp[4] == 2 * 21845 and acc.imp[9] == 21845 and acc.imp.sum() == 3 * 21845
    # o_i = 21845 * (2 v_4i + v_9i); head importance += sum_i |o_i| >> 16
    o = [21845 * (2 * int(v[4, i]) + int(v[9, i])) for i in range(8)]
    assert list(resp.out) == o
    assert acc.head_imp[2] == sum(abs(x) >> 16 for x in o) and acc.head_imp.sum() == acc.head_imp[2]
    acc.imp[9] = 2**32 - 100
    acc.head_imp[2] = 2**48 - 1
    acc.run(cmd)
    assert acc.imp[9] == 2**32 - 1 and acc.imp[4] == 4 * 21845 and acc.head_imp[2] == 2**48 - 1
    # READ_IMPORTANCE in list order
    assert acc.run(ReadImportanceCmd(5, 3, tl)) == ReadImportanceResp(5, (4 * 21845, 2**32 - 1, 4 * 21845))
    # accum_importance off: nothing changes
    before = acc.imp.copy()
    acc.run(AttendCmd(**{**cmd.__dict__, "accum_importance": False}))
    assert np.array_equal(acc.imp, before)


def test_topk_tokens_heads_clear() -> None:
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    ids = [10, 11, 12, 13, 14, 15]
    for i, val in zip(ids, [5, 9, 9, 1, 9, 0]):
        acc.imp[i] = val
    tl = mem.add_tokens(ids)
    # keep 2: the 9s at positions 1, 2 (position 4 loses the tie) -> ids 11, 12
    assert acc.run(TopkTokensCmd(1, 6, 2, tl)) == TopkResp(1, (11, 12))
    assert acc.run(TopkTokensCmd(1, 6, 4, tl)) == TopkResp(1, (10, 11, 12, 14))
    assert acc.run(TopkTokensCmd(1, 6, 0, tl)) == TopkResp(1, ())
    assert acc.run(TopkTokensCmd(1, 0, 3, tl)) == TopkResp(1, ())
    acc.head_imp[:] = [3, 7, 7, 0, 2**48 - 1, 0, 0, 0]
    assert acc.run(TopkHeadsCmd(2, 8, 2)) == TopkResp(2, (1, 4), heads=True)
    assert acc.run(TopkHeadsCmd(2, 4, 2)) == TopkResp(2, (1, 2), heads=True)
    assert acc.run(ClearCmd(3, tokens=True, heads=False)) == ClearResp(3)
    assert acc.imp.sum() == 0 and acc.head_imp.sum() > 0
    assert acc.run(ClearCmd(4, tokens=False, heads=True)) == ClearResp(4)
    assert acc.head_imp.sum() == 0
    # all zero: ties everywhere, lowest positions win
    assert acc.run(TopkTokensCmd(1, 6, 3, tl)) == TopkResp(1, (10, 11, 12))


def test_single_token_and_all_values() -> None:
    rng, mem, msb, lsb, v, bases = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    tl = mem.add_tokens([7])
    q = tuple(rng.integers(-100, 100, 8).tolist())
    # N = 1: p = 2^16 exactly, o = 2^16 * v_7
    r = acc.run(AttendCmd(tag=0, n=1, query=q, tokens_base=tl, k_msb_bits=6, v_bits=8,
                          score_scale=40000, score_shift=10, **bases))
    assert r.out == tuple(65536 * int(x) for x in v[7]) and r.token_ids([7]) == (7,) and r.pmax == 65536


@pytest.mark.parametrize("mutate", [
    dict(n=0), dict(n=65), dict(d=0, query=()), dict(d=17, query=(0,) * 17), dict(k_msb_bits=0),
    dict(k_msb_bits=17), dict(k_lsb_bits=16), dict(k_msb_bits=10, k_lsb_bits=7), dict(v_bits=0),
    dict(v_bits=17), dict(head_id=8),
])
def test_attend_error_responses(mutate: dict) -> None:
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    good = dict(tag=0xBEEF, n=4, query=(1,) * 8, tokens_base=0, k_msb_base=0, v_base=0,
                k_msb_bits=6, k_lsb_bits=4, v_bits=8, score_scale=1, score_shift=0,
                accum_importance=True)
    assert isinstance(acc.run(AttendCmd(**good)), AttendResp)
    imp = acc.imp.copy()
    words = acc.execute(AttendCmd(**{**good, **mutate}).encode())
    assert words == [(0xFF | 0xBEEF << 8 | 1 << 24, True)]
    assert np.array_equal(acc.imp, imp)  # an error changes no state


def test_other_error_responses() -> None:
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    assert acc.run(TopkTokensCmd(3, 65, 1, 0)) == ErrorResp(3, 2)
    assert acc.run(TopkHeadsCmd(3, 9, 1)) == ErrorResp(3, 3)
    assert acc.run(ReadImportanceCmd(3, 65, 0)) == ErrorResp(3, 5)
    # unknown opcode 0x2A, three words: remaining words consumed, one error response
    out = acc.execute([(0x2A | 0x77 << 8, False), (1, False), (2, True)])
    assert decode_response(out) == ErrorResp(0x77, 0x2A)
    # a TOPK_HEADS packet one word too long
    out = acc.execute([(0x03 | 5 << 8, False), (0, True)])
    assert decode_response(out) == ErrorResp(5, 3)


def test_stream_with_partial_packet() -> None:
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    words = ClearCmd(1).encode() + ReadImportanceCmd(2, 0, 0).encode()
    assert acc.execute(words[:2]) == ClearResp(1).encode()  # second packet incomplete
    assert acc.execute(words[2:]) == ReadImportanceResp(2, ()).encode()


def test_bad_bases_get_error_responses() -> None:
    """SPEC 5: a misaligned base, or one at or above 2^dramAddrBits, is an error response
    (the RequestIntake checks every base of the packet, used or not)."""
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    assert acc.run(TopkTokensCmd(1, 2, 1, 0x11)) == ErrorResp(1, 2)
    assert acc.run(ReadImportanceCmd(2, 2, 1 << 32)) == ErrorResp(2, 5)
    assert acc.run(AttendCmd(tag=3, n=1, query=(1,), tokens_base=0, k_msb_base=0, k_lsb_base=16,
                             v_base=0, k_msb_bits=8, v_bits=8, score_scale=1, score_shift=0)) == ErrorResp(3, 1)


def test_undefined_behaviour_is_refused() -> None:
    """A row beyond the address space (its base is valid): the DRAM model reports it; the
    golden model refuses to predict a response."""
    _, mem, *_ = _setup()
    acc = golden.GoldenAccelerator(P, mem)
    with pytest.raises(golden.GoldenUndefined, match="address space"):
        acc.run(AttendCmd(tag=0, n=1, query=(1,), tokens_base=0, k_msb_base=2**32 - 32,
                          v_base=0, k_msb_bits=8, v_bits=8, score_scale=1, score_shift=0))


def test_golden_vs_float_within_tolerance() -> None:
    """A few hundred random requests within the derived tolerance (the full study is
    tools/golden_vs_float.py)."""
    from spatten.contract.reference import attend_dequantized, fixed_point_tolerance

    pw = wide()
    rng = np.random.default_rng(11)
    for _ in range(150):
        n, d = int(rng.integers(1, 400)), int(rng.integers(1, 65))
        q = rng.integers(-(1 << 15), 1 << 15, d)
        k = rng.integers(-(1 << 7), 1 << 7, (n, d))
        v = rng.integers(-(1 << 7), 1 << 7, (n, d))
        c = float(rng.uniform(0.3, 8.0)) / (np.abs(q).sum() * 64)  # logit spread of a few nats
        scale = 256 * c / math.log(2)
        shift = 15 - math.floor(math.log2(scale))
        sc = round(scale * 2**shift)
        topk = int(rng.integers(0, n + 1))
        r = golden.attend(q, k, None, v, k_lsb_bits=0, score_scale=sc, score_shift=shift,
                          value_topk=topk, params=pw)
        _, o = attend_dequantized(q, k, v, r.selected, sc, shift)
        vmax = float(np.abs(v[r.selected]).max())
        err = np.abs(r.out / 65536.0 - o.numpy()).max()
        assert err <= fixed_point_tolerance(n, len(r.selected), vmax)


def test_wide_rows_stream_file_and_traffic(tmp_path) -> None:
    """D = 64 at 16 bits: 128-byte rows (4 bursts); commands through a stream file."""
    from spatten.contract.commands import read_stream, split_packets, write_stream

    pw = wide()
    rng = np.random.default_rng(4)
    mem = MemoryImage.for_params(pw)
    n_rows, d = 50, 64
    k = rng.integers(-(1 << 15), 1 << 15, (n_rows, d))
    v = rng.integers(-(1 << 15), 1 << 15, (n_rows, d))
    kb, vb = mem.add_plane(k, 16, True), mem.add_plane(v, 16, True)
    toks = rng.permutation(n_rows)[:37]
    tl = mem.add_tokens(toks)  # 74 bytes: 3 bursts
    q = rng.integers(-(1 << 15), 1 << 15, d)
    cmd = AttendCmd(tag=77, n=37, query=tuple(q), k_msb_base=kb, v_base=vb, tokens_base=tl,
                    k_msb_bits=16, v_bits=16, score_scale=40000, score_shift=40, value_topk=10)
    f = write_stream(tmp_path / "cmds.bin", cmd.encode() + ClearCmd(78).encode())
    acc = golden.GoldenAccelerator(pw, mem)
    packets, rest = split_packets(acc.execute(read_stream(f)))
    assert rest == [] and len(packets) == 2
    resp = decode_response(packets[0])
    # recompute with Python ints from the original arrays
    p = golden.softmax_fixed([sum(int(a) * int(b) for a, b in zip(q, k[t])) for t in toks],
                             40000, 40, pw)[3]
    order = sorted(range(37), key=lambda j: (-int(p[j]), j))[:10]
    sel = sorted(order)
    assert resp.token_ids(toks) == tuple(int(toks[j]) for j in sel)
    assert resp.out == tuple(sum(int(p[j]) * int(v[toks[j], i]) for j in sel) for i in range(d))
    t = acc.last_traffic
    assert (t.token_list, t.k_msb, t.k_lsb, t.v, t.total) == (3, 37 * 4, 0, 10 * 4, 3 + 148 + 40)
    assert decode_response(packets[1]) == ClearResp(78)


def test_geometry_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="geometry"):
        golden.GoldenAccelerator(P, MemoryImage(64, 32))
