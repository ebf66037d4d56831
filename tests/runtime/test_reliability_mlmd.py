"""MLMD outages: a stage never runs, and nothing stays published, without its lineage record."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, MetadataUnavailableError
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.support.mlmd import sqlite_client


def probe_request(root: Path) -> StageRequest:
    return StageRequest(
        pipeline="probe", pipeline_root=str(root), stage="probe", node_id="probe", run_id="r1", params={}
    )


def test_unreachable_store_fails_with_a_clear_error(tmp_path: Path) -> None:
    config = {"backend": "postgresql", "host": "127.0.0.1", "port": 1, "user": "u", "database": "mlmd"}
    with pytest.raises(MetadataUnavailableError) as err:
        MetadataClient(config, retries=1)
    message = str(err.value)
    assert "postgresql://u@127.0.0.1:1/mlmd" in message and "the stage did not run" in message


def test_record_failure_after_publish_takes_the_output_back(tmp_path: Path, monkeypatch) -> None:
    client = sqlite_client(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("MLMD went away")

    monkeypatch.setattr(client, "finish_execution", broken)
    with pytest.raises(ConnectionError):
        run_stage(probe_request(tmp_path / "root"), client)

    node_dir = tmp_path / "root" / "probe" / "probe"
    assert sorted(p.name for p in node_dir.iterdir()) == [".staging"]
    assert client.store.get_artifacts() == []
