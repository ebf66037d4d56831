"""Small inline SVG pictures for the statistics table: a numeric feature's buckets, a categorical one's top values.

The figures come from StatisticsGen's ``summary.json`` (TFDV's equal-width histogram and top values), so the UI
reads no protobuf. Each picture shows this span's split as bars and overlays, for the same feature, the previous
span's same split (a dashed outline) and this span's other split (dots), so drift and train/eval skew show at a
glance. Splits and spans differ in size, so heights are shares of the examples (density for buckets of different
widths); every bar's and overlay's title carries the counts themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from airflow_provider_mlpipe.ui.plots import finite_number

WIDTH, HEIGHT, PAD_X, PAD_TOP, PAD_BOTTOM = 190, 58, 2, 4, 12
CURRENT, PREVIOUS, OTHER = "#1f6feb", "#d9480f", "#495057"
MAX_TOP_VALUES = 8


@dataclass(frozen=True)
class Bucket:
    low: float
    high: float
    count: float


@dataclass(frozen=True)
class Series:
    """One feature's figures in one split of one span, and what to call them in a title."""

    label: str  # e.g. "train, span 20240102"
    buckets: list[Bucket]
    top_values: list[tuple[str, float]]
    total: float  # examples with a value (the denominator of every share)


def series_of(entry: dict[str, Any] | None, label: str) -> Series | None:
    """The figures of a ``summary.json`` feature entry, or None when it has neither buckets nor top values."""
    if not isinstance(entry, dict):
        return None
    buckets = []
    for raw in entry.get("histogram") or []:
        if isinstance(raw, dict):
            low, high, count = (finite_number(raw.get(k)) for k in ("low", "high", "count"))
            if low is not None and high is not None and count is not None and high >= low:
                buckets.append(Bucket(low, high, count))
    tops = []
    for raw in entry.get("top_values") or []:
        count = finite_number(raw.get("count")) if isinstance(raw, dict) else None
        if count is not None:
            tops.append((str(raw.get("value")), count))
    if not buckets and not tops:
        return None
    present = finite_number(entry.get("present", entry.get("count")))
    total = present if present else (sum(b.count for b in buckets) or sum(c for _, c in tops))
    return Series(label, buckets, tops, total)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if not float(value).is_integer() else str(int(value))


def _bucket_tip(feature: str, series: Series, bucket: Bucket) -> str:
    return f"{feature} {series.label}: [{_fmt(bucket.low)}, {_fmt(bucket.high)}] {_share(bucket.count, series.total)}"


def _share(count: float, total: float) -> str:
    return f"{_fmt(count)} of {_fmt(total)} ({100 * count / total:.1f}%)" if total else _fmt(count)


def _svg(kind: str, feature: str, body: list[str], summary: str) -> str:
    return (
        f'<svg class="histogram {kind}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" data-feature="{escape(feature)}" '
        f'aria-label="{escape(summary)}"><title>{escape(summary)}</title>'
        f'<line x1="{PAD_X}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH - PAD_X}" y2="{HEIGHT - PAD_BOTTOM}" '
        f'stroke="#adb5bd"/>{"".join(body)}</svg>'
    )


def feature_chart(feature: str, current: Series | None, previous: Series | None, other: Series | None) -> str:
    """The picture for one row of the statistics table, or "" when this split has no figures for the feature."""
    if current is None:
        return ""
    if current.buckets:
        return _bucket_chart(feature, current, *(s if s and s.buckets else None for s in (previous, other)))
    return _top_values_chart(feature, current, *(s if s and s.top_values else None for s in (previous, other)))


# ----- numeric: buckets -----------------------------------------------------------------------------------
def _widths(series: Series, nominal: float) -> list[float]:
    # A constant feature has one bucket of zero width; give it a nominal width so it has a height.
    return [(b.high - b.low) or nominal for b in series.buckets]


def _bucket_chart(feature: str, current: Series, previous: Series | None, other: Series | None) -> str:
    shown = [s for s in (current, previous, other) if s is not None]
    low = min(b.low for s in shown for b in s.buckets)
    high = max(b.high for s in shown for b in s.buckets)
    nominal = (high - low) / 40 or 1.0
    if high == low:
        low, high = low - nominal * 20, high + nominal * 20

    def density(series: Series) -> list[float]:
        widths = _widths(series, nominal)
        return [b.count / (series.total or 1) / w for b, w in zip(series.buckets, widths, strict=True)]

    peak = max(max(density(s), default=0.0) for s in shown) or 1.0
    plot_w, plot_h, base = WIDTH - 2 * PAD_X, HEIGHT - PAD_TOP - PAD_BOTTOM, HEIGHT - PAD_BOTTOM

    def x(value: float) -> float:
        return PAD_X + plot_w * (value - low) / (high - low)

    def y(value: float) -> float:
        return base - plot_h * value / peak

    body = []
    for bucket, d, w in zip(current.buckets, density(current), _widths(current, nominal), strict=True):
        left = x(bucket.low - (nominal / 2 if bucket.high == bucket.low else 0))
        right = max(left + 1, x(bucket.low + w - (nominal / 2 if bucket.high == bucket.low else 0)) - 0.6)
        body.append(
            f'<rect class="bar" x="{left:.1f}" y="{y(d):.1f}" width="{right - left:.1f}" height="{base - y(d):.1f}" '
            f'fill="{CURRENT}" fill-opacity="0.55" data-count="{bucket.count!r}">'
            f"<title>{escape(_bucket_tip(feature, current, bucket))}</title></rect>"
        )
    if previous is not None:
        points = []
        for bucket, d in zip(previous.buckets, density(previous), strict=True):
            points += [f"{x(bucket.low):.1f},{y(d):.1f}", f"{x(bucket.high):.1f},{y(d):.1f}"]
        counts = ", ".join(f"[{_fmt(b.low)}, {_fmt(b.high)}] {_fmt(b.count)}" for b in previous.buckets)
        tip = f"{feature} {previous.label} (dashed): {counts} of {_fmt(previous.total)}"
        body.append(
            f'<polyline class="overlay previous" points="{" ".join(points)}" fill="none" stroke="{PREVIOUS}" '
            f'stroke-width="1.4" stroke-dasharray="3 2"><title>{escape(tip)}</title></polyline>'
        )
    if other is not None:
        for bucket, d in zip(other.buckets, density(other), strict=True):
            body.append(
                f'<circle class="overlay other" cx="{x((bucket.low + bucket.high) / 2):.1f}" cy="{y(d):.1f}" r="2" '
                f'fill="{OTHER}"><title>{escape(_bucket_tip(feature, other, bucket))}</title></circle>'
            )
    body.append(
        f'<text x="{PAD_X}" y="{HEIGHT - 2}" font-size="8" fill="#868e96">{escape(_fmt(low))}</text>'
        f'<text x="{WIDTH - PAD_X}" y="{HEIGHT - 2}" font-size="8" fill="#868e96" text-anchor="end">'
        f"{escape(_fmt(high))}</text>"
    )
    summary = f"{feature} {current.label}: {len(current.buckets)} buckets of {_fmt(current.total)} values"
    return _svg("numeric", feature, body, summary)


# ----- categorical: top values ----------------------------------------------------------------------------
def _top_values_chart(feature: str, current: Series, previous: Series | None, other: Series | None) -> str:
    values = current.top_values[:MAX_TOP_VALUES]
    shares = {s.label: {v: c / (s.total or 1) for v, c in s.top_values} for s in (previous, other) if s}
    peak = max([c / (current.total or 1) for _, c in values] + [v for d in shares.values() for v in d.values()])
    plot_h, base = HEIGHT - PAD_TOP - PAD_BOTTOM, HEIGHT - PAD_BOTTOM
    slot = (WIDTH - 2 * PAD_X) / max(len(values), 1)

    def y(share: float) -> float:
        return base - plot_h * share / (peak or 1)

    bars: list[str] = []
    marks: list[str] = []  # drawn over the bars
    for i, (value, count) in enumerate(values):
        left = PAD_X + i * slot
        share = count / (current.total or 1)
        notes = []
        for series, cls in ((previous, "previous"), (other, "other")):
            if series is None:
                continue
            theirs = dict(series.top_values).get(value)
            if theirs is None:
                notes.append(f"{series.label}: not among its top values")
                continue
            notes.append(f"{series.label}: {_share(theirs, series.total)}")
            level = y(theirs / (series.total or 1))
            if cls == "previous":
                marks.append(
                    f'<line class="overlay previous" x1="{left + 1:.1f}" y1="{level:.1f}" x2="{left + slot - 2:.1f}" '
                    f'y2="{level:.1f}" stroke="{PREVIOUS}" stroke-width="1.6" stroke-dasharray="3 2"/>'
                )
            else:
                marks.append(
                    f'<circle class="overlay other" cx="{left + slot / 2:.1f}" cy="{level:.1f}" r="2" fill="{OTHER}"/>'
                )
        tip = "; ".join([f"{feature} = {value} {current.label}: {_share(count, current.total)}", *notes])
        bars.append(
            f'<rect class="bar" x="{left + 1:.1f}" y="{y(share):.1f}" width="{max(slot - 3, 1):.1f}" '
            f'height="{base - y(share):.1f}" fill="{CURRENT}" fill-opacity="0.55" data-count="{count!r}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<text x="{left + slot / 2:.1f}" y="{HEIGHT - 2}" font-size="8" fill="#495057" text-anchor="middle">'
            f"{escape(value[: max(int(slot / 5), 1)])}</text>"
        )
    summary = f"{feature} {current.label}: top {len(values)} values of {_fmt(current.total)}"
    return _svg("categorical", feature, bars + marks, summary)
