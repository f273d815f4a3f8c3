"""Secrets and who sees what: a file holding the database password that every local user may
read is warned about (naming it and its mode, on stderr; `--json` stdout stays clean); an API
key sees the jobs it started, a key named in [serve] admin_keys every job. Every test runs on
MyISAM and on InnoDB."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from archiver import config, serve
from tests.support import proc as hp
from tests.support.db import VDb, db_user
from tests.support.schema import documented


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


# --- what an API key sees -----------------------------------------------------------------

CRM, ERP, OPS = "crm-key-5d1e", "erp-key-93aa", "ops-key-0c77"


def _key(key: str) -> dict[str, str]:
    return {"Authorization": f"Key={key}"}


def _app(vdb: VDb, admins: tuple[str, ...] = ("ops",)) -> TestClient:
    keys = tuple(f"{n}:{serve.hash_key(k)}" for n, k in (("crm", CRM), ("erp", ERP), ("ops", OPS)))
    conf = replace(vdb.settings, serve=config.ServeSettings(keys=keys, admin_keys=admins))
    return documented(TestClient(serve.create_app(conf)))


def test_a_key_sees_the_jobs_it_started_an_admin_key_sees_every_job(vdb: VDb) -> None:
    vdb.seed(30)
    cli_job = vdb.cli(["archive", "1", "2", "--ignore-window", "--json"])
    assert cli_job.exit_code == 0, cli_job.output
    with _app(vdb) as client:
        crm = client.post(serve.ARCHIVE_PATH, json={"lead_ids": [3, 4]}, headers=_key(CRM))
        erp = client.post(serve.ARCHIVE_PATH, json={"lead_ids": [5]}, headers=_key(ERP))
        assert crm.status_code == erp.status_code == 200, (crm.text, erp.text)
        crm_id, erp_id = crm.json()["job_id"], erp.json()["job_id"]
        assert (crm_id, erp_id) == (2, 3)

        def listed(key: str) -> list[int]:
            r = client.get(serve.JOBS_PATH, headers=_key(key))
            assert r.status_code == 200, r.text
            return [j["job_id"] for j in r.json()["jobs"]]

        def read(key: str, job_id: int) -> int:
            return client.get(f"{serve.JOBS_PATH}/{job_id}", headers=_key(key)).status_code

        assert listed(CRM) == [crm_id]
        assert listed(ERP) == [erp_id]
        assert listed(OPS) == [erp_id, crm_id, 1]  # the admin key: every job, the CLI's too
        assert (read(CRM, crm_id), read(CRM, erp_id), read(CRM, 1)) == (200, 404, 404)
        assert (read(ERP, erp_id), read(ERP, crm_id)) == (200, 404)
        assert (read(OPS, 1), read(OPS, crm_id), read(OPS, erp_id)) == (200, 200, 200)
        # Another key's job is answered as a job that does not exist: nothing of it shows.
        other = client.get(f"{serve.JOBS_PATH}/{erp_id}", headers=_key(CRM)).json()
        missing = client.get(f"{serve.JOBS_PATH}/99", headers=_key(CRM)).json()
        assert other == {**missing, "message": f"no job {erp_id}"}
    # The CLI shows every job, and which key started it nowhere but in its params.
    assert (
        vdb.db.scalar(
            "SELECT JSON_UNQUOTE(JSON_EXTRACT(params_json, '$.client')) FROM archiver_jobs"
            " WHERE job_id = :j",
            {"j": crm_id},
        )
        == "crm"
    )


def test_an_admin_key_that_is_not_a_key_is_refused(vdb: VDb, tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        f'[serve]\nkeys = ["crm:{serve.hash_key(CRM)}"]\nadmin_keys = ["crm", "root"]\n'
    )
    os.chmod(path, 0o600)
    done = _run(["--config", str(path), "--dsn", vdb.dsn, "jobs", "list"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: serve.admin_keys: 'root' is not the name of a key in [serve] keys or "
        "ARCHIVER_API_KEYS; name the keys that may see every job"
    )
