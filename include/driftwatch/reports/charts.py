"""Trend charts drawn in pure Python: SVG for pages, a tiny PNG for emails.

Nothing (script, style, font) is ever fetched from a CDN, because many deployments are
air-gapped. Labels come from data and are escaped.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftwatch.reports.markup import escape
from driftwatch.reports.style import BLUE, BORDER, PURPLE, RED, SERIES, SHADE, TEXT, WHITE

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


@dataclass(frozen=True)
class _Axes:
    """The plot area of a chart and the scales that place values and batches in it."""

    width: int
    height: int
    low: float
    high: float
    count: int
    left: int = 44
    right: int = 12
    top: int = 24
    bottom: int = 36

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def dx(self) -> float:
        return self.plot_w / max(self.count - 1, 1)

    def x(self, i: int) -> float:
        return self.left + i * self.dx

    def y(self, v: float) -> float:
        span = (self.high - self.low) or 1.0
        return self.top + self.plot_h - (min(max(v, self.low), self.high) - self.low) / span * self.plot_h

    def segments(self, values: Sequence[float | None]) -> list[list[tuple[float, float]]]:
        return _points(values, self.left, self.dx, self.y)


def _frame(axes: _Axes, labels: Sequence[str], title: str, y_format: str) -> list[str]:
    """The opening of a chart: title, plot area, three value ticks and about seven batch labels."""
    width, height, left = axes.width, axes.height, axes.left
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{axes.top}" width="{axes.plot_w}" height="{axes.plot_h}" fill="{WHITE}" '
        f'stroke="{BORDER}"/>',
    ]
    for tick in (axes.low, (axes.low + axes.high) / 2, axes.high):
        parts.append(
            f'<text x="{left - 4}" y="{axes.y(tick) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{escape(y_format.format(tick))}</text>"
        )
    step = max(1, math.ceil(len(labels) / 7))
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(
                f'<text x="{axes.x(i):.1f}" y="{height - axes.bottom + 14}" font-size="10" text-anchor="middle">'
                f"{escape(_short(label))}</text>"
            )
    return parts


def _short(label: str) -> str:
    """A batch date without its year (the axis is narrow); any other label as it is."""
    return label[5:] if len(label) == 10 else label


def _legend(axes: _Axes, n: int, name: str, swatch: str) -> list[str]:
    """The n-th legend entry under the plot: a swatch (SVG drawn at the origin) and its name."""
    lx = axes.left + n * 130
    return [
        f'<g transform="translate({lx},{axes.height - 14})">{swatch}</g>',
        f'<text x="{lx + 14}" y="{axes.height - 5}" font-size="10">{escape(name)}</text>',
    ]


def _polyline(segment: Sequence[tuple[float, float]], color: str, extra: str = "", stroke: float = 2) -> str:
    """One unbroken run of a series; `extra` holds further attributes (from code, never from data)."""
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
    return f'<polyline fill="none" stroke="{color}" stroke-width="{stroke:g}"{extra} points="{coords}"/>'


def _widen(segment: list[tuple[float, float]], half: float = 3.0) -> list[tuple[float, float]]:
    """A lone point as a short horizontal stroke: a one-point polyline or polygon draws nothing."""
    if len(segment) != 1:
        return segment
    (px, py) = segment[0]
    return [(px - half, py), (px + half, py)]


def line_chart_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    threshold: float | None = None,
    y_max: float | None = None,
    y_min: float | None = None,
    y_format: str = "{:.2f}",
    width: int = 560,
    height: int = 200,
) -> str:
    """A small line chart with a legend and an optional dashed threshold line, as inline SVG.

    The value axis starts at 0 (or below, for negative values) unless `y_min` is given.
    """
    values = [v for vs in series.values() for v in vs if v is not None]
    high = y_max if y_max is not None else max([*values, threshold or 0.0, 1e-9])
    low = min([*values, 0.0]) if y_max is None else 0.0
    low = low if y_min is None else y_min
    axes = _Axes(width, height, low, high, len(labels))
    parts = _frame(axes, labels, title, y_format)
    if threshold is not None:
        ty = axes.y(threshold)
        parts.append(
            f'<line class="dw-threshold" x1="{axes.left}" x2="{axes.left + axes.plot_w}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}" stroke="{RED}" stroke-dasharray="4 3"/>'
        )
    for n, (name, vs) in enumerate(series.items()):
        color = SERIES[n % len(SERIES)]
        for segment in axes.segments(vs):
            parts.append(_polyline(segment, color))
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in segment]
        parts += _legend(axes, n, name, f'<rect width="10" height="10" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _fitted(values: Sequence[float]) -> tuple[float, float]:
    """A value range around the data with a margin: a metric near 0.7 drawn from 0 would flatten its band."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or abs(high) * 0.05 or 0.05
    return (max(low - pad, 0.0) if low >= 0 else low - pad), high + pad


def band_chart_svg(
    labels: Sequence[str],
    band: tuple[Sequence[float | None], Sequence[float | None], Sequence[float | None]],
    *,
    points: Sequence[float | None],
    reference: Sequence[float | None],
    title: str,
    names: tuple[str, str, str] = ("estimated", "realized", "evaluated"),
    y_format: str = "{:.3f}",
    width: int = 560,
    height: int = 200,
) -> str:
    """An estimate as a shaded band (lower, middle, upper) with its line, observed points and a dashed reference.

    Each point carries its batch and value as a tooltip; the value axis is fitted to the data.
    """
    lower, middle, upper = band
    values = [v for vs in (lower, middle, upper, points, reference) for v in vs if v is not None]
    axes = _Axes(width, height, *_fitted(values), len(labels))
    parts = _frame(axes, labels, title, y_format)
    estimate, realized, evaluated = SERIES[0], TEXT, SERIES[1]
    # Only where both bounds exist, so that the lower and upper segments pair up one to one.
    both = [lo is not None and up is not None for lo, up in zip(lower, upper, strict=False)]
    lows = axes.segments([lo if ok else None for lo, ok in zip(lower, both, strict=False)])
    ups = axes.segments([up if ok else None for up, ok in zip(upper, both, strict=False)])
    for low_segment, up_segment in zip(lows, ups, strict=True):
        outline = [*_widen(up_segment), *reversed(_widen(low_segment))]
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in outline)
        parts.append(f'<polygon class="dw-band" fill="{estimate}" fill-opacity="0.2" points="{coords}"/>')
    parts += [_polyline(_widen(s), estimate) for s in axes.segments(middle)]
    dashed = ' class="dw-evaluated" stroke-dasharray="6 3"'
    parts += [_polyline(_widen(s), evaluated, dashed) for s in axes.segments(reference)]
    for i, value in enumerate(points):
        if value is not None and i < len(labels):
            parts.append(
                f'<circle class="dw-realized" cx="{axes.x(i):.1f}" cy="{axes.y(value):.1f}" r="3.5" '
                f'fill="{realized}" stroke="{WHITE}"><title>{escape(labels[i])}: '
                f"{escape(y_format.format(value))}</title></circle>"
            )
    swatches = (
        f'<rect width="10" height="10" fill="{estimate}" fill-opacity="0.35" stroke="{estimate}"/>',
        f'<circle cx="5" cy="5" r="3.5" fill="{realized}"/>',
        f'<line x1="0" x2="10" y1="5" y2="5" stroke="{evaluated}" stroke-width="2" stroke-dasharray="3 2"/>',
    )
    for n, (name, swatch) in enumerate(zip(names, swatches, strict=True)):
        parts += _legend(axes, n, name, swatch)
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
        parts += [_polyline(segment, BLUE, stroke=1.5) for segment in _points(values, ox + pad, dx, y)]
        for i, value in enumerate(values):
            if value is not None and value >= 1:
                parts.append(f'<circle cx="{ox + pad + i * dx:.1f}" cy="{y(value):.1f}" r="2.5" fill="{RED}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _clip_label(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _extent(
    series: Mapping[str, Sequence[float | None]], errors: Mapping[str, Sequence[float | None]]
) -> tuple[float, float]:
    """The value range of bars and their whiskers, always including 0 (where bars start)."""
    ends = [0.0]
    for name, values in series.items():
        for value, error in zip(values, errors[name], strict=True):
            if value is not None:
                ends += [value - (error or 0.0), value + (error or 0.0)]
    return min(ends), max([*ends, 1e-9])


def paired_bars_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    errors: Mapping[str, Sequence[float | None]] | None = None,
    value_format: str = "{:.3f}",
    width: int = 560,
    bar: int = 8,
) -> str:
    """Horizontal bars, one row per label with the series side by side, ± error whiskers, as inline SVG.

    Bars grow from a zero line, to the left for negative values; each carries its value as a tooltip.
    """
    whiskers = {name: (errors or {}).get(name) or [None] * len(values) for name, values in series.items()}
    group = bar * max(len(series), 1) + 6
    gutter = 12 + 6 * max([len(_clip_label(str(label))) for label in labels] or [1])
    height = 24 + group * len(labels) + 44
    axes = _Axes(width, height, *_extent(series, whiskers), len(labels), left=gutter, right=16)

    def x(v: float) -> float:
        return axes.left + (v - axes.low) / ((axes.high - axes.low) or 1.0) * axes.plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart dw-bars" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="{axes.left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    for i, label in enumerate(labels):
        y0 = axes.top + i * group
        parts.append(
            f'<text x="{axes.left - 6}" y="{y0 + group / 2 + 3:.1f}" font-size="10" text-anchor="end">'
            f"{escape(_clip_label(str(label)))}</text>"
        )
        for n, (name, values) in enumerate(series.items()):
            value, error = values[i], whiskers[name][i]
            if value is None:
                continue
            color, y = SERIES[n % len(SERIES)], y0 + 3 + n * bar
            low, high = sorted((x(0.0), x(value)))
            tip = value_format.format(value) + (f" ± {value_format.format(error)}" if error else "")
            parts.append(
                f'<rect x="{low:.1f}" y="{y}" width="{max(high - low, 1.0):.1f}" height="{bar - 1}" fill="{color}">'
                f"<title>{escape(name)}, {escape(label)}: {escape(tip)}</title></rect>"
            )
            if error:
                parts.append(
                    f'<line x1="{x(value - error):.1f}" x2="{x(value + error):.1f}" y1="{y + bar / 2:.1f}" '
                    f'y2="{y + bar / 2:.1f}" stroke="{TEXT}"/>'
                )
    bottom = axes.top + group * len(labels)
    parts.append(f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{axes.top}" y2="{bottom}" stroke="{BORDER}"/>')
    # The negative end only when it is far enough from 0 for both numbers to be read.
    ticks = (axes.low, 0.0, axes.high) if x(0.0) - x(axes.low) > 40 else (0.0, axes.high)
    for tick in ticks:
        parts.append(
            f'<text x="{x(tick):.1f}" y="{bottom + 12}" font-size="10" text-anchor="middle">'
            f"{escape(value_format.format(tick))}</text>"
        )
    for n, name in enumerate(series):
        parts += _legend(axes, n, name, f'<rect width="10" height="10" fill="{SERIES[n % len(SERIES)]}"/>')
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
