"""Values whose text, as the delete compares it (`CAST(x AS BINARY)`, or both sides in utf8mb4
where the character sets differ), is the same for two different stored values: the copy must
still hold the source's value before the source row is deleted."""

from __future__ import annotations

from tests.support import oracle
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb

WHERE = "lead_id <= 20"
ARGS = ["archive", "--where", WHERE, "--ignore-window", "--json"]


def test_float_column_is_archived_with_its_value(vdb: VDb) -> None:
    """A FLOAT reads as six significant digits: 123456.7109375 and 123457 both read
    '123457'. The archived lead must keep the value it had."""
    vdb.seed(21)
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE `{table}` ADD COLUMN va_float FLOAT NULL")
    vdb.db.write(f"UPDATE `{LIVE}` SET va_float = 123456.7 + lead_id / 100")
    exact = "CAST(va_float AS DOUBLE)"
    before = oracle.values_of(vdb.db, LIVE, exact, WHERE)
    done = hp.run(vdb.dsn, ARGS)
    assert done.rc == 0, done.describe()
    lost = oracle.lost_values(
        before,
        oracle.values_of(vdb.db, LIVE, exact, WHERE),
        oracle.values_of(vdb.db, ARCHIVE, exact, WHERE),
    )
    assert not lost, f"leads deleted live, archived with another FLOAT (was, now): {lost}"
    # And archived, not merely spared: the copy writes every digit (QUOTE of the DOUBLE).
    assert done.summary["job_counts"] == {"archived": 20}, done.summary
    assert oracle.values_of(vdb.db, ARCHIVE, exact, WHERE) == before


def test_ascii_column_byte_outside_ascii_is_archived_with_its_byte(vdb: VDb) -> None:
    """An ascii column holds any byte; into a utf8mb4 archive column 0x80 and 0x81 both
    convert to '?', and the delete compares both sides in utf8mb4. The archived lead must
    keep its byte."""
    vdb.seed(21)
    vdb.db.write(f"ALTER TABLE `{LIVE}` ADD COLUMN va_code VARCHAR(10) CHARACTER SET ascii NULL")
    vdb.db.write(
        f"ALTER TABLE `{ARCHIVE}` ADD COLUMN va_code VARCHAR(10) CHARACTER SET utf8mb4 NULL"
    )
    vdb.db.write(f"UPDATE `{LIVE}` SET va_code = X'41808142'")
    exact = "HEX(va_code)"
    before = oracle.values_of(vdb.db, LIVE, exact, WHERE)
    assert set(before.values()) == {"41808142"}
    done = hp.run(vdb.dsn, ARGS)
    assert done.rc == 0, done.describe()
    lost = oracle.lost_values(
        before,
        oracle.values_of(vdb.db, LIVE, exact, WHERE),
        oracle.values_of(vdb.db, ARCHIVE, exact, WHERE),
    )
    assert not lost, f"leads deleted live, archived with other bytes (was, now): {lost}"
    # utf8mb4 cannot hold the byte: every lead stays live, as it was.
    assert oracle.values_of(vdb.db, LIVE, exact, WHERE) == before
