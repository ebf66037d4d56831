"""The run view's plots: plots.json (the Evaluator's plot data) to inline SVG and HTML, on small hand-made data."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.plots import (
    MAX_CALIBRATION_POINTS,
    MAX_CURVE_POINTS,
    Bucket,
    Confusion,
    binned,
    calibration_svg,
    confusion_html,
    curve_svg,
    for_drawing,
    merge_buckets,
    parse_plots,
    slice_figures,
    thin_curve,
)
from tests.unit.test_ui_app import DAG, RUN1, RUN2, FakeBackend, FixtureStore, make_fixture_store, q


def binary_slice(shift: float = 0.0) -> dict:
    """A small binary slice: four thresholds, two calibration buckets, a 2x2 confusion matrix."""
    return {
        "thresholds": [0.0, 0.25, 0.5, 0.75],
        "roc": {"fpr": [1.0, 0.5, 0.25 + shift, 0.0], "tpr": [1.0, 0.9, 0.6, 0.0]},
        "pr": {"recall": [1.0, 0.9, 0.6, 0.0], "precision": [0.5, 0.64, 0.7, float("nan")]},
        "calibration": [
            {"lower": 0.0, "upper": 0.5, "mean_prediction": 0.2, "mean_label": 0.1 + shift, "weight": 30.0},
            {"lower": 0.5, "upper": 1.0, "mean_prediction": 0.8, "mean_label": 0.7, "weight": 10.0},
        ],
        "confusion_matrix": {"labels": ["0", "1"], "counts": [[20, 5], [4, 11]], "threshold": 0.5},
    }


def document(baseline: bool = True) -> dict:
    return {
        "kind": "binary",
        "candidate": {"island=Biscoe": binary_slice(), "Overall": binary_slice()},
        "baseline": {"Overall": binary_slice(0.1), "island=Biscoe": binary_slice(0.1)} if baseline else None,
    }


def attributes(svg: str, tag: str, cls: str) -> list[dict[str, str]]:
    elements = re.findall(rf'<{tag} class="{cls}"([^>]*)>', svg)
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', e)) for e in elements]


def test_parse_puts_overall_first_and_keeps_each_models_parts() -> None:
    plots = parse_plots(document())
    assert plots.kind == "binary" and list(plots.slices) == ["Overall", "island=Biscoe"]
    overall = plots.slices["Overall"]
    assert overall.roc["candidate"][0] == (1.0, 1.0) and overall.roc["baseline"][2] == (0.35, 0.6)
    assert len(overall.pr["candidate"]) == 3  # the NaN precision (no positive prediction) is not a point
    assert overall.calibration["baseline"][0] == Bucket(0.2, 0.1 + 0.1, 30.0)
    assert overall.confusion["candidate"] == Confusion(["0", "1"], [[20.0, 5.0], [4.0, 11.0]], 0.5)


def test_parse_draws_what_is_there() -> None:
    multiclass = {
        "kind": "multiclass",
        "candidate": {"Overall": {"confusion_matrix": {"labels": ["a", "b", "c"], "counts": [[3, 1, 0]] * 3}}},
        "baseline": None,
    }
    plots = parse_plots(multiclass)
    figures = slice_figures(plots.slices["Overall"], "Overall")
    assert len(figures) == 1 and 'id="confusion-candidate"' in figures[0] and "baseline" not in figures[0]
    assert parse_plots({"kind": "regression", "candidate": {}, "baseline": None}).slices == {}
    broken = {"candidate": {"Overall": {"roc": {"fpr": "x"}, "calibration": [{"weight": 1}], "confusion_matrix": 3}}}
    assert parse_plots(broken).slices == {} and parse_plots(None).slices == {} and parse_plots([]).pick("x") is None


def test_pick_falls_back_to_overall() -> None:
    plots = parse_plots(document())
    assert plots.pick("island=Biscoe") == "island=Biscoe"
    assert plots.pick("island=Nowhere") == plots.pick(None) == "Overall"


def test_thin_curve_keeps_endpoints_order_and_at_most_the_limit() -> None:
    # A ROC-like staircase of 10,000 thresholds with long runs of repeated points.
    points = [(1 - min(i, 9999) / 9999, 1 - (i // 50) / 200) for i in range(10_000)]
    thinned = thin_curve(points)
    assert 100 < len(thinned) <= MAX_CURVE_POINTS
    assert thinned[0] == points[0] and thinned[-1] == points[-1]
    positions = [points.index(p) for p in thinned]
    assert positions == sorted(positions)  # a subsequence of the original curve
    short = [(0.0, 0.0), (0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]
    assert thin_curve(short) == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]  # only repeats are dropped
    # Spaced along the length: no gap between kept points is much longer than an even share of it.
    length = sum(math.dist(a, b) for a, b in itertools.pairwise(points))
    gaps = [math.dist(a, b) for a, b in itertools.pairwise(thinned)]
    assert max(gaps) < 3 * length / (MAX_CURVE_POINTS - 1)


def test_merge_buckets_keeps_weighted_means_and_total_weight() -> None:
    buckets = [Bucket(i / 1000, (i % 2) * 1.0, 1.0 + i % 3) for i in range(1000)]
    merged = merge_buckets(buckets)
    assert len(merged) == MAX_CALIBRATION_POINTS
    assert math.isclose(sum(b.weight for b in merged), sum(b.weight for b in buckets))
    first = buckets[:10]
    weight = sum(b.weight for b in first)
    assert math.isclose(merged[0].mean_prediction, sum(b.mean_prediction * b.weight for b in first) / weight)
    assert math.isclose(merged[0].mean_label, sum(b.mean_label * b.weight for b in first) / weight)
    assert merge_buckets(buckets[:5]) == buckets[:5]


def test_the_calibration_line_regroups_fine_buckets_into_prediction_ranges() -> None:
    # One example per bucket, as TFMA's thousand buckets leave a small eval split: labels of 0 or 1 alone.
    buckets = [Bucket(0.01, 0.0, 1.0), Bucket(0.05, 1.0, 1.0), Bucket(0.07, 0.0, 2.0), Bucket(0.95, 1.0, 1.0)]
    line = binned(buckets, 0.0, 1.0)
    assert len(line) == 2  # the ranges [0, 0.1) and [0.9, 1]; empty ranges have no point
    assert math.isclose(line[0].mean_prediction, (0.01 + 0.05 + 2 * 0.07) / 4) and line[0].mean_label == 0.25
    assert line[0].weight == 4.0 and line[1] == Bucket(0.95, 1.0, 1.0)
    assert binned([Bucket(1.0, 1.0, 1.0), Bucket(-0.5, 0.0, 1.0)], 0.0, 1.0) == [
        Bucket(-0.5, 0.0, 1.0),  # outside [low, high]: the nearest range
        Bucket(1.0, 1.0, 1.0),
    ]
    svg = calibration_svg("Overall", {"candidate": buckets})
    [path] = attributes(svg, "path", "candidate")
    assert path["data-points"] == "2" and len(attributes(svg, "circle", "candidate")) == 4


def test_for_drawing_thins_every_curve() -> None:
    long = {"fpr": [1 - i / 999 for i in range(1000)], "tpr": [1 - (i / 999) ** 2 for i in range(1000)]}
    doc = {"kind": "binary", "candidate": {"Overall": {"roc": long}}, "baseline": {"Overall": {"roc": long}}}
    drawn = for_drawing(parse_plots(doc)).slices["Overall"].roc
    assert all(len(points) <= MAX_CURVE_POINTS for points in drawn.values())
    assert drawn["candidate"][0] == (1.0, 1.0) and drawn["candidate"][-1] == (0.0, 0.0)


def test_roc_svg_draws_both_models_with_the_diagonal_and_their_endpoints() -> None:
    overall = parse_plots(document()).slices["Overall"]
    svg = curve_svg("roc-plot", "ROC curve", "Overall", "false positive rate", "true positive rate", overall.roc, True)
    assert svg.startswith('<svg id="roc-plot" class="plot"') and 'data-slice="Overall"' in svg
    assert svg.count('class="diagonal"') == 1
    [candidate] = attributes(svg, "path", "candidate")
    [baseline] = attributes(svg, "path", "baseline")
    assert candidate["data-points"] == "4" and candidate["data-first"] == "1.0,1.0"
    assert candidate["data-last"] == "0.0,0.0"
    assert baseline["stroke-dasharray"] and "stroke-dasharray" not in candidate
    assert svg.index('class="baseline"') < svg.index('class="candidate"')  # the candidate is drawn on top
    # (1, 1) is the top right corner of the plot area, (0, 0) the bottom left.
    start, end = re.match(r"M([\d.]+),([\d.]+)", candidate["d"]), re.search(r"L([\d.]+),([\d.]+)$", candidate["d"])
    assert float(start[1]) > float(end[1]) and float(start[2]) < float(end[2])
    assert 'class="legend candidate"' in svg and 'class="legend baseline"' in svg


def test_a_first_model_has_no_baseline_to_draw() -> None:
    overall = parse_plots(document(baseline=False)).slices["Overall"]
    figures = "".join(slice_figures(overall, "Overall"))
    assert 'class="candidate"' in figures and 'class="baseline"' not in figures and "legend baseline" not in figures
    assert 'id="roc-plot"' in figures and 'id="pr-plot"' in figures and 'id="calibration-plot"' in figures


def test_calibration_svg_has_a_point_per_bucket_sized_by_weight() -> None:
    overall = parse_plots(document()).slices["Overall"]
    svg = calibration_svg("Overall", overall.calibration)
    assert 'id="calibration-plot"' in svg and svg.count('class="diagonal"') == 1
    points = attributes(svg, "circle", "candidate")
    assert [(p["data-prediction"], p["data-label"], p["data-weight"]) for p in points] == [
        ("0.2", "0.1", "30.0"),
        ("0.8", "0.7", "10.0"),
    ]
    assert float(points[0]["r"]) > float(points[1]["r"])
    assert len(attributes(svg, "circle", "baseline")) == 2


def test_calibration_axes_cover_predictions_outside_zero_to_one() -> None:
    svg = calibration_svg("Overall", {"candidate": [Bucket(-0.5, 0.0, 1.0), Bucket(2.0, 1.5, 1.0)]})
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert ticks[0] == "-0.5" and ticks[-1] == "2"


def test_confusion_table_counts_and_escapes_labels() -> None:
    table = confusion_html("baseline", Confusion(["<b>cat</b>", "dog"], [[712345.0, 1.0], [2.5, 9.0]], 0.5))
    assert 'id="confusion-baseline"' in table and "at threshold 0.5" in table
    assert "<b>cat</b>" not in table and "&lt;b&gt;cat&lt;/b&gt;" in table
    assert re.findall(r'<td class="num"[^>]*>([^<]+)</td>', table) == ["712345", "1", "2.5", "9"]


def test_slice_names_are_escaped_in_the_svg() -> None:
    name = "city=<script>alert(1)</script>"
    figures = "".join(slice_figures(parse_plots(document()).slices["Overall"], name))
    assert "<script>" not in figures and 'data-slice="city=&lt;script&gt;alert(1)&lt;/script&gt;"' in figures


# ----- the run view over the UI fixture pipeline's real MLMD store and files --------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, FixtureStore]:
    store = make_fixture_store(tmp_path_factory.mktemp("ui-plots-store"))
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("no-rollback") / "unused.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app), store


def figure(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</svg>" if element_id.endswith("plot") else "</table>", start)]


def test_run_view_draws_candidate_and_baseline_plots_of_plots_json(client: tuple[TestClient, FixtureStore]) -> None:
    http, store = client
    html = http.get(f"/run?{q(dag_id=DAG, run_id=RUN2)}").text
    plots = json.loads(Path(store.artifact(RUN2, "evaluator", "evaluation")["uri"], "plots.json").read_text())
    assert plots["baseline"], "the second run of the fixture has a baseline"
    roc = figure(html, "roc-plot")
    assert 'data-slice="Overall"' in roc
    for model in ("candidate", "baseline"):
        [path] = attributes(roc, "path", model)
        curve = plots[model]["Overall"]["roc"]
        assert path["data-first"] == f"{curve['fpr'][0]!r},{curve['tpr'][0]!r}"
        assert path["data-last"] == f"{curve['fpr'][-1]!r},{curve['tpr'][-1]!r}"
        calibration = attributes(figure(html, "calibration-plot"), "circle", model)
        buckets = plots[model]["Overall"]["calibration"]
        assert [float(c["data-prediction"]) for c in calibration] == [b["mean_prediction"] for b in buckets]
        counts = plots[model]["Overall"]["confusion_matrix"]["counts"]
        cells = re.findall(r'<td class="num"[^>]*>([^<]+)</td>', figure(html, f"confusion-{model}"))
        assert [float(c) for c in cells] == [float(v) for row in counts for v in row]
    assert 'id="pr-plot"' in html and "<option selected>Overall</option>" in html


def test_run_view_shows_the_chosen_slice_and_no_baseline_before_the_first_blessing(
    client: tuple[TestClient, FixtureStore],
) -> None:
    http, store = client
    plots = json.loads(Path(store.artifact(RUN2, "evaluator", "evaluation")["uri"], "plots.json").read_text())
    island = next(name for name in plots["candidate"] if name != "Overall")
    html = http.get(f"/run?{q(dag_id=DAG, run_id=RUN2, slice=island)}").text
    assert '<svg id="roc-plot" class="plot"' in html and f'data-slice="{island}"' in figure(html, "roc-plot")
    assert f"<option selected>{island}</option>" in html
    unknown = http.get(f"/run?{q(dag_id=DAG, run_id=RUN2, slice='island=Atlantis')}").text
    assert 'data-slice="Overall"' in figure(unknown, "roc-plot")
    first = http.get(f"/run?{q(dag_id=DAG, run_id=RUN1)}").text
    assert attributes(figure(first, "roc-plot"), "path", "candidate")
    assert not attributes(figure(first, "roc-plot"), "path", "baseline") and "confusion-baseline" not in first
