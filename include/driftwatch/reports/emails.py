"""The HTML of alert emails: a page shell, tables and links, all with inline styles.

Mail clients drop <style> elements and block remote content, so every element carries its style.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftwatch.reports.markup import escape
from driftwatch.reports.style import (
    EMAIL_BODY,
    EMAIL_CELL,
    EMAIL_HEADER_CELL,
    EMAIL_HEADING,
    EMAIL_LIST,
    EMAIL_TABLE,
)


def cell_text(value: Any) -> str:
    """A table cell as text (floats to four significant digits, None empty), for HTML and plain text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table of values from data, every cell escaped."""
    head = "".join(f'<th style="{EMAIL_HEADER_CELL}">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{EMAIL_CELL}">{escape(cell_text(v))}</td>' for v in row) + "</tr>" for row in rows
    )
    return f'<table style="{EMAIL_TABLE}"><tr>{head}</tr>{body}</table>'


def links(uris: Mapping[str, str]) -> str:
    """Web addresses as links, anything else (s3:// URIs) as code."""
    items = "".join(
        f'<li>{escape(label)}: <a href="{escape(uri)}">{escape(uri)}</a></li>'
        if uri.startswith(("http://", "https://"))
        else f"<li>{escape(label)}: <code>{escape(uri)}</code></li>"
        for label, uri in uris.items()
    )
    return f'<ul style="{EMAIL_LIST}">{items}</ul>'


def page(title: str, body: str) -> str:
    """An email's HTML part: the title as a heading over `body`, which is HTML already."""
    return f'<html><body style="{EMAIL_BODY}"><h2 style="{EMAIL_HEADING}">{escape(title)}</h2>{body}</body></html>'
