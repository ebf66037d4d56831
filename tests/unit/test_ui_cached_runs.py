"""A run whose every stage was a cache hit shows the figures of the outputs it reused, marked as reused."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.data import build_pipeline_view, build_run_view
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.support.paths import REPO
from tests.unit.test_ui_app import (
    DAG,
    RUNS,
    RUNTIME_PYTHON,
    FakeBackend,
    FixtureStore,
    make_fixture_store,
    page_of,
    q,
)

RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)
CACHED = "r4_all_cached"  # every stage a cache hit of RUN2's (span 20240102, blessed, pushed version 2)


class CachedRunBackend(FakeBackend):
    def dag_runs(self, dag_id: str, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        runs = [*super().dag_runs(dag_id, len(RUNS)), {"run_id": CACHED, "state": "success", "logical_date": "x"}]
        return page_of(runs, limit, offset)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    fixture = make_fixture_store(tmp_path_factory.mktemp("ui-cached"))
    env = {**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps({"backend": "sqlite", "path": str(fixture.mlmd)})}
    script = REPO / "tests" / "support" / "ui_cached_run.py"
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), str(script), DAG, RUN2, CACHED], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fixture.results[CACHED] = json.loads(proc.stdout.split("RESULT ", 1)[1])
    return fixture


@pytest.fixture(scope="module")
def client(store: FixtureStore, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = ui_app.create_app(CachedRunBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


@pytest.fixture(scope="module")
def reader(store: FixtureStore) -> MlmdReader:
    return MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)})


def run_row(page: str, run_id: str) -> str:
    return page.split(f'<tr data-run="{run_id}">', 1)[1].split("</tr>", 1)[0]


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_fixture_run_is_all_cache_hits_of_the_second_run(store: FixtureStore, reader: MlmdReader) -> None:
    graph = reader.run_graph(DAG, CACHED)
    assert {e.state for e in graph.executions} == {"CACHED"}
    sources = {e.properties["node_id"]: e.properties["cached_from"] for e in graph.executions}
    originals = {task: result["execution_id"] for task, result in store.results[RUN2].items()}
    # RUN2's transform was itself a hit of RUN1's: the new hit names the original execution.
    originals["transform"] = store.results[RUN2]["transform"]["summary"]["cached_from"]
    assert sources == originals


def test_the_run_table_shows_what_a_cached_run_reused(client: TestClient, reader: MlmdReader) -> None:
    view = build_pipeline_view(reader, DAG, DAG, client.app.state.backend.dag_runs(DAG))
    rows = {r["run_id"]: r for r in view.runs}
    reused, original = rows[CACHED], rows[RUN2]
    for key in ("span", "anomalies", "metrics", "blessed", "pushed_version"):
        assert reused[key] == original[key] and reused["reused"][key] == RUN2
    assert original["span"] == 20240102 and original["pushed_version"] == 2 and "reused" not in original
    assert all("reused" not in rows[r] for r in (RUN1, RUN2, RUN3))
    # The trends keep one point per span: a reuse is not a new evaluation.
    assert [p.run_id for p in view.metric_points] == [RUN1, RUN2, RUN3]

    page = client.get("/pipeline?" + q(dag_id=DAG)).text
    row = run_row(page, CACHED)
    assert (
        '<span class="badge reused" title="cache hits: figures of the outputs of run r2, reused">reused</span>' in row
    )
    assert cells(row)[3:] == cells(run_row(page, RUN2))[3:]
    assert row.count('class="reused"') + row.count('class="num reused"') == len(cells(row)) - 3
    assert "reused" not in run_row(page, RUN1) and "reused" not in run_row(page, RUN2)


def test_the_run_view_shows_the_original_summaries_and_outputs(
    store: FixtureStore, client: TestClient, reader: MlmdReader
) -> None:
    view = build_run_view(reader, DAG, CACHED, DAG)
    assert view.statistics.id == store.artifact(RUN2, "statistics_gen", "statistics")["id"]
    assert set(view.reused_from.values()) == {RUN2} and len(view.reused_from) == 6
    page = client.get("/run?" + q(dag_id=DAG, run_id=CACHED)).text
    stages = page.split('id="stages"', 1)[1].split("</table>", 1)[0]
    rows = stages.split("<tr>")[2:]
    assert len(rows) == len(store.results[RUN2]) and all('<span class="badge reused">reused</span>' in r for r in rows)
    evaluator = next(r for r in rows if "evaluator" in r)
    assert f"accuracy={store.results[RUN2]['evaluator']['summary']['accuracy']}" in evaluator
    validator = next(r for r in rows if "example_validator" in r)
    assert f"anomaly_count={store.results[RUN2]['example_validator']['summary']['anomaly_count']}" in validator
    for section in ("statistics", "anomalies", "schema", "evaluation", "blessing", "push"):
        heading = page.split(f'<h2 id="{section}">', 1)[1].split("</h2>", 1)[0]
        assert "reused from r2" in heading, section
    # The figures are those of the reused outputs: histograms, anomalies, metrics, the pushed version.
    assert page.count('<svg class="histogram') == 14
    assert 'id="verdict">BLESSED' in page and "version <b>2</b>" in page


def test_a_run_without_cache_hits_shows_nothing_reused(client: TestClient) -> None:
    page = client.get("/run?" + q(dag_id=DAG, run_id=RUN1)).text
    assert "badge reused" not in page
    # RUN2 made its own outputs; only its transform was a cache hit, and that stage says so.
    page = client.get("/run?" + q(dag_id=DAG, run_id=RUN2)).text
    assert "reused from" not in page
    stages = page.split('id="stages"', 1)[1].split("</table>", 1)[0]
    assert [("transform" in r) for r in stages.split("<tr>")[2:] if "badge reused" in r] == [True]
