"""The served model in the UI: its figures on each new span, trended beside the candidate's on its eval split.

The Evaluator records, per run, a ``mlpipe.ServedModelEvaluation`` (``runtime/evaluation/served.py``): the model
being served scored on the same eval split as the candidate. The candidate line says how well a new model fits a
held-out slice of its own span; the served line says how the model in production did on the data it met. A decay
of the served line is the signal to watch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.stages.description import MODEL_EVALUATION, SERVED_MODEL_EVALUATION
from airflow_provider_mlpipe.ui import svg
from airflow_provider_mlpipe.ui.data import read_json
from airflow_provider_mlpipe.ui.mlmd_reader import Artifact, MlmdReader
from airflow_provider_mlpipe.ui.plots import finite_number

METRICS_FILE = "metrics.json"
CANDIDATE, SERVED = "candidate", "served model"
# Counts are the same for both models on the same split: nothing to compare.
NOT_TRENDED = frozenset({"example_count", "weighted_example_count"})
OVERALL = "Overall"


def by_slice(document: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """``slice -> metric -> value`` of a metrics.json (finite numbers only)."""
    out: dict[str, dict[str, float]] = {}
    for entry in (document or {}).get("slices") or []:
        if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
            values = {k: v for k, raw in entry["metrics"].items() if (v := finite_number(raw)) is not None}
            out[str(entry.get("slice") or OVERALL)] = values
    return out


def served_document(artifact: Artifact | None) -> dict[str, Any]:
    """A served-model evaluation's metrics.json (status, reason, served version, slices), else its properties."""
    if artifact is None:
        return {}
    return read_json(artifact, METRICS_FILE) or dict(artifact.properties)


@dataclass
class ServedTrend:
    metric: str
    slice: str
    spans: list[str]
    candidate: list[float | None]
    served: list[float | None]
    versions: list[Any]  # the served version behind each span's served value (None: nothing scored)

    @property
    def chart_id(self) -> str:
        return "served-trend-" + re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.metric}-{self.slice}").strip("-")

    @property
    def latest_served(self) -> float | None:
        return next((v for v in reversed(self.served) if v is not None), None)

    @property
    def version_note(self) -> str:
        pairs = (f"{span}: {'none' if v is None else v}" for span, v in zip(self.spans, self.versions, strict=True))
        return "served version per span: " + ", ".join(pairs)

    def svg(self) -> str:
        title = f"{self.metric} · {self.slice}"
        return svg.trend_svg(title, self.spans, {CANDIDATE: self.candidate, SERVED: self.served})


def _newest_per_span(artifacts: list[Artifact]) -> dict[str, Artifact]:
    """The newest LIVE artifact of each span (a re-run with other params recorded a newer one)."""
    newest: dict[str, Artifact] = {}
    for artifact in sorted(artifacts, key=lambda a: a.id):
        if artifact.state == "LIVE" and artifact.properties.get("span") is not None:
            newest[str(artifact.properties["span"])] = artifact
    return newest


def served_trends(reader: MlmdReader, pipeline: str) -> list[ServedTrend]:
    """Per metric and slice: the candidate on its eval split and the served model on that span, span by span."""
    candidates = _newest_per_span(reader.pipeline_artifacts(pipeline, MODEL_EVALUATION))
    served = _newest_per_span(reader.pipeline_artifacts(pipeline, SERVED_MODEL_EVALUATION))
    if not served:
        return []
    spans = sorted(set(candidates) | set(served), key=lambda s: s.zfill(12))
    candidate_values = {s: by_slice(read_json(a, METRICS_FILE)) for s, a in candidates.items()}
    records = {s: served_document(a) for s, a in served.items()}
    served_values = {s: by_slice(d) if d.get("status") == "scored" else {} for s, d in records.items()}
    keys: set[tuple[str, str]] = set()
    for values in (*candidate_values.values(), *served_values.values()):
        keys |= {(metric, name) for name, metrics in values.items() for metric in metrics if metric not in NOT_TRENDED}
    trends = []
    for metric, name in sorted(keys, key=lambda k: (k[0], k[1] != OVERALL, k[1])):
        trends.append(
            ServedTrend(
                metric,
                name,
                spans,
                [candidate_values.get(s, {}).get(name, {}).get(metric) for s in spans],
                [served_values.get(s, {}).get(name, {}).get(metric) for s in spans],
                [records[s].get("served_version") if served_values.get(s) else None for s in spans],
            )
        )
    return trends
