"""One self-contained HTML page for a run: plain data and PNG bytes in, one string out.

Everything is inline: the CSS in a <style> element, every figure a `data:image/png;base64`
URI, no script, no link, no font or file fetched. So the page opens the same from a laptop,
a mail attachment or an air-gapped machine. Every text from the run (class names, paths,
config values) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d2330;
       background: #f6f7f9; }
header { background: #1f3b5c; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: .85; font-size: 14px; }
main { padding: 8px 32px 40px 32px; max-width: 1280px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; margin: 18px 0;
          padding: 12px 20px 18px 20px; }
h2 { font-size: 18px; margin: 6px 0 12px 0; color: #1f3b5c; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #dde1e7; padding: 4px 10px; text-align: right; }
th { background: #eef1f5; } td.name, th.name { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #dde1e7; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; color: #1f3b5c; } .card span { font-size: 12px; color: #5b6472; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eef1f5; }
figcaption { font-size: 12px; color: #5b6472; }
pre { background: #f2f4f7; padding: 10px; font-size: 12px; overflow-x: auto; }
.warn { color: #9c4a00; } .muted { color: #5b6472; font-size: 12px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def image(png: bytes | None, alt: str, caption: str = "") -> str:
    """A figure with the PNG inline as a data URI ('' without a PNG)."""
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    shown = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{shown}</figure>'


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], names: int = 1) -> str:
    """An HTML table; the first `names` columns are left-aligned text."""
    head = "".join(f'<th class="{"name" if i < names else ""}">{esc(c)}</th>' for i, c in enumerate(columns))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"name" if i < names else ""}">{number(v)}</td>' for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(key: str, title: str, body: str) -> str:
    return f'<section id="{esc(key)}"><h2>{esc(title)}</h2>{body}</section>'


def cards(items: Sequence[tuple[str, Any]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{number(v)}</b><span>{esc(k)}</span></div>' for k, v in items)
        + "</div>"
    )


def render(report: Mapping[str, Any]) -> str:
    """The page for a report dict: name, subtitle, headline [(label, value)], sections
    [(key, title, body html)] (bodies built with the helpers here)."""
    parts = [section(key, title, body) for key, title, body in report["sections"]]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(report['name'])} · cnnctl report</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(report['name'])}</h1><p>{esc(report['subtitle'])}</p></header>"
        f"<main>{section('headline', 'headline', cards(report['headline']))}{''.join(parts)}"
        f'<p class="muted">{esc(report.get("footer", ""))}</p></main></body></html>\n'
    )
