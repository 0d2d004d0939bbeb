"""MemoryImage: packing at every width, layout, token lists, files, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spatten.contract.memimage import (
    MemImageError, MemoryImage, element_range, pack_rows, stride, unpack_rows,
)
from spatten.tests.hwfixtures import tiny


def _bigint_pack(values: np.ndarray, bits: int, nbytes: int) -> np.ndarray:
    """Independent formulation: a row is the integer sum(u_i << (i*bits)), little-endian."""
    rows = []
    for row in values:
        acc = 0
        for i, x in enumerate(row):
            acc |= (int(x) & ((1 << bits) - 1)) << (i * bits)
        rows.append(np.frombuffer(acc.to_bytes(nbytes, "little"), dtype=np.uint8))
    return np.array(rows, dtype=np.uint8).reshape(len(values), nbytes)


@pytest.mark.parametrize("d,bits,burst,expected", [
    (16, 16, 32, 32), (16, 6, 32, 32), (64, 16, 32, 128), (5, 3, 8, 8), (33, 8, 32, 64),
    (64, 4, 32, 32), (16, 0, 32, 0), (1, 1, 32, 32), (64, 10, 32, 96),
])
def test_stride(d: int, bits: int, burst: int, expected: int) -> None:
    assert stride(d, bits, burst) == expected


def test_pack_by_hand() -> None:
    # unsigned 4-bit [1, 2, 3]: byte 0 = 0x21, byte 1 = 0x03
    assert pack_rows(np.array([[1, 2, 3]]), 4, False, 8).tolist() == [[0x21, 0x03, 0, 0, 0, 0, 0, 0]]
    # signed 3-bit [-1, 1, -4] = 111, 001, 100 -> bits 0..8 = 1111 0000 1
    assert pack_rows(np.array([[-1, 1, -4]]), 3, True, 8)[0, :2].tolist() == [0x0F, 0x01]


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("signed", [False, True])
def test_pack_roundtrip_every_width(bits: int, signed: bool) -> None:
    rng = np.random.default_rng(bits * 2 + signed)
    lo, hi = element_range(bits, signed)
    for d in (1, 3, 16, 37, 64):
        v = rng.integers(lo, hi + 1, size=(5, d))
        v[0, 0], v[-1, -1] = lo, hi  # extremes
        s = stride(d, bits, 32)
        packed = pack_rows(v, bits, signed, s)
        assert packed.shape == (5, s)
        assert np.array_equal(packed, _bigint_pack(v, bits, s))
        assert np.array_equal(unpack_rows(packed, d, bits, signed), v)


def test_plane_layout_in_image() -> None:
    p = tiny()
    img = MemoryImage.for_params(p, start=0x100)
    v = np.arange(-40, 40).reshape(5, 16)  # signed 8-bit, D = 16 -> 16 bytes, stride 32
    base = img.add_plane(v, 8, True)
    assert base == 0x100
    for t in range(5):
        raw = img.read(base + 32 * t, 32)
        assert list(raw[:16]) == [x & 0xFF for x in v[t]]
        assert raw[16:] == bytes(16)
    assert np.array_equal(img.read_rows(base, [4, 0, 4], 16, 8, True), v[[4, 0, 4]])
    nxt = img.alloc(1)
    assert nxt == base + 5 * 32 and img.alloc(0) == nxt + 32


def test_token_list() -> None:
    img = MemoryImage(32, 32)
    base = img.add_tokens([1, 0x1234, 65535])
    assert img.read(base, 8) == bytes([1, 0, 0x34, 0x12, 0xFF, 0xFF, 0, 0])
    assert img.read_tokens(base, 3).tolist() == [1, 0x1234, 65535]
    assert img.alloc(4) == base + 32


def test_unwritten_reads_zero() -> None:
    img = MemoryImage(32, 20)
    assert img.read(0x1000, 40) == bytes(40)
    assert img.read_rows(0x2000, [3, 7], 16, 16, True).tolist() == [[0] * 16, [0] * 16]
    assert img.size == 0


def test_errors() -> None:
    img = MemoryImage(32, 16)
    with pytest.raises(MemImageError, match="not 32-byte"):
        img.write_plane(16, np.zeros((1, 4), dtype=int), 8, True)
    with pytest.raises(MemImageError, match="not 32-byte"):
        img.write_tokens(2, [1])
    with pytest.raises(MemImageError, match=r"value 128 at \[token 1, element 2\].*signed 8-bit"):
        img.write_plane(0, np.array([[0, 0, 0], [0, 0, 128]]), 8, True)
    with pytest.raises(MemImageError, match="unsigned 4-bit"):
        img.add_plane(np.array([[-1]]), 4, False)
    with pytest.raises(MemImageError, match="exceeds the address space"):
        img.write_plane(65536 - 32, np.zeros((2, 16), dtype=int), 16, True)
    with pytest.raises(MemImageError, match="exceeds the address space"):
        img.read(65535, 2)
    with pytest.raises(MemImageError, match="not an unsigned 16-bit"):
        img.add_tokens([1, 70000])
    with pytest.raises(MemImageError, match="integers"):
        img.add_plane(np.array([[0.5]]), 8, True)
    with pytest.raises(MemImageError, match="2-D"):
        img.add_plane(np.zeros(4, dtype=int), 8, True)
    assert img.alloc(0) == 0  # failed adds allocated nothing


def test_save_load(tmp_path: Path) -> None:
    img = MemoryImage(32, 32)
    img.write(0x10, b"\x01\x02")
    far = 0x20_0000
    img.write(far + 3, b"\xAA")
    f = img.save(tmp_path / "mem.bin")
    raw = f.read_bytes()
    assert len(raw) == far + 32  # highest written byte rounded up to a burst
    assert raw[0x10:0x12] == b"\x01\x02" and raw[far + 3] == 0xAA
    assert raw.count(0) == len(raw) - 3
    back = MemoryImage.load(f, 32, 32)
    assert back == img and back.size == img.size
    assert not list(tmp_path.glob("*.tmp"))


def test_load_errors(tmp_path: Path) -> None:
    f = tmp_path / "odd.bin"
    f.write_bytes(bytes(33))
    with pytest.raises(MemImageError, match="not a multiple of the burst"):
        MemoryImage.load(f, 32, 32)
    with pytest.raises(MemImageError, match="cannot read"):
        MemoryImage.load(tmp_path / "absent.bin", 32, 32)
