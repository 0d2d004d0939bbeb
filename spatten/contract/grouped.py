"""The grouped ATTEND (``ATTEND_GROUP``, ``hardware/SPEC.md`` sections 2 and 5): the query
heads that share one K/V head and one token list in one request.

:class:`GroupAttendCmd` carries the shared fields (token list, planes, bit widths,
``requant``, ``accumImportance``) and one :class:`HeadQuery` a head (head id, query,
score scale and shift, value top-k, requantization threshold). Its response,
:class:`GroupAttendResp`, is one header word and one ATTEND response section a head, in
the command's order; each section is what the single-head :class:`AttendCmd` of that head
(:meth:`GroupAttendCmd.head_commands`) answers, run in that order: the accelerator runs the
heads one after another, fetching the K rows once for the group (K LSBs once when any
head requantizes) and each V row at most once (the union of the heads' selections).

:func:`group_commands` makes a group of single-head commands that share everything but
the per-head fields. The single-head :class:`AttendCmd` API is unchanged beside it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar, Sequence

from spatten.contract.commands import AttendCmd, AttendResp, CommandError
from spatten.contract.layout import layout
from spatten.contract.packets import Word, decode_fields, encode_fields, opcode_of, tag_of
from spatten.contract.params import HwParams

__all__ = ["HeadQuery", "GroupAttendCmd", "GroupAttendResp", "group_commands", "decode_group_command",
           "decode_group_response", "group_command_length", "SHARED_FIELDS"]

SHARED_FIELDS = ("n", "d", "k_msb_bits", "k_lsb_bits", "v_bits", "requant", "accum_importance", "k_msb_base",
                 "k_lsb_base", "v_base", "tokens_base")
"""The :class:`AttendCmd` fields every head of a group must share."""


@dataclass(frozen=True)
class HeadQuery:
    """One head of a grouped ATTEND (the ``attendHead`` section of the packet)."""

    _PACKET: ClassVar[str] = "attendHead"
    _FIELDS: ClassVar[dict[str, str]] = {
        "head_id": "headId", "value_topk": "valueTopK", "score_shift": "scoreShift",
        "requant_threshold": "requantThreshold", "score_scale": "scoreScale", "value_thresh": "valueThresh"}

    head_id: int
    query: tuple[int, ...]
    score_scale: int
    score_shift: int
    value_topk: int = 0
    requant_threshold: int = 0
    value_thresh: bool = False

    def __post_init__(self) -> None:
        q = []
        for i, x in enumerate(self.query):
            try:
                q.append(operator.index(x))
            except TypeError:
                raise CommandError(f"HeadQuery.query[{i}]: expected an integer, got {x!r}") from None
        object.__setattr__(self, "query", tuple(q))


@dataclass(frozen=True)
class GroupAttendCmd:
    """ATTEND_GROUP: ``heads`` query heads over one token list and one K/V head."""

    _PACKET: ClassVar[str] = "attendGroup"
    _FIELDS: ClassVar[dict[str, str]] = {
        "tag": "tag", "n": "n", "d": "d", "k_msb_bits": "kMsbBits", "k_lsb_bits": "kLsbBits",
        "v_bits": "vBits", "requant": "requant", "accum_importance": "accumImportance",
        "k_msb_base": "kMsbBase", "k_lsb_base": "kLsbBase", "v_base": "vBase", "tokens_base": "listBase",
        "n_heads": "heads"}

    tag: int
    n: int
    heads: tuple[HeadQuery, ...]
    d: int
    k_msb_base: int
    v_base: int
    tokens_base: int
    k_msb_bits: int
    v_bits: int
    k_lsb_bits: int = 0
    k_lsb_base: int = 0
    requant: bool = False
    accum_importance: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))

    def head_commands(self) -> list[AttendCmd]:
        """The single-head ATTENDs this group answers as, in order (same tag)."""
        shared = {k: getattr(self, k) for k in SHARED_FIELDS}
        return [AttendCmd(tag=self.tag, query=h.query, score_scale=h.score_scale, score_shift=h.score_shift,
                          value_topk=h.value_topk, head_id=h.head_id, requant_threshold=h.requant_threshold,
                          value_thresh=h.value_thresh, **shared) for h in self.heads]

    def encode(self) -> list[Word]:
        words = [w for w, _ in encode_fields(self, values={"n_heads": len(self.heads)})]
        for i, h in enumerate(self.heads):
            if len(h.query) != self.d:
                raise CommandError(f"GroupAttendCmd.heads[{i}]: query has {len(h.query)} elements, D={self.d}")
            words += [w for w, _ in encode_fields(h, tails=[("query", h.query)])]
        return [(w, i == len(words) - 1) for i, w in enumerate(words)]

    def problems(self, params: HwParams) -> list[str]:
        """Why the accelerator would answer this command with an error (empty: valid)."""
        p: list[str] = []
        if not 1 <= len(self.heads) <= params.max_group_heads:
            p.append(f"heads={len(self.heads)} not in 1..maxGroupHeads={params.max_group_heads}")
        seen: set[str] = set()
        for c in self.head_commands() or [AttendCmd(tag=self.tag, query=(0,) * self.d, score_scale=0, score_shift=0,
                                                     **{k: getattr(self, k) for k in SHARED_FIELDS})]:
            for x in c.problems(params):
                if x not in seen:
                    seen.add(x)
                    p.append(x)
        return p


@dataclass(frozen=True)
class GroupAttendResp:
    """ATTEND_GROUP response: one :class:`AttendResp` section a head, in command order."""

    _PACKET: ClassVar[str] = "attendGroupResp"
    _FIELDS: ClassVar[dict[str, str]] = {"tag": "tag", "d": "d", "n_heads": "heads"}

    tag: int
    d: int
    sections: tuple[AttendResp, ...]

    def encode(self) -> list[Word]:
        words = [w for w, _ in encode_fields(self, values={"n_heads": len(self.sections)})]
        for s in self.sections:
            words += [w for w, _ in s.encode()]
        return [(w, i == len(words) - 1) for i, w in enumerate(words)]


def group_commands(cmds: Sequence[AttendCmd], tag: int | None = None) -> GroupAttendCmd:
    """The grouped ATTEND of single-head commands that share :data:`SHARED_FIELDS`
    (``tag`` defaults to the first command's)."""
    if not cmds:
        raise CommandError("group_commands: no commands")
    first = cmds[0]
    for i, c in enumerate(cmds[1:], 1):
        for k in SHARED_FIELDS:
            if getattr(c, k) != getattr(first, k):
                raise CommandError(f"group_commands: command {i} has {k}={getattr(c, k)!r}, "
                                   f"command 0 {getattr(first, k)!r}; a group shares {k}")
    heads = tuple(HeadQuery(c.head_id, c.query, c.score_scale, c.score_shift, c.value_topk, c.requant_threshold,
                            c.value_thresh) for c in cmds)
    return GroupAttendCmd(tag=first.tag if tag is None else tag, heads=heads,
                          **{k: getattr(first, k) for k in SHARED_FIELDS})


def _query_words(d: int) -> int:
    return layout().packet("attendHead").tail("query").words(d)


def group_command_length(word0: int, word1: int | None) -> int:
    """Words of a well-formed ATTEND_GROUP packet from its first two words."""
    lay = layout()
    pk, hp = lay.packet("attendGroup"), lay.packet("attendHead")
    heads = pk.field("heads").extract(word0)
    d = pk.field("d").extract(word1 or 0)
    return pk.header_words + heads * (hp.header_words + _query_words(d))


def decode_group_command(w: Sequence[int]) -> GroupAttendCmd:
    """The :class:`GroupAttendCmd` of the words ``w`` (length already checked)."""
    lay = layout()
    pk, hp = lay.packet("attendGroup"), lay.packet("attendHead")
    kw = decode_fields(GroupAttendCmd, pk, w)
    heads, d = pk.get(w, "heads"), pk.get(w, "d")
    t = hp.tail("query")
    pos = pk.header_words
    hs = []
    for _ in range(heads):
        hk = decode_fields(HeadQuery, hp, w[pos:pos + hp.header_words])
        pos += hp.header_words
        hk["query"] = t.unpack(w[pos:pos + t.words(d)], d)
        pos += t.words(d)
        hs.append(HeadQuery(**hk))
    return GroupAttendCmd(heads=tuple(hs), **kw)


def section_lengths(words: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, length)`` of each section of an ATTEND_GROUP response ``words``; raises
    :class:`CommandError` when the sections do not fill the packet exactly."""
    lay = layout()
    pk, sp = lay.packet("attendGroupResp"), lay.packet("attendResp")
    heads, d = pk.get(words, "heads"), pk.get(words, "d")
    sel = sp.tail("sel")
    out, pos = [], pk.header_words
    for i in range(heads):
        if pos + sp.header_words > len(words):
            raise CommandError(f"ATTEND_GROUP response (tag {tag_of(words[0])}): section {i} is cut short",
                               opcode_of(words[0]), tag_of(words[0]))
        n = sp.header_words + d + sel.words(sp.get(words[pos:], "n"))
        out.append((pos, n))
        pos += n
    if pos != len(words):
        raise CommandError(f"ATTEND_GROUP response (tag {tag_of(words[0])}) has {len(words)} words, its "
                           f"{heads} sections {pos}", opcode_of(words[0]), tag_of(words[0]))
    return out


def decode_group_response(packet: Sequence[Word]) -> GroupAttendResp:
    """Decode an ATTEND_GROUP response strictly (each section as an ATTEND response)."""
    from spatten.contract.commands import decode_response

    w = [int(x) for x, _ in packet]
    pk = layout().packet("attendGroupResp")
    if w[0] & ~pk.used_mask(0) & ((1 << 64) - 1):
        raise CommandError(f"ATTEND_GROUP response: reserved bits set in word 0: 0x{w[0]:016x}")
    secs = []
    for start, n in section_lengths(w):
        sec = decode_response([(x, i == n - 1) for i, x in enumerate(w[start:start + n])])
        if not isinstance(sec, AttendResp):
            raise CommandError(f"ATTEND_GROUP response: section at word {start} is not an ATTEND section")
        secs.append(sec)
    return GroupAttendResp(tag=pk.get(w, "tag"), d=pk.get(w, "d"), sections=tuple(secs))
