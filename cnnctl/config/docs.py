"""docs/config.md, generated from the config schema so the reference cannot drift.

`python -m cnnctl.config.docs > docs/config.md` rewrites it; a test fails when it is stale.
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cnnctl.config.base import Section
from cnnctl.config.data import REQUIRED_KEYS, SMALLEST_CONFIG
from cnnctl.config.overrides import MAX_SET_BYTES
from cnnctl.config.run import RunConfig
from cnnctl.config.torch_defaults import TORCH_DEFAULTS
from cnnctl.config.yaml_io import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

INTRO = f"""# Config reference

Generated from the schema in `cnnctl/config/` (`python -m cnnctl.config.docs > docs/config.md`);
a test fails if this page and the code disagree.

A config is a YAML mapping of sections. It must name its data (`data.source`; an empty
config is an error, not the generated-shapes demo): the smallest valid config is
`{SMALLEST_CONFIG}`. Every other key is optional. Unknown keys, keys of the wrong type,
values outside the `allowed` range, numbers that are not finite (`.inf`, `.nan`) and keys
that do not apply to the chosen source / model / optimizer are refused in one line with the
dotted path and what is allowed (exit code 2); so are combinations that cannot train, such
as a `model.kernel_size` larger than the image it reaches. `cnnctl config show CONFIG` prints
the resolved config with every default filled in; `--set section.key=value` overrides any key
(values are read as YAML: `--set train.epochs=3`, `--set data.augment.hflip=true`).

Relative paths (`data.root`, `data.train`, ...) are relative to the working directory and are
stored absolute in the run's `config.yaml`.

Keys named after an argument of torch (`optimizer.momentum`, `scheduler.patience`,
`train.label_smoothing`, ...) take torch's default for it: `optimizer: {{name: sgd, lr: 0.1}}`
is `torch.optim.SGD(model.parameters(), lr=0.1)`, without momentum. The last sections list
them and every deliberate deviation.

## Limits

Before anything is validated, these are refused in one line naming the file (and line): a
config file larger than {MAX_CONFIG_BYTES / 2**20:g} MiB, one `--set` item larger than
{MAX_SET_BYTES // 1024} KiB, YAML nested more than {MAX_YAML_DEPTH} levels deep, YAML whose aliases
(`*name`) expand it beyond {MAX_YAML_NODES:,} values, an alias into its own node, text that is
not UTF-8, and a top level that is not a mapping. A config is a few KB, nests 4 levels deep
and holds a few hundred values.
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


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed_text(field: Any) -> str:
    """The range a key accepts: the `allowed` a validator checks, else the Field constraints."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "allowed" in extra:
        return str(extra["allowed"])
    low = high = ""
    lengths: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{_number(item.ge)} ≤ "
        elif isinstance(item, annotated_types.Gt):
            low = f"{_number(item.gt)} < "
        elif isinstance(item, annotated_types.Le):
            high = f" ≤ {_number(item.le)}"
        elif isinstance(item, annotated_types.Lt):
            high = f" < {_number(item.lt)}"
        elif isinstance(item, annotated_types.MinLen):
            lengths.append(f"at least {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            lengths.append(f"at most {item.max_length}")
    if low and not high:
        return "x " + {"≤": "≥", "<": ">"}[low.split()[1]] + " " + low.split()[0]
    if low or high:
        return f"{low}x{high}"
    return f"{' and '.join(lengths)} entries" if lengths else ""


def section_rows(model: type[Section], prefix: str, leaves_only: bool = False) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if leaves_only and holds_section(field):
            continue
        applies = model.applies_to.get(name)
        scope = f" *({model.selector}: {', '.join(applies)})*" if applies else ""
        description = (field.description or "").replace("|", "\\|")
        default = "required" if f"{prefix}{name}" in REQUIRED_KEYS else default_text(field)
        allowed = allowed_text(field).replace("|", "\\|")
        rows.append(
            f"| `{prefix}{name}` | {type_name(field.annotation)} | {default} | {allowed} | "
            f"{description}{scope} |"
        )
    return rows


TABLE = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|"

# Behaviour (not a key's default) where cnnctl's schedules differ from the torch class of the
# same name.
BEHAVIOUR_NOTES = (
    "`scheduler.name: onecycle` anneals the lr as `torch.optim.lr_scheduler.OneCycleLR` does "
    "(pct_start 0.3, div_factor 25, final_div_factor 1e4, cosine) but does not cycle momentum "
    "(torch's `cycle_momentum=True`): the optimizer's momentum / beta1 stay as configured.",
    "`scheduler.name: cosine` anneals once over the whole run, per optimizer step: torch's "
    "`T_max` is the run's optimizer steps after warmup (not a key); `min_lr` is its `eta_min`.",
    "`scheduler.name: step` drops the lr every `step_size` epochs, counted in optimizer steps "
    "(torch's StepLR counts `scheduler.step()` calls).",
    "`scheduler.warmup_epochs` (no torch key) starts at lr/100, where torch's LinearLR starts at "
    "lr/3 (`start_factor=1/3`).",
    "Keys cnnctl does not expose are never passed, so torch's defaults hold: eps (1e-8), "
    "RMSprop's alpha (0.99) and centered, SGD's dampening (0), amsgrad, ReduceLROnPlateau's "
    "threshold / cooldown / min_lr / mode (min), CrossEntropyLoss's ignore_index and reduction. "
    "Optimizers get `foreach=True` (the same arithmetic, batched kernels).",
)


def torch_sections() -> list[str]:
    """The keys that carry a torch argument, and the deliberate deviations with their reasons."""
    parts = [
        "\n## Defaults taken from torch\n\nEach key below carries the named torch argument and "
        "defaults to its value in torch (a test compares them with the installed torch).\n",
        "| key | for | torch argument | default |\n|---|---|---|---|",
    ]
    for item in TORCH_DEFAULTS:
        if not item.deviation:
            parts.append(
                f"| `{item.key}` | {item.choice or 'any'} | `{item.target}({item.argument})` | "
                f"`{item.value()}` |"
            )
    parts += [
        "\n## Deviations from torch's defaults\n\nThese keys carry a torch argument but default "
        "to something else, on purpose:\n",
        "| key | for | torch argument | default | why |\n|---|---|---|---|---|",
    ]
    for item in TORCH_DEFAULTS:
        if item.deviation:
            parts.append(
                f"| `{item.key}` | {item.choice or 'any'} | `{item.target}({item.argument})` | "
                f"`{item.value()}` | {item.deviation} |"
            )
    parts.append("\nAnd where the behaviour differs from the torch class of the same name:\n")
    parts += [f"- {note}" for note in BEHAVIOUR_NOTES]
    return parts


def nested_sections(model: type[Section]) -> list[tuple[str, type[Section]]]:
    found = []
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, Section):
                found.append((name, candidate))
    return found


def render() -> str:
    parts = [INTRO]
    parts.append(f"## Top level\n\n{TABLE}")
    parts += section_rows(RunConfig, "", leaves_only=True)
    for name, section in nested_sections(RunConfig):
        parts.append(f"\n## `{name}`\n\n{(section.__doc__ or '').strip()}\n")
        parts.append(TABLE)
        parts += section_rows(section, f"{name}.")
        for sub_name, sub in nested_sections(section):
            parts.append(f"\n### `{name}.{sub_name}`\n\n{(sub.__doc__ or '').strip()}\n")
            parts.append(TABLE)
            parts += section_rows(sub, f"{name}.{sub_name}.")
    parts += torch_sections()
    return "\n".join(parts) + "\n"


def holds_section(field: Any) -> bool:
    return any(
        isinstance(c, type) and issubclass(c, Section)
        for c in (field.annotation, *get_args(field.annotation))
    )


if __name__ == "__main__":
    print(render(), end="")
