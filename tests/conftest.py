"""Shared fixtures. Integration tests run against a real MariaDB (ARCHIVER_TEST_DSN, default
root@127.0.0.1:3306); each test gets its own uniquely named database, dropped afterwards, and
every integration test runs once on MyISAM and once on InnoDB. The helpers they use live in
tests/support/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archiver import config
from tests.support.db import ENGINES, VDb, temp_db


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def vdb(engine: str) -> Iterator[VDb]:
    """A VICIdial database (stock tables + archive) on `engine`, with no leads yet."""
    with temp_db(engine) as tdb:
        yield tdb


@pytest.fixture
def settings_for(vdb: VDb) -> config.Settings:
    return vdb.settings
