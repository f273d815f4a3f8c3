"""`--help` that teaches: every command ends with real examples that parse, and the exit codes
are listed the same in `--help` and README."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from archiver.cli import cli
from archiver.errors import EXIT_CODES, REPORT_EXIT_CODE
from tests.support.cli import invoke

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_YET: set[str] = set()


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        assert sub is not None
        if isinstance(sub, click.Group):
            yield from commands(sub, (*path, name))
        else:
            yield (*path, name)


def examples(help_text: str) -> list[str]:
    """The lines of the `Examples:` block: indented, each a `vicidial-archiver …` command."""
    lines = help_text.splitlines()
    start = lines.index("  Examples:")  # ValueError: no block
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("    vicidial-archiver "):
            break
        block.append(line.strip())
    return block


def parse(example: str) -> tuple[str, ...]:
    """Parse one example the way the command line would, without running anything: each
    group's options, then the command's own (types converted, arguments counted). Returns
    the command's path."""
    argv = shlex.split(example)
    for i, word in enumerate(argv):  # the shell's part: a redirection or a pipe
        if word in {">", ">>", "|", "2>&1"}:
            argv = argv[:i]
            break
    assert argv[0] == "vicidial-archiver"
    command: click.Command = cli
    ctx = cli.make_context("vicidial-archiver", argv[1:])
    path: list[str] = []
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, args = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None, example
        path.append(name)
        command = sub
        ctx = sub.make_context(name, args, parent=ctx)
    return tuple(path)


@pytest.mark.parametrize("path", [p for p in commands() if p[-1] not in NOT_YET], ids=" ".join)
def test_every_command_help_ends_with_examples_that_parse(path: tuple[str, ...]) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    found = examples(result.output)
    assert 2 <= len(found) <= 3, result.output
    for example in found:
        assert parse(example) == path, example


def test_an_example_that_does_not_parse_is_caught() -> None:
    # The check above can fail: a wrong option, a wrong value type, a missing argument.
    for wrong in (
        "vicidial-archiver jobs list --limt 3",
        "vicidial-archiver jobs list --limit many",
        "vicidial-archiver jobs show",
        "vicidial-archiver demo --engine Aria",
    ):
        with pytest.raises(click.UsageError):
            parse(wrong)
    with pytest.raises(ValueError):
        examples("Usage: x\n\nOptions:\n  --help")


def test_exit_codes_are_listed_the_same_in_help_and_readme() -> None:
    text = invoke(["--help"]).output
    readme = README.read_text(encoding="utf-8")
    for code, words in EXIT_CODES:
        assert f"\n    {code}  {words}\n" in text, text
        assert f"\n- `{code}` {words}\n" in readme
    assert f"\n    {REPORT_EXIT_CODE}" in text
    assert f"\n- {REPORT_EXIT_CODE}\n" in readme
    # One list in README: no other line there defines an exit code.
    listed = re.findall(r"^- `(\d)` ", readme, flags=re.M)
    assert sorted(listed) == sorted(str(c) for c, _ in EXIT_CODES)
