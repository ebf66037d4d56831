"""A read-only reader of the ML Metadata store for the UI, over MLMD's SQL schema.

Why SQL and not ``ml_metadata``: the Airflow side must not import the ML stack, and a runtime subprocess per
page view would cost seconds (TensorFlow-era imports) and a process per request. MLMD's relational schema
(Type, Artifact, ArtifactProperty, Execution, ExecutionProperty, Event, EventPath, Context, Association,
Attribution) is the same on SQLite, PostgreSQL and MySQL, so SQLAlchemy Core reads it directly. The tables and
columns read here are those of the schema version that the runtime's ml-metadata writes; before its first query
the reader checks the store's ``MLMDEnv.schema_version`` and refuses any other version with ``MlmdSchemaError``.
The reader only ever issues SELECTs; SQLite is opened with ``mode=ro`` so it cannot write or create the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from airflow_provider_mlpipe.protocol import decode_json_text

# MLMD enums (metadata_store.proto), copied as numbers because the proto module is not importable here.
TYPE_KIND = {"execution": 0, "artifact": 1, "context": 2}
EXECUTION_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}
ARTIFACT_STATES = {0: "UNKNOWN", 1: "PENDING", 2: "LIVE", 3: "MARKED_FOR_DELETION", 4: "DELETED", 5: "ABANDONED"}
EVENT_INPUT, EVENT_OUTPUT = 3, 4
RUN_CONTEXT = "pipeline_run"
PIPELINE_CONTEXT = "pipeline"
# MLMD schema versions whose tables this reader was written and tested against: ml-metadata 1.17.1 (the runtime's
# pin, requirements/runtime.in) creates and migrates stores to version 10.
KNOWN_SCHEMA_VERSIONS = {10: "ml-metadata 1.17.1"}


class MlmdSchemaError(RuntimeError):
    """The store is not an ML Metadata store of a schema version this reader knows."""


def _schema(lowercase: bool) -> SimpleNamespace:
    """MLMD's tables (only the columns the UI reads). PostgreSQL folds MLMD's unquoted names to lower case."""
    md = sa.MetaData()

    def table(name: str, *columns: sa.Column) -> sa.Table:
        return sa.Table(name.lower() if lowercase else name, md, *columns)

    def props(name: str, owner: str) -> sa.Table:
        return table(
            name,
            sa.Column(owner, sa.Integer),
            sa.Column("name", sa.String),
            sa.Column("is_custom_property", sa.Integer),
            sa.Column("int_value", sa.BigInteger),
            sa.Column("double_value", sa.Float),
            sa.Column("string_value", sa.Text),
            sa.Column("bool_value", sa.Boolean),
        )

    return SimpleNamespace(
        env=table("MLMDEnv", sa.Column("schema_version", sa.Integer)),
        type=table(
            "Type", sa.Column("id", sa.Integer), sa.Column("name", sa.String), sa.Column("type_kind", sa.Integer)
        ),
        artifact=table(
            "Artifact",
            sa.Column("id", sa.Integer),
            sa.Column("type_id", sa.Integer),
            sa.Column("uri", sa.Text),
            sa.Column("state", sa.Integer),
        ),
        execution=table(
            "Execution",
            sa.Column("id", sa.Integer),
            sa.Column("type_id", sa.Integer),
            sa.Column("last_known_state", sa.Integer),
            sa.Column("create_time_since_epoch", sa.BigInteger),
            sa.Column("last_update_time_since_epoch", sa.BigInteger),
        ),
        context=table(
            "Context", sa.Column("id", sa.Integer), sa.Column("type_id", sa.Integer), sa.Column("name", sa.String)
        ),
        artifact_prop=props("ArtifactProperty", "artifact_id"),
        execution_prop=props("ExecutionProperty", "execution_id"),
        context_prop=props("ContextProperty", "context_id"),
        event=table(
            "Event",
            sa.Column("id", sa.Integer),
            sa.Column("artifact_id", sa.Integer),
            sa.Column("execution_id", sa.Integer),
            sa.Column("type", sa.Integer),
        ),
        event_path=table("EventPath", sa.Column("event_id", sa.Integer), sa.Column("step_key", sa.Text)),
        association=table("Association", sa.Column("context_id", sa.Integer), sa.Column("execution_id", sa.Integer)),
        attribution=table("Attribution", sa.Column("context_id", sa.Integer), sa.Column("artifact_id", sa.Integer)),
    )


@dataclass
class Artifact:
    id: int
    type: str
    uri: str
    state: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Execution:
    id: int
    type: str
    state: str
    properties: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def component(self) -> str:
        return self.type.removeprefix("mlpipe.")


@dataclass
class EventEdge:
    execution_id: int
    artifact_id: int
    kind: str  # INPUT or OUTPUT
    slot: str


@dataclass
class RunGraph:
    """The lineage of one pipeline run: its executions, the artifacts they touched, and the events."""

    executions: list[Execution]
    artifacts: dict[int, Artifact]
    events: list[EventEdge]

    def outputs(self, execution_id: int) -> dict[str, list[Artifact]]:
        out: dict[str, list[Artifact]] = {}
        for ev in self.events:
            if ev.execution_id == execution_id and ev.kind == "OUTPUT":
                out.setdefault(ev.slot, []).append(self.artifacts[ev.artifact_id])
        return out

    def latest_output(self, artifact_type: str) -> Artifact | None:
        """The output of this type from the run's latest successful (or cached) execution."""
        for execution in sorted(self.executions, key=lambda e: e.id, reverse=True):
            if execution.state not in ("COMPLETE", "CACHED"):
                continue
            for arts in self.outputs(execution.id).values():
                for art in arts:
                    if art.type == artifact_type:
                        return art
        return None


def decode_value(row: Any) -> Any:
    """A property row's value, with JSON strings (lists and dicts) decoded as the runtime encodes them."""
    if row.string_value is not None:
        return decode_json_text(row.string_value)
    if row.int_value is not None:
        return row.int_value
    if row.double_value is not None:
        return row.double_value
    if row.bool_value is not None:
        return bool(row.bool_value)
    return None


def engine_for(config: dict[str, Any]) -> sa.Engine:
    """A read-only SQLAlchemy engine for an ``mlmd`` connection config (see hooks/mlmd.py)."""
    backend = config.get("backend", "sqlite")
    if backend == "sqlite":
        # mode=ro: the UI can never create, migrate or write the store, even by accident.
        path = quote(str(config["path"]))
        return sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=sa.pool.NullPool)
    driver = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}.get(backend)
    if driver is None:
        raise ValueError(f"The MLMD backend {backend!r} is not supported by the UI.")
    url = sa.URL.create(
        driver,
        username=config.get("user") or None,
        password=config.get("password") or None,
        host=config.get("host"),
        port=int(config["port"]) if config.get("port") else None,
        database=config["database"],
    )
    # Every session is read-only on the server itself, so no code path of the UI can write the store.
    read_only = {
        "postgresql": {"options": "-c default_transaction_read_only=on"},
        "mysql": {"init_command": "SET SESSION TRANSACTION READ ONLY"},
    }
    return sa.create_engine(url, pool_pre_ping=True, connect_args=read_only[backend])


class MlmdReader:
    """SELECT-only lookups the run and pipeline views need."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.t = _schema(lowercase=engine.dialect.name == "postgresql")
        self.schema_checked = False
        # Type names and context ids never change once written; caching them saves a query per lookup.
        self._type_cache: dict[str, dict[int, str]] = {}
        self._context_cache: dict[tuple[str, str], int] = {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MlmdReader:
        return cls(engine_for(config))

    def check_schema(self) -> int:
        """The store's MLMD schema version, if it is a known one; otherwise ``MlmdSchemaError`` says why not."""
        known = ", ".join(f"{version} ({writer})" for version, writer in KNOWN_SCHEMA_VERSIONS.items())
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(self.t.env.name):
                raise MlmdSchemaError(
                    f"The database has no {self.t.env.name} table, so it is not an ML Metadata store: point the "
                    "mlmd connection at the store the pipeline stages write."
                )
            versions = sorted({row.schema_version for row in conn.execute(sa.select(self.t.env.c.schema_version))})
        if len(versions) != 1 or versions[0] not in KNOWN_SCHEMA_VERSIONS:
            found = ", ".join(map(str, versions)) or "none"
            raise MlmdSchemaError(
                f"The ML Metadata store has schema version {found}, but the mlpipe UI reads MLMD's tables directly "
                f"and knows only schema version {known}. Run the UI against a store written by that ml-metadata "
                "release, or upgrade the UI together with the runtime's ml-metadata."
            )
        return versions[0]

    # ----- low level -----------------------------------------------------------------------------------
    def _rows(self, query: sa.Select) -> list[Any]:
        if not self.schema_checked:  # once per reader: the UI keeps one per connection
            self.check_schema()
            self.schema_checked = True
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def _types(self, kind: str, needed: Iterable[int] = ()) -> dict[int, str]:
        """Type id -> name; read again only when a type id in ``needed`` is new since the last read."""
        cached = self._type_cache.get(kind)
        if cached is None or any(type_id not in cached for type_id in needed):
            rows = self._rows(
                sa.select(self.t.type.c.id, self.t.type.c.name).where(self.t.type.c.type_kind == TYPE_KIND[kind])
            )
            cached = self._type_cache[kind] = {r.id: r.name for r in rows}
        return cached

    def _properties(self, table: sa.Table, owner: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {i: {} for i in ids}
        if not ids:
            return out
        for row in self._rows(sa.select(table).where(table.c[owner].in_(ids))):
            out[row[0]][row.name] = decode_value(row)
        return out

    def _context_id(self, type_name: str, name: str) -> int | None:
        if (type_name, name) in self._context_cache:
            return self._context_cache[(type_name, name)]
        query = (
            sa.select(self.t.context.c.id)
            .join(self.t.type, self.t.type.c.id == self.t.context.c.type_id)
            .where(
                self.t.type.c.name == type_name,
                self.t.type.c.type_kind == TYPE_KIND["context"],
                self.t.context.c.name == name,
            )
        )
        rows = self._rows(query)
        if not rows:
            return None  # not cached: the context appears with the pipeline's first run
        self._context_cache[(type_name, name)] = rows[0].id
        return rows[0].id

    # ----- entities ------------------------------------------------------------------------------------
    def artifacts(self, ids: list[int]) -> dict[int, Artifact]:
        if not ids:
            return {}
        rows = self._rows(sa.select(self.t.artifact).where(self.t.artifact.c.id.in_(ids)))
        types = self._types("artifact", (r.type_id for r in rows))
        props = self._properties(self.t.artifact_prop, "artifact_id", [r.id for r in rows])
        return {
            r.id: Artifact(r.id, types.get(r.type_id, "?"), r.uri or "", ARTIFACT_STATES.get(r.state, "?"), props[r.id])
            for r in rows
        }

    def executions(self, ids: list[int]) -> list[Execution]:
        if not ids:
            return []
        rows = self._rows(
            sa.select(self.t.execution).where(self.t.execution.c.id.in_(ids)).order_by(self.t.execution.c.id)
        )
        types = self._types("execution", (r.type_id for r in rows))
        props = self._properties(self.t.execution_prop, "execution_id", [r.id for r in rows])
        return [
            Execution(
                r.id,
                types.get(r.type_id, "?"),
                EXECUTION_STATES.get(r.last_known_state, "?"),
                props[r.id],
                r.create_time_since_epoch or 0,
                r.last_update_time_since_epoch or 0,
            )
            for r in rows
        ]

    def events(self, execution_ids: list[int]) -> list[EventEdge]:
        if not execution_ids:
            return []
        query = (
            sa.select(self.t.event, self.t.event_path.c.step_key)
            .select_from(self.t.event.outerjoin(self.t.event_path, self.t.event_path.c.event_id == self.t.event.c.id))
            .where(self.t.event.c.execution_id.in_(execution_ids), self.t.event.c.type.in_([EVENT_INPUT, EVENT_OUTPUT]))
            .order_by(self.t.event.c.id)
        )
        seen: set[int] = set()
        edges = []
        for r in self._rows(query):
            if r.id in seen:  # a multi-step path would repeat the event; the first step is the slot
                continue
            seen.add(r.id)
            kind = "INPUT" if r.type == EVENT_INPUT else "OUTPUT"
            edges.append(EventEdge(r.execution_id, r.artifact_id, kind, r.step_key or ""))
        return edges

    # ----- lineage of runs -----------------------------------------------------------------------------
    def run_execution_ids(self, pipeline: str, run_id: str) -> list[int]:
        ctx = self._context_id(RUN_CONTEXT, f"{pipeline}.{run_id}")
        if ctx is None:
            return []
        rows = self._rows(sa.select(self.t.association.c.execution_id).where(self.t.association.c.context_id == ctx))
        return sorted(r.execution_id for r in rows)

    def run_graph(self, pipeline: str, run_id: str) -> RunGraph:
        executions = self.executions(self.run_execution_ids(pipeline, run_id))
        events = self.events([e.id for e in executions])
        artifacts = self.artifacts(sorted({ev.artifact_id for ev in events}))
        return RunGraph(executions, artifacts, [ev for ev in events if ev.artifact_id in artifacts])

    def pipeline_of_executions(self, execution_ids: list[int]) -> str | None:
        for execution in self.executions(execution_ids):
            if execution.properties.get("pipeline"):
                return str(execution.properties["pipeline"])
        return None

    def run_ids(self, pipeline: str) -> list[str]:
        """Airflow run ids that recorded executions for this pipeline, oldest first."""
        query = (
            sa.select(self.t.context.c.id, self.t.context.c.name)
            .join(self.t.type, self.t.type.c.id == self.t.context.c.type_id)
            .where(self.t.type.c.name == RUN_CONTEXT, self.t.context.c.name.startswith(f"{pipeline}.", autoescape=True))
            .order_by(self.t.context.c.id)
        )
        rows = self._rows(query)
        props = self._properties(self.t.context_prop, "context_id", [r.id for r in rows])
        out = []
        for r in rows:
            if props[r.id].get("pipeline", pipeline) == pipeline:
                out.append(str(props[r.id].get("run_id") or r.name[len(pipeline) + 1 :]))
        return out

    def pipeline_artifacts(self, pipeline: str, type_name: str) -> list[Artifact]:
        """All artifacts of a type attributed to the pipeline, oldest first (the pipeline view's history)."""
        return self.pipeline_artifacts_by_type(pipeline, [type_name])[type_name]

    def pipeline_artifacts_by_type(self, pipeline: str, type_names: list[str]) -> dict[str, list[Artifact]]:
        """The artifacts of several types attributed to the pipeline, oldest first, read in one pass."""
        out: dict[str, list[Artifact]] = {name: [] for name in type_names}
        ctx = self._context_id(PIPELINE_CONTEXT, pipeline)
        if ctx is None:
            return out
        query = (
            sa.select(self.t.artifact.c.id)
            .join(self.t.attribution, self.t.attribution.c.artifact_id == self.t.artifact.c.id)
            .join(self.t.type, self.t.type.c.id == self.t.artifact.c.type_id)
            .where(self.t.attribution.c.context_id == ctx, self.t.type.c.name.in_(type_names))
            .order_by(self.t.artifact.c.id)
        )
        ids = [r.id for r in self._rows(query)]
        found = self.artifacts(ids)
        for artifact_id in ids:
            if artifact_id in found:
                out[found[artifact_id].type].append(found[artifact_id])
        return out

    def producers(self, artifact_ids: list[int]) -> dict[int, Execution]:
        """The execution that first output each artifact (a cached execution re-outputs it later)."""
        if not artifact_ids:
            return {}
        query = (
            sa.select(self.t.event.c.artifact_id, sa.func.min(self.t.event.c.execution_id).label("execution_id"))
            .where(self.t.event.c.artifact_id.in_(artifact_ids), self.t.event.c.type == EVENT_OUTPUT)
            .group_by(self.t.event.c.artifact_id)
        )
        pairs = {r.artifact_id: r.execution_id for r in self._rows(query)}
        by_id = {e.id: e for e in self.executions(sorted(set(pairs.values())))}
        return {a: by_id[e] for a, e in pairs.items() if e in by_id}

    def reusers(self, artifact_ids: list[int]) -> dict[int, list[Execution]]:
        """The cache hits that output each artifact again, oldest first: the runs that reused it."""
        if not artifact_ids:
            return {}
        query = sa.select(self.t.event.c.artifact_id, self.t.event.c.execution_id).where(
            self.t.event.c.artifact_id.in_(artifact_ids), self.t.event.c.type == EVENT_OUTPUT
        )
        pairs = [(r.artifact_id, r.execution_id) for r in self._rows(query)]
        cached = {e.id: e for e in self.executions(sorted({e for _, e in pairs})) if e.state == "CACHED"}
        out: dict[int, list[Execution]] = {}
        for artifact_id, execution_id in sorted(pairs, key=lambda pair: pair[1]):
            if execution_id in cached:
                out.setdefault(artifact_id, []).append(cached[execution_id])
        return out

    def pipeline_executions_like(self, pipeline: str, type_part: str) -> list[Execution]:
        """Executions whose type name contains ``type_part`` (e.g. rollbacks) recorded for this pipeline.

        A rollback may be recorded outside a run, so both the pipeline context and the ``pipeline`` property
        count.
        """
        ctx = self._context_id(PIPELINE_CONTEXT, pipeline)
        in_ctx = sa.select(self.t.association.c.execution_id).where(self.t.association.c.context_id == (ctx or -1))
        with_prop = sa.select(self.t.execution_prop.c.execution_id).where(
            self.t.execution_prop.c.name == "pipeline", self.t.execution_prop.c.string_value == pipeline
        )
        query = (
            sa.select(self.t.execution.c.id)
            .join(self.t.type, self.t.type.c.id == self.t.execution.c.type_id)
            .where(
                self.t.type.c.type_kind == TYPE_KIND["execution"],
                self.t.type.c.name.contains(type_part, autoescape=True),
                sa.or_(self.t.execution.c.id.in_(in_ctx), self.t.execution.c.id.in_(with_prop)),
            )
        )
        return self.executions(sorted(r.id for r in self._rows(query)))
