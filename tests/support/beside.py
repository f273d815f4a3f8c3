"""A change made by another connection (the dialer, an agent) at one point of a chunk."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from archiver.db import Db
from tests.support import proc
from tests.support.db import VDb


class Beside:
    """A hook for `run_job`: at `point` of the first chunk that reaches it, `sql` runs on its
    own connection, in a thread. On MyISAM it goes through at once (the hook waits for it); on
    InnoDB it waits for the chunk's row locks, so the hook must not wait (the chunk would wait
    for itself): `join` after the run. `rows` is what the statement changed."""

    def __init__(self, vdb: VDb, sql: str, params: dict[str, Any], point: str = "after_insert"):
        self.vdb, self.sql, self.params, self.point = vdb, sql, params, point
        self.rows: int | None = None
        self.thread: threading.Thread | None = None

    def _change(self) -> None:
        db = self.vdb.connect()
        try:
            self.rows = db.write(self.sql, self.params)
        finally:
            proc.close_quietly(db)

    def hook(self, at: str, _db: Db, _ids: Sequence[int]) -> None:
        if at == self.point and self.thread is None:
            self.thread = threading.Thread(target=self._change)
            self.thread.start()
            if self.vdb.engine == "MyISAM":
                self.thread.join(10)

    def join(self, timeout: float = 20.0) -> None:
        assert self.thread is not None, f"the chunk never reached {self.point}"
        self.thread.join(timeout)
