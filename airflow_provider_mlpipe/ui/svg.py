"""Inline SVG: the lineage graph of a run and the trend charts of a pipeline. No JavaScript, no CDN."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

from airflow_provider_mlpipe.ui.mlmd_reader import RunGraph

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 140, 40, 34, 14, 12
PALETTE = ["#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#e8590c", "#0c8599", "#5c940d", "#c2255c"]
EXEC_FILL = {"COMPLETE": "#e7f5ff", "CACHED": "#fff9db", "FAILED": "#ffe3e3", "RUNNING": "#f1f3f5"}


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lineage_svg(graph: RunGraph, artifact_href: Callable[[int], str]) -> str:
    """Executions in columns by dependency depth, each followed by its outputs; edges as curves."""
    producer: dict[int, int] = {}
    for ev in graph.events:
        if ev.kind == "OUTPUT":
            producer.setdefault(ev.artifact_id, ev.execution_id)
    depth: dict[int, int] = {}
    for execution in sorted(graph.executions, key=lambda e: e.id):  # ids grow in run order
        inputs = [ev.artifact_id for ev in graph.events if ev.execution_id == execution.id and ev.kind == "INPUT"]
        ups = [depth[producer[a]] for a in inputs if producer.get(a) in depth and producer[a] != execution.id]
        depth[execution.id] = 1 + max(ups) if ups else 0
    # Artifacts made outside this run (a baseline model, last span's statistics) go to a first column.
    external = sorted(a for a in graph.artifacts if a not in producer or producer[a] not in depth)
    offset = 1 if external else 0
    columns: dict[int, list[tuple[str, int]]] = {0: [("a", a) for a in external]} if external else {}
    for execution in sorted(graph.executions, key=lambda e: (depth[e.id], e.id)):
        column = columns.setdefault(depth[execution.id] + offset, [])
        column.append(("e", execution.id))
        for ev in graph.events:
            if ev.execution_id == execution.id and ev.kind == "OUTPUT" and producer.get(ev.artifact_id) == execution.id:
                column.append(("a", ev.artifact_id))
    pos: dict[tuple[str, int], tuple[int, int]] = {}
    for col, items in columns.items():
        for row, key in enumerate(items):
            pos[key] = (PAD + col * (NODE_W + COL_GAP), PAD + row * (NODE_H + ROW_GAP))
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + COL_GAP)
    height = PAD * 2 + max((len(v) for v in columns.values()), default=1) * (NODE_H + ROW_GAP)
    parts = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" role="img" '
        'aria-label="Lineage of this run">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#868e96"/></marker></defs>',
    ]
    for ev in graph.events:
        src, dst = (("a", ev.artifact_id), ("e", ev.execution_id))
        if ev.kind == "OUTPUT":
            src, dst = dst, src
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        if x1 == x2:  # an execution and its own output share a column: a short vertical link
            path = f"M{x1 + 14},{y1 + NODE_H} L{x2 + 14},{y2}"
        else:
            sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + tx) / 2
            path = f"M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}"
        cls = "edge cached" if ev.kind == "OUTPUT" and producer.get(ev.artifact_id) != ev.execution_id else "edge"
        parts.append(
            f'<path class="{cls}" d="{path}" fill="none" stroke="#adb5bd" stroke-width="1.4" '
            f'marker-end="url(#arrow)"><title>{escape(ev.kind)} {escape(ev.slot)}</title></path>'
        )
    for execution in graph.executions:
        x, y = pos[("e", execution.id)]
        fill = EXEC_FILL.get(execution.state, "#f8f9fa")
        dash = ' stroke-dasharray="5 3"' if execution.state == "CACHED" else ""
        note = execution.state.lower()
        title = execution.component
        if execution.state == "CACHED":
            note = f"cache hit of #{execution.properties.get('cached_from', '?')}"
        props = execution.properties
        if props.get("gate") == "approval":  # who decided matters as much as what
            title = "Approval"
            who = "timed out" if props.get("timed_out") else f"by {props.get('approver', '?')}"
            note = f"{props.get('decision', note)} {who}"
        elif props.get("gate"):  # a gate's decision matters more than its state
            title = f"Gate: {props['gate']}"
            note = str(props.get("decision", note))
        tip = f"{execution.type} #{execution.id} {execution.state} node={execution.properties.get('node_id', '')}"
        parts.append(
            f'<g class="node execution state-{escape(execution.state.lower())}" data-id="{execution.id}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" '
            f'stroke="#1c7ed6"{dash}/>'
            f'<text x="{x + 8}" y="{y + 16}" font-size="12" font-weight="600">{escape(_short(title, 18))}'
            f"</text>"
            f'<text x="{x + 8}" y="{y + 32}" font-size="10" fill="#495057">#{execution.id} · {escape(note)}</text>'
            "</g>"
        )
    for artifact_id, artifact in graph.artifacts.items():
        if ("a", artifact_id) not in pos:
            continue
        x, y = pos[("a", artifact_id)]
        label = artifact.type
        detail = ", ".join(
            f"{k}={artifact.properties[k]}" for k in ("span", "version", "blessed") if k in artifact.properties
        )
        # A deleted artifact stays in the lineage, drawn grey and dashed, with its state in place of its details.
        gone = artifact.state in ("DELETED", "MARKED_FOR_DELETION")
        if gone:
            detail = "deleted"
        fill, stroke = ("#f1f3f5", "#868e96") if gone else ("#f3f0ff", "#7950f2")
        dash = ' stroke-dasharray="4 3"' if gone else ""
        parts.append(
            f'<a href="{escape(artifact_href(artifact_id))}"><g class="node artifact{" deleted" if gone else ""}" '
            f'data-id="{artifact_id}"><title>{escape(artifact.type)} #{artifact_id} {escape(artifact.state)} '
            f"{escape(artifact.uri)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="18" fill="{fill}" stroke="{stroke}"{dash}/>'
            f'<text x="{x + 10}" y="{y + 16}" font-size="11" font-weight="600">{escape(_short(label))}</text>'
            f'<text x="{x + 10}" y="{y + 31}" font-size="10" fill="#495057">#{artifact_id} '
            f"{escape(_short(detail, 20))}</text></g></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) that cover [low, high]."""
    if high == low:
        low, high = low - (abs(low) * 0.1 or 1), high + (abs(high) * 0.1 or 1)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [first]
    while ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


# A 400-pixel chart cannot show more spans than this apart; a year of daily runs is thinned to it.
MAX_TREND_POINTS = 120


def thin_spans(
    labels: list[str], series: dict[str, list[float | None]], max_points: int = MAX_TREND_POINTS
) -> tuple[list[str], dict[str, list[float | None]]]:
    """At most about ``max_points`` spans: from each run of consecutive spans, those where a series is lowest
    or highest, so a spike (an anomaly burst, a drift peak) is never averaged away; the first and last always."""
    if len(labels) <= max_points:
        return labels, series
    buckets = max(1, max_points // (2 * max(1, len(series))))
    size = -(-len(labels) // buckets)  # ceiling division
    keep = {0, len(labels) - 1}
    for start in range(0, len(labels), size):
        for values in series.values():
            present = [(v, i) for i in range(start, min(start + size, len(labels))) if (v := values[i]) is not None]
            if present:
                keep |= {min(present)[1], max(present)[1]}
    kept = sorted(keep)
    return [labels[i] for i in kept], {name: [values[i] for i in kept] for name, values in series.items()}


def trend_svg(
    title: str,
    labels: list[str],
    series: dict[str, list[float | None]],
    width: int = 400,
    zero_based: bool = False,
    dashed: tuple[str, ...] = (),
) -> str:
    """A line chart of ``series`` (name -> value per label), one point per span, with a value tooltip.

    A long history is thinned to about ``MAX_TREND_POINTS`` spans first (``thin_spans``).
    """
    labels, series = thin_spans(labels, series)
    height, left, right, top, bottom = 210, 50, 34, 28, 46
    values = [v for vs in series.values() for v in vs if v is not None]
    if not labels or not values:
        return f'<p class="muted">No {escape(title)} recorded yet.</p>'
    ticks = nice_ticks(min([*values, 0.0]) if zero_based else min(values), max(values))
    low, high = ticks[0], ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(i: int) -> float:
        return left + (plot_w * (i / (len(labels) - 1)) if len(labels) > 1 else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    out = [
        f'<svg class="trend" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#868e96"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#868e96"/>',
    ]
    for v in ticks:
        out.append(
            f'<text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">{_fmt(v)}</text>'
            f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" y2="{py(v):.1f}" stroke="#f1f3f5"/>'
        )
    step = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            out.append(
                f'<text x="{px(i):.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">'
                f"{escape(str(label))}</text>"
            )
    for n, (name, vs) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        pts = [(px(i), py(v), v) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y, _) in enumerate(pts))
            dash = ' stroke-dasharray="5 4"' if name in dashed else ""
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for (x, y, v), label in zip(
            pts, [lab for lab, v in zip(labels, vs, strict=True) if v is not None], strict=True
        ):
            out.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}" data-value="{v}">'
                f"<title>{escape(name)} = {_fmt(v)} (span {escape(str(label))})</title></circle>"
            )
        out.append(
            f'<text x="{left + 8 + n * 110}" y="{height - 8}" font-size="11" fill="{color}">■ {escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4g}"
    return f"{int(v)}" if isinstance(v, float) else str(v)
