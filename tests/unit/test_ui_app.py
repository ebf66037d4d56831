"""The mlpipe UI app against a real MLMD store and real artifact files (written by the UI fixture pipeline)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.backend import UiBackend
from airflow_provider_mlpipe.ui.data import NotFoundError, read_bytes
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.support.paths import REPO

RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"
FIXTURE = REPO / "tests" / "dags" / "mlpipe_ui_fixture.py"
DAG = "penguins_ui"
RUNS = [("scheduled__2024-01-01T00:00:00+00:00", 20240101, {}), ("r2", 20240102, {}), ("r3", 20240103, {})]
RUNS[2][2]["shuffle_labels"] = True  # a worse model: not blessed, nothing pushed


class FixtureStore:
    def __init__(self, root: Path, results: dict[str, dict[str, Any]]) -> None:
        self.root, self.results = root, results
        self.mlmd = root / "mlmd.sqlite"

    def artifact(self, run_id: str, task: str, slot: str) -> dict[str, Any]:
        return self.results[run_id][task]["outputs"][slot][0]


def make_fixture_store(root: Path) -> FixtureStore:
    runs = [
        {
            "run_id": r,
            "span": span,
            "conf": conf,
            "root": str(root),
            "csv": str(files("palmerpenguins") / "data" / "penguins.csv"),
        }
        for r, span, conf in RUNS
    ]
    env = {**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps({"backend": "sqlite", "path": str(root / "mlmd.sqlite")})}
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), str(FIXTURE), "--batch", json.dumps(runs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return FixtureStore(root, json.loads(proc.stdout.split("RESULT ", 1)[1]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    return make_fixture_store(tmp_path_factory.mktemp("ui-store"))


def page_of(runs: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
    """``UiBackend.dag_runs``'s page of an oldest-first list: skip ``offset`` newest, keep ``limit``, oldest first."""
    return runs[::-1][offset : offset + limit][::-1]


class FakeBackend(UiBackend):
    """Airflow's DB replaced by the fixture's results; the rollback command by a recording script."""

    def __init__(self, store: FixtureStore, rollback_script: Path) -> None:
        super().__init__("mlmd_default")
        self.store, self.rollback_script = store, rollback_script

    def mlmd_config(self) -> dict[str, Any]:
        return {"backend": "sqlite", "path": str(self.store.mlmd)}

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.store.results.get(run_id, {}) if dag_id == DAG else {}

    def dag_runs(self, dag_id: str, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        runs = [{"run_id": r, "state": "success", "logical_date": str(s)} for r, s, _ in RUNS] if dag_id == DAG else []
        return page_of(runs, limit, offset)

    def rollback_launch(self, pipeline: str, version: str, destination: str) -> tuple[list[str], dict[str, str]]:
        _, env = super().rollback_launch(pipeline, version, destination)  # the real environment, a fake command
        return [sys.executable, str(self.rollback_script), pipeline, "--to", version, "--destination", destination], env


@pytest.fixture
def backend(store: FixtureStore, tmp_path: Path) -> FakeBackend:
    script = tmp_path / "fake_rollback.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(tmp_path / 'calls.json')!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], "
        "'mlmd': os.environ.get('MLPIPE_MLMD_CONFIG')}) + '\\n')\n"
        "print('serving now points at version', sys.argv[-1])\n"
    )
    return FakeBackend(store, script)


@pytest.fixture
def client(backend: FakeBackend) -> TestClient:
    app = ui_app.create_app(backend)
    app.dependency_overrides[ui_app.read_access] = lambda: None
    app.dependency_overrides[ui_app.rollback_access] = lambda: None
    return TestClient(app)


def q(**params: Any) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())


RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)


def test_every_route_refuses_anonymous_requests(backend: FakeBackend) -> None:
    anonymous = TestClient(ui_app.create_app(backend))  # Airflow's real dependency: no token, no cookie
    stats = backend.store.artifact(RUN1, "statistics_gen", "statistics")
    for path in (
        f"/run?{q(dag_id=DAG, run_id=RUN1)}",
        f"/pipeline?{q(dag_id=DAG)}",
        f"/stats?{q(dag_id=DAG, run_id=RUN1, artifact_id=stats['id'], split='train')}",
        f"/artifact?{q(dag_id=DAG, run_id=RUN1, artifact_id=stats['id'])}",
        f"/task?{q(dag_id=DAG, run_id=RUN1, task_id='statistics_gen')}",
    ):
        assert anonymous.get(path).status_code == 401, path
    response = anonymous.post(f"/rollback?{q(dag_id=DAG)}", data={"version": "1", "confirm": "yes"})
    assert response.status_code == 401
    assert not (backend.rollback_script.parent / "calls.json").exists()


def test_run_view_shows_stats_anomalies_metrics_blessing_push_and_lineage(
    client: TestClient, store: FixtureStore
) -> None:
    page = client.get(f"/run?{q(dag_id=DAG, run_id=RUN2)}")
    assert page.status_code == 200
    html = page.text
    summary = json.loads(Path(store.artifact(RUN2, "statistics_gen", "statistics")["uri"], "summary.json").read_text())
    for split, data in summary["splits"].items():
        assert f'data-split="{split}"' in html and f"{data['num_examples']} examples" in html
        for feature in data["features"]:
            assert f"<td>{feature['name']}</td>" in html
    anomalies = json.loads(
        Path(store.artifact(RUN2, "example_validator", "anomalies")["uri"], "anomalies.json").read_text()
    )
    assert html.count('<tr class="anomaly">') == len(anomalies["anomalies"]) > 0
    metrics = json.loads(Path(store.artifact(RUN2, "evaluator", "evaluation")["uri"], "metrics.json").read_text())
    overall = metrics["slices"][0]["metrics"]["accuracy"]
    assert f"{overall:.4g}" in html and metrics["baseline"] and "vs " in html
    blessing = json.loads(Path(store.artifact(RUN2, "evaluator", "blessing")["uri"], "blessing.json").read_text())
    assert ("BLESSED" if blessing["blessed"] else "NOT BLESSED") in html and blessing["reason"] in html
    pushed = store.artifact(RUN2, "pusher", "pushed_model")["properties"]
    assert f"version <b>{pushed['version']}</b>" in html
    # Lineage: one node per execution of the run, the cache hit marked as such.
    graph = MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)}).run_graph(DAG, RUN2)
    assert len(re.findall(r'class="node execution', html)) == len(graph.executions) == len(store.results[RUN2])
    cached = store.results[RUN2]["transform"]
    assert cached["cached"] and f"cache hit of #{cached['summary']['cached_from']}" in html
    assert len(re.findall(r'class="node artifact"', html)) == len(graph.artifacts)


def test_unblessed_run_shows_the_reason_and_no_push(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/run?{q(dag_id=DAG, run_id=RUN3)}").text
    blessing = store.artifact(RUN3, "evaluator", "blessing")["properties"]
    assert not blessing["blessed"] and "NOT BLESSED" in html and blessing["reason"].split(";")[0] in html
    assert "Nothing was pushed in this run." in html


def test_stats_endpoint_serves_tfdv_html_of_a_declared_split(client: TestClient, store: FixtureStore) -> None:
    stats = store.artifact(RUN1, "statistics_gen", "statistics")
    response = client.get(f"/stats?{q(dag_id=DAG, run_id=RUN1, artifact_id=stats['id'], split='eval')}")
    assert response.status_code == 200
    assert response.content == Path(stats["uri"], "Split-eval", "stats.html").read_bytes()
    assert "sandbox" in response.headers["content-security-policy"]


@pytest.mark.parametrize("split", ["../../../../etc/passwd", "..", "train/../eval", "train/..", "test", "Split-train"])
def test_stats_refuses_splits_the_artifact_does_not_declare(
    client: TestClient, store: FixtureStore, split: str
) -> None:
    stats = store.artifact(RUN1, "statistics_gen", "statistics")
    response = client.get(f"/stats?{q(dag_id=DAG, run_id=RUN1, artifact_id=stats['id'], split=split)}")
    assert response.status_code == 404


def test_artifacts_outside_the_run_or_of_another_type_are_refused(client: TestClient, store: FixtureStore) -> None:
    other_run = store.artifact(RUN3, "statistics_gen", "statistics")["id"]
    schema = store.artifact(RUN1, "schema_gen", "schema")["id"]
    for artifact_id in (other_run, schema, 99999):
        response = client.get(f"/stats?{q(dag_id=DAG, run_id=RUN1, artifact_id=artifact_id, split='train')}")
        assert response.status_code == 404, artifact_id
    assert client.get(f"/artifact?{q(dag_id=DAG, run_id=RUN1, artifact_id=other_run)}").status_code == 404
    # There is no parameter that takes a path at all.
    assert client.get("/stats?path=../../etc/passwd").status_code == 422
    assert client.get(f"/artifact?{q(dag_id=DAG, run_id=RUN1, artifact_id='../../etc/passwd')}").status_code == 422


def test_file_reads_stay_inside_the_artifact_directory(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    (artifact / "Split-train").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (artifact / "Split-train" / "stats.html").symlink_to(secret)
    with pytest.raises(NotFoundError):
        read_bytes(str(artifact), "Split-train", "stats.html")
    with pytest.raises(NotFoundError):
        read_bytes(str(artifact), "..", "secret.txt")
    with pytest.raises(NotFoundError):
        read_bytes("gs://bucket/artifact", "..", "x")


def test_artifact_and_task_pages(client: TestClient, store: FixtureStore) -> None:
    blessing = store.artifact(RUN1, "evaluator", "blessing")
    page = client.get(f"/artifact?{q(dag_id=DAG, run_id=RUN1, artifact_id=blessing['id'])}")
    assert page.status_code == 200 and "blessing.json" in page.text and blessing["uri"] in page.text
    task = client.get(f"/task?{q(dag_id=DAG, run_id=RUN1, task_id='evaluator')}")
    assert task.status_code == 200
    for slot in ("evaluation", "blessing"):
        assert f"#{store.artifact(RUN1, 'evaluator', slot)['id']}" in task.text
    assert client.get(f"/task?{q(dag_id=DAG, run_id=RUN1, task_id='nope')}").status_code == 404


def test_pipeline_view_plots_every_span_and_lists_pushed_versions(client: TestClient, store: FixtureStore) -> None:
    html = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    accuracy_chart = html[html.index('aria-label="accuracy"') :].split("</svg>", 1)[0]
    plotted = [float(v) for v in re.findall(r'data-value="([0-9.e-]+)"', accuracy_chart)]
    expected = []
    for run_id, _, _ in RUNS:
        uri = store.artifact(run_id, "evaluator", "evaluation")["uri"]
        expected.append(json.loads(Path(uri, "metrics.json").read_text())["slices"][0]["metrics"]["accuracy"])
    assert plotted == expected
    anomaly_chart = html[html.index('aria-label="anomalies per span"') :].split("</svg>", 1)[0]
    by_span: dict[str, dict[str, float]] = {}
    for name, value, span in re.findall(r"<title>(\w+) = ([0-9.]+) \(span (\d+)\)</title>", anomaly_chart):
        by_span.setdefault(span, {})[name] = float(value)
    for run_id, span, _ in RUNS:
        expected_total = store.results[run_id]["example_validator"]["summary"]["anomaly_count"]
        plotted_total = by_span[str(span)].pop("total", None)
        assert sum(by_span[str(span)].values()) == expected_total
        assert plotted_total in (None, expected_total)
    versions = [store.artifact(r, "pusher", "pushed_model")["properties"]["version"] for r, _, _ in RUNS[:2]]
    for version in versions:
        assert f"<b>{version}</b>" in html
    # The newest push serves; only the older version can be rolled back to, after an inline confirmation.
    assert f'name="version" value="{versions[0]}"' in html and f'name="version" value="{versions[1]}"' not in html


def test_run_table_pages_through_every_run_newest_first_while_the_trends_keep_every_span(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_app, "RUNS_PER_PAGE", 1)
    shown, page_links = [], []
    for page in (1, 2, 3):
        html = client.get(f"/pipeline?{q(dag_id=DAG, page=page)}").text
        shown += re.findall(r'<tr data-run="([^"]+)"', html)
        page_links.append(("newer-runs" in html, "older-runs" in html))
        # The trends are not paged: every span's accuracy is on every page.
        accuracy_chart = html[html.index('aria-label="accuracy"') :].split("</svg>", 1)[0]
        assert len(re.findall(r"data-value=", accuracy_chart)) == len(RUNS)
    assert shown == [run_id for run_id, _, _ in reversed(RUNS)]
    assert page_links == [(False, True), (True, True), (True, False)]
    assert client.get(f"/pipeline?{q(dag_id=DAG, page=0)}").status_code == 422


def test_rollback_needs_confirmation_a_pushed_version_and_the_same_origin(
    client: TestClient, backend: FakeBackend
) -> None:
    calls = backend.rollback_script.parent / "calls.json"
    url = f"/rollback?{q(dag_id=DAG)}"
    assert client.post(url, data={"version": "1"}).status_code == 400
    assert client.post(url, data={"version": "99", "confirm": "yes"}).status_code == 404
    evil = client.post(url, data={"version": "1", "confirm": "yes"}, headers={"origin": "http://evil.example"})
    assert evil.status_code == 403
    assert not calls.exists()
    done = client.post(url, data={"version": "1", "confirm": "yes"})
    assert done.status_code == 200 and "Rolled back penguins_ui to version 1" in done.text
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    destination = backend.store.artifact(RUN1, "pusher", "pushed_model")["properties"]["destination"]
    assert call["argv"] == ["penguins_ui", "--to", "1", "--destination", destination]
    assert json.loads(call["mlmd"])["path"] == str(backend.store.mlmd)


def test_reader_cannot_write_the_store(store: FixtureStore) -> None:
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)})
    with pytest.raises(Exception, match="readonly"), reader.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM Artifact")
    with sqlite3.connect(store.mlmd) as conn:
        assert conn.execute("select count(*) from Artifact").fetchone()[0] > 0


def test_a_missing_store_is_a_clear_503_not_a_crash(backend: FakeBackend, tmp_path: Path) -> None:
    backend.mlmd_config = lambda: {"backend": "sqlite", "path": str(tmp_path / "absent" / "mlmd.sqlite")}
    app = ui_app.create_app(backend)
    app.dependency_overrides[ui_app.read_access] = lambda: None
    response = TestClient(app).get(f"/run?{q(dag_id=DAG, run_id=RUN1)}")
    assert response.status_code == 503
    assert "cannot be read" in response.text and str(tmp_path / "absent") in response.text
    assert not (tmp_path / "absent").exists()  # read-only: the UI never creates the store


def test_a_store_of_an_unknown_schema_version_is_a_clear_503(
    backend: FakeBackend, store: FixtureStore, tmp_path: Path
) -> None:
    copy = tmp_path / "mlmd.sqlite"
    shutil.copyfile(store.mlmd, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE MLMDEnv SET schema_version = 11")
    backend.mlmd_config = lambda: {"backend": "sqlite", "path": str(copy)}
    app = ui_app.create_app(backend)
    app.dependency_overrides[ui_app.read_access] = lambda: None
    response = TestClient(app).get(f"/run?{q(dag_id=DAG, run_id=RUN1)}")
    assert response.status_code == 503
    assert "schema version 11" in response.text and "knows only schema version 10" in response.text


def test_a_pruned_version_offers_no_rollback(client: TestClient, store: FixtureStore) -> None:
    version_dir = Path(store.artifact(RUN1, "pusher", "pushed_model")["uri"])  # <destination>/<version>
    assert version_dir.is_dir() and version_dir.name == "1"
    hidden = version_dir.with_name(".pruned")
    version_dir.rename(hidden)
    try:
        html = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    finally:
        hidden.rename(version_dir)
    assert "pruned" in html and 'name="version" value="1"' not in html


def _kpis(store: FixtureStore, run_id: str) -> dict[str, Any]:
    evaluation = store.artifact(run_id, "evaluator", "evaluation")
    return json.loads(Path(evaluation["uri"], "metrics.json").read_text())["kpis"]


def test_business_kpis_in_the_run_view_and_their_trend_in_the_pipeline_view(
    client: TestClient, store: FixtureStore
) -> None:
    run_html = client.get(f"/run?{q(dag_id=DAG, run_id=RUN2)}").text
    table = run_html[run_html.index('id="kpis-table"') :].split("</table>", 1)[0]
    kpis, base = _kpis(store, RUN2), {s["slice"]: s["metrics"] for s in _kpis(store, RUN2)["baseline"]["slices"]}
    shown = re.findall(r'data-kpi="error_cost">([0-9.]+) <span class="muted">vs ([0-9.]+)</span>', table)
    expected = [(s["metrics"]["error_cost"], base[s["slice"]]["error_cost"]) for s in kpis["slices"]]
    assert [(float(a), float(b)) for a, b in shown] == expected
    html = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    chart = html[html.index('aria-label="KPI error_cost"') :].split("</svg>", 1)[0]
    plotted = [float(v) for v in re.findall(r'data-value="([0-9.e-]+)"', chart)]
    assert plotted == [_kpis(store, run_id)["slices"][0]["metrics"]["error_cost"] for run_id, _, _ in RUNS]
