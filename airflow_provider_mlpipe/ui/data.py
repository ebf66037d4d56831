"""What the run and pipeline views show, gathered from MLMD (lineage, properties) and the artifact files.

Every file path is derived from an artifact URI recorded in MLMD plus a file name fixed in this module; a
request can only name an artifact id and a split, and both are checked against the run's lineage and the
artifact's own ``split_names`` before any path is built.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlpipe.hooks.gcp_storage import storage_for
from airflow_provider_mlpipe.stages.description import SERVED_MODEL_EVALUATION
from airflow_provider_mlpipe.ui import histograms
from airflow_provider_mlpipe.ui.mlmd_reader import Artifact, Execution, MlmdReader, RunGraph
from airflow_provider_mlpipe.ui.plots import RunPlots, for_drawing, parse_plots

SPLIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_FILE_BYTES = 20 * 1024 * 1024
# Curves at TFMA's thousands of thresholds, for every slice and both models, outgrow the other files.
MAX_PLOTS_BYTES = 200 * 1024 * 1024
PLOTS_FILE = "plots.json"
# MLMD artifact states of what a garbage collection deleted, or was deleting when it stopped.
DELETED_STATES = ("MARKED_FOR_DELETION", "DELETED")


class NotFoundError(LookupError):
    """The thing asked for is not part of this run (or does not exist); the views answer 404."""


# ----- files ---------------------------------------------------------------------------------------------
def _inside(base: str, *parts: str) -> str:
    """Join ``parts`` under ``base`` and refuse anything that resolves outside it (``..``, symlinks)."""
    if base.startswith("gs://"):
        joined = "/".join([base.rstrip("/"), *parts])
        if any(p in ("", ".", "..") for part in parts for p in part.split("/")):
            raise NotFoundError("unsafe path")
        return joined
    root = os.path.realpath(base)
    path = os.path.realpath(os.path.join(root, *parts))
    if path != root and not path.startswith(root + os.sep):
        raise NotFoundError("unsafe path")
    return path


def read_bytes(base: str, *parts: str) -> bytes | None:
    """The bytes of a file inside an artifact directory, or None when it is absent."""
    path = _inside(base, *parts)
    storage = storage_for(path)
    size = storage.size(path)
    if size is None or size > MAX_FILE_BYTES:
        return None
    return storage.read_bytes(path)


def read_plots(evaluation: Artifact | None) -> RunPlots | None:
    """The evaluation's plots as the run view draws them, or None when it wrote none."""
    if evaluation is None:
        return None
    path = _inside(evaluation.uri, PLOTS_FILE)
    size = storage_for(path).size(path)
    if size is None or size > MAX_PLOTS_BYTES:
        return None
    return _drawable_plots(path, size)


@functools.lru_cache(maxsize=32)
def _drawable_plots(path: str, size: int) -> RunPlots | None:
    """Parsed and thinned once per file: an artifact's files never change, and a large file parses slowly."""
    try:
        document = json.loads(storage_for(path).read_bytes(path))
    except ValueError:
        return None
    return for_drawing(parse_plots(document))


@functools.lru_cache(maxsize=4096)
def _published_bytes(uri: str, parts: tuple[str, ...]) -> bytes | None:
    return read_bytes(uri, *parts)


def read_json(artifact: Artifact | None, *parts: str) -> Any:
    if artifact is None:
        return None
    # A LIVE artifact's files never change after publishing, so the pipeline view's trends (one metrics.json per
    # span) read each file once per api-server process. Anything else (being deleted, deleted) is read afresh.
    live = artifact.state == "LIVE"
    raw = _published_bytes(artifact.uri, parts) if live else read_bytes(artifact.uri, *parts)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def list_files(artifact: Artifact, limit: int = 200) -> list[str]:
    return storage_for(artifact.uri).list_files(artifact.uri, limit)


def checked_split(artifact: Artifact, split: str) -> str:
    """``split`` if the artifact declares it; anything else (``..``, slashes, unknown names) is a 404."""
    names = artifact.properties.get("split_names") or []
    if not isinstance(names, list) or split not in names or not SPLIT_RE.match(split):
        raise NotFoundError(f"split {split!r} is not one of the artifact's splits")
    return split


def is_deleted(artifact: Artifact | None) -> bool:
    """Deleted by retention (``mlpipe gc``), or being deleted: MLMD keeps the record, the files are gone."""
    return artifact is not None and artifact.state in DELETED_STATES


# ----- run view --------------------------------------------------------------------------------------------
@dataclass
class RunView:
    dag_id: str
    run_id: str
    pipeline: str
    graph: RunGraph
    statistics: Artifact | None = None
    stats_summary: dict[str, Any] = field(default_factory=dict)
    schema: Artifact | None = None
    anomalies_artifact: Artifact | None = None
    anomalies: dict[str, Any] = field(default_factory=dict)
    evaluation: Artifact | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    plots: RunPlots | None = None
    blessing_artifact: Artifact | None = None
    blessing: dict[str, Any] = field(default_factory=dict)
    pushed: Artifact | None = None
    push_record: dict[str, Any] = field(default_factory=dict)
    # The served model scored on this span (ui/served.py): status, reason, served version, metrics by slice.
    served_evaluation: Artifact | None = None
    served: dict[str, Any] = field(default_factory=dict)
    # The previous span's statistics (the drift baseline), overlaid on this span's histograms.
    previous_statistics: Artifact | None = None
    previous_summary: dict[str, Any] = field(default_factory=dict)
    # A cache hit shows what it reused: artifact id -> the run that made it; execution id -> the original's summary.
    reused_from: dict[int, str] = field(default_factory=dict)
    reused_summaries: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def deleted(self) -> list[Artifact]:
        """This run's artifacts that a garbage collection deleted (their lineage stays, their files are gone)."""
        return [a for _, a in sorted(self.graph.artifacts.items()) if is_deleted(a)]

    @property
    def splits(self) -> list[str]:
        names = (self.statistics.properties.get("split_names") if self.statistics else None) or []
        return [n for n in names if isinstance(n, str) and SPLIT_RE.match(n)]

    def split_features(self, split: str) -> list[dict[str, Any]]:
        return summary_features(self.stats_summary, split)

    def feature_chart(self, split: str, feature: str) -> str:
        """This split's histogram of a feature, the previous span's and the other split's overlaid (inline SVG)."""

        def series(summary: dict[str, Any], artifact: Artifact | None, name: str) -> histograms.Series | None:
            entry = next((f for f in summary_features(summary, name) if f.get("name") == feature), None)
            span = artifact.properties.get("span", "?") if artifact else "?"
            return histograms.series_of(entry, f"{name}, span {span}")

        other = next((s for s in self.splits if s != split), None)
        return histograms.feature_chart(
            feature,
            series(self.stats_summary, self.statistics, split),
            series(self.previous_summary, self.previous_statistics, split),
            series(self.stats_summary, self.statistics, other) if other else None,
        )

    def split_examples(self, split: str) -> Any:
        splits = self.stats_summary.get("splits") or {}
        if isinstance(splits, dict) and isinstance(splits.get(split), dict):
            return splits[split].get("num_examples")
        counts = self.statistics.properties.get("num_examples") if self.statistics else None
        return counts.get(split) if isinstance(counts, dict) else None

    @property
    def schema_changes(self) -> list[Any]:
        if self.schema is None:
            return []
        diff = self.schema.properties.get("diff")
        if diff is None:
            diff = read_json(self.schema, "schema_diff.json")
        return diff if isinstance(diff, list) else ([diff] if diff else [])

    @property
    def baseline_by_slice(self) -> dict[str, dict[str, Any]]:
        return baseline_values(self.metrics)

    @property
    def kpis(self) -> dict[str, Any]:
        """The business KPIs (metrics.json's ``kpis``, in the metrics' shape), or an empty dict."""
        kpis = self.metrics.get("kpis")
        return kpis if isinstance(kpis, dict) else {}

    @property
    def kpi_baseline_by_slice(self) -> dict[str, dict[str, Any]]:
        return baseline_values(self.kpis)

    @property
    def blessed(self) -> bool | None:
        if self.blessing_artifact is None:
            return None
        value = self.blessing.get("blessed", self.blessing_artifact.properties.get("blessed"))
        return bool(value) if value is not None else None


def baseline_values(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{slice: values}`` of the baseline in a metrics.json document (or its ``kpis`` part)."""
    base = doc.get("baseline") or {}
    return {s.get("slice"): s.get("metrics") or {} for s in base.get("slices") or [] if isinstance(s, dict)}


def summary_features(summary: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """One split's feature entries of a ``summary.json`` (a name -> figures mapping, or a list with names)."""
    splits = summary.get("splits") or {}
    if isinstance(splits, list):
        splits = {s.get("name") or s.get("split"): s for s in splits if isinstance(s, dict)}
    data = splits.get(split) or {}
    feats = data.get("features") or []
    if isinstance(feats, dict):
        feats = [{"name": k, **v} for k, v in feats.items() if isinstance(v, dict)]
    return [f for f in feats if isinstance(f, dict)]


def _span(artifact: Artifact) -> int | None:
    span = artifact.properties.get("span")
    return span if isinstance(span, int) and not isinstance(span, bool) else None


def previous_statistics(reader: MlmdReader, view: RunView) -> Artifact | None:
    """The statistics the ExampleValidator compared with, else those of the newest earlier span (its rule)."""
    baseline = [ev.artifact_id for ev in view.graph.events if ev.kind == "INPUT" and ev.slot == "previous_statistics"]
    if baseline and baseline[-1] in view.graph.artifacts:
        return view.graph.artifacts[baseline[-1]]
    span = _span(view.statistics) if view.statistics else None
    if span is None:
        return None
    earlier = [
        a
        for a in reader.pipeline_artifacts(view.pipeline, "ExampleStatistics")
        if a.state == "LIVE" and (s := _span(a)) is not None and s < span
    ]
    return max(earlier, key=lambda a: (_span(a), a.id), default=None)


def pipeline_for_run(reader: MlmdReader, dag_id: str, xcoms: dict[str, Any]) -> str:
    """The MLMD pipeline name behind a DAG: read from the executions its tasks reported, else the DAG id."""
    ids = [int(v["execution_id"]) for v in xcoms.values() if isinstance(v, dict) and v.get("execution_id")]
    return reader.pipeline_of_executions(ids) or dag_id


def build_run_view(reader: MlmdReader, dag_id: str, run_id: str, pipeline: str) -> RunView:
    graph = reader.run_graph(pipeline, run_id)
    view = RunView(dag_id, run_id, pipeline, graph)
    view.statistics = graph.latest_output("ExampleStatistics")
    view.stats_summary = read_json(view.statistics, "summary.json") or {}
    view.schema = graph.latest_output("Schema")
    view.anomalies_artifact = graph.latest_output("ExampleAnomalies")
    view.anomalies = read_json(view.anomalies_artifact, "anomalies.json") or {}
    view.evaluation = graph.latest_output("ModelEvaluation")
    view.metrics = read_json(view.evaluation, "metrics.json") or {}
    view.plots = read_plots(view.evaluation)
    view.blessing_artifact = graph.latest_output("ModelBlessing")
    view.blessing = read_json(view.blessing_artifact, "blessing.json") or {}
    if view.blessing_artifact and not view.blessing:
        view.blessing = dict(view.blessing_artifact.properties)
    view.pushed = graph.latest_output("PushedModel")
    view.served_evaluation = graph.latest_output(SERVED_MODEL_EVALUATION)
    view.served = read_json(view.served_evaluation, "metrics.json") or {}
    view.push_record = read_json(view.pushed, "push.json") or {}
    if view.statistics is not None:
        view.previous_statistics = previous_statistics(reader, view)
        view.previous_summary = read_json(view.previous_statistics, "summary.json") or {}
    _find_reused(reader, view)
    return view


def _find_reused(reader: MlmdReader, view: RunView) -> None:
    """Which shown outputs another run made (this run's stage was a cache hit), and the summaries behind the hits."""
    candidates = (
        view.statistics,
        view.schema,
        view.anomalies_artifact,
        view.evaluation,
        view.blessing_artifact,
        view.served_evaluation,
    )
    shown = [a for a in (*candidates, view.pushed) if a is not None]
    producers = reader.producers([a.id for a in shown])
    view.reused_from = {a.id: run for a in shown if (run := _run_of(producers, a)) and run != view.run_id}
    sources = {
        e.id: e.properties["cached_from"]
        for e in view.graph.executions
        if e.state == "CACHED" and isinstance(e.properties.get("cached_from"), int)
    }
    originals = {e.id: e for e in reader.executions(sorted(set(sources.values())))}
    view.reused_summaries = {
        execution_id: summary
        for execution_id, source in sources.items()
        if source in originals and isinstance(summary := originals[source].properties.get("summary"), dict)
    }


def artifact_in_run(view: RunView, artifact_id: int) -> Artifact:
    artifact = view.graph.artifacts.get(artifact_id)
    if artifact is None:
        raise NotFoundError(f"artifact {artifact_id} is not part of run {view.run_id}")
    return artifact


def _run_rows(
    reader: MlmdReader, producers: dict[int, Execution], row_fields: list[tuple[Artifact, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Each run's row: the figures of what it made, then of what its cache hits reused (``reused``: field -> run)."""
    by_run: dict[str, dict[str, Any]] = {}
    for artifact, fields in sorted(row_fields, key=lambda item: item[0].id):
        by_run.setdefault(_run_of(producers, artifact), {}).update(fields)
    reusers = reader.reusers([a.id for a, _ in row_fields])
    for artifact, fields in row_fields:
        origin = _run_of(producers, artifact)
        for execution in reusers.get(artifact.id, []):
            run_id = str(execution.properties.get("run_id", ""))
            if not run_id or run_id == origin:
                continue
            row = by_run.setdefault(run_id, {})
            fresh = {k: v for k, v in fields.items() if k not in row}
            row.update(fresh)
            row.setdefault("reused", {}).update(dict.fromkeys(fresh, origin))
    return by_run


# ----- pipeline view ---------------------------------------------------------------------------------------
@dataclass
class SpanPoint:
    run_id: str
    span: Any
    values: dict[str, float]


@dataclass
class PipelineView:
    dag_id: str
    pipeline: str
    runs: list[dict[str, Any]]
    metric_points: list[SpanPoint]
    anomaly_points: list[SpanPoint]
    pushes: list[dict[str, Any]]
    rollbacks: list[Execution]
    kpi_points: list[SpanPoint] = field(default_factory=list)  # overall business KPIs, per evaluation
    anomaly_artifacts: list[Artifact] = field(default_factory=list)  # the drift trends' source

    @property
    def metric_names(self) -> list[str]:
        return sorted({k for p in self.metric_points for k in p.values})

    @property
    def kpi_names(self) -> list[str]:
        return sorted({k for p in self.kpi_points for k in p.values})

    @property
    def severities(self) -> list[str]:
        return sorted({k for p in self.anomaly_points for k in p.values})

    @property
    def serving_version(self) -> Any:
        """TF Serving serves the highest version; a rollback pushes a copy of the target as a new highest one."""
        versions = [p["version"] for p in self.pushes if isinstance(p.get("version"), int)]
        return max(versions) if versions else None

    def destination_of(self, version: str) -> str | None:
        """The destination a version was pushed to, from MLMD (never from the request)."""
        for push in reversed(self.pushes):
            if str(push.get("version")) == version and push.get("destination"):
                return str(push["destination"])
        return None


def _run_of(producers: dict[int, Execution], artifact: Artifact) -> str:
    execution = producers.get(artifact.id)
    return str(execution.properties.get("run_id", "")) if execution else ""


def _overall_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    for entry in metrics.get("slices") or []:
        if isinstance(entry, dict) and entry.get("slice") in ("Overall", "", None):
            values = entry.get("metrics") or {}
            return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}


def _sort_key(point: SpanPoint) -> tuple[str, str]:
    return (f"{point.span}".zfill(12), point.run_id)


def build_pipeline_view(reader: MlmdReader, dag_id: str, pipeline: str, dag_runs: list[dict[str, Any]]) -> PipelineView:
    found = reader.pipeline_artifacts_by_type(
        pipeline, ["ModelEvaluation", "ExampleAnomalies", "ModelBlessing", "PushedModel"]
    )
    evaluations, anomalies = found["ModelEvaluation"], found["ExampleAnomalies"]
    blessings, pushed = found["ModelBlessing"], found["PushedModel"]
    producers = reader.producers([a.id for a in [*evaluations, *anomalies, *blessings, *pushed]])

    # What each artifact puts in its run's row of the run table.
    row_fields: list[tuple[Artifact, dict[str, Any]]] = []
    metric_points, kpi_points = [], []
    for a in evaluations:
        if is_deleted(a):  # its metrics went with its files: the run's row says so, the charts skip it
            row_fields.append((a, {"span": a.properties.get("span", ""), "deleted": True}))
            continue
        doc = read_json(a, "metrics.json") or {}
        point = SpanPoint(_run_of(producers, a), a.properties.get("span", ""), _overall_metrics(doc))
        metric_points.append(point)
        if isinstance(doc.get("kpis"), dict):
            kpi_points.append(SpanPoint(point.run_id, point.span, _overall_metrics(doc["kpis"])))
        row_fields.append((a, {"span": point.span, "metrics": point.values}))
    anomaly_points = []
    for a in anomalies:
        # The property is there since severity counts were recorded (empty when there is no anomaly); the file
        # is read only for older artifacts: a year of daily runs would read 365 files per view.
        counts = a.properties.get("severity_counts")
        if counts is None:
            counts = (read_json(a, "anomalies.json") or {}).get("counts") or {}
        values = {str(k): float(v) for k, v in counts.items()} if isinstance(counts, dict) else {}
        values["total"] = float(a.properties.get("anomaly_count", sum(values.values())))
        anomaly_points.append(SpanPoint(_run_of(producers, a), a.properties.get("span", ""), values))
        row_fields.append((a, {"span": anomaly_points[-1].span, "anomalies": int(values["total"])}))
        if is_deleted(a):  # the counts are MLMD properties, so they stay; the row says the files are gone
            row_fields.append((a, {"deleted": True}))
    metric_points.sort(key=_sort_key)
    kpi_points.sort(key=_sort_key)
    anomaly_points.sort(key=_sort_key)
    row_fields += [(a, {"blessed": bool(a.properties.get("blessed"))}) for a in blessings]
    row_fields += [(a, {"pushed_version": a.properties.get("version")}) for a in pushed]
    pushes = []
    for a in pushed:
        record = {"artifact_id": a.id, "run_id": _run_of(producers, a), "uri": a.uri, **a.properties}
        # A pruned version (keep_versions) cannot be rolled back to; gs:// is checked by the command itself.
        record["available"] = a.uri.startswith("gs://") or os.path.isdir(a.uri)
        pushes.append(record)
    by_run = _run_rows(reader, producers, row_fields)
    runs = []
    for dag_run in dag_runs:
        runs.append({**dag_run, **by_run.get(dag_run["run_id"], {})})
    rollbacks = reader.pipeline_executions_like(pipeline, "Rollback")
    return PipelineView(
        dag_id,
        pipeline,
        runs,
        metric_points,
        anomaly_points,
        pushes,
        rollbacks,
        kpi_points,
        anomaly_artifacts=anomalies,
    )
