"""One frozen, typed Settings object: defaults → TOML file → environment → flags.

A wrong key or a wrong type fails at once (ConfigError, exit 2) and names the key.
The password is kept apart from anything that is logged or printed: use `Settings.safe_dsn`.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL

from archiver.errors import BadInput, ConfigError
from archiver.idlist import whole
from archiver.logging import get_logger

DEFAULT_CONFIG_PATHS = (Path("vicidial-archiver.toml"), Path("/etc/vicidial-archiver.toml"))
MAX_CHUNK = 500
MAX_DURATION = 100 * 365 * 86400.0
# The between-chunk sleep: at most an hour (--sleep) and 100 × the last chunk's time
# (--sleep-coef), an hour in all; the job holds its lock meanwhile.
MAX_SLEEP = 3600.0
MAX_SLEEP_COEF = 100.0
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Config and astguiclient.conf files are read up to this size: past it (or from a device such
# as /dev/zero) they are refused instead of read until memory runs out.
MAX_FILE_BYTES = 1 << 20
MAX_CONNECT_TIMEOUT = 3600


@dataclass(frozen=True)
class DbSettings:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str = "asterisk"
    connect_timeout: int = 10

    def url(self, *, database: str | None = None) -> URL:
        """A SQLAlchemy URL built from the parts (no part can add a query parameter). It holds
        the password: never log or print it."""
        db = self.database if database is None else database
        return URL.create(
            "mysql+pymysql",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=db,
            query={"charset": "utf8mb4"},
        )

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        return f"{host}:{self.port}"

    def safe(self) -> str:
        """The connection as it may be shown to a person: password masked."""
        pw = ":***" if self.password else ""
        user = quote(self.user, safe="")
        return f"mysql://{user}{pw}@{self.hostport}/{quote(self.database, safe='')}"


@dataclass(frozen=True)
class WindowSettings:
    start: str = ""
    end: str = ""
    days: tuple[str, ...] = DAY_NAMES
    timezone: str = "UTC"

    @property
    def enabled(self) -> bool:
        return bool(self.start and self.end)


@dataclass(frozen=True)
class GuardSettings:
    hopper: bool = True
    auto_calls: bool = True
    live_agents: bool = True
    callbacks: bool = True
    safe_auto_increment: bool = True


@dataclass(frozen=True)
class ThrottleSettings:
    sleep: float = 0.0
    sleep_coef: float = 0.0
    max_threads_running: int = 0
    max_replica_lag: float = 0.0
    max_wait: float = 600.0
    chunk_time_ms: int = 0
    replicas: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ServeSettings:
    # `name:<sha256 hex of the key>` entries; parsed and checked by archiver.serve.
    keys: tuple[str, ...] = field(default=(), repr=False)
    # Names of keys (from `keys`) that see every job, CLI jobs included; any other key sees
    # only the jobs it started.
    admin_keys: tuple[str, ...] = ()
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = ()
    # Seconds a database read or write may take: `read_timeout` for /healthz, the jobs
    # endpoints and the connection handshake; `job_read_timeout` for a job's statements.
    read_timeout: int = 10
    job_read_timeout: int = 300


@dataclass(frozen=True)
class Settings:
    db: DbSettings = DbSettings()
    live_table: str = "vicidial_list"
    archive_table: str = "vicidial_list_archive"
    chunk_size: int = MAX_CHUNK
    delete_batch: int = 100
    id_limit: int = 500
    lock_name: str = "vicidial-archiver"
    lock_wait_timeout: int = 10
    innodb_lock_wait_timeout: int = 5
    # Seconds one statement of a job may run (MariaDB max_statement_time); 0 = no limit.
    statement_timeout: int = 600
    deadlock_retries: int = 5
    max_runtime: float = 0.0
    log_format: str = "auto"
    window: WindowSettings = WindowSettings()
    guards: GuardSettings = GuardSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    serve: ServeSettings = ServeSettings()

    @property
    def safe_dsn(self) -> str:
        return self.db.safe()


# The TOML layout: section → (Settings attribute or None for top level, dataclass).
_SECTIONS: dict[str, tuple[str | None, type[Any]]] = {
    "database": ("db", DbSettings),
    "archive": (None, Settings),
    "window": ("window", WindowSettings),
    "guards": ("guards", GuardSettings),
    "throttle": ("throttle", ThrottleSettings),
    "serve": ("serve", ServeSettings),
}
_TOP_KEYS = {
    "live_table",
    "archive_table",
    "chunk_size",
    "delete_batch",
    "id_limit",
    "lock_name",
    "lock_wait_timeout",
    "innodb_lock_wait_timeout",
    "statement_timeout",
    "deadlock_retries",
    "max_runtime",
    "log_format",
}
_DB_EXTRA_KEYS = {"dsn", "astguiclient"}
_DURATION_KEYS = {"max_runtime", "max_wait", "sleep", "max_replica_lag"}


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds from `90`, `90s`, `30m`, `2h`, `1d`; raises BadInput naming `what`."""
    if isinstance(text, bool):
        raise BadInput(f"{what}: expected a duration such as 90s, 30m, 2h, got {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", text)  # not \d: '２h'
        if not m:
            raise BadInput(f"{what}: expected a duration such as 90s, 30m, 2h or 1d, got {text!r}")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        value = float(m.group(1)) * unit
    if value < 0:
        raise BadInput(f"{what}: must not be negative, got {text!r}")
    if not value <= MAX_DURATION:  # also NaN; time.sleep() overflows past ~292 years
        raise BadInput(f"{what}: {text!r} is too long (at most 100 years)")
    return value


def parse_clock(text: str, what: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: expected a time of day such as 20:00, got {text!r}") from None


_SCHEMES = {"mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"}
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\[\]/]+)\]|(?P<host>[^\s:\[\]]*))(?::(?P<port>.*))?", re.S)


def parse_dsn(dsn: str, what: str = "DSN") -> dict[str, Any]:
    """The parts a DSN gives; never echoes the password back in an error.

    The user-info runs to the LAST '@' (as browsers read it), so a password may hold a raw '@',
    ':', space or tab; %-escapes (`%40`) in the user, password and database are decoded. The
    host may be an IPv6 address in brackets. Query parameters are not read."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+]*", scheme):
        raise _not_a_url(dsn, what)
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"{what} scheme {scheme!r} is not supported; use mysql:// or mysql+pymysql://"
        )
    userinfo, at, location = rest.rpartition("@")
    location = location.partition("?")[0]
    hostport, _, database = location.partition("/")
    m = _HOST_PORT.fullmatch(hostport)
    port = m.group("port") if m else None
    if m is None or (port is not None and not (port.isascii() and port.isdigit())):
        raise _not_a_url(dsn, what)
    parts: dict[str, Any] = {}
    host = m.group("v6") or m.group("host")
    if host:
        parts["host"] = host
    if port is not None:
        number = whole(port, 65535)
        if not number:  # None (past 65535), or 0
            raise ConfigError(f"{what}: port {port.lstrip('0') or 0} is not a TCP port (1–65535)")
        parts["port"] = number
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            parts["user"] = unquote(user)
        if colon:
            parts["password"] = unquote(password)
    if database:
        parts["database"] = unquote(database)
    return parts


def _not_a_url(dsn: str, what: str) -> ConfigError:
    # Show only what follows the last '@': a malformed DSN ('mysql:/u:pw@h') would otherwise
    # put the password in the message.
    _, at, tail = dsn.rpartition("@")
    shown = f"***@{tail}" if at else ("***" if ":" in dsn else dsn)
    return ConfigError(
        f"{what} {shown!r} is not a URL; use mysql://user:password@host:3306/asterisk"
    )


def replica_settings(dsn: str, what: str = "throttle.replicas entry") -> DbSettings:
    """A replica's connection, read by the same parser as the main DSN (no database unless
    the DSN names one)."""
    parts = {"database": "", "connect_timeout": 5, **parse_dsn(dsn, what)}
    return DbSettings(**parts)


class NotRegularFile(OSError):
    """A path that is a FIFO, a device, a socket or a directory, where a file was expected."""


def read_capped(path: Path) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of the file (raises OSError as open() does, and
    NotRegularFile for anything but a regular file). Opened without blocking, so a FIFO with
    no writer is refused instead of waited on for ever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read(MAX_FILE_BYTES + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def warn_if_others_may_read(path: Path) -> None:
    """A file holding a password that every user of the machine may read is warned about (as
    ssh and libpq's .pgpass are), naming it and its mode, on stderr; it is read all the same.
    Group access is left alone: a config shared with a service's group is a choice."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & stat.S_IROTH:
        get_logger().warning(
            "password_file_readable_by_others",
            file=str(path),
            mode=f"{mode:04o}",
            advice=f"it holds a database password; chmod o-r {path} (e.g. 0600 or 0640)",
        )


def _holds_password(data: dict[str, Any]) -> bool:
    """Whether a parsed config file holds a password: database.password, or one in the DSN or
    a replica's DSN."""
    db, throttle = data.get("database", {}), data.get("throttle", {})
    if db.get("password"):
        return True
    dsns = [db.get("dsn"), *(throttle.get("replicas") or ())]
    for dsn in dsns:
        if not isinstance(dsn, str):
            continue
        try:
            if parse_dsn(dsn).get("password"):
                return True
        except BadInput:
            continue
    return False


def read_astguiclient(path: Path) -> dict[str, Any]:
    """VARDB_* settings from VICIdial's /etc/astguiclient.conf, read the way VICIdial reads it:
    spaces, tabs and `>` removed, everything from `#` or `;` dropped, value after the last `=`."""
    try:
        data = read_capped(path)
    except NotRegularFile:
        msg = f"{path} is not a regular file; give the path of VICIdial's astguiclient.conf"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}; check the path and its permissions"
        raise ConfigError(msg) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than 1 MiB; is it VICIdial's astguiclient.conf?")
    text = data.decode("utf-8", errors="replace")
    keys = {
        "VARDB_server": "host",
        "VARDB_port": "port",
        "VARDB_user": "user",
        "VARDB_pass": "password",
        "VARDB_database": "database",
    }
    parts: dict[str, Any] = {}
    for raw in text.splitlines():
        line = re.sub(r"[#;].*", "", raw)
        line = re.sub(r"[ \t>]", "", line)
        if "=" not in line:
            continue
        key = line.split("=", 1)[0]
        value = line.rsplit("=", 1)[1]
        if key in keys:
            parts[keys[key]] = value
    if "port" in parts:
        port = parts["port"]
        if not (port.isascii() and port.isdigit()):  # int() takes '３３０６', '3_306', '+3306'
            raise ConfigError(f"{path}: VARDB_port is not a number")
        number = whole(port, 65535)
        if not number:  # None (past 65535), or 0
            raise ConfigError(
                f"{path}: VARDB_port must be a TCP port (1–65535), got {port.lstrip('0') or 0}"
            )
        parts["port"] = number
    if parts.get("host") == "localhost":
        # PyMySQL has no socket default; localhost means this machine over TCP.
        parts["host"] = "127.0.0.1"
    if parts.get("password"):
        warn_if_others_may_read(path)
    return parts


def _check_type(key: str, value: Any, default: Any) -> Any:
    name = key.rsplit(".", 1)[-1]
    if name in _DURATION_KEYS:
        return parse_duration(value, key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"config key {key!r} must be a list of strings, got {_shown(name, value)}"
            )
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r} must be a string, got {_shown(name, value)}")
    return value


# Keys whose values may hold a password (replicas are DSNs): an error names only their type.
_SECRET_KEYS = {"password", "dsn", "replicas", "keys"}


def _shown(name: str, value: Any) -> str:
    return f"a value of type {type(value).__name__}" if name in _SECRET_KEYS else repr(value)


class _Builder:
    """Collects overrides per section, then builds the frozen Settings once."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        # `section.key` → where its value came from (a key not here keeps its default).
        self.origin: dict[str, str] = {}
        self.source = "default"

    def set(self, section: str, key: str, value: Any) -> None:
        self.values[section][key] = value
        self.origin[f"{section}.{key}"] = self.source

    def apply_db_parts(self, parts: dict[str, Any]) -> None:
        for key, value in parts.items():
            self.set("database", key, value)

    def build(self) -> Settings:
        top = self.values["archive"]
        nested: dict[str, Any] = {}
        for section, (attr, cls) in _SECTIONS.items():
            if attr is not None:
                nested[attr] = cls(**self.values[section])
        return Settings(**top, **nested)


def _defaults_of(cls: type[Any]) -> dict[str, Any]:
    inst = cls()
    return {f.name: getattr(inst, f.name) for f in fields(cls)}


def _load_file(builder: _Builder, path: Path, base_dir: Path) -> None:
    try:
        raw = read_capped(path)
    except NotRegularFile:
        raise ConfigError(f"config file {path} is not a regular file; check --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"config file {path} is larger than 1 MiB; check --config")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except ValueError as exc:  # tomllib's int() past 4300 digits; the rest is Python's advice
        reason = str(exc).split(";")[0]
        raise ConfigError(f"config file {path} is not valid TOML: {reason}") from None
    for section, body in data.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown config section [{section}] in {path}; "
                f"known sections: {', '.join(_SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"config key {section!r} in {path} must be a [section]")
        _load_section(builder, path, section, body, base_dir)
    if _holds_password(data):
        warn_if_others_may_read(path)


def _load_section(
    builder: _Builder, path: Path, section: str, body: dict[str, Any], base_dir: Path
) -> None:
    attr, cls = _SECTIONS[section]
    defaults = _defaults_of(cls)
    allowed = set(_TOP_KEYS) if attr is None else set(defaults)
    if section == "database":
        allowed |= _DB_EXTRA_KEYS
    for key, value in body.items():
        full = f"{section}.{key}"
        if key not in allowed:
            raise ConfigError(
                f"unknown config key {full!r} in {path}; known keys in [{section}]: "
                f"{', '.join(sorted(allowed))}"
            )
        if key == "dsn":
            builder.apply_db_parts(parse_dsn(_check_type(full, value, ""), f"{full}"))
        elif key == "astguiclient":
            conf = Path(_check_type(full, value, ""))
            source, builder.source = builder.source, f"{base_dir / conf} (database.astguiclient)"
            builder.apply_db_parts(read_astguiclient(base_dir / conf))
            builder.source = source
        else:
            builder.set(section, key, _check_range(full, _check_type(full, value, defaults[key])))


# Whole-number keys with a range: (lowest, highest, unit).
_RANGES = {
    "database.port": (1, 65535, ""),
    "database.connect_timeout": (1, MAX_CONNECT_TIMEOUT, " seconds"),
}


def _check_range(key: str, value: Any) -> Any:
    if key in _RANGES:
        low, high, unit = _RANGES[key]
        if not low <= value <= high:
            raise ConfigError(f"config key {key!r} must be {low} to {high}{unit}, got {value}")
    if key == "database.database" and not value:
        raise ConfigError(
            "config key 'database.database' must not be empty; name the VICIdial database "
            "(usually asterisk)"
        )
    return value


_ENV_DB = {
    "ARCHIVER_DB_HOST": "host",
    "ARCHIVER_DB_PORT": "port",
    "ARCHIVER_DB_USER": "user",
    "ARCHIVER_DB_PASSWORD": "password",
    "ARCHIVER_DB_NAME": "database",
}


def _load_env(builder: _Builder, env: dict[str, str]) -> None:
    if env.get("ARCHIVER_ASTGUICLIENT"):
        builder.source = f"{env['ARCHIVER_ASTGUICLIENT']} (ARCHIVER_ASTGUICLIENT)"
        builder.apply_db_parts(read_astguiclient(Path(env["ARCHIVER_ASTGUICLIENT"])))
    if env.get("ARCHIVER_DSN"):
        builder.source = "environment ARCHIVER_DSN"
        builder.apply_db_parts(parse_dsn(env["ARCHIVER_DSN"], "ARCHIVER_DSN"))
    for var, key in _ENV_DB.items():
        builder.source = f"environment {var}"
        if var in env and env[var] != "":
            value: Any = env[var]
            if key == "port":
                if not whole(value, 65535):  # None (not digits, past 65535), or 0
                    raise ConfigError(f"{var} must be a port number (1–65535), got {value!r}")
                value = int(value)
            builder.set("database", key, value)
    if env.get("ARCHIVER_API_KEYS"):  # adds to the file's keys (an entry in both counts once)
        builder.source = "environment ARCHIVER_API_KEYS"
        keys = builder.values["serve"].get("keys", ())
        extra = env["ARCHIVER_API_KEYS"].replace(",", " ").split()
        builder.set("serve", "keys", tuple(dict.fromkeys((*keys, *extra))))


def find_config(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if path.exists() and not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file; check --config")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; check --config")
        return path
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    *,
    config_path: str | None = None,
    dsn: str | None = None,
    astguiclient: str | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Settings:
    """Build Settings from every source in order. `overrides` maps `section.key` (or a top-level
    key) to a value from a flag; None values are ignored so unset flags keep lower layers.
    `origins`, when given, is filled with where each setting not left at its default came
    from (`section.key` → a file, an environment variable or a flag)."""
    env = dict(os.environ) if env is None else env
    builder = _Builder()
    path = find_config(config_path or env.get("ARCHIVER_CONFIG"))
    if path is not None:
        builder.source = f"{path.resolve()}"
        _load_file(builder, path, path.parent)
    _load_env(builder, env)
    if astguiclient:
        builder.source = f"{astguiclient} (--astguiclient)"
        builder.apply_db_parts(read_astguiclient(Path(astguiclient)))
    if dsn:
        builder.source = "--dsn"
        builder.apply_db_parts(parse_dsn(dsn, "--dsn"))
    builder.source = "a flag"
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        builder.set(section or "archive", name, value)
    if origins is not None:
        origins.update(builder.origin)
    try:
        settings = builder.build()
    except TypeError as exc:  # a flag name that does not exist: a bug, not user input
        raise RuntimeError(f"unknown setting in overrides: {exc}") from exc
    return validate(settings)


def validate(s: Settings) -> Settings:
    _validate_db(s.db)
    if not s.db.database:
        raise ConfigError(
            "the database name is empty; name the VICIdial database (usually asterisk) in "
            "--dsn, ARCHIVER_DB_NAME, database.database or VARDB_database"
        )
    if not 1 <= s.chunk_size <= MAX_CHUNK:
        raise BadInput(f"chunk size must be between 1 and {MAX_CHUNK}, got {s.chunk_size}")
    if not 0 <= s.delete_batch <= MAX_CHUNK:
        raise BadInput(
            f"delete batch must be between 0 and {MAX_CHUNK} (0: one statement per chunk), "
            f"got {s.delete_batch}"
        )
    if s.id_limit < 1:
        raise ConfigError(f"config key 'archive.id_limit' must be at least 1, got {s.id_limit}")
    if not 0 <= s.statement_timeout <= 86400:
        raise ConfigError(
            "config key 'archive.statement_timeout' must be 0 (no limit) to 86400 seconds, "
            f"got {s.statement_timeout}"
        )
    if s.log_format not in {"auto", "console", "json"}:
        raise ConfigError(f"log format must be console or json, got {s.log_format!r}")
    for name in (s.live_table, s.archive_table):
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
            raise ConfigError(f"table name {name!r} must be letters, digits and _ only")
    w = s.window
    if bool(w.start) != bool(w.end):
        raise ConfigError("config keys 'window.start' and 'window.end' must be set together")
    if w.enabled:
        parse_clock(w.start, "window.start")
        parse_clock(w.end, "window.end")
    bad_days = [d for d in w.days if d.lower()[:3] not in DAY_NAMES]
    if bad_days:
        raise ConfigError(f"window.days: unknown day(s) {bad_days}; use mon, tue, … sun")
    try:
        ZoneInfo(w.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"window.timezone: unknown time zone {w.timezone!r}") from None
    key_names = {entry.rpartition(":")[0] for entry in s.serve.keys}
    unknown = [name for name in s.serve.admin_keys if name not in key_names]
    if unknown:
        raise ConfigError(
            f"serve.admin_keys: {', '.join(map(repr, unknown))} is not the name of a key in "
            "[serve] keys or ARCHIVER_API_KEYS; name the keys that may see every job"
        )
    t = s.throttle
    for replica in t.replicas:  # checked now, not between two chunks of a running job
        _validate_db(replica_settings(replica))
    if t.chunk_time_ms < 0 or t.max_threads_running < 0 or t.sleep_coef < 0:
        raise BadInput("throttle values must not be negative")
    # The job lock is held while it sleeps: a sleep of hours locks every other run out.
    if not t.sleep <= MAX_SLEEP:
        raise BadInput(
            f"--sleep (throttle.sleep) must be at most {MAX_SLEEP:g} seconds (1h), got {t.sleep:g}"
        )
    if not t.sleep_coef <= MAX_SLEEP_COEF:  # also NaN and inf, which would overflow time.sleep()
        raise BadInput(
            f"--sleep-coef (throttle.sleep_coef) must be at most {MAX_SLEEP_COEF:g}, "
            f"got {t.sleep_coef}"
        )
    return s


def _validate_db(db: DbSettings) -> None:
    """Whatever layer set them (a TOML key, the environment, astguiclient.conf, a DSN)."""
    if not db.host:
        raise ConfigError(
            "the database host is empty; set it in --dsn, ARCHIVER_DB_HOST or the config"
        )
    if not 1 <= db.port <= 65535:
        raise ConfigError(f"the database port must be 1 to 65535, got {db.port}")
    if not 1 <= db.connect_timeout <= MAX_CONNECT_TIMEOUT:
        raise ConfigError(
            f"config key 'database.connect_timeout' must be 1 to {MAX_CONNECT_TIMEOUT} seconds, "
            f"got {db.connect_timeout}"
        )


def with_overrides(s: Settings, **changes: Any) -> Settings:
    return validate(replace(s, **changes))
