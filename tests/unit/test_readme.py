"""README documents every config key, and its Quickstart has exactly the two commands CI and users run."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from lib.ops.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def config_keys() -> list[str]:
    keys = []
    hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        if section.name == "base_dir":
            continue
        keys += [f"{section.name}.{field.name}" for field in dataclasses.fields(hints[section.name])]
    return keys


def test_every_config_key_is_documented() -> None:
    missing = [key for key in config_keys() if f"`{key}`" not in README]
    assert not missing, f"README does not document: {missing}"


def test_quickstart_has_the_two_commands_ci_runs() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(bash scripts/dev\.sh \w+)", quickstart, flags=re.MULTILINE)
    assert commands == ["bash scripts/dev.sh pipeline", "bash scripts/dev.sh test"]
    assert "bash scripts/dev.sh test" in (REPO_ROOT / ".ci" / "run").read_text()
