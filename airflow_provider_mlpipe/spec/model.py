"""The pipeline spec as pydantic v2 models: one YAML file -> one validated ``PipelineSpec``.

Every model forbids unknown keys. Stage ``params`` models live with their stage in ``airflow_provider_mlpipe.stages``.
Values that YAML users write in several shapes (schedules, durations) are parsed by one before-validator each, so a
bad value yields one sentence rather than one error per union member.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from airflow_provider_mlpipe.notifications.events import EVENTS
from airflow_provider_mlpipe.spec.errors import DATE_HELP
from airflow_provider_mlpipe.stages import all_stages

# ----- value types -------------------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*w)?\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")  # fmt: skip
_DURATION_KEYS = ("weeks", "days", "hours", "minutes", "seconds")
PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "weekday")
_CRON_RANGES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-6 or SUN-SAT")
_DURATION_HELP = 'Use a duration such as "1d", "6h", "90s", "1h30m" or a mapping such as {days: 1}.'
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["1d", "6h", "1h30m"]},
        {"type": "number", "minimum": 0, "description": "seconds"},
        {
            "type": "object",
            "properties": {k: {"type": "number", "minimum": 0} for k in _DURATION_KEYS},
            "additionalProperties": False,
        },
    ]
}


def _timedelta(value: Any, parts: dict[str, float]) -> timedelta:
    """``timedelta(**parts)`` with sentences for what it cannot hold (pydantic only turns ValueErrors into errors)."""
    if not all(math.isfinite(v) for v in parts.values()):
        raise ValueError(f"Invalid duration {value!r}: it must be a finite number. {_DURATION_HELP}")
    try:
        return timedelta(**parts)
    except OverflowError:
        raise ValueError(f"The duration {value!r} is too long; the longest is 999999999 days.") from None


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"Expected a duration, got {value!r}. {_DURATION_HELP}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"A duration cannot be negative, got {value}.")
        return _timedelta(value, {"seconds": value})
    if isinstance(value, dict):
        unknown = [k for k in value if k not in _DURATION_KEYS]
        bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, int | float) or v < 0]
        if unknown or bad or not value:
            raise ValueError(f"Invalid duration {value!r}. {_DURATION_HELP}")
        return _timedelta(value, {k: float(v) for k, v in value.items()})
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            return _timedelta(value, {k: float(v) for k, v in zip(_DURATION_KEYS, match.groups(), strict=True) if v})
    raise ValueError(f"Invalid duration {value!r}. {_DURATION_HELP}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]


def parse_date(value: Any) -> date | datetime | None:
    """A date or a timestamp, one sentence when it is neither (not one error per member of ``datetime | date``)."""
    if value is None or isinstance(value, date):  # a datetime is a date too; YAML built both already
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        shown = type(value).__name__ if isinstance(value, dict | list) else repr(value)
        raise ValueError(f"Expected a date, got {shown}. {DATE_HELP}")
    if not isinstance(value, str):  # a Unix timestamp is never what a spec means, 20240101 least of all
        if re.fullmatch(r"\d{8}", str(value)):
            digits = str(value)
            raise ValueError(f"Expected a date, got the number {value}; write {digits[:4]}-{digits[4:6]}-{digits[6:]}.")
        raise ValueError(f"Expected a date, got the number {value}. {DATE_HELP}")
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    reason = ""
    if ymd := re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        try:
            date(*map(int, ymd.groups()))
        except ValueError as exc:
            reason = f": {exc}"
    raise ValueError(f"Invalid date {value!r}{reason}. {DATE_HELP}")


Date = Annotated[
    datetime | date | None,
    BeforeValidator(parse_date),
    WithJsonSchema(
        {"anyOf": [{"format": "date-time", "type": "string"}, {"format": "date", "type": "string"}, {"type": "null"}]}
    ),
]


def _cron_problem(text: str) -> str:
    """Why a cron expression is invalid, naming the first field croniter refuses on its own."""
    from croniter import croniter  # an Airflow dependency; imported late to keep `import model` cheap

    fields = text.split()
    if len(fields) != 5:
        return f'it has {len(fields)} fields; a cron has five (minute hour day month weekday), e.g. "0 3 * * *"'
    for i, (field, meaning) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        alone = ["*"] * 5
        alone[i] = field
        if not croniter.is_valid(" ".join(alone)):
            return f"the {meaning} field {field!r} is not valid: it takes {_CRON_RANGES[i]}"
    return 'croniter refuses it; a cron is five fields (minute hour day month weekday), e.g. "0 3 * * *"'


class AssetSchedule(BaseModel):
    """Run when the listed assets are updated (all of them, or any of them)."""

    model_config = ConfigDict(extra="forbid")
    assets: list[str] = Field(min_length=1, description="Asset URIs, e.g. s3://bucket/table or a pipeline's model.")
    logic: Literal["all", "any"] = "all"


def parse_schedule(value: Any) -> str | timedelta | AssetSchedule | None:
    if value is None or isinstance(value, timedelta | AssetSchedule):
        return value
    if isinstance(value, list):
        value = {"assets": value}
    if isinstance(value, dict):
        if "assets" in value:
            return AssetSchedule.model_validate(value)
        return parse_duration(value)
    if isinstance(value, date):
        raise ValueError(
            f"Expected a cron expression, a preset, a duration or assets, got the date {value}. "
            'The first run\'s date is start_date; schedule says how often to run, e.g. "@daily".'
        )
    if not isinstance(value, str):
        raise ValueError(f"Expected a cron expression, a preset, a duration or assets, got {value!r}.")
    text = value.strip()
    if text.startswith("@"):
        if text not in PRESETS:
            close = [p for p in PRESETS if p.startswith(text[:3])]
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown schedule preset {text!r}.{hint} Presets: {', '.join(PRESETS)}.")
        return text
    if _DURATION.match(text) and any(_DURATION.match(text).groups()):  # type: ignore[union-attr]
        return parse_duration(text)
    from croniter import croniter  # an Airflow dependency; imported late to keep `import model` cheap

    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"Invalid cron expression {text!r}: {_cron_problem(text)}. "
            'Presets such as "@daily" and durations such as "6h" also work.'
        )
    return text


Schedule = Annotated[
    str | timedelta | AssetSchedule | None,
    BeforeValidator(parse_schedule),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "null"},
                {"type": "string", "description": 'A cron ("0 3 * * *"), a preset ("@daily") or a duration ("6h").'},
                _DURATION_SCHEMA["anyOf"][2],
                {
                    "type": "object",
                    "properties": {
                        "assets": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "logic": {"enum": ["all", "any"]},
                    },
                    "required": ["assets"],
                    "additionalProperties": False,
                },
                {"type": "array", "items": {"type": "string"}, "description": "Asset URIs (all of them)."},
            ]
        }
    ),
]
DottedPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")]
# A Celery queue name as `airflow celery worker --queues` takes it: no commas, no spaces.
QueueName = Annotated[str, Field(pattern=r"^[^,\s]+$", max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----- stages -------------------------------------------------------------------------------------------------
class _StageBase(_Model):
    enabled: bool = True
    inputs: dict[str, str] = Field(
        default_factory=dict, description='Explicit wiring: input slot -> "<stage>.<output slot>" (or "<stage>").'
    )
    enable_cache: bool | None = None
    retries: int | None = Field(None, ge=0)
    execution_timeout: Duration | None = None
    queue: QueueName | None = Field(None, description="The executor queue of this stage's task; default: the spec's.")


def _stage(kind: str, params: type[BaseModel], required: bool) -> type[_StageBase]:
    annotations = {"kind": Literal[kind], "params": params}  # type: ignore[valid-type]
    namespace: dict[str, Any] = {"__annotations__": annotations, "kind": kind, "__module__": __name__}
    if not required:
        namespace["params"] = Field(default_factory=params)
    name = "".join(p.title() for p in kind.split("_")) + "Stage"
    return type(name, (_StageBase,), namespace)


# Derived from the stage descriptions: one spec model per stage kind, and the function each user module defines.
STAGE_PARAMS: dict[str, tuple[type[BaseModel], bool]] = {
    name: (stage.params, stage.params_required) for name, stage in all_stages().items()
}
STAGE_MODELS: dict[str, type[_StageBase]] = {k: _stage(k, p, r) for k, (p, r) in STAGE_PARAMS.items()}
USER_MODULES: dict[str, str] = {name: s.user_function for name, s in all_stages().items() if s.user_function}


def _stage_kind(value: Any) -> str | None:
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


# A tagged union on `kind` (the loader fills `kind` from the stage name for the standard stages).
_TAGGED = tuple(Annotated[model, Tag(kind)] for kind, model in STAGE_MODELS.items())
StageSpec = Annotated[Union[_TAGGED], Discriminator(_stage_kind)]  # type: ignore[valid-type]  # noqa: UP007


# ----- gates, runtime, beam, params --------------------------------------------------------------------------
class _GateBase(_Model):
    policy: Literal["fail", "skip", "warn"] = "fail"
    deferrable: bool | None = Field(
        None,
        description="Wait on the triggerer. Unset: Airflow's [operators] default_deferrable, "
        "or no deferral with mode: reschedule.",
    )
    mode: Literal["poke", "reschedule"] = Field("poke", description="How the gate waits when it does not defer.")
    poke_interval: Duration = timedelta(seconds=10)
    timeout: Duration = timedelta(hours=1)

    @field_validator("mode")
    @classmethod
    def _mode_needs_no_deferral(cls, mode: str, info: ValidationInfo) -> str:
        # A deferred sensor waits on the triggerer, so Airflow would silently ignore mode: reschedule.
        if mode == "reschedule" and info.data.get("deferrable") is True:
            raise ValueError(
                "mode: reschedule cannot be combined with deferrable: true (a deferred gate waits on the "
                "triggerer and never reschedules). Set deferrable: false to reschedule, or drop mode to defer."
            )
        return mode


class DataValidationGate(_GateBase):
    ignore_features: list[str] = Field(default_factory=list)
    min_severity: Literal["WARNING", "ERROR"] = "WARNING"


class BlessingGate(_GateBase):
    pass


class ApprovalGate(_Model):
    """A person signs off before the push: Airflow's human-in-the-loop ApprovalOperator, under "Required actions"."""

    approvers: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Airflow user ids who may respond; empty: anyone allowed to act on the DAG's required actions. "
        "Airflow 3.3 assigns users, not roles.",
    )
    timeout: Duration | None = Field(
        timedelta(days=1), description="How long the request waits; then `default` is taken. null: wait forever."
    )
    default: Literal["approve", "reject"] = Field("reject", description="The outcome when the timeout passes.")
    on_reject: Literal["fail", "skip"] = Field(
        "skip", description="skip: withhold the push and end the run successfully; fail: fail the run."
    )


class GatesSpec(_Model):
    data_validation: DataValidationGate | None = None
    blessing: BlessingGate | None = None
    approval: ApprovalGate | None = None


class PodResources(_Model):
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)


class RuntimeSpec(_Model):
    """Where stages run: a local interpreter (``python``), or a Kubernetes pod from ``image`` (pod keys below)."""

    python: str | None = Field(None, description="Interpreter of the ML runtime (inside the image with `image`).")
    warm: bool | None = Field(
        None, description="Fork stages from the host's warm runtime; default [mlpipe] warm_runtime (on). Local only."
    )
    image: str | None = Field(None, description="Container image holding the runtime; runs each stage in a pod.")
    namespace: str | None = None
    service_account: str | None = None
    resources: PodResources | None = None
    node_selector: dict[str, str] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    image_pull_secrets: list[str] | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    env: dict[str, str] | None = Field(None, description="Plain variables for the pod (no secrets).")
    mlmd_secret: str | None = Field(None, description="Kubernetes Secret holding the MLMD connection JSON.")
    mlmd_secret_key: str | None = None
    gcp_secret: str | None = Field(None, description="Kubernetes Secret holding a GCP key file.")
    gcp_secret_key: str | None = None
    spec_dir: str | None = Field(None, description="The pipeline folder's path inside the image.")
    kubernetes_conn_id: str | None = None
    startup_timeout_seconds: int | None = Field(None, ge=1)

    def pod_keys(self) -> list[str]:
        """Keys set that only mean something for a pod."""
        local = ("python", "image", "warm")
        return [k for k, v in self.model_dump(exclude_none=True).items() if k not in local and v]


class BeamSpec(_Model):
    runner: str | None = Field(None, description="e.g. DirectRunner, DataflowRunner; becomes --runner=<runner>.")
    args: list[Annotated[str, Field(pattern=r"^--[A-Za-z]")]] = Field(default_factory=list)


class ParamSpec(_Model):
    default: Any = None
    type: str | list[str] | None = None
    description: str | None = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None


def _param_shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v if isinstance(v, dict) else {"default": v} for k, v in value.items()}
    return value


# ----- notifications ----------------------------------------------------------------------------------------
class NotifierSpec(_Model):
    """One Airflow notifier: its class and the arguments of its constructor."""

    notifier: str = Field(
        description="SmtpNotifier, SlackWebhookNotifier, SlackNotifier, or the dotted path of a BaseNotifier class."
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Constructor arguments. Strings are Jinja templates rendered with the task context and "
        "`mlpipe` (event, pipeline, run_id, decision, reason, url, subject, text, html). "
        "The message arguments (subject, html_content, text, message) default to mlpipe's message.",
    )


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


Notifiers = Annotated[list[NotifierSpec], BeforeValidator(_one_or_many)]
NotifySpec = type(
    "NotifySpec",
    (_Model,),
    {
        "__doc__": "Event -> the notifiers it sends to (one notifier or a list).",
        "__module__": __name__,
        "__annotations__": dict.fromkeys(EVENTS, Notifiers),
        **{event: Field(default_factory=list, description=meaning) for event, meaning in EVENTS.items()},
    },
)


class RetentionSpec(_Model):
    """How long intermediate artifacts and pushed versions stay; ``mlpipe gc`` and ``cleanup_task`` apply it."""

    keep_spans: int | None = Field(
        None, ge=1, description="Keep the intermediate artifacts of the newest N spans (and older ones still needed)."
    )
    keep_days: int | None = Field(None, ge=1, description="Keep the intermediate artifacts written in the last D days.")
    keep_versions: int | None = Field(
        None, ge=1, description="Keep the newest K pushed versions in serving; the Pusher's keep_versions default."
    )
    cleanup_task: bool = Field(
        False, description="End every run with a retention_gc task that applies this policy (after every stage)."
    )


# ----- the pipeline ------------------------------------------------------------------------------------------
class PipelineSpec(_Model):
    """One ML pipeline; becomes one Airflow DAG whose id is ``name``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=200)
    description: str = ""
    owner: str = "mlpipe"
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule = None
    start_date: Date = None
    end_date: Date = None
    catchup: bool = False
    max_active_runs: int = Field(1, ge=1)
    retries: int = Field(0, ge=0)
    retry_delay: Duration = timedelta(minutes=5)
    execution_timeout: Duration | None = None
    on_failure_callback: DottedPath | None = None
    on_success_callback: DottedPath | None = None
    params: Annotated[dict[str, ParamSpec], BeforeValidator(_param_shorthand)] = Field(default_factory=dict)
    pipeline_root: str | None = Field(
        None, description="Local path (relative to the spec) or gs://; $MLPIPE_PIPELINE_ROOT or AIRFLOW_HOME default."
    )
    mlmd_conn_id: str = "mlmd_default"
    queue: QueueName | None = Field(
        None,
        description="The executor queue of every task (CeleryExecutor workers started with --queues); "
        "stages may override. Default: Airflow's [operators] default_queue.",
    )
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    beam: BeamSpec = Field(default_factory=BeamSpec)
    enable_cache: bool = True
    stages: dict[str, StageSpec] = Field(min_length=1)
    gates: GatesSpec = Field(default_factory=GatesSpec)
    notify: NotifySpec = Field(default_factory=NotifySpec)  # type: ignore[valid-type]
    deadline: Duration | None = Field(
        None, description="A run not done this long after it was queued sends deadline_missed (DeadlineAlert)."
    )
    retention: RetentionSpec | None = None
