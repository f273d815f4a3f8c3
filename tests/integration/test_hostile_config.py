"""Hostile connection settings and files (issue 14, findings 2, 3, 4, 5, 9, 11 and 15), through
the CLI, on MyISAM and on InnoDB: passwords written any way stay out of `ps`, logs and errors
and still connect; no part of the settings can add a connection option; IPv6 hosts work; bad
values exit 2 with nothing written; inputs are read with a bound."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from archiver import commands as commands_mod
from tests.support.cli import invoke
from tests.support.db import ARCHIVE, LIVE, VDb, db_user
from tests.support.proc import BIN, Proc, parse_events

# --- helpers -------------------------------------------------------------------------------------


def state(vdb: VDb) -> tuple[str, list[str]]:
    """Every row of both lead tables (a digest) and the checkpoint tables that exist."""
    tables = [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME NOT IN :t ORDER BY 1",
            {"t": [LIVE, ARCHIVE]},
        )
    ]
    return vdb.checksum(), tables


def env_of(vdb: VDb, **extra: str) -> dict[str, str]:
    d = vdb.settings.db
    env = {
        "ARCHIVER_DB_HOST": d.host,
        "ARCHIVER_DB_PORT": str(d.port),
        "ARCHIVER_DB_USER": d.user,
        "ARCHIVER_DB_PASSWORD": d.password,
        "ARCHIVER_DB_NAME": vdb.name,
    }
    return {**env, **extra}


def assert_bad_input(result: Any, message: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert errors == [f"Error: {message}"], result.stderr
    assert result.stdout == ""


# --- findings 2 and 3: a password written any way --------------------------------------------

PASSWORDS = [
    # (password, how it is written in the DSN, the --dsn form)
    ("Top Secret9", "raw", "--dsn X"),
    ("Top\tSecret9", "raw", "--dsn=X"),
    ("Hunter@2pw", "raw", "--dsn X"),
    ("Hunter@2pw", "raw", "--dsn=X"),
    ("pa@ss:w0rd Zq7", "escaped", "--dsn X"),
]


@pytest.mark.parametrize(("password", "written", "form"), PASSWORDS)
def test_a_password_with_space_tab_or_at_connects_and_never_shows(
    vdb: VDb, password: str, written: str, form: str
) -> None:
    vdb.seed(40)
    with db_user(vdb, password) as user:
        pw = password if written == "raw" else quote(password, safe="")
        dsn = f"mysql://{user}:{pw}@127.0.0.1:{vdb.settings.db.port}/{vdb.name}"
        head = ["--dsn", dsn] if form == "--dsn X" else [f"--dsn={dsn}"]
        ids = [str(i) for i in range(1, 9)]
        args = [BIN, *head, "--log-format", "json", "archive", *ids, "--chunk-size", "1"]
        args += ["--sleep", "0.5"]
        with Proc(args) as proc:
            proc.wait_chunk(1)  # connected with the password; the title was set before that
            title = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            proc.signal(signal.SIGTERM)
            done = proc.finish()
    assert f"{user}:***@127.0.0.1:" in title, title
    tail = password.rpartition("@")[2].split()[-1]  # what a wrong parse would show as host
    for shown in (title, done.stdout, done.stderr):
        assert password not in shown and pw not in shown and tail not in shown
    assert done.rc == 3, done.describe()
    assert "Traceback" not in done.stderr
    assert vdb.count(ARCHIVE) >= 1


def test_a_wrong_password_with_a_raw_at_is_refused_without_showing_it(vdb: VDb) -> None:
    with db_user(vdb, "Hunter@2pw") as user:
        port = vdb.settings.db.port
        dsn = f"mysql://{user}:Hunter@2pwX@127.0.0.1:{port}/{vdb.name}"
        result = invoke(["--dsn", dsn, "--log-format", "json", "-v", "jobs", "list"])
    assert_bad_input(
        result,
        f"access denied for user '{user}' on 127.0.0.1:{port}; check the user and password "
        "(--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)",
    )
    assert "2pw" not in result.stderr


# --- finding 4: replica DSNs ---------------------------------------------------------------------


def test_replica_dsn_with_escaped_at_and_colon_is_checked_like_the_main_one(
    vdb: VDb, tmp_path: Path
) -> None:
    """The local server is no replica: its lag is unknown, which counts as too much, so the
    throttle waits and gives up after --max-wait (exit 3, resumable), as it always did."""
    vdb.seed(5)
    with db_user(vdb, "pa@ss:w0rd-7Q", monitor=True) as monitor:
        replica = f"mysql://{monitor}:pa%40ss:w0rd-7Q@127.0.0.1:{vdb.settings.db.port}/"
        conf = tmp_path / "c.toml"
        conf.write_text(f"[throttle]\nmax_replica_lag = 5\nreplicas = ['{replica}']\n")
        ids = ["1", "2", "3", "4", "5"]
        result = vdb.cli(
            ["--config", str(conf), "archive", *ids, "--chunk-size", "1", "--max-wait", "1s"]
        )
    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr
    end = parse_events(result.stderr.splitlines())[-1]
    assert end["event"] == "summary" and end["state"] == "stopped"
    assert end["stop_reason"].startswith(
        "throttle gave up: replica_lag stayed too high ([None]) for "
    )
    assert "w0rd-7Q" not in result.stderr + result.stdout
    # It connected as the monitor user: the lag is unknown because this is no replica.
    unknown = [
        e for e in parse_events(result.stderr.splitlines()) if e["event"] == "replica_lag_unknown"
    ]
    assert unknown, result.stderr
    for event in unknown:
        assert event["replica"] == f"mysql://{monitor}:***@127.0.0.1:{vdb.settings.db.port}/"
        assert event["reason"] == "not a replica (SHOW SLAVE STATUS is empty)"
    assert vdb.ids(ARCHIVE) == [1]
    assert vdb.db.scalar("SELECT state FROM archiver_jobs") == "stopped"


def test_a_bad_replica_dsn_is_refused_before_anything_is_written(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(5)
    before = state(vdb)
    conf = tmp_path / "c.toml"
    conf.write_text("[throttle]\nmax_replica_lag = 5\nreplicas = ['mysql://m:pw@127.0.0.1:0/']\n")
    result = vdb.cli(["--config", str(conf), "archive", "1", "2"])
    assert_bad_input(result, "throttle.replicas entry: port 0 is not a TCP port (1–65535)")
    assert state(vdb) == before


# --- finding 5: the URL is built from parts; IPv6 hosts ----------------------------------------


def test_the_database_name_cannot_add_connection_options(vdb: VDb) -> None:
    hostile = f"{vdb.name}?init_command=CREATE TABLE {vdb.name}.pwned (i int)#"
    result = invoke(
        ["--log-format", "json", "jobs", "list"], env=env_of(vdb, ARCHIVER_DB_NAME=hostile)
    )
    assert_bad_input(result, f"{hostile!r} is not a valid database name; check --dsn")
    assert vdb.db.rows("SHOW TABLES LIKE 'pwned'") == []


@pytest.mark.parametrize("where", ["toml", "dsn"])
def test_a_database_name_with_a_query_string_is_a_name(
    vdb: VDb, tmp_path: Path, where: str
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[database]\ndatabase = 'x?foo=1'\n")
    d = vdb.settings.db
    if where == "toml":
        args = ["--config", str(conf)]
        env = {k: v for k, v in env_of(vdb).items() if k != "ARCHIVER_DB_NAME"}
    else:
        args = ["--dsn", f"mysql://{d.user}@{d.host}:{d.port}/x%3Ffoo%3D1"]
        env = {"ARCHIVER_DB_PASSWORD": d.password}
    result = invoke([*args, "--log-format", "json", "jobs", "list"], env=env)
    assert_bad_input(
        result, f"database 'x?foo=1' does not exist on 127.0.0.1:{d.port}; check --dsn"
    )


@contextlib.contextmanager
def ipv6_forwarder(target_port: int) -> Iterator[int]:
    """A test-owned listener on [::1] that relays each connection to the server on 127.0.0.1
    (which listens on IPv4 only): a connection over IPv6 reaches the real server."""
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.bind(("::1", 0))
    listener.listen(8)
    listener.settimeout(0.1)  # close() does not wake accept(): the loop looks at `stop`
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.close()
        thread.join(5)


@pytest.mark.parametrize("form", ["dsn", "env", "astguiclient"])
def test_ipv6_hosts_work(vdb: VDb, tmp_path: Path, form: str) -> None:
    d = vdb.settings.db
    with ipv6_forwarder(d.port) as port:
        if form == "dsn":
            argv = ["--dsn", f"mysql://{d.user}@[::1]:{port}/{vdb.name}"]
            env = {"ARCHIVER_DB_PASSWORD": d.password}
        elif form == "env":
            argv = []
            env = env_of(vdb, ARCHIVER_DB_HOST="::1", ARCHIVER_DB_PORT=str(port))
        else:
            conf = tmp_path / "astguiclient.conf"
            conf.write_text(
                f"VARDB_server => ::1\nVARDB_port => {port}\nVARDB_user => {d.user}\n"
                f"VARDB_pass => {d.password}\nVARDB_database => {vdb.name}\n"
            )
            argv = ["--astguiclient", str(conf)]
            env = {}
        result = invoke([*argv, "--log-format", "json", "jobs", "list"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_an_ipv6_host_nothing_listens_on_is_a_clean_connect_error(vdb: VDb) -> None:
    with socket.socket(socket.AF_INET6) as probe:  # a port on ::1 that nothing listens on
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    result = invoke(["--dsn", f"mysql://root@[::1]:{port}/{vdb.name}", "jobs", "list"])
    assert_bad_input(
        result,
        f"cannot connect to MariaDB/MySQL at [::1]:{port} (mysql://root@[::1]:{port}/"
        f"{vdb.name}); check that the server is running and the host and port are right",
    )


# --- finding 9: --metrics-file -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing-dir", "fifo", "directory"])
def test_an_unwritable_metrics_file_is_refused_before_the_job(
    vdb: VDb, tmp_path: Path, kind: str
) -> None:
    vdb.seed(20)
    if kind == "missing-dir":
        path, why = tmp_path / "nonexistent" / "dir" / "m.prom", "No such file or directory"
    elif kind == "fifo":  # a device or pipe would be replaced by the rename, not written to
        path, why = tmp_path / "pipe", "not a regular file"
        os.mkfifo(path)
    else:
        path, why = tmp_path, "not a regular file"
    before = state(vdb)
    result = vdb.cli(["archive", "11", "12", "13", "--metrics-file", str(path)])
    assert_bad_input(result, f"cannot write --metrics-file {path}: {why}")
    assert state(vdb) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"missing-dir": [], "fifo": ["pipe"], "directory": []}[kind]
    )


def test_a_metrics_file_failing_after_the_job_exits_1_with_the_summary(
    vdb: VDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vdb.seed(20)
    folder = tmp_path / "metrics"
    folder.mkdir()
    real_run_job = commands_mod.run_job

    def run_then_remove_the_folder(*args: Any, **kwargs: Any) -> Any:
        summary = real_run_job(*args, **kwargs)
        shutil.rmtree(folder)
        return summary

    monkeypatch.setattr(commands_mod, "run_job", run_then_remove_the_folder)
    result = vdb.cli(["archive", "11", "12", "13", "--metrics-file", str(folder / "m.prom")])
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # JSON logs: the `summary` event is the run's end
    ends = [e for e in parse_events(result.stderr.splitlines()) if e["event"] == "summary"]
    assert [(e["state"], e["moved"]) for e in ends] == [("done", 3)]
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot write --metrics-file {folder / 'm.prom'}: No such file or directory; "
        "the job itself ended done"
    )
    assert vdb.ids(ARCHIVE) == [11, 12, 13]


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00garbage\n", b"this is { not prometheus\n"],
    ids=["not-utf8", "not-prometheus"],
)
def test_a_metrics_file_that_cannot_be_read_is_replaced_and_the_job_exit_stands(
    vdb: VDb, tmp_path: Path, content: bytes
) -> None:
    """Issue 21, finding 14: a stopped job (exit 3) reads the last success from the old file;
    one it cannot parse ended the job in a traceback, exit 1, metrics and admin log unwritten."""
    from prometheus_client.parser import text_string_to_metric_families

    vdb.seed(20)
    path = tmp_path / "m.prom"
    path.write_bytes(content)
    args = ["archive", "1", "2", "3", "--ignore-window", "--chunk-size", "1", "--sleep", "2"]
    args += ["--max-runtime", "1", "--metrics-file", str(path), "--admin-log"]

    result = vdb.cli(args)

    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: --max-runtime of 1s reached")
    assert "metrics_file_replaced" in result.stderr
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["vicidial_archiver_last_run_success"].samples[0].value == 0.0
    assert "vicidial_archiver_last_success_timestamp_seconds" not in families
    assert vdb.db.scalar("SELECT COUNT(*) FROM vicidial_admin_log") == 1


# --- findings 11 and 15: bad values and unbounded inputs ---------------------------------------

CONFIG_CASES = [
    (
        "connect-timeout-0",
        "[database]\nconnect_timeout = 0\n",
        "config key 'database.connect_timeout' must be 1 to 3600 seconds, got 0",
    ),
    (
        "connect-timeout-negative",
        "[database]\nconnect_timeout = -1\n",
        "config key 'database.connect_timeout' must be 1 to 3600 seconds, got -1",
    ),
    (
        "connect-timeout-huge",
        "[database]\nconnect_timeout = 1000000000\n",
        "config key 'database.connect_timeout' must be 1 to 3600 seconds, got 1000000000",
    ),
    ("port-0", "[database]\nport = 0\n", "config key 'database.port' must be 1 to 65535, got 0"),
    (
        "database-empty",
        "[database]\ndatabase = ''\n",
        "config key 'database.database' must not be empty; name the VICIdial database "
        "(usually asterisk)",
    ),
    (
        "not-utf8",
        "[database]\nuser = 'andré'\n".encode("latin-1"),
        "config file {path} is not UTF-8 text; save it as UTF-8",
    ),
    (
        "over-1-mib",
        b"# padding\n" * 110_000,
        "config file {path} is larger than 1 MiB; check --config",
    ),
]


@pytest.mark.parametrize(
    ("toml", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_database_settings_exit_2_naming_the_key(
    vdb: VDb, tmp_path: Path, toml: str | bytes, message: str
) -> None:
    vdb.seed(5)
    path = tmp_path / "c.toml"
    if isinstance(toml, bytes):
        path.write_bytes(toml)
    else:
        path.write_text(toml, encoding="utf-8")
    before = state(vdb)
    # No --dsn, and no variable for the key the file sets: the environment would win over it.
    text = str(toml)
    env = env_of(vdb)
    if "port =" in text:
        env["ARCHIVER_DB_PORT"] = ""
    if "database =" in text:
        env["ARCHIVER_DB_NAME"] = ""
    result = invoke(["--config", str(path), "--log-format", "json", "archive", "1", "2"], env=env)
    assert_bad_input(result, message.format(path=path))
    assert state(vdb) == before


def test_an_over_long_ids_file_line_is_a_bad_line(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(5)
    ids = tmp_path / "ids.txt"
    # A line may be as long as a lead export's row (64 KiB): one past that is a bad line.
    ids.write_text("1\n2\n" + " " * 65536 + "3" * 10 + "\n4\n")
    before = state(vdb)
    result = vdb.cli(["archive", "--ids-file", str(ids)])
    assert_bad_input(
        result,
        f"{ids} line 3: longer than 64 KiB; give one lead id a line, or a CSV export with a "
        "header line",
    )
    assert state(vdb) == before


def _limited_memory() -> None:
    # An unbounded read of /dev/zero fails here with MemoryError instead of taking the machine.
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))


@pytest.mark.parametrize("option", ["--ids-file", "--astguiclient"])
def test_dev_zero_as_an_input_file_is_refused(vdb: VDb, option: str) -> None:
    vdb.seed(5)
    before = state(vdb)
    if option == "--ids-file":
        args = ["--dsn", vdb.dsn, "archive", "--ids-file", "/dev/zero"]
        message = (
            "/dev/zero line 1: longer than 64 KiB; give one lead id a line, or a CSV export "
            "with a header line"
        )
    else:
        args = ["--astguiclient", "/dev/zero", "archive", "1"]
        message = "/dev/zero is not a regular file; give the path of VICIdial's astguiclient.conf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    done = subprocess.run(
        [BIN, "--log-format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_limited_memory,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"Error: {message}"]
    assert state(vdb) == before
