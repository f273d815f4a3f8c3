"""One chunk's statements as a person reads them: the human output of a dry run.

Owns: pure functions over SQL text that shorten what repeats once per lead or per column, keeping
the first item of each list and saying how many were left out. Must not be applied to SQL that
runs, nor to `--json` output, which keeps every statement whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ELLIPSIS = "…"
_IDS = re.compile(r"IN \(((?:\d+, )+\d+)\)")
# List separators, and the clause keywords that end a list (`SELECT a, b FROM …`).
_SEP = re.compile(r",\s*|\s+AND\s+|\b(?:SELECT|FROM|WHERE|SET|VALUES|ON|JOIN)\b")
_QUOTES = "'`\""


def shorten_ids(stmt: str, keep: int = 6) -> str:
    """`IN (9, 14, 29, …, 7094 /* 500 ids */)`: an id list longer than `keep` shows its first
    three ids, its last one and its length."""

    def short(m: re.Match[str]) -> str:
        ids = m.group(1).split(", ")
        if len(ids) <= keep:
            return m.group(0)
        return f"IN ({', '.join(ids[:3])}, {ELLIPSIS}, {ids[-1]} /* {len(ids)} ids */)"

    return _IDS.sub(short, stmt)


# --- column lists ------------------------------------------------------------------------------

Node = tuple[str, "str | list[Node]"]  # ("text" | "quoted", text) or ("group", children)


def _parse(sql: str) -> list[Node] | None:
    """Text, quoted tokens ('…', `…`, "…" with doubled quotes inside) and parenthesised groups;
    None when quotes or parentheses do not balance (the text is then shown as it is)."""
    stack: list[list[Node]] = [[]]
    i, text = 0, list[str]()
    while i < len(sql):
        c = sql[i]
        if c in _QUOTES + "()" and text:
            stack[-1].append(("text", "".join(text)))
            text = []
        if c in _QUOTES:
            j = i + 1
            while True:
                j = sql.find(c, j)
                if j < 0:
                    return None
                if sql[j + 1 : j + 2] != c:
                    break
                j += 2
            stack[-1].append(("quoted", sql[i : j + 1]))
            i = j + 1
            continue
        if c == "(":
            stack.append([])
        elif c == ")":
            if len(stack) == 1:
                return None
            children = stack.pop()
            stack[-1].append(("group", children))
        else:
            text.append(c)
        i += 1
    if text:
        stack[-1].append(("text", "".join(text)))
    return stack[0] if len(stack) == 1 else None


_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


@dataclass
class _Item:
    parts: list[str] = field(default_factory=list)  # as shown
    raw: list[str] = field(default_factory=list)  # as written

    def add(self, shown: str, raw: str | None = None) -> None:
        self.parts.append(shown)
        self.raw.append(shown if raw is None else raw)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def key(self) -> str | None:
        """What it says before its first column name, literals as '?'; None: it names none."""
        raw = _LITERAL.sub("?", "".join(self.raw))
        at = raw.find("`")
        return None if at < 0 else " ".join(raw[:at].split())


def _raw(nodes: list[Node]) -> str:
    return "".join(f"({_raw(v)})" if isinstance(v, list) else v for _, v in nodes)


@dataclass
class _Elider:
    min_run: int
    deep: int
    deep_len: int

    def seq(self, nodes: list[Node], depth: int) -> str:
        items, seps = self._split(nodes, depth)
        out: list[str] = []
        i = 0
        while i < len(items):
            j = self._run_end(items, seps, i)
            if j - i + 1 >= self.min_run:
                joint = ", " if seps[i].startswith(",") else " AND "
                last = items[j].text
                trailing = last[len(last.rstrip()) :]
                out.append(f"{items[i].text.rstrip()}{joint}{ELLIPSIS} {j - i} more{trailing}")
            else:
                out.append(items[i].text)
                j = i
            if j < len(seps):
                out.append(seps[j])
            i = j + 1
        return "".join(out)

    def _split(self, nodes: list[Node], depth: int) -> tuple[list[_Item], list[str]]:
        items, seps = [_Item()], []
        for kind, value in nodes:
            if kind == "group":
                assert isinstance(value, list)
                items[-1].add(self.group(value, depth + 1), f"({_raw(value)})")
                continue
            assert isinstance(value, str)
            if kind == "quoted":
                items[-1].add(value)
                continue
            at = 0
            for m in _SEP.finditer(value):
                items[-1].add(value[at : m.start()])
                seps.append(m.group(0))
                items.append(_Item())
                at = m.end()
            items[-1].add(value[at:])
        return items, seps

    def _run_end(self, items: list[_Item], seps: list[str], i: int) -> int:
        """The last item of the run of like items that starts at i (i itself when none)."""
        key, j = items[i].key, i
        if key is None:
            return i
        kind = seps[i].strip() if i < len(seps) else ""
        while (
            j + 1 < len(items)
            and kind in (",", "AND")
            and seps[j].strip() == kind
            and items[j + 1].key == key
        ):
            j += 1
        return j

    def group(self, children: list[Node], depth: int) -> str:
        if depth >= self.deep and len(_raw(children)) > self.deep_len:
            return f"({ELLIPSIS})"
        return f"({self.seq(children, depth)})"


def elide_columns(stmt: str, min_run: int = 3, deep: int = 4, deep_len: int = 60) -> str:
    """A list of `min_run` or more like items (each begins the same way up to its first column
    name: `a`, `b` · s.`a`, s.`b` · d.`a` = s.`a` · CAST(s.`a` …) <=> … AND …) shows its first
    item and how many follow: `(`lead_id`, … 34 more)`. An item naming no column (a literal such
    as `--reset-called`'s 'N') ends a run and is shown. A parenthesised group nested `deep`
    levels down and longer than `deep_len` characters shows as `(…)`."""
    nodes = _parse(stmt)
    if nodes is None:
        return stmt
    return _Elider(min_run, deep, deep_len).seq(nodes, 0)


def wrap(stmt: str, width: int = 120) -> str:
    """A line longer than `width` is broken before each ` AND ` outside parentheses, then what is
    still too long after each `, ` outside parentheses, then before ` FROM ` (a subquery's)."""
    lines = stmt.split("\n")
    for word, top in ((" AND ", True), (", ", True), (" FROM ", False)):
        lines = [piece for line in lines for piece in _cut(line, word, width, top)]
    return "\n".join(lines)


def _cut(line: str, word: str, width: int, top: bool) -> list[str]:
    if len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip())]
    same = word == " AND " and line.lstrip().startswith("AND ")
    more = lead if same else lead + ("  " if top else "    ")
    at = word.index(" ")  # the space the line is broken at
    cuts, depth, quote = [], 0, ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in _QUOTES:
            quote = c
        elif c in "()":
            depth += 1 if c == "(" else -1
        elif (depth == 0 or not top) and i > len(lead) and line.startswith(word, i):
            cuts.append(i + at)
    bounds = zip([0, *cuts], [*cuts, len(line)], strict=True)
    return [line[a:b] if a == 0 else more + line[a + 1 : b] for a, b in bounds]


def for_humans(statements: list[str]) -> list[str]:
    """A chunk's statements, each shortened as above, ending in ';'. Statements that differ
    from the one before only in their id lists (MyISAM's delete in batches) become one comment
    line saying how many followed."""
    out: list[str] = []
    shape, like = "", 0
    for stmt in statements:
        this = _IDS.sub("IN (…)", stmt)
        if out and this == shape:
            like += 1
            continue
        if like:
            out.append(_like(like))
        shape, like = this, 0
        out.append(wrap(elide_columns(shorten_ids(stmt))) + ";")
    if like:
        out.append(_like(like))
    return out


def _like(n: int) -> str:
    return f"-- {n} more like the one above, each on the chunk's next ids"
