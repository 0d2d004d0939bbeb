"""Command/response words: hand-encoded examples, round trips, strictness, stream files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from spatten.contract.commands import (
    AttendCmd, AttendResp, ClearCmd, ClearResp, CommandError, ErrorResp, ReadImportanceCmd,
    ReadImportanceResp, TopkHeadsCmd, TopkResp, TopkTokensCmd, compare_responses,
    decode_command, decode_response, read_stream, split_packets, write_stream,
)
from spatten.tests.hwfixtures import tiny


def _attend(**kw: object) -> AttendCmd:
    base = dict(tag=0x1234, n=0x40, value_topk=3, head_id=7, query=(1, -1, 2, -32768, 5),
                d=16, k_msb_bits=6, k_lsb_bits=4, v_bits=8, requant=True, accum_importance=True,
                score_shift=30, requant_threshold=65536, score_scale=0xABCD,
                k_msb_base=0x1000, k_lsb_base=0x2000, v_base=0x3000, tokens_base=0x4000)
    base.update(kw)
    return AttendCmd(**base)  # type: ignore[arg-type]


def test_attend_words_by_hand() -> None:
    words = _attend().encode()
    data = [w for w, _ in words]
    # [63:56] headId=07 [55:40] valueTopK=0003 [39:24] N=0040 [23:8] tag=1234 [7:0] op=01
    assert data[0] == 0x07_0003_0040_1234_01
    # D=0x10, kMsb=6<<8, kLsb=4<<13, vBits=8<<18, requant<<23, accum<<24, shift 30<<25,
    # threshold 2^16 << 31 = 2^47, scale 0xABCD << 48
    assert data[1] == 0xABCD_8000_3DA0_8610
    assert data[2:6] == [0x1000, 0x2000, 0x3000, 0x4000]
    assert data[6] == 0x8000_0002_FFFF_0001 and data[7] == 0x0005
    assert [last for _, last in words] == [False] * 7 + [True]


def test_other_commands_by_hand() -> None:
    assert TopkTokensCmd(tag=2, n=10, k=3, tokens_base=0x40).encode() == [
        (0x0003_000A_0002_02, False), (0x40, True)]
    assert TopkHeadsCmd(tag=0xFFFF, n=8, k=2).encode() == [(0x0002_0008_FFFF_03, True)]
    assert ClearCmd(tag=1, tokens=True, heads=False).encode() == [(0x01_0001_04, True)]
    assert ClearCmd(tag=1, tokens=False, heads=True).encode() == [(0x02_0001_04, True)]
    assert ReadImportanceCmd(tag=9, n=5, tokens_base=0x80).encode() == [
        (0x0005_0009_05, False), (0x80, True)]


def test_responses_by_hand() -> None:
    r = AttendResp(tag=3, n=10, requantized=True, pmax=0x1_0000, out=(-1, 5),
                   selected=(0, 1, 1, 0, 0, 1, 1, 0, 0, 1), cycles=77)
    assert r.m == 5 and r.positions == (1, 2, 5, 6, 9)
    assert r.token_ids(range(100, 110)) == (101, 102, 105, 106, 109)
    assert r.encode() == [
        (0x000A_01_0005_0003_01, False),  # N=10 [63:48], requant [40], M=5 [39:24]
        (77 << 32 | 0x1_0000, False),
        (0xFFFF_FFFF_FFFF_FFFF, False), (5, False),
        (0b10_0110_0110, True)]  # bit j: position j selected
    # 65 positions: two selection words, the second holding position 64 in bit 0
    r2 = AttendResp(tag=1, n=65, requantized=False, pmax=1, out=(), selected=(1,) + (0,) * 63 + (1,))
    assert [w for w, _ in r2.encode()[2:]] == [1, 1]
    with pytest.raises(CommandError, match="selected must be 3 bits"):
        AttendResp(tag=1, n=3, requantized=False, pmax=1, out=(), selected=(1, 0))
    # a header whose m disagrees with the selection is refused
    bad = [(w + (1 << 24), last) if i == 0 else (w, last) for i, (w, last) in enumerate(r.encode())]
    with pytest.raises(CommandError, match="m = 6 but 5 positions"):
        decode_response(bad)
    assert ErrorResp(tag=4, opcode=9).encode() == [(0x0009_0004_FF, True)]
    assert TopkResp(tag=1, ids=(), heads=True).encode() == [(0x0001_03, True)]
    assert ReadImportanceResp(tag=1, values=(2**32 - 1,)).encode() == [
        (0x0001_0001_05, False), (0xFFFF_FFFF, True)]


def _random_commands(rng: random.Random) -> list[object]:
    out: list[object] = []
    for _ in range(200):
        d = rng.randint(0, 255)
        out.append(AttendCmd(
            tag=rng.randrange(1 << 16), n=rng.randrange(1 << 16), value_topk=rng.randrange(1 << 16),
            head_id=rng.randrange(256), query=[rng.randint(-32768, 32767) for _ in range(d)],
            k_msb_bits=rng.randrange(32), k_lsb_bits=rng.randrange(32), v_bits=rng.randrange(32),
            requant=rng.random() < 0.5, accum_importance=rng.random() < 0.5,
            score_shift=rng.randrange(64), requant_threshold=rng.randrange(1 << 17),
            score_scale=rng.randrange(1 << 16), k_msb_base=rng.randrange(1 << 64),
            k_lsb_base=rng.randrange(1 << 64), v_base=rng.randrange(1 << 64),
            tokens_base=rng.randrange(1 << 64)))
        out.append(TopkTokensCmd(rng.randrange(1 << 16), rng.randrange(1 << 16),
                                 rng.randrange(1 << 16), rng.randrange(1 << 64)))
        out.append(TopkHeadsCmd(rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 16)))
        out.append(ClearCmd(rng.randrange(1 << 16), rng.random() < 0.5, rng.random() < 0.5))
        out.append(ReadImportanceCmd(rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 64)))
    return out


def test_command_roundtrip() -> None:
    for cmd in _random_commands(random.Random(1)):
        words = cmd.encode()  # type: ignore[attr-defined]
        assert all(0 <= w < 1 << 64 for w, _ in words)
        assert decode_command(words) == cmd


def test_response_roundtrip() -> None:
    rng = random.Random(2)
    for _ in range(300):
        m = rng.randint(0, 40)
        n = rng.choice([rng.randint(0, 200), rng.randrange(1 << 16)])
        resps = [
            AttendResp(tag=rng.randrange(1 << 16), n=n,
                       requantized=rng.random() < 0.5, pmax=rng.randrange(1 << 17),
                       out=tuple(rng.randint(-(1 << 63), (1 << 63) - 1) for _ in range(rng.randint(0, 64))),
                       selected=tuple(int(rng.random() < 0.3) for _ in range(n)),
                       cycles=rng.randrange(1 << 32)),
            TopkResp(rng.randrange(1 << 16), tuple(rng.randrange(1 << 16) for _ in range(m)),
                     heads=rng.random() < 0.5),
            ClearResp(rng.randrange(1 << 16)),
            ReadImportanceResp(rng.randrange(1 << 16), tuple(rng.randrange(1 << 32) for _ in range(m))),
            ErrorResp(rng.randrange(1 << 16), rng.randrange(256)),
        ]
        for r in resps:
            back = decode_response(r.encode())
            assert back == r
            if isinstance(r, AttendResp):
                assert back.cycles == r.cycles and back.m == r.m


@pytest.mark.parametrize("cmd,match", [
    (lambda: _attend(tag=1 << 16), r"AttendCmd\.tag=65536 does not fit unsigned 16"),
    (lambda: _attend(n=-1), "AttendCmd.n=-1"),
    (lambda: _attend(query=(40000,)), r"AttendCmd\.query\[0\]=40000 does not fit signed 16"),
    (lambda: _attend(requant_threshold=1 << 17), "requant_threshold"),
    (lambda: _attend(score_shift=64), "score_shift"),
    (lambda: _attend(k_msb_base=1 << 64), "k_msb_base"),
    (lambda: TopkHeadsCmd(0, 1 << 16, 0), "TopkHeadsCmd.n"),
    (lambda: AttendResp(0, 1, False, 1 << 17, (), (0,)), "pmax"),
])
def test_encode_range_errors(cmd: object, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        cmd().encode()  # type: ignore[operator]


def test_problems_against_params() -> None:
    p = tiny()
    assert _attend(n=64, d=16, query=(0,) * 16).problems(p) == []
    bad = _attend(n=65, d=17, query=(0,) * 17, k_msb_bits=10, k_lsb_bits=7, v_bits=0, head_id=8)
    text = " ".join(bad.problems(p))
    for s in ("N=65", "D=17", "kMsbBits+kLsbBits=17", "vBits=0", "headId=8"):
        assert s in text
    assert _attend(n=0, query=(0,) * 16).problems(p) != []
    assert _attend(k_msb_bits=0, query=(0,) * 16).problems(p) != []
    assert TopkTokensCmd(0, 65, 1, 0).problems(p) and not TopkTokensCmd(0, 64, 1, 0).problems(p)
    assert TopkHeadsCmd(0, 9, 1).problems(p) and not TopkHeadsCmd(0, 8, 1).problems(p)
    assert ReadImportanceCmd(0, 65, 0).problems(p) and not ReadImportanceCmd(0, 0, 0).problems(p)


def test_malformed_packets() -> None:
    words = _attend(query=(0,) * 16).encode()
    with pytest.raises(CommandError) as ei:
        decode_command(words[:-1])  # last missing / short
    assert ei.value.opcode == 1 and ei.value.tag == 0x1234
    with pytest.raises(CommandError, match="expected 10"):
        decode_command(words + [(0, True)])
    with pytest.raises(CommandError, match="unknown opcode 9") as ei:
        decode_command([(0x0042_09, True)])
    assert ei.value.tag == 0x42
    with pytest.raises(CommandError):
        decode_command([(0x02, True)])  # TOPK_TOKENS is two words


def test_decode_response_strict() -> None:
    with pytest.raises(CommandError, match="reserved"):
        decode_response([(0x04 | 1 << 30, True)])
    with pytest.raises(CommandError, match="last flags"):
        decode_response([(0x04, False)])
    with pytest.raises(CommandError, match="reserved"):  # unused id lane not zero
        decode_response([(0x0001_0000_02, False), (0x0001_0005, True)])
    with pytest.raises(CommandError, match="expected 3"):
        decode_response([(0x0005_0000_02, False), (0x0, True)])


def test_split_and_compare() -> None:
    a = AttendResp(1, 2, False, 3, (4,), (1, 0), cycles=100).encode()
    b = AttendResp(1, 2, False, 3, (4,), (1, 0), cycles=999).encode()
    assert compare_responses(a, b) == []
    c = AttendResp(1, 2, False, 3, (-4,), (1, 0)).encode()
    errs = compare_responses(a, c)
    assert len(errs) == 1 and "packet 0 word 2" in errs[0]
    packets, rest = split_packets(a + ClearResp(2).encode() + [(1, False)])
    assert len(packets) == 2 and rest == [(1, False)]
    assert compare_responses(a, a + ClearResp(2).encode()) != []


def test_stream_file(tmp_path: Path) -> None:
    words = [(0x0102030405060708, True), (0, False), ((1 << 64) - 1, True)]
    f = write_stream(tmp_path / "s.bin", words)
    raw = f.read_bytes()
    assert raw[:16] == bytes([8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert len(raw) == 48 and read_stream(f) == words
    (tmp_path / "bad.bin").write_bytes(bytes(17))
    with pytest.raises(CommandError, match="not a multiple of 16"):
        read_stream(tmp_path / "bad.bin")
    (tmp_path / "flags.bin").write_bytes(bytes(8) + bytes([2]) + bytes(7))
    with pytest.raises(CommandError, match="flags"):
        read_stream(tmp_path / "flags.bin")
    with pytest.raises(CommandError, match="64-bit"):
        write_stream(tmp_path / "x.bin", [(-1, True)])
    assert not (tmp_path / "x.bin").exists()


def test_non_integers_refused() -> None:
    with pytest.raises(CommandError, match=r"query\[1\]: expected an integer"):
        _attend(query=(1, 0.5)).encode()
    with pytest.raises(CommandError, match="tag: expected an integer"):
        ClearCmd(tag=1.0).encode()  # type: ignore[arg-type]
    import numpy as np
    assert ClearCmd(tag=np.int64(3)).encode() == ClearCmd(tag=3).encode()
