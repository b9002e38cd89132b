"""What every config section shares: the strict `Section` base, `KeyError_` (a check about one
key), and the small helpers sections use to describe values and ranges.

A section refuses unknown keys (`extra="forbid"`), does not coerce between types
(`strict=True`), is frozen, and refuses a key that does not apply to its selector's choice
(`data.label_column` with `data.source: synthetic`).
"""

from __future__ import annotations

from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, model_validator

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True, allow_inf_nan=False)


def short_repr(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def allowed_range(text: str) -> dict[str, Any]:
    """json_schema_extra for a key whose range a validator checks (shown in docs/config.md)."""
    return {"allowed": text}


def plain_data(value: Any) -> Any:
    """A field's value as plain data: a model as its JSON-ready dict, lists element-wise."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    return value


class KeyError_(ValueError):  # noqa: N801 - a ValueError that knows its key
    """A section-level check that is about one key: the message names `section.key`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """Base for config sections: strict, frozen, unknown keys refused."""

    model_config = _STRICT

    # key → the values of the selector field (e.g. data.source) for which the key applies.
    applies_to: ClassVar[dict[str, tuple[str, ...]]] = {}
    selector: ClassVar[str] = ""

    def family(self) -> str | None:
        """The value `applies_to` is keyed on (the selector's value, or its family)."""
        return getattr(self, self.selector, None) if self.selector else None

    def to_plain(self) -> dict[str, Any]:
        """This section as plain data, without keys that do not apply to its choice."""
        choice = self.family()
        plain: dict[str, Any] = {}
        for key in type(self).model_fields:
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                continue
            value = getattr(self, key)
            plain[key] = value.to_plain() if isinstance(value, Section) else plain_data(value)
        return plain

    @model_validator(mode="after")
    def _keys_apply(self) -> Section:
        choice = self.family()
        for key in sorted(self.model_fields_set):
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                raise KeyError_(
                    key,
                    f"does not apply to {self.selector} '{getattr(self, self.selector)}' "
                    f"(only to: {', '.join(allowed)}); remove it",
                )
        return self


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel types an annotation may hold (directly or as a union member)."""
    return [
        t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)
    ]
