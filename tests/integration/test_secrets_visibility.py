"""Secrets and who sees what: a file holding the database password that every local user may
read is warned about (naming it and its mode, on stderr; `--json` stdout stays clean). Every
test runs on MyISAM and on InnoDB."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import proc as hp
from tests.support.db import VDb, db_user


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hp.BIN, "--log-format", "json", *args],
        capture_output=True,
        text=True,
        env=hp.child_env(),
        timeout=60,
    )


def _warnings(stderr: str) -> list[dict[str, object]]:
    return [e for e in hp.parse_events(stderr.splitlines()) if e.get("level") == "warning"]


@pytest.mark.parametrize("form", ["toml", "astguiclient"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_a_password_file_others_may_read_is_warned_about(
    vdb: VDb, tmp_path: Path, form: str, mode: int
) -> None:
    d = vdb.settings.db
    with db_user(vdb, "S3cret-pw") as user:
        if form == "toml":
            path = tmp_path / "archiver.toml"
            path.write_text(
                f'[database]\ndsn = "mysql://{user}:S3cret-pw@{d.host}:{d.port}/{vdb.name}"\n'
            )
            args = ["--config", str(path)]
        else:
            path = tmp_path / "astguiclient.conf"
            path.write_text(
                f"VARDB_server => {d.host}\nVARDB_port => {d.port}\nVARDB_user => {user}\n"
                f"VARDB_pass => S3cret-pw\nVARDB_database => {vdb.name}\n"
            )
            args = ["--astguiclient", str(path)]
        os.chmod(path, mode)
        done = _run([*args, "schema", "check", "--json"])
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout is the JSON answer alone
    assert "S3cret-pw" not in done.stderr + done.stdout
    warned = _warnings(done.stderr)
    if mode & 0o004:
        assert warned == [
            {
                "file": str(path),
                "mode": f"{mode:04o}",
                "advice": f"it holds a database password; chmod o-r {path} (e.g. 0600 or 0640)",
                "event": "password_file_readable_by_others",
                "level": "warning",
                "timestamp": warned[0]["timestamp"],
            }
        ]
    else:
        assert warned == []


def test_a_readable_config_without_a_password_is_not_warned_about(vdb: VDb, tmp_path: Path) -> None:
    path = tmp_path / "archiver.toml"
    path.write_text("[archive]\nchunk_size = 100\n")
    os.chmod(path, 0o644)
    done = _run(["--config", str(path), "--dsn", vdb.dsn, "schema", "check", "--json"])
    assert done.returncode == 0, done.stderr
    assert _warnings(done.stderr) == []
