"""The LOAD DATA file format of archiver/loadcopy.py, and the file that holds it, without a
database: each hostile value's escaped bytes, a reader of the format written from the server's
documented rules that must give back every row exactly, and the spool's files."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.loadcopy import encode_rows, escape, server_refusal, spool

# (value, as the file holds it)
ESCAPED = [
    (b"", b""),
    (b"NULL", b"NULL"),  # the word is text: it means NULL only inside ENCLOSED BY
    (b"\\N", b"\\\\N"),  # the text \N, not the NULL marker
    (b"\\", b"\\\\"),
    (b"\\\\", b"\\\\\\\\"),
    (b"x\\", b"x\\\\"),  # a trailing backslash does not escape the field separator
    (b"\t", b"\\t"),
    (b"a\tb", b"a\\tb"),
    (b"\n", b"\\n"),
    (b"\r\n", b"\\r\\n"),
    (b"\x00", b"\\0"),
    (b"a\x00b", b"a\\0b"),
    (b"\\t", b"\\\\t"),  # backslash then t: two characters, not a tab
    (b"\\0", b"\\\\0"),
    (b"Z\x1a", b"Z\x1a"),
    ("😀 東京 é".encode(), "😀 東京 é".encode()),  # UTF-8 bytes are never escape bytes
    (b"'\"`", b"'\"`"),
]


@pytest.mark.parametrize(("value", "expected"), ESCAPED, ids=[repr(v) for v, _ in ESCAPED])
def test_each_hostile_value_is_escaped(value: bytes, expected: bytes) -> None:
    assert escape(value) == expected


def test_null_empty_and_the_words_null_are_four_different_fields() -> None:
    data = encode_rows([(None, b"", b"NULL", b"\\N"), (b"1", None, None, b"")])
    assert data == b"\\N\t\tNULL\t\\\\N\n1\t\\N\t\\N\t\n"


def test_no_rows_is_an_empty_file() -> None:
    assert encode_rows([]) == b""


def test_a_decoded_value_is_refused() -> None:
    with pytest.raises(TypeError, match="str"):
        encode_rows([(b"1", "text")])  # type: ignore[list-item]


# The server's reading of a line with FIELDS TERMINATED BY '\t' ESCAPED BY '\\', nothing
# enclosing (MariaDB's LOAD DATA documentation): `\N` alone is NULL; \0 \b \n \r \t \Z stand
# for their control character; a backslash before anything else stands for that character.
READ_ESCAPES = {b"0": b"\x00", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}


def read_file(data: bytes) -> list[tuple[bytes | None, ...]]:
    rows: list[tuple[bytes | None, ...]] = []
    row: list[bytes | None] = []
    field = bytearray()
    raw = bytearray()  # the field as written, to tell `\N` from an escaped one
    i = 0
    while i < len(data):
        b = data[i : i + 1]
        if b == b"\\":
            nxt = data[i + 1 : i + 2]
            field += READ_ESCAPES.get(nxt, nxt)
            raw += b + nxt
            i += 2
            continue
        if b in (b"\t", b"\n"):
            row.append(None if bytes(raw) == b"\\N" else bytes(field))
            field, raw = bytearray(), bytearray()
            if b == b"\n":
                rows.append(tuple(row))
                row = []
        else:
            field += b
            raw += b
        i += 1
    assert not row and not field, "the file ends inside a line"
    return rows


values = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from([v for v, _ in ESCAPED]),
    st.lists(st.sampled_from([b"\\", b"\t", b"\n", b"\r", b"\x00", b"N", b"0", b"t"])).map(
        b"".join
    ),
)


@given(st.lists(st.lists(values, min_size=1, max_size=6).map(tuple), max_size=8))
def test_every_row_reads_back_exactly(rows: list[tuple[bytes | None, ...]]) -> None:
    assert read_file(encode_rows(rows)) == rows


def test_the_reader_tells_the_traps_apart() -> None:
    # The reader itself, on hand-written lines: a mistake in it would pass any encoder.
    assert read_file(b"\\N\t\\\\N\tNULL\t\n") == [(None, b"\\N", b"NULL", b"")]
    assert read_file(b"a\\tb\tc\\\\\n") == [(b"a\tb", b"c\\")]


# --- the spool ----------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_memfd_holds_the_data_in_memory_only(private_tmp: Path) -> None:
    with spool(b"secret\tlead\n", kind="memfd") as path:
        assert path.startswith("/proc/self/fd/")
        assert os.readlink(path).startswith("/memfd:vicidial-archiver-chunk")
        assert Path(path).read_bytes() == b"secret\tlead\n"
        assert list(private_tmp.iterdir()) == []
    assert not os.path.exists(path)


@pytest.mark.parametrize("fail", [False, True])
def test_file_is_private_and_gone_on_every_exit(private_tmp: Path, fail: bool) -> None:
    def use() -> str:
        with spool(b"secret\tlead\n", kind="file") as path:
            assert Path(path).read_bytes() == b"secret\tlead\n"
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert list(private_tmp.iterdir()) == []  # unlinked before the data went in
            if fail:
                raise RuntimeError("the load failed")
            return path

    if fail:
        with pytest.raises(RuntimeError):
            use()
    else:
        path = use()
        assert not os.path.exists(path)
    assert list(private_tmp.iterdir()) == []


def test_named_file_without_proc_is_removed_on_every_exit(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: p != "/proc/self/fd" and real_isdir(p))
    with pytest.raises(RuntimeError), spool(b"secret\n", kind="auto") as path:
        assert Path(path).parent.parent == private_tmp
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(Path(path).parent).st_mode) == 0o700
        assert Path(path).read_bytes() == b"secret\n"
        raise RuntimeError("the load failed")
    assert list(private_tmp.iterdir()) == []


def test_an_unknown_spool_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="use auto, memfd or file"), spool(b"x", kind="disk"):
        pass


# --- the server's answer --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, "0", "OFF", None])
def test_a_server_with_local_infile_off_is_named(value: object) -> None:
    reason = server_refusal(value)
    assert reason is not None and "local_infile" in reason


@pytest.mark.parametrize("value", [1, "1", "ON"])
def test_a_server_with_local_infile_on_allows(value: object) -> None:
    assert server_refusal(value) is None
