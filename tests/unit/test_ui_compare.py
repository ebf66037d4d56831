"""Two runs side by side, against the UI fixture pipeline's real MLMD store and artifact files."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.compare import build_comparison, compare_schemas
from airflow_provider_mlpipe.ui.data import build_run_view
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.unit.test_ui_app import DAG, RUNS, FakeBackend, FixtureStore, make_fixture_store, q

RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    return make_fixture_store(tmp_path_factory.mktemp("ui-compare"))


@pytest.fixture(scope="module")
def client(store: FixtureStore, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


def document(store: FixtureStore, run_id: str, task: str, slot: str, name: str) -> dict[str, Any]:
    return json.loads(Path(store.artifact(run_id, task, slot)["uri"], name).read_text())


def cells(html: str, row_pattern: str) -> list[str]:
    """The text of each cell of the first row whose opening tag matches ``row_pattern``."""
    row = re.search(rf"<tr {row_pattern}>(.*?)</tr>", html, re.S)
    assert row, row_pattern
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_metrics_by_slice_of_both_runs_with_deltas(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/compare?{q(dag_id=DAG, a=RUN2, b=RUN3)}").text
    slices_a = {
        s["slice"]: s["metrics"] for s in document(store, RUN2, "evaluator", "evaluation", "metrics.json")["slices"]
    }
    slices_b = {
        s["slice"]: s["metrics"] for s in document(store, RUN3, "evaluator", "evaluation", "metrics.json")["slices"]
    }
    assert len(slices_a) > 1 and slices_a.keys() == slices_b.keys()
    for name, metrics in slices_a.items():
        for metric, a in metrics.items():
            b = slices_b[name][metric]
            row = cells(html, f'class="metric" data-slice="{name}" data-metric="{metric}"')
            assert row[:2] == [name, metric]
            assert float(row[2]) == pytest.approx(a, rel=1e-3) and float(row[3]) == pytest.approx(b, rel=1e-3)
            assert float(row[4].split()[0]) == pytest.approx(b - a, rel=1e-3, abs=1e-9)
    # The shuffled labels of run 3 made a worse model: its accuracy delta is drawn as a fall.
    accuracy = re.search(r'data-slice="Overall" data-metric="accuracy">.*?</tr>', html, re.S)
    assert accuracy and "delta-down" in accuracy.group(0)


def test_per_feature_statistics_deltas_for_every_split(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN2)}").text
    summary_a = document(store, RUN1, "statistics_gen", "statistics", "summary.json")
    summary_b = document(store, RUN2, "statistics_gen", "statistics", "summary.json")
    for split, data in summary_a["splits"].items():
        section = html.split(f'data-split="{split}"', 1)[1].split("</section>", 1)[0]
        features_b = {f["name"]: f for f in summary_b["splits"][split]["features"]}
        for feature in data["features"]:
            fb = features_b[feature["name"]]
            for figure in ("mean", "missing", "std_dev", "unique"):
                if figure not in feature:
                    continue
                cell = re.search(
                    rf'data-feature="{feature["name"]}">.*?data-figure="{figure}">(.*?)</td>', section, re.S
                )
                assert cell, (split, feature["name"], figure)
                text = re.sub(r"<[^>]+>", "", cell.group(1)).split()
                assert float(text[0]) == pytest.approx(feature[figure], rel=1e-3)
                assert float(text[2]) == pytest.approx(fb[figure], rel=1e-3)
                delta = fb[figure] - feature[figure]
                assert float(text[3]) == pytest.approx(delta, rel=1e-3, abs=1e-6)


def test_drift_of_b_against_a_as_the_validation_recorded_it(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/compare?{q(dag_id=DAG, a=RUN2, b=RUN3)}").text
    recorded = store.artifact(RUN3, "example_validator", "anomalies")["properties"]["drift_scores"]
    assert recorded
    assert f"Measured by run {RUN3}&#39;s validation against run {RUN2}&#39;s statistics." in html
    shown = dict(re.findall(r'<tr class="drift[^"]*" data-feature="([^"]+)" data-score="([^"]+)"', html))
    assert {f: float(s) for f, s in shown.items()} == pytest.approx({f: e["score"] for f, e in recorded.items()})
    # Runs two spans apart: no validation compared them, and the page says so instead of showing other scores.
    apart = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN3)}").text
    assert 'class="drift' not in apart and "measured drift against the other run" in apart


def test_the_same_schema_content_shows_no_changes(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN2)}").text
    a, b = (store.artifact(r, "schema_gen", "schema")["id"] for r in (RUN1, RUN2))
    assert a != b and f"No changes between schema #{a} and schema #{b}." in html


SCHEMA_A = """
feature {
  name: "island"
  type: BYTES
  domain: "island"
  presence { min_fraction: 1.0 }
}
feature { name: "bill_length_mm" type: FLOAT }
feature { name: "year" type: INT }
string_domain {
  name: "island"
  value: "Biscoe"  # a comment with "quotes" and { braces
  value: "Dream"
}
"""
SCHEMA_B = """
feature { name: "island" type: BYTES domain: "island" presence { min_fraction: 1.0 } }
feature { name: "bill_length_mm" type: INT }
feature { name: "body_mass_g" type: FLOAT }
string_domain { name: "island" value: "Biscoe" value: "Dream" value: "Torgersen" }
"""


def test_schema_changes_between_two_schema_files(store: FixtureStore, tmp_path: Path) -> None:
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)})
    views = []
    for run_id, text in ((RUN1, SCHEMA_A), (RUN2, SCHEMA_B)):
        view = build_run_view(reader, DAG, run_id, DAG)
        assert view.schema is not None
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "schema.pbtxt").write_text(text)
        views.append(dataclasses.replace(view, schema=dataclasses.replace(view.schema, uri=str(tmp_path / run_id))))
    changes = {c.feature: (c.change, c.a, c.b) for c in compare_schemas(*views)}
    assert changes["bill_length_mm"] == ("type_changed", "FLOAT", "INT")
    assert changes["year"] == ("removed", "INT", "")
    assert changes["body_mass_g"] == ("added", "", "FLOAT")
    assert changes["island"][0] == "constraints_changed" and "Torgersen" in changes["island"][2]
    assert len(changes) == 4
    # The same artifact on both sides is no change, without reading a file.
    assert build_comparison(views[0], views[0]).schema_changes == []


def test_an_unknown_run_is_a_404_and_anonymous_requests_are_refused(client: TestClient, store: FixtureStore) -> None:
    response = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b='no-such-run')}")
    assert response.status_code == 404 and "no-such-run" in response.json()["detail"]
    assert client.get(f"/compare?{q(dag_id=DAG, a=RUN1)}").status_code == 422
    anonymous = TestClient(ui_app.create_app(FakeBackend(store, Path("unused.py"))))
    assert anonymous.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN2)}").status_code == 401


def test_the_pipeline_run_table_picks_two_runs_to_compare(client: TestClient) -> None:
    html = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    form = re.search(r'<form id="compare-form" method="get" action="([^"]+)">(.*?)</form>', html, re.S)
    assert form and form.group(1) == "/compare"
    body = form.group(2)
    assert f'name="dag_id" value="{DAG}"' in body and "Compare A and B" in body
    for side in ("a", "b"):
        assert sorted(re.findall(rf'name="{side}" value="([^"]+)"', body)) == sorted([RUN1, RUN2, RUN3])
    # The preselected pair (the two newest runs) is a working comparison.
    chosen = {side: re.search(rf'name="{side}" value="([^"]+)"[^>]* checked', body) for side in ("a", "b")}
    assert chosen["a"] and chosen["b"]
    params = {"dag_id": DAG, "a": chosen["a"].group(1), "b": chosen["b"].group(1)}
    assert params["a"] == RUN2 and params["b"] == RUN3
    assert client.get(f"/compare?{q(**params)}").status_code == 200


def test_business_kpis_by_slice_of_both_runs(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/compare?{q(dag_id=DAG, a=RUN2, b=RUN3)}").text
    a, b = (document(store, run, "evaluator", "evaluation", "metrics.json")["kpis"]["slices"] for run in (RUN2, RUN3))
    assert len(a) > 1
    for slice_a, slice_b in zip(a, b, strict=True):
        name, cost_a, cost_b = slice_a["slice"], slice_a["metrics"]["error_cost"], slice_b["metrics"]["error_cost"]
        row = cells(html, f'class="kpi" data-slice="{name}" data-metric="error_cost"')
        assert row[:4] == [name, "error_cost", f"{cost_a:g}", f"{cost_b:g}"]
        assert row[4].startswith(f"{cost_b - cost_a:+g}")
