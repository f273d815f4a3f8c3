"""The benchmark harness `make bench` runs (`python -m bench`): vicidial-archiver against
pt-archiver with a dialer probe beside each run. See bench/README.md."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)
