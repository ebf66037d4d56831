"""StatisticsGen executor: the Arrow and Beam paths, their agreement, the HTML view and summary.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.compute as pc
import pytest

from airflow_provider_mlpipe.runtime.executors import example_gen, statistics_gen
from airflow_provider_mlpipe.runtime.io import example_io
from tests.runtime.data_fixtures import PATTERN, as_input, make_ctx

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("examples")
    ctx = make_ctx(tmp, "example_gen", {"input": {"pattern": PATTERN}}, date="2024-01-02T00:00:00+00:00")
    example_gen.execute(ctx)
    return as_input(ctx, "examples")


def run_stats(tmp_path: Path, examples, **params):
    ctx = make_ctx(tmp_path, "statistics_gen", params, inputs={"examples": examples})
    summary = statistics_gen.execute(ctx)
    return ctx, summary


def feature(stats, name: str):
    [found] = [f for f in stats.datasets[0].features if f.path.step == [name]]
    return found


def test_arrow_path_outputs_and_figures(tmp_path: Path, examples) -> None:
    ctx, summary = run_stats(tmp_path, examples, mode="auto")
    out = ctx.output("statistics")
    assert summary["path"] == "arrow" and out.properties["path"] == "arrow"
    assert out.properties["span"] == 20240102
    assert out.properties["num_examples"] == examples.properties["row_counts"]
    assert out.properties["split_names"] == ["train", "eval"]

    train = example_io.read_split(examples.uri, "train")
    stats = example_io.load_split_stats(out.path, "train")
    assert stats.datasets[0].num_examples == train.num_rows
    body = feature(stats, "body_mass_g")
    assert body.num_stats.common_stats.num_missing == train.column("body_mass_g").null_count
    assert math.isclose(body.num_stats.mean, pc.mean(train.column("body_mass_g")).as_py(), rel_tol=1e-9)
    assert body.num_stats.max == pc.max(train.column("body_mass_g")).as_py()
    species = feature(stats, "species")
    assert species.string_stats.unique == len(set(train.column("species").to_pylist()))

    html = Path(out.path, "Split-train", "stats.html").read_text()
    assert "facets" in html.lower() and len(html) > 1000
    summary_json = json.loads(Path(out.path, "summary.json").read_text())
    figures = summary_json["splits"]["train"]
    assert figures["num_examples"] == train.num_rows
    assert figures["features"]["body_mass_g"]["missing"] == train.column("body_mass_g").null_count
    assert figures["features"]["body_mass_g"]["mean"] == pytest.approx(body.num_stats.mean, rel=1e-6)
    assert figures["features"]["species"]["type"] == "STRING"
    assert summary_json["splits"]["eval"]["num_examples"] == examples.properties["row_counts"]["eval"]


def assert_same_statistics(a, b) -> None:
    """Exact agreement on counts, moments, extremes and value frequencies.

    What may differ: floating point sums (Beam merges partial accumulators in another order), so moments get a
    relative tolerance; quantiles, the median and histogram edges come from approximate sketches that could see
    the batches in a different order, so they get a tolerance of one histogram bucket width. Measured on 300k
    benchmark rows in six 50k-row shards: only mean and std_dev differed, by 1e-13 or less; quantiles,
    histograms and top values were identical.
    """
    da, db = a.datasets[0], b.datasets[0]
    assert da.num_examples == db.num_examples
    fa = {tuple(f.path.step): f for f in da.features}
    fb = {tuple(f.path.step): f for f in db.features}
    assert fa.keys() == fb.keys()
    for name, x in fa.items():
        y = fb[name]
        assert x.type == y.type, name
        assert x.WhichOneof("stats") == y.WhichOneof("stats"), name
        if x.HasField("num_stats"):
            nx, ny = x.num_stats, y.num_stats
            assert nx.common_stats.num_missing == ny.common_stats.num_missing, name
            assert nx.common_stats.num_non_missing == ny.common_stats.num_non_missing, name
            assert nx.num_zeros == ny.num_zeros and nx.min == ny.min and nx.max == ny.max, name
            assert nx.mean == pytest.approx(ny.mean, rel=1e-9), name
            assert nx.std_dev == pytest.approx(ny.std_dev, rel=1e-9), name
            width = (nx.max - nx.min) / 10 or 1.0
            assert abs(nx.median - ny.median) <= width, name
            for hx, hy in zip(nx.histograms, ny.histograms, strict=True):
                assert hx.type == hy.type
                total_x = sum(bk.sample_count for bk in hx.buckets)
                total_y = sum(bk.sample_count for bk in hy.buckets)
                assert total_x == pytest.approx(total_y, rel=1e-6), name
        else:
            sx, sy = x.string_stats, y.string_stats
            assert sx.common_stats.num_missing == sy.common_stats.num_missing, name
            assert sx.unique == sy.unique and sx.avg_length == pytest.approx(sy.avg_length), name
            assert {(v.value, v.frequency) for v in sx.top_values} == {(v.value, v.frequency) for v in sy.top_values}
            ranks_x = {(v.label, v.sample_count) for v in sx.rank_histogram.buckets}
            ranks_y = {(v.label, v.sample_count) for v in sy.rank_histogram.buckets}
            assert ranks_x == ranks_y, name


def test_beam_path_gives_the_same_statistics(tmp_path: Path, examples) -> None:
    arrow_ctx, _ = run_stats(tmp_path / "arrow", examples, mode="arrow")
    # auto with a 1-byte limit must choose Beam: this also covers the size-based selection.
    beam_ctx, summary = run_stats(tmp_path / "beam", examples, mode="auto", arrow_max_bytes=1)
    assert summary["path"] == "beam" and beam_ctx.output("statistics").properties["path"] == "beam"
    for split in ("train", "eval"):
        arrow_stats = example_io.load_split_stats(arrow_ctx.output("statistics").path, split)
        beam_stats = example_io.load_split_stats(beam_ctx.output("statistics").path, split)
        assert_same_statistics(arrow_stats, beam_stats)
        # One small Parquet file is one record batch on both paths, so here they agree bit for bit.
        assert arrow_stats == beam_stats
        assert Path(beam_ctx.output("statistics").path, f"Split-{split}", "stats.html").exists()
    # The comparison is not vacuous: statistics of another split do not pass it.
    other = example_io.load_split_stats(arrow_ctx.output("statistics").path, "eval")
    with pytest.raises(AssertionError):
        assert_same_statistics(example_io.load_split_stats(beam_ctx.output("statistics").path, "train"), other)


def test_path_selection_and_bad_mode() -> None:
    assert statistics_gen.choose_path("auto", 10, 100) == "arrow"
    assert statistics_gen.choose_path("auto", 101, 100) == "beam"
    assert statistics_gen.choose_path("beam", 1, 100) == "beam"
    with pytest.raises(ValueError, match="not one of auto, arrow, beam"):
        statistics_gen.choose_path("spark", 1, 100)
