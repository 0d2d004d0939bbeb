"""Random, valid (and deliberately invalid) command streams over a real memory image.

Pure Python (no simulator): :class:`StimulusGenerator` builds a
:class:`spatten.contract.memimage.MemoryImage` holding several "layers" -- K MSB, K LSB and V
planes of random shapes and bit widths, some with special contents (constant rows for
ties in ``p``, extreme values for the largest magnitudes, three-level values) -- and then
hands out command packets one at a time: ATTEND with a fresh random token list (its ids
drawn from the layer's tokens), ATTEND_GROUP (1..maxGroupHeads heads of such ATTENDs over
one list, each head with its own query, scale, threshold and value top-k), TOPK_TOKENS, TOPK_HEADS, READ_IMPORTANCE, CLEAR and
packets the accelerator must answer with an error. Every ATTEND's ``scoreScale`` /
``scoreShift`` are picked from the real score spread of its keys so that the softmax
sees flat, moderate and peaked distributions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from spatten.contract.commands import (AttendCmd, ClearCmd, ReadImportanceCmd, TopkHeadsCmd,
                                TopkTokensCmd, Word)
from spatten.contract.golden import dot_scores
from spatten.contract.grouped import GroupAttendCmd, group_commands
from spatten.contract.layout import layout
from spatten.contract.memimage import MemoryImage
from spatten.contract.params import HwParams

__all__ = ["Layer", "Stimulus", "StimulusGenerator"]


@dataclass(frozen=True)
class Layer:
    """One set of K/V planes in the image: ``tokens`` rows of ``d`` elements."""

    kind: str
    d: int
    tokens: int
    k_msb_bits: int
    k_lsb_bits: int
    v_bits: int
    k_msb_base: int
    k_lsb_base: int
    v_base: int
    k_msb: np.ndarray
    k_lsb: np.ndarray


@dataclass(frozen=True)
class Stimulus:
    """One command packet and what it is for (coverage and messages)."""

    words: list[Word]
    what: str
    command: object | None = None  # the typed command, None for malformed packets
    layer: Layer | None = None


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _field_max(name: str) -> int:
    """The largest value of the ATTEND command's field ``name`` (from the contract)."""
    return layout().packet("attend").field(name).limits[1]


class StimulusGenerator:
    """Random commands for one hardware configuration.

    ``max_tokens`` / ``max_dim`` cap the sizes (defaults: the hardware's), so a smoke
    run on a large preset stays short.
    """

    def __init__(self, params: HwParams, rng: random.Random, layers: int = 10,
                 max_tokens: int | None = None, max_dim: int | None = None,
                 error_rate: float = 0.03) -> None:
        self.p = params
        self.rng = rng
        self.np_rng = np.random.default_rng(rng.getrandbits(32))
        self.mem = MemoryImage.for_params(params)
        self.max_tokens = min(max_tokens or params.max_tokens, params.max_tokens)
        self.max_dim = min(max_dim or params.max_head_dim, params.max_head_dim)
        self.error_rate = error_rate
        self.tag = 0
        self.recent_lists: list[tuple[int, int]] = []  # (n, base) of recent ATTEND lists
        kinds = ["extreme", "const", "levels", "full", "wide"] + ["random"] * max(0, layers - 5)
        self.layers: list[Layer] = []
        self.layers = [self._make_layer(k) for k in kinds[:layers]]

    # ---- the image ---------------------------------------------------------------------
    def _values(self, kind: str, shape: tuple[int, int], lo: int, hi: int) -> np.ndarray:
        if kind == "extreme":
            return np.where(self.np_rng.random(shape) < 0.7, lo, hi).astype(np.int64)
        if kind == "const":
            row = self.np_rng.integers(lo, hi + 1, size=shape[1])
            return np.broadcast_to(row, shape).astype(np.int64).copy()
        if kind == "levels":
            return self.np_rng.integers(max(lo, -1), min(hi, 1) + 1, size=shape).astype(np.int64)
        return self.np_rng.integers(lo, hi + 1, size=shape).astype(np.int64)

    def make_layer(self, d: int, tokens: int, k_msb_bits: int, k_lsb_bits: int,
                   v_bits: int) -> Layer:
        """A random layer of the given shape, added to the image (and to the pool)."""
        shape = (tokens, d)
        k_msb = self._values("random", shape, *_signed_range(k_msb_bits))
        k_lsb = (self._values("random", shape, 0, (1 << k_lsb_bits) - 1) if k_lsb_bits
                 else np.zeros(shape, dtype=np.int64))
        v = self._values("random", shape, *_signed_range(v_bits))
        k_msb_base = self.mem.add_plane(k_msb, k_msb_bits, True)
        k_lsb_base = (self.mem.add_plane(k_lsb, k_lsb_bits, False) if k_lsb_bits
                      else self.mem.alloc(0))
        v_base = self.mem.add_plane(v, v_bits, True)
        layer = Layer("random", d, tokens, k_msb_bits, k_lsb_bits, v_bits, k_msb_base,
                      k_lsb_base, v_base, k_msb, k_lsb)
        self.layers.append(layer)
        return layer

    def _make_layer(self, kind: str) -> Layer:
        r = self.rng
        d = self.max_dim if kind in ("extreme", "full") else r.randint(1, self.max_dim)
        tokens = self.max_tokens if kind in ("extreme", "full") or r.random() < 0.4 \
            else r.randint(1, self.max_tokens)
        if kind == "wide":
            # every 16-bit token id has rows (importance is kept per id, all 2^16 of them);
            # one burst a row keeps the planes at 2^16 bursts each
            d = r.randint(1, min(self.max_dim, 16))
            tokens = 1 << 16
            msb = r.randint(1, 8 * self.p.burst_bytes // d // 2 or 1)
            msb = min(msb, 16, 8 * self.p.burst_bytes // d)
            lsb = r.randint(0, min(16 - msb, 8 * self.p.burst_bytes // d - msb))
            vb = min(r.randint(1, 16), 8 * self.p.burst_bytes // d)
            kind = "random"
        elif kind == "extreme":
            msb, lsb, vb = 16, 0, 16
        elif kind == "full":
            msb, lsb, vb = r.randint(4, 12), 0, r.randint(1, 16)
            lsb = r.randint(1, 16 - msb)
        elif tokens != 1 << 16:
            msb = r.randint(1, 16)
            lsb = r.choice([0, r.randint(0, 16 - msb)])
            vb = r.randint(1, 16)
        shape = (tokens, d)
        k_msb = self._values(kind, shape, *_signed_range(msb))
        k_lsb = (self._values("random" if kind != "const" else "const", shape, 0, (1 << lsb) - 1)
                 if lsb else np.zeros(shape, dtype=np.int64))
        v = self._values(kind, shape, *_signed_range(vb))
        k_msb_base = self.mem.add_plane(k_msb, msb, True)
        k_lsb_base = self.mem.add_plane(k_lsb, lsb, False) if lsb else self.mem.alloc(0)
        v_base = self.mem.add_plane(v, vb, True)
        return Layer(kind, d, tokens, msb, lsb, vb, k_msb_base, k_lsb_base, v_base, k_msb, k_lsb)

    # ---- commands ----------------------------------------------------------------------
    def _next_tag(self) -> int:
        self.tag = (self.tag + 1) % (_field_max("tag") + 1)
        return self.tag

    def _token_list(self, layer: Layer, n: int) -> np.ndarray:
        r = self.rng
        if r.random() < 0.15:  # repeated ids (e.g. a list written by a buggy host): allowed
            ids = self.np_rng.integers(0, layer.tokens, size=n)
        else:
            ids = np.sort(self.np_rng.choice(layer.tokens, size=min(n, layer.tokens), replace=False))
            if len(ids) < n:
                ids = np.concatenate([ids, self.np_rng.integers(0, layer.tokens, size=n - len(ids))])
        if r.random() < 0.2:
            self.np_rng.shuffle(ids)
        return ids.astype(np.int64)

    def _scale(self, spread: int) -> tuple[int, int]:
        """``(scoreScale, scoreShift)`` giving a ``t`` range of a random target."""
        r = self.rng
        top_scale, top_shift = _field_max("scoreScale"), _field_max("scoreShift")
        if r.random() < 0.05:
            return 0, r.randint(0, top_shift)  # every t = 0: all p equal
        if r.random() < 0.05:
            return top_scale, 0  # everything but the max saturates to e = 0
        target = r.choice([40, 300, 1500, 4000, 12000, 60000])
        if spread == 0:
            return r.randint(0, top_scale), r.randint(0, top_shift)
        for shift in range(top_shift, -1, -1):
            scale = round(target / spread * (1 << shift))
            if scale <= top_scale:
                return max(scale, 1), shift
        return top_scale, 0

    def attend(self, **force: object) -> Stimulus:
        r = self.rng
        layer = force.pop("layer", None) or r.choice(self.layers)
        assert isinstance(layer, Layer)
        n_choice = r.random()
        n_max = self.max_tokens
        n = 1 if n_choice < 0.06 else (n_max if n_choice < 0.2 else r.randint(1, n_max))
        n = int(force.pop("n", n))
        ids = self._token_list(layer, n)
        base = self.mem.add_tokens(ids)
        self.recent_lists.append((n, base))
        del self.recent_lists[:-8]
        qbits = r.choice([16, 16, 8, 4, 12, r.randint(1, 16)])
        lo, hi = _signed_range(qbits)
        if layer.kind == "extreme":
            q = [lo if r.random() < 0.8 else hi for _ in range(layer.d)]
        else:
            q = [r.randint(lo, hi) for _ in range(layer.d)]
        s = dot_scores(q, layer.k_msb[ids] << layer.k_lsb_bits)
        scale, shift = self._scale(int(s.max() - s.min()))
        requant = r.random() < 0.5
        thr = r.choice([0, _field_max("requantThreshold"), r.randint(0, 1 << 16), r.randint(0, 1 << 12)])
        vk_choice = r.random()
        if vk_choice < 0.25:
            vk = 0
        elif vk_choice < 0.4:
            vk = 1
        elif vk_choice < 0.5:
            vk = n + r.randint(0, 3)
        else:
            vk = r.randint(1, max(1, n))
        cmd = AttendCmd(tag=self._next_tag(), n=n, query=tuple(q), k_msb_base=layer.k_msb_base,
                        v_base=layer.v_base, tokens_base=base, k_msb_bits=layer.k_msb_bits,
                        v_bits=layer.v_bits, score_scale=scale, score_shift=shift,
                        k_lsb_bits=layer.k_lsb_bits, k_lsb_base=layer.k_lsb_base,
                        value_topk=int(force.pop("value_topk", vk)),
                        head_id=r.randrange(self.p.max_heads),
                        requant=bool(force.pop("requant", requant)),
                        requant_threshold=int(force.pop("requant_threshold", thr)),
                        accum_importance=r.random() < 0.75)
        return Stimulus(cmd.encode(), "ATTEND", cmd, layer)

    def attend_group(self, heads: int | None = None) -> Stimulus:
        """An ATTEND_GROUP: 1..maxGroupHeads random heads (as :meth:`attend` makes them)
        over the first head's layer, token list, requant and importance flags."""
        r = self.rng
        g = heads if heads is not None else r.choice([1, 2, self.p.max_group_heads,
                                                      r.randint(1, self.p.max_group_heads)])
        first = self.attend(requant=r.random() < 0.6).command
        assert isinstance(first, AttendCmd)
        layer = next(x for x in self.layers if x.k_msb_base == first.k_msb_base)
        cmds = [first]
        for _ in range(g - 1):
            c = self.attend(layer=layer, n=first.n, requant=first.requant).command
            cmds.append(AttendCmd(**{**c.__dict__, "tokens_base": first.tokens_base,
                                     "accum_importance": first.accum_importance}))
        if g > 1 and r.random() < 0.4:
            # heads that surely requantize (threshold above every p) beside heads that never do
            top = _field_max("requantThreshold")
            cmds = [AttendCmd(**{**c.__dict__, "requant_threshold": r.choice([0, top])}) for c in cmds]
        if r.random() < 0.35:
            # value pruning by threshold (SPEC 2 step 5) on some heads: every position (T = 0),
            # only the largest (T above every p), or a threshold among the probabilities
            top = _field_max("valueTopK")
            cmds = [AttendCmd(**{**c.__dict__, "value_thresh": True,
                                 "value_topk": r.choice([0, 1, top, r.randint(1, 1 << 8), r.randint(1, 1 << 12),
                                                         r.randint(0, top)])})
                    if r.random() < 0.7 else c for c in cmds]
        cmd = group_commands(cmds, tag=self._next_tag())
        return Stimulus(cmd.encode(), "ATTEND_GROUP", cmd, layer)

    def _any_list(self) -> tuple[int, int]:
        """A token list for TOPK_TOKENS / READ_IMPORTANCE: half the time one a recent
        ATTEND used (ids with importance), else a fresh one."""
        if self.recent_lists and self.rng.random() < 0.5:
            return self.rng.choice(self.recent_lists)
        layer = self.rng.choice(self.layers)
        n = self.rng.randint(0, self.max_tokens)
        ids = self._token_list(layer, n) if n else np.zeros(0, dtype=np.int64)
        return n, self.mem.add_tokens(ids)

    def error(self) -> Stimulus:
        """A packet the accelerator must answer with an error response."""
        r = self.rng
        p = self.p
        kind = r.choice(["opcode", "n0", "nbig", "d0", "dbig", "widths", "head", "length",
                         "topk_n", "heads_n", "read_n", "group_heads", "group_head_id", "group_length"])
        tag = self._next_tag()
        if kind == "opcode":
            # No command has these opcodes: 0, the two above the highest command opcode, the
            # middle and the top two values of the field (the top one is ERROR, a response).
            lay = layout()
            top = (1 << lay.opcode_field.width) - 1
            last = max(v for k, v in lay.opcodes.items() if lay.packet_for("command", v) is not None)
            op = r.choice([0, last + 1, last + 2, (top + 1) // 2, top - 1, top])
            hdr = lay.packet("clear")  # opcode and tag as in every packet; random bits above
            above = hdr.field("tag").lo + hdr.field("tag").width
            word = hdr.pack({"opcode": op, "tag": tag})[0] | r.getrandbits(lay.word_bits - above) << above
            return Stimulus([(word, True)], f"error:{kind}")
        if kind in ("topk_n", "read_n"):
            n = r.randint(p.max_tokens + 1, 0xFFFF)
            cmd = (TopkTokensCmd(tag, n, r.randint(0, 5), 0) if kind == "topk_n"
                   else ReadImportanceCmd(tag, n, 0))
            return Stimulus(cmd.encode(), f"error:{kind}", cmd)
        if kind.startswith("group_"):
            good_g = self.attend_group(heads=r.randint(1, self.p.max_group_heads)).command
            assert isinstance(good_g, GroupAttendCmd)
            words = [w for w, _ in good_g.encode()]
            lay = layout()
            hf = lay.packet("attendGroup").field("heads")
            if kind == "group_heads":  # 0 heads (header alone) or more than maxGroupHeads
                many = r.randint(p.max_group_heads + 1, (1 << hf.width) - 1)
                words[0] = (words[0] & ~(((1 << hf.width) - 1) << hf.lo)) | (r.choice([0, many]) << hf.lo)
                if words[0] >> hf.lo & ((1 << hf.width) - 1) == 0:
                    words = words[:6]
            elif kind == "group_head_id":  # one head's id at or above maxHeads
                hid = lay.packet("attendHead").field("headId")
                qw = (good_g.d + 3) // 4
                at = 6 + r.randrange(len(good_g.heads)) * (1 + qw)
                words[at] = (words[at] & ~(((1 << hid.width) - 1) << hid.lo)) | (r.randint(p.max_heads, 255) << hid.lo)
            else:  # a word short or a word too many
                words = words[:-1] if r.random() < 0.5 else words + [r.getrandbits(64)]
            words[0] = (words[0] & ~(0xFFFF << 8)) | (tag << 8)
            return Stimulus([(w, i == len(words) - 1) for i, w in enumerate(words)], f"error:{kind}")
        if kind == "heads_n":
            cmd = TopkHeadsCmd(tag, r.randint(p.max_heads + 1, 0xFFFF), 1)
            return Stimulus(cmd.encode(), f"error:{kind}", cmd)
        good = self.attend().command
        assert isinstance(good, AttendCmd)
        words = [w for w, _ in good.encode()]
        w0, w1 = words[0], words[1]

        def put(word: int, hi: int, lo: int, value: int) -> int:
            mask = ((1 << (hi - lo + 1)) - 1) << lo
            return (word & ~mask) | (value << lo & mask)

        if kind == "n0":
            w0 = put(w0, 39, 24, 0)
        elif kind == "nbig":
            w0 = put(w0, 39, 24, r.randint(p.max_tokens + 1, 0xFFFF))
        elif kind == "head":
            w0 = put(w0, 63, 56, r.randint(p.max_heads, 255))
        elif kind == "widths":
            which = r.choice(["msb0", "msb17", "lsb16", "sum", "v0", "v17"])
            w1 = {"msb0": put(w1, 12, 8, 0), "msb17": put(w1, 12, 8, r.randint(17, 31)),
                  "lsb16": put(w1, 17, 13, r.randint(16, 31)),
                  "sum": put(put(w1, 12, 8, 9), 17, 13, 8),
                  "v0": put(w1, 22, 18, 0), "v17": put(w1, 22, 18, r.randint(17, 31))}[which]
        elif kind in ("d0", "dbig"):
            d = 0 if kind == "d0" else r.randint(p.max_head_dim + 1, 255)
            w1 = put(w1, 7, 0, d)
            qwords = [r.getrandbits(64) for _ in range((d + 3) // 4)]
            words = [w0, w1, *words[2:6], *qwords]
            return Stimulus([(w, i == len(words) - 1) for i, w in enumerate(words)], f"error:{kind}")
        elif kind == "length":
            cut = r.choice([1, len(words) - 1, len(words) + 1])
            words = (words + [r.getrandbits(64)])[:cut]
            return Stimulus([(w, i == len(words) - 1) for i, w in enumerate(words)], f"error:{kind}")
        words = [w0, w1, *words[2:]]
        return Stimulus([(w, i == len(words) - 1) for i, w in enumerate(words)], f"error:{kind}")

    def next(self) -> Stimulus:
        """One random command packet."""
        r = self.rng.random()
        if r < self.error_rate:
            return self.error()
        r = self.rng.random()
        if r < 0.60:
            return self.attend()
        if r < 0.78:
            return self.attend_group()
        if r < 0.85:
            n, base = self._any_list()
            cmd = TopkTokensCmd(self._next_tag(), n, self.rng.choice([0, 1, n, self.rng.randint(0, n + 2)]), base)
            return Stimulus(cmd.encode(), "TOPK_TOKENS", cmd)
        if r < 0.90:
            n, base = self._any_list()
            cmd = ReadImportanceCmd(self._next_tag(), n, base)
            return Stimulus(cmd.encode(), "READ_IMPORTANCE", cmd)
        if r < 0.95:
            n = self.rng.randint(0, self.p.max_heads)
            cmd = TopkHeadsCmd(self._next_tag(), n, self.rng.choice([0, 1, n, self.rng.randint(0, n + 2)]))
            return Stimulus(cmd.encode(), "TOPK_HEADS", cmd)
        cmd = ClearCmd(self._next_tag(), tokens=self.rng.random() < 0.6, heads=self.rng.random() < 0.6)
        return Stimulus(cmd.encode(), "CLEAR", cmd)
