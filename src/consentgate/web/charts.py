"""Server-rendered SVG charts for the DPO console: no script, no CDN, readable without colour.

Each chart is an inline ``<svg role="img">`` with a ``<title>`` and a ``<desc>``; the legend names every
series in words; series differ by dash style and marker shape (lines) or fill pattern (bars), never by
colour alone. The page puts a data table with the same numbers under each chart for screen readers.
Only presentation attributes are used (no ``style``), so the strict Content-Security-Policy holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 760
PLOT_LEFT = 64
PLOT_RIGHT = 16
PLOT_TOP = 16
PLOT_HEIGHT = 240
X_AXIS_SPACE = 56
LEGEND_ROW = 22
LEGEND_COLUMNS = 4

# Dash styles and marker shapes for line series (cycled); all ink-coloured shades of grey.
DASHES = ("", "8 4", "2 3", "12 4 2 4", "4 4", "1 6", "16 6")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "triangle-down", "plus")
INKS = ("#1d1d1f", "#3a3a40", "#55555c", "#1d1d1f", "#3a3a40", "#55555c", "#1d1d1f")
# Fill patterns for bar series (cycled).
PATTERNS = ("solid", "diagonal", "dots", "crosshatch", "horizontal", "none")


@dataclass(frozen=True)
class Series:
    """One named series; ``values`` line up with the chart's x labels (None: no data there)."""

    key: str
    """Stable identifier (e.g. ``EEA``, ``received``): the ``data-series`` attribute."""
    name: str
    """The legend text, in the reader's language."""
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Chart:
    """What a page needs: the SVG, and the same numbers for its data table."""

    chart_id: str
    title: str
    description: str
    x_title: str
    y_title: str
    x_labels: tuple[str, ...]
    series: tuple[Series, ...]
    svg: Markup
    percent: bool = False

    def cell(self, value: float | None) -> str:
        """A value as the data table shows it."""
        if value is None:
            return "–"
        if self.percent:
            return f"{value:.1f} %"
        return f"{value:g}"


def _e(text: object) -> str:
    return str(escape(str(text)))


def _safe(svg: str) -> Markup:
    """Mark the assembled SVG as safe: every piece of text in it went through :func:`_e`."""
    return Markup(svg)  # noqa: S704 - built here from escaped text and numbers only


def _fmt(number: float) -> str:
    text = f"{number:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_step(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^n at or above ``value`` (``value`` > 0)."""
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude * (1 + 1e-9):
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def axis_top(largest: float, *, percent: bool = False, ticks: int = 4) -> float:
    """A round axis maximum at or above ``largest`` whose ``ticks`` steps are round numbers.

    Counts step by whole numbers (at least 1); percentages never go above 100.
    """
    smallest = 0.25 if percent else 1.0
    step = max(smallest, nice_step(largest / ticks)) if largest > 0 else smallest
    top = step * ticks
    return 100.0 if percent and top > 100 else top


def _ticks(top: float, count: int = 4) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _label_every(n: int, room: int) -> int:
    return max(1, math.ceil(n / room))


def _marker(shape: str, x: float, y: float, ink: str, tooltip: str) -> str:
    s = 3.5
    title = f"<title>{_e(tooltip)}</title>"
    common = f'fill="#ffffff" stroke="{ink}" stroke-width="1.5"'
    if shape == "circle":
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{s}" {common}>{title}</circle>'
    if shape == "square":
        return (
            f'<rect x="{_fmt(x - s)}" y="{_fmt(y - s)}" width="{2 * s}" height="{2 * s}" {common}>'
            f"{title}</rect>"
        )
    if shape in ("cross", "plus"):
        left, right, up, down = _fmt(x - s), _fmt(x + s), _fmt(y - s), _fmt(y + s)
        if shape == "cross":
            d = f"M{left} {up}L{right} {down}M{left} {down}L{right} {up}"
        else:
            d = f"M{left} {_fmt(y)}L{right} {_fmt(y)}M{_fmt(x)} {up}L{_fmt(x)} {down}"
        return f'<path d="{d}" fill="none" stroke="{ink}" stroke-width="2">{title}</path>'
    if shape == "triangle":
        points = [(x, y - s - 1), (x + s + 1, y + s), (x - s - 1, y + s)]
    elif shape == "triangle-down":
        points = [(x, y + s + 1), (x + s + 1, y - s), (x - s - 1, y - s)]
    else:  # diamond
        points = [(x, y - s - 1), (x + s + 1, y), (x, y + s + 1), (x - s - 1, y)]
    text = " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py in points)
    return f'<polygon points="{text}" {common}>{title}</polygon>'


def _legend_line(index: int, x: float, y: float) -> str:
    ink, dash, shape = INKS[index % len(INKS)], DASHES[index % len(DASHES)], MARKERS[index % len(MARKERS)]
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{_fmt(x)}" y1="{_fmt(y)}" x2="{_fmt(x + 34)}" y2="{_fmt(y)}" stroke="{ink}" '
        f'stroke-width="2"{dash_attr}/>' + _marker(shape, x + 17, y, ink, "").replace("<title></title>", "")
    )


def _pattern_defs(chart_id: str) -> str:
    parts = ["<defs>"]
    for name in PATTERNS:
        pid = f"{chart_id}-{name}"
        if name == "diagonal":
            body = '<path d="M-1 1L1 -1M0 6L6 0M5 7L7 5" stroke="#1d1d1f" stroke-width="1.5"/>'
        elif name == "dots":
            body = '<circle cx="3" cy="3" r="1.4" fill="#1d1d1f"/>'
        elif name == "crosshatch":
            body = '<path d="M0 0L6 6M6 0L0 6" stroke="#1d1d1f" stroke-width="1"/>'
        elif name == "horizontal":
            body = '<path d="M0 3L6 3" stroke="#1d1d1f" stroke-width="1.5"/>'
        else:
            continue
        parts.append(
            f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="#ffffff"/>{body}</pattern>'
        )
    parts.append("</defs>")
    return "".join(parts)


def _fill(chart_id: str, index: int) -> str:
    name = PATTERNS[index % len(PATTERNS)]
    if name == "solid":
        return "#4a4a4f"
    if name == "none":
        return "#ffffff"
    return f"url(#{chart_id}-{name})"


def _svg_open(chart_id: str, title: str, description: str, height: float) -> str:
    """The opening of every chart: an ``img`` with its title and description for screen readers."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" id="{_e(chart_id)}" '
        f'aria-labelledby="{_e(chart_id)}-title {_e(chart_id)}-desc" font-family="system-ui, sans-serif" '
        f'font-size="12">'
        f'<title id="{_e(chart_id)}-title">{_e(title)}</title>'
        f'<desc id="{_e(chart_id)}-desc">{_e(description)}</desc>'
    )


def _frame(
    chart_id: str,
    title: str,
    description: str,
    x_title: str,
    y_title: str,
    x_labels: Sequence[str],
    top: float,
    percent: bool,
    legend_rows: int,
    body: str,
    defs: str = "",
) -> str:
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    legend_top = PLOT_TOP + PLOT_HEIGHT + X_AXIS_SPACE
    height = legend_top + legend_rows * LEGEND_ROW + 8
    bottom = PLOT_TOP + PLOT_HEIGHT
    out = [
        _svg_open(chart_id, title, description, height),
        defs,
        '<g class="axes">',
    ]
    for tick in _ticks(top):
        y = bottom - tick / top * PLOT_HEIGHT
        label = f"{_fmt(tick)} %" if percent else _fmt(tick)
        out.append(
            f'<line x1="{PLOT_LEFT}" y1="{_fmt(y)}" x2="{PLOT_LEFT + plot_width}" y2="{_fmt(y)}" '
            f'stroke="#c8c8cc" stroke-width="1"/>'
            f'<text x="{PLOT_LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">{_e(label)}</text>'
        )
    out.append(
        f'<line x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{bottom}" stroke="#1d1d1f"/>'
        f'<line x1="{PLOT_LEFT}" y1="{bottom}" x2="{PLOT_LEFT + plot_width}" y2="{bottom}" stroke="#1d1d1f"/>'
    )
    n = max(len(x_labels), 1)
    step = plot_width / n
    every = _label_every(len(x_labels), 13)
    for i, label in enumerate(x_labels):
        if (len(x_labels) - 1 - i) % every:  # counted back from the newest, which is always labelled
            continue
        x = PLOT_LEFT + step * (i + 0.5)
        out.append(
            f'<text x="{_fmt(x)}" y="{bottom + 16}" text-anchor="middle" font-size="10">{_e(label)}</text>'
        )
    out.append(
        f'<text class="x-title" x="{PLOT_LEFT + plot_width / 2:.0f}" y="{bottom + 38}" '
        f'text-anchor="middle">{_e(x_title)}</text>'
        f'<text class="y-title" x="14" y="{PLOT_TOP + PLOT_HEIGHT / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {PLOT_TOP + PLOT_HEIGHT / 2:.0f})">{_e(y_title)}</text>'
    )
    out.append("</g>")
    out.append(body)
    out.append("</svg>")
    return "".join(out)


def _legend_position(index: int) -> tuple[float, float]:
    legend_top = PLOT_TOP + PLOT_HEIGHT + X_AXIS_SPACE
    column, row = index % LEGEND_COLUMNS, index // LEGEND_COLUMNS
    width = (WIDTH - PLOT_LEFT - PLOT_RIGHT) / LEGEND_COLUMNS
    return PLOT_LEFT + column * width, legend_top + row * LEGEND_ROW + 8


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    x_title: str,
    y_title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    percent: bool = False,
) -> Chart:
    """Lines over the x labels; each series with its own dash style and marker shape."""
    values = [v for s in series for v in s.values if v is not None]
    top = axis_top(max(values, default=0.0), percent=percent)
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    step = plot_width / max(len(x_labels), 1)
    bottom = PLOT_TOP + PLOT_HEIGHT
    body: list[str] = []
    for index, s in enumerate(series):
        ink, dash, shape = INKS[index % len(INKS)], DASHES[index % len(DASHES)], MARKERS[index % len(MARKERS)]
        body.append(f'<g class="series" data-series="{_e(s.key)}">')
        points: list[tuple[float, float, str]] = []
        for i, value in enumerate(s.values):
            if value is None or i >= len(x_labels):
                continue
            x = PLOT_LEFT + step * (i + 0.5)
            y = bottom - value / top * PLOT_HEIGHT
            shown = f"{value:.1f} %" if percent else f"{value:g}"
            points.append((x, y, f"{s.name}, {x_labels[i]}: {shown}"))
        if len(points) > 1:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            coordinates = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y, _ in points)
            body.append(
                f'<polyline points="{coordinates}" fill="none" stroke="{ink}" stroke-width="2"{dash_attr}/>'
            )
        body.extend(_marker(shape, x, y, ink, tip) for x, y, tip in points)
        body.append("</g>")
    body.append('<g class="legend">')
    for index, s in enumerate(series):
        x, y = _legend_position(index)
        body.append(
            f'<g data-series="{_e(s.key)}">{_legend_line(index, x, y)}'
            f'<text x="{_fmt(x + 40)}" y="{_fmt(y + 4)}">{_e(s.name)}</text></g>'
        )
    body.append("</g>")
    rows = max(1, math.ceil(len(series) / LEGEND_COLUMNS))
    svg = _frame(chart_id, title, description, x_title, y_title, x_labels, top, percent, rows, "".join(body))
    return Chart(
        chart_id, title, description, x_title, y_title, tuple(x_labels), tuple(series), _safe(svg), percent
    )


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    x_title: str,
    y_title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
) -> Chart:
    """Grouped bars: one group per x label, one bar per series, each series with its own fill pattern."""
    values = [v for s in series for v in s.values if v is not None]
    top = axis_top(max(values, default=0.0))
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    step = plot_width / max(len(x_labels), 1)
    group = step * 0.8
    bar = group / max(len(series), 1)
    bottom = PLOT_TOP + PLOT_HEIGHT
    body: list[str] = []
    for index, s in enumerate(series):
        fill = _fill(chart_id, index)
        body.append(f'<g class="series" data-series="{_e(s.key)}">')
        for i, value in enumerate(s.values):
            if value is None or i >= len(x_labels):
                continue
            height = value / top * PLOT_HEIGHT
            x = PLOT_LEFT + step * i + (step - group) / 2 + bar * index
            body.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(bottom - height)}" width="{_fmt(bar)}" '
                f'height="{_fmt(height)}" fill="{fill}" stroke="#1d1d1f" stroke-width="0.75">'
                f"<title>{_e(f'{s.name}, {x_labels[i]}: {value:g}')}</title></rect>"
            )
        body.append("</g>")
    body.append('<g class="legend">')
    for index, s in enumerate(series):
        x, y = _legend_position(index)
        body.append(
            f'<g data-series="{_e(s.key)}"><rect x="{_fmt(x)}" y="{_fmt(y - 7)}" width="24" height="14" '
            f'fill="{_fill(chart_id, index)}" stroke="#1d1d1f"/>'
            f'<text x="{_fmt(x + 30)}" y="{_fmt(y + 4)}">{_e(s.name)}</text></g>'
        )
    body.append("</g>")
    rows = max(1, math.ceil(len(series) / LEGEND_COLUMNS))
    svg = _frame(
        chart_id,
        title,
        description,
        x_title,
        y_title,
        x_labels,
        top,
        False,
        rows,
        "".join(body),
        _pattern_defs(chart_id),
    )
    return Chart(chart_id, title, description, x_title, y_title, tuple(x_labels), tuple(series), _safe(svg))


HBAR_LABELS = 250
HBAR_ROW = 22


def hbar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    value_title: str,
    labels: Sequence[str],
    series: Sequence[Series],
) -> Chart:
    """Horizontal bars, one row per label, for data where each label belongs to one series.

    Each label's bar has the fill pattern of the series holding its value (the first with one), its
    number written at the end of the bar, and the legend names the series in words. Readable with
    many long labels (the archive inspector's kinds of data), where grouped columns are not.
    """
    values = [v for s in series for v in s.values if v is not None]
    top = axis_top(max(values, default=0.0))
    plot_left = HBAR_LABELS + 8
    plot_width = WIDTH - plot_left - 48
    rows = max(len(labels), 1)
    plot_bottom = PLOT_TOP + rows * HBAR_ROW
    legend_top = plot_bottom + 44
    height = legend_top + max(1, math.ceil(len(series) / LEGEND_COLUMNS)) * LEGEND_ROW + 8
    out = [
        _svg_open(chart_id, title, description, height),
        _pattern_defs(chart_id),
        '<g class="axes">',
    ]
    for tick in _ticks(top):
        x = plot_left + tick / top * plot_width
        out.append(
            f'<line x1="{_fmt(x)}" y1="{PLOT_TOP}" x2="{_fmt(x)}" y2="{plot_bottom}" stroke="#c8c8cc"/>'
            f'<text x="{_fmt(x)}" y="{plot_bottom + 16}" text-anchor="middle">{_e(_fmt(tick))}</text>'
        )
    out.append(
        f'<line x1="{plot_left}" y1="{PLOT_TOP}" x2="{plot_left}" y2="{plot_bottom}" stroke="#1d1d1f"/>'
        f'<text class="x-title" x="{plot_left + plot_width / 2:.0f}" y="{plot_bottom + 34}" '
        f'text-anchor="middle">{_e(value_title)}</text></g>'
    )
    for index, s in enumerate(series):
        fill = _fill(chart_id, index)
        out.append(f'<g class="series" data-series="{_e(s.key)}">')
        for i, value in enumerate(s.values):
            if value is None or i >= len(labels):
                continue
            y = PLOT_TOP + i * HBAR_ROW
            width = value / top * plot_width
            out.append(
                f'<rect x="{plot_left}" y="{_fmt(y + 4)}" width="{_fmt(width)}" height="{HBAR_ROW - 8}" '
                f'fill="{fill}" stroke="#1d1d1f" stroke-width="0.75">'
                f"<title>{_e(f'{labels[i]}: {value:g} ({s.name})')}</title></rect>"
                f'<text x="{_fmt(plot_left + width + 4)}" y="{_fmt(y + HBAR_ROW / 2 + 4)}">'
                f"{_e(f'{value:g}')}</text>"
            )
        out.append("</g>")
    out.append('<g class="labels">')
    for i, label in enumerate(labels):
        short = label if len(label) <= 40 else label[:39] + "…"
        baseline = PLOT_TOP + i * HBAR_ROW + HBAR_ROW / 2 + 4
        out.append(f'<text x="{HBAR_LABELS}" y="{_fmt(baseline)}" text-anchor="end">{_e(short)}</text>')
    out.append('</g><g class="legend">')
    for index, s in enumerate(series):
        x = PLOT_LEFT + (index % LEGEND_COLUMNS) * ((WIDTH - PLOT_LEFT) / LEGEND_COLUMNS)
        y = legend_top + (index // LEGEND_COLUMNS) * LEGEND_ROW
        out.append(
            f'<g data-series="{_e(s.key)}"><rect x="{_fmt(x)}" y="{_fmt(y - 7)}" width="24" height="14" '
            f'fill="{_fill(chart_id, index)}" stroke="#1d1d1f"/>'
            f'<text x="{_fmt(x + 30)}" y="{_fmt(y + 4)}">{_e(s.name)}</text></g>'
        )
    out.append("</g></svg>")
    return Chart(
        chart_id, title, description, "", value_title, tuple(labels), tuple(series), _safe("".join(out))
    )
