"""The process title: a password given in --dsn is masked there before anything else runs.

Imported by the console script's entry before the CLI and its heavy imports (SQLAlchemy,
click, structlog), so the password shows in `ps` and /proc/PID/cmdline only for the moment
the interpreter takes to start. Nothing here imports more than the standard library (and
setproctitle, when there is something to mask).
"""

from __future__ import annotations


def mask_dsn(text: str, *, is_dsn: bool = False) -> str:
    """`text` with the password of a DSN in it replaced by ***, however the password is
    written: everything between the user's ':' and the last '@'. With `is_dsn`, a value that
    is not even a URL keeps only what follows its last '@'."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        _, at, tail = text.rpartition("@")
        return f"***@{tail}" if is_dsn and at else text
    userinfo, at, location = rest.rpartition("@")
    if not at:
        return text
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{location}"


def masked_argv(argv: list[str]) -> list[str]:
    """The arguments with every DSN's password masked, however it is written (spaces, tabs,
    '@', ':', %-escapes): the value of `--dsn X` and `--dsn=X`, and any argument that holds a
    URL with user-info, wherever it stands."""
    out: list[str] = []
    after_dsn = False
    for arg in argv:
        if after_dsn:
            out.append(mask_dsn(arg, is_dsn=True))
        elif arg.startswith("--dsn="):
            out.append("--dsn=" + mask_dsn(arg[len("--dsn=") :], is_dsn=True))
        else:
            out.append(mask_dsn(arg))
        after_dsn = arg == "--dsn"
    return out


def hide_password_in_process_title(argv: list[str]) -> None:
    """`ps` shows the command line: a password given in --dsn is masked there at once (still,
    prefer ARCHIVER_DB_PASSWORD, which never reaches the command line)."""
    masked = masked_argv(argv)
    if masked != argv:
        import setproctitle

        title = " ".join(["vicidial-archiver", *masked[1:]])
        # Bytes that were not UTF-8 come as surrogates, which the title cannot hold (the CLI
        # refuses such an argument next; the title only must not fail first).
        title = title.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        setproctitle.setproctitle(title)
