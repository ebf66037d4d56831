"""MLMD stores for the runtime tests, and the probe request that records into them.

Importable from both venvs: the MLMD client (``ml_metadata``) is imported only when a store is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.protocol import StageRequest

if TYPE_CHECKING:
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient


def sqlite_config(folder: str | Path) -> dict[str, str]:
    """An MLMD connection config for a SQLite file ``mlmd.sqlite`` in ``folder``."""
    return {"backend": "sqlite", "path": str(Path(folder) / "mlmd.sqlite")}


def open_store(config: dict[str, Any], **options: Any) -> MetadataClient:
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

    return MetadataClient(config, **options)


def sqlite_client(folder: str | Path, **options: Any) -> MetadataClient:
    """A client of the SQLite store in ``folder`` (created on first use)."""
    return open_store(sqlite_config(folder), **options)


def probe_request(root: Path, run_id: str = "run-1", pipeline: str = "probe", **params: object) -> StageRequest:
    """A run of the test-only probe stage, which sums ``values`` into one artifact."""
    return StageRequest(
        pipeline=pipeline,
        pipeline_root=str(root),
        stage="probe",
        node_id="probe",
        run_id=run_id,
        params={"values": [1.0, 2.0, 4.5], **params},
    )
