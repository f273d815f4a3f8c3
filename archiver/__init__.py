"""vicidial-archiver: move VICIdial leads between vicidial_list and its archive, verified."""

from __future__ import annotations

__version__ = "0.1.0"
