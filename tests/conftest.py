"""Shared fixtures. Integration tests run against a real MariaDB (ARCHIVER_TEST_DSN, default
root@127.0.0.1:3306); each test gets its own uniquely named database, dropped afterwards, and
every integration test runs once on MyISAM and once on InnoDB. The helpers they use live in
tests/support/.

Tests may run in parallel (`pytest -n 3`, pytest-xdist): an integration test holds the server
shared, one marked `server_global` holds it alone (tests/support/serverlock.py). Under workers
the tests are handed out in this order: `server_global` ones first (alone, while the others
have not started anything long), then `slow` ones (the longest, spread over the workers from
the start), then the rest in file order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext

import pytest

from archiver import config
from tests.support import serverlock
from tests.support.db import ENGINES, VDb, temp_db

WORKER = os.environ.get("PYTEST_XDIST_WORKER")

# Each connection the tool opens builds a TLS context (PyMySQL tries TLS unless told not to),
# and a default context parses the whole CA bundle file (SSL_CERT_FILE): about 15 ms of CPU,
# paid thousands of times over a run, in this process and in every child (they inherit the
# environment). The test server speaks no TLS, and a certificate that something did need is
# still found, one at a time, in the hashed CA folder (SSL_CERT_DIR or OpenSSL's default).
os.environ["SSL_CERT_FILE"] = os.devnull


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if WORKER is None:
        return

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("server_global"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: file order within each rank


@pytest.fixture(scope="session")
def server_lock(tmp_path_factory: pytest.TempPathFactory) -> serverlock.ServerLock | None:
    if WORKER is None:
        return None
    # Each worker's base temp folder is a subfolder of the run's: the parent is shared.
    return serverlock.ServerLock(tmp_path_factory.getbasetemp().parent)


@pytest.fixture(autouse=True)
def _server_share(
    request: pytest.FixtureRequest, server_lock: serverlock.ServerLock | None
) -> Iterator[None]:
    """Set up before (and torn down after) every other fixture of the test."""
    if request.node.get_closest_marker("server_global"):
        with server_lock.alone() if server_lock else nullcontext(0.0) as waited:
            if waited >= 1:
                request.node.user_properties.append(("server_global_wait_s", round(waited, 1)))
            with serverlock.held_alone():
                yield
    elif server_lock is not None and "integration" in request.node.path.parts:
        with server_lock.shared():
            yield
    else:
        yield


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
