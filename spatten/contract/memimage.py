"""The DRAM contents the accelerator computes on: plane rows and token lists.

Layout (``hardware/SPEC.md`` section 4, byte addresses, little-endian):

- A *plane* holds one row per token for one of K MSB, K LSB or V. A row holds the ``D``
  elements of the token packed at ``b`` bits each: element ``i`` occupies bits
  ``[i*b, i*b + b)`` of the row, where bit ``n`` of the row is bit ``n % 8`` of byte
  ``n // 8``. Signed elements are stored in ``b``-bit two's complement. The row stride is
  ``stride(D, b) = roundUp(ceil(D*b/8), burstBytes)``; the row of token ``t`` of a plane
  with base ``B`` starts at ``B + t * stride(D, b)``. (``b = 0`` -- an absent K LSB plane --
  has stride 0 and occupies no bytes.)
- A *token list* holds token ids as unsigned 16-bit little-endian values, packed densely
  from its base.
- Every plane base and list base is ``burstBytes``-aligned; addresses at or above
  ``2^dramAddrBits`` are errors; bytes never written read as zero.

Image file format (what the C++ DRAM backing store in ``hardware/dpi/`` loads)
-----------------------------------------------------------------------------
A flat binary file whose **file offset is the byte address**: byte ``a`` of the file is
the DRAM byte at address ``a``. Bytes never written are zero (written as file holes, so a
sparse image at high addresses costs no disk). The file ends at the highest written byte
rounded up to a whole burst, so its size is a multiple of ``burstBytes``; addresses at or
beyond the end of the file read as zero. There is no header. A reader needs only the
file: ``load(path)`` reproduces the image exactly (up to trailing zero bytes).
Files are written atomically (temporary file in the same directory, then rename).

Public API::

    img = MemoryImage.for_params(params)         # or MemoryImage(burst_bytes, addr_bits)
    base = img.add_plane(values, bits, signed)   # allocate + write a [tokens, D] plane
    lst = img.add_tokens(ids)                    # allocate + write a uint16 token list
    img.write_plane(base, values, bits, signed)  # at a given aligned base
    img.read_rows(base, token_ids, d, bits, signed) -> int64 [len(ids), d]
    img.read_tokens(base, n) -> int64 [n]
    img.save(path); MemoryImage.load(path, burst_bytes, addr_bits)
    stride(d, bits, burst_bytes); pack_rows(...); unpack_rows(...)

All errors raise :class:`MemImageError` (a ``ValueError``) saying what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from spatten.fileio import atomic_output
from spatten.contract.params import HwParams
from spatten.errors import ContractError

__all__ = [
    "MemImageError", "MemoryImage", "stride", "element_range", "pack_rows", "unpack_rows",
    "TOKEN_BYTES",
]

TOKEN_BYTES = 2
"""Bytes of one token id in a token list."""

_PAGE_BITS = 16
_PAGE = 1 << _PAGE_BITS


class MemImageError(ContractError):
    """Bad address, alignment, value range or file for a memory image."""


def element_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive ``(lo, hi)`` of a ``bits``-bit element (``bits`` in 0..16)."""
    if not 0 <= bits <= 16:
        raise MemImageError(f"element width must be in 0..16 bits, got {bits}")
    if bits == 0:
        if signed:
            raise MemImageError("a signed element needs at least 1 bit")
        return 0, 0
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def stride(d: int, bits: int, burst_bytes: int) -> int:
    """Row stride in bytes: ``roundUp(ceil(d*bits/8), burst_bytes)`` (SPEC 4)."""
    if d < 0 or bits < 0:
        raise MemImageError(f"stride needs d >= 0 and bits >= 0, got d={d}, bits={bits}")
    row = (d * bits + 7) // 8
    return (row + burst_bytes - 1) // burst_bytes * burst_bytes


def pack_rows(values: np.ndarray, bits: int, signed: bool, row_bytes: int) -> np.ndarray:
    """Pack an integer array ``[tokens, D]`` into rows of ``row_bytes`` bytes (uint8
    ``[tokens, row_bytes]``), element ``i`` at bits ``[i*bits, i*bits+bits)`` LSB first.

    Raises :class:`MemImageError` when a value does not fit ``bits`` bits."""
    v = np.asarray(values)
    if v.ndim != 2:
        raise MemImageError(f"a plane must be a 2-D array [tokens, D], got shape {v.shape}")
    if v.size and not np.issubdtype(v.dtype, np.integer):
        raise MemImageError(f"plane values must be integers, got dtype {v.dtype}")
    lo, hi = element_range(bits, signed)
    v = v.astype(np.int64)
    if v.size:
        bad = (v < lo) | (v > hi)
        if bad.any():
            t, i = np.argwhere(bad)[0]
            raise MemImageError(
                f"value {v[t, i]} at [token {t}, element {i}] does not fit "
                f"{'signed' if signed else 'unsigned'} {bits}-bit range [{lo}, {hi}]")
    tokens, d = v.shape
    if (d * bits + 7) // 8 > row_bytes:
        raise MemImageError(f"{d} elements of {bits} bits do not fit a {row_bytes}-byte row")
    out_bits = np.zeros((tokens, row_bytes * 8), dtype=np.uint8)
    if bits:
        u = v & ((1 << bits) - 1)  # two's complement at `bits` bits
        bitmat = ((u[:, :, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8)
        out_bits[:, : d * bits] = bitmat.reshape(tokens, d * bits)
    return np.packbits(out_bits, axis=1, bitorder="little")


def unpack_rows(rows: np.ndarray, d: int, bits: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_rows`: uint8 ``[tokens, row_bytes]`` -> int64 ``[tokens, d]``."""
    r = np.asarray(rows, dtype=np.uint8)
    if r.ndim != 2:
        raise MemImageError(f"rows must be 2-D [tokens, bytes], got shape {r.shape}")
    element_range(bits, signed)
    tokens = r.shape[0]
    if bits == 0:
        return np.zeros((tokens, d), dtype=np.int64)
    if d * bits > r.shape[1] * 8:
        raise MemImageError(f"{d} elements of {bits} bits do not fit {r.shape[1]}-byte rows")
    # Element i starts at bit i*bits: read the 3 bytes from byte (i*bits)//8 (an element of
    # <= 16 bits spans at most 3 bytes) as one 24-bit little-endian value, shift, mask.
    padded = np.zeros((tokens, r.shape[1] + 2), dtype=np.int64)
    padded[:, : r.shape[1]] = r
    start = np.arange(d, dtype=np.int64) * bits
    byte, shift = start >> 3, start & 7
    window = padded[:, byte] | (padded[:, byte + 1] << 8) | (padded[:, byte + 2] << 16)
    u = (window >> shift) & ((1 << bits) - 1)
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def _spans(addr: int, n: int) -> Iterable[tuple[int, int, int, int]]:
    """``(page, offset in page, offset in the data, length)`` of the page pieces of the
    ``n`` bytes at ``addr``."""
    pos = 0
    while pos < n:
        a = addr + pos
        page, off = a >> _PAGE_BITS, a & (_PAGE - 1)
        k = min(_PAGE - off, n - pos)
        yield page, off, pos, k
        pos += k


class MemoryImage:
    """A sparse little-endian byte-addressed memory of ``2^addr_bits`` bytes.

    Regions are handed out by a bump allocator (:meth:`alloc`), each ``burst_bytes``
    aligned; explicit writes at any address in range are allowed too (plane and list
    bases must be burst-aligned). Storage is a dict of 64 KiB pages, so images with a few
    far-apart regions stay small.
    """

    def __init__(self, burst_bytes: int, addr_bits: int, start: int = 0) -> None:
        if burst_bytes < 1 or burst_bytes & (burst_bytes - 1):
            raise MemImageError(f"burst_bytes must be a power of two, got {burst_bytes}")
        if not 1 <= addr_bits <= 62:
            raise MemImageError(f"addr_bits must be in 1..62, got {addr_bits}")
        self.burst_bytes = burst_bytes
        self.addr_bits = addr_bits
        self._pages: dict[int, bytearray] = {}
        self._high = 0  # one past the highest byte written
        self._check_aligned(start, "allocator start")
        self._next = start

    @classmethod
    def for_params(cls, params: HwParams, start: int = 0) -> "MemoryImage":
        """An empty image with the burst size and address width of ``params``."""
        return cls(params.burst_bytes, params.dram_addr_bits, start)

    # ---- geometry ----------------------------------------------------------------------
    @property
    def limit(self) -> int:
        """First address out of range, ``2^addr_bits``."""
        return 1 << self.addr_bits

    @property
    def size(self) -> int:
        """Bytes of the image file: highest written byte rounded up to a burst."""
        return self._round_up(self._high)

    def _round_up(self, n: int) -> int:
        return (n + self.burst_bytes - 1) // self.burst_bytes * self.burst_bytes

    def stride(self, d: int, bits: int) -> int:
        """Row stride of a ``d``-element ``bits``-bit plane in this image."""
        return stride(d, bits, self.burst_bytes)

    def _check_aligned(self, addr: int, what: str) -> None:
        if addr < 0 or addr % self.burst_bytes:
            raise MemImageError(
                f"{what} 0x{addr:x} is not {self.burst_bytes}-byte (burst) aligned")

    def _check_range(self, addr: int, n: int, what: str) -> None:
        if addr < 0 or addr + n > self.limit:
            raise MemImageError(
                f"{what} [0x{addr:x}, 0x{addr + n:x}) exceeds the address space "
                f"(2^{self.addr_bits} = 0x{self.limit:x} bytes)")

    # ---- allocation --------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        """Reserve ``nbytes`` (rounded up to bursts) and return the burst-aligned base."""
        if nbytes < 0:
            raise MemImageError(f"cannot allocate {nbytes} bytes")
        base = self._next
        n = self._round_up(nbytes)
        self._check_range(base, n, "allocation")
        self._next = base + n
        return base

    # ---- raw bytes ---------------------------------------------------------------------
    def write(self, addr: int, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Write raw bytes at ``addr`` (any alignment)."""
        buf = memoryview(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
                         if isinstance(data, np.ndarray) else data).cast("B")
        n = len(buf)
        self._check_range(addr, n, "write")
        for page, off, pos, k in _spans(addr, n):
            pg = self._pages.get(page)
            if pg is None:
                pg = self._pages[page] = bytearray(_PAGE)
            pg[off:off + k] = buf[pos:pos + k]
        if n:
            self._high = max(self._high, addr + n)

    def read(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes at ``addr``; unwritten bytes are zero."""
        self._check_range(addr, n, "read")
        out = bytearray(n)
        for page, off, pos, k in _spans(addr, n):
            pg = self._pages.get(page)
            if pg is not None:
                out[pos:pos + k] = pg[off:off + k]
        return bytes(out)

    # ---- planes ------------------------------------------------------------------------
    def write_plane(self, base: int, values: np.ndarray, bits: int, signed: bool) -> None:
        """Write a plane (int array ``[tokens, D]``, row ``t`` = token ``t``) at ``base``."""
        self._check_aligned(base, "plane base")
        v = np.asarray(values)
        if v.ndim != 2:
            raise MemImageError(f"a plane must be a 2-D array [tokens, D], got shape {v.shape}")
        s = self.stride(v.shape[1], bits)
        self._check_range(base, v.shape[0] * s, "plane")
        if s == 0:
            pack_rows(v, bits, signed, 0)  # validates the (all-zero) values
            return
        self.write(base, pack_rows(v, bits, signed, s))

    def add_plane(self, values: np.ndarray, bits: int, signed: bool) -> int:
        """Allocate room for a plane, write it and return its base."""
        v = np.asarray(values)
        if v.ndim != 2:
            raise MemImageError(f"a plane must be a 2-D array [tokens, D], got shape {v.shape}")
        pack_rows(v, bits, signed, self.stride(v.shape[1], bits))  # validate before allocating
        base = self.alloc(v.shape[0] * self.stride(v.shape[1], bits))
        self.write_plane(base, v, bits, signed)
        return base

    def read_rows(self, base: int, tokens: Iterable[int], d: int, bits: int,
                  signed: bool) -> np.ndarray:
        """Read the rows of the given token ids of a plane: int64 ``[len(tokens), d]``."""
        self._check_aligned(base, "plane base")
        toks = np.fromiter((int(t) for t in tokens), dtype=np.int64)
        s = self.stride(d, bits)
        if s == 0 or toks.size == 0:
            return np.zeros((toks.size, d), dtype=np.int64)
        if toks.min() < 0:
            raise MemImageError(f"negative token id {toks.min()}")
        self._check_range(base + int(toks.min()) * s, s, "plane row")
        self._check_range(base + int(toks.max()) * s, s, "plane row")
        return unpack_rows(self._gather(base + toks * s, s), d, bits, signed)

    def _gather(self, starts: np.ndarray, n: int) -> np.ndarray:
        """uint8 ``[len(starts), n]``: ``n`` bytes from each start address (vectorized)."""
        addr = starts[:, None] + np.arange(n, dtype=np.int64)
        page, off = addr >> _PAGE_BITS, addr & (_PAGE - 1)
        lo, hi = int(page.min()), int(page.max())
        if lo == hi:  # the common case: the rows lie in one page
            data = self._pages.get(lo)
            return (np.frombuffer(data, dtype=np.uint8)[off] if data is not None
                    else np.zeros(addr.shape, dtype=np.uint8))
        out = np.zeros(addr.shape, dtype=np.uint8)
        for pg in range(lo, hi + 1):
            data = self._pages.get(pg)
            if data is not None:
                m = page == pg
                if m.any():
                    out[m] = np.frombuffer(data, dtype=np.uint8)[off[m]]
        return out

    def read_plane(self, base: int, tokens: int, d: int, bits: int, signed: bool) -> np.ndarray:
        """Read rows ``0..tokens-1`` of a plane: int64 ``[tokens, d]``."""
        return self.read_rows(base, range(tokens), d, bits, signed)

    # ---- token lists -------------------------------------------------------------------
    def write_tokens(self, base: int, ids: Sequence[int] | np.ndarray) -> None:
        """Write a token list (uint16 little-endian) at a burst-aligned ``base``."""
        self._check_aligned(base, "token list base")
        a = np.asarray(ids)
        if a.ndim != 1:
            raise MemImageError(f"a token list must be 1-D, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise MemImageError(f"token ids must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        bad = (a < 0) | (a > 0xFFFF)
        if bad.any():
            j = int(np.argmax(bad))
            raise MemImageError(f"token id {a[j]} at position {j} is not an unsigned 16-bit value")
        self.write(base, a.astype("<u2").tobytes())

    def add_tokens(self, ids: Sequence[int] | np.ndarray) -> int:
        """Allocate room for a token list, write it and return its base."""
        n = len(ids)
        base = self._next
        self._check_range(base, self._round_up(n * TOKEN_BYTES), "token list")
        self.write_tokens(base, ids)  # validates before committing the allocation
        return self.alloc(n * TOKEN_BYTES)

    def read_tokens(self, base: int, n: int) -> np.ndarray:
        """Read ``n`` token ids from a list at ``base``: int64 ``[n]``."""
        self._check_aligned(base, "token list base")
        return np.frombuffer(self.read(base, n * TOKEN_BYTES), dtype="<u2").astype(np.int64)

    # ---- files -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the image file (format in the module docstring) atomically."""
        path = Path(path)
        size = self.size
        with atomic_output(path) as f:
            for page in sorted(self._pages):
                start = page << _PAGE_BITS
                if start >= size:
                    continue
                data = self._pages[page][: size - start]
                if any(data):
                    f.seek(start)
                    f.write(data)
            f.truncate(size)
        return path

    @classmethod
    def load(cls, path: str | Path, burst_bytes: int, addr_bits: int) -> "MemoryImage":
        """Read an image file written by :meth:`save` (or any file of that format)."""
        path = Path(path)
        img = cls(burst_bytes, addr_bits)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise MemImageError(f"{path}: cannot read memory image: {e.strerror}") from e
        if size % burst_bytes:
            raise MemImageError(
                f"{path}: size {size} is not a multiple of the burst ({burst_bytes} bytes)")
        if size > img.limit:
            raise MemImageError(
                f"{path}: size {size} exceeds the address space (2^{addr_bits} bytes)")
        with open(path, "rb") as f:
            start = 0
            while start < size:
                chunk = f.read(_PAGE)
                if any(chunk):
                    img.write(start, chunk)
                start += len(chunk)
        img._high = size
        img._next = size
        return img

    def __eq__(self, other: object) -> bool:
        """Equal when every byte is equal (unwritten bytes count as zero)."""
        if not isinstance(other, MemoryImage):
            return NotImplemented
        zero = bytes(_PAGE)
        return all(bytes(self._pages.get(p, zero)) == bytes(other._pages.get(p, zero))
                   for p in set(self._pages) | set(other._pages))
