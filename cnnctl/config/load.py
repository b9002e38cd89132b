"""Loading a run's config: file (or a stored base) + overrides → a validated `RunConfig`, and
back to YAML text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from cnnctl.config.data import SMALLEST_CONFIG, DataSource
from cnnctl.config.messages import format_validation_error
from cnnctl.config.overrides import apply_overrides
from cnnctl.config.run import RunConfig
from cnnctl.config.yaml_io import read_config_file
from cnnctl.core.errors import ConfigError


def require_data(raw: Mapping[str, Any], source: str, empty: bool = False) -> None:
    """A config must name its data: no section, or no data.source, is an error, never the
    generated-shapes demo by default."""
    data = raw.get("data")
    if isinstance(data, Mapping) and "source" in data:
        return
    if data is not None and not isinstance(data, Mapping):
        return  # not a mapping: validation says so
    why = (
        "the config is empty"
        if empty
        else "no data section"
        if "data" not in raw
        else "data is empty"
        if data is None
        else "data names no source"
    )
    sources = ", ".join(get_args(DataSource))
    raise ConfigError(
        f"{source}: data.source: missing ({why}); a config must name its data, e.g. the smallest "
        f"valid config is `{SMALLEST_CONFIG}` (sources: {sources})"
    )


def validate(raw: Mapping[str, Any], source: str = "config") -> RunConfig:
    """Validate plain data into a RunConfig; errors become one ConfigError per problem."""
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except RecursionError:  # not reachable from YAML within MAX_YAML_DEPTH
        raise ConfigError(f"{source}: the config is nested too deeply to validate") from None


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load a config file (or start from `base`), apply overrides, validate.

    A file (or, without file and base, the overrides) must name its data (`data.source`);
    `base` is a stored, already validated config (resume) and is taken as it is.
    Relative data paths are taken as given (relative to the working directory) and
    made absolute here, so the resolved config in the run dir points at the same files.
    """
    raw = read_config_file(path) if path is not None else dict(base or {})
    source = str(path) if path is not None else "config"
    empty = not raw
    raw = apply_overrides(raw, overrides)
    if base is not None:
        return _absolute_paths(validate(raw, source))
    # Validation first, so a misspelt `dat:` is told as such; an empty `data:` is no data.
    cfg = validate({k: v for k, v in raw.items() if not (k == "data" and v is None)}, source)
    require_data(raw, source, empty)
    return _absolute_paths(cfg)


def _absolute_paths(cfg: RunConfig) -> RunConfig:
    if cfg.data.root is None:
        return cfg
    root = str(Path(cfg.data.root).expanduser().absolute())
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": root})})


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text, sections in declaration order."""
    return yaml.safe_dump(cfg.to_plain(), sort_keys=False, default_flow_style=None)
