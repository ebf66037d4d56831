"""summary.json carries TFDV's equal-width histogram and the top values, which the UI draws without TFDV."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlpipe.runtime.executors.statistics_gen import TOP_VALUES, arrow_statistics, summarize

pytestmark = pytest.mark.runtime


def test_the_summary_holds_the_buckets_and_the_top_values(tmp_path: Path) -> None:
    widths = [float(v) for v in range(100)] + [None] * 3  # 0..99 and three missing
    colours = [f"c{i % 12}" for i in range(12 * 8)] + ["c0"] * 7
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"width": widths, "colour": colours}), path)

    features = summarize(arrow_statistics([str(path)]))["features"]

    buckets = features["width"]["histogram"]
    assert len(buckets) == 10 and features["width"]["present"] == 100
    assert buckets[0]["low"] == 0.0 and buckets[-1]["high"] == 99.0
    assert sum(b["count"] for b in buckets) == pytest.approx(100)
    assert all(a["high"] == pytest.approx(b["low"]) for a, b in itertools.pairwise(buckets))
    assert "histogram" not in features["colour"]
    tops = features["colour"]["top_values"]
    assert len(tops) == TOP_VALUES and tops[0] == {"value": "c0", "count": 15.0}
    assert {t["count"] for t in tops[1:]} == {8.0}
