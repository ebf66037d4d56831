"""What a reviewer reads before approving a push: a subject line and a Markdown body.

Pure functions of the Evaluator's ``metrics.json`` and ``blessing.json`` and the ExampleValidator's
``anomalies.json`` (formats in docs/artifacts-and-params.md), so the text is testable without Airflow. Airflow's
"Required actions" page renders the body as Markdown.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_mlpipe.sensors.gates import format_anomaly

MAX_ROWS = 30  # a table longer than this is cut; the run view has everything
MAX_DRIFT = 5
EXAMPLE_COUNT = "example_count"  # the Evaluator always adds it; shown as the slice's size


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _signed(value: Any) -> str:
    return f"{value:+.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def threshold_text(threshold: dict[str, Any]) -> str:
    """One metric's thresholds in words, e.g. ``>= 0.5; change >= -0.05 (higher is better)``."""
    parts = []
    if threshold.get("lower_bound") is not None:
        parts.append(f">= {_number(threshold['lower_bound'])}")
    if threshold.get("upper_bound") is not None:
        parts.append(f"<= {_number(threshold['upper_bound'])}")
    change = threshold.get("change") or {}
    if change:
        better = str(change.get("direction", "higher_is_better"))
        op = ">=" if better == "higher_is_better" else "<="
        for kind in ("absolute", "relative"):
            if change.get(kind) is not None:
                parts.append(f"{kind} change {op} {_number(change[kind])}")
        if not threshold.get("change_applied", True):
            parts[-1] += " (no baseline: not applied)"
    if threshold.get("slices"):
        parts.append("on " + ", ".join(map(str, threshold["slices"])))
    if threshold.get("min_examples"):
        parts.append(f"min {threshold['min_examples']} examples")
    return "; ".join(parts)


def metrics_table(metrics: dict[str, Any]) -> list[str]:
    """Candidate against baseline per slice and metric, with the metric's thresholds and the slice's size."""
    thresholds = {t["metric"]: threshold_text(t) for t in metrics.get("thresholds") or [] if t.get("metric")}
    baseline = metrics.get("baseline") or {}
    base_slices = {s["slice"]: s.get("metrics", {}) for s in baseline.get("slices") or []}
    rows = []
    for entry in metrics.get("slices") or []:
        name, values = entry.get("slice", "Overall"), dict(entry.get("metrics", {}))
        count = values.pop(EXAMPLE_COUNT, None)
        base = base_slices.get(name, {})
        for metric in sorted(values, key=lambda m: (m not in thresholds, m)):
            before = base.get(metric)
            diff = values[metric] - before if isinstance(before, (int, float)) else None
            rows.append(
                f"| {_cell(name)} | {_number(count)} | {_cell(metric)} | {_number(values[metric])} | "
                f"{_number(before)} | {_signed(diff)} | {_cell(thresholds.get(metric, ''))} |"
            )
    if not rows:
        return ["The Evaluator reported no metrics."]
    more = [f"... and {len(rows) - MAX_ROWS} more rows in the run view."] if len(rows) > MAX_ROWS else []
    header = [
        "| slice | examples | metric | candidate | baseline | diff | threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    return [*header, *rows[:MAX_ROWS], *more]


def data_section(anomalies: dict[str, Any] | None) -> list[str]:
    """The validator's anomalies, then the largest drift measurements of the scored split."""
    if anomalies is None:
        return ["No ExampleValidator ran in this pipeline, so there is no data check to show."]
    found = anomalies.get("anomalies") or []
    lines = [f"- {_cell(format_anomaly(a))}" for a in found[:MAX_ROWS]] or ["No anomalies."]
    if len(found) > MAX_ROWS:
        lines.append(f"- ... and {len(found) - MAX_ROWS} more in the run view.")
    measured = [m for m in anomalies.get("measurements") or [] if isinstance(m.get("value"), (int, float))]
    splits = {m.get("split") for m in measured}
    split = "train" if "train" in splits else next(iter(sorted(s for s in splits if s)), None)
    drift = [m for m in measured if m.get("split") == split and m.get("kind", "drift") == "drift"]
    if drift:
        drift.sort(key=lambda m: -float(m["value"]))
        lines += [
            "",
            f"Drift against the previous span ({split} split, largest first):",
            "",
            "| feature | comparator | distance | threshold |",
            "|---|---|---|---|",
            *(
                f"| {_cell(m.get('feature'))} | {_cell(m.get('comparator', ''))} | {_number(m['value'])} | "
                f"{_number(m.get('threshold'))} |"
                for m in drift[:MAX_DRIFT]
            ),
        ]
    elif anomalies.get("previous_statistics_id") is None:
        lines += ["", "No previous span to measure drift against."]
    return lines


def approval_subject(pipeline: str, blessing: dict[str, Any], span: Any = None) -> str:
    model = blessing.get("current_model_id")
    on_span = f" (span {span})" if span else ""
    verdict = "blessed" if blessing.get("blessed") else "NOT blessed"
    return f"Push model {model}{on_span} of {pipeline}? The Evaluator says: {verdict}."


def approval_body(
    *,
    pipeline: str,
    run_id: str,
    run_view: str,
    metrics: dict[str, Any],
    blessing: dict[str, Any],
    anomalies: dict[str, Any] | None,
    default: str,
    timeout_text: str,
) -> str:
    """The request's Markdown body."""
    baseline = blessing.get("baseline_model_id")
    against = f"baseline model {baseline}" if baseline is not None else "no baseline (the first blessed model)"
    reason = blessing.get("reason") or ("blessed" if blessing.get("blessed") else "not blessed")
    lines = [
        f"**{pipeline}**, run `{run_id}`: candidate model {blessing.get('current_model_id')} against {against}.",
        "",
        f"Evaluator: {_cell(reason)}",
        "",
        f"[Open the run view]({run_view}) for statistics, plots and lineage.",
        "",
        "#### Metrics by slice",
        "",
        *metrics_table(metrics),
        "",
        "#### Data: anomalies and drift",
        "",
        *data_section(anomalies),
        "",
        f"Approve to push. Without an answer {timeout_text}, the outcome is **{default}**.",
    ]
    return "\n".join(lines)
