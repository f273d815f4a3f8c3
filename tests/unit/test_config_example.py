"""config.example.toml is valid and shows every setting the code knows."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from archiver import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_loads_to_the_defaults() -> None:
    loaded = config.load_settings(config_path=str(EXAMPLE), env={})
    assert loaded == config.Settings()


def test_example_lists_every_setting() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    for section, (attr, cls) in config._SECTIONS.items():
        names = config._TOP_KEYS if attr is None else {f.name for f in fields(cls)}
        for name in names:
            present = name in data.get(section, {}) or f"# {name} =" in text
            assert present, f"[{section}] {name} missing from config.example.toml"
