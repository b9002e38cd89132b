"""data.source: manifest (CSV, JSONL, Parquet tables of image paths), group-safe splits,
splits.csv in every file-based run, and data.split_folders for image folders."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnctl.data.splits import group_split
from cnnctl.data.synthetic import write_image_folder
from tests.conftest import TINY, invoke

DATA_KEYS = {"image_size": 16, "batch_size": 8, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest") / "imgs"
    write_image_folder(root, 3, 12, 16, seed=3, noise=0.05)
    return root


def rows_of(images: Path, base: Path) -> list[dict[str, str]]:
    """One row per image: its path relative to `base`, its class, a group of 2-3 images."""
    out = []
    for n, file in enumerate(sorted(images.rglob("*.png"))):
        out.append({"path": os.path.relpath(file, base), "label": file.parent.name, "patient": f"p{n // 3}"})
    return out


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path: Path, data: dict[str, Any], name: str = "m") -> Path:
    cfg = {**TINY, "data": {"source": "manifest", **DATA_KEYS, **data}, "train": {"epochs": 1}}
    cfg["output"] = {"dir": str(tmp_path / "runs"), "plots": False}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def splits_csv(tmp_path: Path, name: str) -> list[dict[str, str]]:
    with open(tmp_path / "runs" / name / "splits.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_csv_manifest_trains_and_its_run_says_which_file_went_where(
    runner, tmp_path: Path, images: Path
) -> None:
    manifest = write_csv(tmp_path / "train.csv", rows_of(images, tmp_path), ["path", "label"])
    result = invoke(runner, "train", config(tmp_path, {"train": str(manifest), "test_fraction": 0.25}))
    assert result.exit_code == 0, result.output
    rows = splits_csv(tmp_path, "m")
    assert list(rows[0]) == ["path", "label", "split"]  # no group column without data.group_column
    assert len(rows) == 36 and len({r["path"] for r in rows}) == 36
    assert all(os.path.isabs(r["path"]) and Path(r["path"]).parent.name == r["label"] for r in rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == {"train": 18, "val": 9, "test": 9}  # stratified: 3 per class in val and test
    summary = json.loads((tmp_path / "runs" / "m" / "summary.json").read_text())
    assert summary["dataset"] == "manifest" and summary["classes"] == ["circle", "square", "triangle"]


def test_groups_never_cross_splits(runner, tmp_path: Path, images: Path) -> None:
    manifest = write_jsonl(tmp_path / "train.jsonl", rows_of(images, tmp_path))
    data = {"train": str(manifest), "group_column": "patient", "test_fraction": 0.25}
    result = invoke(runner, "train", config(tmp_path, data))
    assert result.exit_code == 0, result.output
    rows = splits_csv(tmp_path, "m")
    assert list(rows[0]) == ["path", "label", "split", "group"]
    where: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        where[row["group"]].add(row["split"])
    assert all(len(splits) == 1 for splits in where.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}


@pytest.mark.parametrize("seed", range(20))
def test_group_split_keeps_groups_whole_and_every_class_in_train(seed: int) -> None:
    import random

    rng = random.Random(seed)
    labels, groups = [], []
    for g in range(rng.randint(6, 40)):
        label = rng.randint(0, 2)
        for _ in range(rng.randint(1, 6)):
            labels.append(label if rng.random() < 0.8 else rng.randint(0, 2))
            groups.append(f"g{g}")
    parts = group_split(labels, groups, [0.2, 0.2], seed)
    assert sorted(i for p in parts for i in p) == list(range(len(labels)))
    owner = {groups[i]: k for k, part in enumerate(parts) for i in part}
    assert all(owner[groups[i]] == k for k, part in enumerate(parts) for i in part)
    assert {labels[i] for i in parts[0]} == set(labels)  # every class keeps training data
    assert group_split(labels, groups, [0.2, 0.2], seed) == parts  # fixed by the seed


def test_val_manifest_root_and_absolute_paths(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, images.parent)  # relative to data.root
    rows[0]["path"] = str(images.parent / rows[0]["path"])  # one absolute path
    val = [r for n, r in enumerate(rows) if n % 4 == 0]
    train = [r for n, r in enumerate(rows) if n % 4]
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", train)),
        "val": str(write_csv(tmp_path / "val.csv", val)),
        "root": str(images.parent),
    }
    result = invoke(runner, "train", config(tmp_path, data))
    assert result.exit_code == 0, result.output
    split_of = {r["path"]: r["split"] for r in splits_csv(tmp_path, "m")}
    assert sum(s == "val" for s in split_of.values()) == len(val) and len(split_of) == 36


def test_a_parquet_manifest(runner, tmp_path: Path, images: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = rows_of(images, tmp_path)
    table = pa.table({"file": [r["path"] for r in rows], "y": [r["label"] for r in rows]})
    pq.write_table(table, tmp_path / "train.parquet")
    data = {"train": str(tmp_path / "train.parquet"), "path_column": "file", "label_column": "y"}
    result = invoke(runner, "train", config(tmp_path, data))
    assert result.exit_code == 0, result.output
    assert len(splits_csv(tmp_path, "m")) == 36


BAD_ROWS = {
    "no label column": (lambda rows: [{"path": r["path"]} for r in rows], "has no column 'label'"),
    "empty label": (
        lambda rows: [*rows[:2], {**rows[2], "label": " "}, *rows[3:]],
        "row 3 has an empty label",
    ),
    "same image twice": (lambda rows: [*rows, rows[1]], "rows 2 and 37 name the same image"),
    "a label list": (
        lambda rows: [{**rows[0], "label": ["a", "b"]}, *rows[1:]],
        "row 1: the label is a list",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_manifest_is_one_line_before_training(runner, tmp_path: Path, images: Path, case: str) -> None:
    change, expected = BAD_ROWS[case]
    manifest = write_jsonl(tmp_path / "train.jsonl", change(rows_of(images, tmp_path)))
    result = invoke(runner, "train", config(tmp_path, {"train": str(manifest)}))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0] and "train.jsonl" in lines[0], result.output
    assert not (tmp_path / "runs" / "m").exists()


def test_broken_tables_are_one_line(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    broken = tmp_path / "train.jsonl"
    broken.write_text(json.dumps(rows[0]) + "\n{not json\n", encoding="utf-8")
    result = invoke(runner, "train", config(tmp_path, {"train": str(broken)}))
    assert result.exit_code == 2 and "row 2 is not a JSON object" in result.output
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"path,label\n\xe9.png,a\n")
    result = invoke(runner, "train", config(tmp_path, {"train": str(latin)}))
    assert result.exit_code == 2 and "not UTF-8" in result.output
    unknown = write_csv(tmp_path / "val.csv", [{**rows[0], "label": "hexagon"}])
    data = {"train": str(write_csv(tmp_path / "train.csv", rows[1:])), "val": str(unknown)}
    result = invoke(runner, "train", config(tmp_path, data))
    assert result.exit_code == 2 and "label(s) ['hexagon'] are not among train's labels" in result.output


def test_missing_files_are_left_out_and_named_by_row(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    rows[4] = {**rows[4], "path": "nowhere/gone.png"}
    manifest = write_csv(tmp_path / "train.csv", rows)
    result = invoke(runner, "train", config(tmp_path, {"train": str(manifest)}))
    assert result.exit_code == 0, result.output
    assert "1 row(s) name no readable regular file, left out: row 5" in result.output
    assert len(splits_csv(tmp_path, "m")) == 35


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "data.train: source manifest needs data.train"),
        ({"train": "t.csv", "label_column": 1}, "data.label_column: manifest: label_column is a column name"),
        ({"train": "t.txt"}, "data.train: manifest: 't.txt' must end in .csv, .jsonl, .parquet"),
        ({"train": "t.csv", "path_column": "label"}, "data.path_column: manifest: the columns must differ"),
        ({"train": "t.csv", "extensions": [".png"]}, "data.extensions"),
    ],
)
def test_manifest_config_errors(runner, tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    result = invoke(runner, "config", "validate", config(tmp_path, data))
    assert result.exit_code == 2 and expected in result.output, result.output


def test_split_folders_map_roles_to_folders(runner, tmp_path: Path, write_config) -> None:
    """A data set that ships train/ and val/ only, val/ used as the test split (ants/bees)."""
    write_image_folder(tmp_path / "hymenoptera" / "train", 2, 12, 16, seed=1, noise=0.05)
    write_image_folder(tmp_path / "hymenoptera" / "val", 2, 4, 16, seed=2, noise=0.05)
    data = {
        "source": "image_folder",
        "root": str(tmp_path / "hymenoptera"),
        "split_folders": {"train": "train", "test": "val"},
        **DATA_KEYS,
    }
    cfg = {**TINY, "data": data, "train": {"epochs": 1}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "ants.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = invoke(runner, "train", path, "--name", "ants")
    assert result.exit_code == 0, result.output
    rows = splits_csv(tmp_path, "ants")
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == 8 and all("/val/" in r["path"] for r in test)
    assert {r["split"] for r in rows if "/train/" in r["path"]} == {"train", "val"}
    bad = path.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump({**cfg, "data": {**data, "split_folders": {"train": "../x"}}}))
    result = invoke(runner, "config", "validate", bad)
    assert result.exit_code == 2 and "data.split_folders" in result.output
    missing = path.with_name("missing.yaml")
    missing.write_text(
        yaml.safe_dump({**cfg, "data": {**data, "split_folders": {"train": "train", "val": "dev"}}})
    )
    result = invoke(runner, "train", missing)
    assert result.exit_code == 2 and "no such folder (data.split_folders.val)" in result.output


def test_unreadable_images_are_named_by_manifest_row(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rows.insert(2, {"path": "broken.png", "label": rows[2]["label"], "patient": "px"})
    manifest = write_csv(tmp_path / "train.csv", rows)
    result = invoke(runner, "train", config(tmp_path, {"train": str(manifest)}))
    assert result.exit_code == 0, result.output
    assert "skipping 1 unreadable image(s)" in result.output and "train.csv row 3" in result.output
    assert str(broken) not in {r["path"] for r in splits_csv(tmp_path, "m")}


def test_one_image_never_lands_in_two_splits(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    train = write_csv(tmp_path / "train.csv", rows)
    val = write_csv(tmp_path / "val.csv", rows[:2])
    result = invoke(runner, "train", config(tmp_path, {"train": str(train), "val": str(val)}))
    assert result.exit_code == 2 and "names the image of the train manifest's row 1" in result.output
    (tmp_path / "link.png").symlink_to(tmp_path / rows[0]["path"])  # the same image by another name
    linked = write_csv(tmp_path / "linked.csv", [*rows, {**rows[0], "path": "link.png"}])
    result = invoke(runner, "train", config(tmp_path, {"train": str(linked)}))
    assert result.exit_code == 2 and "rows 1 and 37 name the same image" in result.output


def test_tables_that_look_right_but_are_not(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    cases = {
        "nan.jsonl": (json.dumps({**rows[0], "label": float("nan")}) + "\n", "row 1 has an empty label"),
        "deep.jsonl": ("[" * 100_000 + "]" * 100_000 + "\n", "row 1 is not a JSON object"),
        "wide.csv": (
            f"path,label\n{rows[0]['path']},circle,extra\n",
            "row 1 has more fields than the header",
        ),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        result = invoke(runner, "train", config(tmp_path, {"train": str(tmp_path / name)}, name=name[:4]))
        assert result.exit_code == 2 and expected in result.output, (name, result.output)
    spaced = [{**r, "label": f" {r['label']} "} if n % 2 else r for n, r in enumerate(rows)]
    result = invoke(runner, "train", config(tmp_path, {"train": str(write_csv(tmp_path / "s.csv", spaced))}))
    assert result.exit_code == 0 and "3 classes" in result.output  # ' circle ' is circle


def test_data_check_lists_a_manifests_unusable_rows(runner, tmp_path: Path, images: Path) -> None:
    rows = rows_of(images, tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows[1] = {**rows[1], "path": "broken.png"}
    rows[2] = {**rows[2], "path": "gone.png"}
    path = config(tmp_path, {"train": str(write_csv(tmp_path / "train.csv", rows))})
    result = invoke(runner, "data", "check", path, "--json")
    assert result.exit_code == 1, result.output
    reasons = {Path(u["path"]).name: u["reason"] for u in json.loads(result.stdout)["unreadable"]}
    assert reasons["gone.png"] == "no such regular file (train.csv row 3)"
    assert reasons["broken.png"].endswith("(train.csv row 2)")


def test_split_folders_refuse_one_folder_under_two_names(runner, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data" / "train", 2, 4, 16, seed=1, noise=0.05)
    (tmp_path / "data" / "copy").symlink_to(tmp_path / "data" / "train")
    for folders, expected in [
        ({"train": "train", "val": "./train/"}, "two splits name the same folder"),
        ({"train": "train", "val": "copy"}, "data.split_folders: train and val are the same folder"),
    ]:
        data = {
            "source": "image_folder",
            "root": str(tmp_path / "data"),
            "split_folders": folders,
            **DATA_KEYS,
        }
        path = tmp_path / "sf.yaml"
        path.write_text(yaml.safe_dump({**TINY, "data": data}), encoding="utf-8")
        result = invoke(runner, "train", path)
        assert result.exit_code == 2 and expected in result.output, result.output
