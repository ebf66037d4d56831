"""ExampleGen keeps dates and times as ISO text: tf.Example and TFDV have no such type, and pyarrow reads a CSV
column of ``2024-01-05`` as dates."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlpipe.runtime.io import example_io

pytestmark = [pytest.mark.runtime]


def test_csv_dates_and_parquet_timestamps_become_text(tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_text("signup,seen,x\n2023-07-14,2023-07-14 03:04:05,1\n,2023-07-15 00:00:00,2\n")
    table = example_io.read_file(str(csv), "csv")
    assert table.column("signup").to_pylist() == ["2023-07-14", None]
    assert table.column("seen").type == pa.string() and table.column("seen").to_pylist()[0].startswith("2023-07-14 03")
    assert table.column("x").type == pa.int64()

    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"at": [dt.datetime(2024, 1, 5, 12)], "day": [dt.date(2024, 1, 5)]}), parquet)
    table = example_io.read_file(str(parquet), "parquet")
    assert table.column("day").to_pylist() == ["2024-01-05"]
    assert table.column("at").type == pa.string()


def test_statistics_gen_reads_a_table_with_dates(tmp_path):
    """The column that failed StatisticsGen ("Type date32[day] is not supported") now has string statistics."""
    from airflow_provider_mlpipe.runtime.executors.statistics_gen import arrow_statistics

    csv = tmp_path / "in.csv"
    csv.write_text("signup,x\n2023-07-14,1\n2023-07-15,2\n")
    parquet = tmp_path / "data.parquet"
    pq.write_table(example_io.read_file(str(csv), "csv"), parquet)
    [dataset] = arrow_statistics([str(parquet)]).datasets
    assert {f.path.step[0] for f in dataset.features} == {"signup", "x"}
