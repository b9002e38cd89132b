"""Docs that are generated from code must match it."""

from __future__ import annotations

from pathlib import Path

from cnnctl.config.docs import render

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_generated_from_the_schema() -> None:
    actual = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert actual == render(), "docs/config.md is stale: run `python -m cnnctl.config.docs > docs/config.md`"


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
