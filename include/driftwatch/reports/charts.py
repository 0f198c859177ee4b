"""Trend charts drawn in pure Python: SVG for pages, a tiny PNG for emails.

Nothing (script, style, font) is ever fetched from a CDN, because many deployments are
air-gapped. Labels come from data and are escaped.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from driftwatch.reports.markup import escape
from driftwatch.reports.style import BLUE, BORDER, PURPLE, RED, SERIES, SHADE, WHITE

EXCEEDANCE_CAP = 4.0  # drift scores are drawn as multiples of their threshold, capped for the axis

# --------------------------------------------------------------------------- SVG (pages)


def _points(values: Sequence[float | None], x0: float, dx: float, y: Any) -> list[list[tuple[float, float]]]:
    """Polyline segments (a None value breaks the line)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x0 + i * dx, y(value)))
    return [s for s in segments if s]


def line_chart_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    threshold: float | None = None,
    y_max: float | None = None,
    y_format: str = "{:.2f}",
    width: int = 560,
    height: int = 200,
) -> str:
    """A small line chart with a legend and an optional dashed threshold line, as inline SVG."""
    left, right, top, bottom = 44, 12, 24, 36
    values = [v for vs in series.values() for v in vs if v is not None]
    high = y_max if y_max is not None else max([*values, threshold or 0.0, 1e-9])
    low = min([*values, 0.0]) if y_max is None else 0.0
    span = (high - low) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    dx = plot_w / max(len(labels) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h - (min(max(v, low), high) - low) / span * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="{WHITE}" stroke="{BORDER}"/>',
    ]
    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{escape(y_format.format(tick))}</text>"
        )
    step = max(1, math.ceil(len(labels) / 7))
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(
                f'<text x="{left + i * dx:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                f"{escape(label[5:] if len(label) == 10 else label)}</text>"
            )
    if threshold is not None:
        parts.append(
            f'<line class="dw-threshold" x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="{RED}" stroke-dasharray="4 3"/>'
        )
    for n, (name, vs) in enumerate(series.items()):
        color = SERIES[n % len(SERIES)]
        for segment in _points(vs, left, dx, y):
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in segment]
        lx = left + n * 130
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def drift_grid_svg(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, columns: int = 4, cell: int = 150
) -> str:
    """Small multiples: one sparkline per feature, score as a multiple of its threshold (dashed at 1)."""
    cell_h, pad = 64, 6
    rows = max(1, math.ceil(len(series) / columns))
    width, height = columns * cell, rows * cell_h
    dx = (cell - 2 * pad) / max(len(labels) - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart dw-drift-grid" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>Per-feature drift over batches</title>'
    ]
    for n, (name, values) in enumerate(series.items()):
        ox, oy = (n % columns) * cell, (n // columns) * cell_h
        top, plot_h = oy + 16, cell_h - 24

        def y(v: float, top: float = top, plot_h: float = plot_h) -> float:
            return top + plot_h - min(v, EXCEEDANCE_CAP) / EXCEEDANCE_CAP * plot_h

        drifted = any(v is not None and v >= 1 for v in values[-1:])
        parts.append(
            f'<text x="{ox + pad}" y="{oy + 11}" font-size="10" font-weight="{"bold" if drifted else "normal"}">'
            f"{escape(name)}</text>"
        )
        parts.append(
            f'<rect x="{ox + pad}" y="{top}" width="{cell - 2 * pad}" height="{plot_h}" '
            f'fill="{SHADE}" stroke="{BORDER}"/>'
        )
        parts.append(
            f'<line x1="{ox + pad}" x2="{ox + cell - pad}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" '
            f'stroke="{RED}" stroke-dasharray="3 2"/>'
        )
        for segment in _points(values, ox + pad, dx, y):
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            parts.append(f'<polyline fill="none" stroke="{BLUE}" stroke-width="1.5" points="{coords}"/>')
        for i, value in enumerate(values):
            if value is not None and value >= 1:
                parts.append(f'<circle cx="{ox + pad + i * dx:.1f}" cy="{y(value):.1f}" r="2.5" fill="{RED}"/>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- PNG (emails)


def _rgb(colour: str) -> tuple[int, int, int]:
    """A palette colour ("#rrggbb") as the RGB triple a PNG row holds."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _png(width: int, height: int, pixels: list[bytearray]) -> bytes:
    """Encode RGB rows as a PNG: signature, IHDR, one zlib-compressed IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bar_chart_png(
    values: Sequence[float | None],
    *,
    threshold: float | None = None,
    highlight_last: bool = True,
    width: int = 360,
    height: int = 90,
    y_max: float = 1.0,
) -> bytes:
    """Bars (e.g. drift share per batch) with a red threshold line; the last bar stands out.

    No text is drawn (that would need a font); the email says in words what the bars show.
    """
    background, axis, bar, last, red = (255, 255, 255), _rgb(BORDER), _rgb(BLUE), _rgb(PURPLE), _rgb(RED)
    pixels = [bytearray(background * width) for _ in range(height)]

    def paint(x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        for yy in range(max(0, y0), min(height, y1)):
            row = pixels[yy]
            for xx in range(max(0, x0), min(width, x1)):
                row[3 * xx : 3 * xx + 3] = bytes(color)

    margin = 4
    plot_h = height - 2 * margin
    paint(0, height - margin, width, height - margin + 1, axis)
    n = max(len(values), 1)
    slot = (width - 2 * margin) / n
    for i, value in enumerate(values):
        if value is None:
            continue
        h = round(min(max(value, 0.0), y_max) / y_max * plot_h)
        x0 = margin + round(i * slot + slot * 0.15)
        x1 = margin + round((i + 1) * slot - slot * 0.15)
        color = bar
        if threshold is not None and value >= threshold:
            color = red
        if highlight_last and i == len(values) - 1 and color == bar:
            color = last
        paint(x0, height - margin - max(h, 1), max(x1, x0 + 1), height - margin, color)
    if threshold is not None:
        ty = height - margin - round(min(threshold, y_max) / y_max * plot_h)
        for xx in range(margin, width - margin, 6):
            paint(xx, ty, xx + 3, ty + 1, red)
    return _png(width, height, pixels)
