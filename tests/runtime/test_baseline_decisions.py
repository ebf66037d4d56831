"""Overrides and baseline resets against a real MLMD (SQLite): what is recorded, and the baseline it leaves.

The lineage is written with the runtime's own client, as the Trainer and the Evaluator record it: per span, a
Model under ``<root>/<pipeline>/trainer/<execution>/model`` and the Evaluator's ModelBlessing about it. The
baseline is then resolved by the Evaluator's own strategies for a candidate of a given span.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, ArtifactRef, StageRequest, runtime_command
from airflow_provider_mlpipe.runtime.metadata import baseline_decisions as decisions
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
from airflow_provider_mlpipe.runtime.metadata.resolvers import STRATEGIES

pytestmark = pytest.mark.runtime
PIPELINE = "churn"


class Lineage:
    """Models and verdicts of one pipeline, recorded through the runtime's client."""

    def __init__(self, root: Path, pipeline: str = PIPELINE) -> None:
        self.root, self.pipeline = root, pipeline
        self.mlmd = root / "mlmd.sqlite"
        self.client = MetadataClient({"backend": "sqlite", "path": str(self.mlmd)})
        self.client.register_types()

    def _execution(self, run_id: str, node: str, execution_type: str, inputs: list[ArtifactRef], outputs: Any) -> None:
        contexts = self.client.lineage_contexts(self.pipeline, run_id, node)
        execution_id = self.client.start_execution(execution_type, contexts, inputs, {"run_id": run_id})
        refs = {slot: [ref] for slot, ref in outputs(execution_id).items()}
        self.client.finish_execution(execution_id, contexts, refs, {})

    def train(self, span: int) -> ArtifactRef:
        run_id = f"run-{span}"
        made: dict[str, ArtifactRef] = {}

        def model(execution_id: int) -> dict[str, ArtifactRef]:
            uri = self.root / "root" / self.pipeline / "trainer" / str(execution_id) / "model"
            uri.mkdir(parents=True)
            made["model"] = ArtifactRef("Model", str(uri), None, "model", {"span": span})
            return made

        self._execution(run_id, "trainer", "mlpipe.Trainer", [], model)
        return made["model"]

    def evaluate(self, model: ArtifactRef, blessed: bool, baseline: ArtifactRef | None = None) -> ArtifactRef:
        run_id = f"run-{model.properties['span']}"
        made: dict[str, ArtifactRef] = {}

        def blessing(execution_id: int) -> dict[str, ArtifactRef]:
            uri = self.root / "root" / self.pipeline / "evaluator" / str(execution_id) / "blessing"
            props = {"blessed": int(blessed), "current_model_id": model.id, "span": model.properties["span"]}
            if baseline is not None:
                props["baseline_model_id"] = baseline.id
            props["reason"] = "accuracy on Overall: 0.61 fails lower_bound 0.7" if not blessed else "All passed."
            made["blessing"] = ArtifactRef("ModelBlessing", str(uri), None, "blessing", props)
            return made

        self._execution(run_id, "evaluator", "mlpipe.Evaluator", [model], blessing)
        return made["blessing"]

    def baseline_for(self, candidate: ArtifactRef) -> tuple[int | None, int | None]:
        """(the baseline model id, the reset in effect) the Evaluator resolves for this candidate."""
        request = StageRequest(
            self.pipeline, str(self.root / "root"), "evaluator", "evaluator", "next", inputs={"model": [candidate]}
        )
        base = STRATEGIES["latest_blessed_model"](self.client, request, "Model", [candidate.id])
        reset = STRATEGIES["baseline_reset"](self.client, request, "BaselineReset", [candidate.id])
        return (base.id if base else None, reset.id if reset else None)


@pytest.fixture
def lineage(tmp_path: Path) -> Lineage:
    return Lineage(tmp_path)


def three_spans(lineage: Lineage) -> tuple[ArtifactRef, ArtifactRef, ArtifactRef]:
    """Span 1 blessed; span 2 NOT_BLESSED against it; span 3's model is the next candidate."""
    m1, m2, m3 = (lineage.train(s) for s in (1, 2, 3))
    lineage.evaluate(m1, True)
    lineage.evaluate(m2, False, baseline=m1)
    return m1, m2, m3


def test_an_override_makes_the_overridden_model_the_next_baseline(lineage: Lineage) -> None:
    m1, m2, m3 = three_spans(lineage)
    assert lineage.baseline_for(m3) == (m1.id, None)

    summary = decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "labels were re-coded", "alice")

    assert lineage.baseline_for(m3) == (m2.id, None)
    assert summary["model_id"] == m2.id and summary["user"] == "alice" and summary["superseded_by"] is None
    [blessing] = lineage.client.store.get_artifacts_by_id([summary["artifact_id"]])
    props = lineage.client.artifact_ref(blessing).properties
    assert props["blessed"] == 1 and props["overridden"] == 1 and props["current_model_id"] == m2.id
    assert props["override_user"] == "alice" and props["override_reason"] == "labels were re-coded"
    assert props["span"] == 2
    # Beside the pipeline's own artifacts, published with the TFX marker file and the verdict document.
    folder = lineage.root / "root" / PIPELINE / "override" / str(summary["execution_id"]) / "blessing"
    assert blessing.uri == str(folder)
    assert (Path(blessing.uri) / "BLESSED").read_text() == "Blessed by override (alice): labels were re-coded\n"
    document = json.loads((Path(blessing.uri) / "blessing.json").read_text())
    assert document["blessed"] is True and "fails lower_bound 0.7" in document["overridden_reason"]
    [execution] = lineage.client.store.get_executions_by_id([summary["execution_id"]])
    inputs = {e.artifact_id for e in lineage.client.store.get_events_by_execution_ids([execution.id]) if e.type == 3}
    assert inputs == {m2.id, summary["overridden_blessing_id"]}
    assert lineage.client.artifact_ref(blessing).properties["overridden_blessing_id"] != summary["artifact_id"]
    # A candidate of span 2 itself, or earlier, still compares with what came before it.
    assert lineage.baseline_for(m1) == (None, None)


def test_a_run_id_names_the_model_its_evaluator_judged(lineage: Lineage) -> None:
    _, m2, m3 = three_spans(lineage)
    summary = decisions.bless_by_override(lineage.client, PIPELINE, "run-2", "accepted by the review board", "bob")
    assert summary["model_id"] == m2.id
    assert lineage.baseline_for(m3)[0] == m2.id


def test_an_override_of_an_older_span_says_which_model_stays_the_baseline(lineage: Lineage) -> None:
    m1, m2, m3 = three_spans(lineage)
    lineage.evaluate(m3, True, baseline=m1)
    summary = decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "fine after all", "carol")
    assert summary["superseded_by"] == m3.id


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("999", "There is no artifact 999 in ML Metadata."),
        ("first", "'first' is neither a Model artifact id nor a run id of the pipeline churn."),
        ("m1", "Model {m1} is already blessed (by the Evaluator, ModelBlessing {b1})."),
        ("m3", "Model {m3} has no verdict from an Evaluator, so there is nothing to override; evaluate it first."),
        ("b2", "Artifact {b2} is a ModelBlessing, not a Model; give a Model's id or a run id."),
        ("other", "Model {other} belongs to the pipeline other, not to churn."),
    ],
)
def test_what_cannot_be_blessed_is_refused_with_a_sentence(lineage: Lineage, model: str, message: str) -> None:
    m1, m2, m3 = (lineage.train(s) for s in (1, 2, 3))
    b1 = lineage.evaluate(m1, True)
    b2 = lineage.evaluate(m2, False, baseline=m1)
    other = Lineage(lineage.root, "other").train(1)
    ids = {"m1": m1.id, "m3": m3.id, "b1": b1.id, "b2": b2.id, "other": other.id}
    before = len(lineage.client.store.get_executions())
    with pytest.raises(decisions.DecisionError) as raised:
        decisions.bless_by_override(lineage.client, PIPELINE, str(ids.get(model, model)), "because", "dave")
    assert str(raised.value) == message.format(**ids)
    assert len(lineage.client.store.get_executions()) == before  # nothing recorded


def test_an_overridden_model_cannot_be_blessed_twice_and_a_reason_is_required(lineage: Lineage) -> None:
    _, m2, _ = three_spans(lineage)
    with pytest.raises(decisions.DecisionError, match="A reason is required"):
        decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "  ", "erin")
    summary = decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "ok", "erin")
    with pytest.raises(decisions.DecisionError) as raised:
        decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "again", "erin")
    blessing_id = summary["artifact_id"]
    assert str(raised.value) == f"Model {m2.id} is already blessed (by override, ModelBlessing {blessing_id})."


def test_a_reset_leaves_later_spans_without_a_baseline_until_a_model_is_blessed_after_it(lineage: Lineage) -> None:
    m1, m2, m3 = three_spans(lineage)
    lineage.evaluate(m2, True, baseline=m1)  # span 2 re-evaluated and blessed before the reset
    assert lineage.baseline_for(m3) == (m2.id, None)

    summary = decisions.reset_baseline(lineage.client, PIPELINE, "the label was redefined", "frank")

    # From the newest trained span (3) on: span 3 has no baseline, and the reset is named as the reason.
    assert summary["span"] == 3 and summary["user"] == "frank"
    assert lineage.baseline_for(m3) == (None, summary["artifact_id"])
    # Earlier spans keep their own predecessors (a backfill or a re-run after the reset).
    assert lineage.baseline_for(m2) == (m1.id, None)
    reset_file = json.loads((Path(summary["uri"]) / "reset.json").read_text())
    assert reset_file["reason"] == "the label was redefined" and reset_file["span"] == 3

    # Span 3 judged on value thresholds only and blessed: the baseline of span 4 again.
    lineage.evaluate(m3, True)
    m4 = lineage.train(4)
    assert lineage.baseline_for(m4) == (m3.id, None)


def test_a_reset_from_an_explicit_span_and_an_override_after_it(lineage: Lineage) -> None:
    _, m2, m3 = three_spans(lineage)
    decisions.reset_baseline(lineage.client, PIPELINE, "new signature from span 2", "grace", from_span=2)
    assert lineage.baseline_for(m3)[0] is None
    # Span 2's NOT_BLESSED model blessed by override after the reset is of the reset's span: the baseline again.
    decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "the new signature's first model", "grace")
    assert lineage.baseline_for(m3) == (m2.id, None)


def test_a_reset_needs_a_model_and_a_reason(lineage: Lineage) -> None:
    with pytest.raises(decisions.DecisionError) as raised:
        decisions.reset_baseline(lineage.client, PIPELINE, "why not", "heidi")
    assert str(raised.value) == "The pipeline churn has no model in ML Metadata yet, so it has no baseline to reset."
    lineage.train(1)
    with pytest.raises(decisions.DecisionError, match="A reason is required"):
        decisions.reset_baseline(lineage.client, PIPELINE, "", "heidi")


def runtime(lineage: Lineage, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps({"backend": "sqlite", "path": str(lineage.mlmd)})}
    command = runtime_command(sys.executable, *args)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_the_runtime_commands_print_a_summary_or_one_failure_sentence(lineage: Lineage) -> None:
    _, m2, m3 = three_spans(lineage)
    proc = runtime(lineage, "bless", PIPELINE, "--model", str(m2.id), "--reason", "re-coded", "--user", "ivan")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["model_id"] == m2.id
    assert lineage.baseline_for(m3)[0] == m2.id

    again = runtime(lineage, "bless", PIPELINE, "--model", str(m2.id), "--reason", "twice", "--user", "ivan")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith(f"{FAILURE_PREFIX}Model {m2.id} is already blessed")

    reset = runtime(lineage, "baseline-reset", PIPELINE, "--reason", "new label", "--user", "ivan")
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout.strip().splitlines()[-1])["span"] == 3


def test_retention_never_deletes_a_reset_and_keeps_an_overridden_baseline(lineage: Lineage) -> None:
    import datetime as dt

    from airflow_provider_mlpipe.runtime.retention.gc import collect
    from airflow_provider_mlpipe.runtime.retention.plan import RetentionPolicy

    _, m2, _ = three_spans(lineage)
    override = decisions.bless_by_override(lineage.client, PIPELINE, str(m2.id), "accepted", "judy")
    reset = decisions.reset_baseline(lineage.client, PIPELINE, "old decision", "judy", from_span=1)
    policy = RetentionPolicy(keep_spans=1, min_age=dt.timedelta(0))
    plan = collect(lineage.client, PIPELINE, str(lineage.root / "root"), [], policy, dry_run=True)
    deleted = {entry.id for entry in plan.delete}
    assert deleted  # span 1's lineage goes
    assert reset["artifact_id"] not in deleted  # a reset of span 1 still decides later baselines
    assert not {m2.id, override["artifact_id"], override["overridden_blessing_id"]} & deleted  # the baseline's


@pytest.mark.parametrize(("decision", "baseline"), [("reject", 1), ("approve", 2)])
def test_a_model_a_reviewer_rejected_is_never_the_next_baseline(lineage: Lineage, decision: str, baseline: int) -> None:
    from airflow_provider_mlpipe.runtime.metadata.gate_record import APPROVAL_GATE, record_gate_decision

    m1, m2, m3 = (lineage.train(s) for s in (1, 2, 3))
    lineage.evaluate(m1, True)
    verdict = lineage.evaluate(m2, True, baseline=m1)
    record_gate_decision(
        lineage.client, PIPELINE, "run-2", "approval_gate", APPROVAL_GATE, decision, "reviewed by a person",
        verdict.id, model_artifact_id=m2.id, details={"approver": "alice"},
    )  # fmt: skip
    # The Evaluator blessed span 2, but a rejected model is not the bar span 3 must clear.
    assert lineage.baseline_for(m3)[0] == {1: m1.id, 2: m2.id}[baseline]
