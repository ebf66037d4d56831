"""What a garbage collection of one pipeline would delete and keep, and why: a plan read from MLMD, no writes.

Intermediate artifacts (Examples, statistics, schemas, anomalies, transform graphs, models, evaluations,
blessings) outside the retention window, the newest ``keep_spans`` spans or those written within ``keep_for``,
are deleted unless something still needs them:

- the **lineage of every model a kept pushed version holds** (the served one first): walking MLMD's events
  upstream from the model, through the wired inputs of each producing execution (trainer -> transform ->
  examples, schema -> statistics...), together with the evaluation and blessing that blessed it;
- the same for the **baseline**, the newest blessed model (``resolvers.blessed_baseline``), whose blessing the
  Evaluator's resolver reads;
- what the **next run** reads: the newest span's statistics (drift) and the newest schema (the schema diff);
- inputs and outputs of a **RUNNING** execution, and anything written less than ``min_age`` ago (the longest
  stage timeout), so a run in progress never loses an artifact between two of its tasks.

Resolved inputs (the previous span's statistics or schema, the baseline model an Evaluator compared with) are
references, not ingredients, so the walk does not follow them; otherwise every schema would keep its predecessor
forever. ``PushedModel`` records are never deleted here: the serving directory is pruned to ``keep_versions``;
nor are ``BaselineReset`` records, which decide baselines. A model blessed by override counts as blessed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.io.artifact_store import UnsafePathError, ensure_within
from airflow_provider_mlpipe.runtime.metadata.client import PIPELINE_CONTEXT, MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.metadata.resolvers import MODEL_BLESSING, span_of
from airflow_provider_mlpipe.runtime.retention.leftovers import Leftover, find_leftovers
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.stages import all_stages
from airflow_provider_mlpipe.stages.description import BASELINE_RESET
from airflow_provider_mlpipe.storage import Storage, join

PUSHED_MODEL = "PushedModel"
# Records gc never deletes: what was served, and a baseline reset (deleting it would bring the old baseline back).
RECORDS = (PUSHED_MODEL, BASELINE_RESET)
# An artifact MLMD still lists as LIVE, or one a killed gc had begun to delete (it finishes the job).
DELETABLE_STATES = (pb.Artifact.LIVE, pb.Artifact.MARKED_FOR_DELETION)


@dataclass(frozen=True)
class RetentionPolicy:
    keep_spans: int | None = None
    keep_for: dt.timedelta | None = None
    keep_versions: int | None = None
    min_age: dt.timedelta = dt.timedelta(days=1)


@dataclass
class ArtifactEntry:
    id: int
    type: str
    uri: str
    span: int | None
    run_id: str
    size: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass
class VersionEntry:
    destination: str
    version: int
    span: int | None
    size: int


@dataclass
class GcPlan:
    pipeline: str
    delete: list[ArtifactEntry] = field(default_factory=list)
    keep: list[ArtifactEntry] = field(default_factory=list)
    prune: list[VersionEntry] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def entry(e: Any) -> dict[str, Any]:
            return dict(e.__dict__)

        return {
            "pipeline": self.pipeline,
            "delete": [entry(e) for e in self.delete],
            "keep": [entry(e) for e in self.keep],
            "prune": [entry(e) for e in self.prune],
            "leftovers": [entry(e) for e in self.leftovers],
            "bytes": sum(e.size for e in (*self.delete, *self.prune, *self.leftovers)),
        }


def _resolved_slots() -> set[str]:
    return {item.name for stage in all_stages().values() for item in stage.resolved_inputs}


class Lineage:
    """Upstream walks over MLMD events, following wired inputs only (see the module notes)."""

    def __init__(self, client: MetadataClient) -> None:
        self.store = client.store
        self.resolved = _resolved_slots()

    def producers(self, artifact_ids: Iterable[int]) -> dict[int, list[int]]:
        """Artifact id -> the executions that output it (a cached execution outputs the same artifact again)."""
        out: dict[int, list[int]] = {}
        for event in self.store.get_events_by_artifact_ids(sorted(set(artifact_ids))):
            if event.type == pb.Event.OUTPUT:
                out.setdefault(event.artifact_id, []).append(event.execution_id)
        return out

    def makers(self, artifact_ids: Iterable[int]) -> set[int]:
        """The executions that made these artifacts; a CACHED execution only reused them, so it counts only
        when nothing else output them."""
        producers = self.producers(artifact_ids)
        states = {
            e.id: e.last_known_state
            for e in self.store.get_executions_by_id(sorted({e for ids in producers.values() for e in ids}))
        }
        makers: set[int] = set()
        for ids in producers.values():
            made = [e for e in ids if states.get(e) != pb.Execution.CACHED]
            makers |= set(made or ids)
        return makers

    def upstream(self, roots: Iterable[int]) -> set[int]:
        """``roots`` and every artifact they were made from."""
        seen: set[int] = set()
        frontier = set(roots)
        while frontier:
            seen |= frontier
            executions = self.makers(frontier)
            inputs = {
                event.artifact_id
                for event in self.store.get_events_by_execution_ids(sorted(executions))
                if event.type == pb.Event.INPUT and _slot(event) not in self.resolved
            }
            frontier = inputs - seen
        return seen


def _slot(event: pb.Event) -> str:
    return event.path.steps[0].key if event.path.steps else ""


def _by_span_then_id(artifact: pb.Artifact) -> tuple[int, int]:
    span = span_of(properties_of(artifact))
    return (span if span is not None else -1, artifact.id)


class Planner:
    def __init__(
        self,
        client: MetadataClient,
        pipeline: str,
        pipeline_root: str,
        destinations: list[str],
        policy: RetentionPolicy,
        now: dt.datetime | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.client, self.pipeline, self.policy = client, pipeline, policy
        self.root, self.destinations = pipeline_root, destinations
        self.now = now or dt.datetime.now(dt.UTC)
        self.storage = storage or Storage()
        self.lineage = Lineage(client)
        context = client.store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline)
        self.artifacts = client.store.get_artifacts_by_context(context.id) if context is not None else []
        self.executions = client.store.get_executions_by_context(context.id) if context is not None else []
        self.types = {t.id: t.name for t in client.store.get_artifact_types()}
        self.reasons: dict[int, list[str]] = {}

    def _protect(self, ids: Iterable[int], reason: str) -> None:
        for artifact_id in ids:
            self.reasons.setdefault(artifact_id, []).append(reason)

    def _of_type(self, name: str, states: tuple[int, ...] = (pb.Artifact.LIVE,)) -> list[pb.Artifact]:
        return [a for a in self.artifacts if self.types.get(a.type_id) == name and a.state in states]

    def _blessings_of(self, model_id: int) -> list[int]:
        """The Evaluator outputs (evaluation and blessing) of the executions that blessed this model."""
        blessings = [
            b
            for b in self._of_type(MODEL_BLESSING)
            if properties_of(b).get("current_model_id") == model_id and properties_of(b).get("blessed") == 1
        ]
        executions = {e for ids in self.lineage.producers(b.id for b in blessings).values() for e in ids}
        events = self.client.store.get_events_by_execution_ids(sorted(executions))
        return [e.artifact_id for e in events if e.type == pb.Event.OUTPUT]

    def _protect_model(self, model_id: int, reason: str) -> None:
        self._protect(self.lineage.upstream([model_id, *self._blessings_of(model_id)]), reason)

    def versions(self) -> list[VersionEntry]:
        """Protect the models of the versions that stay; return the versions ``keep_versions`` prunes."""
        pruned: list[VersionEntry] = []
        for destination in self.destinations:
            versions = model_versions.list_versions(destination)
            keep = self.policy.keep_versions
            doomed = versions[:-keep] if keep else []
            in_mlmd = model_versions.pushed_records(self.client, self.pipeline, destination)
            for version in versions:
                record = model_versions.read_version_record(destination, version) or {}
                if version in in_mlmd:  # a version without a record file: its PushedModel says what it holds
                    record = {**in_mlmd[version].properties, **record}
                if version in doomed:
                    size, _ = self.storage.usage(model_versions.version_uri(destination, version))
                    pruned.append(VersionEntry(destination, version, record.get("span"), size))
                    continue
                what = "the served model" if version == versions[-1] else "the model of pushed version"
                model_id = record.get("source_model_id")
                if isinstance(model_id, int):
                    self._protect_model(model_id, f"lineage of {what} {version} of {destination}")
        return pruned

    def baseline_and_next_run(self) -> None:
        blessed = {
            properties_of(b).get("current_model_id")
            for b in self._of_type(MODEL_BLESSING)
            if properties_of(b).get("blessed") == 1
        }
        models = [a for a in self._of_type("Model") if a.id in blessed]
        if models:
            baseline = max(models, key=_by_span_then_id)
            self._protect_model(baseline.id, f"lineage of the baseline model #{baseline.id} (the newest blessed)")
        for type_name, why in (("ExampleStatistics", "the next span's drift"), ("Schema", "the next schema diff")):
            live = self._of_type(type_name)
            if live:
                newest = max(live, key=_by_span_then_id)
                self._protect([newest.id], f"the newest {type_name}, read for {why}")

    def running_and_recent(self, candidates: list[pb.Artifact]) -> None:
        running = [e.id for e in self.executions if e.last_known_state == pb.Execution.RUNNING]
        for event in self.client.store.get_events_by_execution_ids(running):
            self._protect([event.artifact_id], f"used by the running execution {event.execution_id}")
        cutoff = (self.now - self.policy.min_age).timestamp() * 1000
        young = [a.id for a in candidates if a.create_time_since_epoch > cutoff]
        self._protect(young, f"written less than {self.policy.min_age} ago (a run may still read it)")

    def window(self, candidates: list[pb.Artifact], runs: dict[int, str]) -> None:
        policy = self.policy
        if policy.keep_spans is None and policy.keep_for is None:
            self._protect((a.id for a in candidates), "no keep_spans or keep_days is set")
            return
        # An artifact recorded without a span belongs to the span of its run's other artifacts.
        own = {a.id: span_of(properties_of(a)) for a in candidates}
        run_span: dict[str, int] = {}
        for artifact_id, span in own.items():
            if span is not None and artifact_id in runs:
                run_span[runs[artifact_id]] = max(span, run_span.get(runs[artifact_id], span))
        spans = {i: s if s is not None else run_span.get(runs.get(i, "")) for i, s in own.items()}
        newest = sorted({s for s in spans.values() if s is not None}, reverse=True)
        kept_spans = set(newest[: policy.keep_spans]) if policy.keep_spans is not None else set()
        self._protect((i for i, s in spans.items() if s in kept_spans), f"in the newest {policy.keep_spans} spans")
        if policy.keep_for is not None:
            cutoff = (self.now - policy.keep_for).timestamp() * 1000
            recent = [a.id for a in candidates if a.create_time_since_epoch > cutoff]
            self._protect(recent, f"written within keep_days ({policy.keep_for})")

    def _entry(self, artifact: pb.Artifact, runs: dict[int, str], sized: bool) -> ArtifactEntry:
        entry = ArtifactEntry(
            artifact.id,
            self.types.get(artifact.type_id, "?"),
            artifact.uri,
            span_of(properties_of(artifact)),
            runs.get(artifact.id, ""),
            reasons=self.reasons.get(artifact.id, []),
        )
        if sized:
            entry.size, _ = self.storage.usage(artifact.uri)
        return entry

    def _inside_pipeline(self, artifact: pb.Artifact) -> bool:
        try:
            ensure_within(join(self.root, self.pipeline), artifact.uri)
        except UnsafePathError:
            return False
        return True

    def plan(self) -> GcPlan:
        plan = GcPlan(self.pipeline)
        candidates = [
            a
            for a in self.artifacts
            if a.state in DELETABLE_STATES and self.types.get(a.type_id) not in RECORDS and self._inside_pipeline(a)
        ]
        plan.prune = self.versions()
        self.baseline_and_next_run()
        self.running_and_recent(candidates)
        runs = self._run_ids(candidates)
        self.window(candidates, runs)
        for artifact in sorted(candidates, key=lambda a: a.id):
            kept = artifact.id in self.reasons and artifact.state == pb.Artifact.LIVE
            (plan.keep if kept else plan.delete).append(self._entry(artifact, runs, sized=not kept))
        plan.leftovers = find_leftovers(
            self.client, self.pipeline, self.root, self.destinations, self.policy.min_age, self.now, self.storage
        )
        return plan

    def _run_ids(self, artifacts: list[pb.Artifact]) -> dict[int, str]:
        """The run that first produced each artifact (a cache hit in a later run reuses it)."""
        executions = {e.id: e for e in self.executions}
        runs: dict[int, str] = {}
        for artifact_id, producer_ids in self.lineage.producers(a.id for a in artifacts).items():
            first = executions.get(min(producer_ids))
            if first is not None:
                runs[artifact_id] = str(properties_of(first).get("run_id", ""))
        return runs
