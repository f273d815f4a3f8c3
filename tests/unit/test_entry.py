"""The console script's entry masks a --dsn password in the process title before it imports
the CLI (SQLAlchemy, click, structlog: most of a second during which /proc/PID/cmdline showed
the password). Each check runs in a fresh interpreter; no database."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("click", "sqlalchemy", "structlog", "pymysql", "archiver.cli", "archiver.config")

# Loads the installed console script's target the way its wrapper does, with a spy that reads
# /proc/self/cmdline the moment any heavy module starts to be imported.
SPY = f"""
import importlib.abc, importlib.metadata, sys
HEAVY = {HEAVY!r}
seen = {{}}
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in HEAVY and name not in seen:
            with open("/proc/self/cmdline", "rb") as fh:
                seen[name] = fh.read()
        return None
sys.meta_path.insert(0, Spy())
sys.argv[0] = "vicidial-archiver"
(ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
         if e.name == "vicidial-archiver"]
main = ep.load()
try:
    main()
except SystemExit:
    pass
for name, cmdline in seen.items():
    print(name, repr(cmdline), file=sys.stderr)
"""


def _run(*args: bytes) -> str:
    p = subprocess.run(
        [sys.executable.encode(), b"-c", SPY.encode(), *args],
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "ARCHIVER_CONFIG": ""},
    )
    return p.stderr.decode("utf-8", "replace")


def test_title_is_masked_before_any_heavy_import() -> None:
    out = _run(b"--dsn", b"mysql://root:Top Secret9@127.0.0.1:1/db", b"--version")
    spied = [line for line in out.splitlines() if line.split(" ", 1)[0] in HEAVY]
    assert any(line.startswith("click ") for line in spied), out  # the CLI was loaded
    for line in spied:
        assert "Secret9" not in line, line
        assert "mysql://root:***@127.0.0.1:1/db" in line, line


def test_title_with_bytes_not_utf8_does_not_fail_before_the_refusal() -> None:
    out = _run(b"--dsn", b"mysql://root:Top Secret9@127.0.0.1:1/db", b"jobs", b"show", b"\xff")
    assert "Traceback" not in out, out
    assert "Error: argument 5 is not valid UTF-8 text; give every argument as UTF-8" in out
    assert "Secret9" not in out


def test_entry_and_proctitle_import_nothing_heavy() -> None:
    code = (
        "import sys, archiver.entry, archiver.proctitle\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr


# The CLI's main replaced by one that fails as nothing the CLI knows would.
FAILING = """
import sys
import archiver.cli
def boom():
    raise RuntimeError("a server said\\x1b[2J something odd")
archiver.cli.main = boom
from archiver.entry import main
sys.argv = ["vicidial-archiver", *sys.argv[1:]]
main()
"""


def test_what_escapes_the_cli_is_one_error_line_and_exit_1() -> None:
    """Issue 21, finding 14: no traceback for anything outside the tool can cause; --debug
    shows it."""
    p = subprocess.run(
        [sys.executable, "-c", FAILING, "jobs", "list"], capture_output=True, text=True
    )
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "Error: unexpected error (RuntimeError: a server said?[2J something odd); run again "
        "with --debug for the traceback"
    ]

    p = subprocess.run(
        [sys.executable, "-c", FAILING, "--debug", "jobs", "list"], capture_output=True, text=True
    )
    assert p.returncode == 1
    assert "Traceback" in p.stderr and p.stderr.rstrip().endswith("something odd")
