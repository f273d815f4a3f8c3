"""idlist: id lists of any size read, validated, sorted and de-duplicated in bounded memory;
VICIdial's CSV/TSV lead exports read by their lead_id column. No database."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from archiver import idlist
from archiver.errors import BadInput
from archiver.idlist import MAX_LEAD_ID, IdSet, read_ids

RANGE = "lead ids are whole numbers from 1 to 4294967295"


def ids_of(text: str | bytes, column: str | None = None) -> list[int]:
    raw = text.encode() if isinstance(text, str) else text
    return list(read_ids(io.BytesIO(raw), "ids.txt", column))


def error_of(text: str | bytes, column: str | None = None) -> str:
    with pytest.raises(BadInput) as err:
        ids_of(text, column)
    return str(err.value)


def old_hash(ids: list[int]) -> str:
    """The identity hash of jobs made before: a resumed job must be recognised."""
    return hashlib.sha256(",".join(map(str, sorted(set(ids)))).encode()).hexdigest()[:16]


# --- sorting, de-duplication, identity ------------------------------------------------------


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "merged-runs"])
def test_idset_is_sorted_unique_and_searchable(
    monkeypatch: pytest.MonkeyPatch, spill: bool
) -> None:
    if spill:
        monkeypatch.setattr(idlist, "RUN", 1000)
        monkeypatch.setattr(idlist, "BLOCK", 128)
    rng = random.Random(15)
    raw = [rng.randint(1, 9000) for _ in range(12000)] + [MAX_LEAD_ID, 1]
    want = sorted(set(raw))
    s = IdSet.from_ints(raw)
    assert (s._fh is not None) == spill
    assert list(s) == want and s.count == len(want)
    assert s.digest == old_hash(raw)
    assert s.bounds() == (1, MAX_LEAD_ID)
    assert s.after(0, 3) == want[:3]
    assert s.after(4500, 7) == [i for i in want if i > 4500][:7]
    assert s.after(MAX_LEAD_ID, 5) == []
    assert s.through(100, 300) == [i for i in want if 100 < i <= 300]
    assert [len(b) for b in s.batches(5000)][:-1] == [5000] * (len(want) // 5000)
    assert IdSet.from_ints(reversed(raw)).digest == s.digest


def test_empty_idset() -> None:
    s = IdSet.from_ints([])
    assert s.count == 0 and s.bounds() == (0, 0) and s.after(0, 10) == [] and list(s) == []


# --- one id a line ----------------------------------------------------------------------------


def test_plain_file_skips_blank_and_comment_lines() -> None:
    text = "\ufeff# exported 2024-01-01\n1\n\n  2  \r\n#3\n4294967295\n2\n"
    assert ids_of(text) == [1, 2, MAX_LEAD_ID]


@pytest.mark.parametrize(
    ("text", "line", "token"),
    [
        ("1\n2\nthree\n", 3, "three"),
        ("1\n0\n", 2, "0"),
        ("4294967296\n", 1, "4294967296"),
        ("-5\n", 1, "-5"),
        ("1.0\n", 1, "1.0"),
        ("１２\n", 1, "１２"),  # fullwidth digits, which int() would take
        ("DROP TABLE x\n", 1, "DROP TABLE x"),
        ("1,2\n", 1, "1,2"),  # all numbers: not a header
    ],
)
def test_plain_file_bad_line_is_named(text: str, line: int, token: str) -> None:
    assert error_of(text) == f"ids.txt line {line}: {token!r} is not a lead id; {RANGE}"


def test_bad_line_found_after_many_good_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idlist, "RUN", 100)  # runs were spilled before the bad line
    text = "".join(f"{i}\n" for i in range(1, 4001)) + "x\n" + "1\n" * 999
    assert error_of(text) == f"ids.txt line 4001: 'x' is not a lead id; {RANGE}"


def test_not_utf8_and_overlong_lines_are_bad_lines() -> None:
    assert error_of(b"1\n\xe9\n") == "ids.txt line 2: not UTF-8 text"
    long = b"1\n2\n" + b"7" * (64 * 1024 + 1) + b"\n"
    assert error_of(long).startswith("ids.txt line 3: longer than 64 KiB")
    assert ids_of(b"1\n" + b" " * (64 * 1024 - 3) + b"2\n") == [1, 2]  # 64 KiB exactly: fine


def test_nothing_to_read() -> None:
    assert error_of("\n# none\n\n") == "ids.txt holds no lead ids"
    assert error_of("") == "ids.txt holds no lead ids"
    assert error_of("lead_id\n") == "ids.txt holds no lead ids"


# --- CSV / TSV exports -------------------------------------------------------------------------

EXPORT = (
    '"vendor_lead_code","source_id","lead_id","list_id","comments"\n'
    '"CRM7","web","7","101","said ""call me"", later"\n'
    '"CRM3","","3","101","a, b, c"\n'
    '"CRM7b","web","7","101",""\n'
)


def test_csv_export_is_read_by_its_lead_id_column() -> None:
    assert ids_of(EXPORT) == [3, 7]


def test_tsv_export_and_unquoted_header() -> None:
    text = "list_id\tphone_number\tLead_ID\n101\t555,1234\t42\n102\t\t5\n"
    assert ids_of(text) == [5, 42]


def test_ids_column_picks_another_column() -> None:
    assert ids_of(EXPORT, "list_id") == [101]
    text = "a,old_id\nx,9\ny,8\n"
    assert ids_of(text, "old_id") == [8, 9]


def test_single_column_header() -> None:
    assert ids_of("lead_id\n5\n6\n") == [5, 6]


def test_header_without_the_column_names_the_columns() -> None:
    assert error_of('"phone_number","list_id"\n"555","101"\n') == (
        "ids.txt line 1: the header has no column 'lead_id' (columns found: 'phone_number', "
        "'list_id'); name the column with --ids-column"
    )
    assert error_of(EXPORT, "old_id").startswith(
        "ids.txt line 1: the header has no column 'old_id' (columns found: 'vendor_lead_code',"
    )


def test_csv_bad_rows_are_named() -> None:
    assert error_of(EXPORT + '"X","","abc","1",""\n') == (
        f"ids.txt line 5: 'abc' is not a lead id; {RANGE}"
    )
    assert error_of(EXPORT + '"X","web"\n') == (
        "ids.txt line 5: 2 field(s), no 'lead_id' (field 3 of the header)"
    )
    assert error_of(EXPORT + '"X","","9","1","unterminated\n').startswith(
        "ids.txt line 5: not valid CSV"
    )


# --- review of issue 15 -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1\r2\r3\r", "lead_id\r1\r2\r", "a,lead_id\rx,1\r"])
def test_cr_only_line_ends_are_bad_input(text: str) -> None:
    # CR-only line ends (classic Mac) are refused with a hint, never a csv traceback.
    msg = error_of(text)
    assert msg.startswith("ids.txt line 1: ") and "CR" in msg and "LF" in msg


def test_cr_only_line_ends_of_a_long_file_are_named() -> None:
    msg = error_of("".join(f"{i}\r" for i in range(1, 20000)))
    assert msg.startswith("ids.txt line 1: longer than 64 KiB") and "CR" in msg


@pytest.mark.parametrize(
    ("text", "column", "name"),
    [
        ("lead_id,lead_id\n1,2\n3,4\n", None, "lead_id"),
        ("Phone,phone\n1,2\n", "phone", "phone"),
        ("Lead_ID,x,LEAD_ID\n1,2,3\n", None, "lead_id"),
    ],
)
def test_ambiguous_column_is_bad_input(text: str, column: str | None, name: str) -> None:
    msg = error_of(text, column)
    assert msg.startswith(f"ids.txt line 1: the header has 2 columns named {name!r}")


def test_comment_lines_before_a_csv_header_are_skipped() -> None:
    text = "# export, 2024-01-01\n\n#, another\nvendor_lead_code,lead_id\nA,5\nB,6\n"
    assert ids_of(text) == [5, 6]
    assert error_of("# a, b\nx,lead_id\nA,abc\n") == (
        f"ids.txt line 3: 'abc' is not a lead id; {RANGE}"
    )


def test_hash_in_csv_data_is_data() -> None:
    # In a CSV export's rows `#` is data (a comments field may begin with it).
    assert ids_of('lead_id,comments\n5,"# call back"\n6,#x\n') == [5, 6]
    assert error_of("lead_id\n5\n# six\n") == f"ids.txt line 3: '# six' is not a lead id; {RANGE}"


# --- bounded resources -------------------------------------------------------------------------


class _Lines(io.RawIOBase):
    """`n` copies of `line`, then `tail`, produced as read (never held whole)."""

    def __init__(self, line: bytes, n: int, tail: bytes) -> None:
        self.line, self.left, self.tail = line, n, tail

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
        if self.left:
            k = min(self.left, len(buf) // len(self.line))
            data = self.line * k
            self.left -= k
        else:
            data, self.tail = self.tail, b""
        buf[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("line", [b"#\n", b"\n", b"  # exported\r\n"])
def test_leading_comment_and_blank_lines_are_counted_not_kept(line: bytes) -> None:
    import tracemalloc

    n = 300_000
    stream = io.BufferedReader(_Lines(line, n, b"5\nx\n"))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput) as err:
            read_ids(stream, "ids.txt")  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"ids.txt line {n + 2}: 'x' is not a lead id; {RANGE}"
    assert peak < 1024 * 1024  # every line kept: 2.5 to 20 MB


def test_leading_comments_before_a_csv_header_keep_line_numbers() -> None:
    text = "# exported 2024-01-01\n\n# by admin, for audit\n" + EXPORT
    assert ids_of(text) == [3, 7]
    assert error_of(text + '"X","","abc","1",""\n') == (
        f"ids.txt line 8: 'abc' is not a lead id; {RANGE}"
    )


def test_sorted_runs_kept_open_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """One temporary file per run kept open until the end ran out of file descriptors
    (EMFILE) past ~134M ids; runs are merged as they pile up."""
    import tempfile

    monkeypatch.setattr(idlist, "RUN", 10)
    monkeypatch.setattr(idlist, "BLOCK", 7)
    opened: list[io.IOBase] = []
    most = 0
    real = tempfile.TemporaryFile

    def counting(*a: object, **k: object) -> io.IOBase:
        nonlocal most
        fh = real(*a, **k)  # type: ignore[call-overload]
        opened.append(fh)
        most = max(most, sum(not f.closed for f in opened))
        return fh  # type: ignore[no-any-return]

    monkeypatch.setattr(tempfile, "TemporaryFile", counting)
    rng = random.Random(14)
    ids = [rng.randint(1, 50_000) for _ in range(30_000)]  # 3,000 runs, duplicates across runs
    text = "".join(f"{i}\n" for i in ids)
    got = read_ids(io.BytesIO(text.encode()), "ids.txt")
    assert list(got) == sorted(set(ids))
    assert got.digest == old_hash(ids)
    assert len(opened) > 100
    assert most <= 3 * getattr(idlist, "MAX_OPEN_RUNS", 64)


def test_a_number_of_any_length_is_read_or_refused_never_raised() -> None:
    """int() raises ValueError past 4300 digits, leading zeros included: a long number is
    refused, a zero-padded one read as its value."""
    long_zeros = "0" * 5000
    assert idlist.whole(long_zeros + "7", MAX_LEAD_ID) == 7
    assert idlist.whole(long_zeros, MAX_LEAD_ID) == 0
    assert idlist.whole("9" * 5000, MAX_LEAD_ID) is None
    assert idlist.whole(str(MAX_LEAD_ID), MAX_LEAD_ID) == MAX_LEAD_ID
    assert idlist.whole(str(MAX_LEAD_ID + 1), MAX_LEAD_ID) is None
    assert idlist.whole("١٢", MAX_LEAD_ID) is None
    assert idlist.parse_id(long_zeros + "7") == 7
    ids = read_ids(io.BytesIO(f"lead_id\n{long_zeros}7\n3\n".encode()), "ids.csv")
    assert list(ids) == [3, 7]
    with pytest.raises(BadInput, match="is not a lead id"):
        read_ids(io.BytesIO(f"{long_zeros}\n".encode()), "ids.txt")
