"""ExampleGen executor: spans, versions, splits, formats and bad input, on the penguin span files."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.executors import example_gen
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.stages.example_gen import ExampleGenParams
from tests.runtime.data_fixtures import PATTERN, SPANS, copy_spans, make_ctx, read_rows, write_rows

pytestmark = pytest.mark.runtime

COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def split_table(ctx, split: str) -> pa.Table:
    return example_io.read_split(ctx.output("examples").path, split)


def test_ingests_the_span_of_the_data_interval(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, "example_gen", {"input": {"pattern": PATTERN}}, date="2024-01-03T00:00:00+00:00")
    summary = example_gen.execute(ctx)

    props = ctx.output("examples").properties
    expected_rows = len(read_rows(SPANS / "span-2024-01-03.csv"))
    assert props["span"] == 20240103 and summary["span"] == 20240103
    assert props["split_names"] == ["train", "eval"] and props["format"] == "parquet"
    assert sum(props["row_counts"].values()) == expected_rows == 69
    assert props["input_files"] == [str(SPANS / "span-2024-01-03.csv")]
    assert "version" not in props  # the pattern has no {VERSION}
    # 2:1 buckets on 70 rows: the train split is clearly the bigger one, and both are non-empty.
    assert props["row_counts"]["train"] > props["row_counts"]["eval"] > 10
    train = split_table(ctx, "train")
    assert train.column_names == COLUMNS and train.num_rows == props["row_counts"]["train"]
    assert pa.types.is_floating(train.schema.field("bill_length_mm").type)
    assert pa.types.is_integer(train.schema.field("year").type)
    assert os.path.exists(Path(ctx.output("examples").path, "Split-eval", "data-00000.parquet"))
    # NA in the CSV is a null in Parquet, not the string "NA".
    everything = pa.concat_tables([train, split_table(ctx, "eval")])
    assert "NA" not in everything.column("sex").to_pylist()
    assert everything.column("sex").null_count == sum(
        r["sex"] == "NA" for r in read_rows(SPANS / "span-2024-01-03.csv")
    )


def test_split_is_deterministic_and_conf_span_overrides(tmp_path: Path) -> None:
    params = {"input": {"pattern": PATTERN}, "splits": {"train": 3, "eval": 1}}
    a = make_ctx(tmp_path / "a", "example_gen", params, date="2024-01-01T00:00:00+00:00", conf={"span": "20240102"})
    b = make_ctx(tmp_path / "b", "example_gen", params, date="2024-01-02T00:00:00+00:00")
    example_gen.execute(a)
    example_gen.execute(b)
    assert a.output("examples").properties["span"] == 20240102
    for split in ("train", "eval"):
        assert split_table(a, split).equals(split_table(b, split))
    counts = a.output("examples").properties["row_counts"]
    assert counts["train"] > 2 * counts["eval"]


def test_partition_feature_keeps_groups_together(tmp_path: Path) -> None:
    ctx = make_ctx(
        tmp_path,
        "example_gen",
        {"input": {"pattern": PATTERN}, "partition_feature": "island", "splits": {"a": 1, "b": 1}},
    )
    example_gen.execute(ctx)
    islands_a = set(split_table(ctx, "a").column("island").to_pylist())
    islands_b = set(split_table(ctx, "b").column("island").to_pylist())
    assert islands_a.isdisjoint(islands_b)
    assert islands_a | islands_b == {"Biscoe", "Dream", "Torgersen"}


def test_pre_split_input(tmp_path: Path) -> None:
    rows = read_rows(SPANS / "span-2024-01-01.csv")
    write_rows(tmp_path / "in" / "train-20240101.csv", rows[:50])
    write_rows(tmp_path / "in" / "test-20240101.csv", rows[50:])
    params = {"input": {"splits": {"train": "in/train-{SPAN}.csv", "test": "in/test-{SPAN}.csv"}}}
    ctx = make_ctx(tmp_path, "example_gen", params, spec_dir=tmp_path)
    example_gen.execute(ctx)
    props = ctx.output("examples").properties
    assert props["split_names"] == ["train", "test"]
    assert props["row_counts"] == {"train": 50, "test": len(rows) - 50}


def test_version_latest_or_requested(tmp_path: Path) -> None:
    rows = read_rows(SPANS / "span-2024-01-01.csv")
    for version, count in ((1, 10), (2, 20), (10, 30)):
        write_rows(tmp_path / "in" / "20240101" / f"v{version}" / "part.csv", rows[:count])
    params = {"input": {"pattern": "in/{SPAN}/v{VERSION}/*.csv"}}
    latest = make_ctx(tmp_path / "latest", "example_gen", params, spec_dir=tmp_path)
    example_gen.execute(latest)
    assert latest.output("examples").properties["version"] == 10  # numeric, not lexical, maximum
    assert sum(latest.output("examples").properties["row_counts"].values()) == 30
    pinned = make_ctx(tmp_path / "pinned", "example_gen", {**params, "version": 2}, spec_dir=tmp_path)
    example_gen.execute(pinned)
    assert pinned.output("examples").properties["version"] == 2
    assert sum(pinned.output("examples").properties["row_counts"].values()) == 20


def test_parquet_and_tfrecord_inputs_give_the_same_rows(tmp_path: Path) -> None:
    import tensorflow as tf

    rows = [r for r in read_rows(SPANS / "span-2024-01-01.csv") if "NA" not in r.values()]
    write_rows(tmp_path / "csv" / "20240101.csv", rows)
    table = example_io.read_csv(str(tmp_path / "csv" / "20240101.csv"))
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "20240101.parquet")
    (tmp_path / "tfr").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "tfr" / "20240101.tfrecord")) as writer:
        for row in table.to_pylist():
            feature = {}
            for key, value in row.items():
                if isinstance(value, str):
                    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                elif isinstance(value, float):
                    feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                else:
                    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())

    results = {}
    for fmt, pattern in (
        ("csv", "csv/{SPAN}.csv"),
        ("parquet", "pq/{SPAN}.parquet"),
        ("tfrecord", "tfr/{SPAN}.tfrecord"),
    ):
        ctx = make_ctx(
            tmp_path / f"out-{fmt}", "example_gen", {"input": {"pattern": pattern, "format": fmt}}, spec_dir=tmp_path
        )
        example_gen.execute(ctx)
        results[fmt] = ctx.output("examples").properties["row_counts"]
        species = sorted(split_table(ctx, "train").column("species").to_pylist())
        results[fmt + "-species"] = species
        assert sorted(split_table(ctx, "train").column_names) == sorted(COLUMNS)
    assert results["csv"] == results["parquet"] and sum(results["csv"].values()) == len(rows)
    assert sum(results["tfrecord"].values()) == len(rows)
    # tf.Example stores floats as float32 and reorders columns, so the row hashes (and splits) may differ;
    # the content must not.
    assert results["csv-species"] == results["parquet-species"]


BAD_INPUTS = {
    "empty": (lambda d: (d / "20240101.csv").write_bytes(b""), "is empty"),
    "header-only": (lambda d: (d / "20240101.csv").write_text("a,b\n"), "has no rows"),
    "non-utf8": (lambda d: (d / "20240101.csv").write_bytes(b"a,b\n1,caf\xe9\n2,x\n"), "not valid UTF-8"),
    "ragged": (lambda d: (d / "20240101.csv").write_text("a,b\n1,2\n3\n"), "cannot be read as CSV"),
    "no-match": (lambda d: (d / "20240102.csv").write_text("a,b\n1,2\n"), "No input file matches"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file_and_problem(tmp_path: Path, case: str) -> None:
    make, message = BAD_INPUTS[case]
    (tmp_path / "in").mkdir()
    make(tmp_path / "in")
    ctx = make_ctx(tmp_path, "example_gen", {"input": {"pattern": "in/{SPAN}.csv"}}, spec_dir=tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        example_gen.execute(ctx)
    assert "20240101" in str(info.value)
    assert not any(Path(ctx.output("examples").path).iterdir())  # nothing written before the failure


def test_column_mismatch_between_files(tmp_path: Path) -> None:
    rows = read_rows(SPANS / "span-2024-01-01.csv")
    write_rows(tmp_path / "in" / "20240101-a.csv", rows[:10])
    write_rows(tmp_path / "in" / "20240101-b.csv", rows[10:20], columns=[c for c in COLUMNS if c != "sex"])
    ctx = make_ctx(tmp_path, "example_gen", {"input": {"pattern": "in/{SPAN}-*.csv"}}, spec_dir=tmp_path)
    with pytest.raises(
        ValueError, match=r"20240101-b\.csv does not have the columns of .*20240101-a\.csv.*missing \['sex'\]"
    ):
        example_gen.execute(ctx)


def test_fingerprint_follows_file_content_and_span(tmp_path: Path) -> None:
    copy_spans(tmp_path / "data" / "penguins", days=2)

    def request(date: str) -> StageRequest:
        return StageRequest(
            pipeline="p", pipeline_root=str(tmp_path), stage="example_gen", node_id="example_gen", run_id="r",
            params={"input": {"pattern": PATTERN}}, data_interval_start=date, spec_dir=str(tmp_path),
        )  # fmt: skip

    def fingerprint(date: str) -> str:
        one = request(date)
        return example_gen.fingerprint(one, ExampleGenParams.model_validate(one.params))

    day1, day2 = "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"
    first = fingerprint(day1)
    assert first == fingerprint(day1)
    assert first != fingerprint(day2)
    path = tmp_path / "data" / "penguins" / "span-2024-01-01.csv"
    stat = path.stat()
    path.write_text(path.read_text().replace("Torgersen", "Torgerse"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: the content hash must still notice
    assert fingerprint(day1) != first
    assert fingerprint("2024-02-01T00:00:00+00:00").startswith("unresolved: No input file")


def test_gcs_input_through_the_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.gcs_emulator import running_emulator

    with running_emulator(default_bucket="mlpipe-data") as emulator:
        for key, value in emulator.env.items():
            monkeypatch.setenv(key, value)
        bucket = emulator.client().bucket("mlpipe-data")
        for name in ("span-2024-01-01.csv", "span-2024-01-02.csv"):
            bucket.blob(f"penguins/{name}").upload_from_filename(str(SPANS / name))
        params = {"input": {"pattern": "gs://mlpipe-data/penguins/span-{YYYY}-{MM}-{DD}.csv"}}
        ctx = make_ctx(tmp_path, "example_gen", params, date="2024-01-02T00:00:00+00:00", spec_dir=None)
        example_gen.execute(ctx)
        props = ctx.output("examples").properties
        assert props["input_files"] == ["gs://mlpipe-data/penguins/span-2024-01-02.csv"]
        assert sum(props["row_counts"].values()) == len(read_rows(SPANS / "span-2024-01-02.csv"))

        request = StageRequest(
            pipeline="p", pipeline_root=str(tmp_path), stage="example_gen", node_id="example_gen", run_id="r",
            params=params, data_interval_start="2024-01-02T00:00:00+00:00",
        )  # fmt: skip
        typed = ExampleGenParams.model_validate(params)
        first = example_gen.fingerprint(request, typed)
        assert not first.startswith("unresolved") and first == example_gen.fingerprint(request, typed)
        bucket.blob("penguins/span-2024-01-02.csv").upload_from_filename(str(SPANS / "span-2024-01-03.csv"))
        assert example_gen.fingerprint(request, typed) != first  # a new object generation is a cache miss
