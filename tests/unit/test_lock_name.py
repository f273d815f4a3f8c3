"""The job lock's name: one per database, whatever the length of its name."""

from __future__ import annotations

from dataclasses import replace

from archiver.checkpoint import LOCK_NAME_MAX, lock_name
from archiver.config import Settings


def settings_for(database: str) -> Settings:
    s = Settings()
    return replace(s, db=replace(s.db, database=database))


def test_a_name_that_fits_is_the_one_earlier_versions_took() -> None:
    assert lock_name(settings_for("asterisk")) == "vicidial-archiver:asterisk"
    fits = "d" * (LOCK_NAME_MAX - len("vicidial-archiver:"))
    assert lock_name(settings_for(fits)) == f"vicidial-archiver:{fits}"


def test_long_names_that_share_a_prefix_get_locks_of_their_own() -> None:
    stem = "tenant_callcenter_eu_west_production_".ljust(60, "x")
    names = {lock_name(settings_for(stem + end)) for end in ("aaaa", "bbbb", "ééé€")}
    assert len(names) == 3
    for name in names:
        assert len(name) <= LOCK_NAME_MAX
        assert name.startswith("vicidial-archiver:tenant_callcenter_eu_west")
