"""Columns whose text, as the delete compares it (`CAST(x AS BINARY)`) and as the MyISAM copy
writes it (`QUOTE(x)`), is rounded to the column's display: two different stored values read
the same, and a lead must not be deleted from its table with a copy holding another value."""

from __future__ import annotations

import json

from tests.support import oracle
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb

WHERE = "lead_id <= 20"


def _double_with_display(vdb: VDb) -> None:
    """A DOUBLE column, filled, then given a display of one decimal (DOUBLE(20,1)) in both
    tables: the server keeps every stored value as it was (no rounding), and reads it, CAST
    AS BINARY or QUOTE()d, rounded to one decimal: 123456.71 and 123456.69 both '123456.7'."""
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE `{table}` ADD COLUMN va_double DOUBLE NULL")
    vdb.db.write(f"UPDATE `{LIVE}` SET va_double = 123456.7 + lead_id / 1000 - 0.0105")
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE `{table}` MODIFY va_double DOUBLE(20,1) NULL")


EXACT = "CAST(va_double AS DOUBLE)"


def test_double_with_display_decimals_is_archived_with_its_value(vdb: VDb) -> None:
    vdb.seed(21)
    _double_with_display(vdb)
    before = oracle.values_of(vdb.db, LIVE, EXACT, WHERE)
    assert len(set(before.values())) == 20, before  # twenty different values
    done = hp.run(vdb.dsn, ["archive", "--where", WHERE, "--ignore-window", "--json"])
    assert done.rc == 0, done.describe()
    lost = oracle.lost_values(
        before,
        oracle.values_of(vdb.db, LIVE, EXACT, WHERE),
        oracle.values_of(vdb.db, ARCHIVE, EXACT, WHERE),
    )
    assert not lost, f"leads deleted live, archived with another DOUBLE (was, now): {lost}"


def test_double_with_display_decimals_changed_after_an_earlier_copy_stays_live(
    vdb: VDb,
) -> None:
    """A run copied the leads and was killed before its deletes; the dialer then wrote
    va_double (a write rounds to the display: 123456.7, where the copy holds 123456.6905; both
    read '123456.7'). The run that converges must not delete a live row whose archive row
    holds another value."""
    vdb.seed(21)
    _double_with_display(vdb)
    vdb.db.write(f"INSERT INTO `{ARCHIVE}` SELECT * FROM `{LIVE}` WHERE {WHERE}")
    vdb.db.write(f"UPDATE `{LIVE}` SET va_double = 123456.7 WHERE {WHERE}")
    before = oracle.values_of(vdb.db, LIVE, EXACT, WHERE)
    copies = oracle.values_of(vdb.db, ARCHIVE, EXACT, WHERE)
    assert all(before[lead] != copies[lead] for lead in before), (before, copies)
    done = hp.run(vdb.dsn, ["archive", "--where", WHERE, "--ignore-window", "--json"])
    assert done.rc == 0, done.describe()
    lost = oracle.lost_values(
        before,
        oracle.values_of(vdb.db, LIVE, EXACT, WHERE),
        oracle.values_of(vdb.db, ARCHIVE, EXACT, WHERE),
    )
    assert not lost, f"leads deleted live, their archive row another DOUBLE (was, now): {lost}"


def test_verify_tells_a_double_with_display_decimals_that_differs(vdb: VDb) -> None:
    """`verify` compares as the delete does: a lead in both tables whose DOUBLE(20,1) values
    differ (123456.6905 and 123456.7, both read '123456.7') is in both with different data."""
    vdb.seed(3)
    _double_with_display(vdb)
    vdb.db.write(f"INSERT INTO `{ARCHIVE}` SELECT * FROM `{LIVE}` WHERE lead_id <= 2")
    vdb.db.write(f"UPDATE `{LIVE}` SET va_double = 123456.7 WHERE lead_id <= 2")
    assert (
        oracle.values_of(vdb.db, LIVE, EXACT, WHERE)[1]
        != oracle.values_of(vdb.db, ARCHIVE, EXACT, WHERE)[1]
    )
    result = vdb.cli(["verify", "--json", "1,2"])
    data = json.loads(result.stdout)
    assert data["counts"]["both_different"] == 2, data
    assert result.exit_code == 1, result.stdout
