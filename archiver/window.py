"""The off-hours window: when archive and dearchive may run."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from archiver.config import DAY_NAMES, WindowSettings


def _clock(text: str) -> time:
    return time.fromisoformat(text)


def is_open(w: WindowSettings, now: datetime | None = None) -> bool:
    """True when `now` is inside the window. A window that crosses midnight (20:00–06:00)
    belongs to the day it starts on: Friday's window runs into Saturday morning."""
    if not w.enabled:
        return True
    local = (now or datetime.now(ZoneInfo("UTC"))).astimezone(ZoneInfo(w.timezone))
    start, end, t = _clock(w.start), _clock(w.end), local.time().replace(tzinfo=None)
    days = {d.lower()[:3] for d in w.days}
    today = DAY_NAMES[local.weekday()]
    yesterday = DAY_NAMES[(local.weekday() - 1) % 7]
    if start < end:
        return today in days and start <= t < end
    if t >= start:
        return today in days
    return t < end and yesterday in days


def describe(w: WindowSettings) -> str:
    days = ",".join(w.days) if set(w.days) != set(DAY_NAMES) else "every day"
    return f"{w.start}–{w.end} {w.timezone}, {days}"
