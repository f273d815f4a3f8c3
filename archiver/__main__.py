from __future__ import annotations

from archiver.entry import main

main()
