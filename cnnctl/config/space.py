"""`cnnctl tune`'s search space: a YAML mapping of dotted config keys to distributions,

    optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    data.batch_size: {type: categorical, choices: [32, 64]}
    model.dropout: {type: float, low: 0, high: 0.6}
    train.epochs: {type: int, low: 2, high: 8, step: 2}

checked before any trial runs: each distribution is well formed, and its every end (each
choice) set into the base config validates, so a misspelt key or a value outside the key's
range is one line naming the space file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnctl.config.load import validate
from cnnctl.config.run import RunConfig
from cnnctl.config.yaml_io import read_config_file
from cnnctl.core.errors import ConfigError

TYPES = ("float", "int", "categorical")
FIELDS = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}
MAX_PARAMS = 64


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def ends(self) -> list[Any]:
        """The values whose validity stands for the whole range."""
        if self.type == "categorical":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def with_values(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of plain config data with each dotted key set (sections made as needed)."""
    import copy

    result: dict[str, Any] = copy.deepcopy(dict(raw))
    for key, value in values.items():
        node = result
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return result


def read_space(path: Path, base: RunConfig) -> list[Param]:
    """The parameters of a space file, each checked against the base config's schema."""
    raw = read_config_file(path)
    if not raw:
        raise ConfigError(f"{path}: the search space is empty; map dotted config keys to distributions")
    if len(raw) > MAX_PARAMS:
        raise ConfigError(f"{path}: {len(raw)} keys; a search space has at most {MAX_PARAMS}")
    params = [_param(path, str(key), spec) for key, spec in raw.items()]
    plain = base.to_plain()
    for param in params:
        for value in param.ends():
            try:
                validate(with_values(plain, {param.key: value}), f"{path}: {param.key}={value!r}")
            except ConfigError as err:
                raise ConfigError(str(err)) from None
    return params


def _param(path: Path, key: str, spec: Any) -> Param:
    where = f"{path}: {key}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(
            f"{where}: give {{type: float|int|categorical, ...}}, e.g. {{type: float, low: 0.0001, high: 0.01, log: true}}"
        )
    kind = spec["type"]
    unknown = set(spec) - FIELDS[kind] - {"type"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; a {kind} takes {', '.join(sorted(FIELDS[kind]))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        return Param(key, kind, choices=tuple(choices))
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    number = int if kind == "int" else (int, float)
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
            raise ConfigError(f"{where}: {name} must be {'an integer' if kind == 'int' else 'a number'}")
    assert low is not None and high is not None
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log is true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0 or log):
        raise ConfigError(
            f"{where}: step must be a positive {'integer' if kind == 'int' else 'number'} (and not with log)"
        )
    return Param(key, kind, float(low), float(high), log, None if step is None else float(step))
