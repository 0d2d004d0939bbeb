"""The evaluation texts: the R lazy-load reader (hand-built files) and the austen: source."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import pytest

from workloads.rdata import RDataError, lazyload_names, lazyload_object, unserialize
from workloads.text import TextError, austen_dirs, check_text, read_text


def _i(x: int) -> bytes:
    return struct.pack(">i", x)


def _chars(s: str | None) -> bytes:
    if s is None:
        return _i(9) + _i(-1)
    b = s.encode()
    return _i(9 | (1 << 15)) + _i(len(b)) + b  # UTF-8 flag in the general-purpose bits


def _strs(items: list[str | None], names: list[str] | None = None) -> bytes:
    flags = 16 | (0x200 if names else 0)
    out = _i(flags) + _i(len(items)) + b"".join(_chars(s) for s in items)
    return out + (_names_attr(names) if names else b"")


def _names_attr(names: list[str]) -> bytes:
    # pairlist with a tag: SYMSXP "names" -> STRSXP, then NILVALUE
    return _i(2 | 0x400) + _i(1) + _chars("names") + _strs(names) + _i(254)


def _list(items: list[bytes], names: list[str]) -> bytes:
    return _i(19 | 0x200) + _i(len(items)) + b"".join(items) + _names_attr(names)


def _ints(vals: list[int]) -> bytes:
    return _i(13) + _i(len(vals)) + b"".join(_i(v) for v in vals)


HEADER = b"X\n" + _i(3) + _i(0x40200) + _i(0x30500) + _i(5) + b"UTF-8"


def _lazyload(tmp: Path, objects: dict[str, bytes]) -> Path:
    blobs, where, off = [], {}, 0
    for name, body in objects.items():
        raw = HEADER + body
        blob = struct.pack(">I", len(raw)) + zlib.compress(raw)
        where[name] = (off, len(blob))
        off += len(blob)
        blobs.append(blob)
    (tmp / "Rdata.rdb").write_bytes(b"".join(blobs))
    names = list(where)
    variables = _list([_ints(list(where[n])) for n in names], names)
    index = HEADER + _list([variables, _i(254), _ints([1])], ["variables", "references", "compressed"])
    (tmp / "Rdata.rdx").write_bytes(gzip.compress(index))
    return tmp / "Rdata.rdx"


def test_unserialize_character_vector_with_na_and_names() -> None:
    assert unserialize(HEADER + _strs(["It is a truth", None, "é"])) == ["It is a truth", None, "é"]
    assert unserialize(HEADER + _strs(["a", "b"], names=["x", "y"])) == {"x": "a", "y": "b"}
    with pytest.raises(RDataError, match="not an R XDR"):
        unserialize(b"RDX2\n" + HEADER)
    with pytest.raises(RDataError, match="truncated"):
        unserialize(HEADER + _i(16) + _i(3) + _chars("only one"))
    with pytest.raises(RDataError, match="unsupported R object type 3"):
        unserialize(HEADER + _i(3))


def test_lazyload_database(tmp_path: Path) -> None:
    rdx = _lazyload(tmp_path, {"emma": _strs(["EMMA", "", "Emma Woodhouse, handsome"]), "other": _strs(["x"])})
    names = lazyload_names(rdx)
    assert list(names) == ["emma", "other"] and names["emma"][0] == 0
    assert lazyload_object(rdx, "emma") == ["EMMA", "", "Emma Woodhouse, handsome"]
    assert lazyload_object(rdx, "other") == ["x"]
    with pytest.raises(RDataError, match="no object 'persuasion'.*emma, other"):
        lazyload_object(rdx, "persuasion")
    (tmp_path / "Rdata.rdb").write_bytes(b"\x00\x00\x00\x10garbage")
    with pytest.raises(RDataError, match="cannot read 'emma'|truncated"):
        lazyload_object(rdx, "emma")


def test_austen_source_reads_the_package_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "janeaustenr" / "data"
    data.mkdir(parents=True)
    lines = ["PERSUASION", "", "Sir Walter Elliot, of Kellynch Hall"] * 40
    _lazyload(data, {"persuasion": _strs(lines)})
    monkeypatch.setenv("JANEAUSTENR_DIR", str(tmp_path / "janeaustenr"))
    assert austen_dirs()[0] == tmp_path / "janeaustenr"
    assert read_text("austen:persuasion") == "\n".join(lines)
    check_text("austen:persuasion", 1000)
    with pytest.raises(TextError, match="austen:emma: .*no object 'emma'"):
        read_text("austen:emma")
    with pytest.raises(TextError, match="fewer than the 100000 tokens"):
        check_text("austen:persuasion", 100000)


def test_missing_austen_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workloads.text as text  # noqa: PLC0415

    monkeypatch.setattr(text, "austen_dirs", lambda: [tmp_path / "none"])
    with pytest.raises(TextError, match="r-cran-janeaustenr is not installed.*tools/setup.sh"):
        read_text("austen:emma")


@pytest.mark.skipif(not any((d / "data" / "Rdata.rdx").is_file() for d in austen_dirs()),
                    reason="r-cran-janeaustenr not unpacked (tools/setup.sh does it)")
def test_the_real_novels() -> None:
    emma = read_text("austen:emma")
    assert emma.startswith("EMMA\n\nBy Jane Austen") and "Emma Woodhouse, handsome, clever, and rich" in emma
    assert len(emma) > 800_000
    pers = read_text("austen:persuasion")
    assert "Sir Walter Elliot, of Kellynch Hall" in pers[:2000]
