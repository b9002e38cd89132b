"""Every config key is shown in at least one example config (the configs are the manual)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cnnctl.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type can hold (through unions, Optional, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        for inner in _models_in(field.annotation):
            keys |= schema_keys(inner, path + ".")
    return keys


def shown_keys(value: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            keys.add(f"{prefix}{key}")
            keys |= shown_keys(inner, f"{prefix}{key}.")
    return keys


def test_every_key_appears_in_an_example_config() -> None:
    shown: set[str] = set()
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        shown |= shown_keys(yaml.safe_load(path.read_text()))
    missing = sorted(schema_keys(RunConfig) - shown)
    assert not missing, f"keys no example config shows: {missing}"
