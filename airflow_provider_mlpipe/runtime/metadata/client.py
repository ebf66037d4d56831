"""The ML Metadata client: types, lineage contexts, executions, events and lookups.

Every stage execution is recorded with three contexts (the pipeline, the pipeline run, and the node), one
INPUT event per consumed artifact and one OUTPUT event per produced artifact. Outputs are recorded LIVE in the
same MLMD transaction that completes the execution, and only after their files were published.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, ArtifactRef, decode_json_text, default_sqlite_path
from airflow_provider_mlpipe.stages import all_stages

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"

State = pb.Execution.State


class MetadataUnavailableError(RuntimeError):
    """The MLMD database cannot be reached; the stage must not run without its lineage."""


def connection_config(config: dict[str, Any] | None = None) -> pb.ConnectionConfig:
    """Build an MLMD ConnectionConfig from a plain dict (the form the Airflow side hands over)."""
    if config is None:
        raw = os.environ.get(MLMD_CONFIG_ENV)
        config = json.loads(raw) if raw else {"backend": "sqlite", "path": default_sqlite_path()}
    backend = config.get("backend", "sqlite")
    cfg = pb.ConnectionConfig()
    if backend == "sqlite":
        path = config.get("path") or default_sqlite_path()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        cfg.sqlite.filename_uri = path
        cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    elif backend == "postgresql":
        cfg.postgresql.host = config.get("host", "localhost")
        cfg.postgresql.port = str(config.get("port") or 5432)
        cfg.postgresql.dbname = config["database"]
        cfg.postgresql.user = config.get("user", "")
        if config.get("password"):
            cfg.postgresql.password = config["password"]
    elif backend == "mysql":
        cfg.mysql.host = config.get("host", "localhost")
        cfg.mysql.port = int(config.get("port") or 3306)
        cfg.mysql.database = config["database"]
        cfg.mysql.user = config.get("user", "")
        if config.get("password"):
            cfg.mysql.password = config["password"]
    else:
        raise ValueError(f"The MLMD backend {backend!r} is not supported. Use sqlite, postgresql or mysql.")
    return cfg


def describe(config: pb.ConnectionConfig) -> str:
    """A password-free description of where MLMD lives, for logs and errors."""
    kind = config.WhichOneof("config")
    if kind == "sqlite":
        return f"sqlite:{config.sqlite.filename_uri}"
    if kind == "postgresql":
        pg = config.postgresql
        return f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.dbname}"
    if kind == "mysql":
        my = config.mysql
        return f"mysql://{my.user}@{my.host}:{my.port}/{my.database}"
    return kind or "unknown"


def _set_value(value_pb: pb.Value, value: Any) -> None:
    if isinstance(value, bool):
        value_pb.int_value = int(value)
    elif isinstance(value, int):
        value_pb.int_value = value
    elif isinstance(value, float):
        value_pb.double_value = value
    elif isinstance(value, str):
        value_pb.string_value = value
    else:
        value_pb.string_value = json.dumps(value, sort_keys=True, default=str)


def value_of(value_pb: pb.Value) -> Any:
    kind = value_pb.WhichOneof("value")
    if kind == "string_value":
        return decode_json_text(value_pb.string_value)
    return getattr(value_pb, kind) if kind else None


def properties_of(message: pb.Artifact | pb.Execution | pb.Context) -> dict[str, Any]:
    return {key: value_of(value) for key, value in message.custom_properties.items()}


class MetadataClient:
    """A thin, typed layer over ``MetadataStore`` with the lookups mlpipe needs."""

    def __init__(self, config: dict[str, Any] | pb.ConnectionConfig | None = None, retries: int = 3) -> None:
        self.config = config if isinstance(config, pb.ConnectionConfig) else connection_config(config)
        last_error: Exception | None = None
        for attempt in range(retries):
            try:
                self.store = metadata_store.MetadataStore(self.config)
                break
            except Exception as exc:  # MLMD raises several error types for an unreachable database
                last_error = exc
                time.sleep(min(2**attempt, 5))
        else:
            raise MetadataUnavailableError(
                f"Cannot open the ML Metadata store at {describe(self.config)}: {last_error}. "
                "Check that the database is running and the mlmd connection is right; the stage did not run."
            )
        self._type_ids: dict[tuple[str, str], int] = {}
        self._type_names: dict[int, str] = {}
        kind = self.config.WhichOneof("config")
        self._lock_path = f"{self.config.sqlite.filename_uri}.lock" if kind == "sqlite" else None

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise writers on SQLite, which supports a single writer; servers handle concurrency themselves."""
        if self._lock_path is None:
            yield
            return
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ----- types -------------------------------------------------------------------------------------
    def _type_id(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._type_ids:
            if kind == "artifact":
                self._type_ids[key] = self.store.put_artifact_type(pb.ArtifactType(name=name))
            elif kind == "execution":
                self._type_ids[key] = self.store.put_execution_type(pb.ExecutionType(name=name))
            else:
                self._type_ids[key] = self.store.put_context_type(pb.ContextType(name=name))
        return self._type_ids[key]

    def register_types(self) -> None:
        with self.write_lock():
            self._register_types()

    def _register_types(self) -> None:
        stages = all_stages().values()
        for name in sorted({t for stage in stages for t in stage.artifact_types()}):
            self._type_id("artifact", name)
        for stage in stages:
            self._type_id("execution", stage.execution_type)
        for name in (PIPELINE_CONTEXT, RUN_CONTEXT, NODE_CONTEXT):
            self._type_id("context", name)

    # ----- contexts ----------------------------------------------------------------------------------
    def context(self, type_name: str, name: str, properties: dict[str, Any] | None = None) -> pb.Context:
        existing = self.store.get_context_by_type_and_name(type_name, name)
        if existing is not None:
            return existing
        ctx = pb.Context(type_id=self._type_id("context", type_name), name=name)
        for key, value in (properties or {}).items():
            _set_value(ctx.custom_properties[key], value)
        try:
            [ctx.id] = self.store.put_contexts([ctx])
        except mlmd_errors.AlreadyExistsError:  # a concurrent run created it first
            return self.store.get_context_by_type_and_name(type_name, name)
        return ctx

    def lineage_contexts(self, pipeline: str, run_id: str, node_id: str) -> list[pb.Context]:
        with self.write_lock():
            return self._lineage_contexts(pipeline, run_id, node_id)

    def _lineage_contexts(self, pipeline: str, run_id: str, node_id: str) -> list[pb.Context]:
        return [
            self.context(PIPELINE_CONTEXT, pipeline),
            self.context(RUN_CONTEXT, f"{pipeline}.{run_id}", {"pipeline": pipeline, "run_id": run_id}),
            self.context(NODE_CONTEXT, f"{pipeline}.{node_id}", {"pipeline": pipeline, "node_id": node_id}),
        ]

    # ----- executions --------------------------------------------------------------------------------
    def start_execution(
        self,
        execution_type: str,
        contexts: list[pb.Context],
        inputs: Iterable[ArtifactRef],
        properties: dict[str, Any],
    ) -> int:
        execution = pb.Execution(type_id=self._type_id("execution", execution_type), last_known_state=State.RUNNING)
        for key, value in properties.items():
            _set_value(execution.custom_properties[key], value)
        events = []
        for ref in inputs:
            if ref.id is None:
                continue
            [artifact] = self.store.get_artifacts_by_id([ref.id])
            event = pb.Event(type=pb.Event.INPUT)
            event.path.steps.add().key = ref.name or ref.type
            events.append((artifact, event))
        with self.write_lock():
            execution_id, _, _ = self.store.put_execution(execution, events, contexts)
        return execution_id

    def finish_execution(
        self,
        execution_id: int,
        contexts: list[pb.Context],
        outputs: dict[str, list[ArtifactRef]],
        properties: dict[str, Any],
        state: int = State.COMPLETE,
    ) -> None:
        """Record outputs LIVE and the execution's final state in one transaction."""
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = state
        for key, value in properties.items():
            _set_value(execution.custom_properties[key], value)
        pairs = []
        for slot, refs in outputs.items():
            for ref in refs:
                if ref.id is not None:
                    [artifact] = self.store.get_artifacts_by_id([ref.id])
                else:
                    artifact = pb.Artifact(
                        type_id=self._type_id("artifact", ref.type), uri=ref.uri, state=pb.Artifact.LIVE
                    )
                    for key, value in ref.properties.items():
                        _set_value(artifact.custom_properties[key], value)
                event = pb.Event(type=pb.Event.OUTPUT)
                event.path.steps.add().key = slot
                pairs.append((artifact, event))
        with self.write_lock():
            _, artifact_ids, _ = self.store.put_execution(execution, pairs, contexts)
        flat = [ref for refs in outputs.values() for ref in refs]
        for ref, artifact_id in zip(flat, artifact_ids, strict=True):
            ref.id = artifact_id

    def fail_execution(self, execution_id: int, message: str, state: int = State.FAILED) -> None:
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = state
        _set_value(execution.custom_properties["error"], message[-4000:])
        with self.write_lock():
            self.store.put_executions([execution])

    def fail_abandoned_executions(self, node_context: pb.Context, run_context: pb.Context) -> int:
        """Mark RUNNING executions of this node in this run as FAILED: they belong to killed attempts."""
        # Filtered in the database: the node's history grows by one execution per run.
        running = self.store.get_executions(
            list_options=metadata_store.ListOptions(
                filter_query=f"contexts_a.id = {node_context.id} AND contexts_b.id = {run_context.id} "
                "AND last_known_state = RUNNING"
            )
        )
        for execution in running:
            self.fail_execution(execution.id, "Abandoned: the attempt was killed before it finished.")
        return len(running)

    def set_artifact_state(self, artifact_id: int, state: int, properties: dict[str, Any] | None = None) -> None:
        """Move an artifact to another MLMD state (a garbage collection's MARKED_FOR_DELETION, then DELETED)."""
        [artifact] = self.store.get_artifacts_by_id([artifact_id])
        artifact.state = state
        for key, value in (properties or {}).items():
            _set_value(artifact.custom_properties[key], value)
        with self.write_lock():
            self.store.put_artifacts([artifact])

    # ----- lookups -----------------------------------------------------------------------------------
    def artifact_type_name(self, type_id: int) -> str:
        """A type's name, looked up once per client: a resolver converts hundreds of artifacts."""
        if type_id not in self._type_names:
            [atype] = self.store.get_artifact_types_by_id([type_id])
            self._type_names[type_id] = atype.name
        return self._type_names[type_id]

    def artifact_ref(self, artifact: pb.Artifact, name: str = "") -> ArtifactRef:
        return ArtifactRef(
            type=self.artifact_type_name(artifact.type_id),
            uri=artifact.uri,
            id=artifact.id,
            name=name,
            properties=properties_of(artifact),
        )

    def outputs_of(self, execution_id: int) -> dict[str, list[ArtifactRef]]:
        outputs: dict[str, list[ArtifactRef]] = {}
        events = [e for e in self.store.get_events_by_execution_ids([execution_id]) if e.type == pb.Event.OUTPUT]
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            slot = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(slot, []).append(self.artifact_ref(artifacts[event.artifact_id], slot))
        return outputs

    def executions_in_context(self, context: pb.Context) -> list[pb.Execution]:
        return sorted(self.store.get_executions_by_context(context.id), key=lambda e: e.id)

    def live_artifacts(self, pipeline: str, type_name: str) -> list[pb.Artifact]:
        """LIVE artifacts of a type produced within a pipeline, oldest first.

        Filtered in the database: the pipeline's context holds every artifact of every run.
        """
        ctx = self.store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline)
        if ctx is None:
            return []
        if not type_name.replace(".", "").replace("_", "").isalnum():
            raise ValueError(f"{type_name!r} is not an artifact type name.")
        query = f"type = '{type_name}' AND state = LIVE AND contexts_a.id = {ctx.id}"
        arts = self.store.get_artifacts(list_options=metadata_store.ListOptions(filter_query=query))
        return sorted(arts, key=lambda a: a.id)
