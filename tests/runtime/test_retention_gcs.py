"""gc's leftover rule on gs:// (gcp-storage-emulator): old ``.staging`` and ``.tmp-*`` prefixes go, unless a RUNNING
execution owns them or they belong to another pipeline; a dry run only lists them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from airflow_provider_mlpipe.runtime.retention.gc import collect
from airflow_provider_mlpipe.runtime.retention.plan import RetentionPolicy
from airflow_provider_mlpipe.storage import default_storage, join
from tests.support.gcs_emulator import running_emulator
from tests.support.mlmd import sqlite_client

pytestmark = pytest.mark.runtime
BUCKET = "mlpipe-gc"


def test_old_unowned_staging_and_push_leftovers_on_gcs_are_removed(tmp_path: Path) -> None:
    with running_emulator(default_bucket=BUCKET):
        storage = default_storage()
        root, destination = f"gs://{BUCKET}/root", f"gs://{BUCKET}/serving/penguins"
        client = sqlite_client(tmp_path)
        client.register_types()
        contexts = client.lineage_contexts("penguins", "manual__slow", "transform")
        props = {"pipeline": "penguins", "node_id": "transform", "run_id": "manual__slow"}
        running = client.start_execution("mlpipe.Transform", contexts, [], props)
        staging = join(root, ".staging")
        prefixes = {
            "owned": join(staging, f"penguins-transform-{running}-transform_graph-0123456789ab"),
            "orphan": join(staging, "penguins-trainer-99999-model-0123456789ab"),
            "owned_scratch": join(staging, "transform-tmp-0123456789ab"),
            "orphan_scratch": join(staging, "evaluator-tmp-0123456789ab"),
            "other_pipeline": join(staging, "churn-trainer-5-model-0123456789ab"),
            "push_tmp": join(destination, ".tmp-3-deadbeef"),
            "version": join(destination, "1"),
        }
        for prefix in prefixes.values():
            storage.write_text(join(prefix, "saved_model.pb"), "x" * 64)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # every object is two hours old by then
        policy = RetentionPolicy(min_age=dt.timedelta(hours=1))

        gone = {prefixes[k] for k in ("orphan", "orphan_scratch", "push_tmp")}
        dry = collect(client, "penguins", root, [destination], policy, dry_run=True, now=later)
        assert {item.uri for item in dry.leftovers} == gone
        assert all(item.size == 64 and item.age_s > 3600 for item in dry.leftovers)
        assert all(storage.list_files(prefix) for prefix in prefixes.values())

        collect(client, "penguins", root, [destination], policy, now=later)
        for name, prefix in prefixes.items():
            assert bool(storage.list_files(prefix)) == (prefix not in gone), name
        # Young leftovers stay whoever owns them.
        client.fail_execution(running, "ended by the test")
        assert collect(client, "penguins", root, [destination], policy, dry_run=True).leftovers == []
