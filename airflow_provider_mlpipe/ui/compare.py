"""Two runs of a pipeline side by side: metrics by slice, schema, per-feature statistics and drift, B against A.

Built from two run views only (MLMD plus the artifact files they already read). The schema comparison parses
the two ``schema.pbtxt`` files as text, because the Airflow side never imports TensorFlow's protos.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlpipe.ui import drift
from airflow_provider_mlpipe.ui.data import RunView, read_bytes
from airflow_provider_mlpipe.ui.plots import finite_number

# The per-feature figures of summary.json worth a delta; the others (histograms, top values) are drawings.
FIGURES = ("present", "missing", "missing_ratio", "mean", "std_dev", "min", "median", "max", "zeros", "unique")
SCHEMA_FILE = "schema.pbtxt"


@dataclass(frozen=True)
class Delta:
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        return self.b - self.a if self.a is not None and self.b is not None else None

    @property
    def relative(self) -> float | None:
        """The change as a share of A's value; None when A is zero or either side is missing."""
        return self.change / abs(self.a) if self.change is not None and self.a else None


@dataclass(frozen=True)
class MetricRow:
    slice: str
    metric: str
    delta: Delta


@dataclass(frozen=True)
class FeatureRow:
    split: str
    feature: str
    type_a: str
    type_b: str
    figures: dict[str, Delta]

    @property
    def only_in(self) -> str | None:
        return "A" if not self.type_b else ("B" if not self.type_a else None)


@dataclass(frozen=True)
class SchemaChange:
    feature: str
    change: str  # added, removed, type_changed, constraints_changed
    a: str
    b: str


@dataclass
class RunComparison:
    a: RunView
    b: RunView
    metrics: list[MetricRow] = field(default_factory=list)
    kpis: list[MetricRow] = field(default_factory=list)  # business KPIs, by slice like the metrics
    features: list[FeatureRow] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)
    drift: list[drift.DriftScore] = field(default_factory=list)
    # Which run measured the drift against which, or why there is none.
    drift_note: str = ""

    @property
    def same_schema(self) -> bool:
        return self.a.schema is not None and self.b.schema is not None and self.a.schema.id == self.b.schema.id

    @property
    def feature_figures(self) -> list[str]:
        """The figures either run has for some feature, in FIGURES' order."""
        return [f for f in FIGURES if any(f in row.figures for row in self.features)]


def _slices(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for entry in doc.get("slices") or []:
        if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
            name = str(entry.get("slice") or "Overall")
            out[name] = {k: n for k, v in entry["metrics"].items() if (n := finite_number(v)) is not None}
    return out


def compare_metrics(a: RunView, b: RunView, kpis: bool = False) -> list[MetricRow]:
    """Every metric (or, with ``kpis``, business KPI) of every slice either run evaluated; Overall first, then slices
    in A's order, then B's new ones."""
    slices_a, slices_b = (_slices(a.kpis), _slices(b.kpis)) if kpis else (_slices(a.metrics), _slices(b.metrics))
    names = list(dict.fromkeys([*slices_a, *slices_b]))
    names.sort(key=lambda s: s != "Overall")
    rows = []
    for name in names:
        values_a, values_b = slices_a.get(name, {}), slices_b.get(name, {})
        for metric in sorted({*values_a, *values_b}):
            rows.append(MetricRow(name, metric, Delta(values_a.get(metric), values_b.get(metric))))
    return rows


def compare_features(a: RunView, b: RunView) -> list[FeatureRow]:
    """Per split both runs have, per feature of either: the summary figures of A and B."""
    rows = []
    for split in [s for s in a.splits if s in b.splits]:
        features_a = {str(f.get("name")): f for f in a.split_features(split)}
        features_b = {str(f.get("name")): f for f in b.split_features(split)}
        for name in list(dict.fromkeys([*features_a, *features_b])):
            fa, fb = features_a.get(name, {}), features_b.get(name, {})
            figures = {
                figure: Delta(finite_number(fa.get(figure)), finite_number(fb.get(figure)))
                for figure in FIGURES
                if figure in fa or figure in fb
            }
            type_a = str(fa.get("type", "?")) if fa else ""
            type_b = str(fb.get("type", "?")) if fb else ""
            rows.append(FeatureRow(split, name, type_a, type_b, figures))
    return rows


# ----- schema.pbtxt as text -----------------------------------------------------------------------------
_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:"#]+')
Fields = list[tuple[str, "str | Fields"]]


def _parse_text_proto(text: str) -> Fields:
    """A text proto as nested (field, value) pairs: enough to compare two schemas, not a general parser."""
    stack: list[Fields] = [[]]
    key = ""
    for token in _TOKEN.findall(text):
        if token.startswith("#") or token == ":":
            continue
        if token == "{":
            block: Fields = []
            stack[-1].append((key, block))
            stack.append(block)
        elif token == "}":
            if len(stack) > 1:
                stack.pop()
        elif not key:
            key = token
            continue
        else:
            stack[-1].append((key, token.strip('"')))
        key = ""
    return stack[0]


def _flat(fields: Fields) -> str:
    return " ".join(f"{k} {{ {_flat(v)} }}" if isinstance(v, list) else f"{k}: {v}" for k, v in fields)


def parse_schema(text: str) -> dict[str, tuple[str, str]]:
    """Feature name -> (type, its other constraints as one text, with its string domain's values inlined)."""
    top = _parse_text_proto(text)
    domains = {
        str(dict(block).get("name", "")): _flat([(k, v) for k, v in block if k != "name"])
        for kind, block in top
        if kind == "string_domain" and isinstance(block, list)
    }
    features: dict[str, tuple[str, str]] = {}
    for kind, block in top:
        if kind != "feature" or not isinstance(block, list):
            continue
        values = dict(block)
        rest = _flat([(k, v) for k, v in block if k not in ("name", "type")])
        if isinstance(values.get("domain"), str):
            rest += f" values {{ {domains.get(str(values['domain']), '?')} }}"
        features[str(values.get("name", "?"))] = (str(values.get("type", "unset")), rest)
    return features


def _schema_features(view: RunView) -> dict[str, tuple[str, str]] | None:
    if view.schema is None:
        return None
    raw = read_bytes(view.schema.uri, SCHEMA_FILE)
    return parse_schema(raw.decode("utf-8", "replace")) if raw is not None else None


def compare_schemas(a: RunView, b: RunView) -> list[SchemaChange]:
    """What B's schema adds, removes or changes against A's (nothing when both runs used one schema artifact)."""
    if a.schema is not None and b.schema is not None and a.schema.id == b.schema.id:
        return []
    features_a, features_b = _schema_features(a) or {}, _schema_features(b) or {}
    changes = []
    for name in sorted({*features_a, *features_b}):
        old, new = features_a.get(name), features_b.get(name)
        if old is None and new is not None:
            changes.append(SchemaChange(name, "added", "", new[0]))
        elif new is None and old is not None:
            changes.append(SchemaChange(name, "removed", old[0], ""))
        elif old is not None and new is not None and old[0] != new[0]:
            changes.append(SchemaChange(name, "type_changed", old[0], new[0]))
        elif old is not None and new is not None and old[1] != new[1]:
            changes.append(SchemaChange(name, "constraints_changed", old[1], new[1]))
    return changes


def drift_between(a: RunView, b: RunView) -> tuple[list[drift.DriftScore], str]:
    """B's drift scores when its validation measured them against A's statistics (or A's against B's)."""
    for later, earlier in ((b, a), (a, b)):
        baseline = later.previous_statistics
        if earlier.statistics is not None and baseline is not None and baseline.id == earlier.statistics.id:
            scores = [s for s in drift.artifact_scores(later.anomalies_artifact, later.anomalies) if s.kind == "drift"]
            scores.sort(key=lambda s: (not s.over_threshold, -s.score, s.feature))
            if scores:
                return scores, f"Measured by run {later.run_id}'s validation against run {earlier.run_id}'s statistics."
            return [], f"Run {later.run_id}'s validation recorded no drift scores."
    spans = [
        f"{v.run_id} against span {v.previous_statistics.properties.get('span', '?')}"
        for v in (a, b)
        if v.previous_statistics is not None
    ]
    measured = f" (drift was measured for {'; '.join(spans)})" if spans else ""
    return [], f"Neither run's validation measured drift against the other run's statistics{measured}."


def build_comparison(a: RunView, b: RunView) -> RunComparison:
    comparison = RunComparison(a, b)
    comparison.metrics = compare_metrics(a, b)
    comparison.kpis = compare_metrics(a, b, kpis=True)
    comparison.features = compare_features(a, b)
    comparison.schema_changes = compare_schemas(a, b)
    comparison.drift, comparison.drift_note = drift_between(a, b)
    return comparison
