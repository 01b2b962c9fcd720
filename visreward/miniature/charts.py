"""Inline SVG charts for the reports, drawn so that they cannot mislead: every y-axis starts at a reference the caller
states (0 for a fraction, chance for an AUC, the base for "moved toward target"), a seed spread is a band, a target
is a dashed line, and the legend is HTML under the chart, where it wraps instead of running off."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from ..evaluation.metrics import mean_sd

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
WIDTH, HEIGHT = 440, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 425, 12, 210  # the plot area

# a point is (x, mean) or (x, mean, sd over seeds)
Point = tuple[float, float] | tuple[float, float, float]


@dataclass(frozen=True)
class YAxis:
    label: str
    start: float  # the reference the axis starts from; data below it extends the axis down
    end: float  # the axis reaches at least this; data above it extends it up
    why: str  # why it starts there, said under the chart
    lines: dict[str, float] = field(default_factory=dict)  # reference levels drawn dashed, e.g. {"target": 1.0}
    bounds: tuple[float, float] | None = None  # what the measure can be (a fraction: 0 to 1); a band stops there


def mean_and_spread(curves: list[list[tuple[float, float]]]) -> list[Point]:
    """Several seeds' curves over the same x (cut to the shortest) as one curve of (x, mean, sd)."""
    length = min(len(curve) for curve in curves)
    return [(x, *mean_sd([curve[i][1] for curve in curves])) for i, (x, _) in enumerate(curves[0][:length])]


def _to_pixels(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    return out_lo + (value - lo) / ((hi - lo) or 1.0) * (out_hi - out_lo)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """The finest round steps (1, 2, 2.5 or 5 times a power of ten) that cover `lo` to `hi` in at most `count` + 1
    ticks, from at or below `lo` to at or above `hi`."""
    if hi <= lo:  # a flat curve: show a unit (or its own size) above it
        hi = lo + (abs(lo) or 1.0)
    power = 10.0 ** math.floor(math.log10((hi - lo) / count) - 1)
    for step in (m * power * 10 ** k for k in range(4) for m in (1, 2, 2.5, 5)):
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if last - first <= count:
            return [round(i * step, 12) for i in range(first, last + 1)]
    raise AssertionError("unreachable: a step of (hi - lo) covers the range in two ticks")


def _legend(entries: list[tuple[str, str]]) -> str:
    return "".join(f'<span class="key"><span style="background:{colour}"></span>{html.escape(name)}</span>'
                   for name, colour in entries)


def _figure(title: str, xlabel: str, ylabel: str, body: str, legend: str, why: str) -> str:
    axes = (f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#444"/>'
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#444"/>'
            f'<text x="{(LEFT + RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text x="12" y="{(TOP + BOTTOM) / 2}" transform="rotate(-90 12 {(TOP + BOTTOM) / 2})" '
            f'text-anchor="middle">{html.escape(ylabel)}</text>')
    return (f'<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">'
            f'<title>{html.escape(title)}</title>{axes}{body}</svg><figcaption><b>{html.escape(title)}</b>'
            f'<br>{legend}<br><small>{html.escape(why)}</small></figcaption></figure>')


def line_chart(series: dict[str, list[Point]], title: str, xlabel: str, y: YAxis, x_format=lambda x: f"{x:.3g}") -> str:
    """One curve per series, each with a band of ± its sd where it has one; y from `y.start`, x over the data."""
    points = [p for values in series.values() for p in values]
    xs = [p[0] for p in points]
    low_bound, high_bound = y.bounds or (-math.inf, math.inf)

    def band(p: Point) -> tuple[float, float]:
        spread = p[2] if len(p) > 2 else 0.0
        return max(low_bound, p[1] - spread), min(high_bound, p[1] + spread)

    lows, highs = [band(p)[0] for p in points], [band(p)[1] for p in points]
    y_ticks = _ticks(min([y.start, *lows, *y.lines.values()]), max([y.end, *highs, *y.lines.values()]))
    lo, hi = y_ticks[0], y_ticks[-1]
    x_lo, x_hi = min(xs), max(xs)

    def px(x):
        return _to_pixels(x, x_lo, x_hi, LEFT + 8, RIGHT - 8)

    def py(v):
        return _to_pixels(v, lo, hi, BOTTOM, TOP)

    body = []
    for tick in y_ticks:
        body.append(f'<line x1="{LEFT}" y1="{py(tick):.1f}" x2="{RIGHT}" y2="{py(tick):.1f}" stroke="#eee"/>'
                    f'<text x="{LEFT - 4}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    distinct = sorted(set(xs))
    for tick in distinct if len(distinct) <= 8 else [x for x in _ticks(x_lo, x_hi) if x_lo <= x <= x_hi]:
        body.append(f'<text x="{px(tick):.1f}" y="{BOTTOM + 16}" text-anchor="middle">{html.escape(x_format(tick))}</text>')
    for name, level in y.lines.items():
        body.append(f'<line x1="{LEFT}" y1="{py(level):.1f}" x2="{RIGHT}" y2="{py(level):.1f}" stroke="#555" '
                    f'stroke-dasharray="5 4"/><text x="{RIGHT - 2}" y="{py(level) - 3:.1f}" text-anchor="end" '
                    f'fill="#555">{html.escape(name)}</text>')
    legend = []
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        legend.append((name, colour))
        if any(len(p) > 2 and p[2] > 0 for p in values):
            edge = [(px(p[0]), py(band(p)[1])) for p in values] + [(px(p[0]), py(band(p)[0])) for p in reversed(values)]
            body.append(f'<polygon fill="{colour}" fill-opacity="0.15" stroke="none" '
                        f'points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in edge)}"/>')
        line = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in values)
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
        if len(values) <= 12:
            body += [f'<circle cx="{px(p[0]):.1f}" cy="{py(p[1]):.1f}" r="3" fill="{colour}"/>' for p in values]
    spread = " Bands: ± 1 sd over seeds." if any(len(p) > 2 and p[2] > 0 for p in points) else ""
    return _figure(title, xlabel, y.label, "".join(body), _legend(legend),
                   f"y-axis from {y.start:.3g}: {y.why}.{spread}")


def histogram(groups: dict[str, list[float]], title: str, xlabel: str, bins: int = 24) -> str:
    """Each group's scores as the fraction in each bin, overlaid; the range is the pooled 0.5-99.5% quantiles."""
    everything = [v for values in groups.values() for v in values]
    lo, hi = float(np.quantile(everything, 0.005)), float(np.quantile(everything, 0.995))
    edges = np.linspace(lo, hi, bins + 1)
    counts = {name: np.histogram(np.clip(values, lo, hi), bins=edges)[0] / max(1, len(values))
              for name, values in groups.items()}
    top = max(c.max() for c in counts.values()) or 1.0
    width = (RIGHT - LEFT - 10) / bins
    body, legend = [], []
    y_ticks = _ticks(0, top)
    top = y_ticks[-1]
    for tick in y_ticks:
        y = _to_pixels(tick, 0, top, BOTTOM, TOP)
        body.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for i, (name, fractions) in enumerate(counts.items()):
        colour = COLOURS[i % len(COLOURS)]
        legend.append((f"{name} ({len(groups[name])})", colour))
        for j, fraction in enumerate(fractions):
            height = fraction / top * (BOTTOM - TOP)
            body.append(f'<rect x="{LEFT + 5 + j * width:.1f}" y="{BOTTOM - height:.1f}" width="{width:.1f}" '
                        f'height="{height:.1f}" fill="{colour}" fill-opacity="0.45"/>')
    body.append(f'<text x="{LEFT + 5}" y="{BOTTOM + 16}">{lo:.2f}</text>'
                f'<text x="{RIGHT - 5}" y="{BOTTOM + 16}" text-anchor="end">{hi:.2f}</text>')
    return _figure(title, xlabel, "fraction", "".join(body), _legend(legend),
                   "y-axis from 0; the x range holds 99% of the scores (the rest are counted at its ends).")
