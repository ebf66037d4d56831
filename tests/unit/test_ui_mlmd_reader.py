"""The UI's MLMD SQL reader checks the store's schema version before it reads MLMD's tables.

The store is a real SQLite ML Metadata store, created by the runtime's ml-metadata (in .venv-runtime) with one
pipeline run's lineage contexts; the reader itself runs on the Airflow side with SQLAlchemy only.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from airflow_provider_mlpipe.ui.mlmd_reader import KNOWN_SCHEMA_VERSIONS, MlmdReader, MlmdSchemaError
from tests.support.paths import REPO, RUNTIME_PYTHON

WRITE_STORE = """
import json, sys
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
client = MetadataClient(json.loads(sys.argv[1]), retries=1)
client.lineage_contexts("penguins", "run-1", "example_gen")
"""


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlmd") / "mlmd.sqlite"
    proc = subprocess.run(
        [RUNTIME_PYTHON, "-c", WRITE_STORE, json.dumps({"backend": "sqlite", "path": str(path)})],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def copy_with_version(store: Path, target: Path, version: int) -> Path:
    shutil.copyfile(store, target)
    with sqlite3.connect(target) as conn:
        conn.execute("UPDATE MLMDEnv SET schema_version = ?", (version,))
    return target


def test_the_runtime_writes_the_schema_version_the_reader_knows(real_store: Path) -> None:
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(real_store)})
    assert reader.check_schema() == 10
    assert KNOWN_SCHEMA_VERSIONS == {10: "ml-metadata 1.17.1"}
    assert reader.run_ids("penguins") == ["run-1"]  # and the tables read as that version lays them out


@pytest.mark.parametrize("version", [9, 11])
def test_another_schema_version_is_refused_before_any_read(real_store: Path, tmp_path: Path, version: int) -> None:
    store = copy_with_version(real_store, tmp_path / "mlmd.sqlite", version)
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(store)})
    with pytest.raises(MlmdSchemaError) as refused:
        reader.run_ids("penguins")
    message = str(refused.value)
    assert f"schema version {version}, but the mlpipe UI reads MLMD's tables directly" in message
    assert "knows only schema version 10 (ml-metadata 1.17.1)" in message


def test_a_database_that_is_not_an_mlmd_store_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE Artifact (id INTEGER)")
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(other)})
    with pytest.raises(MlmdSchemaError, match="no MLMDEnv table, so it is not an ML Metadata store"):
        reader.artifacts([1])
