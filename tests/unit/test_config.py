"""Settings: defaults → TOML file → environment → flags; astguiclient.conf read as VICIdial
reads it; DSNs; a wrong key or type fails at once, and no error message holds a password.
No database."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver import config
from archiver.config import load_settings, parse_dsn, read_astguiclient
from archiver.db import describe_connect_error
from archiver.errors import BadInput, ConfigError

SECRET = "Pw-s3cr3t!x"


@pytest.fixture(autouse=True)
def _no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./vicidial-archiver.toml or /etc/vicidial-archiver.toml of this machine leaks in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATHS", (tmp_path / "absent.toml",))


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- layers ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(env={})
    assert (s.db.host, s.db.port, s.db.user, s.db.password, s.db.database) == (
        "127.0.0.1",
        3306,
        "root",
        "",
        "asterisk",
    )
    assert (s.live_table, s.archive_table) == ("vicidial_list", "vicidial_list_archive")
    assert (s.chunk_size, s.id_limit, s.max_runtime) == (500, 500, 0.0)
    assert not s.window.enabled  # no window: archive runs without --ignore-window
    g = s.guards
    assert (g.hopper, g.auto_calls, g.live_agents, g.callbacks, g.safe_auto_increment) == (
        True,
        True,
        True,
        True,
        True,
    )


TOML = """
[database]
host = "tomlhost"
port = 3307
user = "tomluser"
password = "tomlpw"
database = "tomldb"

[archive]
chunk_size = 100
id_limit = 2000
max_runtime = "2h"

[window]
start = "20:00"
end = "06:00"
days = ["mon", "tue"]
timezone = "America/New_York"

[guards]
hopper = false

[throttle]
sleep = "1.5s"
sleep_coef = 0.5
max_threads_running = 40
"""


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    s = load_settings(config_path=write(tmp_path / "a.toml", TOML), env={})
    assert (s.db.host, s.db.port, s.db.user, s.db.password, s.db.database) == (
        "tomlhost",
        3307,
        "tomluser",
        "tomlpw",
        "tomldb",
    )
    assert (s.chunk_size, s.id_limit, s.max_runtime) == (100, 2000, 7200.0)
    assert (s.window.start, s.window.end, s.window.days, s.window.timezone) == (
        "20:00",
        "06:00",
        ("mon", "tue"),
        "America/New_York",
    )
    assert s.guards.hopper is False and s.guards.callbacks is True
    assert (s.throttle.sleep, s.throttle.sleep_coef, s.throttle.max_threads_running) == (
        1.5,
        0.5,
        40,
    )


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "a.toml", TOML)
    env = {
        "ARCHIVER_DSN": "mysql://envdsnuser:envdsnpw@envdsnhost:3310/envdsndb",
        "ARCHIVER_DB_HOST": "envhost",
        "ARCHIVER_DB_PASSWORD": "envpw",
    }
    s = load_settings(config_path=path, env=env)
    # ARCHIVER_DB_* come after ARCHIVER_DSN; the DSN beats the file.
    assert (s.db.host, s.db.port, s.db.user, s.db.password, s.db.database) == (
        "envhost",
        3310,
        "envdsnuser",
        "envpw",
        "envdsndb",
    )
    assert s.chunk_size == 100  # untouched by the environment


def test_flags_override_environment_and_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "a.toml", TOML)
    env = {
        "ARCHIVER_DB_HOST": "envhost",
        "ARCHIVER_DB_USER": "envuser",
        "ARCHIVER_DB_PASSWORD": "envpw",
        "ARCHIVER_DB_PORT": "3311",
    }
    s = load_settings(
        config_path=path,
        env=env,
        dsn="mysql://flaguser@flaghost/flagdb",
        overrides={"chunk_size": 50, "log_format": None},
    )
    assert (s.db.host, s.db.user, s.db.database) == ("flaghost", "flaguser", "flagdb")
    # What the flag's DSN does not give comes from below: the password from the environment
    # (the documented way to keep it off the command line), the port from the environment.
    assert (s.db.password, s.db.port) == ("envpw", 3311)
    assert s.chunk_size == 50 and s.id_limit == 2000
    assert s.log_format == "auto"  # a flag left unset (None) keeps the lower layers


def test_astguiclient_flag_beats_environment_dsn_and_dsn_flag_beats_it(tmp_path: Path) -> None:
    conf = write(tmp_path / "astguiclient.conf", "VARDB_server => confhost\nVARDB_user => cron\n")
    env = {"ARCHIVER_DSN": "mysql://envuser@envhost/envdb"}
    s = load_settings(env=env, astguiclient=conf)
    assert (s.db.host, s.db.user, s.db.database) == ("confhost", "cron", "envdb")
    s = load_settings(env=env, astguiclient=conf, dsn="mysql://flaguser@flaghost/x")
    assert (s.db.host, s.db.user, s.db.database) == ("flaghost", "flaguser", "x")


def test_config_file_from_environment_and_from_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_path = write(tmp_path / "env.toml", "[archive]\nchunk_size = 7\n")
    assert load_settings(env={"ARCHIVER_CONFIG": env_path}).chunk_size == 7
    local = tmp_path / "vicidial-archiver.toml"
    write(local, "[archive]\nchunk_size = 9\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATHS", (Path("vicidial-archiver.toml"),))
    assert load_settings(env={}).chunk_size == 9
    # --config beats ARCHIVER_CONFIG, which beats the default paths.
    explicit = write(tmp_path / "x.toml", "[archive]\nchunk_size = 11\n")
    assert load_settings(config_path=explicit, env={"ARCHIVER_CONFIG": env_path}).chunk_size == 11


def test_astguiclient_named_in_toml_is_relative_to_the_toml(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    write(sub / "astguiclient.conf", "VARDB_database => fromconf\n")
    path = write(sub / "a.toml", '[database]\nastguiclient = "astguiclient.conf"\n')
    assert load_settings(config_path=path, env={}).db.database == "fromconf"


# --- wrong keys and types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[archive]\nbogus = 1\n",
            "unknown config key 'archive.bogus' in {path}; known keys in "
            "[archive]: archive_table, chunk_size, deadlock_retries, delete_batch, id_limit, "
            "innodb_lock_wait_timeout, live_table, lock_name, lock_wait_timeout, log_format, "
            "max_runtime",
        ),
        ("[database]\nhostname = 'x'\n", "unknown config key 'database.hostname' in {path}; "),
        (
            "[bogus]\nx = 1\n",
            "unknown config section [bogus] in {path}; known sections: database, "
            "archive, window, guards, throttle",
        ),
        ("chunk_size = 5\n", "unknown config section [chunk_size] in {path}; known sections: "),
        ("archive = 5\n", "config key 'archive' in {path} must be a [section]"),
        (
            "[archive]\nchunk_size = 'big'\n",
            "config key 'archive.chunk_size' must be a whole number, got 'big'",
        ),
        (
            "[archive]\nchunk_size = 1.5\n",
            "config key 'archive.chunk_size' must be a whole number, got 1.5",
        ),
        (
            "[archive]\nchunk_size = true\n",
            "config key 'archive.chunk_size' must be a whole number, got True",
        ),
        ("[guards]\nhopper = 'no'\n", "config key 'guards.hopper' must be true or false, got 'no'"),
        ("[guards]\nhopper = 0\n", "config key 'guards.hopper' must be true or false, got 0"),
        (
            "[throttle]\nsleep_coef = 'x'\n",
            "config key 'throttle.sleep_coef' must be a number, got 'x'",
        ),
        (
            "[window]\ndays = 'mon'\n",
            "config key 'window.days' must be a list of strings, got 'mon'",
        ),
        ("[archive]\nlive_table = 5\n", "config key 'archive.live_table' must be a string, got 5"),
        (
            "[database]\nport = '3306'\n",
            "config key 'database.port' must be a whole number, got '3306'",
        ),
        (
            "[archive]\nmax_runtime = 'soon'\n",
            "archive.max_runtime: expected a duration such as 90s, 30m, 2h or 1d, got 'soon'",
        ),
        ("[archive]\nid_limit = 0\n", "config key 'archive.id_limit' must be at least 1, got 0"),
        ("[archive]\nchunk_size = 501\n", "chunk size must be between 1 and 500, got 501"),
        ("[archive]\nchunk_size = 0\n", "chunk size must be between 1 and 500, got 0"),
        ("[archive]\nlog_format = 'xml'\n", "log format must be console or json, got 'xml'"),
        (
            "[archive]\narchive_table = 'a`; DROP'\n",
            "table name 'a`; DROP' must be letters, digits and _ only",
        ),
        (
            "[window]\nstart = '20:00'\n",
            "config keys 'window.start' and 'window.end' must be set together",
        ),
        (
            "[window]\nstart = '25:00'\nend = '06:00'\n",
            "window.start: expected a time of day such as 20:00, got '25:00'",
        ),
        (
            "[window]\ndays = ['funday']\n",
            "window.days: unknown day(s) ['funday']; use mon, tue, … sun",
        ),
        ("[window]\ntimezone = 'Mars/Base'\n", "window.timezone: unknown time zone 'Mars/Base'"),
        ("[throttle]\nsleep_coef = -1\n", "throttle values must not be negative"),
        ("[throttle]\nmax_threads_running = -1\n", "throttle values must not be negative"),
        (
            "[throttle]\nsleep_coef = inf\n",
            "--sleep-coef (throttle.sleep_coef) must be at most 100, got inf",
        ),
        (
            "[throttle]\nsleep = '1d'\n",
            "--sleep (throttle.sleep) must be at most 3600 seconds (1h), got 86400",
        ),
        ("[throttle]\nsleep = 1e300\n", "throttle.sleep: 1e+300 is too long (at most 100 years)"),
        ("[archive\n", "config file {path} is not valid TOML: "),
    ],
)
def test_wrong_key_or_type_fails_naming_it(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path / "bad.toml", toml)
    with pytest.raises(BadInput) as err:
        load_settings(config_path=path, env={})
    assert str(err.value).startswith(message.format(path=path))


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=str(tmp_path / "nope.toml"), env={})
    assert str(err.value) == f"config file {tmp_path / 'nope.toml'} does not exist; check --config"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("ARCHIVER_DB_PORT", "abc", "ARCHIVER_DB_PORT must be a port number (1–65535), got 'abc'"),
        ("ARCHIVER_DB_PORT", "²", "ARCHIVER_DB_PORT must be a port number (1–65535), got '²'"),
        ("ARCHIVER_DB_PORT", "0", "ARCHIVER_DB_PORT must be a port number (1–65535), got '0'"),
        (
            "ARCHIVER_DB_PORT",
            "65536",
            "ARCHIVER_DB_PORT must be a port number (1–65535), got '65536'",
        ),
        (
            "ARCHIVER_DSN",
            "postgresql://u@h/d",
            "ARCHIVER_DSN scheme 'postgresql' is not supported; use mysql:// or mysql+pymysql://",
        ),
    ],
)
def test_wrong_environment_values_fail_naming_the_variable(
    var: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={var: value})
    assert str(err.value) == message


# --- astguiclient.conf ------------------------------------------------------------------------

ASTGUICLIENT = """\
# astguiclient.conf - configuration elements for the astguiclient package
# this is the astguiclient configuration file
# all comments will be lost if you run install.pl again

# Paths used by astGUIclient
PATHhome => /usr/share/astguiclient
PATHlogs => /var/log/astguiclient

# Database connection information
VARDB_server => 10.1.2.3
VARDB_database =>\tasterisk\t# the VICIdial database
VARDB_user => cron ; the web user
VARDB_pass => 1234
VARDB_custom_user => custom
VARDB_custom_pass => custom1234
VARDB_port => 3307
#VARDB_pass => oldpassword
"""


def test_astguiclient_is_read_as_vicidial_reads_it(tmp_path: Path) -> None:
    parts = read_astguiclient(Path(write(tmp_path / "a.conf", ASTGUICLIENT)))
    assert parts == {
        "host": "10.1.2.3",
        "database": "asterisk",
        "user": "cron",
        "password": "1234",
        "port": 3307,
    }


@pytest.mark.parametrize(
    ("line", "password"),
    [
        ("VARDB_pass => s3cr3t", "s3cr3t"),
        ("VARDB_pass=>s3cr3t", "s3cr3t"),
        ("VARDB_pass=s3cr3t", "s3cr3t"),
        ("  VARDB_pass \t=>\t s3cr3t  ", "s3cr3t"),  # spaces and tabs anywhere are removed
        ("VARDB_pass => s3 cr 3t", "s3cr3t"),  # even inside the value
        ("VARDB_pass => s3>cr>3t", "s3cr3t"),  # every '>' is removed
        ("VARDB_pass => ab=cd=ef", "ef"),  # the value is what follows the last '='
        ("VARDB_pass => s3cr#3t", "s3cr"),  # '#' to the end of the line is dropped
        ("VARDB_pass => s3cr;3t", "s3cr"),  # so is ';'
        ("VARDB_pass => s3cr3t # old: x=y", "s3cr3t"),  # '=' inside a comment does not count
        ("VARDB_pass => ", ""),
        ("VARDB_pass => s3cr3t\r", "s3cr3t"),
    ],
)
def test_astguiclient_value_rules(tmp_path: Path, line: str, password: str) -> None:
    path = tmp_path / "a.conf"
    path.write_bytes(f"VARDB_user => cron\n{line}\n".encode())
    assert read_astguiclient(path) == {"user": "cron", "password": password}


def test_astguiclient_last_line_wins_and_comments_never_count(tmp_path: Path) -> None:
    text = (
        "VARDB_pass => first\n# VARDB_pass => commented\n;VARDB_pass => also\nVARDB_pass => last\n"
    )
    assert read_astguiclient(Path(write(tmp_path / "a.conf", text))) == {"password": "last"}


def test_astguiclient_localhost_means_tcp_to_this_machine(tmp_path: Path) -> None:
    text = "VARDB_server => localhost\n"
    assert read_astguiclient(Path(write(tmp_path / "a.conf", text))) == {"host": "127.0.0.1"}


def test_astguiclient_errors_never_show_the_password(tmp_path: Path) -> None:
    path = Path(write(tmp_path / "a.conf", f"VARDB_pass => {SECRET}\nVARDB_port => {SECRET}\n"))
    with pytest.raises(ConfigError) as err:
        read_astguiclient(path)
    assert str(err.value) == f"{path}: VARDB_port is not a number"
    with pytest.raises(ConfigError) as err:
        read_astguiclient(tmp_path / "missing.conf")
    assert str(err.value).startswith(f"cannot read {tmp_path / 'missing.conf'}: ")


# --- DSNs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "parts"),
    [
        (
            "mysql://cron:1234@10.0.0.5:3307/asterisk",
            {
                "host": "10.0.0.5",
                "port": 3307,
                "user": "cron",
                "password": "1234",
                "database": "asterisk",
            },
        ),
        (
            "mysql+pymysql://cron:1234@db.example:3306/asterisk",
            {
                "host": "db.example",
                "port": 3306,
                "user": "cron",
                "password": "1234",
                "database": "asterisk",
            },
        ),
        ("mariadb://cron@db/asterisk", {"host": "db", "user": "cron", "database": "asterisk"}),
        (
            "mysql://cron:p%40ss%3Aw%2Fd@db/asterisk",  # URL-escaped '@', ':' and '/'
            {"host": "db", "user": "cron", "password": "p@ss:w/d", "database": "asterisk"},
        ),
        (
            "mysql://cron:@db/asterisk",
            {"host": "db", "user": "cron", "password": "", "database": "asterisk"},
        ),
        ("mysql://db", {"host": "db"}),
    ],
)
def test_parse_dsn(dsn: str, parts: dict[str, object]) -> None:
    assert parse_dsn(dsn) == parts


def test_settings_url_round_trips_a_password_with_special_characters() -> None:
    s = load_settings(env={}, dsn="mysql://cron:p%40ss%3Aw%2Fd@db:3307/asterisk")
    assert s.db.password == "p@ss:w/d"
    assert s.db.url().password == "p@ss:w/d"
    assert s.safe_dsn == "mysql://cron:***@db:3307/asterisk"
    assert "p@ss" not in repr(s) and "p@ss" not in str(s)


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://cron:{SECRET}@db/asterisk",
        f"mysql://cron:{SECRET}@db:abc/asterisk",  # a port that is not a number
        f"mysql:/cron:{SECRET}@db/asterisk",  # one slash
        f"mysql//cron:{SECRET}@db/asterisk",
        f"cron:{SECRET}@db",
        f"://cron:{SECRET}@db/asterisk",
        f"mysql://cron:{SECRET}@[::1/asterisk",
    ],
)
def test_dsn_errors_never_show_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_dsn(dsn, "--dsn")
    assert SECRET not in str(err.value)
    assert str(err.value).startswith("--dsn ")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            f"[database]\npassword = {SECRET!r}\nport = 'x'\n",
            "config key 'database.port' must be a whole number, got 'x'",
        ),
        (
            "[database]\npassword = 123456789\n",
            "config key 'database.password' must be a string, got a value of type int",
        ),
        (
            "[database]\ndsn = 123456789\n",
            "config key 'database.dsn' must be a string, got a value of type int",
        ),
        (
            "[throttle]\nreplicas = 'mysql://u:123456789@replica1/x'\n",
            "config key 'throttle.replicas' must be a list of strings, got a value of type str",
        ),
        (
            "[throttle]\nreplicas = ['mysql://u:123456789@replica1:abc/x']\n",
            "throttle.replicas entry '***@replica1:abc/x' is not a URL; ",
        ),
        (
            "[database]\ndsn = 'mysql://u:123456789@db:abc/x'\n",
            "database.dsn '***@db:abc/x' is not a URL; ",
        ),
    ],
)
def test_config_errors_never_show_the_password(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path / "a.toml", toml)
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=path, env={})
    assert str(err.value).startswith(message)
    assert "123456789" not in str(err.value) and SECRET not in str(err.value)


class _Refused(Exception):
    """What PyMySQL raises: (errno, server message)."""


@pytest.mark.parametrize("errno", [1045, 1044, 1049, 2003, 2005, 2013, 9999])
def test_connect_errors_never_show_the_password(errno: int) -> None:
    s = load_settings(env={}, dsn=f"mysql://cron:{SECRET}@db:3307/asterisk")
    exc = _Refused(errno, f"Access denied for user 'cron'@'db' (using password: YES) {SECRET}")
    message = describe_connect_error(exc, s.db)
    assert SECRET not in message
    assert "db" in message


def test_access_denied_message() -> None:
    s = load_settings(env={}, dsn=f"mysql://cron:{SECRET}@db:3307/asterisk")
    assert describe_connect_error(_Refused(1045, "denied"), s.db) == (
        "access denied for user 'cron' on db:3307; check the user and password "
        "(--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)"
    )


# --- durations and dates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        (" 1.5h ", 5400.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert config.parse_duration(text, "--max-runtime") == seconds


@pytest.mark.parametrize("text", ["", "2x", "-1h", "1e3", "h", "1 h 2", "½h", "２h", True])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--max-runtime: "):
        config.parse_duration(text, "--max-runtime")


@pytest.mark.parametrize("text", ["36501d", "99999999999999999999d", 1e300, float("inf")])
def test_parse_duration_refuses_what_time_sleep_cannot_wait(text: str | float) -> None:
    with pytest.raises(BadInput) as err:
        config.parse_duration(text, "--sleep")
    assert str(err.value) == f"--sleep: {text!r} is too long (at most 100 years)"
    assert config.parse_duration("36500d", "--sleep") == 36500 * 86400


# --- hostile DSNs and files (issue 14: findings 2, 3, 5, 11, 15) ------------------------------


@pytest.mark.parametrize(
    ("dsn", "parts"),
    [
        (  # a raw '@' in the password: the user-info runs to the last '@'
            "mysql://root:Hunter@2pw@127.0.0.1/db",
            {"host": "127.0.0.1", "user": "root", "password": "Hunter@2pw", "database": "db"},
        ),
        (
            "mysql://root:Top Secret9@db/asterisk",
            {"host": "db", "user": "root", "password": "Top Secret9", "database": "asterisk"},
        ),
        (
            "mysql://root:tab\there@db/asterisk",
            {"host": "db", "user": "root", "password": "tab\there", "database": "asterisk"},
        ),
        (
            "mysql://monitor:pa%40ss:word@127.0.0.1:3306/",
            {"host": "127.0.0.1", "port": 3306, "user": "monitor", "password": "pa@ss:word"},
        ),
        (
            "mysql://root@[::1]:3307/asterisk",
            {"host": "::1", "port": 3307, "user": "root", "database": "asterisk"},
        ),
        (
            "mysql://root:a/b?c#d@db:3307/asterisk",
            {
                "host": "db",
                "port": 3307,
                "user": "root",
                "password": "a/b?c#d",
                "database": "asterisk",
            },
        ),
        ("mysql://[::1]/asterisk", {"host": "::1", "database": "asterisk"}),
        (
            "mysql://root@db/asterisk?charset=utf8mb4&init_command=x",  # query: not read
            {"host": "db", "user": "root", "database": "asterisk"},
        ),
        ("mysql://root@db/x%3Fa%3D1", {"host": "db", "user": "root", "database": "x?a=1"}),
    ],
)
def test_parse_dsn_reads_user_info_to_the_last_at(dsn: str, parts: dict[str, object]) -> None:
    assert parse_dsn(dsn) == parts


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("mysql://root@db:0/x", "--dsn: port 0 is not a TCP port (1–65535)"),
        ("mysql://root@db:65536/x", "--dsn: port 65536 is not a TCP port (1–65535)"),
        ("mysql://root@db:/x", "--dsn '***@db:/x' is not a URL; "),
        ("mysql://root:pw@::1/x", "--dsn '***@::1/x' is not a URL; "),
    ],
)
def test_parse_dsn_refuses(dsn: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_dsn(dsn, "--dsn")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "args",
    [
        ["--dsn", "mysql://root:Top Secret9@127.0.0.1/db"],
        ["--dsn=mysql://root:Top Secret9@127.0.0.1/db"],
        ["--dsn", "mysql://root:Top\tSecret9@127.0.0.1/db"],
        ["--dsn", "mysql://root:Top@Secret9@127.0.0.1/db"],
        ["--dsn=mysql://root:Top%40Secret9@127.0.0.1/db"],
        ["--dsn", "mysql://root:Top:Secret9@127.0.0.1/db"],
        ["--dsn", "mysql://root:Top/Secret9?#@127.0.0.1/db"],
        ["--dsn", "mysql://root:Top Secret9@127.0.0.1/db"],
        ["mysql://root:Top @Secret9@127.0.0.1/db"],  # where click will refuse it: masked too
        ["--dsn", "mysql:/root:Top Secret9@127.0.0.1/db"],  # not a URL
    ],
)
def test_every_form_of_a_dsn_password_is_masked(args: list[str]) -> None:
    from archiver.proctitle import masked_argv

    masked = masked_argv(["vicidial-archiver", "-v", *args, "jobs", "list"])
    shown = " ".join(masked)
    assert "Secret9" not in shown and "Top" not in shown, shown
    assert "***@127.0.0.1/db" in shown
    assert masked[-2:] == ["jobs", "list"]


def test_url_is_built_from_parts_so_the_database_name_cannot_add_options() -> None:
    from sqlalchemy import create_engine

    hostile = "x?init_command=CREATE TABLE x.pwned (i int)#"
    s = load_settings(env={"ARCHIVER_DB_NAME": hostile, "ARCHIVER_DB_HOST": "::1"})
    url = s.db.url()
    assert url.database == hostile and url.host == "::1"
    assert dict(url.query) == {"charset": "utf8mb4"}
    _args, kwargs = create_engine(url).dialect.create_connect_args(url)
    assert kwargs["database"] == hostile and kwargs["host"] == "::1"
    assert "init_command" not in kwargs
    assert (
        s.safe_dsn
        == "mysql://root@[::1]:3306/x%3Finit_command%3DCREATE%20TABLE%20x.pwned%20%28i%20int%29%23"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[database]\nconnect_timeout = 0\n",
            "config key 'database.connect_timeout' must be 1 to 3600 seconds, got 0",
        ),
        (
            "[database]\nconnect_timeout = -1\n",
            "config key 'database.connect_timeout' must be 1 to 3600 seconds, got -1",
        ),
        (
            "[database]\nconnect_timeout = 1000000000\n",
            "config key 'database.connect_timeout' must be 1 to 3600 seconds, got 1000000000",
        ),
        ("[database]\nport = 0\n", "config key 'database.port' must be 1 to 65535, got 0"),
        ("[database]\nport = 65536\n", "config key 'database.port' must be 1 to 65535, got 65536"),
        ("[database]\ndatabase = ''\n", "config key 'database.database' must not be empty; "),
        ("[database]\nhost = ''\n", "the database host is empty; "),
        (
            "[throttle]\nreplicas = ['mysql://u:pw@r:0/']\n",
            "throttle.replicas entry: port 0 is not a TCP port",
        ),
    ],
)
def test_database_values_out_of_range_fail_naming_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = write(tmp_path / "a.toml", toml)
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=path, env={})
    assert str(err.value).startswith(message)


def test_astguiclient_port_and_database_are_checked(tmp_path: Path) -> None:
    path = Path(write(tmp_path / "a.conf", "VARDB_port => 0\n"))
    with pytest.raises(ConfigError) as err:
        read_astguiclient(path)
    assert str(err.value) == f"{path}: VARDB_port must be a TCP port (1–65535), got 0"
    write(tmp_path / "b.conf", "VARDB_database =>\n")
    with pytest.raises(ConfigError) as err:
        load_settings(astguiclient=str(tmp_path / "b.conf"), env={})
    assert str(err.value).startswith("the database name is empty; ")


def test_files_are_read_with_a_bound(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"# padding\n" * 110_000)  # a valid TOML file of 1.1 MB
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=str(big), env={})
    assert str(err.value) == f"config file {big} is larger than 1 MiB; check --config"
    big_conf = tmp_path / "big.conf"
    big_conf.write_bytes(b"# padding\n" * 110_000)
    with pytest.raises(ConfigError) as err:
        read_astguiclient(big_conf)
    assert str(err.value) == f"{big_conf} is larger than 1 MiB; is it VICIdial's astguiclient.conf?"
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes("[database]\nuser = 'andré'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=str(latin1), env={})
    assert str(err.value) == f"config file {latin1} is not UTF-8 text; save it as UTF-8"
    with pytest.raises(ConfigError) as err:
        load_settings(config_path="/dev/zero", env={})
    assert str(err.value) == "config file /dev/zero is not a regular file; check --config"


@pytest.mark.parametrize("port", ["３３０６", "3_306", "+3306", "٣٣٠٦", "3306.0"])
def test_astguiclient_port_takes_ascii_digits_only(tmp_path: Path, port: str) -> None:
    """int() takes fullwidth and Arabic-Indic digits, '_' and '+': VARDB_port takes 0-9 only."""
    path = Path(write(tmp_path / "a.conf", f"VARDB_port => {port}\n"))
    with pytest.raises(ConfigError) as err:
        read_astguiclient(path)
    assert str(err.value) == f"{path}: VARDB_port is not a number"


@pytest.mark.parametrize("port", ["３３０６", "3_306", "+3306", " 3306"])
def test_environment_port_takes_ascii_digits_only(port: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"ARCHIVER_DB_PORT": port})
    assert str(err.value) == f"ARCHIVER_DB_PORT must be a port number (1–65535), got {port!r}"


def test_astguiclient_that_is_not_a_regular_file_is_refused_unopened(tmp_path: Path) -> None:
    """A FIFO blocked the run for ever (open() waits for a writer); a device or a directory is
    refused the same way, as --config refuses them."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero", str(tmp_path)):
        code = (
            "import pathlib, sys\n"
            "from archiver.config import read_astguiclient\n"
            "from archiver.errors import ConfigError\n"
            "try:\n"
            "    read_astguiclient(pathlib.Path(sys.argv[1]))\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n"
        )
        try:  # a bound for the old behaviour (blocked for ever), not a timing check
            p = subprocess.run(
                [sys.executable, "-c", code, path], capture_output=True, text=True, timeout=30
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"reading {path} blocked")
        assert p.stdout.strip() == (
            f"{path} is not a regular file; give the path of VICIdial's astguiclient.conf"
        ), p.stderr
