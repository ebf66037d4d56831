"""The Evaluator's plots (``plots.json``) as inline SVG: ROC, precision-recall, calibration, confusion matrices.

``plots.json`` holds, per model (``candidate``, ``baseline``) and slice, the ROC and PR curves at shared
thresholds, the non-empty calibration buckets and the confusion matrix; any part may be missing. Curves can have
thousands of points per slice, so they are thinned before drawing (endpoints kept) and calibration buckets are
merged, which keeps a run view of many slices small. No JavaScript, no CDN, like the trend charts in ``svg.py``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

MAX_CURVE_POINTS = 200
MAX_CALIBRATION_POINTS = 100
CALIBRATION_BINS = 10  # the calibration line: weighted means in this many equal prediction ranges
OVERALL = "Overall"
MODELS = ("candidate", "baseline")
COLORS = {"candidate": "#1f6feb", "baseline": "#d9480f"}
DASHES = {"candidate": "", "baseline": ' stroke-dasharray="6 3"'}
SIZE, LEFT, RIGHT, TOP, BOTTOM = 300, 46, 14, 28, 58
INSET = 5  # between the frame and the data, so a curve along an edge (tpr = 1) is not hidden by the frame

Point = tuple[float, float]


@dataclass(frozen=True)
class Bucket:
    """One calibration bucket: the weighted mean prediction and label of the examples predicted in it."""

    mean_prediction: float
    mean_label: float
    weight: float


@dataclass(frozen=True)
class Confusion:
    labels: list[str]
    counts: list[list[float]]  # rows: actual class, columns: predicted class
    threshold: float | None


@dataclass
class SlicePlots:
    """One slice, by model name; a model without a plot has no entry."""

    roc: dict[str, list[Point]] = field(default_factory=dict)
    pr: dict[str, list[Point]] = field(default_factory=dict)
    calibration: dict[str, list[Bucket]] = field(default_factory=dict)
    confusion: dict[str, Confusion] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.roc or self.pr or self.calibration or self.confusion)


@dataclass
class RunPlots:
    kind: str
    slices: dict[str, SlicePlots]  # Overall first, then in the file's order

    def pick(self, wanted: str | None) -> str | None:
        """The slice to show: the one asked for if it has plots, else Overall, else the first."""
        if wanted in self.slices:
            return wanted
        return OVERALL if OVERALL in self.slices else next(iter(self.slices), None)


# ----- plots.json -> RunPlots ---------------------------------------------------------------------------------
def finite_number(value: Any) -> float | None:
    """A finite number read from a JSON file, else None (one rule for every drawing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _points(xs: Any, ys: Any) -> list[Point]:
    """Pairs of finite numbers (a precision of 0/0 is NaN in the file and is not drawn)."""
    if not isinstance(xs, list) or not isinstance(ys, list):
        return []
    pairs = ((finite_number(x), finite_number(y)) for x, y in zip(xs, ys, strict=False))
    return [(x, y) for x, y in pairs if x is not None and y is not None]


def thin_curve(points: list[Point], limit: int = MAX_CURVE_POINTS) -> list[Point]:
    """At most ``limit`` points, evenly spaced along the curve's length, always with both endpoints.

    Spacing by length rather than by index keeps the corners of a step-shaped ROC curve, whose thresholds
    crowd where the curve barely moves.
    """
    distinct = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    if len(distinct) <= limit:
        return distinct
    lengths = [0.0]
    for (x0, y0), (x1, y1) in itertools.pairwise(distinct):
        lengths.append(lengths[-1] + math.hypot(x1 - x0, y1 - y0))
    step = lengths[-1] / (limit - 1)
    kept, mark = [distinct[0]], step
    for point, length in zip(distinct[1:-1], lengths[1:-1], strict=True):
        if length >= mark:  # each kept point is a step further than the last, so at most limit - 2 of them
            kept.append(point)
            mark = length + step
    kept.append(distinct[-1])
    return kept


def merge_buckets(buckets: list[Bucket], limit: int = MAX_CALIBRATION_POINTS) -> list[Bucket]:
    """At most ``limit`` buckets: runs of neighbouring buckets become one, with weighted means."""
    if len(buckets) <= limit:
        return buckets
    size = math.ceil(len(buckets) / limit)
    merged = []
    for start in range(0, len(buckets), size):
        run = buckets[start : start + size]
        weight = sum(b.weight for b in run)
        if weight > 0:
            prediction = sum(b.mean_prediction * b.weight for b in run) / weight
            label = sum(b.mean_label * b.weight for b in run) / weight
        else:
            prediction = sum(b.mean_prediction for b in run) / len(run)
            label = sum(b.mean_label for b in run) / len(run)
        merged.append(Bucket(prediction, label, weight))
    return merged


def binned(buckets: list[Bucket], low: float, high: float, bins: int = CALIBRATION_BINS) -> list[Bucket]:
    """The buckets regrouped by prediction into ``bins`` equal ranges over [low, high], empty ranges left out.

    TFMA writes up to a thousand fine buckets; on a small eval split most hold one example, with a mean label of
    0 or 1, so a line through them zigzags. Through these wider ranges it shows the calibration.
    """
    groups: dict[int, list[Bucket]] = {}
    for bucket in buckets:
        index = math.floor((bucket.mean_prediction - low) / ((high - low) or 1.0) * bins)
        groups.setdefault(min(max(index, 0), bins - 1), []).append(bucket)
    return [merge_buckets(groups[i], 1)[0] for i in sorted(groups)]


def _buckets(items: Any) -> list[Bucket]:
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        prediction, label = finite_number(item.get("mean_prediction")), finite_number(item.get("mean_label"))
        weight = finite_number(item.get("weight"))
        if prediction is not None and label is not None:
            out.append(Bucket(prediction, label, 1.0 if weight is None else weight))
    return out


def _confusion(matrix: Any) -> Confusion | None:
    if not isinstance(matrix, dict) or not isinstance(matrix.get("counts"), list):
        return None
    rows = [[finite_number(v) or 0.0 for v in row] for row in matrix["counts"] if isinstance(row, list)]
    if not rows:
        return None
    labels = matrix.get("labels")
    names = [str(v) for v in labels] if isinstance(labels, list) else []
    if len(names) != len(rows):
        names = [str(i) for i in range(len(rows))]
    return Confusion(names, rows, finite_number(matrix.get("threshold")))


def _slice(plots: SlicePlots, model: str, data: Any) -> None:
    if not isinstance(data, dict):
        return
    roc, pr = data.get("roc"), data.get("pr")
    if isinstance(roc, dict) and (points := _points(roc.get("fpr"), roc.get("tpr"))):
        plots.roc[model] = points
    if isinstance(pr, dict) and (points := _points(pr.get("recall"), pr.get("precision"))):
        plots.pr[model] = points
    if buckets := _buckets(data.get("calibration")):
        plots.calibration[model] = buckets
    if (matrix := _confusion(data.get("confusion_matrix"))) is not None:
        plots.confusion[model] = matrix


def parse_plots(document: Any) -> RunPlots:
    """What ``plots.json`` holds, complete curves included; tolerant of missing or malformed parts."""
    document = document if isinstance(document, dict) else {}
    slices: dict[str, SlicePlots] = {}
    for model in MODELS:
        by_slice = document.get(model)
        for name, data in (by_slice if isinstance(by_slice, dict) else {}).items():
            _slice(slices.setdefault(str(name), SlicePlots()), model, data)
    ordered = {OVERALL: slices.pop(OVERALL)} if OVERALL in slices else {}
    ordered.update(slices)
    return RunPlots(str(document.get("kind", "")), {k: v for k, v in ordered.items() if not v.empty})


def for_drawing(plots: RunPlots) -> RunPlots:
    """The same plots with curves thinned and calibration buckets merged (what the page draws)."""
    slices = {}
    for name, plot in plots.slices.items():
        slices[name] = SlicePlots(
            {m: thin_curve(p) for m, p in plot.roc.items()},
            {m: thin_curve(p) for m, p in plot.pr.items()},
            {m: merge_buckets(b) for m, b in plot.calibration.items()},
            dict(plot.confusion),
        )
    return RunPlots(plots.kind, slices)


# ----- SVG --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """A square plot area mapping [low, high] on both axes to pixels, inside a frame ``INSET`` wider."""

    low: float = 0.0
    high: float = 1.0

    @property
    def span(self) -> float:
        return (self.high - self.low) or 1.0

    def x(self, value: float) -> float:
        return LEFT + INSET + (SIZE - LEFT - RIGHT - 2 * INSET) * (value - self.low) / self.span

    def y(self, value: float) -> float:
        return TOP + INSET + (SIZE - TOP - BOTTOM - 2 * INSET) * (1 - (value - self.low) / self.span)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _count(value: float) -> str:
    """A count in full (weighted counts may have a fraction)."""
    return f"{int(value)}" if value.is_integer() else f"{value:.6g}"


def _open(plot_id: str, title: str, slice_name: str, frame: Frame, x_label: str, y_label: str) -> list[str]:
    bottom, right = SIZE - BOTTOM, SIZE - RIGHT
    out = [
        f'<svg id="{plot_id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        f'viewBox="0 0 {SIZE} {SIZE}" role="img" aria-label="{escape(title)} of slice {escape(slice_name)}" '
        f'data-slice="{escape(slice_name)}">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    for i in range(5):
        tick = frame.low + frame.span * i / 4
        x, y = frame.x(tick), frame.y(tick)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#f1f3f5"/>'
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#f1f3f5"/>'
            f'<text x="{LEFT - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(tick)}</text>'
            f'<text x="{x:.1f}" y="{bottom + 13:.1f}" font-size="10" text-anchor="middle">{_fmt(tick)}</text>'
        )
    out += [
        f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT:.1f}" height="{bottom - TOP:.1f}" fill="none" '
        'stroke="#868e96"/>',
        f'<text x="{(LEFT + right) / 2:.1f}" y="{bottom + 28:.1f}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{(TOP + bottom) / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + bottom) / 2:.1f})">{escape(y_label)}</text>',
    ]
    return out


def _diagonal(frame: Frame) -> str:
    low, high = frame.low, frame.high
    return (
        f'<line class="diagonal" x1="{frame.x(low):.1f}" y1="{frame.y(low):.1f}" x2="{frame.x(high):.1f}" '
        f'y2="{frame.y(high):.1f}" stroke="#adb5bd" stroke-dasharray="4 4"/>'
    )


def _legend(models: list[str]) -> str:
    items = [
        f'<text class="legend {m}" x="{LEFT + 8 + n * 110}" y="{SIZE - 8}" font-size="11" fill="{COLORS[m]}">'
        f"■ {m}</text>"
        for n, m in enumerate(models)
    ]
    return "".join(items)


def _path_data(frame: Frame, points: list[Point]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{frame.x(x):.1f},{frame.y(y):.1f}" for i, (x, y) in enumerate(points))


def _drawn(series: dict[str, Any]) -> list[str]:
    """Models in drawing order: the baseline underneath, the candidate on top."""
    return [m for m in reversed(MODELS) if m in series]


def curve_svg(
    plot_id: str,
    title: str,
    slice_name: str,
    x_label: str,
    y_label: str,
    curves: dict[str, list[Point]],
    diagonal: bool = False,
) -> str:
    """A line per model over [0, 1]²; each path carries its point count and first and last (x, y)."""
    frame = Frame()
    out = _open(plot_id, title, slice_name, frame, x_label, y_label)
    if diagonal:
        out.append(_diagonal(frame))
    for model in _drawn(curves):
        points = curves[model]
        d = _path_data(frame, points)
        dash = DASHES[model]
        (x0, y0), (x1, y1) = points[0], points[-1]
        out.append(
            f'<path class="{model}" d="{d}" fill="none" stroke="{COLORS[model]}" stroke-width="2"{dash} '
            f'data-points="{len(points)}" data-first="{x0!r},{y0!r}" data-last="{x1!r},{y1!r}">'
            f"<title>{model}: {len(points)} points</title></path>"
        )
    out.append(_legend([m for m in MODELS if m in curves]))
    out.append("</svg>")
    return "".join(out)


def calibration_svg(slice_name: str, buckets: dict[str, list[Bucket]]) -> str:
    """Mean label against mean prediction: a point per bucket (its area grows with its weight), a line through
    the buckets regrouped into ``CALIBRATION_BINS`` prediction ranges, and the diagonal of perfect calibration."""
    values = [v for bs in buckets.values() for b in bs for v in (b.mean_prediction, b.mean_label)]
    frame = Frame(min([0.0, *values]), max([1.0, *values]))
    out = _open("calibration-plot", "Calibration", slice_name, frame, "mean prediction", "mean label")
    out.append(_diagonal(frame))
    heaviest = max((b.weight for bs in buckets.values() for b in bs), default=1.0) or 1.0
    for model in _drawn(buckets):
        color = COLORS[model]
        line = binned(buckets[model], frame.low, frame.high)
        d = _path_data(frame, [(b.mean_prediction, b.mean_label) for b in line])
        out.append(
            f'<path class="{model}" d="{d}" fill="none" stroke="{color}" stroke-width="2"'
            f'{DASHES[model]} data-points="{len(line)}"><title>{model}: mean label in {CALIBRATION_BINS} '
            "prediction ranges</title></path>"
        )
        for bucket in buckets[model]:
            x, y = frame.x(bucket.mean_prediction), frame.y(bucket.mean_label)
            radius = 2.5 + 4.5 * math.sqrt(max(bucket.weight, 0.0) / heaviest)
            out.append(
                f'<circle class="{model}" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{color}" '
                f'fill-opacity="0.35" stroke="{color}" stroke-opacity="0.6" '
                f'data-prediction="{bucket.mean_prediction!r}" data-label="{bucket.mean_label!r}" '
                f'data-weight="{bucket.weight!r}">'
                f"<title>{model}: mean prediction {_fmt(bucket.mean_prediction)}, mean label "
                f"{_fmt(bucket.mean_label)}, weight {_fmt(bucket.weight)}</title></circle>"
            )
    out.append(_legend([m for m in MODELS if m in buckets]))
    out.append("</svg>")
    return "".join(out)


def confusion_html(model: str, matrix: Confusion) -> str:
    """A table of counts, rows the actual class and columns the predicted one, shaded by share of its row."""
    at = f" at threshold {_fmt(matrix.threshold)}" if matrix.threshold is not None else ""
    out = [
        f'<table class="confusion {model}" id="confusion-{model}">'
        f'<caption><span style="color:{COLORS[model]}">■</span> {model}{escape(at)}</caption>'
        '<tr><th class="muted">actual ↓ predicted →</th>'
        + "".join(f"<th>{escape(label)}</th>" for label in matrix.labels)
        + "</tr>"
    ]
    for label, row in zip(matrix.labels, matrix.counts, strict=True):
        total = sum(row) or 1.0
        cells = "".join(
            f'<td class="num" style="background:rgba(31,111,235,{0.6 * count / total:.2f})">{_count(count)}</td>'
            for count in row
        )
        out.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def slice_figures(plots: SlicePlots, slice_name: str) -> list[str]:
    """The figures of one slice, in the order the run view shows them; a plot without data is left out."""
    figures = []
    if plots.roc:
        figures.append(
            curve_svg("roc-plot", "ROC curve", slice_name, "false positive rate", "true positive rate", plots.roc, True)
        )
    if plots.pr:
        figures.append(curve_svg("pr-plot", "Precision-recall curve", slice_name, "recall", "precision", plots.pr))
    if plots.calibration:
        figures.append(calibration_svg(slice_name, plots.calibration))
    if plots.confusion:
        tables = "".join(confusion_html(m, plots.confusion[m]) for m in MODELS if m in plots.confusion)
        heading = "<h4>Confusion matrix</h4>"
        figures.append(f'<div class="confusions" data-slice="{escape(slice_name)}">{heading}{tables}</div>')
    return figures
