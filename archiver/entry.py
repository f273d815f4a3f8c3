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

    cli_main()
