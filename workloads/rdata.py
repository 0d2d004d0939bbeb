"""A minimal reader of R's lazy-load data bases (``data/Rdata.rdx`` + ``Rdata.rdb``).

R packages installed from Debian keep their data sets in a lazy-load data base: the
``.rdx`` index is a gzip-compressed serialized list whose ``variables`` element maps each
object's name to ``(offset, length)`` in the ``.rdb`` file; each ``.rdb`` entry is a 4-byte
big-endian uncompressed length followed by a zlib stream holding one serialized object.

Serialization (R's ``serialize``, XDR binary format, versions 2 and 3) is read for the
types such data sets and their index use: NULL, symbols, pairlists (attributes), character,
logical, integer and double vectors, and generic vectors (lists). Anything else raises
``RDataError`` naming the type. Used by ``workloads/text.py`` to read the novels of
``r-cran-janeaustenr`` without R.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

NILVALUE, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 254, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP = 255
_NA_INT = -(2**31)


class RDataError(ValueError):
    """The file is not an R serialization this reader understands."""


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.d, self.i, self.where, self.refs = data, 0, where, []

    def _int(self) -> int:
        if self.i + 4 > len(self.d):
            raise RDataError(f"{self.where}: truncated at byte {self.i}")
        (v,) = struct.unpack_from(">i", self.d, self.i)
        self.i += 4
        return v

    def _bytes(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.d):
            raise RDataError(f"{self.where}: truncated at byte {self.i}")
        b = self.d[self.i : self.i + n]
        self.i += n
        return b

    def header(self) -> None:
        if self._bytes(2) != b"X\n":
            raise RDataError(f"{self.where}: not an R XDR serialization")
        version = self._int()
        self._int()
        self._int()
        if version == 3:
            self._bytes(self._int())  # native encoding name
        elif version != 2:
            raise RDataError(f"{self.where}: serialization version {version} (2 or 3 expected)")

    def item(self) -> object:
        flags = self._int()
        t = flags & 0xFF
        has_attr, has_tag = bool(flags & 0x200), bool(flags & 0x400)
        if t == NILVALUE:
            return None
        if t == REFSXP:
            idx = flags >> 8 or self._int()
            return self.refs[idx - 1]
        if t == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if t == CHARSXP:
            n = self._int()
            return None if n == -1 else self._bytes(n).decode("utf-8", errors="replace")
        if t == LISTSXP:
            out: dict[object, object] = {}
            while True:
                attr = self.item() if has_attr else None
                del attr
                tag = self.item() if has_tag else len(out)
                out[tag] = self.item()
                nxt = self._int()
                if nxt & 0xFF == NILVALUE:
                    return out
                if nxt & 0xFF != LISTSXP:
                    raise RDataError(f"{self.where}: pairlist continues with type {nxt & 0xFF}")
                has_attr, has_tag = bool(nxt & 0x200), bool(nxt & 0x400)
        if t in (LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP):
            n = self._int()
            if n == -1:  # long vector
                n = (self._int() << 32) + self._int()
            if t in (LGLSXP, INTSXP):
                vals: object = [None if v == _NA_INT else v for v in struct.unpack(f">{n}i", self._bytes(4 * n))]
            elif t == REALSXP:
                vals = list(struct.unpack(f">{n}d", self._bytes(8 * n)))
            else:
                vals = [self.item() for _ in range(n)]
            if has_attr:
                attrs = self.item()
                names = attrs.get("names") if isinstance(attrs, dict) else None
                if isinstance(names, list) and len(names) == n:
                    return dict(zip(names, vals, strict=True))
            return vals
        raise RDataError(f"{self.where}: unsupported R object type {t}")


def unserialize(data: bytes, where: str = "<bytes>") -> object:
    """The object of an R XDR serialization (lists with names become dicts)."""
    r = _Reader(data, where)
    r.header()
    return r.item()


def lazyload_names(rdx: Path) -> dict[str, tuple[int, int]]:
    """Name -> (offset, length) of every object in a lazy-load data base index."""
    try:
        index = unserialize(gzip.decompress(rdx.read_bytes()), str(rdx))
    except (OSError, EOFError, zlib.error) as exc:
        raise RDataError(f"{rdx}: cannot read: {exc}") from exc
    variables = index.get("variables") if isinstance(index, dict) else None
    if not isinstance(variables, dict):
        raise RDataError(f"{rdx}: no 'variables' in the lazy-load index")
    return {str(k): (int(v[0]), int(v[1])) for k, v in variables.items()}


def lazyload_object(rdx: Path, name: str) -> object:
    """Object ``name`` of the lazy-load data base ``rdx`` (its ``.rdb`` beside it)."""
    where = lazyload_names(rdx)
    if name not in where:
        raise RDataError(f"{rdx}: no object {name!r} (objects: {', '.join(sorted(where))})")
    off, length = where[name]
    rdb = rdx.with_suffix(".rdb")
    try:
        with rdb.open("rb") as f:
            f.seek(off)
            blob = f.read(length)
        if len(blob) != length or length < 5:
            raise RDataError(f"{rdb}: entry {name!r} truncated")
        return unserialize(zlib.decompress(blob[4:]), f"{rdb}:{name}")
    except (OSError, zlib.error) as exc:
        raise RDataError(f"{rdb}: cannot read {name!r}: {exc}") from exc
