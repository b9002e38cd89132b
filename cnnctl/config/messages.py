"""A pydantic ValidationError → one line per distinct problem, each naming its dotted path
and what is allowed (`c.yaml: data.batch_size: got 0; batch_size must be 1-65536 (or auto)`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from cnnctl.config.base import KeyError_, models_in, short_repr
from cnnctl.config.run import RunConfig

MAX_ERROR_LINES = 20  # one line per problem, at most this many


def _section_for(loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, list[str], bool]:
    """Split a pydantic error location into (field path, model owning the last key, rest,
    whether the location went into a union member that is a section)."""
    model: type[BaseModel] | None = RunConfig
    candidates: list[type[BaseModel]] = []
    path: list[str] = []
    via_member = False
    for i, part in enumerate(loc):
        member = next(
            (c for c in candidates if isinstance(part, str) and re.search(rf"\b{c.__name__}\b", part)),
            None,
        )
        if member is not None:
            model, via_member = member, True
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return path, model, [str(p) for p in loc[i:]], via_member
        path.append(part)
        candidates = models_in(model.model_fields[part].annotation)
        model = candidates[0] if len(candidates) == 1 else None
    return path, model, [], via_member


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per distinct problem: `source: dotted.path: what is wrong (allowed ...)`."""
    lines: dict[str, tuple[str, bool]] = {}
    for item in err.errors():
        path, owner, rest, via_member = _section_for(item["loc"])
        kind = item["type"]
        # A union member that is a section only speaks for inputs that are mappings.
        via_member = via_member and kind not in ("model_type", "dict_type", "model_attributes_type")
        error = item.get("ctx", {}).get("error")
        if kind == "extra_forbidden" and owner is not None and rest:
            dotted = ".".join([*path, rest[0]])
            message = f"unknown key; allowed keys here: {', '.join(owner.model_fields)}"
        elif kind == "value_error" and isinstance(error, KeyError_):
            dotted = ".".join([*path, error.key])
            message = str(error)
        else:
            dotted = ".".join(path) or "(top level)"
            message = _describe(item, path)
        # For a union such as `'auto' | {mean, std}`, a mapping's own errors beat "not 'auto'".
        if dotted not in lines or (via_member and not lines[dotted][1]):
            lines[dotted] = (f"{source}: {dotted}: {message}", via_member)
    member_paths = [d for d, (_, via) in lines.items() if via]
    shown = [
        line
        for dotted, (line, via) in lines.items()
        if via or not any(m == dotted or m.startswith(dotted + ".") for m in member_paths)
    ]
    if len(shown) > MAX_ERROR_LINES:
        shown = [*shown[:MAX_ERROR_LINES], f"{source}: ... and {len(shown) - MAX_ERROR_LINES} more problems"]
    return "\n".join(shown)


def _describe(item: Any, path: list[str]) -> str:
    kind = item["type"]
    given = item.get("input")
    if kind == "value_error":
        return str(item["ctx"]["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of keys, got {short_repr(given)}"
    if kind == "literal_error":
        return f"got {short_repr(given)}; allowed: {item['ctx']['expected']}"
    field = _field_info(path)
    expected = field.description if field is not None else None
    shown = f"got {short_repr(given)}" if not isinstance(given, dict) else "got a mapping"
    hint = f"; expected: {expected}" if expected else ""
    return f"{item['msg'].lower()} ({shown}){hint}"


def _field_info(path: list[str]) -> Any:
    model: Any = RunConfig
    field = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = next(
            (t for t in (field.annotation, *get_args(field.annotation)) if isinstance(t, type)), None
        )
    return field
