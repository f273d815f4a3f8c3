"""Explicit lead ids in any number, in bounded memory.

An id list (arguments, `--ids-file PATH|-`, a request body) becomes an `IdSet`: the ids sorted
and de-duplicated, held as 4-byte integers in memory when few and in an anonymous temporary
file when many, with their count and identity hash. It is built in one pass over the input,
which validates every line first: the database sees nothing until the whole input is read and
found good. Sorting is an external merge sort (sorted runs of `RUN` ids, merged with
heapq.merge), so a file of 1,000,000 ids costs a few megabytes, never a list of all of them;
runs are merged `MAX_OPEN_RUNS` at a time as they pile up, so any number of ids keeps a bounded
number of temporary files open.

A file whose first line is a header (a VICIdial lead export: comma or tab separated, quoted
with `"`) is read by its `lead_id` column, or the column `--ids-column` names, with the csv
module.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import heapq
import re
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from typing import IO, Protocol

from archiver.errors import BadInput

MAX_LEAD_ID = 4294967295  # INT UNSIGNED
MAX_LINE = 64 * 1024  # bytes; a longer line is a bad line, never read whole
RUN = 131072  # ids per sorted run: ~4 MB of Python ints while a run is sorted
BLOCK = 16384  # ids read from a run file at a time while merging
MAX_OPEN_RUNS = 64  # sorted runs kept open at once; more are merged into one as they come
ID_COLUMN = "lead_id"
RANGE = f"lead ids are whole numbers from 1 to {MAX_LEAD_ID}"
_DIGITS = re.compile(r"[0-9]+")  # not \d, which also takes other scripts' digits ('١٢')


def whole(text: str, maximum: int) -> int | None:
    """The value of `text` when it is ASCII digits (int() also takes '١٢', '1_000', '+1') and
    at most `maximum` (at most 20 digits); None otherwise. int() raises ValueError for more
    than 4300 digits, leading zeros included: those are dropped and the rest counted first."""
    if not _DIGITS.fullmatch(text):
        return None
    if len(text) > 20:  # rare: a padded or a too long number
        text = text.lstrip("0") or "0"
        if len(text) > 20:
            return None
    value = int(text)
    return value if value <= maximum else None


class IdSource(Protocol):
    """Sorted unique lead ids a walk reads in ascending order."""

    count: int
    digest: str

    def after(self, after: int, n: int) -> list[int]:
        """The first `n` ids greater than `after`."""

    def through(self, after: int, upto: int) -> list[int]:
        """Every id in (after, upto]."""

    def bounds(self) -> tuple[int, int]:
        """(first, last); (0, 0) when empty."""

    def batches(self, n: int) -> Iterator[list[int]]:
        """All ids, ascending, `n` at a time."""


class IdSet:
    """Sorted unique ids, read back by position (binary search over 4-byte integers)."""

    def __init__(self, mem: array[int] | None, fh: IO[bytes] | None, count: int, digest: str):
        self._mem = mem
        self._fh = fh
        self.count = count
        self.digest = digest

    @staticmethod
    def from_ints(ids: Iterable[int]) -> IdSet:
        return _Sorter().add_all(ids).finish()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> int:
        if self._mem is not None:
            return self._mem[i]
        return self.slice(i, i + 1)[0]

    def slice(self, start: int, stop: int) -> list[int]:
        start, stop = max(0, start), min(self.count, stop)
        if start >= stop:
            return []
        if self._mem is not None:
            return self._mem[start:stop].tolist()
        assert self._fh is not None
        self._fh.seek(start * 4)
        part = array("I")
        part.frombytes(self._fh.read((stop - start) * 4))
        return part.tolist()

    def after(self, after: int, n: int) -> list[int]:
        start = bisect.bisect_right(self, after)
        return self.slice(start, start + n)

    def through(self, after: int, upto: int) -> list[int]:
        return self.slice(bisect.bisect_right(self, after), bisect.bisect_right(self, upto))

    def bounds(self) -> tuple[int, int]:
        return (self[0], self[self.count - 1]) if self.count else (0, 0)

    def batches(self, n: int) -> Iterator[list[int]]:
        for start in range(0, self.count, n):
            yield self.slice(start, start + n)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches(BLOCK):
            yield from batch


class _Sorter:
    """Sorted runs in temporary files, merged into one sorted unique IdSet.

    Runs are kept as levels: `MAX_OPEN_RUNS` runs of one level are merged into one run of the
    next level as soon as they are there, so at most (MAX_OPEN_RUNS - 1) runs a level are open
    (a few levels for billions of ids), and each id is rewritten once a level."""

    def __init__(self) -> None:
        self.buf = array("I")
        self.runs: list[tuple[int, IO[bytes]]] = []  # (level, file); levels never increase

    def add(self, lead: int) -> None:
        self.buf.append(lead)
        if len(self.buf) >= RUN:
            self._spill()

    def add_all(self, ids: Iterable[int]) -> _Sorter:
        for lead in ids:
            self.add(lead)
        return self

    def _spill(self) -> None:
        run = _unique_sorted(self.buf)
        fh = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until merged)
        run.tofile(fh)
        self.buf = array("I")
        self.runs.append((0, fh))
        while len(self.runs) >= MAX_OPEN_RUNS:
            level = self.runs[-1][0]
            tail = self.runs[-MAX_OPEN_RUNS:]
            if any(lv != level for lv, _ in tail):
                break
            merged = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until merged)
            for block in _merged_blocks([f for _, f in tail]):
                block.tofile(merged)
            del self.runs[-MAX_OPEN_RUNS:]
            self.runs.append((level + 1, merged))

    def finish(self) -> IdSet:
        if not self.runs:  # few ids: one run, kept in memory
            mem = _unique_sorted(self.buf)
            return IdSet(mem, None, len(mem), _digest_of([mem]))
        if self.buf:
            self._spill()
        out = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the IdSet)
        h, count, first = hashlib.sha256(), 0, True
        for block in _merged_blocks([f for _, f in self.runs]):
            first = _hash_block(h, block, first)
            block.tofile(out)
            count += len(block)
        self.runs = []
        out.flush()
        return IdSet(None, out, count, h.hexdigest()[:16])


def _merged_blocks(runs: list[IO[bytes]]) -> Iterator[array[int]]:
    """The ids of sorted runs, merged and de-duplicated, `BLOCK` at a time; the runs are
    closed (and so removed) once read."""
    block = array("I")
    last = -1
    for lead in heapq.merge(*(_read_run(fh) for fh in runs)):
        if lead == last:
            continue
        last = lead
        block.append(lead)
        if len(block) >= BLOCK:
            yield block
            block = array("I")
    if block:
        yield block
    for fh in runs:
        fh.close()


def _unique_sorted(buf: array[int]) -> array[int]:
    return array("I", sorted(set(buf)))


def _read_run(fh: IO[bytes]) -> Iterator[int]:
    fh.seek(0)
    while True:
        part = array("I")
        part.frombytes(fh.read(BLOCK * 4))
        if not part:
            return
        yield from part


def _hash_block(h: hashlib._Hash, block: array[int], first: bool) -> bool:
    # The identity hash of earlier versions: sha256 of the ids joined by commas.
    h.update((b"" if first else b",") + ",".join(map(str, block)).encode())
    return False


def _digest_of(blocks: Iterable[array[int]]) -> str:
    h, first = hashlib.sha256(), True
    for block in blocks:
        if block:
            first = _hash_block(h, block, first)
    return h.hexdigest()[:16]


# --- reading ------------------------------------------------------------------------------


def parse_id(token: str, where: str = "lead id") -> int:
    text = token.strip()
    value = whole(text, MAX_LEAD_ID)
    if not value:  # None, or 0
        raise BadInput(f"invalid {where} {token!r}: {RANGE}")
    return value


def _lines(stream: IO[bytes], name: str) -> Iterator[str]:
    """The stream's lines as text, each at most MAX_LINE bytes; a byte-order mark dropped."""
    n = 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE:
            raise BadInput(
                f"{name} line {n}: longer than {MAX_LINE // 1024} KiB; give one lead id a line, "
                "or a CSV export with a header line" + (_CR_HINT if b"\r" in raw else "")
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{name} line {n}: not UTF-8 text") from None
        if n == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if n == 1 and "\r" in text.rstrip("\r\n"):
            raise BadInput(f"{name} line 1: its lines end in CR only{_CR_HINT}")
        yield text


_CR_HINT = " (CR-only line ends are not read: convert the file to LF or CRLF line ends)"


def _bad_id(name: str, n: int, token: str) -> BadInput:
    return BadInput(f"{name} line {n}: {token!r} is not a lead id; {RANGE}")


def read_ids(stream: IO[bytes], name: str, column: str | None = None) -> IdSet:
    """Every id of a file (one a line, or a CSV/TSV export read by its id column), sorted and
    unique. The whole input is validated here; a bad line raises BadInput naming it."""
    lines = _lines(stream, name)
    sorter = _Sorter()
    # The first line that holds something decides the format; the comment and blank lines
    # before it are counted, never kept (a stream of nothing but '#' lines costs no memory).
    skipped, first_line = 0, ""
    for text in lines:
        if text.strip() and not text.lstrip().startswith("#"):
            first_line = text
            break
        skipped += 1
    head = [first_line] if first_line else []
    first = first_line.strip()
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    fields = next(csv.reader([first], delimiter=delimiter)) if first else []
    wanted = column or ID_COLUMN
    is_header = column is not None or (
        len(fields) > 1 and not all(_DIGITS.fullmatch(f.strip()) for f in fields)
    )
    is_header = is_header or [f.strip().lower() for f in fields] == [ID_COLUMN]
    if is_header:
        _read_csv(head, lines, name, wanted, delimiter, sorter, skipped)
    else:
        _read_plain(head, lines, name, sorter, skipped)
    ids = sorter.finish()
    if not ids.count:
        raise BadInput(f"{name} holds no lead ids")
    return ids


def _read_plain(
    head: list[str], lines: Iterator[str], name: str, sorter: _Sorter, skipped: int
) -> None:
    n = skipped
    for seq in (head, lines):
        for line in seq:
            n += 1
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            value = whole(text, MAX_LEAD_ID)
            if not value:
                raise _bad_id(name, n, text)
            sorter.add(value)


def _read_csv(
    head: list[str],
    lines: Iterator[str],
    name: str,
    wanted: str,
    delimiter: str,
    sorter: _Sorter,
    skipped: int,
) -> None:
    def all_lines() -> Iterator[str]:
        # Comment lines before the header are read as empty lines (line numbers kept);
        # after the header a `#` is data.
        yield from ("\n" if t.lstrip().startswith("#") else t for t in head)
        yield from lines

    reader = csv.reader(all_lines(), delimiter=delimiter, strict=True)

    def line() -> int:
        return skipped + reader.line_num

    try:
        header: list[str] = []
        while not header or not "".join(header).strip():
            header = next(reader)
            if header and header[0].lstrip().startswith("#") and len(header) == 1:
                header = []
        names = [h.strip() for h in header]
        lowered = [h.lower() for h in names]
        if wanted.lower() not in lowered:
            found = ", ".join(repr(h) for h in names[:40]) + (", …" if len(names) > 40 else "")
            raise BadInput(
                f"{name} line {line()}: the header has no column {wanted!r} "
                f"(columns found: {found}); name the column with --ids-column"
            )
        if (twins := lowered.count(wanted.lower())) > 1:
            raise BadInput(
                f"{name} line {reader.line_num}: the header has {twins} columns named "
                f"{wanted!r} (letter case aside); keep one of them, or rename the others"
            )
        idx = lowered.index(wanted.lower())
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) <= idx:
                raise BadInput(
                    f"{name} line {line()}: {len(row)} field(s), no {wanted!r} "
                    f"(field {idx + 1} of the header)"
                )
            text = row[idx].strip()
            value = whole(text, MAX_LEAD_ID)
            if not value:
                raise _bad_id(name, line(), text)
            sorter.add(value)
    except csv.Error as exc:
        raise BadInput(f"{name} line {line()}: not valid CSV ({exc})") from None
