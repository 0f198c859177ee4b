"""What every report is built from: escaping, numbers from records, report links and the page shell."""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import quote

# For reports opened straight from object storage or a mail client, where no server sends a
# Content-Security-Policy header: nothing but inline styles may load.
STATIC_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def escape(value: Any) -> str:
    """Any value as HTML text, quotes included, so that it is safe in an element or an attribute."""
    return html.escape(str(value), quote=True)


def finite(value: Any) -> float | None:
    """A finite float, else None: history records and MLflow tags hold numbers, text or nothing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def report_url(base_url: str, key: str) -> str:
    """The web address of a report object under a report base URL (``.../driftwatch/report``)."""
    return f"{base_url.rstrip('/')}/{quote(key, safe='/=')}"


def document(title: str, body: str, css: str, *, csp: str | None = None) -> str:
    """A complete page with its stylesheet inline, no script and nothing fetched; `body` is HTML.

    `csp` (a policy from code, such as STATIC_CSP, never from data) becomes a meta element.
    """
    policy = f'<meta http-equiv="Content-Security-Policy" content="{csp}">' if csp else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{policy}'
        f"<title>{escape(title)}</title><style>{css}</style></head><body>{body}</body></html>\n"
    )
