"""SchemaGen executor: inference, curated import (only from the pipeline folder), and the diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.executors import example_gen, schema_gen, statistics_gen
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.stages.schema_gen import SchemaGenParams
from tests.runtime.data_fixtures import PATTERN, as_input, make_ctx

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def statistics(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRef:
    tmp = tmp_path_factory.mktemp("stats")
    eg = make_ctx(tmp, "example_gen", {"input": {"pattern": PATTERN}})
    example_gen.execute(eg)
    sg = make_ctx(tmp, "statistics_gen", {}, inputs={"examples": as_input(eg, "examples")})
    statistics_gen.execute(sg)
    return as_input(sg, "statistics")


def features(schema: schema_pb2.Schema) -> dict[str, schema_pb2.Feature]:
    return {f.name: f for f in schema.feature}


def test_infers_from_the_train_split(tmp_path: Path, statistics: ArtifactRef) -> None:
    ctx = make_ctx(tmp_path, "schema_gen", {}, inputs={"statistics": statistics})
    summary = schema_gen.execute(ctx)
    out = ctx.output("schema")
    schema = example_io.load_schema(out.path)
    found = features(schema)
    assert out.properties["source"] == "inferred" and summary["inferred_from"] == "train"
    assert found["species"].type == schema_pb2.BYTES and found["year"].type == schema_pb2.INT
    assert found["bill_length_mm"].type == schema_pb2.FLOAT
    domains = {d.name: set(d.value) for d in schema.string_domain}
    assert domains["island"] == {"Biscoe", "Dream", "Torgersen"}
    assert "diff" not in out.properties and not Path(out.path, "schema_diff.json").exists()


def test_allow_missing_relaxes_presence_but_keeps_min_count(tmp_path: Path, statistics: ArtifactRef) -> None:
    strict = make_ctx(tmp_path / "strict", "schema_gen", {}, inputs={"statistics": statistics})
    schema_gen.execute(strict)
    relaxed = make_ctx(
        tmp_path / "relaxed", "schema_gen", {"allow_missing": ["species"]}, inputs={"statistics": statistics}
    )
    schema_gen.execute(relaxed)
    before = features(example_io.load_schema(strict.output("schema").path))["species"]
    after = features(example_io.load_schema(relaxed.output("schema").path))
    assert before.presence.min_fraction == 1.0 and before.HasField("shape")
    assert after["species"].presence.min_fraction == 0 and after["species"].presence.min_count == 1
    assert not after["species"].HasField("shape") and after["species"].value_count.max == 1
    assert after["year"].presence.min_fraction == 1.0  # not listed, not relaxed
    bad = make_ctx(tmp_path / "bad", "schema_gen", {"allow_missing": ["nope"]}, inputs={"statistics": statistics})
    with pytest.raises(ValueError, match="nope"):
        schema_gen.execute(bad)


def test_imports_a_curated_schema_and_diffs_against_the_previous(tmp_path: Path, statistics: ArtifactRef) -> None:
    first = make_ctx(tmp_path / "first", "schema_gen", {}, inputs={"statistics": statistics})
    schema_gen.execute(first)
    curated = example_io.load_schema(first.output("schema").path)
    kept = [f for f in curated.feature if f.name != "sex"]
    del curated.feature[:]
    curated.feature.extend(kept)
    features(curated)["year"].type = schema_pb2.BYTES
    curated.feature.add(name="tag", type=schema_pb2.BYTES)
    spec_dir = tmp_path / "pipeline"
    spec_dir.mkdir()
    (spec_dir / "schema.pbtxt").write_text(text_format.MessageToString(curated))

    previous = ArtifactRef(type="Schema", uri=first.output("schema").path, id=41, name="previous_schema")
    ctx = make_ctx(
        tmp_path / "second", "schema_gen", {"schema_file": "schema.pbtxt"}, inputs={"statistics": statistics},
        resolved={"previous_schema": previous}, spec_dir=spec_dir,
    )  # fmt: skip
    summary = schema_gen.execute(ctx)
    out = ctx.output("schema")
    assert out.properties["source"] == "imported" and out.properties["schema_file"] == "schema.pbtxt"
    assert example_io.load_schema(out.path) == curated
    changes = {(c["change"], c["feature"]) for c in out.properties["diff"]}
    assert changes == {("added", "tag"), ("removed", "sex"), ("type_changed", "year")}
    [retyped] = [c for c in out.properties["diff"] if c["change"] == "type_changed"]
    assert (retyped["from"], retyped["to"]) == ("INT", "BYTES")
    assert out.properties["previous_schema_id"] == 41
    on_disk = json.loads(Path(out.path, "schema_diff.json").read_text())
    assert on_disk["changes"] == out.properties["diff"] == summary["diff"]


def test_schema_file_outside_the_pipeline_folder_is_refused(tmp_path: Path, statistics: ArtifactRef) -> None:
    spec_dir = tmp_path / "pipeline"
    spec_dir.mkdir()
    (tmp_path / "evil.pbtxt").write_text("")
    ctx = make_ctx(
        tmp_path, "schema_gen", {"schema_file": "../evil.pbtxt"}, inputs={"statistics": statistics}, spec_dir=spec_dir
    )
    with pytest.raises(ValueError, match="outside the pipeline's folder"):
        schema_gen.execute(ctx)
    (spec_dir / "broken.pbtxt").write_text("feature { nme: 1 }")
    ctx = make_ctx(
        tmp_path / "b",
        "schema_gen",
        {"schema_file": "broken.pbtxt"},
        inputs={"statistics": statistics},
        spec_dir=spec_dir,
    )
    with pytest.raises(ValueError, match=r"broken\.pbtxt is not a valid Schema"):
        schema_gen.execute(ctx)


def test_fingerprint_changes_with_the_curated_file(tmp_path: Path) -> None:
    (tmp_path / "s.pbtxt").write_text('feature { name: "a" type: INT }')
    request = StageRequest(
        pipeline="p", pipeline_root=str(tmp_path), stage="schema_gen", node_id="schema_gen", run_id="r",
        params={"schema_file": "s.pbtxt"}, spec_dir=str(tmp_path),
    )  # fmt: skip
    curated = SchemaGenParams(schema_file="s.pbtxt")
    first = schema_gen.fingerprint(request, curated)
    (tmp_path / "s.pbtxt").write_text('feature { name: "a" type: FLOAT }')
    assert schema_gen.fingerprint(request, curated) != first
    assert schema_gen.fingerprint(request, SchemaGenParams()) == ""


def test_refuses_to_infer_from_an_empty_split(tmp_path: Path) -> None:
    from tests.runtime.data_fixtures import SPANS, read_rows, write_rows

    write_rows(tmp_path / "in" / "20240101.csv", read_rows(SPANS / "span-2024-01-01.csv")[:3])
    eg = make_ctx(
        tmp_path,
        "example_gen",
        {"input": {"pattern": "in/{SPAN}.csv"}, "splits": {"train": 1, "eval": 999}},
        spec_dir=tmp_path,
    )
    example_gen.execute(eg)
    assert eg.output("examples").properties["row_counts"]["train"] == 0  # a 1-in-1000 bucket on 3 rows
    sg = make_ctx(tmp_path, "statistics_gen", {}, inputs={"examples": as_input(eg, "examples")})
    statistics_gen.execute(sg)
    ctx = make_ctx(tmp_path, "schema_gen", {}, inputs={"statistics": as_input(sg, "statistics")})
    with pytest.raises(ValueError, match=r"'train' split .* has no examples"):
        schema_gen.execute(ctx)
