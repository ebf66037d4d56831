"""Drift in the UI: per-feature trends with threshold lines in the pipeline view, top drifting features in a run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.drift import DriftScore, artifact_scores, top_drifting
from airflow_provider_mlpipe.ui.mlmd_reader import Artifact
from tests.unit.test_ui_app import DAG, RUNS, FakeBackend, FixtureStore, make_fixture_store, q


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    return make_fixture_store(tmp_path_factory.mktemp("ui-drift-store"))


@pytest.fixture(scope="module")
def client(store: FixtureStore, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


def recorded(store: FixtureStore, run_id: str) -> dict[str, dict]:
    return store.artifact(run_id, "example_validator", "anomalies")["properties"]["drift_scores"]


def chart(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</svg>", start)]


def points(svg: str) -> dict[str, dict[str, float]]:
    """series name -> span -> value, read from the point titles."""
    out: dict[str, dict[str, float]] = {}
    for name, value, span in re.findall(r"<title>([\w ]+) = ([0-9.e-]+) \(span (\d+)\)</title>", svg):
        out.setdefault(name, {})[span] = float(value)
    return out


def test_pipeline_view_trends_every_feature_with_its_threshold(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    assert 'id="drift"' in html
    for feature in ("island", "sex", "species"):
        svg = chart(html, f"drift-trend-{feature}")
        assert f'aria-label="drift of {feature} (linf)"' in svg
        plotted = points(svg)
        for run_id, span, _ in RUNS:
            # The titles round to 4 significant digits; the data-value attributes keep the recorded number.
            assert plotted["linf score"][str(span)] == pytest.approx(recorded(store, run_id)[feature]["score"], 1e-3)
        values = [float(v) for v in re.findall(r'data-value="([0-9.e-]+)"', svg)]
        assert values[: len(RUNS)] == [recorded(store, r)[feature]["score"] for r, _, _ in RUNS]
        # Only island has a configured threshold: a dashed line at 0.03 on every span.
        assert ("threshold" in plotted) == (feature == "island")
    assert set(points(chart(html, "drift-trend-island"))["threshold"].values()) == {0.03}
    # Most drifting (latest score) first.
    order = re.findall(r'id="drift-trend-(\w+)"', html)
    latest = recorded(store, RUNS[-1][0])
    assert order == sorted(latest, key=lambda f: -latest[f]["score"])


def test_run_view_lists_the_top_drifting_features(client: TestClient, store: FixtureStore) -> None:
    run_id = RUNS[-1][0]
    html = client.get(f"/run?{q(dag_id=DAG, run_id=run_id)}").text
    table = html[html.index('id="drift-table"') : html.index("</table>", html.index('id="drift-table"'))]
    rows = re.findall(r'data-feature="(\w+)" data-kind="drift" data-score="([0-9.e-]+)"', table)
    scores = recorded(store, run_id)
    assert {f: float(s) for f, s in rows} == {f: v["score"] for f, v in scores.items()}
    over = [f for f, v in scores.items() if v["threshold"] is not None and v["score"] > v["threshold"]]
    assert over == ["island"]  # the fixture's last span moves island past its threshold
    assert [f for f, _ in rows[: len(over)]] == over  # over their threshold first
    assert table.count('class="badge bad">over') == len(over) and "<td>linf</td>" in table


def test_scores_come_from_the_property_else_from_the_measurements() -> None:
    props = {
        "drift_scores": {"a": {"comparator": "jsd", "score": 0.2, "threshold": None}},
        "skew_scores": {"b": {"comparator": "linf", "score": 0.5, "threshold": 0.3}},
    }
    artifact = Artifact(1, "ExampleAnomalies", "/nowhere", "LIVE", props)
    assert artifact_scores(artifact) == [
        DriftScore("a", "drift", "jsd", 0.2, None),
        DriftScore("b", "skew", "linf", 0.5, 0.3),
    ]
    assert [s.feature for s in top_drifting(artifact)] == ["b", "a"]  # b is over its threshold
    older = {
        "measurements": [
            {"split": "eval", "feature": "a", "kind": "drift", "measure": "L_INFTY", "value": 0.9, "threshold": 0.1},
            {"split": "train", "feature": "a", "kind": "drift", "measure": "L_INFTY", "value": 0.3, "threshold": 0.1},
        ]
    }
    plain = Artifact(2, "ExampleAnomalies", str(Path("/nowhere")), "LIVE", {})
    assert artifact_scores(plain, older) == [DriftScore("a", "drift", "l_infty", 0.3, 0.1)]
    assert top_drifting(None) == []
