"""`--set a.b.c=value` overrides: parsed as YAML (bounded like a config file) and merged into
the raw config before it is validated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnctl.config.yaml_io import parse_yaml
from cnnctl.core.errors import ConfigError

MAX_SET_BYTES = 64 << 10  # one --set KEY=VALUE item


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a", "b", "c"], YAML-typed value), bounded like a config file."""
    key, sep, raw = item.partition("=")
    try:
        size = len(item.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes on the command line (surrogate-escaped)
        shown = item.encode("utf-8", "surrogateescape")
        raise ConfigError(f"--set {shown!r}: not valid UTF-8 text; write the override in UTF-8") from None
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {item[:80]!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=3")
    if size > MAX_SET_BYTES:
        raise ConfigError(
            f"--set {key.strip()[:80]}: the override is {size:,} bytes; one value is at most "
            f"{MAX_SET_BYTES:,} bytes (put bulk settings in the config file)"
        )
    return parts, parse_yaml(raw, f"--set {key.strip()}") if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b=c` override set (creating sections as needed)."""
    result: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
