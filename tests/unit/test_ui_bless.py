"""The run view's "Bless by override" action: confirmed, with a reason, as the signed-in user, through the runtime.

Against a real MLMD store written by the UI fixture pipeline (its third run's model is NOT_BLESSED); the action
runs the real runtime command, the one ``mlpipe bless`` runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from tests.support.airflow_env import mlmd_dump
from tests.unit.test_ui_app import DAG, RUN1, RUN3, FakeBackend, FixtureStore, make_fixture_store, q

RUNTIME_PYTHON = Path(__file__).resolve().parents[2] / ".venv-runtime" / "bin" / "python"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FixtureStore:
    monkeypatch.setenv("MLPIPE_RUNTIME_PYTHON", str(RUNTIME_PYTHON))
    monkeypatch.setenv("AIRFLOW__MLPIPE__RUNTIME_PYTHON", str(RUNTIME_PYTHON))
    return make_fixture_store(tmp_path / "store")  # its own: the override changes it


@pytest.fixture
def backend(store: FixtureStore, tmp_path: Path) -> FakeBackend:
    return FakeBackend(store, tmp_path / "no-rollback-here.py")


@pytest.fixture
def client(backend: FakeBackend) -> TestClient:
    app = ui_app.create_app(backend)
    app.dependency_overrides[ui_app.read_access] = lambda: None
    app.dependency_overrides[ui_app.trigger_access] = lambda: None
    app.dependency_overrides[ui_app.current_user] = lambda: SimpleNamespace(get_name=lambda: "alice")
    return TestClient(app)


def overrides(store: FixtureStore) -> list[dict]:
    return [e for e in mlmd_dump(store.mlmd)["executions"] if e["type"] == "mlpipe.Override"]


def test_an_anonymous_override_is_refused(backend: FakeBackend) -> None:
    anonymous = TestClient(ui_app.create_app(backend))  # Airflow's real dependencies: no token, no cookie
    response = anonymous.post(f"/bless?{q(dag_id=DAG, run_id=RUN3)}", data={"reason": "x", "confirm": "yes"})
    assert response.status_code == 401
    assert not overrides(backend.store)


def test_an_override_needs_confirmation_a_reason_the_same_origin_and_a_model(client: TestClient) -> None:
    url = f"/bless?{q(dag_id=DAG, run_id=RUN3)}"
    assert client.post(url, data={"reason": "labels re-coded"}).status_code == 400
    assert client.post(url, data={"reason": "  ", "confirm": "yes"}).status_code == 400
    foreign = client.post(url, data={"reason": "x", "confirm": "yes"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    missing = client.post(f"/bless?{q(dag_id=DAG, run_id='nope')}", data={"reason": "x", "confirm": "yes"})
    assert missing.status_code == 404


def test_the_run_view_blesses_by_override_and_then_shows_who_and_why(client: TestClient, store: FixtureStore) -> None:
    page = client.get(f"/run?{q(dag_id=DAG, run_id=RUN3)}").text
    assert 'id="bless-action"' in page and "NOT BLESSED" in page
    assert 'id="bless-action"' not in client.get(f"/run?{q(dag_id=DAG, run_id=RUN1)}").text  # blessed already
    model_id = store.artifact(RUN3, "trainer", "model")["id"]

    response = client.post(
        f"/bless?{q(dag_id=DAG, run_id=RUN3)}", data={"reason": "labels were shuffled on purpose", "confirm": "yes"}
    )

    assert response.status_code == 200, response.text
    assert f"Model #{model_id} of penguins_ui is blessed by override" in response.text
    assert "it is the baseline of the next run" in response.text
    [override] = overrides(store)
    assert override["state"] == "COMPLETE" and override["properties"]["model_id"] == model_id
    assert override["properties"]["user"] == "alice"  # the signed-in user, not the request
    assert override["properties"]["reason"] == "labels were shuffled on purpose"

    page = client.get(f"/run?{q(dag_id=DAG, run_id=RUN3)}").text
    badge = re.search(r'<p id="override">(.*?)</p>', page, re.S)
    assert badge and "blessed by override" in badge.group(1) and "<b>alice</b>" in badge.group(1)
    assert "labels were shuffled on purpose" in badge.group(1)
    assert 'id="bless-action"' not in page
    pipeline = client.get(f"/pipeline?{q(dag_id=DAG)}").text
    table = re.search(r'<table id="decisions">(.*?)</table>', pipeline, re.S)
    assert table and "blessed by override" in table.group(1) and f"model #{model_id}" in table.group(1)
    row = re.search(rf'<tr data-run="{RUN3}">(.*?)</tr>', pipeline, re.S)
    assert row and 'title="by alice: labels were shuffled on purpose">override</span>' in row.group(1)

    again = client.post(f"/bless?{q(dag_id=DAG, run_id=RUN3)}", data={"reason": "twice", "confirm": "yes"})
    assert again.status_code == 409
    assert f"Model {model_id} is already blessed (by override" in again.text
    assert len(overrides(store)) == 1
