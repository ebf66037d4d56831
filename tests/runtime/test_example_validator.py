"""ExampleValidator executor: schema anomalies, drift against the previous span, skew, and the JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.executors import example_gen, example_validator, schema_gen, statistics_gen
from tests.runtime.data_fixtures import DAGS, PATTERN, SPANS, as_input, corrupt_rows, make_ctx, read_rows, write_rows

pytestmark = pytest.mark.runtime

DRIFT = {
    "island": {"comparator": "linf", "threshold": 0.4},
    "flipper_length_mm": {"comparator": "jsd", "threshold": 0.5},
}


def statistics_of(tmp: Path, date: str, spec_dir: Path = DAGS) -> ArtifactRef:
    eg = make_ctx(tmp, "example_gen", {"input": {"pattern": PATTERN}}, date=date, spec_dir=spec_dir)
    example_gen.execute(eg)
    sg = make_ctx(tmp, "statistics_gen", {}, inputs={"examples": as_input(eg, "examples")})
    statistics_gen.execute(sg)
    return as_input(sg, "statistics")


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArtifactRef]:
    tmp = tmp_path_factory.mktemp("spans")
    out = {"day1": statistics_of(tmp, "2024-01-01"), "day2": statistics_of(tmp, "2024-01-02")}
    rows, columns = corrupt_rows(read_rows(SPANS / "span-2024-01-03.csv"))
    write_rows(tmp / "corrupt" / "data" / "penguins" / "span-2024-01-03.csv", rows, columns)
    out["corrupt"] = statistics_of(tmp, "2024-01-03", spec_dir=tmp / "corrupt")
    sc = make_ctx(tmp, "schema_gen", {"allow_missing": True}, inputs={"statistics": out["day1"]})
    schema_gen.execute(sc)
    out["schema"] = as_input(sc, "schema")
    return out


def validate(tmp_path: Path, stats: ArtifactRef, schema: ArtifactRef, previous: ArtifactRef | None, **params):
    ctx = make_ctx(
        tmp_path, "example_validator", params, inputs={"statistics": stats, "schema": schema},
        resolved={"previous_statistics": previous},
    )  # fmt: skip
    summary = example_validator.execute(ctx)
    out = ctx.output("anomalies")
    return out, summary, json.loads(Path(out.path, "anomalies.json").read_text())


def test_clean_span_is_blessed_with_measured_drift(tmp_path: Path, spans) -> None:
    out, _, report = validate(tmp_path, spans["day2"], spans["schema"], spans["day1"], drift=DRIFT)
    assert out.properties["blessed"] == 1 and out.properties["anomaly_count"] == 0
    assert out.properties["severity_counts"] == {} and out.properties["span"] == 20240102
    assert report["blessed"] is True and report["span"] == 20240102 and report["anomalies"] == []
    measured = {(m["split"], m["feature"], m["measure"]) for m in report["measurements"]}
    assert ("train", "island", "L_INFTY") in measured
    assert ("eval", "flipper_length_mm", "JENSEN_SHANNON_DIVERGENCE") in measured
    configured = [m for m in report["measurements"] if m["threshold"] is not None]
    assert {m["feature"] for m in configured} == set(DRIFT) and all(m["value"] < m["threshold"] for m in configured)
    for split in ("train", "eval"):
        anomalies = anomalies_pb2.Anomalies.FromString(Path(out.path, f"Split-{split}", "SchemaDiff.pb").read_bytes())
        assert not anomalies.anomaly_info and anomalies.drift_skew_info


def test_corrupt_span_reports_schema_anomalies_and_drift(tmp_path: Path, spans) -> None:
    out, summary, report = validate(tmp_path, spans["corrupt"], spans["schema"], spans["day2"], drift=DRIFT)
    found = {(a["feature"], a["kind"], a["type"]) for a in report["anomalies"] if a["split"] == "train"}
    assert found == {
        ("bill_depth_mm", "schema", "SCHEMA_MISSING_COLUMN"),
        ("body_mass_g", "schema", "UNEXPECTED_DATA_TYPE"),
        ("flipper_length_mm", "drift", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
        ("island", "drift", "COMPARATOR_L_INFTY_HIGH"),
    }
    assert {a["split"] for a in report["anomalies"]} == {"train", "eval"}
    [dropped] = [a for a in report["anomalies"] if a["split"] == "train" and a["feature"] == "bill_depth_mm"]
    assert dropped["severity"] == "ERROR" and dropped["short_description"] == "Column dropped"
    assert report["blessed"] is False and report["span"] == 20240103
    assert report["features"] == ["bill_depth_mm", "body_mass_g", "flipper_length_mm", "island"]
    assert report["counts"] == {"ERROR": len(report["anomalies"])} == out.properties["severity_counts"]
    assert out.properties["blessed"] == 0 and out.properties["anomaly_count"] == len(report["anomalies"]) == 8
    assert summary["kinds"] == ["drift", "schema"]
    train = anomalies_pb2.Anomalies.FromString(Path(out.path, "Split-train", "SchemaDiff.pb").read_bytes())
    assert set(train.anomaly_info) == {"bill_depth_mm", "body_mass_g", "flipper_length_mm", "island"}


def test_no_previous_span_means_no_drift_check(tmp_path: Path, spans) -> None:
    _, _, report = validate(tmp_path, spans["corrupt"], spans["schema"], None, drift=DRIFT)
    assert {a["kind"] for a in report["anomalies"]} == {"schema"}
    assert report["measurements"] == []


def test_skew_against_serving_statistics(tmp_path: Path, spans) -> None:
    skew = {"serving_statistics": spans["corrupt"].uri, "serving_split": "train", "island": {"threshold": 0.4}}
    _, _, report = validate(tmp_path, spans["day2"], spans["schema"], None, skew=skew)
    assert [(a["split"], a["feature"], a["kind"]) for a in report["anomalies"]] == [("train", "island", "skew")]
    [measure] = [m for m in report["measurements"] if m["threshold"] is not None]
    assert measure["feature"] == "island" and measure["kind"] == "skew" and measure["value"] > 0.4


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"wingspan": {"threshold": 0.1}}, "does not have"),
        ({"island": {"comparator": "kl", "threshold": 0.1}}, "'linf' or 'jsd'"),
    ],
)
def test_bad_drift_settings(tmp_path: Path, spans, drift: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(tmp_path, spans["day2"], spans["schema"], spans["day1"], drift=drift)


def test_schema_changes_against_the_previous_schema_become_anomalies():
    from airflow_provider_mlpipe.runtime.executors.example_validator import schema_change_entries

    diff = [
        {"change": "removed", "feature": "species", "type": "BYTES"},
        {"change": "type_changed", "feature": "year", "from": "INT", "to": "BYTES"},
        {"change": "added", "feature": "colour", "type": "BYTES"},
    ]
    entries = schema_change_entries(diff)
    assert [(e["feature"], e["severity"], e["type"]) for e in entries] == [
        ("species", "ERROR", "SCHEMA_CHANGE_REMOVED"),
        ("year", "ERROR", "SCHEMA_CHANGE_TYPE_CHANGED"),
        ("colour", "WARNING", "SCHEMA_CHANGE_ADDED"),
    ]
    assert "Column dropped since the previous schema" in entries[0]["short_description"]
    assert schema_change_entries(None) == []


# ----- drift and skew measured for every feature on every run ---------------------------------------------------
def schema_features(schema: ArtifactRef) -> dict[str, str]:
    """feature -> the comparator its drift is measured with (TFDV's defaults: jsd numeric, linf categorical)."""
    from airflow_provider_mlpipe.runtime.io import example_io

    kinds = {}
    for feature in example_io.load_schema(schema.uri).feature:
        categorical = feature.HasField("int_domain") and feature.int_domain.is_categorical
        kinds[feature.name] = "linf" if feature.type == schema_pb2.BYTES or categorical else "jsd"
    return kinds


def test_every_feature_drift_is_recorded_without_thresholds(tmp_path: Path, spans) -> None:
    """No drift configured: no drift anomaly, yet every feature's score against the previous span is recorded."""
    out, summary, report = validate(tmp_path, spans["corrupt"], spans["schema"], spans["day2"])
    assert {a["kind"] for a in report["anomalies"]} == {"schema"} and summary["kinds"] == ["schema"]
    expected = schema_features(spans["schema"])
    for split in ("train", "eval"):
        drift = {m["feature"]: m for m in report["measurements"] if m["split"] == split and m["kind"] == "drift"}
        # The corrupt span lacks bill_depth_mm and holds text in body_mass_g: TFDV has no histogram to compare.
        assert set(drift) == set(expected) - {"bill_depth_mm", "body_mass_g"}
        assert {f: m["comparator"] for f, m in drift.items()} == {f: expected[f] for f in drift}
        assert all(m["threshold"] is None and 0 <= m["value"] <= 1 for m in drift.values())
    scores = out.properties["drift_scores"]
    assert out.properties["scored_split"] == "train" and "skew_scores" not in out.properties
    assert scores["island"]["comparator"] == "linf" and scores["island"]["score"] > 0.4
    assert scores["flipper_length_mm"] == {
        "comparator": "jsd",
        "score": next(m["value"] for m in report["measurements"] if m["feature"] == "flipper_length_mm"),
        "threshold": None,
    }
    assert json.loads(json.dumps(out.properties)) == out.properties  # JSON-safe: no Infinity for MLMD or the UI


def test_configured_thresholds_keep_raising_and_scores_match(tmp_path: Path, spans) -> None:
    """A configured feature scores what TFDV scores for it unconfigured, and only it raises an anomaly."""
    plain, _, _ = validate(tmp_path / "plain", spans["corrupt"], spans["schema"], spans["day2"])
    drift = {"island": {"threshold": 0.4}}
    out, _, report = validate(tmp_path / "configured", spans["corrupt"], spans["schema"], spans["day2"], drift=drift)
    assert {a["feature"] for a in report["anomalies"] if a["kind"] == "drift"} == {"island"}
    scores, before = out.properties["drift_scores"], plain.properties["drift_scores"]
    assert scores["island"] == {**before["island"], "threshold": 0.4}
    assert scores["flipper_length_mm"] == before["flipper_length_mm"]  # JSD 0.5+ but unconfigured: no anomaly


def test_skew_is_measured_for_every_feature_where_serving_statistics_are_configured(tmp_path: Path, spans) -> None:
    skew = {"serving_statistics": spans["day1"].uri, "serving_split": "train", "island": {"threshold": 0.9}}
    out, _, report = validate(tmp_path, spans["day2"], spans["schema"], spans["day1"], skew=skew)
    assert report["anomalies"] == []
    skewed = {m["feature"]: m for m in report["measurements"] if m["kind"] == "skew"}
    assert {m["split"] for m in skewed.values()} == {"train"} and set(skewed) == set(schema_features(spans["schema"]))
    assert skewed["island"]["threshold"] == 0.9 and skewed["body_mass_g"]["threshold"] is None
    assert out.properties["skew_scores"]["body_mass_g"]["comparator"] == "jsd"
    assert set(out.properties["drift_scores"]) == set(skewed)
