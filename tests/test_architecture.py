"""The house rules of docs/design.md, checked on the source itself (no import of cnnctl needed).

- each layer imports only from itself and the layers below it, function-level imports
  included (`make lint` checks the same with import-linter's layers contract);
- no module over 400 lines, no function over 60;
- no name starting with `_` imported from another module;
- models/ never imports config; config/ and report/ never import torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnnctl"
# Highest first: a package may import only from itself and the packages after it.
LAYERS = [
    "cli",
    "workflows",
    "session",
    "artifacts",
    "engine",
    "tasks",
    "data",
    "models",
    "runtime",
    "config",
    "report",
    "core",
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                own = module_name(path)
                package = own if path.name == "__init__.py" else own.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base, [alias.name for alias in node.names]))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cnnctl" and parts[1] in LAYERS else None


def test_the_layers_cover_every_package() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in modules():
        own = layer_of(module_name(path))
        if own is None:
            continue
        for line, target, names in imports(path):
            targets = [target] if target != "cnnctl" else [f"cnnctl.{n}" for n in names]
            for module in targets:
                other = layer_of(module)
                if other is not None and LAYERS.index(other) < LAYERS.index(own):
                    upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {module}")
    assert upward == []


def test_workflows_do_not_import_each_other() -> None:
    crossing = [
        f"{path.name}:{line} imports {target}"
        for path in (PACKAGE / "workflows").glob("*.py")
        for line, target, _ in imports(path)
        if target.startswith("cnnctl.workflows.") and target != module_name(path)
    ]
    assert crossing == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("models", ("cnnctl.config",)),
        ("config", ("torch", "torchvision")),
        ("report", ("torch", "torchvision")),
    ],
)
def test_forbidden_imports(package: str, forbidden: tuple[str, ...]) -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for path in (PACKAGE / package).rglob("*.py")
        for line, target, _ in imports(path)
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    ]
    assert found == []


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_no_private_name_is_imported_across_modules() -> None:
    private = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}.{n}"
        for path in modules()
        for line, target, names in imports(path)
        if target.startswith("cnnctl")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert private == []


def test_the_checks_see_function_level_imports(tmp_path: Path) -> None:
    """The import walk finds an import inside a function body (a lazy import counts)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from cnnctl.cli import app\n    return app\n", encoding="utf-8")
    assert [(line, target) for line, target, _ in imports(sample)] == [(2, "cnnctl.cli")]
