"""The K/V cache of a generating model, kept in the accelerator's DRAM as it grows.

One set of planes per (layer, K/V head) -- K MSB, K LSB (when the policy has LSBs) and
V, laid out as ``hardware/SPEC.md`` section 4 says -- with room for ``capacity`` tokens,
so token ``t``'s row never moves. Each call quantizes the way the PyTorch algorithm
(``workloads/spatten/attention.py``) does in that call: one scale per (layer, K/V head)
for K and one for V, ``max |x|`` over the whole cache *of this step*, so the integers are
the ones the model's own quantized attention sees. A new token whose values raise the
maximum changes the scale: then the whole plane is rewritten; otherwise only the new
rows are written. Every byte goes through :class:`DeviceMemory`, which keeps the host's
copy (the golden model reads it) and forwards the bytes to a simulator (``rtl``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from spatten.contract import quant
from spatten.contract.memimage import MemoryImage, pack_rows
from spatten.contract.params import HwParams

__all__ = ["DeviceMemory", "QuantSpec", "KVCache", "PlaneSet"]


class DeviceMemory:
    """The accelerator's DRAM contents as the host wrote them: a :class:`MemoryImage`
    (allocator and host copy) plus listeners that get every write (a simulator)."""

    def __init__(self, params: HwParams) -> None:
        self.image = MemoryImage.for_params(params, start=params.burst_bytes * 16)
        self.listeners: list[Callable[[int, bytes], None]] = []
        self.bytes_written = 0

    def write(self, addr: int, data: bytes) -> None:
        self.image.write(addr, data)
        self.bytes_written += len(data)
        for f in self.listeners:
            f(addr, data)


@dataclass(frozen=True)
class QuantSpec:
    """The integer formats of the requests (from the policy's quantization)."""

    k_msb_bits: int
    k_lsb_bits: int
    v_bits: int
    q_bits: int
    requant: bool
    requant_threshold: float

    @classmethod
    def from_policy(cls, policy) -> "QuantSpec":
        qz = policy.quantization
        if not qz.enabled:  # the accelerator computes on integers: 16 bits is as close as it gets
            return cls(16, 0, 16, 16, False, 0.0)
        return cls(qz.key_msb_bits, qz.key_lsb_bits, qz.value_bits, qz.query_bits, qz.progressive,
                   qz.requant_threshold)

    @property
    def k_bits(self) -> int:
        return self.k_msb_bits + self.k_lsb_bits


@dataclass
class PlaneSet:
    """The planes of one (layer, K/V head): bases, strides, current scales and rows."""

    k_msb_base: int
    k_lsb_base: int
    v_base: int
    s_k: float = 0.0
    s_v: float = 0.0
    rows: int = 0  # tokens written
    k_int: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    v_int: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))


def _scale(x: np.ndarray, bits: int) -> float:
    """The algorithm's scale: ``max(max|x|, 1e-8) / (2^(bits-1) - 1)``."""
    amax = float(np.abs(x).max()) if x.size else 0.0
    return max(amax, 1e-8) / ((1 << (bits - 1)) - 1)


class KVCache:
    """Planes of every (layer, K/V head) in device memory (see the module docstring)."""

    def __init__(self, mem: DeviceMemory, params: HwParams, q: QuantSpec, n_layers: int, n_kv: int, d: int,
                 capacity: int) -> None:
        self.mem, self.params, self.q, self.d, self.capacity = mem, params, q, d, capacity
        img = mem.image
        self.st_msb = img.stride(d, q.k_msb_bits)
        self.st_lsb = img.stride(d, q.k_lsb_bits) if q.k_lsb_bits else 0
        self.st_v = img.stride(d, q.v_bits)
        self.planes: dict[tuple[int, int], PlaneSet] = {}
        for layer in range(n_layers):
            for h in range(n_kv):
                self.planes[(layer, h)] = PlaneSet(
                    img.alloc(capacity * self.st_msb),
                    img.alloc(capacity * self.st_lsb) if self.st_lsb else 0,
                    img.alloc(capacity * self.st_v))
        # token id lists: one of 0..capacity-1 (prefill rows read a prefix of it) and
        # one area per layer for the kept list of the current request
        self.all_tokens_base = img.alloc(2 * capacity)
        mem.write(self.all_tokens_base, np.arange(capacity, dtype="<u2").tobytes())
        self.list_base = [img.alloc(2 * capacity) for _ in range(n_layers)]

    def write_list(self, layer: int, ids: np.ndarray) -> int:
        """Write the token list of ``layer``'s next requests; returns its base."""
        self.mem.write(self.list_base[layer], np.asarray(ids, dtype="<u2").tobytes())
        return self.list_base[layer]

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> None:
        """Bring the planes of ``layer`` to the cache ``k``, ``v`` (float ``[n_kv, T, D]``)."""
        n_kv, t, d = k.shape
        if t > self.capacity:
            raise ValueError(f"{t} tokens exceed the K/V capacity of {self.capacity}")
        q = self.q
        for h in range(n_kv):
            ps = self.planes[(layer, h)]
            s_k, s_v = _scale(k[h], q.k_bits), _scale(v[h], q.v_bits)
            k_dirty = s_k != ps.s_k
            v_dirty = s_v != ps.s_v
            first_k = 0 if k_dirty else ps.rows
            first_v = 0 if v_dirty else ps.rows
            if first_k < t:
                kq = quant.quantize(k[h, first_k:], q.k_bits, s_k).values
                ps.k_int = kq if first_k == 0 else np.concatenate([ps.k_int[:first_k], kq])
                msb, lsb = quant.split_key(kq, q.k_msb_bits, q.k_lsb_bits)
                self._write_rows(ps.k_msb_base, self.st_msb, first_k, msb, q.k_msb_bits, True)
                if self.st_lsb:
                    self._write_rows(ps.k_lsb_base, self.st_lsb, first_k, lsb, q.k_lsb_bits, False)
            if first_v < t:
                vq = quant.quantize(v[h, first_v:], q.v_bits, s_v).values
                ps.v_int = vq if first_v == 0 else np.concatenate([ps.v_int[:first_v], vq])
                self._write_rows(ps.v_base, self.st_v, first_v, vq, q.v_bits, True)
            ps.s_k, ps.s_v, ps.rows = s_k, s_v, t

    def _write_rows(self, base: int, stride: int, first: int, values: np.ndarray, bits: int,
                    signed: bool) -> None:
        packed = pack_rows(values, bits, signed, stride)
        self.mem.write(base + first * stride, packed.tobytes())
