"""SchemaGen: infer a schema from the train split's statistics, or import a curated ``.pbtxt``.

The curated file must lie inside the pipeline's folder (like user modules). When the pipeline already has a
schema, the features added, removed or retyped since then are recorded, so a reviewer sees why the
validator suddenly reports anomalies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.stages.schema_gen import SchemaGenParams

if TYPE_CHECKING:
    from tensorflow_metadata.proto.v0 import schema_pb2

log = logging.getLogger("mlpipe.runtime")

DIFF_FILE = "schema_diff.json"


def schema_file_path(schema_file: str, spec_dir: str | None) -> str:
    """The curated schema's path; refused when it lies outside the pipeline's folder."""
    if not spec_dir:
        raise ValueError("schema_file needs the pipeline's folder, but the request names none.")
    base = Path(spec_dir).resolve()
    path = (base / schema_file).resolve()
    if base not in path.parents:
        raise ValueError(f"The schema file {schema_file!r} lies outside the pipeline's folder {base}; refused.")
    if not path.is_file():
        raise ValueError(f"The schema file {schema_file!r} was not found in {base}.")
    return str(path)


def fingerprint(request: StageRequest, params: SchemaGenParams) -> str:
    """An edited curated schema must not be served from the cache."""
    if not params.schema_file:
        return ""
    try:
        return hashlib.sha256(Path(schema_file_path(params.schema_file, request.spec_dir)).read_bytes()).hexdigest()
    except (ValueError, OSError) as exc:
        return f"unresolved: {exc}"


def _describe_type(feature: schema_pb2.Feature) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def _domain_values(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> list[str] | None:
    if feature.HasField("string_domain"):
        return sorted(feature.string_domain.value)
    if feature.domain:
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return sorted(domain.value)
    return None


def schema_diff(previous: schema_pb2.Schema, current: schema_pb2.Schema) -> list[dict[str, Any]]:
    """Features added, removed, retyped, or with a changed categorical domain."""
    before = {f.name: f for f in previous.feature}
    after = {f.name: f for f in current.feature}
    changes: list[dict[str, Any]] = []
    for name in sorted(after.keys() - before.keys()):
        changes.append({"change": "added", "feature": name, "type": _describe_type(after[name])})
    for name in sorted(before.keys() - after.keys()):
        changes.append({"change": "removed", "feature": name, "type": _describe_type(before[name])})
    for name in sorted(after.keys() & before.keys()):
        old, new = before[name], after[name]
        if old.type != new.type:
            changes.append(
                {"change": "type_changed", "feature": name, "from": _describe_type(old), "to": _describe_type(new)}
            )
        old_values, new_values = _domain_values(previous, old), _domain_values(current, new)
        if old_values is not None and new_values is not None and old_values != new_values:
            changes.append(
                {
                    "change": "domain_changed",
                    "feature": name,
                    "added_values": sorted(set(new_values) - set(old_values)),
                    "removed_values": sorted(set(old_values) - set(new_values)),
                }
            )
    return changes


def allow_missing(schema: schema_pb2.Schema, features: bool | list[str]) -> list[str]:
    """Let features be absent in some examples, as inference does for features that had missing values.

    A small training split without a single NA makes TFDV require the feature everywhere (``shape`` and
    ``presence.min_fraction = 1``); real data with occasional NAs then never validates. ``min_count`` stays, so
    a dropped column is still an anomaly.
    """
    relaxed = []
    known = {f.name for f in schema.feature}
    unknown = sorted(set(features) - known) if isinstance(features, list) else []
    if unknown:
        raise ValueError(f"allow_missing names features the schema does not have: {unknown}.")
    for feature in schema.feature:
        if features is not True and feature.name not in features:
            continue
        feature.presence.ClearField("min_fraction")
        if feature.HasField("shape") and [d.size for d in feature.shape.dim] == [1]:
            feature.ClearField("shape")
            feature.value_count.min = 1
            feature.value_count.max = 1
        relaxed.append(feature.name)
    return relaxed


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    import tensorflow_data_validation as tfdv

    statistics = ctx.input("statistics")
    out = ctx.output("schema")
    params: SchemaGenParams = ctx.params
    schema_file = params.schema_file
    if schema_file:
        path = schema_file_path(schema_file, ctx.spec_dir)
        schema = example_io.load_schema(path)
        out.properties.update({"source": "imported", "schema_file": schema_file})
        inferred_from = None
    else:
        splits = example_io.artifact_splits(statistics.uri, statistics.properties)
        inferred_from = "train" if "train" in splits else splits[0]
        stats = example_io.load_split_stats(statistics.uri, inferred_from)
        if not stats.datasets or stats.datasets[0].num_examples == 0:
            # An empty schema would turn every feature of every later span into an anomaly.
            raise ValueError(f"The {inferred_from!r} split of {statistics.uri} has no examples: no schema to infer.")
        schema = tfdv.infer_schema(stats, infer_feature_shape=params.infer_feature_shape)
        out.properties["source"] = "inferred"
        missing_ok = params.allow_missing
        if missing_ok:
            allow_missing(schema, True if missing_ok is True else [str(f) for f in missing_ok])
    example_io.write_schema(schema, out.path)

    summary: dict[str, Any] = {
        "source": out.properties["source"],
        "num_features": len(schema.feature),
        "features": [f.name for f in schema.feature],
    }
    if inferred_from:
        summary["inferred_from"] = inferred_from
    if "span" in statistics.properties:
        out.properties["span"] = statistics.properties["span"]

    previous = ctx.resolved.get("previous_schema")
    if previous is not None:
        diff = schema_diff(example_io.load_schema(previous.uri), schema)
        out.properties["diff"] = diff
        if previous.id is not None:
            out.properties["previous_schema_id"] = previous.id
        with open(os.path.join(out.path, DIFF_FILE), "w", encoding="utf-8") as fh:
            json.dump({"previous_schema_id": previous.id, "changes": diff}, fh, indent=1)
        summary["diff"] = diff
        log.info("SchemaGen: %d change(s) against schema %s.", len(diff), previous.id)
    return summary
