"""ExampleValidator: TFDV anomalies against the schema, drift against the previous span, skew against serving.

Anomalies never fail the stage: the artifact carries ``blessed`` (1 only when there is no anomaly at all, as in
TFX) and the severity counts, and the pipeline's gates decide what to do with them.

Every feature's drift (and, with serving statistics, skew) is measured on every run, not only the configured
ones: TFDV throws a distance away unless a comparator asks for it, so unconfigured features get a comparator that
only measures. Their scores are recorded (``measurements`` in anomalies.json, ``drift_scores`` on the artifact)
so drift can be trended before anyone picks a threshold; only configured thresholds raise anomalies.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.stages.example_validator import Comparator, ExampleValidatorParams
from airflow_provider_mlpipe.storage import default_storage, is_gcs

if TYPE_CHECKING:
    from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

log = logging.getLogger("mlpipe.runtime")

ANOMALIES_JSON = "anomalies.json"
_COMPARATORS = {
    "linf": "infinity_norm",
    "infinity_norm": "infinity_norm",
    "l_infty": "infinity_norm",
    "jsd": "jensen_shannon_divergence",
    "jensen_shannon_divergence": "jensen_shannon_divergence",
}


# The short names the reports use for TFDV's measurement types.
_MEASURE_NAMES = {"JENSEN_SHANNON_DIVERGENCE": "jsd", "L_INFTY": "linf", "NORMALIZED_ABSOLUTE_DIFFERENCE": "nad"}
# TFDV's distances lie in [0, 1]; a comparator with this threshold measures and never raises an anomaly.
MEASURE_ONLY = math.inf


def _is_numeric(feature: schema_pb2.Feature) -> bool:
    """Numeric for drift: INT or FLOAT, unless the schema marks the integers categorical (codes, not amounts)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    categorical = feature.HasField("int_domain") and feature.int_domain.is_categorical
    return feature.type in (schema_pb2.INT, schema_pb2.FLOAT) and not categorical


def _comparator_name(config: Comparator | None, is_numeric: bool) -> str:
    # TFDV's and Vertex AI's defaults: Jensen-Shannon for numeric features, L-infinity for categorical ones.
    chosen = config.comparator if config is not None else None
    return _COMPARATORS[chosen or ("jsd" if is_numeric else "linf")]


def apply_comparators(schema: schema_pb2.Schema, thresholds: dict[str, Comparator], kind: str) -> list[str]:
    """Set ``drift_comparator`` or ``skew_comparator`` on the named schema features."""
    features = {f.name: f for f in schema.feature}
    configured = []
    for name, config in thresholds.items():
        if name not in features:
            raise ValueError(f"The {kind} threshold names the feature {name!r}, which the schema does not have.")
        feature = features[name]
        target = feature.drift_comparator if kind == "drift" else feature.skew_comparator
        getattr(target, _comparator_name(config, _is_numeric(feature))).threshold = config.threshold
        configured.append(name)
    return configured


def measure_unconfigured(schema: schema_pb2.Schema, configured: list[str], kind: str) -> None:
    """Give every other INT, FLOAT or BYTES feature the default comparator, measuring only."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    for feature in schema.feature:
        if feature.name in configured or feature.type not in (schema_pb2.INT, schema_pb2.FLOAT, schema_pb2.BYTES):
            continue
        target = feature.drift_comparator if kind == "drift" else feature.skew_comparator
        getattr(target, _comparator_name(None, _is_numeric(feature))).threshold = MEASURE_ONLY


def _load_serving_stats(uri: str, split: str | None, tmp_dir: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Serving statistics from a FeatureStats.pb file, a directory holding one, or a statistics artifact."""
    if is_gcs(uri):
        local = tempfile.mkdtemp(prefix="serving-stats-", dir=tmp_dir or None)
        default_storage().download_dir(uri, local)
        uri = local
    if os.path.isfile(uri) or os.path.isfile(os.path.join(uri, example_io.STATS_FILE)):
        return example_io.load_stats(uri)
    if not os.path.isdir(uri):
        raise ValueError(f"The serving statistics {uri} do not exist.")
    splits = example_io.artifact_splits(uri)
    chosen = split or ("serving" if "serving" in splits else splits[0])
    if chosen not in splits:
        raise ValueError(f"The serving statistics at {uri} have no split {chosen!r} (they have {splits}).")
    return example_io.load_split_stats(uri, chosen)


def _reason_kind(reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
    if not name.startswith("COMPARATOR_"):
        return "schema"
    # TFDV reports both comparisons with the same reason types; its text names the pair compared.
    text = f"{reason.short_description} {reason.description}".lower()
    return "skew" if "serving" in text else "drift"


# A schema inferred from each span follows the data, so a column dropped or retyped today would validate clean
# against today's schema. SchemaGen's diff against the previous schema catches it; these changes are anomalies.
SCHEMA_CHANGE_SEVERITY = {"removed": "ERROR", "type_changed": "ERROR", "added": "WARNING", "domain_changed": "WARNING"}
SCHEMA_CHANGE_TEXT = {
    "removed": "Column dropped since the previous schema",
    "type_changed": "Type changed since the previous schema",
    "added": "New column since the previous schema",
    "domain_changed": "Categories changed since the previous schema",
}


def schema_change_entries(diff: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    entries = []
    for change in diff or []:
        kind = str(change.get("change"))
        if kind not in SCHEMA_CHANGE_SEVERITY:
            continue
        details = {k: v for k, v in change.items() if k not in ("change", "feature")}
        entries.append(
            {
                "split": "",
                "feature": str(change.get("feature", "")),
                "severity": SCHEMA_CHANGE_SEVERITY[kind],
                "kind": "schema",
                "type": f"SCHEMA_CHANGE_{kind.upper()}",
                "short_description": SCHEMA_CHANGE_TEXT[kind],
                "description": f"{SCHEMA_CHANGE_TEXT[kind]}: {json.dumps(details, sort_keys=True)}.",
            }
        )
    return entries


def anomaly_entries(split: str, anomalies: anomalies_pb2.Anomalies) -> list[dict[str, Any]]:
    """One entry per reason, so a feature with a schema error and drift counts both."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    entries = []
    infos = list(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("", anomalies.dataset_anomaly_info))
    for feature, info in sorted(infos, key=lambda item: item[0]):
        severity = anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)
        for reason in info.reason:
            entries.append(
                {
                    "split": split,
                    "feature": feature,
                    "severity": severity,
                    "kind": _reason_kind(reason),
                    "type": anomalies_pb2.AnomalyInfo.Type.Name(reason.type),
                    "short_description": reason.short_description,
                    "description": reason.description,
                }
            )
        if not info.reason:  # TFDV always gives reasons; keep an anomaly even if a future version does not
            entries.append(
                {
                    "split": split,
                    "feature": feature,
                    "severity": severity,
                    "kind": "schema",
                    "type": "UNKNOWN_TYPE",
                    "short_description": info.short_description,
                    "description": info.description,
                }
            )
    return entries


def measurements(split: str, anomalies: anomalies_pb2.Anomalies) -> list[dict[str, Any]]:
    """Every measured drift and skew distance, anomalous or not; ``threshold`` is None where none is configured."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, items in (("drift", info.drift_measurements), ("skew", info.skew_measurements)):
            for m in items:
                measure = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)
                out.append(
                    {
                        "split": split,
                        "feature": feature,
                        "kind": kind,
                        "comparator": _MEASURE_NAMES.get(measure, measure.lower()),
                        "measure": measure,
                        "value": round(m.value, 6),
                        "threshold": m.threshold if math.isfinite(m.threshold) else None,
                    }
                )
    return out


def score_map(measured: list[dict[str, Any]], kind: str, split: str) -> dict[str, dict[str, Any]]:
    """feature -> {comparator, score, threshold} of one kind and split: the artifact property the UI trends."""
    return {
        m["feature"]: {"comparator": m["comparator"], "score": m["value"], "threshold": m["threshold"]}
        for m in measured
        if m["kind"] == kind and m["split"] == split
    }


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    import tensorflow_data_validation as tfdv

    statistics = ctx.input("statistics")
    schema = example_io.load_schema(ctx.input("schema").uri)
    params: ExampleValidatorParams = ctx.params
    drift_features = apply_comparators(schema, params.drift, "drift")
    skew = params.skew
    skew_features = apply_comparators(schema, skew.comparators() if skew else {}, "skew")
    serving = None
    if skew is not None:
        serving = _load_serving_stats(skew.serving_statistics, skew.serving_split, ctx.tmp_dir)
    # A second schema measures every feature. It is validated apart because TFDV also flags a feature missing
    # from one side of a comparison, and only configured comparators may raise anomalies.
    measuring = type(schema)()
    measuring.CopyFrom(schema)
    measure_unconfigured(measuring, drift_features, "drift")
    if skew is not None:
        measure_unconfigured(measuring, skew_features, "skew")

    previous = ctx.resolved.get("previous_statistics")
    previous_splits = example_io.artifact_splits(previous.uri, previous.properties) if previous is not None else []
    splits = example_io.artifact_splits(statistics.uri, statistics.properties)
    span = statistics.properties.get("span")
    out = ctx.output("anomalies")

    entries: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []
    for split in splits:
        stats = example_io.load_split_stats(statistics.uri, split)
        prev = example_io.load_split_stats(previous.uri, split) if split in previous_splits else None
        # Skew compares training data with serving data, so only the train split is checked (as in TFX).
        serving_here = serving if split == "train" or len(splits) == 1 else None
        anomalies = tfdv.validate_statistics(
            stats,
            schema,
            previous_statistics=prev if drift_features else None,
            serving_statistics=serving_here if skew_features else None,
        )
        if prev is not None or serving_here is not None:
            measured_all = tfdv.validate_statistics(
                stats, measuring, previous_statistics=prev, serving_statistics=serving_here
            )
            del anomalies.drift_skew_info[:]
            anomalies.drift_skew_info.extend(measured_all.drift_skew_info)
        directory = example_io.split_dir(out.path, split)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, example_io.ANOMALIES_FILE), "wb") as fh:
            fh.write(anomalies.SerializeToString())
        entries.extend(anomaly_entries(split, anomalies))
        measured.extend(measurements(split, anomalies))

    if params.schema_changes:
        entries.extend(schema_change_entries(ctx.input("schema").properties.get("diff")))

    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["severity"]] = counts.get(entry["severity"], 0) + 1
    blessed = not entries
    report = {
        "blessed": blessed,
        "span": span,
        "counts": counts,
        "anomalies": entries,
        "features": sorted({e["feature"] for e in entries if e["feature"]}),
        "measurements": measured,
        "previous_statistics_id": previous.id if previous is not None else None,
    }
    with open(os.path.join(out.path, ANOMALIES_JSON), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    out.properties.update(
        {"blessed": int(blessed), "anomaly_count": len(entries), "severity_counts": counts, "split_names": splits}
    )
    if span is not None:
        out.properties["span"] = span
    # The split drift is trended on: train, as skew is checked on it, else the only one.
    scored_split = "train" if "train" in splits else splits[0]
    for kind in ("drift", "skew"):
        scores = score_map(measured, kind, scored_split)
        if scores:
            out.properties[f"{kind}_scores"] = scores
            out.properties["scored_split"] = scored_split
    if entries:
        log.warning("ExampleValidator: %d anomaly(ies): %s", len(entries), counts)
    return {
        "blessed": blessed,
        "anomaly_count": len(entries),
        "counts": counts,
        "features": report["features"],
        "kinds": sorted({e["kind"] for e in entries}),
        "previous_statistics_id": report["previous_statistics_id"],
    }
