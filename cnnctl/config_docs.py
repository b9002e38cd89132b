"""docs/config.md, generated from the config schema so the reference cannot drift.

`python -m cnnctl.config_docs > docs/config.md` rewrites it; a test fails when it is stale.
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cnnctl.config import RunConfig, Section

INTRO = """# Config reference

Generated from the schema in `cnnctl/config.py` (`python -m cnnctl.config_docs > docs/config.md`);
a test fails if this page and the code disagree.

A config is a YAML mapping of sections. Every key is optional; unknown keys, keys of the
wrong type and keys that do not apply to the chosen source / model / optimizer are refused
with the dotted path and what is allowed. `cnnctl config show CONFIG` prints the resolved
config with every default filled in; `--set section.key=value` overrides any key (values are
read as YAML: `--set train.epochs=3`, `--set data.augment.hflip=true`).

Relative paths (`data.root`, `data.train`, ...) are relative to the working directory and are
stored absolute in the run's `config.yaml`.
"""


def type_name(annotation: Any) -> str:
    """A short human name for a field's type."""
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) if isinstance(a, str) else str(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in get_args(annotation))
    if origin is list:
        return f"list[{type_name(get_args(annotation)[0])}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (
            "mapping" if issubclass(annotation, Section) and annotation.model_fields else annotation.__name__
        )
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def section_rows(model: type[Section], prefix: str, leaves_only: bool = False) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if leaves_only and holds_section(field):
            continue
        applies = model.applies_to.get(name)
        scope = f" *({model.selector}: {', '.join(applies)})*" if applies else ""
        description = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{prefix}{name}` | {type_name(field.annotation)} | {default_text(field)} | {description}{scope} |"
        )
    return rows


def nested_sections(model: type[Section]) -> list[tuple[str, type[Section]]]:
    found = []
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, Section):
                found.append((name, candidate))
    return found


def render() -> str:
    parts = [INTRO]
    parts.append("## Top level\n\n| key | type | default | meaning |\n|---|---|---|---|")
    parts += section_rows(RunConfig, "", leaves_only=True)
    for name, section in nested_sections(RunConfig):
        parts.append(f"\n## `{name}`\n\n{(section.__doc__ or '').strip()}\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        parts += section_rows(section, f"{name}.")
        for sub_name, sub in nested_sections(section):
            parts.append(f"\n### `{name}.{sub_name}`\n\n{(sub.__doc__ or '').strip()}\n")
            parts.append("| key | type | default | meaning |\n|---|---|---|---|")
            parts += section_rows(sub, f"{name}.{sub_name}.")
    return "\n".join(parts) + "\n"


def holds_section(field: Any) -> bool:
    return any(
        isinstance(c, type) and issubclass(c, Section)
        for c in (field.annotation, *get_args(field.annotation))
    )


if __name__ == "__main__":
    print(render(), end="")
