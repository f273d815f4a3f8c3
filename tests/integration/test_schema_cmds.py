"""schema init / check / sync on real tables."""

from __future__ import annotations

import json

from tests.support.db import ARCHIVE, LIVE, VDb


def test_init_creates_archive_like_vicidial_docs(vdb: VDb) -> None:
    vdb.db.write(f"DROP TABLE {ARCHIVE}")
    r = vdb.cli(["schema", "init", "--print"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [
        f"CREATE TABLE `{ARCHIVE}` LIKE `{LIVE}`;",
        f"ALTER TABLE `{ARCHIVE}` MODIFY `lead_id` INT(9) UNSIGNED NOT NULL;",
    ]
    assert "CREATE TABLE IF NOT EXISTS archiver_jobs" in r.stdout
    assert vdb.db.rows(f"SHOW TABLES LIKE '{ARCHIVE}'") == []
    assert vdb.db.rows("SHOW TABLES LIKE 'archiver%'") == []
    r = vdb.cli(["schema", "init"])
    assert r.exit_code == 0, r.stderr
    extra = vdb.db.rows(
        "SELECT EXTRA, COLUMN_KEY FROM information_schema.COLUMNS WHERE "
        f"TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{ARCHIVE}' AND COLUMN_NAME = 'lead_id'"
    )
    assert extra == [("", "PRI")]
    engine = vdb.db.scalar(
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
        f"DATABASE() AND TABLE_NAME = '{ARCHIVE}'"
    )
    assert engine == vdb.engine
    r = vdb.cli(["schema", "check"])
    assert (r.exit_code, r.stdout.splitlines()[-1]) == (
        0,
        "no drift: every live column fits the archive exactly",
    )


def drift_archive(vdb: VDb) -> None:
    """An archive as old servers have it: no rank/owner/entry_list_id, a narrower comments
    column, and called_since_last_reset without the 2021 value 'D'."""
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} DROP COLUMN `rank`, DROP COLUMN owner, DROP COLUMN entry_list_id,"
        " MODIFY comments VARCHAR(100),"
        " MODIFY called_since_last_reset"
        " ENUM('Y','N','Y1','Y2','Y3','Y4','Y5','Y6','Y7','Y8','Y9','Y10') DEFAULT 'N'"
    )


def test_check_reports_and_archive_refuses_drift(vdb: VDb) -> None:
    vdb.seed(10)
    drift_archive(vdb)
    r = vdb.cli(["schema", "check", "--json"])
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    text = "\n".join(report["blocking"])
    for needle in ("'rank'", "'owner'", "'entry_list_id'", "'comments'", "'D'"):
        assert needle in text
    before = vdb.checksum(LIVE)
    r = vdb.cli(["archive", "1", "2"])
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: column ")
    assert "schema sync" in r.stderr
    assert vdb.checksum(LIVE) == before


def test_sync_prints_then_applies_and_archive_works(vdb: VDb) -> None:
    vdb.seed(10)
    original = vdb.row_bytes(LIVE)
    drift_archive(vdb)
    r = vdb.cli(["schema", "sync"])
    assert r.exit_code == 0
    stmt = r.stdout.strip()
    assert stmt.startswith(f"ALTER TABLE `{ARCHIVE}` ")
    assert "ADD COLUMN `rank` smallint(5) NOT NULL DEFAULT 0 AFTER `last_local_call_time`" in stmt
    assert "MODIFY COLUMN `comments` varchar(255)" in stmt
    assert "DROP" not in stmt
    assert vdb.cli(["schema", "check"]).exit_code == 1  # printing changed nothing
    r = vdb.cli(["schema", "sync", "--apply"])
    assert r.exit_code == 0 and "applied 1 statement" in r.stdout
    r = vdb.cli(["schema", "check"])
    assert r.exit_code == 0, r.stdout
    assert "BLOCKING" not in r.stdout and "warning" not in r.stdout
    r = vdb.cli(["archive", "--where", "lead_id <= 9", "--json"])
    assert r.exit_code == 0, r.stderr
    assert vdb.row_bytes(ARCHIVE) == {i: original[i] for i in range(1, 10)}
    assert vdb.cli(["schema", "sync"]).stdout.startswith("-- nothing to do")


def test_sync_never_narrows_or_drops(vdb: VDb) -> None:
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} MODIFY comments VARCHAR(500), ADD COLUMN archived_at DATETIME"
    )
    r = vdb.cli(["schema", "sync"])
    assert r.stdout.startswith("-- nothing to do"), r.stdout
    r = vdb.cli(["schema", "check"])
    assert r.exit_code == 0
    assert "warning: column 'comments' is varchar(255)" in r.stdout
    assert "warning: column 'archived_at' exists only in" in r.stdout
