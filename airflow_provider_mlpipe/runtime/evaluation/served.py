"""The served model judged on each new span: how the model in production does on the data it actually met.

The Evaluator's resolved input ``served_model`` is the PushedModel that served this run's span
(``resolvers.served_model``: the highest version holding a model of an earlier span, rollbacks included). It is
scored on the eval split the candidate is judged on, with the same engine, metrics and slices, before the
candidate is judged and independently of it: its figures never decide the blessing. When it holds the baseline
model (the usual case: the newest blessed model was pushed), the baseline's figures are its figures, and no model
is scored twice.

The outcome is always recorded, as a ``mlpipe.ServedModelEvaluation`` artifact (``metrics.json``) with an INPUT
event from the PushedModel: ``status`` is ``scored``, ``no_served_model`` (the first run: nothing to score) or
``failed`` (the served version is gone, or it cannot score the new data, e.g. its signature expects a feature the
span no longer has). A failure is recorded with its reason and never fails the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.context import OutputArtifact
from airflow_provider_mlpipe.runtime.evaluation.metric_config import OVERALL
from airflow_provider_mlpipe.storage import default_storage, join

log = logging.getLogger("mlpipe.runtime.evaluator")

SAVED_MODEL = "saved_model.pb"
METRICS_FILE = "metrics.json"
SCORED, NO_SERVED_MODEL, FAILED = "scored", "no_served_model", "failed"
SliceMetrics = dict[str, dict[str, float]]
# (SavedModel directory, where the engine may write its own output) -> (engine, metrics by slice, KPIs by slice)
Scorer = Callable[[str, str], tuple[str, SliceMetrics, SliceMetrics]]


@dataclass
class ServedScore:
    status: str
    reason: str
    engine: str | None = None
    seconds: float | None = None
    scored_with: str | None = None  # "served model", or "baseline" when the served model is the baseline
    metrics: SliceMetrics = field(default_factory=dict)
    kpis: SliceMetrics = field(default_factory=dict)  # the user's business KPIs (``kpi_module``), when configured


def is_baseline(served: ArtifactRef | None, baseline: ArtifactRef | None) -> bool:
    """Whether the served version holds the baseline model, which the engine scores anyway."""
    if served is None or baseline is None or baseline.id is None:
        return False
    return served.properties.get("source_model_id") == baseline.id


def score(served: ArtifactRef | None, output_dir: str, scorer: Scorer) -> ServedScore:
    """Score the served version with ``scorer``; any error becomes a ``failed`` record, never the run's error."""
    if served is None:
        return ServedScore(NO_SERVED_MODEL, "No model of an earlier span has been pushed yet, so nothing is scored.")
    version = served.properties.get("version")
    if not default_storage().exists(join(served.uri, SAVED_MODEL)):
        reason = f"Version {version} ({served.uri}) has no {SAVED_MODEL} any more (pruned or deleted)."
        log.warning("The served model was not scored: %s", reason)
        return ServedScore(FAILED, reason)
    started = time.monotonic()
    try:
        engine, metrics, kpi_values = scorer(served.uri, join(output_dir, "tfma"))
    except Exception as exc:  # the served model's failure is a finding about it, not about this run
        reason = f"Version {version} could not score this span's eval split: {type(exc).__name__}: {exc}"
        log.warning("The served model was not scored: %s", reason)
        return ServedScore(FAILED, reason)
    seconds = round(time.monotonic() - started, 3)
    reason = f"Version {version} scored on this span."
    return ServedScore(SCORED, reason, engine, seconds, "served model", metrics, kpi_values)


def from_baseline(
    served: ArtifactRef, engine: str, baseline_metrics: SliceMetrics, baseline_kpis: SliceMetrics
) -> ServedScore:
    version = served.properties.get("version")
    reason = f"Version {version} holds the baseline model; its figures are the baseline's on this span."
    return ServedScore(SCORED, reason, engine, None, "baseline", baseline_metrics, baseline_kpis)


def ordered(metrics: SliceMetrics) -> list[dict[str, Any]]:
    """Slices as metrics.json lists them: Overall first, then by name."""
    names = sorted(metrics, key=lambda n: (n != OVERALL, n))
    return [{"slice": name, "metrics": metrics[name]} for name in names]


def record(out: OutputArtifact, served: ArtifactRef | None, result: ServedScore, label_key: str | None) -> dict:
    """Write ``metrics.json`` into the staged artifact and set its MLMD properties; returns the run's summary."""
    held = served.properties if served is not None else {}
    about = {
        "served_version": held.get("version"),
        "served_span": held.get("span"),
        "served_model_id": held.get("source_model_id"),
        "pushed_model_id": served.id if served is not None else None,
        "destination": held.get("destination"),
    }
    document = {
        "status": result.status,
        "reason": result.reason,
        **about,
        "engine": result.engine,
        "seconds": result.seconds,
        "scored_with": result.scored_with,
        "label_key": label_key,
        "slices": ordered(result.metrics),
    }
    if result.kpis:
        document["kpis"] = {"slices": ordered(result.kpis)}
    default_storage().write_text(join(out.path, METRICS_FILE), json.dumps(document, indent=2, sort_keys=True))
    overall = result.metrics.get(OVERALL, {})
    properties = {"status": result.status, "reason": result.reason, **about, "engine": result.engine}
    if overall:
        properties["overall"] = overall
    out.properties.update({k: v for k, v in properties.items() if v is not None})
    log.info("Served model: %s", result.reason)
    return {"status": result.status, "version": about["served_version"], "overall": overall}
