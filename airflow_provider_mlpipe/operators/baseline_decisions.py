"""Overrides and baseline resets from the Airflow side: one launch and one run for the CLI and the UI alike.

The decision itself is recorded by the runtime (``runtime/metadata/baseline_decisions.py``), which owns MLMD;
this module builds its command line and environment, runs it, and turns its output into a summary or the
runtime's own one-sentence error.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_mlpipe.operators.launch import runtime_env
from airflow_provider_mlpipe.operators.rollback import last_json_line
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, runtime_command

Action = Literal["bless", "baseline-reset"]
DECISION_TIMEOUT_S = 300


@dataclass
class DecisionOutcome:
    """What the runtime said: its JSON summary on success, else its failure sentence (``error``)."""

    command: list[str]
    returncode: int
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.summary)


def decision_launch(
    action: Action,
    pipeline: str,
    *,
    reason: str,
    user: str,
    model: str | None = None,
    from_span: int | None = None,
    mlmd_conn_id: str | None,
    runtime_python: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The runtime's argv and environment (the MLMD connection's config) for an override or a reset."""
    args = [pipeline, "--reason", reason, "--user", user]
    if action == "bless":
        if not model:
            raise ValueError("An override needs the model to bless.")
        args += ["--model", model]
    elif from_span is not None:
        args += ["--from-span", str(from_span)]
    command = runtime_command(resolve_runtime_python(runtime_python), action, *args)
    return command, runtime_env(mlmd_conn_id)


def run_decision(command: list[str], env: dict[str, str], cwd: str | None = None) -> DecisionOutcome:
    """Run the runtime's ``bless`` or ``baseline-reset`` and read its answer."""
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=DECISION_TIMEOUT_S, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DecisionOutcome(command, 1, error=f"The runtime could not be run: {type(exc).__name__}: {exc}")
    summary = last_json_line(proc.stdout) if proc.returncode == 0 else {}
    if proc.returncode == 0 and summary:
        return DecisionOutcome(command, 0, summary)
    failures = [line for line in proc.stderr.splitlines() if line.startswith(FAILURE_PREFIX)]
    # The runtime's own sentence, without the stage-protocol prefix meant for Airflow; else the tail of its output.
    error = failures[-1][len(FAILURE_PREFIX) :] if failures else (proc.stderr or proc.stdout)[-4000:].strip()
    return DecisionOutcome(command, proc.returncode or 1, {}, error)


def airflow_home_cwd() -> str | None:
    """Relative paths resolve as Airflow's do: from ``$AIRFLOW_HOME`` when it exists."""
    home = os.environ.get("AIRFLOW_HOME")
    return home if home and os.path.isdir(home) else None


def describe(action: Action, pipeline: str, summary: dict[str, Any]) -> str:
    """One line for people: what was recorded, and what it means for the next run."""
    execution = f"MLMD execution {summary.get('execution_id')}"
    if action == "bless":
        span = f" (span {summary['span']})" if summary.get("span") is not None else ""
        line = (
            f"Blessed model {summary.get('model_id')}{span} of {pipeline} by override, recorded as {execution}: "
            f"it is the baseline of the next run"
        )
        later = summary.get("superseded_by")
        if later is not None:
            line += f" of its span; later spans compare with model {later}, which is of a later span and blessed"
        return line + "."
    span = f" from span {summary['span']}" if summary.get("span") is not None else ""
    return (
        f"Reset the baseline of {pipeline}{span}, recorded as {execution}: the next run is judged on value "
        "thresholds only, and the next blessed model becomes the baseline again."
    )
