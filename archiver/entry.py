"""The console script's entry: mask the password in the process title, then load the CLI.

Only the standard library and archiver.proctitle are imported before the title is masked;
the CLI (SQLAlchemy, click, structlog: most of a second to import) comes after.
"""

from __future__ import annotations

import sys


def main() -> None:
    from archiver.proctitle import hide_password_in_process_title

    hide_password_in_process_title(sys.argv)
    from archiver.cli import main as cli_main

    try:
        cli_main()
    except Exception as exc:
        # The CLI maps every error it knows to one `Error:` line; what escapes it still gets
        # one (a server or a file can provoke what nobody foresaw), the traceback with --debug.
        if "--debug" in sys.argv[1:]:
            raise
        why = "".join(c if c.isprintable() else "?" for c in f"{type(exc).__name__}: {exc}")
        print(
            f"Error: unexpected error ({why[:300]}); run again with --debug for the traceback",
            file=sys.stderr,
        )
        sys.exit(1)
