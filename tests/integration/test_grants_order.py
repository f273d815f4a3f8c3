"""sql/grants.sql runs whole before `schema init` as after it: no table it names need exist."""

from __future__ import annotations

import uuid

from tests.integration.test_privileges import GRANTS_USER, grants_sql, statements
from tests.support.db import ARCHIVE, VDb


def test_grants_apply_before_the_archive_table_exists(vdb: VDb) -> None:
    vdb.db.write(f"DROP TABLE {ARCHIVE}")
    for table in ("archiver_jobs", "archiver_chunks", "archiver_leads", "archiver_pending"):
        vdb.db.write(f"DROP TABLE IF EXISTS `{table}`")
    user = f"va_ord_{uuid.uuid4().hex[:8]}"
    text = grants_sql().replace("`asterisk`.", f"`{vdb.name}`.")
    text = text.replace(GRANTS_USER, f"'{user}'@'127.0.0.1'")
    try:
        for stmt in statements(text):
            vdb.db.write(stmt)  # the mysql client stops at the first statement that fails
        granted = vdb.db.rows(f"SHOW GRANTS FOR '{user}'@'127.0.0.1'")
        assert any(f"`{vdb.name}`.`vicidial_list_archive`" in str(r[0]) for r in granted)
        assert any(f"`{vdb.name}`.`archiver_job_ids`" in str(r[0]) for r in granted)
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
