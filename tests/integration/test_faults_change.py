"""kill -9 while the tables change under the job: a dialer (its own connection) updates leads,
moves some out of the selection and back in and inserts new ones the whole time; once per cycle
an `ALTER TABLE … ADD COLUMN` on both tables, as VICIdial's upgrade SQL does, lands at a random
moment and the new column is filled on some leads; and the job is killed again and again (a
timer's SIGKILL or an ARCHIVER_FAULT point) and run again until it is done. Archive, then
dearchive, on MyISAM and on InnoDB.

Every change the dialer and the fill made is kept (the lead, its new values), and the end state
is checked on every column's bytes: each lead in exactly one table, holding the last value
written to each of its columns; a lead the selection holds at the end archived (the newest lead
kept live), one it does not hold live only.

The choices (kill moments, fault points, the dialer's leads and values, the ALTER's moment) come
from a seeded generator: the seed is printed, and FAULTS_SEED=<seed> runs the same choices again
(the interleaving with the server still varies with timing).

On MyISAM the run can still meet three gaps, each pinned down by a reproduction at the end of
this file (xfail, strict) and stated in README: a lead that an ALTER during the job and a later
change of its other columns leave in both tables (both rows kept: after an ALTER, a proven-copy
delete accepts only differences in what a call changes); a restored lead likewise; a lead that
leaves the selection in the milliseconds between a chunk's scan and its copy, archived (byte-
exact). The random test checks everything else first, then reports those as an expected
failure naming the leads; anything outside them fails."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from archiver.db import Db
from archiver.strategies import CHUNK_POINTS
from tests.support import oracle
from tests.support import proc as hp
from tests.support.beside import Beside
from tests.support.db import ARCHIVE, LIVE, VDb

Row = dict[str, str | None]  # column -> HEX of its bytes (None: NULL)

SELECTED_LISTS = ("101", "102")
SELECTED_STATUSES = ("NEW", "NI", "NA", "B", "CALLBK", "A", "DROP", "DC")
OUT_STATUSES = ("SALE", "DNC")
OUT_LISTS = ("201", "202")
SELECTION = [
    *(a for lst in SELECTED_LISTS for a in ("--list-id", lst)),
    *(a for st in SELECTED_STATUSES for a in ("--status", st)),
]
COMMON = ["--ignore-window", "--chunk-size", "20", "--json"]


def hexed(value: str) -> str:
    return value.encode().hex().upper()


def text(value: str | None) -> str | None:
    return None if value is None else bytes.fromhex(value).decode()


def selected(row: Row) -> bool:
    return text(row["list_id"]) in SELECTED_LISTS and text(row["status"]) in SELECTED_STATUSES


def rows_of(db: Db, table: str) -> dict[int, Row]:
    columns = oracle.columns_of(db, LIVE)
    return {
        lead: dict(zip(columns, values, strict=True))
        for lead, values in oracle.row_bytes(db, table, columns).items()
    }


@dataclass
class Truth:
    """The value each lead must have now in each column, as the writers left it; a column
    added by an ALTER holds its default unless a fill wrote it. Shared by the threads."""

    rows: dict[int, Row]
    defaults: dict[str, str | None] = field(default_factory=dict)
    history: dict[int, list[tuple[str, Row]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, who: str, lead: int, changes: Row) -> None:
        with self.lock:
            self.rows[lead].update(changes)
            self.history.setdefault(lead, []).append((who, changes))

    def get(self, lead: int) -> Row:
        with self.lock:
            return dict(self.rows[lead])

    def expected(self, lead: int, columns: list[str]) -> Row:
        row = self.rows[lead]
        return {c: row[c] if c in row else self.defaults.get(c) for c in columns}


@dataclass
class Dialer:
    """Updates leads as the dialer does (status, list, called_count, a case change of comments,
    a distinct modify_date), which moves some out of the selection and some back in, and
    inserts new leads; each applied change goes into `truth`."""

    vdb: VDb
    truth: Truth
    pool: list[int]
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    inserted: list[int] = field(default_factory=list)
    error: BaseException | None = None
    clock: int = 0

    def run(self) -> None:
        db = self.vdb.connect()
        try:
            while not self.stop.is_set():
                if self.rng.random() < 0.04:
                    self.insert(db)
                else:
                    self.update(db, self.rng.choice(self.pool))
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            hp.close_quietly(db)

    def update(self, db: Db, lead: int) -> None:
        row = self.truth.get(lead)
        was = selected(row)
        status, list_id = text(row["status"]), text(row["list_id"])
        roll = self.rng.random()
        if was and roll < 0.35:  # out of the selection: sold, or moved to another list
            if self.rng.random() < 0.5:
                status = self.rng.choice(OUT_STATUSES)
            else:
                list_id = self.rng.choice(OUT_LISTS)
        elif not was and roll < 0.5:  # back in: a callback on one of the selected lists
            status = self.rng.choice(SELECTED_STATUSES)
            list_id = self.rng.choice(SELECTED_LISTS)
        elif was:
            status = self.rng.choice(SELECTED_STATUSES)
        comment = text(row["comments"]) or "call back after 5pm"
        comment = comment.swapcase() if self.rng.random() < 0.7 else comment.upper()
        called = str(self.rng.randrange(0, 200))
        self.clock += 1
        c = self.clock
        modified = (
            f"2030-01-{1 + c // 86400:02d} {c // 3600 % 24:02d}:{c // 60 % 60:02d}:{c % 60:02d}"
        )
        n = db.write(
            f"UPDATE {LIVE} SET status = :s, list_id = :li, called_count = :c, comments = :m,"
            " modify_date = :d WHERE lead_id = :l",
            {"s": status, "li": list_id, "c": called, "m": comment, "d": modified, "l": lead},
        )
        if n == 0:  # archived already: nothing changed anywhere
            self.counts["missed"] += 1
            return
        assert list_id is not None
        changes = {
            "status": None if status is None else hexed(status),  # a NULL status stays NULL
            "list_id": hexed(list_id),
            "called_count": hexed(called),
            "comments": hexed(comment),
            "modify_date": hexed(modified),
        }
        self.truth.apply("dialer", lead, changes)
        now = selected(self.truth.get(lead))
        self.counts["applied"] += 1
        if was != now:
            self.counts["moved_out" if was else "moved_in"] += 1

    def insert(self, db: Db) -> None:
        result = db.run(
            f"INSERT INTO {LIVE} (entry_date, status, list_id, phone_number, first_name,"
            " comments) VALUES (UTC_TIMESTAMP(), 'NEW', 101, :p, 'Renée', 'new lead')",
            {"p": f"813{self.rng.randrange(10**7):07d}"},
            write=True,
        )
        assert result is not None
        lead = int(result.lastrowid)
        row = self._read(db, lead)
        with self.truth.lock:
            self.truth.rows[lead] = row
            self.truth.history.setdefault(lead, []).append(("insert", {}))
        self.inserted.append(lead)
        self.pool.append(lead)
        self.counts["inserted"] += 1

    @staticmethod
    def _read(db: Db, lead: int) -> Row:
        columns = oracle.columns_of(db, LIVE)
        values = oracle.row_bytes(db, LIVE, columns, [lead])[lead]
        return dict(zip(columns, values, strict=True))


@dataclass
class Alter:
    """One `ADD COLUMN` on both tables (live first, as VICIdial's upgrade SQL does), then the
    new column filled on some live leads; each applied fill goes into `truth`."""

    vdb: VDb
    truth: Truth
    column: str
    ddl: str
    default: str | None
    values: Callable[[random.Random, int], str]
    leads: list[int]
    rng: random.Random
    done: threading.Event = field(default_factory=threading.Event)
    filled: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self, delay: float) -> None:
        self.thread = threading.Timer(delay, self.run)
        self.thread.start()

    def run(self) -> None:
        db = self.vdb.connect()
        try:
            with self.truth.lock:
                self.truth.defaults[self.column] = self.default
            for table in (LIVE, ARCHIVE):
                db.write(f"ALTER TABLE `{table}` ADD COLUMN `{self.column}` {self.ddl}")
            for lead in self.leads:
                value = self.values(self.rng, lead)
                n = db.write(
                    f"UPDATE {LIVE} SET `{self.column}` = :v, modify_date = modify_date"
                    " WHERE lead_id = :l",
                    {"v": value, "l": lead},
                )
                if n:
                    self.truth.apply("fill", lead, {self.column: hexed(value)})
                    self.filled += 1
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()
            hp.close_quietly(db)

    def join(self) -> None:
        if self.thread is None:  # the job ended before its moment: now, then
            self.run()
            return
        self.thread.join(60)
        assert self.done.is_set(), "the ALTER did not finish"


@contextmanager
def running(dialer: Dialer) -> Iterator[Dialer]:
    thread = threading.Thread(target=dialer.run, daemon=True)
    thread.start()
    try:
        yield dialer
    finally:
        dialer.stop.set()
        thread.join(60)
    assert dialer.error is None, repr(dialer.error)


def churn(vdb: VDb, args: list[str], rng: random.Random, kills: int, alter: Alter) -> Counter[str]:
    """Run `args` again and again until the job is done: most runs SIGKILLed at a random moment
    or at an ARCHIVER_FAULT point; during one of them (not killed) the ALTER lands. Returns
    what the runs ended with."""
    seen: Counter[str] = Counter()
    trace: list[tuple[Any, ...]] = []
    alter_run = rng.randint(2, max(2, kills // 2))
    runs = 0
    while True:
        runs += 1
        assert runs < kills * 4, f"not done after {runs} runs: {dict(seen)}"
        hp.wait_lock_free(vdb.db, vdb.settings)
        fire = runs == alter_run
        env = {}
        if not fire and rng.random() < 0.3:
            env["ARCHIVER_FAULT"] = f"{rng.choice(CHUNK_POINTS)}:{rng.randint(1, 4)}"
        with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "0.03"]), env) as proc:
            if fire:  # once this run has reflected the tables and done a chunk
                delay = rng.uniform(0.0, 0.6)
                try:
                    proc.wait_for(lambda ln: '"event": "chunk"' in ln, 60)
                except AssertionError:  # it ended first: the job was done
                    pass
                alter.start(delay)
            elif seen["kill"] < kills:
                try:
                    if rng.random() < 0.75:  # inside the chunk loop, mostly
                        proc.wait_for(lambda ln: '"event": "job_' in ln, 60)
                        proc.p.wait(rng.uniform(0.0, 0.6))
                    else:  # anywhere, start-up included
                        proc.p.wait(rng.uniform(0.1, 1.0))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    seen["kill"] += 1
                except AssertionError:  # it ended before the job began: an exit code below
                    pass
            done = proc.finish(90)
        trace.append(
            (
                runs,
                done.rc,
                round(time.monotonic() - proc.started, 2),
                len(done.chunks()),
                env.get("ARCHIVER_FAULT", "fire" if fire else ""),
            )
        )
        if fire:
            alter.join()
            assert alter.error is None, repr(alter.error)
        if done.rc == -9:
            seen["fault" if any(ln.startswith("FAULT") for ln in done.lines) else "killed"] += 1
            continue
        if done.rc == 1:  # its delete met the ALTER: it deleted nothing there and says so
            assert alter.done.is_set()
            assert "a table changed during the run" in done.error, done.describe()
            assert f"column {alter.column} added" in done.error, done.describe()
            assert done.summary["state"] == "failed"
            seen["rc1_schema_changed"] += 1
            continue
        if done.rc == 2:  # started between the two ALTERs: the drift is refused, nothing written
            assert alter.done.is_set() or alter.thread is not None
            assert alter.column in done.error and "schema sync" in done.error, done.describe()
            seen["rc2_drift"] += 1
            continue
        assert done.rc == 0, done.describe()
        seen["done"] += 1
        break
    if alter.thread is None:  # the job was done before the ALTER's moment came
        alter.join()
        assert alter.error is None, repr(alter.error)
        seen["altered_after_the_end"] += 1
    seen["runs"] = runs
    print(f"runs (n, rc, s, chunks, fault): {trace}")
    assert seen["rc1_schema_changed"] <= 1, dict(seen)
    return seen


def held_leads(vdb: VDb) -> set[int]:
    """The leads a job held (`ChunkSql.hold`: archiver_pending rows of job 0)."""
    rows = vdb.db.rows("SELECT lead_id FROM archiver_pending WHERE job_id = 0")
    return {int(r[0]) for r in rows}


def outcome_leads(vdb: VDb, job_id: int, outcome: str) -> set[int]:
    rows = vdb.db.rows(
        "SELECT lead_id FROM archiver_leads WHERE job_id = :j AND outcome = :o",
        {"j": job_id, "o": outcome},
    )
    return {int(r[0]) for r in rows}


def job_of(vdb: VDb, name: str) -> dict[str, Any]:
    row = vdb.db.rows(
        "SELECT job_id, state, counts_json FROM archiver_jobs WHERE job_name = :n"
        " ORDER BY job_id LIMIT 1",
        {"n": name},
    )[0]
    return {"job_id": int(row[0]), "state": row[1], "counts": json.loads(row[2])}


def check_nothing_lost(vdb: VDb, truth: Truth) -> tuple[dict[int, Row], dict[int, Row]]:
    """Every lead is somewhere, and where it is live its live row (else its archived row) holds
    the last value written to each column, byte for byte."""
    live, arch = rows_of(vdb.db, LIVE), rows_of(vdb.db, ARCHIVE)
    columns = oracle.columns_of(vdb.db, LIVE)
    with truth.lock:
        assert set(live) | set(arch) == set(truth.rows), (
            f"in neither table: {sorted(set(truth.rows) - set(live) - set(arch))[:10]}; "
            f"unexpected: {sorted((set(live) | set(arch)) - set(truth.rows))[:10]}"
        )
        wrong = {}
        for lead in truth.rows:
            row = live.get(lead) or arch[lead]
            want = truth.expected(lead, columns)
            if row != want:
                wrong[lead] = {c: (row[c], want[c]) for c in columns if row[c] != want[c]}
        assert not wrong, f"{len(wrong)} leads lost a value, e.g. " + "; ".join(
            f"{lead}: {diff} history {truth.history.get(lead)}"
            for lead, diff in list(wrong.items())[:3]
        )
    return live, arch


def explain(vdb: VDb, truth: Truth, leads: set[int], both_after_job: set[int]) -> str:
    """What happened to these leads: each job's outcome, whether they were in both tables
    when the first job ended, whether the selection holds them now, the writers' changes."""
    rows = vdb.db.rows(
        "SELECT lead_id, job_id, outcome, chunk_no FROM archiver_leads WHERE lead_id IN :ids"
        " ORDER BY lead_id, job_id",
        {"ids": sorted(leads)},
    )
    outcomes: dict[int, list[str]] = {}
    for lead, job, out, chunk in rows:
        outcomes.setdefault(int(lead), []).append(f"job {job} chunk {chunk}: {out}")
    return "; ".join(
        f"{lead}: outcomes {outcomes.get(lead, [])}, in both after the job "
        f"{lead in both_after_job}, selected now {selected(truth.rows[lead])}, "
        f"changes {readable(truth.history.get(lead, []))}"
        for lead in sorted(leads)[:4]
    )


def readable(history: list[tuple[str, Row]]) -> list[tuple[str, dict[str, str | None]]]:
    return [(who, {k: text(v) for k, v in changes.items()}) for who, changes in history]


def seed_of() -> int:
    return int(os.environ.get("FAULTS_SEED") or random.randrange(2**32))


@contextmanager
def replayable(seed: int, what: str) -> Iterator[None]:
    print(f"{what}: seed {seed} (FAULTS_SEED={seed} replays the choices)")
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"{what}: FAULTS_SEED={seed} replays the choices")
        raise


# --- archive ---------------------------------------------------------------------------------


def archive_under_change(vdb: VDb, rng: random.Random, n: int, kills: int) -> dict[str, Any]:
    vdb.seed(n)
    truth = Truth(rows_of(vdb.db, LIVE))
    chosen = [i for i, row in truth.rows.items() if selected(row)]
    others = [i for i in truth.rows if i not in set(chosen)]
    pool = chosen + rng.sample(others, len(chosen) // 4)
    dialer = Dialer(vdb, truth, pool, random.Random(rng.random()))
    alter = Alter(
        vdb,
        truth,
        "va_note",
        "VARCHAR(40) NULL DEFAULT NULL",
        None,
        lambda r, lead: f"précieux-{lead}-{r.randrange(1000)}",
        rng.sample(pool, 150),
        random.Random(rng.random()),
    )
    args = ["archive", "--job-name", "fc-archive", *SELECTION, *COMMON]
    with running(dialer):
        seen = churn(vdb, args, rng, kills, alter)
    job = job_of(vdb, "fc-archive")
    assert job["state"] == "done", job

    # With the dialer stopped: nothing lost; a lead in both tables is one the dialer changed
    # after its copy (MyISAM only), its live row the lead.
    live, arch = check_nothing_lost(vdb, truth)
    both = set(live) & set(arch)
    if vdb.engine == "InnoDB":
        assert both == set()
    assert all(arch[i] != live[i] for i in both)
    # MyISAM: a lead the job left in both tables after the ALTER, different outside what a
    # call changes (the dialer here also edits comments), is held: no run may refresh it, for
    # the ALTER may have cut the live values; it stays in both tables until an operator
    # decides. A chunk that meets it again (a redo) calls it a conflict.
    held = held_leads(vdb)
    assert held <= both, (sorted(held), sorted(both))
    counts = job["counts"]
    allowed = {"archived", "skipped_newest", "kept_changed", "left_selection"}
    assert set(counts) <= allowed | ({"conflict"} if held else set()), counts
    assert outcome_leads(vdb, job["job_id"], "conflict") <= held
    assert counts.get("archived", 0) == len(set(arch) - set(live)), counts
    # A kept_changed lead is live only (this job removed its own copy, which a call made
    # stale) or, where no proof was possible, in both.
    assert counts.get("kept_changed", 0) + counts.get("conflict", 0) >= len(both), (
        counts,
        len(both),
    )
    if vdb.engine == "InnoDB":  # rows locked for the chunk: nothing changes under it
        assert set(counts) <= {"archived", "skipped_newest"}, counts

    # A new job, nothing changing now: the selection as the dialer left it is archived.
    sweep = hp.run(vdb.dsn, args)
    assert sweep.rc == 0, sweep.describe()
    assert sweep.summary["job_id"] != job["job_id"]
    live, arch = check_nothing_lost(vdb, truth)
    # MyISAM: a lead the first job copied and then kept live (its stale copy left for a later
    # run), which then left the selection, stays in both tables: the known gap the three
    # reproductions below pin down. Anything else in both tables is a failure.
    held &= set(live) & set(arch)  # the sweep refreshed those a later call made covered
    stuck = (set(live) & set(arch)) - held
    note = f"{len(stuck)} leads in both tables: " + explain(vdb, truth, stuck, both)
    assert vdb.engine == "MyISAM" or not stuck, note
    assert all(not selected(truth.rows[i]) and arch[i] != live[i] for i in stuck), note
    assert stuck <= both, note  # the sweep job itself left none
    archived = set(arch) - set(live)
    newest = max(truth.rows)
    want_archived = {i for i, row in truth.rows.items() if selected(row)} - {newest} - held
    # MyISAM: a lead the dialer moved out of the selection between a chunk's scan and its copy
    # is archived all the same, carrying the dialer's change (the fourth reproduction below).
    early = archived - want_archived
    note_early = f"{len(early)} leads archived that the selection does not hold, e.g. " + "; ".join(
        f"{i}: {readable(truth.history.get(i, []))}" for i in sorted(early)[:3]
    )
    assert vdb.engine == "MyISAM" or not early, note_early
    assert all(i in truth.history for i in early), note_early  # only leads the dialer moved
    assert archived - early == want_archived, (
        f"not archived: {sorted(want_archived - archived)[:10]}"
    )
    expect_sweep = {"archived": len(archived) - counts.get("archived", 0)}
    refused = outcome_leads(vdb, sweep.summary["job_id"], "conflict")
    assert refused <= held, (sorted(refused), sorted(held))
    expect_sweep["conflict"] = len(refused)
    if selected(truth.rows[newest]):
        expect_sweep["skipped_newest"] = 1
    assert sweep.summary["counts"] == {k: v for k, v in expect_sweep.items() if v}
    left = [i for i in truth.history if i in live and not selected(truth.rows[i])]
    if stuck | held:  # the stale copies go, as an admin would remove them (the operator
        # decides for the live rows of the held leads: the dialer's edits), before the dearchive
        vdb.db.write(f"DELETE FROM {ARCHIVE} WHERE lead_id IN :ids", {"ids": sorted(stuck | held)})
    return {
        "stuck": (len(stuck), note),
        "held": len(held),
        "early": (len(early), note_early),
        "runs": dict(seen),
        "dialer": dict(dialer.counts),
        "filled": alter.filled,
        "job": counts,
        "sweep": sweep.summary["counts"],
        "left_selection_live": len(left),
        "truth": truth,
        "dialer_obj": dialer,
    }


# --- dearchive -------------------------------------------------------------------------------


def dearchive_under_change(
    vdb: VDb, rng: random.Random, truth: Truth, pool: list[int], kills: int
) -> dict[str, Any]:
    archived = set(oracle.ids_of(vdb.db, ARCHIVE))
    dialer = Dialer(vdb, truth, list(pool), random.Random(rng.random()))
    alter = Alter(
        vdb,
        truth,
        "va_score",
        "SMALLINT NOT NULL DEFAULT 0",
        hexed("0"),
        lambda r, lead: str(r.randrange(-500, 500)),
        rng.sample(sorted(archived), min(150, len(archived))),
        random.Random(rng.random()),
    )
    args = ["dearchive", "--job-name", "fc-dearchive", "--where", "lead_id > 0", *COMMON]
    with running(dialer):
        seen = churn(vdb, args, rng, kills, alter)
    job = job_of(vdb, "fc-dearchive")
    assert job["state"] == "done", job
    live, arch = check_nothing_lost(vdb, truth)
    assert set(live) == set(truth.rows)
    # MyISAM: a restored lead the dialer (or the fill) changed after a chunk the ALTER cut keeps
    # its archive row too: the known gap of the fifth reproduction below. Nothing else is left.
    behind = set(arch)
    note = f"{len(behind)} left in the archive: " + explain(vdb, truth, behind, set())
    assert vdb.engine == "MyISAM" or not behind, note
    kept = {
        int(r[0])
        for r in vdb.db.rows(
            "SELECT lead_id FROM archiver_leads WHERE job_id = :j AND outcome = 'kept_changed'",
            {"j": job["job_id"]},
        )
    }
    assert behind == kept, note
    chunks = vdb.db.rows(
        "SELECT DISTINCT chunk_no FROM archiver_leads WHERE job_id = :j AND lead_id IN :ids",
        {"j": job["job_id"], "ids": sorted(behind) or [0]},
    )
    assert len(chunks) <= 1, f"not only the chunk the ALTER cut: {chunks}; {note}"
    want = {"dearchived": len(archived) - len(behind), "kept_changed": len(behind)}
    assert job["counts"] == {k: v for k, v in want.items() if v}
    return {
        "behind": (len(behind), note),
        "runs": dict(seen),
        "dialer": dict(dialer.counts),
        "filled": alter.filled,
        "counts": job["counts"],
    }


@pytest.mark.slow
def test_random_kills_with_dialer_moves_and_alter(vdb: VDb) -> None:
    seed = seed_of()
    with replayable(seed, f"kills under change ({vdb.engine})"):
        rng = random.Random(seed)
        started = time.monotonic()
        out = archive_under_change(vdb, rng, 8000, 12)
        truth, first_dialer = out.pop("truth"), out.pop("dialer_obj")
        archive_s = round(time.monotonic() - started, 1)
        assert out["runs"].get("killed", 0) + out["runs"].get("fault", 0) >= 6, out
        assert first_dialer.counts["moved_out"] > 0 and first_dialer.counts["moved_in"] > 0
        print(f"archive ({archive_s}s): {out}")

        started = time.monotonic()
        pool = sorted(truth.rows)
        back = dearchive_under_change(vdb, rng, truth, pool, 12)
        print(f"dearchive ({round(time.monotonic() - started, 1)}s): {back}")
        gaps = [note for n, note in (out["stuck"], out["early"], back.pop("behind")) if n]
        if gaps:  # everything else held; these are the gaps the reproductions below pin down
            pytest.xfail(f"seed {seed}: " + " | ".join(gaps))


# --- found by the test above: a lead left in both tables for good -----------------------------
# Each reproduction runs on both engines; MyISAM is expected to fail until the archiver is fixed
# (InnoDB cuts leave no copy, and its rows cannot change under a chunk).

NI = ["archive", "--status", "NI", "--ignore-window", "--json", "--job-name", "ni"]


def myisam_gap(request: pytest.FixtureRequest, vdb: VDb, reason: str) -> None:
    if vdb.engine == "MyISAM":
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def ni_leads(vdb: VDb) -> list[int]:
    rows = vdb.db.rows(f"SELECT lead_id FROM {LIVE} WHERE status = 'NI' ORDER BY lead_id")
    return [int(r[0]) for r in rows]


def dial(vdb: VDb, sql: str, lead: int) -> None:
    db = vdb.connect()
    try:
        assert db.write(sql, {"l": lead}) == 1
    finally:
        hp.close_quietly(db)


def assert_left_live_only(vdb: VDb, lead: int, others: list[int]) -> None:
    """The lead that left the selection is live only, with the dialer's change; every other
    selected lead archived only."""
    columns = oracle.columns_of(vdb.db, LIVE)
    live_row = oracle.row_bytes(vdb.db, LIVE, columns, [lead])
    where = oracle.placement(vdb.db, columns)
    assert lead not in where.archive, f"lead {lead} left the selection but is in both tables"
    assert where.rows[lead] == live_row[lead]
    assert where.both == set()
    assert set(others) <= where.archive - where.live


def test_copy_made_before_an_alter_is_removed_when_its_lead_leaves(
    request: pytest.FixtureRequest, vdb: VDb
) -> None:
    """A cut run copied the lead; a column was added to both tables; the dialer sold the lead.
    The resumed run must remove the copy it wrote (the lead stays live), but the copy's
    fingerprint was taken over the columns of before the ALTER and never matches again."""
    vdb.seed(300)
    cut = hp.run(vdb.dsn, NI, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE {table} ADD COLUMN va_note VARCHAR(40) NULL")
    ni = ni_leads(vdb)
    lead = ni[3]
    dial(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", lead)
    again = hp.run(vdb.dsn, NI)
    assert again.rc == 0, again.describe()
    assert_left_live_only(vdb, lead, [i for i in ni if i != lead])
    counts = again.summary["job_counts"]
    assert counts.get("left_selection") == (1 if vdb.engine == "MyISAM" else None), counts


def test_refresh_cut_before_it_is_written_keeps_the_older_copy_provable(
    request: pytest.FixtureRequest, vdb: VDb
) -> None:
    """A cut run copied the lead; the dialer changed it (still selected); the redo recorded
    the fingerprint of the refresh it was about to write and was cut before writing it; the
    dialer sold the lead. The archive still holds the first copy, this job's own, but the
    pending fingerprint is the unwritten refresh's: the copy is never proven and stays."""
    vdb.seed(300)
    cut = hp.run(vdb.dsn, NI, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    ni = ni_leads(vdb)
    lead = ni[3]
    dial(vdb, f"UPDATE {LIVE} SET called_count = called_count + 1 WHERE lead_id = :l", lead)
    hp.wait_lock_free(vdb.db, vdb.settings)
    cut = hp.run(vdb.dsn, NI, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    dial(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", lead)
    hp.wait_lock_free(vdb.db, vdb.settings)
    again = hp.run(vdb.dsn, NI)
    assert again.rc == 0, again.describe()
    assert_left_live_only(vdb, lead, [i for i in ni if i != lead])


def test_kept_changed_lead_that_then_leaves_loses_its_stale_copy(
    request: pytest.FixtureRequest, vdb: VDb
) -> None:
    """The dialer changed the lead between its copy and its delete (still selected): it is
    kept live, `kept_changed`, the stale copy left for a later run to refresh. Then the dialer
    sold it: no later run selects it, and the stale copy stays in the archive for good."""
    from archiver.db import connect, make_engine
    from archiver.jobtypes import JobSpec
    from archiver.runner import run_job
    from archiver.selection import Criteria, Selection

    vdb.seed(300)
    ni = ni_leads(vdb)
    lead = ni[3]
    state: dict[str, Any] = {}

    def hook(at: str, db: Db, ids: Any) -> None:
        if at == "after_insert" and "done" not in state:
            state["done"] = True
            if vdb.engine == "MyISAM":  # InnoDB: the chunk holds the row locked
                sql = f"UPDATE {LIVE} SET called_count = called_count + 1 WHERE lead_id = :l"
                dial(vdb, sql, lead)

    spec = JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(statuses=("NI",))),
        ignore_window=True,
        name="ni",
    )
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        first = run_job(db, vdb.settings, spec, hook=hook)
    finally:
        hp.close_quietly(db)
    if vdb.engine == "MyISAM":
        assert first.counts["kept_changed"] == 1
    else:
        assert "kept_changed" not in first.counts
        vdb.db.write(f"INSERT INTO {LIVE} SELECT * FROM {ARCHIVE} WHERE lead_id = :l", {"l": lead})
        vdb.db.write(f"DELETE FROM {ARCHIVE} WHERE lead_id = :l", {"l": lead})
    dial(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", lead)
    later = hp.run(vdb.dsn, NI)
    assert later.rc == 0, later.describe()
    assert_left_live_only(vdb, lead, [i for i in ni if i != lead])


def test_lead_leaving_before_its_copy_is_written_stays_live(
    request: pytest.FixtureRequest, vdb: VDb
) -> None:
    """The chunk read the lead as selected, with an older copy of it in the archive; the dialer
    sold it before the chunk's refresh; the refresh copied the sold row and the delete found it
    equal: the lead is archived (`archived`) though the selection no longer holds it. Only a
    change after the copy is checked against the selection."""
    from archiver.db import connect, make_engine
    from archiver.jobtypes import JobSpec
    from archiver.runner import run_job
    from archiver.selection import Criteria, Selection

    myisam_gap(
        request,
        vdb,
        "the selection is read once, by the chunk's scan: a lead that leaves it between the "
        "scan and the copy (refresh or insert) is copied as it is now and deleted",
    )
    vdb.seed(300)
    lead = ni_leads(vdb)[3]
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = :l", {"l": lead})
    vdb.db.write(
        f"UPDATE {ARCHIVE} SET called_count = called_count + 5 WHERE lead_id = :l", {"l": lead}
    )
    sell = Beside(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", {"l": lead})
    spec = JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(statuses=("NI",))),
        ignore_window=True,
    )
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        summary = run_job(db, vdb.settings, spec, hook=sell.hook)
    finally:
        hp.close_quietly(db)
    sell.join()
    columns = oracle.columns_of(vdb.db, LIVE)
    where = oracle.placement(vdb.db, columns)
    assert where.both == set()
    if vdb.engine == "InnoDB":  # waited for the chunk, then found the lead archived
        assert sell.rows == 0 and lead in where.archive
        return
    assert sell.rows == 1
    assert lead in where.live, f"lead {lead} was sold before its copy, yet archived"
    assert summary.counts["left_selection"] == 1, dict(summary.counts)


def test_restored_copy_made_before_an_alter_goes_when_the_dialer_changes_the_lead(
    request: pytest.FixtureRequest, vdb: VDb
) -> None:
    """Dearchive: a cut run restored the lead; a column was added to both tables; the dialer
    changed the restored lead. The resumed run must keep the live row and remove the archive
    row it copied, but the fingerprint of that copy covers the columns of before the ALTER:
    it is never proven, and the lead stays in both tables (`kept_changed`)."""
    myisam_gap(
        request,
        vdb,
        "copy_hash covers the columns of the run that wrote the copy: after an ADD COLUMN the "
        "archive row of a restored lead the dialer changed is never proven, so it stays",
    )
    vdb.seed(200)
    assert hp.run(vdb.dsn, ["archive", "--list-id", "999", "--ignore-window"]).rc == 0
    restored = oracle.ids_of(vdb.db, ARCHIVE)
    args = ["dearchive", "--list-id", "999", "--ignore-window", "--json"]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE {table} ADD COLUMN va_score SMALLINT NOT NULL DEFAULT 0")
    lead = min(restored)
    db = vdb.connect()
    try:
        touched = db.write(
            f"UPDATE {LIVE} SET status = 'NA', va_score = 7 WHERE lead_id = :l", {"l": lead}
        )
    finally:
        hp.close_quietly(db)
    assert touched == (1 if vdb.engine == "MyISAM" else 0)
    hp.wait_lock_free(vdb.db, vdb.settings)
    again = hp.run(vdb.dsn, args)
    assert again.rc == 0, again.describe()
    where = oracle.placement(vdb.db, oracle.columns_of(vdb.db, LIVE))
    assert where.archive == set(), f"left in the archive: {sorted(where.archive)}"
    assert where.live >= restored
    assert again.summary["job_counts"] == {"dearchived": len(restored)}
