"""Explicit lead ids at any scale (issue 15): files of any size, in any order, with repeats, read
in bounded memory and staged in archiver_job_ids with the job row; a killed run converges, and a
job resumes from the checkpoint when the file is gone; VICIdial's CSV/TSV lead exports; a bad
line anywhere writes nothing. Every test runs on MyISAM and on InnoDB."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archiver import checkpoint
from archiver.jobtypes import JobSpec
from archiver.selection import Selection
from tests.support import oracle
from tests.support import proc as hp
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

RANGE = "lead ids are whole numbers from 1 to 4294967295"


def write_ids(path: Path, ids: list[int]) -> Path:
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def count(vdb: VDb, table: str, where: str = "1") -> int:
    return int(vdb.db.scalar(f"SELECT COUNT(*) FROM `{table}` WHERE {where}"))


def checkpoint_rows(vdb: VDb) -> dict[str, list[tuple[Any, ...]]]:
    tables = [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME LIKE 'archiver\\_%' ORDER BY TABLE_NAME"
        )
    ]
    return {t: sorted(vdb.db.rows(f"SELECT * FROM `{t}`"), key=repr) for t in tables}


def has_checkpoint_tables(vdb: VDb) -> bool:
    return bool(checkpoint_rows(vdb))


def wait_chunks(proc: hp.Proc, k: int) -> None:
    """Until this run has logged k chunks (a resumed job numbers its chunks on)."""
    seen = []

    def kth_chunk(line: str) -> bool:
        if line.startswith("{") and '"event": "chunk"' in line:
            seen.append(line)
        return len(seen) >= k

    proc.wait_for(kth_chunk, timeout=120)


# --- a large file, killed, resumed without the file ------------------------------------------


def test_reverse_file_with_repeats_survives_kills_and_resumes_without_the_file(
    vdb: VDb, tmp_path: Path
) -> None:
    n = 20_000
    vdb.seed(n)
    original = vdb.row_bytes(LIVE)
    ids = list(range(n, 0, -1)) + list(range(n, 0, -7))  # descending, every 7th twice
    path = write_ids(tmp_path / "ids.txt", ids)
    args = ["archive", "--ignore-window", "--ids-file", str(path), "--json"]
    rng = random.Random()
    for _ in range(2):  # the same command, killed twice at a random point
        with hp.Proc(hp.argv(vdb.dsn, args)) as proc:
            wait_chunks(proc, rng.randint(2, 12))
            time.sleep(rng.random() * 0.05)
            proc.kill()
            done = proc.finish()
        assert done.rc == -9, done.describe()
        hp.wait_lock_free(vdb.db, vdb.settings)
        assert count(vdb, "archiver_jobs") == 1
        assert count(vdb, "archiver_job_ids") == n
    path.unlink()
    result = vdb.cli(["archive", "--ignore-window", "--ids-file", str(path)])
    assert result.exit_code == 2 and f"cannot read {path}" in result.stderr
    resumed = hp.run(vdb.dsn, ["jobs", "resume", "1", "--json"])
    assert resumed.rc == 0, resumed.describe()
    assert "job_resumed" in resumed.stderr
    assert resumed.summary["job_counts"] == {"archived": n - 1, "skipped_newest": 1}
    assert oracle.assert_each_once(vdb.db, vdb.columns(), original).live == {n}
    job = checkpoint.get_job(vdb.db, 1)
    assert (job.state, job.runs, job.ids) == ("done", 3, None)
    assert job.identity["selection"]["ids_count"] == n


def test_kill_while_staging_leaves_no_job_and_a_rerun_converges(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(300)
    before = vdb.checksum()
    path = write_ids(tmp_path / "ids.txt", list(range(12_000, 0, -1)))  # three batches
    args = ["archive", "--ignore-window", "--ids-file", str(path), "--json"]
    killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "staging:2"})
    assert killed.rc == -9, killed.describe()
    assert "FAULT staging 2" in killed.lines
    hp.wait_lock_free(vdb.db, vdb.settings)
    assert count(vdb, "archiver_jobs") == 0 and count(vdb, "archiver_job_ids") == 0
    assert vdb.checksum() == before
    done = hp.run(vdb.dsn, args)
    assert done.rc == 0, done.describe()
    assert done.summary["counts"] == {"archived": 299, "missing": 11_700, "skipped_newest": 1}
    assert count(vdb, "archiver_job_ids") == 12_000 and vdb.ids(LIVE) == [300]


# --- bad input: nothing written ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["archive", "--ignore-window"], ["dearchive", "--ignore-window"], ["verify"]]
)
def test_bad_line_4001_of_5000_changes_nothing(
    vdb: VDb, tmp_path: Path, command: list[str]
) -> None:
    vdb.seed(6000)
    first = vdb.cli(["archive", "--ignore-window", "1", "2", "3"])  # checkpoint rows to keep
    assert first.exit_code == 0, first.stderr
    ids = [str(i) for i in range(1, 5001)]
    ids[4000] = "40O1"  # a letter O for a zero
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    tables, kept = vdb.checksum(), checkpoint_rows(vdb)
    assert "archiver_job_ids" in kept
    result = vdb.cli([*command, "--ids-file", str(path)])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {path} line 4001: '40O1' is not a lead id; {RANGE}"
    )
    assert result.stdout == ""
    assert vdb.checksum() == tables
    assert checkpoint_rows(vdb) == kept


def test_dry_run_of_a_file_writes_nothing_and_predicts_the_run(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(1500)
    path = write_ids(tmp_path / "ids.txt", [*range(3000, 0, -2), 1500, 9_000_000])
    args = ["archive", "--ignore-window", "--ids-file", str(path), "--chunk-size", "100", "--json"]
    before = vdb.checksum()
    dry = vdb.cli([*args, "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert vdb.checksum() == before and not has_checkpoint_tables(vdb)
    real = vdb.cli(args)
    assert real.exit_code == 0, real.stderr
    assert (
        summary_of(dry)["counts"]
        == summary_of(real)["counts"]
        == {
            "archived": 749,
            "missing": 751,
            "skipped_newest": 1,
        }
    )
    assert summary_of(dry)["chunks"] == summary_of(real)["chunks"] == 16


def test_arguments_take_any_number_of_ids(vdb: VDb) -> None:
    vdb.seed(700)
    result = vdb.cli(["archive", "--ignore-window", "--json", *map(str, range(1, 601))])
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"] == {"archived": 600}


# --- VICIdial's lead exports ---------------------------------------------------------------------


def export(ids: list[int], sep: str = ",") -> str:
    """A VICIdial-style lead export: quoted header, lead_id third, commas and "" in fields."""
    head = ["vendor_lead_code", "source_id", "lead_id", "list_id", "comments", "old_lead_id"]
    lines = [sep.join(f'"{h}"' for h in head)]
    for n, lead in enumerate(ids):
        comments = f'called ""twice"", then, later: {n}' if sep == "," else f"tab\\t {n}"
        row = [f"CRM{lead}", "web, form", str(lead), "101", comments, str(lead + 1000)]
        lines.append(sep.join(f'"{v}"' for v in row))
    return "\r\n".join(lines) + "\r\n"


def test_csv_tsv_exports_and_ids_column(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(1200)
    before = vdb.row_bytes(LIVE)
    csv_path = tmp_path / "export.csv"
    csv_path.write_text(export([7, 3, 9, 3, 20]), newline="")
    result = vdb.cli(["archive", "--ignore-window", "--ids-file", str(csv_path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"] == {"archived": 4}
    assert vdb.ids(ARCHIVE) == [3, 7, 9, 20]

    tsv_path = tmp_path / "export.tsv"
    tsv_path.write_text(export([9, 20], sep="\t"), newline="")
    result = vdb.cli(["dearchive", "--ignore-window", "--ids-file", str(tsv_path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"] == {"dearchived": 2}
    assert vdb.ids(ARCHIVE) == [3, 7]

    # --ids-column: the ids 1007, 1003, … of the same file (old_lead_id); from stdin too.
    result = vdb.cli(
        ["verify", "--json", "--ids-file", "-", "--ids-column", "old_lead_id"],
        input=export([7, 3, 9, 3, 20, 100]),
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["only_live"] == 5 and report["counts"]["neither"] == 0
    assert report["lead_ids"]["only_live"] == [1003, 1007, 1009, 1020, 1100]
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in (3, 7)}


# --- the job's ids: resumed, listed, pruned -------------------------------------------------


def test_job_of_an_earlier_version_resumes_from_its_json_ids(vdb: VDb, tmp_path: Path) -> None:
    """Jobs made before archiver_job_ids kept their ids in archiver_jobs.ids_json: a re-run of
    the same command finds such a job by its identity and walks those ids."""
    vdb.seed(50)
    ids = [40, 5, 10, 5]
    assert vdb.cli(["schema", "init"]).exit_code == 0  # creates the checkpoint tables
    identity = JobSpec("archive", Selection.from_ids(ids)).identity(500)
    digest, text = checkpoint.identity_of(identity)
    vdb.db.write(
        "INSERT INTO archiver_jobs (direction, identity_hash, identity_json, params_json,"
        " ids_json, state, counts_json, started_at, tool_version) VALUES ('archive', :h, :i,"
        " '{}', '[5, 10, 40]', 'stopped', '{}', NOW(3), '0.9')",
        {"h": digest, "i": text},
    )
    path = write_ids(tmp_path / "ids.txt", ids)
    result = vdb.cli(["archive", "--ignore-window", "--ids-file", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert "job_resumed" in result.stderr
    assert summary_of(result)["job_id"] == 1
    assert summary_of(result)["counts"] == {"archived": 3}
    assert vdb.ids(ARCHIVE) == [5, 10, 40] and count(vdb, "archiver_job_ids") == 0


def test_staged_ids_that_do_not_add_up_fail_the_job(vdb: VDb) -> None:
    vdb.seed(30)
    killed = hp.run(
        vdb.dsn,
        ["archive", "--ignore-window", "--chunk-size", "5", *map(str, range(1, 21))],
        env={"ARCHIVER_FAULT": "before_checkpoint:2"},
    )
    assert killed.rc == -9, killed.describe()
    hp.wait_lock_free(vdb.db, vdb.settings)
    vdb.db.write("DELETE FROM archiver_job_ids WHERE lead_id > 15")
    result = vdb.cli(["jobs", "resume", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: job 1 should have 20 lead ids in archiver_job_ids and has 15; cancel it "
        "(`jobs cancel 1 --force`; then check its leads with `verify`) and run the command again"
    )


def test_prune_removes_the_jobs_ids(vdb: VDb) -> None:
    vdb.seed(30)
    assert vdb.cli(["archive", "--ignore-window", "1", "2", "3"]).exit_code == 0
    assert vdb.cli(["archive", "--ignore-window", "4", "5"]).exit_code == 0
    assert count(vdb, "archiver_job_ids") == 5
    vdb.db.write("UPDATE archiver_jobs SET ended_at = NOW(3) - INTERVAL 2 DAY WHERE job_id = 1")
    result = vdb.cli(["jobs", "prune", "--older-than", "1d"])
    assert result.exit_code == 0, result.stderr
    rows = vdb.db.rows("SELECT job_id, lead_id FROM archiver_job_ids ORDER BY lead_id")
    assert rows == [(2, 4), (2, 5)]


# --- a million ids -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_ids_in_bounded_memory(vdb: VDb, tmp_path: Path) -> None:
    """1,000,000 ids, 12,000 of them leads, shuffled: the dry run, the run and verify each
    stay under 100 MB peak RSS, and the counts add up."""
    n, exist = 1_000_000, 12_000
    vdb.seed(exist)
    ids = list(range(1, exist + 1)) + list(range(5_000_000, 5_000_000 + n - exist))
    random.Random(15).shuffle(ids)
    path = write_ids(tmp_path / "ids.txt", ids)
    del ids
    args = ["archive", "--ignore-window", "--ids-file", str(path), "--json"]
    measured = {}
    started = time.monotonic()
    dry = hp.run_measured(vdb.dsn, [*args, "--dry-run"])
    measured["dry run"] = (dry.maxrss_kb, time.monotonic() - started)
    assert dry.rc == 0, dry.describe()
    assert not has_checkpoint_tables(vdb)
    started = time.monotonic()
    real = hp.run_measured(vdb.dsn, args)
    measured["archive"] = (real.maxrss_kb, time.monotonic() - started)
    assert real.rc == 0, real.describe()
    want = {"archived": exist - 1, "missing": n - exist, "skipped_newest": 1}
    assert dry.summary["counts"] == real.summary["counts"] == want
    assert sum(real.summary["counts"].values()) == n
    assert count(vdb, "archiver_job_ids") == n and vdb.ids(LIVE) == [exist]
    started = time.monotonic()
    ver = hp.run_measured(vdb.dsn, ["verify", "--json", "--ids-file", str(path)])
    measured["verify"] = (ver.maxrss_kb, time.monotonic() - started)
    report = json.loads(ver.stdout)
    assert report["counts"] == {
        "both_equal": 0,
        "both_different": 0,
        "only_live": 1,
        "only_archived": exist - 1,
        "neither": n - exist,
    }
    for what, (kb, seconds) in measured.items():
        print(f"1M ids ({vdb.engine}) {what}: peak RSS {kb / 1024:.1f} MB, {seconds:.1f}s")
    for what, (kb, _) in measured.items():
        assert kb <= 100 * 1024, f"{what}: peak RSS {kb / 1024:.1f} MB"


# --- review of issue 15 ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["archive", "dearchive", "verify"])
def test_cr_only_line_ends_and_ambiguous_columns_are_bad_input(
    vdb: VDb, tmp_path: Path, command: str
) -> None:
    vdb.seed(10)
    before = checkpoint_rows(vdb), vdb.ids(LIVE), vdb.ids(ARCHIVE)
    cr = tmp_path / "cr.txt"
    cr.write_bytes(b"1\r2\r3\r")
    twins = tmp_path / "twins.csv"
    twins.write_text("lead_id,lead_id\n1,2\n3,4\n")
    cases = [
        (["--ids-file", str(cr)], "its lines end in CR only"),
        (["--ids-file", str(twins)], "the header has 2 columns named 'lead_id'"),
        (
            ["--ids-file", str(twins), "--ids-column", "a", "--ids-column", "b"],
            "--ids-column is given 2 times",
        ),
    ]
    for args, text in cases:
        window = [] if command == "verify" else ["--ignore-window"]
        result = vdb.cli([command, *window, *args])
        assert result.exit_code == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and text in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert (checkpoint_rows(vdb), vdb.ids(LIVE), vdb.ids(ARCHIVE)) == before


def test_a_job_whose_staged_ids_were_deleted_ends_failed_and_its_advice_works(
    vdb: VDb, tmp_path: Path
) -> None:
    """Killed after a chunk's delete (MyISAM: a cut chunk), then ids deleted by hand: the re-run
    ends the job `failed` (not `running`), the advice it prints ends the job, and serve GET of
    the job answers a JSON error."""
    from starlette.testclient import TestClient

    from archiver import config, serve

    vdb.seed(30)
    path = write_ids(tmp_path / "ids.txt", list(range(1, 21)))
    cmd = ["archive", "--ignore-window", "--chunk-size", "5", "--ids-file", str(path)]
    killed = hp.run(vdb.dsn, cmd, env={"ARCHIVER_FAULT": "after_delete:2"})
    assert killed.rc == -9, killed.describe()
    hp.wait_lock_free(vdb.db, vdb.settings)
    vdb.db.write("DELETE FROM archiver_job_ids WHERE lead_id > 15")
    result = vdb.cli(cmd)
    assert result.exit_code == 1
    advice = "`jobs cancel 1 --force`"
    assert advice in result.stderr.strip().splitlines()[-1]
    assert vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1") == "failed"

    key = "k" * 32
    admin = config.ServeSettings(keys=(f"t:{serve.hash_key(key)}",), admin_keys=("t",))
    settings = replace(vdb.settings, serve=admin)  # an admin key reads a CLI job
    with TestClient(serve.create_app(settings)) as client:
        r = client.get(f"{serve.JOBS_PATH}/1", headers={"Authorization": f"Key={key}"})
    assert r.status_code == 500 and r.json()["error"] == "job_ids_incomplete"

    result = vdb.cli(["jobs", "cancel", "1", "--force"])
    assert result.exit_code == 0, result.stderr
    assert vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1") == "cancelled"
    result = vdb.cli(cmd)  # the command again: a new job
    assert result.exit_code == 0, result.stderr
