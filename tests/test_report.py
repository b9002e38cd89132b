"""report.html: one self-contained page per run, with every section, rendered in a real
headless browser (Debian's chromium) where one can be installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cnnctl.report import html
from cnnctl.session.report_sections import SECTION_KEYS
from tests.conftest import TINY, invoke, merge
from tests.test_hostile_outputs import one_line_error

NAME = "report-run_é"


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("report")
    cfg = merge(TINY, {"output": {"dir": str(root / "runs"), "report": True}, "train": {"epochs": 2}})
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = invoke(CliRunner(), "train", path, "--name", NAME)
    assert result.exit_code == 0, result.output
    assert "report " in result.output
    return root / "runs" / NAME


def test_train_writes_a_self_contained_report_with_every_section(reported: Path) -> None:
    page = (reported / "report.html").read_text(encoding="utf-8")
    for key in SECTION_KEYS:
        assert f'<section id="{key}">' in page, key
    assert f"<h1>{NAME}</h1>" in page
    assert not re.search(r"<script|<link|<iframe|@import|url\(", page, re.IGNORECASE)
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched, no file referenced
    images = re.findall(r'src="data:image/png;base64,', page)
    assert len(images) >= 6  # curves, confusion, reliability, ROC, PR, the wrong grid
    assert "calibration" in page and "Temperature" in page and "every file decodes" in page


def test_html_escapes_what_a_run_names(tmp_path: Path) -> None:
    page = html.render(
        {
            "name": "<script>alert(1)</script>",
            "subtitle": "a & b",
            "headline": [("accuracy", 0.5)],
            "sections": [("x", "t<i>", html.table(("class",), [("<b>cat</b>",)]))],
        }
    )
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;cat" in page


def test_cnnctl_report_rewrites_and_refuses_in_one_line(runner, reported: Path, tmp_path: Path) -> None:
    (reported / "report.html").unlink()
    result = invoke(runner, "report", reported)
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output and (reported / "report.html").is_file()
    elsewhere = tmp_path / "r.html"
    assert invoke(runner, "report", reported, "--out", elsewhere).exit_code == 0
    one_line_error(invoke(runner, "report", reported, "--out", elsewhere), 2, "--force")
    one_line_error(invoke(runner, "report", reported, "--out", tmp_path / "r.txt"), 2, ".html")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reported, unfinished)
    (unfinished / "summary.json").unlink()
    one_line_error(invoke(runner, "report", unfinished), 2, "not finished")
    one_line_error(invoke(runner, "report", tmp_path / "nothing"), 2, "not a run directory")


def _browser() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_the_report_renders_in_a_real_browser(reported: Path, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium where apt-get can)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    url = (reported / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as picture:
        rgb = picture.convert("RGB")
        assert rgb.size == (1280, 2400)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200  # text, tables and plots, not a blank page
        assert rgb.getpixel((10, 10)) == (31, 59, 92)  # the header band was laid out with its CSS
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert f"<h1>{NAME}</h1>" in dom and dom.count("data:image/png;base64,") >= 6
