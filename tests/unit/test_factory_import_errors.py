"""The DagBag import-error hook is gated on the Airflow releases it is tested on, and degrades with a warning."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_mlpipe import factory
from airflow_provider_mlpipe.version_compat import get_base_airflow_version_tuple
from tests.support.spec_fixtures import full_spec, make_dags_folder

BAD_CRON = "pipelines/bad_cron.yaml"


def _parse(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    specs = {"good": full_spec("good"), "bad_cron": full_spec("bad_cron").replace('"@daily"', '"61 * * * *"')}
    dags = make_dags_folder(tmp_path, specs)
    return DagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="test")


def test_the_gate_follows_the_running_airflow_release():
    version = get_base_airflow_version_tuple()
    assert len(version) == 3 and all(isinstance(part, int) for part in version)
    assert ((3, 3, 0) <= version < (3, 4, 0)) == factory.DAGBAG_HOOK_SUPPORTED
    # setup.cfg pins Airflow to the tested releases, so the installed one must take the hook.
    assert factory.DAGBAG_HOOK_SUPPORTED


def test_supported_release_records_the_spec_error_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=factory.__name__):
        bag = _parse(tmp_path)
    assert bag.dag_ids == ["good"]
    assert "Invalid cron expression" in bag.import_errors[BAD_CRON]
    assert not [r for r in caplog.records if r.name == factory.__name__ and r.levelno == logging.WARNING]


def test_other_release_logs_the_spec_error_and_warns_instead(tmp_path, caplog, monkeypatch: pytest.MonkeyPatch):
    # The gate constant is computed from the running release at import; pretend it is one the hook was not tested on.
    monkeypatch.setattr(factory, "DAGBAG_HOOK_SUPPORTED", False)
    with caplog.at_level(logging.WARNING, logger=factory.__name__):
        bag = _parse(tmp_path)
    assert bag.dag_ids == ["good"]  # the valid spec's DAG is unaffected
    assert BAD_CRON not in bag.import_errors and not [k for k in bag.import_errors if k.endswith(".yaml")]
    messages = [r.getMessage() for r in caplog.records if r.name == factory.__name__]
    release = ".".join(map(str, get_base_airflow_version_tuple()))
    assert any(
        "only on Airflow 3.3" in m and f"this is Airflow {release}" in m and "not listed in the UI" in m
        for m in messages
    ), messages
    assert any("bad_cron.yaml:5: schedule: Invalid cron expression" in m for m in messages), messages


def test_a_plain_import_without_a_dagbag_neither_records_nor_warns(tmp_path, caplog):
    specs = {"bad_cron": full_spec("bad_cron").replace('"@daily"', '"61 * * * *"')}
    dags = make_dags_folder(tmp_path, specs, dag_file=False)
    with caplog.at_level(logging.WARNING, logger=factory.__name__):
        assert factory.parsing_dagbag() is None
        factory.load_pipelines(dags / "pipelines", {})
    assert not [r for r in caplog.records if "not listed in the UI" in r.getMessage()]
