"""The tables the bench prints (plain text and Markdown) and the frontier plot (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def _align(lines: list[tuple[str, ...]], left: int) -> str:
    """Columns padded to width; the first `left` columns left-aligned, the rest right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _markdown(head: tuple[str, ...], align: str, lines: list[tuple[str, ...]]) -> str:
    """A Markdown table; `align` has one letter a column: l (left) or r (right)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


# --- frontier ---------------------------------------------------------------------------------


def _frontier_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        fmt(r["rows_per_s"]),
        fmt(r["p50_ms"], ".1f"),
        fmt(r["p99_ms"], ".1f"),
        fmt(r["max_ms"], ",.0f"),
        fmt(r["rss_mb"], ".0f"),
        fmt(r["x_baseline"], ".2f"),
        fmt(r["verified"]),
        str(r["runs"]),
    )


FRONTIER_HEAD = (
    "rows/s",
    "probe p50 ms",
    "probe p99 ms",
    "probe max ms",
    "peak RSS MB",
    "× pt-archiver bulk 500",
    "verified",
    "runs",
)


def frontier_text(summary: list[dict[str, Any]]) -> str:
    head = ("engine", "tool", "setting", *FRONTIER_HEAD)
    lines = [head] + [
        (r["engine"], r["family"], r["setting"], *_frontier_cells(r)) for r in summary
    ]
    return _align(lines, 3)


def frontier_markdown(summary: list[dict[str, Any]]) -> str:
    head = ("engine", "tool", "setting", *FRONTIER_HEAD)
    lines = [(r["engine"], r["family"], f"`{r['setting']}`", *_frontier_cells(r)) for r in summary]
    return _markdown(head, "lll" + "r" * 6 + "lr", lines)


# --- scaling ----------------------------------------------------------------------------------

SCALING_HEAD = (
    "engine",
    "leads",
    "tool",
    "archived",
    "rows/s",
    "peak RSS MB",
    "chunks",
    "per chunk p50 ms",
    "first tenth ms",
    "last tenth ms",
    "last / first",
    "verified",
)


def _scaling_cells(r: dict[str, Any]) -> tuple[str, ...]:
    c = r.get("chunk") or {}
    return (
        r["engine"],
        f"{r['leads']:,}",
        r["label"],
        f"{r['rows']:,}",
        fmt(r["rows_per_s"]),
        fmt(r["peak_rss_mb"], ".0f"),
        fmt(c.get("chunks", c.get("intervals")), ","),
        fmt(c.get("p50_ms"), ".1f"),
        fmt(c.get("first_tenth_median_ms"), ".1f"),
        fmt(c.get("last_tenth_median_ms"), ".1f"),
        fmt(c.get("last_over_first"), ".2f"),
        fmt(r["verify"]["ok"]),
    )


def scaling_text(recs: list[dict[str, Any]]) -> str:
    return _align([SCALING_HEAD, *(_scaling_cells(r) for r in recs)], 3)


def scaling_markdown(recs: list[dict[str, Any]]) -> str:
    return _markdown(SCALING_HEAD, "lrl" + "r" * 8 + "l", [_scaling_cells(r) for r in recs])


# --- profile ----------------------------------------------------------------------------------


def profile_markdown(recs: list[dict[str, Any]]) -> str:
    out = []
    for r in recs:
        b = r["breakdown"]
        out.append(
            f"**{r['engine']}** — {b['chunks']} chunks, mean {b['chunk_ms_mean']} ms per "
            f"chunk, {b['statements_per_chunk']} statements per chunk; statements on "
            f"vicidial_list (MyISAM: under its table lock): "
            f"{b['live_locking_ms_per_chunk_mean']} ms per chunk; "
            f"outside SQL (Python, logging): {b['outside_sql_share']:.0%}\n"
        )
        out.append("| statement | per chunk | mean ms | p99 ms | share of chunk time |")
        out.append("|---|---:|---:|---:|---:|")
        for k, v in b["statements"].items():
            out.append(
                f"| {k} | {v['per_chunk']} | {v['mean_ms']} | {v['p99_ms']} | {v['share']:.1%} |"
            )
        out.append("")
    return "\n".join(out)


# --- the frontier plot ------------------------------------------------------------------------

STYLE = {  # kind → (marker, colour)
    "ours": ("o", "tab:blue"),
    "pt": ("s", "tab:orange"),
    "exp": ("^", "tab:green"),
    "vicidial": ("X", "tab:red"),
}


def frontier_png(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """rows/s against the dialer probe's p99, one marker per tool and setting, one panel per
    engine; the probe's p99 with no tool running as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")

    engines = list(dict.fromkeys(r["engine"] for r in summary))
    fig, axes = plt.subplots(1, len(engines), figsize=(6.5 * len(engines), 5.2), squeeze=False)
    for ax, engine in zip(axes[0], engines, strict=True):
        rows = [r for r in summary if r["engine"] == engine]
        seen: set[str] = set()
        for r in rows:
            if r["kind"] == "idle":
                if r["p99_ms"]:
                    ax.axvline(r["p99_ms"], color="grey", linestyle=":", linewidth=1)
                    ax.annotate(
                        "probe alone",
                        (r["p99_ms"], 0.02),
                        xycoords=("data", "axes fraction"),
                        rotation=90,
                        color="grey",
                        fontsize=8,
                        xytext=(3, 0),
                        textcoords="offset points",
                    )
                continue
            if r["p99_ms"] is None or r["rows_per_s"] is None:
                continue
            marker, colour = STYLE.get(r["kind"], ("D", "tab:purple"))
            family = r["family"]
            ax.scatter(
                r["p99_ms"],
                r["rows_per_s"],
                marker=marker,
                color=colour,
                s=55,
                edgecolors="black" if r["verified"] else "red",
                linewidths=0.6,
                label=None if family in seen else family,
                zorder=3,
            )
            seen.add(family)
            ax.annotate(
                r["setting"],
                (r["p99_ms"], r["rows_per_s"]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=7.5,
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_title(engine)
        ax.set_xlabel("dialer probe p99 latency, ms (log) — lower is better")
        ax.set_ylabel("rows archived per second — higher is better")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
