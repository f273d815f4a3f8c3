"""What a run leaves for others to read: a Prometheus textfile and a vicidial_admin_log row."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import DBAPIError

from archiver.db import Db, classify_error
from archiver.errors import BadInput, NoPrivilege, NoSuchColumn, NoSuchTable
from archiver.jobtypes import Summary
from archiver.logging import get_logger

LAST_SUCCESS = "vicidial_archiver_last_success_timestamp_seconds"


def check_metrics_file(path: str) -> None:
    """Refuse a --metrics-file that cannot be written, before the job writes anything.
    prometheus_client writes a file beside it and renames that over the path, so the
    directory must take a new file, and the path must not be a directory or a device
    (/dev/full would be replaced, not written to)."""
    target = Path(path)
    if target.exists() and not target.is_file():
        raise BadInput(f"cannot write --metrics-file {path}: not a regular file")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise BadInput(f"cannot write --metrics-file {path}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def write_metrics(path: str, summary: Summary, now: float) -> None:
    """node_exporter textfile collector format, written atomically by prometheus_client."""
    registry = CollectorRegistry()
    labels = ["direction"]
    leads = Gauge(
        "vicidial_archiver_leads",
        "Leads handled by the last run, by outcome.",
        [*labels, "outcome"],
        registry=registry,
    )
    for outcome, count in sorted(summary.counts.items()):
        leads.labels(summary.direction, outcome).set(count)
    last = now if summary.state == "done" else _previous_success(path, summary.direction)
    gauges: list[tuple[str, str, float | None]] = [
        ("vicidial_archiver_chunks", "Chunks done by the last run.", summary.chunks),
        ("vicidial_archiver_duration_seconds", "Wall time of the last run.", summary.seconds),
        (
            "vicidial_archiver_rate_leads_per_second",
            "Leads per second of the last run.",
            summary.rate,
        ),
        ("vicidial_archiver_last_run_timestamp_seconds", "When the last run ended.", now),
        (
            "vicidial_archiver_last_run_success",
            "1 when the last run finished its job.",
            1 if summary.state == "done" else 0,
        ),
        (LAST_SUCCESS, "When a run last finished its job.", last),
    ]
    for name, doc, value in gauges:
        if value is not None:
            Gauge(name, doc, labels, registry=registry).labels(summary.direction).set(value)
    write_to_textfile(path, registry)


def _previous_success(path: str, direction: str) -> float | None:
    """The last success the file holds for `direction`, if any. A file that is not UTF-8
    Prometheus text (someone else's, or garbled) is replaced by this run's metrics, without
    that timestamp, and a warning says so: the job's end stands either way."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    except UnicodeDecodeError as exc:
        _unreadable(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("direction") == direction:
                    return float(sample.value)
    # The parser is prometheus_client's, on a file anyone may have written: whatever it
    # raises means the same, a file it cannot read.
    except Exception as exc:
        _unreadable(path, f"not Prometheus text ({type(exc).__name__}: {exc})"[:200])
    return None


def _unreadable(path: str, why: str) -> None:
    get_logger().warning(
        "metrics_file_replaced",
        path=path,
        reason=f"--metrics-file {path} is {why}; it is replaced by this run's metrics, "
        f"without the previous {LAST_SUCCESS}",
    )


def admin_log_row(summary: Summary, user: str) -> dict[str, str]:
    """The row VICIdial's own archive script writes, so its admin screens show the run. Its
    counts are the rows this run wrote: copies written (leads moved, and with --no-delete the
    copies refreshed) and source rows deleted. A `kept_changed` lead is not one: its copy was
    never written, or was withdrawn, or differs and was left as it was (--no-update)."""
    moved = summary.counts.get("archived" if summary.direction == "archive" else "dearchived", 0)
    copied = moved + summary.counts.get("refreshed", 0)
    if summary.direction == "archive":
        code = "CAMPAIGN LEAD ARCHIVING"
        notes = f"{copied} vicidial_list leads archived|{moved} vicidial_list leads deleted|"
    else:
        code = "CAMPAIGN LEAD DEARCHIVING"
        notes = (
            f"{copied} vicidial_list_archive leads restored|{moved} vicidial_list_archive "
            "leads deleted|"
        )
    return {
        "user": user[:20],
        "ip": _local_ip(),
        "section": "LISTS",
        "type": "MODIFY",
        "record": "leads",
        "code": code,
        "sql": f"vicidial-archiver {summary.direction} job {summary.job_id}: "
        + json.dumps(summary.plan[2:3]),
        "notes": notes,
    }


# event_date is a DATETIME in the server's local time: VICIdial writes NOW() from sessions in the
# server's default zone. This tool's session runs at +00:00, so NOW() here would be UTC.
SERVER_NOW = "CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@GLOBAL.time_zone)"


ADMIN_LOG_INSERT = (
    "INSERT INTO vicidial_admin_log (event_date, user, ip_address, event_section, event_type,"
    f" record_id, event_code, event_sql, event_notes) VALUES ({SERVER_NOW}, :user, :ip,"
    " :section, :type, :record, :code, :sql, :notes)"
)


def check_admin_log(db: Db) -> None:
    """Before the job: vicidial_admin_log exists, has the columns the row fills and takes an
    INSERT from this user. EXPLAIN checks all three as the INSERT would, and writes nothing
    (the table is MyISAM in VICIdial: a trial row could not be rolled back)."""
    params = dict.fromkeys(("user", "ip", "section", "type", "record", "code", "sql", "notes"), "")
    try:
        db.rows("EXPLAIN " + ADMIN_LOG_INSERT, params)
    except DBAPIError as exc:
        kind = classify_error(exc)
        orig = getattr(exc, "orig", None)
        text = str(orig.args[1]) if orig is not None and len(orig.args) > 1 else str(exc)
        fix = "run without --admin-log"
        if isinstance(kind, NoSuchTable):
            database = db.scalar("SELECT DATABASE()")
            raise BadInput(
                f"--admin-log: there is no table vicidial_admin_log in {database}; {fix}, or "
                "against VICIdial's database"
            ) from None
        if isinstance(kind, NoSuchColumn):
            raise BadInput(
                f"--admin-log: vicidial_admin_log cannot take the row VICIdial writes ({text}); "
                f"{fix}, or check the table"
            ) from None
        if isinstance(kind, NoPrivilege):
            raise BadInput(
                f"--admin-log: this user may not INSERT into vicidial_admin_log; grant it "
                f"(sql/grants.sql) or {fix}"
            ) from None
        raise


def write_admin_log(db: Db, summary: Summary, user: str) -> None:
    db.write(ADMIN_LOG_INSERT, admin_log_row(summary, user))


def _local_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())[:45]
    except OSError:
        return os.environ.get("HOSTNAME", "127.0.0.1")[:45]
