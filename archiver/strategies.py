"""The chunk strategies: which statements one chunk runs, in what order and in which batches.

Owns: the choice, made once per run from the two tables' engines, between one transaction per
chunk (InnoDB, `OneTransaction`) and autocommit idempotent statements (MyISAM, `Autocommit`:
the archiver_pending bookkeeping, the copy sent as literals, deletes in batches, the proven
removal of stale copies); each step of a chunk as a named statement (`Stmt`) built from what
the steps before it returned; the named points between steps (`Point`); each lead's outcome.
Must not: execute a statement (the runner runs each Stmt it is handed, or renders it in a dry
run, and sends the result back), hold SQL text (steps.py and checkpoint.py do), or know of job
rows, the lock, the window, the throttle or signals (runner.py).

A strategy's steps are generators: `rows = yield Stmt("classify", …, kind="read")` hands the
runner a statement and receives its rows (a read) or its row count (a write).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from archiver import checkpoint
from archiver.jobtypes import ARCHIVE, Flags, Outcome
from archiver.schema import Table, fingerprint
from archiver.selection import Criteria
from archiver.steps import NEITHER, ChunkSql, State, is_conflict, outcome, predict, state_of

# The points of a chunk where hooks and ARCHIVER_FAULT fire, besides each statement's name.
CHUNK_POINTS = ("after_insert", "after_update", "after_delete", "before_checkpoint")

Kind = Literal["read", "write", "literal", "show"]


@dataclass(frozen=True)
class Stmt:
    """One statement of a chunk, by name. `kind`: `read` sends its rows back (a dry run runs
    it too); `write` its row count (a dry run renders it); `literal` is a write whose values
    are SQL literals already, sent as it is (`shown` stands for it in logs and a dry run);
    `show` is what a dry run shows in place of a real run's steps, never run."""

    name: str
    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: Kind = "write"
    shown: str = ""


@dataclass(frozen=True)
class Point:
    """A named point between a chunk's steps, with the leads in hand there."""

    name: str
    ids: Sequence[int]


T = TypeVar("T")
Steps: TypeAlias = Generator[Stmt | Point, Any, T]


class TablesChanged(Exception):
    """A delete spared leads and a table's columns differ from those reflected at the start:
    the runner names the change (after running `then`, when there is one) and stops the job."""

    def __init__(self, tables: list[Table], then: Stmt | None) -> None:
        super().__init__([t.name for t in tables])
        self.tables, self.then = tables, then


@dataclass
class Pending:
    """The leads marked in archiver_pending (MyISAM): a chunk cut part-way is redone first.
    `written`: this chunk marked some, so its checkpoint clears them."""

    ids: set[int] = field(default_factory=set)
    written: bool = False


@dataclass
class Chunk:
    """One chunk as its scan read it: each lead's state before the chunk, the leads a guard
    holds, the newest lead; with what the run knows of the job."""

    no: int
    ids: list[int]
    cursor: int
    job_id: int | None  # None: a dry run
    criteria: Criteria | None
    show: bool  # a dry run builds this chunk's statements to show them
    before: dict[int, State] = field(default_factory=dict)
    guarded: set[int] = field(default_factory=set)
    unselected: set[int] = field(default_factory=set)
    # Leads another job holds the claim of (archiver.claims): not touched by this chunk.
    busy: set[int] = field(default_factory=set)
    newest: int | None = None
    # MyISAM: each source row's bytes as the scan read them (`ChunkSql.copy_exprs`).
    copies: dict[int, tuple[bytes | None, ...]] = field(default_factory=dict)
    # Leads gone from the source before the chunk's delete (someone else deleted them).
    gone: set[int] = field(default_factory=set)
    # MyISAM archive: leads whose row changed between the scan and the copy (not copied).
    changed: set[int] = field(default_factory=set)


class ChunkStrategy:
    """What both engines' chunks share. Made once per run; `steps` yields one chunk's
    statements between its scan and its checkpoint and returns each lead's outcome."""

    atomic: ClassVar[bool]
    guarantee: ClassVar[str]  # the dry-run plan's line
    reads_copies: ClassVar[bool] = False  # the scan reads the rows' bytes (`Chunk.copies`)

    def __init__(
        self,
        sql: ChunkSql,
        flags: Flags,
        *,
        guards: Sequence[str],
        newest: bool,
        overrides: bool,
        delete_batch: int,
        dry_run: bool,
        pending: Pending,
    ) -> None:
        self.sql, self.flags, self.dry_run, self.pending = sql, flags, dry_run, pending
        self.direction = sql.direction
        self.archive = sql.direction == ARCHIVE
        self.guards = list(guards) if self.archive else []
        self.newest = newest and self.archive
        self.overrides = overrides
        self.updates = flags.update and self.archive
        self.delete_batch = delete_batch
        self.tables_at: str | None = None

    def copy_path(self) -> str:
        """How the copy is written, for the plan (the copy by LOAD DATA LOCAL INFILE,
        `loadcopy.py`, was measured no faster than these and is not chosen)."""
        return "INSERT … SELECT from the source, insert-if-missing, one statement per chunk"

    # --- the run and the scan ------------------------------------------------------------

    def begin(self) -> Steps[None]:
        """Statements once per run, before the first chunk."""
        yield from ()

    def scan_sql(self, where: str) -> str:
        """The chunk's read: its rows, each one's state and guards (`ChunkSql.scan`)."""
        lock = self.atomic and not self.dry_run
        copies = self.reads_copies and not self.dry_run
        return self.sql.scan(where, self.guards, lock=lock, newest=self.newest, copies=copies)

    def read_scan(self, c: Chunk, rows: Sequence[tuple[Any, ...]]) -> Chunk:
        """Fill `c` from the scan's rows (a lead read twice, or not in the chunk, is left)."""
        wanted = set(c.ids)
        tail = 4 if self.newest else 3
        copies = self.reads_copies and not self.dry_run
        for row in rows:
            lead = int(row[0])
            if lead in c.before or lead not in wanted:
                continue
            c.before[lead] = state_of(True, row[1])
            if row[2]:
                c.guarded.add(lead)
            if self.newest and row[3] is not None:
                c.newest = int(row[3])
            if copies:
                c.copies[lead] = tuple(row[tail:])
        return c

    # --- one chunk -----------------------------------------------------------------------

    def steps(self, c: Chunk) -> Steps[dict[int, Outcome]]:
        """Every statement of a chunk after its scan, up to its checkpoint."""
        absent = [i for i in c.ids if i not in c.before]
        if absent:
            for lead, st in (yield from self.states(absent)).items():
                c.before[lead] = st
                if st.in_src and self.archive:
                    # A lead of the cut attempt that the selection no longer holds (the
                    # dialer changed it). Dearchive redoes its own leads whatever they match:
                    # their copies are already half made.
                    c.unselected.add(lead)
        ours = set(self.pending.ids)  # leads a killed attempt of this chunk had in hand
        skipped = self.skipped(c)
        act = sorted(
            i
            for i, st in c.before.items()
            if st.in_src
            and i not in skipped
            and i not in c.unselected
            and not is_conflict(st, self.direction, ours=i in ours)
        )
        after = yield from self.apply(c, act)
        left, withdrawn = yield from self.settle(c, act, after)
        yield from self.hold(c, act, after)
        result = self.outcomes(c, skipped, after, ours, left, withdrawn)
        yield Point("before_checkpoint", c.ids)
        return result

    def states(self, ids: Sequence[int]) -> Steps[dict[int, State]]:
        """Each id's state, read from the two tables (ids in neither are left out)."""
        states: dict[int, State] = {}
        for row in (yield Stmt("classify", self.sql.classify(), {"ids": list(ids)}, "read")):
            states[int(row[0])] = state_of(True, row[1])
        for row in (yield Stmt("in_dst", self.sql.in_dst(), {"ids": list(ids)}, "read")):
            lead = int(row[0])
            if lead not in states:
                states[lead] = State(False, True, False)
        return states

    def skipped(self, c: Chunk) -> dict[int, Outcome]:
        busy = dict.fromkeys(sorted(c.busy), Outcome.SKIPPED_BUSY)
        if not self.archive:
            return busy
        skipped = {**busy, **dict.fromkeys(sorted(c.guarded - c.busy), Outcome.SKIPPED_LIVE)}
        newest, before = c.newest, c.before
        if newest in before and before[newest].in_src and newest not in c.unselected:
            skipped.setdefault(newest, Outcome.SKIPPED_NEWEST)
        return skipped

    def apply(self, c: Chunk, act: list[int]) -> Steps[dict[int, State]]:
        """Copy, refresh and delete the leads to act on; returns their states after. A dry
        run shows the statements of its first chunk with something to do (each one, with the
        chunk's leads where it would have none) and predicts the states."""
        if not act:
            return {}
        if self.dry_run and not c.show:
            return self.predicted(c, act)
        before, flags = c.before, self.flags
        missing = [i for i in act if not before[i].in_dst]
        differ = [i for i in act if before[i].in_dst and not before[i].equal]
        literals = yield from self.remember(c, act, missing, differ)
        missing = yield from self.unchanged(c, act, missing if flags.insert else [])
        if flags.insert and (missing or c.show):
            yield from self.copy(missing or act, literals)
        yield Point("after_insert", act)
        if self.updates and (differ or c.show):
            yield Stmt("update", self.sql.update(), {"ids": differ or act})
        yield Point("after_update", act)
        deleted = (yield from self.delete(act)) if flags.delete else 0
        yield Point("after_delete", act)
        if self.dry_run:
            return self.predicted(c, act)
        if flags.delete and deleted == len(act) and self.unique_source:
            # Each deleted row had an equal copy in the target at that instant, and with
            # lead_id the source's key the count is one row per lead.
            return dict.fromkeys(act, State(False, True, True))
        if flags.delete:
            yield from self.check_columns(c)
        return (yield from self.read_back(act))

    @property
    def unique_source(self) -> bool:
        return tuple(k.lower() for k in self.sql.src.primary_key) == ("lead_id",)

    def read_back(self, ids: Sequence[int]) -> Steps[dict[int, State]]:
        """Each lead's state after the chunk's statements, a lead in neither table included
        (`NEITHER`: the chunk did not put it anywhere)."""
        states = yield from self.states(ids)
        return {i: states.get(i, NEITHER) for i in ids}

    def unchanged(self, c: Chunk, act: list[int], missing: list[int]) -> Steps[list[int]]:
        """The leads to copy whose source row is as the scan read it: all of them here (the
        chunk holds its rows locked)."""
        yield from ()
        return missing

    def predicted(self, c: Chunk, act: list[int]) -> dict[int, State]:
        return {i: predict(c.before[i], self.flags, self.direction) for i in act}

    def remember(
        self, c: Chunk, act: list[int], missing: list[int], differ: list[int]
    ) -> Steps[dict[int, str] | None]:
        """Bookkeeping before the chunk writes: none here."""
        yield from ()
        return None

    def copy(self, ids: list[int], literals: dict[int, str] | None) -> Steps[None]:
        """Insert-if-missing, in one INSERT … SELECT."""
        yield Stmt("copy", self.sql.insert(), {"ids": ids, **self.sql.override_params()})

    def delete(self, act: list[int]) -> Steps[int]:
        """Delete-if-equal, in one statement: the whole proof for the leads it deletes."""
        return int((yield Stmt("delete", self.sql.delete(), {"ids": act})))

    def settle(
        self, c: Chunk, act: list[int], after: dict[int, State]
    ) -> Steps[tuple[set[int], set[int]]]:
        """Leads a call changed after the chunk copied them: none here (the chunk holds its
        rows locked). Returns (the leads that left the selection, those whose copy went)."""
        yield from ()
        return set(), set()

    def hold(self, c: Chunk, act: list[int], after: dict[int, State]) -> Steps[None]:
        """Pairs this job leaves in both tables after an ALTER: none here (an ALTER waits
        for the chunk's transaction)."""
        yield from ()

    def check_columns(self, c: Chunk) -> Steps[None]:
        """A delete that spared leads may have met a table changed since the run began (its
        schema guard): raise TablesChanged, for the runner to stop the job, resumable,
        naming the change. The next run reflects the tables again before it writes."""
        rows = yield Stmt("fingerprint", self.sql.fingerprint_now(), kind="read")
        now = {str(r[0]): str(r[1]) for r in rows}
        changed = [t for t in (self.sql.src, self.sql.dst) if now.get(t.name) != fingerprint(t)]
        if not changed and not self.archive:
            # A restore rewritten by an INSERT trigger made since the run's checks looks like
            # a lead the dialer changed: the pair is held (`altered`), never refreshed later.
            same = yield Stmt("triggers", f"SELECT {self.sql.untriggered()}", kind="read")
            if not (same and same[0][0]):
                changed = [self.sql.dst]
        if changed:
            raise TablesChanged(changed, self.altered(c))

    def altered(self, c: Chunk) -> Stmt | None:
        """The statement to run once a table changed under the job: none here."""
        return None

    def outcomes(
        self,
        c: Chunk,
        skipped: dict[int, Outcome],
        after: dict[int, State],
        ours: set[int],
        left: set[int],
        withdrawn: set[int],
    ) -> dict[int, Outcome]:
        result = {}
        for lead in c.ids:
            if lead in skipped:
                result[lead] = skipped[lead]
                continue
            st = c.before.get(lead)
            if st is not None and not st.in_src and lead in ours:
                st = State(True, True, True)  # moved by the killed attempt of this chunk
            result[lead] = outcome(
                st,
                after.get(lead),
                self.flags,
                self.direction,
                left=lead in left,
                ours=lead in ours,
                withdrawn=lead in withdrawn or lead in c.changed,
                overrides=self.overrides,
                gone=lead in c.gone,
            )
        return result


class OneTransaction(ChunkStrategy):
    """InnoDB (both tables): a chunk is one transaction. Its rows are locked first (FOR UPDATE
    in lead_id order), the guards are read inside it, and insert, update, delete and the
    checkpoint rows commit together. A deadlock or lock-wait timeout rolls the chunk back and
    the runner redoes it."""

    atomic = True
    guarantee = (
        "InnoDB: each chunk is one transaction (rows locked first; steps and checkpoint "
        "commit together)"
    )


class Autocommit(ChunkStrategy):
    """MyISAM (either table): nothing is atomic. Each statement is idempotent and the delete
    carries its own proof of equality, so a chunk cut anywhere leaves every lead in at least
    one table with its data intact, and the next run re-derives each lead's state from the
    two tables. The checkpoint is a resume hint only; archiver_pending tells the job's own
    copies from others'."""

    atomic = False
    reads_copies = True
    guarantee = (
        "MyISAM: each step is one idempotent statement; the delete proves equality in the "
        "same statement; a cut run converges when re-run"
    )

    def copy_path(self) -> str:
        if not self.archive:
            return super().copy_path()
        return (
            "INSERT IGNORE … VALUES of the rows the chunk's scan read (vicidial_list is not "
            "locked while the archive's indexes are written), one statement per chunk"
        )

    def begin(self) -> Steps[None]:
        """The two tables' versions when the run begins, stored with each pending lead."""
        if not self.dry_run:
            rows = yield Stmt("tables_at", self.sql.read_tables_at(), kind="read")
            self.tables_at = rows[0][1] if rows else None

    def remember(
        self, c: Chunk, act: list[int], missing: list[int], differ: list[int]
    ) -> Steps[dict[int, str] | None]:
        """Mark the chunk's leads pending, with the fingerprint of each copy about to be
        written or found equal, before writing any (the job tells its own copies by them, in
        this chunk or in the redo of a cut one). The fingerprints, and the archive's copy rows,
        are made in Python from the bytes the scan read (`RowCopier`): the rows the insert
        writes are those fingerprinted. Returns those rows as SQL tuples (None when the
        chunk copies nothing by literals)."""
        if c.job_id is None or self.dry_run:
            return None
        before = c.before
        missing = list(missing) if self.flags.insert else []
        copies = missing + (differ if self.updates else [])
        copies += [i for i in act if before[i].in_dst and before[i].equal]
        unread = [i for i in copies if i not in c.copies]
        if unread:  # the scan read every lead it acts on; read any other apart
            rows = yield Stmt("copy_rows", self.sql.read_copies(), {"ids": unread}, "read")
            c.copies.update((int(r[0]), tuple(r[1:])) for r in rows)
        copier = self.sql.copier()
        # A lead gone from the source since it was read keeps no fingerprint (its copy,
        # if one is written, is not the job's to remove).
        made = {i: copier.copy(c.copies[i]) for i in copies if i in c.copies}
        hashes = {i: fp for i, (_, fp) in made.items()}
        literals = None
        if self.archive and missing:
            literals = {i: made[i][0] for i in missing if i in made}
        text, shown = checkpoint.pending_statement(c.job_id, act, hashes, self.tables_at)
        marked = yield Stmt("pending", text, kind="literal", shown=shown)
        checkpoint.check_pending(marked, len(act))
        self.pending.written = True
        # Also in memory: if this chunk is redone in this run (a lock wait while recording
        # it), the leads it already moved still count as moved, not as found moved.
        self.pending.ids.update(act)
        return literals

    def copy(self, ids: list[int], literals: dict[int, str] | None) -> Steps[None]:
        """Insert-if-missing. Archiving, the rows the scan read are inserted as values: an
        INSERT … SELECT would hold vicidial_list's table lock, and so stall the dialer's
        writes, for as long as the archive's indexes take to update."""
        if not self.archive:
            yield from super().copy(ids, literals)
            return
        sql = self.sql
        if self.dry_run:
            named = ", ".join(str(i) for i in ids)
            note = f"/* the rows the scan read, as literals: `lead_id` IN ({named}) */"
            placeholder = sql.insert_literals([note])
            yield Stmt("copy", placeholder, kind="literal", shown=placeholder)
            return
        if literals is None:
            read = yield Stmt("copy_rows", sql.read_copies(), {"ids": ids}, "read")
            rows = [sql.copier().copy(tuple(r[1:]))[0] for r in read]
        else:
            rows = [literals[i] for i in ids if i in literals]
        if rows:
            yield Stmt("copy", sql.insert_literals(rows), kind="literal")

    def unchanged(self, c: Chunk, act: list[int], missing: list[int]) -> Steps[list[int]]:
        """Archive: the copy is written from the scan's values, so just before it the chunk's
        rows are read again (`ChunkSql.versions`, one primary-key read): a lead someone else
        deleted since the scan (an admin's "delete lead", an erasure) is not copied, and is
        `gone` (its copy, if one was there before, is not this job's doing); one whose row
        changed (a call, another lead under the same id) is not copied either, and stays live
        (`kept_changed`, for a later run). A delete in the instant between this read and the
        copy leaves the copy: nothing is ever withdrawn, since a withdrawal cannot tell a lead
        deleted before its copy from one another mover moved after it."""
        if not self.archive or c.job_id is None or self.dry_run or not act:
            return missing
        rows = yield Stmt("present", self.sql.versions(), {"ids": act}, "read")
        now = {int(r[0]): str(r[1]) for r in rows}
        c.gone.update(i for i in act if i not in now)
        copier = self.sql.copier()
        keep = []
        for lead in missing:
            if lead in c.gone:
                continue
            if lead in c.copies and copier.version(c.copies[lead]) == now[lead]:
                keep.append(lead)
            else:
                c.changed.add(lead)
        return keep

    def delete(self, act: list[int]) -> Steps[int]:
        """Delete-if-equal. Archiving from a MyISAM vicidial_list, in statements of at most
        `delete_batch` leads: a DELETE holds the table's write lock, which stops every dialer
        read and write, for ~45 µs per lead at 1M leads (13 indexes), so short statements
        keep the dialer's waits short. Each statement is the whole proof for its leads."""
        batch = self.delete_batch if self.archive and self.delete_batch else len(act)
        deleted = 0
        for k in range(0, len(act), batch):
            deleted += yield Stmt("delete", self.sql.delete(), {"ids": act[k : k + batch]})
        return deleted

    def settle(
        self, c: Chunk, act: list[int], after: dict[int, State]
    ) -> Steps[tuple[set[int], set[int]]]:
        """Leads a call changed after this job copied them (or found them equal). Archive:
        the lead stays live and the copy goes (`delete_stale_copy`), so no stale copy
        outlives the chunk; one still selected is kept_changed, for a later run, one that left
        the selection is left_selection. Dearchive: a restored lead keeps its live row and the
        archive row this job copied goes (`delete_superseded`). Each delete proves the row it
        removes is the job's own copy and differs only in what a call changes; where it
        cannot, both rows stay. Returns (the leads that left the selection, those whose copy
        went)."""
        if c.job_id is None or self.dry_run or not self.flags.delete:
            return set(), set()
        changed = {i for i in act if (st := after.get(i)) and st.in_src and st.in_dst}
        left = set(c.unselected)
        if self.archive and changed and c.criteria is not None:
            cond, params = c.criteria.sql()
            ids = sorted(changed)
            rows = yield Stmt("selected", self.sql.selected(cond), {"ids": ids, **params}, "read")
            left |= changed - {int(r[0]) for r in rows}
        pool = (left | changed) if self.archive else changed
        targets = sorted(i for i in pool if (st := after.get(i) or c.before.get(i)) and st.in_dst)
        if targets:
            name, text = (
                ("delete_stale_copy", self.sql.delete_stale_copy())
                if self.archive
                else ("delete_superseded", self.sql.delete_superseded())
            )
            if (yield Stmt(name, text, {"ids": targets, "job": c.job_id})) < len(targets):
                yield from self.check_columns(c)
            after.update((yield from self.read_back(targets)))
        for lead in left:
            if lead not in after:
                after[lead] = c.before[lead]
        withdrawn = {i for i in targets if i in after and not after[i].in_dst}
        return left, withdrawn

    def hold(self, c: Chunk, act: list[int], after: dict[int, State]) -> Steps[None]:
        """Hold the pairs this job leaves in both tables, different, whose copy it fingerprinted
        before an ALTER (`ChunkSql.hold`): the ALTER may have cut the live row's values, so no
        later run may refresh the archive row from it (`ChunkSql.held_expr`). Sent only when
        a lead this job had in hand is in both tables, different, after the chunk."""
        if c.job_id is None or self.dry_run:
            return
        mine = set(act) | self.pending.ids
        pairs = sorted(
            i
            for i in c.ids
            if i in mine
            and (st := after.get(i) or c.before.get(i))
            and st.in_src
            and st.in_dst
            and not st.equal
        )
        if pairs:
            yield Stmt("hold", self.sql.hold(), {"ids": pairs, "job": c.job_id})

    def altered(self, c: Chunk) -> Stmt | None:
        """The leads in hand were copied before the change: from now on a proven-copy delete
        of theirs accepts only differences a call makes (an ALTER may have cut values, and a
        later ALTER may have put the old type back)."""
        if c.job_id is None:
            return None
        return Stmt("pending_altered", checkpoint.MARK_ALTERED, {"j": c.job_id})


def choose(src: Table, dst: Table) -> type[ChunkStrategy]:
    """The strategy for a run between these two tables: one transaction per chunk when both
    are transactional (InnoDB), autocommit idempotent statements otherwise (MyISAM)."""
    return OneTransaction if src.transactional and dst.transactional else Autocommit
