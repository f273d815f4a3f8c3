"""kill -9 of the archiver: at each named point of a chunk (ARCHIVER_FAULT), and at random
moments, many times over, in both directions. Whatever the cut, the next run resumes the job
and ends with every lead in exactly one table, byte-identical to its original, and the job's
counts adding up to the number of leads. Every test runs on MyISAM and on InnoDB."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from archiver.strategies import CHUNK_POINTS
from tests.support import oracle
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb

ARGS = ["--ignore-window", "--where", "lead_id > 0", "--chunk-size", "100", "--json"]


def pending(vdb: VDb) -> set[int]:
    return {int(r[0]) for r in vdb.db.rows("SELECT lead_id FROM archiver_pending")}


def job_row(vdb: VDb, job_id: int) -> dict[str, Any]:
    row = vdb.db.rows(
        "SELECT state, chunks, counts_json FROM archiver_jobs WHERE job_id = :j", {"j": job_id}
    )[0]
    return {"state": row[0], "chunks": int(row[1]), "counts": json.loads(row[2])}


@pytest.mark.parametrize("point", CHUNK_POINTS)
def test_kill_at_each_point_then_resume(vdb: VDb, point: str) -> None:
    vdb.seed(1000)
    columns = vdb.columns()
    original = vdb.row_bytes(LIVE)
    args = ["archive", "--job-name", "cut", *ARGS]
    killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": f"{point}:2"})
    assert killed.rc == -9, killed.describe()
    assert [ln for ln in killed.lines if ln.startswith("FAULT")] == [f"FAULT {point} 2"]
    assert [c["chunk"] for c in killed.chunks()] == [1]
    assert killed.stdout == ""

    # The database is in the state of that point of chunk 2 (leads 101-200).
    where = oracle.placement(vdb.db, columns)
    chunk1, chunk2, rest = set(range(1, 101)), set(range(101, 201)), set(range(201, 1001))
    if vdb.engine == "InnoDB":  # the chunk's transaction died with the connection
        assert (where.live, where.archive) == (chunk2 | rest, chunk1)
        assert pending(vdb) == set()
    elif point in ("after_insert", "after_update"):  # copied, not yet deleted
        assert (where.live, where.archive) == (chunk2 | rest, chunk1 | chunk2)
        assert pending(vdb) == chunk2
    else:  # deleted, the chunk not recorded
        assert (where.live, where.archive) == (rest, chunk1 | chunk2)
        assert pending(vdb) == chunk2
    assert all(where.rows[i] == original[i] for i in original)  # no row damaged
    assert job_row(vdb, 1) == {"state": "running", "chunks": 1, "counts": {"archived": 100}}

    hp.wait_lock_free(vdb.db, vdb.settings)
    resumed = hp.run(vdb.dsn, args)
    assert resumed.rc == 0, resumed.describe()
    assert any(e.get("event") == "job_resumed" for e in resumed.events)
    summary = resumed.summary
    assert summary["job_id"] == 1
    assert summary["job_counts"] == {"archived": 999, "skipped_newest": 1}
    assert oracle.total(summary["job_counts"]) == len(original)
    assert summary["counts"] == {"archived": 899, "skipped_newest": 1}
    where = oracle.assert_each_once(vdb.db, columns, original)
    assert where.live == {1000}
    assert pending(vdb) == set()
    assert job_row(vdb, 1)["chunks"] == 10


def kill_until(vdb: VDb, args: list[str], rng: random.Random, kills: int) -> dict[str, Any]:
    """Run `args` again and again, each run killed with SIGKILL at a random moment, until
    `kills` kills landed on a live process; then once more to the end."""
    landed, phases, runs = 0, [], 0
    while landed < kills:
        runs += 1
        assert runs < kills * 3, f"only {landed} kills in {runs} runs"
        hp.wait_lock_free(vdb.db, vdb.settings)
        with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "0.03"])) as proc:
            try:
                proc.p.wait(rng.uniform(0.3, 0.8))
            except subprocess.TimeoutExpired:  # still running: kill it now
                proc.kill()
                landed += 1
            done = proc.finish(60)
        if done.rc == -9:
            last = [
                e for e in done.events if e.get("event") in ("chunk", "job_started", "job_resumed")
            ]
            phases.append(last[-1]["event"] if last else "start-up")
            continue
        assert done.rc == 0, done.describe()
        break  # the job ended before the kill
    hp.wait_lock_free(vdb.db, vdb.settings)
    final = hp.run(vdb.dsn, args)
    assert final.rc == 0, final.describe()
    return {"kills": landed, "runs": runs + 1, "phases": phases, "final": final}


def first_job(vdb: VDb, name: str) -> dict[str, Any]:
    row = vdb.db.rows(
        "SELECT job_id, state, counts_json, runs FROM archiver_jobs"
        " WHERE job_name = :n ORDER BY job_id LIMIT 1",
        {"n": name},
    )[0]
    return {
        "job_id": int(row[0]),
        "state": row[1],
        "counts": json.loads(row[2]),
        "runs": int(row[3]),
    }


@pytest.mark.slow
def test_random_kills_archive_then_dearchive(vdb: VDb) -> None:
    n = 20_000  # outlasts 25 kills on a fast machine too (of 10,000, 13% were left)
    vdb.seed(n)
    columns = vdb.columns()
    original = vdb.row_bytes(LIVE)
    rng = random.Random(f"random-kills-{vdb.engine}")
    report = []
    args = ["--ignore-window", "--where", "lead_id > 0", "--chunk-size", "50", "--json"]

    started = time.monotonic()
    out = kill_until(vdb, ["archive", "--job-name", "rk-archive", *args], rng, 25)
    assert out["kills"] >= 25
    where = oracle.assert_each_once(vdb.db, columns, original)
    assert (where.live, where.archive) == ({n}, set(range(1, n)))
    job = first_job(vdb, "rk-archive")
    assert job["state"] == "done"
    assert job["counts"] == {"archived": n - 1, "skipped_newest": 1}
    assert oracle.total(job["counts"]) == n
    report.append(
        (
            "archive",
            out["kills"],
            out["runs"],
            round(time.monotonic() - started, 1),
            dict(Counter(out["phases"])),
        )
    )

    started = time.monotonic()
    out = kill_until(vdb, ["dearchive", "--job-name", "rk-dearchive", *args], rng, 25)
    assert out["kills"] >= 25
    where = oracle.assert_each_once(vdb.db, columns, original)
    assert (where.live, where.archive) == (set(original), set())
    job = first_job(vdb, "rk-dearchive")
    assert job["state"] == "done"
    assert job["counts"] == {"dearchived": n - 1}
    report.append(
        (
            "dearchive",
            out["kills"],
            out["runs"],
            round(time.monotonic() - started, 1),
            dict(Counter(out["phases"])),
        )
    )
    assert vdb.count(ARCHIVE) == 0
    print(f"random kills ({vdb.engine}): {report}; {n} leads checked, 0 mismatches")


# The statements of a chunk after which ARCHIVER_FAULT fires (strategies.py), per engine: a kill
# after any of them, in either direction, must converge like a kill at the chunk's points.
STATEMENTS = {
    "MyISAM": ("scan", "pending", "copy", "delete", "checkpoint"),
    "InnoDB": ("scan", "copy", "delete", "checkpoint"),
}


@pytest.mark.slow
def test_kill_after_each_statement_then_resume_both_directions(vdb: VDb) -> None:
    vdb.seed(500)
    columns = vdb.columns()
    original = vdb.row_bytes(LIVE)
    for name in STATEMENTS[vdb.engine]:
        for direction in ("archive", "dearchive"):
            args = [direction, "--job-name", f"{direction[0]}-{name}", *ARGS]
            killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": f"{name}:2"})
            assert killed.rc == -9, killed.describe()
            assert [ln for ln in killed.lines if ln.startswith("FAULT")] == [f"FAULT {name} 2"]
            assert all(row == original[i] for i, row in vdb.row_bytes(LIVE).items())
            hp.wait_lock_free(vdb.db, vdb.settings)
            resumed = hp.run(vdb.dsn, args)
            assert resumed.rc == 0, (name, direction, resumed.describe())
            assert any(e.get("event") == "job_resumed" for e in resumed.events), (name, direction)
            counts = resumed.summary["job_counts"]
            where = oracle.assert_each_once(vdb.db, columns, original)
            if direction == "archive":  # every lead; the newest stays live
                assert counts == {"archived": 499, "skipped_newest": 1}, (name, counts)
                assert where.live == {500}
            else:  # the 499 archived leads
                assert counts == {"dearchived": 499}, (name, counts)
                assert where.archive == set()
            assert pending(vdb) == set()
