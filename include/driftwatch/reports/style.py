"""The one stylesheet: the palette, the CSS rules of each page and the inline styles of emails.

Each page keeps the rules it was designed with (a validation badge is not an evaluation
verdict), but colours and the rules pages have in common are written once, here. Emails get
inline styles because mail clients drop <style> elements.
"""

from __future__ import annotations

from collections.abc import Mapping

TEXT = "#1f2328"
MUTED = "#57606a"
FAINT = "#6e7781"
BORDER = "#d0d7de"
SHADE = "#f6f8fa"
GREEN = "#1a7f37"
RED = "#cf222e"
AMBER = "#9a6700"
BLUE = "#0969da"
PURPLE = "#8250df"
WHITE = "#fff"
ERROR_SHADE = "#fff1f0"
# Chart series colours, in the order series are drawn.
SERIES = (BLUE, "#bf3989", GREEN, AMBER, PURPLE, RED, MUTED, "#0550ae")
RULE = f"1px solid {BORDER}"


def _css(rules: Mapping[str, str]) -> str:
    """A stylesheet from selectors and their declarations, one rule a line."""
    return "\n" + "\n".join(f"{selector}{{{declarations}}}" for selector, declarations in rules.items()) + "\n"


_HEADER_CELLS = {"th": f"background:{SHADE}"}
_SMALL_HEADING = {"h3": "font-size:14px;margin:14px 0 6px"}

VALIDATION_CSS = _css(
    {
        "body": f'font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:{TEXT};max-width:75rem',
        "h1": "font-size:1.4rem",
        "h2": "font-size:1.1rem;margin-top:2rem",
        ".badge": f"display:inline-block;padding:.25rem .75rem;border-radius:.4rem;font-weight:700;color:{WHITE}",
        ".pass": f"background:{GREEN}",
        ".fail": f"background:{RED}",
        ".warn": f"background:{AMBER}",
        ".skip": f"background:{FAINT}",
        "table": "border-collapse:collapse;width:100%;font-size:.9rem",
        "th,td": f"border:{RULE};padding:.35rem .5rem;text-align:left;vertical-align:top",
        **_HEADER_CELLS,
        "dt": "font-weight:600",
        "dd": "margin:0 0 .4rem 0",
        "code": "font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-all",
        ".none": f"color:{MUTED};font-style:italic",
    }
)

EVALUATION_CSS = _css(
    {
        "body": (
            f"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:{TEXT};max-width:1100px"
        ),
        "h1": "font-size:22px;margin-bottom:4px",
        "h2": f"font-size:17px;margin-top:28px;border-bottom:{RULE}",
        **_SMALL_HEADING,
        "table": "border-collapse:collapse;margin:6px 0 12px;font-size:13px",
        "th,td": f"border:{RULE};padding:4px 10px;text-align:right",
        **_HEADER_CELLS,
        "td.l,th.l": "text-align:left",
        ".pass": f"color:{GREEN};font-weight:600",
        ".fail": f"color:{RED};font-weight:600",
        ".muted": f"color:{FAINT}",
        ".verdict": f"display:inline-block;padding:6px 14px;border-radius:6px;font-weight:700;color:{WHITE}",
        ".verdict.pass": f"background:{GREEN}",
        ".verdict.fail": f"background:{RED}",
        ".better": f"color:{GREEN}",
        ".worse": f"color:{RED}",
        ".pair": "display:flex;gap:32px;flex-wrap:wrap",
    }
)

MONITORING_CSS = _css(
    {
        "body": f"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:{TEXT};margin:16px;background:{WHITE}",
        "h1": "font-size:20px;margin:0 0 12px",
        "h2": f"font-size:17px;margin:24px 0 8px;border-bottom:{RULE}",
        **_SMALL_HEADING,
        "table": "border-collapse:collapse;font-size:13px;margin:4px 0 8px",
        "th,td": f"border:{RULE};padding:3px 8px;text-align:left;vertical-align:top",
        **_HEADER_CELLS,
        ".ok": f"color:{GREEN}",
        ".bad": f"color:{RED};font-weight:bold",
        ".warn": f"color:{AMBER}",
        ".muted": f"color:{MUTED}",
        ".error": f"background:{ERROR_SHADE};border:1px solid {RED};padding:6px",
        ".charts": "display:flex;flex-wrap:wrap;gap:16px",
        "a": f"color:{BLUE}",
        "code": "font-size:12px",
    }
)

EMAIL_BODY = f"font-family:Arial,sans-serif;font-size:14px;color:{TEXT}"
EMAIL_HEADING = "margin:0 0 8px 0"
EMAIL_TABLE = "border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px"
EMAIL_CELL = f"border:{RULE};padding:4px 8px;text-align:left"
EMAIL_HEADER_CELL = f"{EMAIL_CELL};background:{SHADE}"
EMAIL_LIST = "padding-left:18px"
EMAIL_IMAGE = f"border:{RULE}"
