"""A restore or an API request of a few ids runs while the nightly job holds the job lock, and
no two jobs ever work on the same lead at once (archiver.claims): on MyISAM and InnoDB, with
kills of either job and a dialer writing meanwhile."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest

from archiver import claims
from archiver.checkpoint import lock_name
from tests.integration.test_concurrency import Dialer, check_no_update_lost
from tests.integration.test_jobs import block_chunk, release
from tests.support import oracle
from tests.support import proc as hp
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb


def hold(vdb: VDb, *names: str) -> object:
    """Another session holding these user-level locks (the nightly job, another job's claim)."""
    other = vdb.connect()
    for name in names:
        assert other.scalar("SELECT GET_LOCK(:n, 0)", {"n": name}) == 1
    return other


def claim_of(vdb: VDb, lead: int) -> str:
    return f"{claims.prefix(vdb.settings)}{lead}"


def test_one_lead_comes_back_while_the_nightly_job_holds_the_lock(vdb: VDb) -> None:
    vdb.seed(50)
    first = vdb.cli(["archive", "--ignore-window", "7", "8", "--json"])
    assert summary_of(first)["counts"] == {"archived": 2}
    nightly = hold(vdb, lock_name(vdb.settings))
    try:
        started = time.monotonic()
        back = vdb.cli(["dearchive", "7"])
        assert back.exit_code == 0, back.stderr
        assert back.stdout.startswith("SUCCESS: lead_dearchive LEAD DE-ARCHIVED: "), back.stdout
        assert time.monotonic() - started < 5
        assert 7 in vdb.ids(LIVE) and 7 not in vdb.ids(ARCHIVE)
        # An explicit list of a few ids archives too; criteria still wait for the nightly job.
        again = vdb.cli(["archive", "--ignore-window", "9", "--json"])
        assert summary_of(again)["counts"] == {"archived": 1}
        big = vdb.cli(["archive", "--ignore-window", "--where", "lead_id < 20", "--json"])
        assert big.exit_code == 4 and "another job holds the lock" in big.stderr
    finally:
        nightly.conn.close()  # type: ignore[attr-defined]


def test_more_ids_than_the_api_limit_is_a_big_job(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(30)
    config = tmp_path / "va.toml"
    config.write_text("[archive]\nid_limit = 10\n")
    nightly = hold(vdb, lock_name(vdb.settings))
    try:
        many = vdb.cli(
            ["--config", str(config), "archive", "--ignore-window", *map(str, range(1, 12))]
        )
        assert many.exit_code == 4 and "another job holds the lock" in many.stderr
        few = vdb.cli(
            [
                "--config",
                str(config),
                "archive",
                "--ignore-window",
                *map(str, range(1, 11)),
                "--json",
            ]
        )
        assert summary_of(few)["counts"] == {"archived": 10}
    finally:
        nightly.conn.close()  # type: ignore[attr-defined]


def test_the_big_job_leaves_a_claimed_lead_for_a_later_run(vdb: VDb) -> None:
    vdb.seed(300)
    original = vdb.row_bytes(LIVE)
    other = hold(vdb, claim_of(vdb, 50))
    args = ["archive", "--ignore-window", "--where", "lead_id <= 200", "--chunk-size", "100"]
    try:
        first = vdb.cli([*args, "--json"])
        assert first.exit_code == 0, first.stderr
        assert summary_of(first)["counts"] == {"archived": 199, "skipped_busy": 1}
        assert 50 in vdb.ids(LIVE) and 50 not in vdb.ids(ARCHIVE)
        shown = vdb.cli(["jobs", "show", str(summary_of(first)["job_id"]), "--leads", "all"])
        assert shown.stdout == "50,skipped_busy\n"
    finally:
        other.conn.close()  # type: ignore[attr-defined]
    second = vdb.cli([*args, "--json"])
    assert summary_of(second)["counts"] == {"archived": 1}
    where = oracle.placement(vdb.db, vdb.columns())
    assert where.archive == set(range(1, 201)) and not where.both
    assert {i: where.rows[i] for i in original} == original


def test_a_small_job_refuses_a_lead_another_job_keeps(vdb: VDb) -> None:
    vdb.seed(20)
    before = vdb.checksum()
    other = hold(vdb, claim_of(vdb, 5))
    try:
        started = time.monotonic()
        result = vdb.cli(["archive", "--ignore-window", "5", "6", "--json"])
        waited = time.monotonic() - started
        assert result.exit_code == 4, result.stderr
        assert "another job has been working on lead(s) 5 for over" in result.stderr
        assert waited >= claims.CLAIM_WAIT - 0.5
        assert vdb.checksum() == before
        # Refused before anything was written: not even the checkpoint tables were made.
        assert not vdb.db.rows("SHOW TABLES LIKE 'archiver_jobs'")
        # Lead 6 was claimed and let go: another job may take it.
        assert other.scalar("SELECT IS_FREE_LOCK(:n)", {"n": claim_of(vdb, 6)}) == 1  # type: ignore[attr-defined]
    finally:
        other.conn.close()  # type: ignore[attr-defined]
    result = vdb.cli(["archive", "--ignore-window", "5", "6", "--json"])
    assert summary_of(result)["counts"] == {"archived": 2}


def test_the_same_small_job_twice_at_once_runs_once(vdb: VDb) -> None:
    vdb.seed(20)
    blocker = block_chunk(vdb, 3)
    args = ["archive", "--ignore-window", "3", "4", "--json"]
    with hp.Proc(hp.argv(vdb.dsn, args)) as first:
        hp.wait_blocked(vdb.db, vdb.name)
        second = vdb.cli(args)
        assert second.exit_code == 4, second.stderr
        assert "the same job (the same leads and flags) is running now" in second.stderr
        release(blocker, vdb.engine)
        done = first.finish(60)
    assert done.rc == 0, done.describe()
    assert done.summary["counts"] == {"archived": 2}


# --- both at once, killed, with a dialer --------------------------------------------------------


ROUNDS = 20


@pytest.mark.slow
def test_small_jobs_beside_the_big_one_killed_at_random_with_a_dialer(vdb: VDb) -> None:
    """≥ 20 rounds: the nightly job archives while restores and archives of a few ids (their
    ids overlapping the nightly job's) run beside it, either process SIGKILLed at a random
    moment, a dialer updating leads all along. Then every job is run to its end: every lead is
    in exactly one table, with its last update, byte for byte."""
    vdb.seed(1500)
    columns = vdb.columns()
    expected = vdb.row_bytes(LIVE)
    rng = random.Random(f"claims-{vdb.engine}")
    dialer = Dialer(vdb, columns, expected, sorted(expected), random.Random(f"d-{vdb.engine}"))
    thread = threading.Thread(target=dialer.run)
    thread.start()
    big = ["archive", "--ignore-window", "--where", "lead_id > 0", "--chunk-size", "50"]
    small_runs: list[list[str]] = []
    killed = {"big": 0, "small": 0}
    try:
        for round_no in range(ROUNDS):
            nightly = hp.Proc(hp.argv(vdb.dsn, [*big, "--sleep", "0.02", "--json"]))
            smalls = []
            for _ in range(3):
                ids = sorted(rng.sample(range(1, 1400), 4))
                direction = rng.choice(["archive", "dearchive"])
                args = [direction, "--ignore-window", *map(str, ids), "--json"]
                small_runs.append(args)
                smalls.append(hp.Proc(hp.argv(vdb.dsn, args)))
                time.sleep(rng.uniform(0.05, 0.4))
            victim = rng.choice(["big", "small", "none"])
            if victim == "big":
                time.sleep(rng.uniform(0.0, 0.5))
                nightly.kill()
                killed["big"] += 1
            elif victim == "small":
                smalls[rng.randrange(len(smalls))].kill()
                killed["small"] += 1
            for p in smalls:
                got = p.finish(120)
                assert got.rc in (0, 3, 4, -9), got.describe()
                assert "Traceback" not in got.stderr
            got = nightly.finish(180) if victim != "big" else nightly.finish(30)
            assert got.rc in (0, 3, -9), got.describe()
            assert "Traceback" not in got.stderr, f"round {round_no}: {got.describe()}"
    finally:
        dialer.stop.set()
        thread.join(30)
    assert dialer.error is None, repr(dialer.error)
    # Every job to its end: the small ones as they were given (a re-run resumes), then the
    # nightly one.
    for args in small_runs:
        done = hp.run(vdb.dsn, args)
        assert done.rc in (0, 1), done.describe()  # 1: a conflict (in both, and different)
    final = hp.run(vdb.dsn, [*big, "--json"])
    assert final.rc == 0, final.describe()
    for args in small_runs:  # leads a restore brought back after the nightly job read them
        hp.run(vdb.dsn, args)
    final = hp.run(vdb.dsn, [*big, "--no-safe-auto-increment", "--json"])
    assert final.rc == 0, final.describe()
    where = check_no_update_lost(vdb, dialer)
    assert not where.both, sorted(where.both)[:10]
    assert killed["big"] + killed["small"] >= ROUNDS // 3
    print(f"claims ({vdb.engine}): {ROUNDS} rounds, killed {killed}, {dialer.applied} updates")


def test_jobs_show_tells_a_running_small_job_from_one_whose_process_is_gone(vdb: VDb) -> None:
    vdb.seed(20)
    blocker = block_chunk(vdb, 3)
    with hp.Proc(hp.argv(vdb.dsn, ["archive", "--ignore-window", "3", "4", "--json"])) as job:
        hp.wait_blocked(vdb.db, vdb.name)
        shown = json.loads(vdb.cli(["jobs", "show", "1", "--json"]).stdout)
        assert (shown["state"], shown["process"]) == ("running", "running")
        job.kill()
        job.finish(30)
    release(blocker, vdb.engine)
    shown = json.loads(vdb.cli(["jobs", "show", "1", "--json"]).stdout)
    assert (shown["state"], shown["process"]) == ("running", "gone")
