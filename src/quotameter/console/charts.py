"""The organization page's charts as server-rendered SVG: pure functions from numbers to
geometry, and from geometry to markup. No script draws them, so they print, need no asset of
their own, and every chart carries its numbers as text (`<title>`, `aria-label`).

Colours come from classes (console.css: `--included` green, `--granted` purple, `--used`
blue, `--maximum` grey, `--overage`), never from style attributes, which the CSP forbids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

ZERO = Decimal(0)
WIDTH = 1000  # the bar's user units: a position is a thousandth of the scale
BAR_HEIGHT = 40
USED_TOP, USED_HEIGHT = 10, 20  # the used bar inside the allowance track


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str  # included | granted | maximum | overage | used
    start: Decimal  # in the meter's unit
    end: Decimal


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str  # threshold | hard-limit | level
    at: Decimal
    label: str


@dataclass(frozen=True, slots=True)
class Bar:
    """A balance as a horizontal bar over `[0, top]` of the meter's unit."""

    top: Decimal
    segments: tuple[Segment, ...]
    marks: tuple[Mark, ...]

    def x(self, value: Decimal) -> Decimal:
        """`value`'s position in the bar's user units (0 to WIDTH), clipped to the bar."""
        if self.top <= 0:
            return ZERO
        return min(Decimal(WIDTH), max(ZERO, value * WIDTH / self.top)).quantize(Decimal("0.1"))


def bar(
    *,
    usage: Decimal,
    included: Decimal | None,
    granted: Decimal,
    limit: Decimal | None,
    hard_limit: Decimal | None,
    level: Decimal | None = None,
    thresholds: Sequence[Decimal] = (),
) -> Bar:
    """The bar's geometry. The track: included (green) then granted top-ups and credits
    (purple) up to the limit; past the limit, up to the hard limit, the maximum (grey) — the
    overage zone, marked along the bottom, where usage goes on (billed, or within the slack).
    Without a hard limit, the overage zone runs to the end of the bar. Over the track, the
    used part (blue). Marks: each notify level (`thresholds`, percent of the limit), the hard
    limit, and a gauge's level now. Without a limit, the bar is the usage alone."""
    if limit is None:
        top = usage if usage > 0 else Decimal(1)
        return Bar(top, (Segment("used", ZERO, usage),), ())
    base = included if included is not None else limit - granted
    top = max(limit, usage, hard_limit if hard_limit is not None else limit)
    if top <= 0:
        top = Decimal(1)
    segments = [Segment("included", ZERO, max(ZERO, base))]
    if granted > 0:
        segments.append(Segment("granted", max(ZERO, base), limit))
    if hard_limit is not None and hard_limit > limit:
        segments.append(Segment("maximum", limit, hard_limit))
        segments.append(Segment("overage", limit, hard_limit))
    elif hard_limit is None and top > limit:
        segments.append(Segment("overage", limit, top))
    segments.append(Segment("used", ZERO, usage))
    marks = [
        Mark("threshold", limit * percent / 100, f"{_plain(percent)} %")
        for percent in sorted(set(thresholds))
        if 0 < percent < 100
    ]
    if hard_limit is not None:
        marks.append(Mark("hard-limit", hard_limit, "hard limit"))
    if level is not None:
        marks.append(Mark("level", level, "level now"))
    return Bar(top, tuple(segments), tuple(marks))


def bar_svg(geometry: Bar, label: str) -> Markup:
    """The bar as an SVG image; `label` (e.g. "4,526 of 5,000 minutes") is its accessible name
    and its tooltip."""
    text = escape(label)
    parts = [
        f'<svg class="meter-bar" role="img" aria-label="{text}" viewBox="0 0 {WIDTH} '
        f'{BAR_HEIGHT}" preserveAspectRatio="none" width="100%" height="{BAR_HEIGHT}">',
        f"<title>{text}</title>",
        f'<rect class="seg-track" x="0" y="0" width="{WIDTH}" height="{BAR_HEIGHT}"/>',
    ]
    for seg in geometry.segments:
        x0, x1 = geometry.x(seg.start), geometry.x(seg.end)
        if x1 <= x0:
            continue
        y, h = {
            "used": (USED_TOP, USED_HEIGHT),
            "overage": (BAR_HEIGHT - 4, 4),
        }.get(seg.kind, (0, BAR_HEIGHT))
        parts.append(
            f'<rect class="seg-{seg.kind}" x="{x0}" y="{y}" width="{x1 - x0}" height="{h}"/>'
        )
    edge = Decimal(2)  # a mark at either end stays whole inside the bar
    for mark in geometry.marks:
        x = min(max(geometry.x(mark.at), edge), WIDTH - edge)
        parts.append(
            f'<line class="mark-{mark.kind}" x1="{x}" y1="0" x2="{x}" y2="{BAR_HEIGHT}" '
            f'vector-effect="non-scaling-stroke"><title>{escape(mark.label)}</title></line>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# --- usage by day -----------------------------------------------------------------------------

CHART_HEIGHT = 120
GAP = Decimal("0.15")  # of each day's slot, between bars


@dataclass(frozen=True, slots=True)
class Column:
    x: Decimal
    y: Decimal
    width: Decimal
    height: Decimal
    title: str


def columns(values: Sequence[Decimal], titles: Sequence[str]) -> list[Column]:
    """One bar per value over a WIDTH × CHART_HEIGHT area, the highest value full height;
    `titles` (one per value) say each bar's day and number."""
    if len(values) != len(titles):
        raise ValueError("titles: one per value")
    if not values:
        return []
    highest = max(values)
    slot = Decimal(WIDTH) / len(values)
    out = []
    for i, (value, title) in enumerate(zip(values, titles, strict=True)):
        height = ZERO if highest <= 0 else max(ZERO, value) * CHART_HEIGHT / highest
        height = height.quantize(Decimal("0.1"))
        out.append(
            Column(
                (slot * i + slot * GAP / 2).quantize(Decimal("0.1")),
                Decimal(CHART_HEIGHT) - height,
                (slot * (1 - GAP)).quantize(Decimal("0.1")),
                height,
                title,
            )
        )
    return out


def columns_svg(found: Sequence[Column], label: str) -> Markup:
    """The days as an SVG bar chart: every bar has its own `<title>`."""
    text = escape(label)
    parts = [
        f'<svg class="day-chart" role="img" aria-label="{text}" viewBox="0 0 {WIDTH} '
        f'{CHART_HEIGHT}" preserveAspectRatio="none" width="100%" height="{CHART_HEIGHT}">',
        f"<title>{text}</title>",
        f'<line class="axis" x1="0" y1="{CHART_HEIGHT}" x2="{WIDTH}" y2="{CHART_HEIGHT}" '
        'vector-effect="non-scaling-stroke"/>',
    ]
    for col in found:
        # a day without usage keeps a sliver, so that its title can still be hovered
        height, y = (col.height, col.y) if col.height > 0 else (Decimal(1), CHART_HEIGHT - 1)
        parts.append(
            f'<rect class="day" x="{col.x}" y="{y}" width="{col.width}" height="{height}">'
            f"<title>{escape(col.title)}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
