"""Evaluator: metrics per slice for the candidate model and its blessed baseline, and the blessing.

The baseline is ``ctx.resolved["baseline_model"]``: the newest blessed model whose training span is not later than
the candidate's (``runtime.metadata.resolvers.blessed_baseline``); on the first run there is none and change
thresholds are skipped, as in TFX, and so after ``mlpipe baseline reset`` (``ctx.resolved["baseline_reset"]``, named
in the verdict). URI-native: models and examples are read at their URIs (``gs://`` on a GCS
root; TensorFlow loads a SavedModel from there itself), and TFMA's Beam pipelines write there too.

``engine``: ``fast`` (batched predictions and exact metric arithmetic, ``evaluation/fast_engine.py``), ``tfma``
(TFMA's ``run_model_analysis`` on Beam, writing ``tfma/``), or ``auto`` (fast when it supports every configured
metric). Both engines give identical metric values, and the blessing is decided by one rule set
(``metric_config.validate``, TFMA's semantics).

``kpi_module``: business KPIs per slice for the candidate and the baseline (``evaluation/kpis.py``), judged by
their thresholds with the metrics and written to ``metrics.json`` under ``kpis``, in the metrics' own shape.

Outputs: ``evaluation`` (``metrics.json``) and ``blessing`` (``BLESSED`` or ``NOT_BLESSED`` holding the reason,
``blessing.json``), and ``served_evaluation``: the served model scored on the same eval split first
(``evaluation/served.py``), recorded whatever the outcome and never deciding the blessing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.evaluation import kpis, metric_config, served, slicing
from airflow_provider_mlpipe.runtime.evaluation.metric_config import OVERALL, EvalSpec, SliceValues
from airflow_provider_mlpipe.runtime.evaluation.served import ordered as _ordered
from airflow_provider_mlpipe.runtime.io import schema_tables
from airflow_provider_mlpipe.runtime.training.user_modules import module_digest
from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams
from airflow_provider_mlpipe.storage import default_storage, join

log = logging.getLogger("mlpipe.runtime.evaluator")

SERVING_DIR = "Format-Serving"


def fingerprint(request: StageRequest, params: EvaluatorParams) -> str:
    """A changed KPI module is a new evaluation, not a cache hit."""
    return module_digest(params.kpi_module, request.spec_dir) if params.kpi_module else ""


def _serving_dir(model_uri: str) -> str:
    path = join(model_uri, SERVING_DIR)
    if not default_storage().exists(join(path, "saved_model.pb")):
        raise FileNotFoundError(f"The model artifact {model_uri} has no {SERVING_DIR}/saved_model.pb.")
    return path


def _has_signature(saved_model_dir: str, name: str) -> bool:
    return slicing.signature_outputs(saved_model_dir, name) is not None


def _check_features(spec: EvalSpec, schema: Any, model_dir: str) -> None:
    """Slice features and the label are raw features or the candidate's transformed features; anything else is
    an error now, before a model is scored (read from ``saved_model.pb``, without loading the model)."""
    transformed = slicing.signature_outputs(model_dir, metric_config.TRANSFORM_SIGNATURE) or []
    slicing.check_features(spec, [feature.name for feature in schema.feature], transformed)


def choose_engine(spec: EvalSpec) -> str:
    from airflow_provider_mlpipe.runtime.evaluation import fast_engine

    missing = fast_engine.unsupported(spec)
    if spec.engine == "fast" and missing:
        raise ValueError(f"engine: fast cannot compute {missing}; use engine: tfma or auto.")
    if spec.engine == "auto":
        if missing:
            log.info("engine: auto uses TFMA, because the fast engine does not compute %s.", ", ".join(missing))
        return "tfma" if missing else "fast"
    return spec.engine


def _run_engine(
    ctx: ExecutorContext,
    spec: EvalSpec,
    model_dir: str,
    baseline_dir: str | None,
    files: list[str],
    schema: Any,
    tfma_output: str | None = None,
) -> tuple[str, dict, dict | None, dict | None, bool | None, tuple[SliceValues, SliceValues | None]]:
    """(engine, candidate metrics, baseline metrics, plot data, TFMA's own validation verdict or None, candidate
    and baseline KPIs).

    ``tfma_output``: where TFMA writes its output (default: ``tfma/`` in the evaluation artifact)."""
    engine = choose_engine(spec)
    kpi_module = kpis.load(spec.kpi_module, ctx.spec_dir, [k.name for k in spec.kpis]) if spec.kpi_module else None
    if engine == "fast":
        from airflow_provider_mlpipe.runtime.evaluation import fast_engine
        from airflow_provider_mlpipe.runtime.evaluation.fast_metrics import Unsupported

        try:
            candidate, base, plot_data, kpi_values = fast_engine.evaluate(
                spec, model_dir, baseline_dir, files, schema, kpi_module
            )
            return engine, candidate, base, plot_data, None, kpi_values
        except Unsupported as exc:
            if spec.engine == "fast":
                raise ValueError(f"engine: fast cannot evaluate this model: {exc}. Use engine: tfma or auto.") from exc
            log.info("engine: auto uses TFMA, because the fast engine does not mirror %s.", exc)
            engine = "tfma"
    from airflow_provider_mlpipe.runtime.evaluation import tfma_engine

    candidate, base, plot_data, tfma_ok = tfma_engine.evaluate(
        spec,
        model_dir,
        baseline_dir,
        files,
        schema,
        output_path=tfma_output or join(ctx.output("evaluation").path, "tfma"),
        temp_uri=ctx.temp_uri,
        beam_args=ctx.beam_args,
        has_transform=_has_signature(model_dir, metric_config.TRANSFORM_SIGNATURE),
    )
    kpi_values: tuple[SliceValues, SliceValues | None] = ({}, None)
    if kpi_module is not None:
        kpi_values = kpis.evaluate(kpi_module, spec, model_dir, baseline_dir, files, schema)
    return engine, candidate, base, plot_data, tfma_ok, kpi_values


def _scored_alone(
    ctx: ExecutorContext, spec: EvalSpec, model_dir: str, files: list[str], schema: Any, tfma_output: str
) -> tuple[str, SliceValues, SliceValues]:
    """A model scored on its own, as the candidate is: (engine, metrics, KPIs)."""
    engine, metrics, _, _, _, (kpi_values, _) = _run_engine(ctx, spec, model_dir, None, files, schema, tfma_output)
    return engine, metrics, kpi_values


def _by_slice(candidate: SliceValues, base: SliceValues | None, baseline_id: int | None) -> dict[str, Any]:
    """``slices`` and ``baseline`` (its slices and candidate-minus-baseline diffs) as metrics.json holds them."""
    doc: dict[str, Any] = {"slices": _ordered(candidate), "baseline": None}
    if base is not None:
        diffs = {
            s: {k: v - base[s][k] for k, v in vals.items() if k in base.get(s, {})}
            for s, vals in candidate.items()
            if s in base
        }
        doc["baseline"] = {"model_id": baseline_id, "slices": _ordered(base), "diff": _ordered(diffs)}
    return doc


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    params: EvaluatorParams = ctx.params
    spec = metric_config.eval_spec(params)
    examples = ctx.input("examples")
    model = ctx.input("model")
    baseline = ctx.resolved.get("baseline_model")
    if baseline is not None and baseline.id is not None and baseline.id == model.id:
        baseline = None  # a model is never its own baseline
    split = params.eval_split
    files = schema_tables.split_files(examples.uri, split)
    schema_ref = ctx.optional_input("schema")
    schema = _schema(schema_ref.uri if schema_ref else None, model.uri, files)
    model_dir = _serving_dir(model.uri)
    _check_features(spec, schema, model_dir)
    baseline_dir = _serving_dir(baseline.uri) if baseline is not None else None
    served_model = ctx.resolved.get("served_model")
    served_out = ctx.outputs.get("served_evaluation")
    served_score = None
    if served_out is not None and not served.is_baseline(served_model, baseline):
        # Scored alone, before the candidate, with the same engine, metrics and slices.
        served_score = served.score(
            served_model, served_out.path, lambda d, out: _scored_alone(ctx, spec, d, files, schema, out)
        )
    started = time.monotonic()
    engine, candidate, base, plot_data, tfma_ok, (candidate_kpis, base_kpis) = _run_engine(
        ctx, spec, model_dir, baseline_dir, files, schema
    )
    seconds = round(time.monotonic() - started, 3)
    served_summary = None
    if served_out is not None:
        if served_score is None:  # the served model is the baseline, scored just now
            served_score = served.from_baseline(served_model, engine, base or {}, base_kpis or {})
        served_summary = served.record(served_out, served_model, served_score, spec.label_key)
    judged_base = metric_config.with_kpis(base, base_kpis) if base is not None else None
    failed = metric_config.validate(spec, metric_config.with_kpis(candidate, candidate_kpis), judged_base)
    skipped = metric_config.unjudged(spec, candidate)
    blessed = not failed
    if tfma_ok is not None and tfma_ok != blessed:
        log.warning("TFMA's own validation says %s, mlpipe's rules say %s.", tfma_ok, blessed)
    reset = ctx.resolved.get("baseline_reset") if base is None else None
    reset_doc = (
        {"artifact_id": reset.id, **{k: reset.properties.get(k) for k in ("user", "reason", "span", "recorded_at")}}
        if reset is not None
        else None
    )
    reset_words = f"by {reset_doc['user']}: {reset_doc['reason']}" if reset_doc else ""
    reason = metric_config.reason(failed, base is not None, skipped, baseline_reset=reset_words)
    thresholds = [
        {
            "metric": m.name,
            **({"kpi": True} if m in spec.kpis else {}),
            "lower_bound": m.lower_bound,
            "upper_bound": m.upper_bound,
            "change": m.change.model_dump() if m.change is not None and m.has_change_threshold else None,
            "change_applied": base is not None and m.has_change_threshold,
            "slices": m.threshold.slices if m.threshold else None,
            "min_examples": m.threshold.min_examples if m.threshold else 0,
        }
        for m in spec.judged
        if m.has_value_threshold or m.has_change_threshold
    ]
    metrics_doc: dict[str, Any] = {
        "engine": engine,
        "seconds": seconds,
        "label_key": spec.label_key,
        "model_id": model.id,
        **_by_slice(candidate, base, baseline.id if baseline is not None else None),
        "thresholds": thresholds,
        "not_judged": skipped,
        "baseline_reset": reset_doc,
    }
    if spec.kpi_module:
        # the metrics' shape (slices[].metrics holds the KPI values), so one reader serves both
        metrics_doc["kpis"] = {
            "module": spec.kpi_module,
            "declared": [k.name for k in spec.kpis],
            **_by_slice(candidate_kpis, base_kpis, baseline.id if baseline is not None else None),
        }
    if tfma_ok is not None:
        metrics_doc["tfma_validation_ok"] = tfma_ok
    storage = default_storage()
    eval_dir = ctx.output("evaluation").path
    storage.write_text(join(eval_dir, "metrics.json"), json.dumps(metrics_doc, indent=2, sort_keys=True))
    if plot_data is not None:
        from airflow_provider_mlpipe.runtime.evaluation.plots import json_safe

        plots_doc = json_safe({"kind": spec.kind, **plot_data})
        storage.write_text(join(eval_dir, "plots.json"), json.dumps(plots_doc, sort_keys=True, allow_nan=False))

    blessing_dir = ctx.output("blessing").path
    blessing_doc = {
        "blessed": blessed,
        "reason": reason,
        "failed": failed,
        "current_model_id": model.id,
        "baseline_model_id": baseline.id if baseline is not None else None,
        "baseline_reset": reset_doc,
    }
    storage.write_text(join(blessing_dir, "blessing.json"), json.dumps(blessing_doc, indent=2, sort_keys=True))
    storage.write_text(join(blessing_dir, "BLESSED" if blessed else "NOT_BLESSED"), reason + "\n")

    span = examples.properties.get("span", model.properties.get("span"))
    eval_props: dict[str, Any] = {"engine": engine}
    blessing_props: dict[str, Any] = {"blessed": int(blessed), "reason": reason}
    if model.id is not None:
        blessing_props["current_model_id"] = model.id
    if baseline is not None and baseline.id is not None:
        eval_props["baseline_model_id"] = blessing_props["baseline_model_id"] = baseline.id
    if reset is not None and reset.id is not None:
        eval_props["baseline_reset_id"] = blessing_props["baseline_reset_id"] = reset.id
    if span is not None:
        eval_props["span"] = blessing_props["span"] = span
    overall_kpis = kpis.overall(candidate_kpis, OVERALL)
    if overall_kpis:
        eval_props["kpis"] = overall_kpis
    ctx.output("evaluation").properties.update(eval_props)
    ctx.output("blessing").properties.update(blessing_props)
    overall = candidate.get(OVERALL, {})
    log.info("%s: %s", "BLESSED" if blessed else "NOT_BLESSED", reason)
    summary = {"blessed": blessed, "reason": reason, "engine": engine, "seconds": seconds, "overall": overall}
    if spec.kpi_module:
        summary["kpis"] = overall_kpis
    return {**summary, "served": served_summary} if served_summary is not None else summary


def _schema(schema_uri: str | None, model_uri: str, files: list[str]) -> Any:
    """The raw schema that encodes Parquet rows as the model parses them: a wired Schema input, else the copy the
    Trainer keeps in the model artifact, else (a model from elsewhere) the Parquet column types."""
    if schema_uri:
        return schema_tables.load_schema(schema_uri)
    kept = join(model_uri, schema_tables.SCHEMA_FILE)
    if default_storage().exists(kept):
        return schema_tables.load_schema(kept)
    log.warning("No schema input and none in the model artifact: encoding examples by their Parquet types.")
    return schema_tables.schema_from_parquet(files)
