"""Bounded YAML: reading a config file and parsing YAML text, each problem one line.

Safe loader only, with YAML 1.2 floats (`1e-3` is a float, not the string "1e-3"), and
bounded: a config is a few KB, so whatever is far beyond that is refused before it costs
anything (a 520-byte "billion laughs" of nested aliases, a 10 KB nest of lists, a 50 MB file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cnnctl.core.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB; the largest example config is under 4 KB
MAX_YAML_DEPTH = 32  # nested mappings / lists; a config needs 4 (data.normalize.mean: [...])
MAX_YAML_NODES = 10_000  # values after alias expansion; a config has a few hundred


class _LimitError(yaml.MarkedYAMLError):
    """A YAML document beyond MAX_YAML_DEPTH / MAX_YAML_NODES, or an alias into itself."""


def _limit(problem: str, mark: Any) -> _LimitError:
    return _LimitError(None, None, problem, mark)


class _Values:
    """Constructor part shared by the two loaders: a value Python cannot build (an integer of
    5,000 digits, the date 2024-13-45) is a YAML error at its line, not a traceback."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, OverflowError) as err:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({err})", node.start_mark
            ) from None


class Loader(_Values, yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `1e-3` is a float, and only true/false are booleans
    (YAML 1.1 would read `amp: off` as False and `lr: 1e-3` as a string)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

# libyaml's parser (bundled with PyYAML's wheels) is ~30x faster than the pure-Python one;
# the values are built by the same Python constructor and resolvers either way. Both are
# looked up at each call, so PyYAML without libyaml (EventLoader = yaml.SafeLoader,
# FastLoader = Loader) can be tried on a machine that has it.
EventLoader: Any = yaml.SafeLoader
FastLoader: Any = Loader
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(_Values, yaml.CSafeLoader):
        """Loader's resolvers and constructor on libyaml's parser."""

    _CLoader.yaml_implicit_resolvers = Loader.yaml_implicit_resolvers
    EventLoader, FastLoader = yaml.CSafeLoader, _CLoader


class _Shape:
    """Walks a YAML text's events (no values built) and refuses it as soon as it nests deeper
    than MAX_YAML_DEPTH or its aliases would expand it beyond MAX_YAML_NODES values."""

    def __init__(self) -> None:
        self.open: list[list[Any]] = []  # per open collection: [anchor, expanded size, height]
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor → (expanded size, height)
        self.total = 0

    def count(self, size: int, depth: int, event: yaml.Event) -> None:
        """`size` more values (after expansion), reaching `depth` levels of nesting."""
        self.total += size
        if self.total > MAX_YAML_NODES:
            what = "its aliases expand it to" if isinstance(event, yaml.AliasEvent) else "it holds"
            raise _limit(
                f"YAML too large: {what} more than {MAX_YAML_NODES:,} values (a config has a few "
                "hundred); remove the repeated aliases (*name) or the bulk data",
                event.start_mark,
            )
        if depth > MAX_YAML_DEPTH:
            raise _limit(
                f"YAML nested more than {MAX_YAML_DEPTH} levels deep (a config needs about 4); flatten it",
                event.start_mark,
            )

    def child(self, size: int, height: int) -> None:
        if self.open:
            frame = self.open[-1]
            frame[1] += size
            frame[2] = max(frame[2], height)

    def event(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in self.open):
                raise _limit(
                    f"YAML alias *{event.anchor} refers to a node that contains it (a recursive "
                    "structure); remove the alias",
                    event.start_mark,
                )
            size, height = self.anchors.get(str(event.anchor), (1, 0))
            self.count(size, len(self.open) + height, event)
            self.child(size, height)
        elif isinstance(event, yaml.ScalarEvent):
            self.count(1, len(self.open), event)
            if event.anchor:
                self.anchors[event.anchor] = (1, 0)
            self.child(1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            self.count(1, len(self.open) + 1, event)
            self.open.append([event.anchor, 1, 0])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height = self.open.pop()
            if anchor:
                self.anchors[anchor] = (size, height + 1)
            self.child(size, height + 1)


def _check_shape(text: str) -> None:
    """Refuse a YAML text that nests too deeply or expands too far, before composing it."""
    loader = EventLoader(text)
    shape = _Shape()
    try:
        while loader.check_event():
            shape.event(loader.get_event())
    finally:
        loader.dispose()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely and within the limits above; any problem becomes one line with
    file:line:column."""
    try:
        _check_shape(text)
        return yaml.load(text, Loader=FastLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = ", ".join(p for p in (err.context, err.problem) if p) or "invalid YAML"
        if isinstance(err, yaml.scanner.ScannerError | yaml.parser.ParserError):
            problem = f"YAML syntax error: {problem}"
        elif not isinstance(err, _LimitError):
            problem = f"YAML error: {problem}"
        raise ConfigError(_one_line(f"{where}: {problem}")) from None
    except yaml.reader.ReaderError as err:
        raise ConfigError(
            f"{source}: YAML error: character #x{err.character:x} at position {err.position}: "
            f"{err.reason}; a config is plain UTF-8 text"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(_one_line(f"{source}: YAML error: {err}")) from None
    except RecursionError:  # not reachable within MAX_YAML_DEPTH; kept so it never is a traceback
        raise ConfigError(f"{source}: YAML nested too deeply to read; flatten it") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; missing, oversized, non-UTF-8 or non-mapping
    files and bad YAML → ConfigError (one line, file and line number)."""
    path = Path(path)
    try:
        if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block forever
            raise ConfigError(f"{path}: not a regular file (a FIFO or device?); give a YAML file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # never more, whatever the file is
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot read config file ({err.strerror or err.__class__.__name__})"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES / 2**20:g} MiB; a config is a few KB of YAML "
            "(is this the right file?)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None
    parsed = parse_yaml(text, str(path))
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise ConfigError(
            f"{path}: the config must be a YAML mapping of sections (data, model, ...), "
            f"not {_kind(parsed)}; start from `data: {{source: synthetic}}`"
        )
    return parsed


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__} value"
