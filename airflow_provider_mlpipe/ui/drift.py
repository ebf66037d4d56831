"""Drift in the UI: each feature's drift score trended across spans, and a run's top drifting features.

The ExampleValidator measures every feature against the previous span on every run and records the scores on
its ExampleAnomalies artifact (``drift_scores`` and ``skew_scores``: feature -> comparator, score, threshold), so
the pipeline view reads MLMD only. An artifact written before that property existed falls back to the
``measurements`` of its anomalies.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.ui import svg
from airflow_provider_mlpipe.ui.data import read_json
from airflow_provider_mlpipe.ui.mlmd_reader import Artifact
from airflow_provider_mlpipe.ui.plots import finite_number

KINDS = ("drift", "skew")
TOP_FEATURES = 10


@dataclass(frozen=True)
class DriftScore:
    feature: str
    kind: str  # drift (against the previous span) or skew (against serving statistics)
    comparator: str  # jsd or linf
    score: float
    threshold: float | None  # None: measured only, no threshold configured

    @property
    def over_threshold(self) -> bool:
        return self.threshold is not None and self.score > self.threshold


def _from_map(kind: str, scores: Any) -> list[DriftScore]:
    out = []
    for feature, entry in (scores if isinstance(scores, dict) else {}).items():
        score = finite_number(entry.get("score")) if isinstance(entry, dict) else None
        if score is not None:
            threshold = finite_number(entry.get("threshold"))
            out.append(DriftScore(str(feature), kind, str(entry.get("comparator", "")), score, threshold))
    return out


def _from_measurements(document: dict[str, Any]) -> list[DriftScore]:
    """Older anomalies.json files: the train split's measurements (the only split when there is no train)."""
    measured = [m for m in document.get("measurements") or [] if isinstance(m, dict)]
    splits = {m.get("split") for m in measured}
    split = "train" if "train" in splits else (sorted(map(str, splits))[0] if splits else None)
    out = []
    for m in measured:
        score = finite_number(m.get("value"))
        if m.get("split") == split and m.get("kind") in KINDS and score is not None:
            comparator = str(m.get("comparator") or m.get("measure", "")).lower()
            threshold = finite_number(m.get("threshold"))
            out.append(DriftScore(str(m.get("feature")), m["kind"], comparator, score, threshold))
    return out


def artifact_scores(artifact: Artifact | None, document: dict[str, Any] | None = None) -> list[DriftScore]:
    """The drift and skew scores an ExampleAnomalies artifact recorded; reads its file only without the property."""
    if artifact is None:
        return []
    props = artifact.properties
    if any(f"{kind}_scores" in props for kind in KINDS):
        return [s for kind in KINDS for s in _from_map(kind, props.get(f"{kind}_scores"))]
    if document is None:
        document = read_json(artifact, "anomalies.json") or {}
    return _from_measurements(document)


def top_drifting(
    artifact: Artifact | None, document: dict[str, Any] | None = None, limit: int = TOP_FEATURES
) -> list[DriftScore]:
    """The run view's list: features over their threshold first, then by score, highest first."""
    scores = artifact_scores(artifact, document)
    return sorted(scores, key=lambda s: (not s.over_threshold, -s.score, s.kind, s.feature))[:limit]


@dataclass
class DriftTrend:
    feature: str
    kind: str
    comparator: str
    spans: list[str]
    scores: list[float | None]
    thresholds: list[float | None]

    @property
    def latest(self) -> float:
        return next((s for s in reversed(self.scores) if s is not None), 0.0)

    @property
    def chart_id(self) -> str:
        return f"{self.kind}-trend-{self.feature}"

    def svg(self) -> str:
        """The score per span with its threshold as a dashed line (where one was configured)."""
        series: dict[str, list[float | None]] = {f"{self.comparator} score": self.scores}
        if any(t is not None for t in self.thresholds):
            series["threshold"] = self.thresholds
        title = f"{self.kind} of {self.feature} ({self.comparator})"
        return svg.trend_svg(title, self.spans, series, zero_based=True, dashed=("threshold",))


def _span_key(artifact: Artifact) -> tuple[str, int]:
    return (f"{artifact.properties.get('span', '')}".zfill(12), artifact.id)


def drift_trends(anomaly_artifacts: list[Artifact]) -> list[DriftTrend]:
    """Every feature's drift (and skew) score per span, most drifting (latest score) first.

    ``anomaly_artifacts``: the pipeline's ExampleAnomalies artifacts, as the pipeline view has read them.
    """
    artifacts = sorted(anomaly_artifacts, key=_span_key)
    per_run = [(str(a.properties.get("span", a.id)), artifact_scores(a)) for a in artifacts]
    per_run = [(span, scores) for span, scores in per_run if scores]
    spans = [span for span, _ in per_run]
    trends: dict[tuple[str, str], DriftTrend] = {}
    for i, (_, scores) in enumerate(per_run):
        for s in scores:
            trend = trends.get((s.kind, s.feature))
            if trend is None:
                trend = DriftTrend(s.feature, s.kind, s.comparator, spans, [None] * len(spans), [None] * len(spans))
                trends[(s.kind, s.feature)] = trend
            trend.scores[i], trend.thresholds[i] = s.score, s.threshold
    return sorted(trends.values(), key=lambda t: (t.kind, -t.latest, t.feature))
