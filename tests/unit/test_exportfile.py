"""The export file's field encoding (archiver/exportfile.py): every value, any bytes, comes back
exactly; NULL, '' and the text NULL are three different fields; a field the format does not
write is refused."""

from __future__ import annotations

import random

import pytest

from archiver.exportfile import NULL_FIELD, decode_field, encode_field, row_digest

VALUES = [
    None,
    b"",
    b"NULL",
    b"\\N",
    b"\\",
    b"\t\n\r",
    b'a,"b"',
    "😀 𝄞 ñ €".encode(),
    bytes(range(256)),
    b"\xff\xfe\xc3",  # not UTF-8
    b"\xed\xa0\x80",  # a surrogate, not UTF-8
    "\u2028\x85".encode(),  # line separators other than LF and CR
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_value_comes_back_exactly(value: bytes | None) -> None:
    field = encode_field(value)
    assert "\n" not in field and "\r" not in field  # one line per row
    assert decode_field(field) == value


def test_random_bytes_round_trip() -> None:
    rng = random.Random(24)
    for _ in range(2000):
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        assert decode_field(encode_field(value)) == value


def test_null_empty_and_the_text_null_differ() -> None:
    fields = {encode_field(None), encode_field(b""), encode_field(b"NULL"), encode_field(b"\\N")}
    assert len(fields) == 4
    assert encode_field(None) == NULL_FIELD == "\\N"
    assert encode_field(b"plain text") == "plain text"  # readable CSV for text
    assert row_digest([None]) != row_digest([b""]) != row_digest([b"NULL"])
    assert row_digest([b"a", b"b"]) != row_digest([b"ab", b""])


@pytest.mark.parametrize("field", ["\\", "a\\", "\\q", "\\x4", "\\xZZ", "\\X41", "a\\N"])
def test_a_field_the_format_does_not_write_is_refused(field: str) -> None:
    with pytest.raises(ValueError):
        decode_field(field)
