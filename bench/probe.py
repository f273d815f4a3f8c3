"""The dialer probe: a separate process that, every few milliseconds, does what a VICIdial
dialer does to vicidial_list between calls, on leads that are NOT being archived:

- a point UPDATE (`called_count = called_count + 1 WHERE lead_id = ?`), which on MyISAM needs
  the table write lock, and
- a phone lookup (`SELECT lead_id … WHERE phone_number = ?`), which needs the read lock,

and records the latency of each statement. A long table lock held by the archiving tool shows
up as a probe stall; the longest one is the "max" column of the table.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bench.db import LIVE, Server, rows


@dataclass
class ProbeResult:
    """Samples as (start monotonic seconds, kind, ms, ok)."""

    samples: list[tuple[float, str, float, bool]] = field(default_factory=list)

    def window(self, start: float, end: float) -> list[tuple[float, str, float, bool]]:
        return [s for s in self.samples if start <= s[0] <= end]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def stats(samples: list[tuple[float, str, float, bool]]) -> dict[str, Any]:
    """p50 / p99 / max over all probe statements, and per kind."""

    def summarize(ms: list[float]) -> dict[str, Any]:
        return {
            "n": len(ms),
            "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else 0.0,
        }

    out = summarize([s[2] for s in samples])
    out["errors"] = sum(1 for s in samples if not s[3])
    for kind in ("update", "select"):
        out[kind] = summarize([s[2] for s in samples if s[1] == kind])
    return out


def pick_targets(
    server: Server, database: str, where: str, leads: int, n: int = 4000, seed: int = 7
) -> list[tuple[int, str]]:
    """(lead_id, phone_number) of random leads outside the selection."""
    rng = random.Random(seed)
    conn = server.connect(database)
    try:
        found: list[tuple[int, str]] = []
        for _ in range(20):
            ids = sorted({rng.randint(1, leads) for _ in range(n)})
            placeholders = ", ".join(["%s"] * len(ids))
            found += [
                (int(r[0]), str(r[1]))
                for r in rows(
                    conn,
                    f"SELECT lead_id, phone_number FROM `{LIVE}` WHERE lead_id IN ({placeholders})"
                    f" AND NOT ({where})",
                    ids,
                )
            ]
            if len(found) >= n // 2:
                break
        if not found:
            raise SystemExit(f"no lead outside the selection ({where}) for the probe to touch")
        return found
    finally:
        conn.close()


def _loop(
    server: Server,
    database: str,
    targets: list[tuple[int, str]],
    interval: float,
    stop: Any,
    ready: Any,
    out: Any,
) -> None:
    rng = random.Random(11)
    conn = server.connect(database)
    samples: list[tuple[float, str, float, bool]] = []
    cur = conn.cursor()
    ready.set()
    nxt = time.monotonic()
    while not stop.is_set():
        lead, phone = rng.choice(targets)
        for kind, sql, arg in (
            (
                "update",
                f"UPDATE `{LIVE}` SET called_count = called_count + 1 WHERE lead_id = %s",
                lead,
            ),
            ("select", f"SELECT lead_id FROM `{LIVE}` WHERE phone_number = %s", phone),
        ):
            t0 = time.monotonic()
            ok = True
            try:
                cur.execute(sql, (arg,))
                cur.fetchall()
            except Exception:  # a lock wait timeout is a (very long) sample, not a crash
                ok = False
                try:
                    conn.ping(reconnect=True)
                    cur = conn.cursor()
                except Exception:
                    time.sleep(0.05)
            samples.append((t0, kind, (time.monotonic() - t0) * 1000, ok))
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()  # behind after a stall: carry on, do not burst
    out.send(samples)
    out.close()
    conn.close()


class Probe:
    """Run the probe loop in a child process between start() and stop()."""

    def __init__(
        self,
        server: Server,
        database: str,
        targets: list[tuple[int, str]],
        interval_ms: float = 5.0,
    ) -> None:
        ctx = mp.get_context("fork")
        self.stop_ev = ctx.Event()
        ready = ctx.Event()
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_loop,
            args=(server, database, targets, interval_ms / 1000, self.stop_ev, ready, send),
            daemon=True,
        )
        self.ready = ready

    def start(self) -> Probe:
        self.proc.start()
        if not self.ready.wait(30):
            raise RuntimeError("the dialer probe did not connect within 30 s")
        return self

    def stop(self) -> ProbeResult:
        self.stop_ev.set()
        samples = self.recv.recv() if self.recv.poll(600) else []
        self.proc.join(30)
        return ProbeResult(samples)
