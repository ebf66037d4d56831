"""The statistics table's histograms: drawn from summary.json, with the previous span and the other split overlaid."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui import histograms
from airflow_provider_mlpipe.ui.data import build_run_view, previous_statistics
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.unit.test_ui_app import DAG, RUNS, FakeBackend, FixtureStore, make_fixture_store, q

SVG = "{http://www.w3.org/2000/svg}"
RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)
SPANS = {r: span for r, span, _ in RUNS}
CATEGORICAL = ("island", "sex", "species")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    return make_fixture_store(tmp_path_factory.mktemp("ui-histograms"))


@pytest.fixture(scope="module")
def client(store: FixtureStore, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


def charts(page: str, split: str) -> dict[str, ET.Element]:
    """The histograms of one split's statistics table, by feature."""
    section = page.split(f'data-split="{split}"', 1)[1].split("</section>", 1)[0]
    found = [ET.fromstring(svg) for svg in re.findall(r'<svg class="histogram.*?</svg>', section, re.S)]
    return {svg.get("data-feature"): svg for svg in found}


def titles(svg: ET.Element, cls: str) -> list[str]:
    return [el.findtext(f"{SVG}title") or "" for el in svg.iter() if cls in (el.get("class") or "").split()]


def summary_of(store: FixtureStore, run_id: str) -> dict[str, Any]:
    stats = store.artifact(run_id, "statistics_gen", "statistics")
    return json.loads(Path(stats["uri"], "summary.json").read_text())


def features(summary: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in summary["splits"][split]["features"]}


def test_numeric_rows_draw_the_buckets_with_the_previous_span_and_the_other_split(
    store: FixtureStore, client: TestClient
) -> None:
    page = client.get("/run?" + q(dag_id=DAG, run_id=RUN2)).text
    now, before = summary_of(store, RUN2), summary_of(store, RUN1)
    for split, other in (("train", "eval"), ("eval", "train")):
        drawn = charts(page, split)
        for name in ("bill_length_mm", "body_mass_g"):
            entry = features(now, split)[name]
            svg = drawn[name]
            bars = [el for el in svg.iter(f"{SVG}rect") if el.get("class") == "bar"]
            assert [float(b.get("data-count")) for b in bars] == [b["count"] for b in entry["histogram"]]
            first = entry["histogram"][0]
            share = f"{100 * first['count'] / entry['count']:.1f}%"
            assert titles(svg, "bar")[0].startswith(f"{name} {split}, span {SPANS[RUN2]}: [")
            assert f"{first['count']} of {entry['count']} ({share})" in titles(svg, "bar")[0]
            [previous] = titles(svg, "previous")
            old = features(before, split)[name]["histogram"]
            assert f"{split}, span {SPANS[RUN1]}" in previous and f"{old[-1]['count']} of " in previous
            others = titles(svg, "other")
            assert len(others) == len(features(now, other)[name]["histogram"])
            assert all(f"{other}, span {SPANS[RUN2]}" in t for t in others)


def test_categorical_rows_draw_the_top_values(store: FixtureStore, client: TestClient) -> None:
    page = client.get("/run?" + q(dag_id=DAG, run_id=RUN3)).text
    entry = features(summary_of(store, RUN3), "train")["island"]
    previous = {t["value"]: t["count"] for t in features(summary_of(store, RUN2), "train")["island"]["top_values"]}
    svg = charts(page, "train")["island"]
    assert "categorical" in svg.get("class")
    bar_titles = titles(svg, "bar")
    assert len(bar_titles) == len(entry["top_values"])
    for tip, top in zip(bar_titles, entry["top_values"], strict=True):
        assert tip.startswith(f"island = {top['value']} train, span {SPANS[RUN3]}: {top['count']} of {entry['count']}")
        assert f"train, span {SPANS[RUN2]}: {previous[top['value']]} of " in tip
        assert f"eval, span {SPANS[RUN3]}: " in tip
    assert len([el for el in svg.iter() if el.get("class") == "overlay previous"]) == len(entry["top_values"])


def test_the_first_span_has_no_previous_overlay(client: TestClient) -> None:
    page = client.get("/run?" + q(dag_id=DAG, run_id=RUN1)).text
    drawn = charts(page, "train")
    assert set(drawn) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", *CATEGORICAL}
    assert not any(titles(svg, "previous") for svg in drawn.values())
    assert all(titles(svg, "other") for svg in drawn.values())
    assert "previous span" not in page.split('id="statistics"', 1)[1].split("</p>", 1)[0]


def test_the_previous_statistics_are_those_of_the_newest_earlier_span(store: FixtureStore) -> None:
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)})
    for run_id, expected in ((RUN1, None), (RUN2, RUN1), (RUN3, RUN2)):
        view = build_run_view(reader, DAG, run_id, DAG)
        found = previous_statistics(reader, view)
        want = store.artifact(expected, "statistics_gen", "statistics")["id"] if expected else None
        assert (found.id if found else None) == want
        assert view.previous_statistics == found


def series(label: str, buckets: list[tuple[float, float, float]] = (), tops: list[tuple[str, float]] = ()) -> Any:
    entry = {
        "histogram": [{"low": lo, "high": hi, "count": n} for lo, hi, n in buckets],
        "top_values": [{"value": v, "count": n} for v, n in tops],
    }
    return histograms.series_of(entry, label)


def test_a_constant_feature_and_missing_figures() -> None:
    constant = series("train", [(3.0, 3.0, 12)])
    svg = ET.fromstring(histograms.feature_chart("x", constant, None, None))
    [bar] = [el for el in svg.iter(f"{SVG}rect") if el.get("class") == "bar"]
    assert float(bar.get("width")) > 1 and float(bar.get("height")) > 1
    assert "[3, 3] 12 of 12 (100.0%)" in bar.findtext(f"{SVG}title")
    assert histograms.series_of({"type": "FLOAT", "mean": 1.0}, "old summary") is None
    assert histograms.feature_chart("x", None, constant, constant) == ""


def test_overlays_only_of_the_same_kind() -> None:
    numeric = series("train", [(0, 1, 2), (1, 2, 6)])
    tops = series("eval", tops=[("a", 3)])
    svg = ET.fromstring(histograms.feature_chart("x", numeric, tops, tops))
    assert not titles(svg, "previous") and not titles(svg, "other")
    values = series("train", tops=[("a", 3), ("b", 1)])
    before = series("before", tops=[("a", 1)])
    svg = ET.fromstring(histograms.feature_chart("x", values, before, None))
    assert [t.split("; ", 1)[1] for t in titles(svg, "bar")] == [
        "before: 1 of 1 (100.0%)",
        "before: not among its top values",
    ]
