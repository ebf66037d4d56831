"""From loaded YAML to a checked pipeline: pydantic validation, file checks and wiring, all as SpecErrors.

Nothing here imports user code: user modules are checked with ``ast`` (they import TensorFlow) and callbacks are
located with ``importlib.util.find_spec`` and read with ``ast`` as well. Notifier classes are imported
(spec/notify_rules.py): they are Airflow-side by definition, and their constructors are what is checked.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
import typing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_mlpipe.spec.errors import FieldPath, SpecError, SpecErrors, display_path, suggest
from airflow_provider_mlpipe.spec.graph import PipelineGraph, WiringError, build_graph
from airflow_provider_mlpipe.spec.loader import LoadedSpec, default_airflow_home, load_spec
from airflow_provider_mlpipe.spec.model import STAGE_MODELS, USER_MODULES, PipelineSpec
from airflow_provider_mlpipe.spec.notify_rules import notify_errors
from airflow_provider_mlpipe.spec.stage_rules import stage_errors
from airflow_provider_mlpipe.spec.tabular_rules import apply_evaluator_defaults, tabular_errors
from airflow_provider_mlpipe.stages.evaluator import KPI_FUNCTION

# How long gc assumes a stage without execution_timeout may still be writing its staging.
UNBOUNDED_STAGE_TIME = timedelta(days=1)
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a mapping",
    "model": "a mapping",
    "list": "a list",
    "date": "a date such as 2024-01-01",
    "datetime": "a date or timestamp such as 2024-01-01",
}
_PATTERN_HELP = {
    "name": "A pipeline name may hold letters, digits, '_', '.' and '-'.",
    "on_failure_callback": "Give a dotted path such as my_package.alerts.notify.",
    "on_success_callback": "Give a dotted path such as my_package.alerts.notify.",
    "args": "Beam arguments start with '--', e.g. --project=my-project.",
    "queue": "Give one queue name without commas or spaces, e.g. highmem (a worker serves it with -q highmem).",
}


@dataclass
class Pipeline:
    """A spec that passed every check, with paths resolved for the operators."""

    spec: PipelineSpec
    loaded: LoadedSpec
    base_dir: Path  # the pipeline folder handed to the runtime as spec_dir; user modules live under it
    graph: PipelineGraph
    pipeline_root: str
    stage_params: dict[str, dict[str, Any]]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def longest_stage_timeout(self) -> timedelta:
        """The longest a stage may run; a day for a stage without ``execution_timeout`` (gc's leftover age)."""
        spec = self.spec
        timeouts = [stage.execution_timeout or spec.execution_timeout for stage in spec.stages.values()]
        return max((t if t is not None else UNBOUNDED_STAGE_TIME for t in timeouts), default=UNBOUNDED_STAGE_TIME)

    @property
    def beam_args(self) -> list[str]:
        runner = [f"--runner={self.spec.beam.runner}"] if self.spec.beam.runner else []
        return [*runner, *self.spec.beam.args]


# ----- pydantic errors -> sentences ----------------------------------------------------------------------------
def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _keys_at(loc: FieldPath, kinds: dict[str, str]) -> list[str]:
    tp: Any = PipelineSpec
    for i, part in enumerate(loc):
        tp = _unwrap(tp)
        if i == 1 and loc[0] == "stages":
            tp = STAGE_MODELS.get(kinds.get(str(part), ""))
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            tp = info.annotation if info else None
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return []
        if tp is None:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _message(error: dict[str, Any], path: FieldPath, kinds: dict[str, str]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    key = path[-1] if path else ""
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if kind == "extra_forbidden":
        allowed = _keys_at(path[:-1], kinds)
        return f"Unknown key {key!r}.{suggest(str(key), allowed)} Allowed keys: {', '.join(allowed)}."
    if kind == "missing":
        return f"The required key {key!r} is missing."
    if kind == "literal_error":
        return f"Expected {ctx.get('expected')}, got {shown}."
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "more than"}.get(kind, "at most")
        limit = next(iter(ctx.values()), "")
        return f"Must be {bound} {limit}, got {shown}."
    if kind == "string_pattern_mismatch":
        field = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
        return f"Invalid value {shown}. {_PATTERN_HELP.get(field, 'It must match ' + str(ctx.get('pattern')))}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length", ctx.get("max_length"))
        return f"Needs {'at least' if kind == 'too_short' else 'at most'} {bound} item(s)."
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    for prefix, words in _TYPE_WORDS.items():
        if kind.startswith(prefix + "_") or kind == prefix:
            return f"Expected {words}, got {shown}."
    return f"{error['msg']}: got {shown}."


def _field_path(loc: tuple[Any, ...], kinds: dict[str, str]) -> FieldPath:
    path = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    if len(path) > 2 and path[0] == "stages" and path[2] == kinds.get(str(path[1])):
        del path[2]  # the tagged-union tag pydantic inserts
    return tuple(path)


_SHAPE_ERRORS = frozenset({"literal_error", "model_type", "dict_type", "string_type", "list_type"})


def _union_noise(errors: list[Any]) -> set[int]:
    """Errors of union members the value was plainly not meant for: with ``features: auto | {numeric: [...]}``,
    a mapping with a typo is reported by the mapping's model only, not also as "Expected 'auto'"."""
    members: dict[tuple[Any, ...], list[int]] = {}
    for i, error in enumerate(errors):
        for j, part in enumerate(error["loc"]):
            if isinstance(part, str) and ("[" in part or part.startswith("function-")):
                members.setdefault(tuple(error["loc"][:j]), []).append(i)
                break
    noise: set[int] = set()
    for indices in members.values():
        shape = [i for i in indices if errors[i]["type"] in _SHAPE_ERRORS]
        if len(shape) < len(indices):  # some member got far enough to find a real problem
            noise.update(shape)
        elif any(errors[i]["type"] == "literal_error" for i in shape):  # a word: say which words are allowed
            noise.update(i for i in shape if errors[i]["type"] != "literal_error")
    return noise


def _pydantic_errors(loaded: LoadedSpec, exc: ValidationError, kinds: dict[str, str]) -> list[SpecError]:
    out = []
    errors = exc.errors()
    noise = _union_noise(errors)
    for error in (e for i, e in enumerate(errors) if i not in noise):
        path = _field_path(error["loc"], kinds)
        out.append(loaded.error(path, _message(error, path, kinds)))
    return out


# ----- checks outside pydantic -----------------------------------------------------------------------------------
def _stage_kinds(loaded: LoadedSpec) -> dict[str, str]:
    """Fill ``kind`` from the stage name; unknown names need ``kind`` (typos get a suggestion)."""
    stages = loaded.data.get("stages")
    kinds: dict[str, str] = {}
    if not isinstance(stages, dict):
        return kinds
    for name, stage in stages.items():
        if stage is None:
            stage = stages[name] = {}
        if not isinstance(stage, dict):
            raise loaded.error(("stages", name), f"Expected a mapping of the stage's settings, got {stage!r}.")
        kind = stage.get("kind", name)
        if kind not in STAGE_MODELS:
            field: FieldPath = ("stages", name, "kind") if "kind" in stage else ("stages", name)
            hint = suggest(str(kind), STAGE_MODELS)
            extra = "" if "kind" in stage else " To add a stage under a new name, set its `kind`."
            raise loaded.error(field, f"Unknown stage {kind!r}.{hint} Known stages: {', '.join(STAGE_MODELS)}.{extra}")
        stage.setdefault("kind", kind)
        kinds[str(name)] = kind
    return kinds


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_callback(dotted: str) -> str | None:
    """None when ``module.attr`` can be found without importing the module, else the reason."""
    module, _, attr = dotted.rpartition(".")
    if module in sys.modules:
        return None if hasattr(sys.modules[module], attr) else f"The module {module!r} has no attribute {attr!r}."
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return f"The module {module!r} cannot be found ({exc})."
    if found is None:
        return f"The module {module!r} cannot be found on the Python path."
    if found.origin and found.origin.endswith(".py"):
        try:
            if attr not in top_level_names(Path(found.origin)):
                return f"The module {module!r} ({found.origin}) defines no {attr!r}."
        except SyntaxError as exc:
            return f"The module {module!r} has a syntax error on line {exc.lineno}: {exc.msg}."
    return None


def resolve_local(value: str, folder: Path) -> str:
    """A path relative to the spec folder made absolute; URIs (gs://...) and absolute paths stay as they are."""
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(str(folder / value))


def _inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def _spec_file(loaded: LoadedSpec, base: Path, field: FieldPath, value: str) -> tuple[Path, str]:
    """A file the runtime loads from spec_dir: must exist inside it. Returns (absolute, relative to spec_dir)."""
    path = Path(resolve_local(value, loaded.path.resolve().parent)).resolve()
    if not _inside(path, base):
        raise loaded.error(field, f"{value!r} lies outside the pipeline folder {base.name}/; keep user files there.")
    if not path.is_file():
        where = path.relative_to(base).as_posix()
        raise loaded.error(field, f"The file {value!r} does not exist (looked for {where} in {base.name}/).")
    return path, path.relative_to(base).as_posix()


def _user_module(loaded: LoadedSpec, base: Path, field: FieldPath, value: str, function: str) -> str:
    """A user module the runtime loads: inside the pipeline folder and defining ``function`` (read with ``ast``).
    Returns its path relative to spec_dir."""
    path, relative = _spec_file(loaded, base, field, value)
    try:
        names = top_level_names(path)
    except SyntaxError as exc:
        raise loaded.error(field, f"{path.name} has a syntax error on line {exc.lineno}.")
    if function not in names:
        raise loaded.error(field, f"{path.name} defines no top-level function {function!r}.")
    return relative


def _stage_params(loaded: LoadedSpec, spec: PipelineSpec, base: Path) -> dict[str, dict[str, Any]]:
    folder = loaded.path.resolve().parent
    out: dict[str, dict[str, Any]] = {}
    for name, stage in spec.stages.items():
        params = stage.params.model_dump(mode="json", exclude_none=True)
        prefix: FieldPath = ("stages", name, "params")
        if stage.kind in USER_MODULES and getattr(stage.params, "module_file", None):  # none: a built-in
            field = (*prefix, "module_file")
            params["module_file"] = _user_module(
                loaded, base, field, stage.params.module_file, USER_MODULES[stage.kind]
            )
        if stage.kind == "evaluator" and stage.params.kpi_module:
            module = stage.params.kpi_module
            params["kpi_module"] = _user_module(loaded, base, (*prefix, "kpi_module"), module, KPI_FUNCTION)
        if stage.kind == "schema_gen" and stage.params.schema_file:
            _, params["schema_file"] = _spec_file(loaded, base, (*prefix, "schema_file"), stage.params.schema_file)
        if stage.kind == "example_gen":
            source = params["input"]
            if bool(source.get("pattern")) == bool(source.get("splits")):
                raise loaded.error((*prefix, "input"), "Give exactly one of `pattern` or `splits`.")
            if "pattern" in source:
                source["pattern"] = resolve_local(source["pattern"], folder)
            if "splits" in source:
                source["splits"] = {k: resolve_local(v, folder) for k, v in source["splits"].items()}
        if stage.kind == "pusher":
            params["destination"] = resolve_local(params["destination"], folder)
            params = _retention_keep_versions(loaded, spec, name, params)
        if stage.kind == "example_validator" and "skew" in params:
            params["skew"]["serving_statistics"] = resolve_local(params["skew"]["serving_statistics"], folder)
        out[name] = params
    return out


def _retention_keep_versions(
    loaded: LoadedSpec, spec: PipelineSpec, name: str, params: dict[str, Any]
) -> dict[str, Any]:
    """``retention.keep_versions`` is every Pusher's ``keep_versions`` unless it sets the same one itself."""
    keep = spec.retention.keep_versions if spec.retention else None
    if keep is None:
        return params
    if params.get("keep_versions") not in (None, keep):
        raise loaded.error(
            ("stages", name, "params", "keep_versions"),
            f"keep_versions is {params['keep_versions']} here but retention.keep_versions is {keep}; "
            "set it in one place (retention.keep_versions applies to every pusher).",
        )
    return {**params, "keep_versions": keep}


def _semantic(loaded: LoadedSpec, spec: PipelineSpec) -> None:
    if spec.schedule is not None and spec.start_date is None:
        raise loaded.error(
            ("start_date",), "A scheduled pipeline needs a start_date, e.g. 2024-01-01.", at=("schedule",)
        )
    if spec.start_date and spec.end_date and str(spec.end_date) < str(spec.start_date):
        raise loaded.error(("end_date",), "end_date is before start_date.")
    for key in ("on_failure_callback", "on_success_callback"):
        dotted = getattr(spec, key)
        if dotted and (reason := check_callback(dotted)):
            raise loaded.error((key,), reason)
    if not spec.runtime.image and (pod := spec.runtime.pod_keys()):
        raise loaded.error(("runtime", pod[0]), f"runtime.{pod[0]} applies to pods only; set runtime.image too.")
    if spec.retention and spec.retention.cleanup_task and spec.runtime.image:
        raise loaded.error(
            ("retention", "cleanup_task"),
            "cleanup_task runs the local runtime and cannot run in runtime.image's pods yet; run `mlpipe gc "
            f"{spec.name}` from a host with the runtime instead.",
        )
    if spec.beam.runner and any(a.startswith("--runner") for a in spec.beam.args):
        raise loaded.error(("beam", "args"), "The runner is set twice: in beam.runner and in beam.args.")
    for gate in ("data_validation", "blessing"):
        config = getattr(spec.gates, gate)
        if config is not None and config.policy == "warn" and loaded.environment != "dev":
            raise loaded.error(
                ("gates", gate, "policy"),
                "The policy 'warn' is only allowed in the dev environment; use fail or skip, or move it to "
                "environments.dev.",
            )


def default_pipeline_root() -> str:
    return os.environ.get("MLPIPE_PIPELINE_ROOT") or os.path.join(default_airflow_home(), "mlpipe", "pipelines")


def validate(loaded: LoadedSpec, base_dir: str | Path, *, check_data: bool = False) -> Pipeline:
    """Raises SpecErrors with every problem pydantic finds, or the first later one.

    ``check_data`` (``mlpipe lint``, ``mlpipe init``) also reads a sample of the input data to check the built-in
    transform's features and label; DAG parsing does not, so a DAG never depends on today's data files."""
    base = Path(base_dir).resolve()
    try:
        kinds = _stage_kinds(loaded)
        try:
            spec = PipelineSpec.model_validate(loaded.data)
        except ValidationError as exc:
            raise SpecErrors(_pydantic_errors(loaded, exc, kinds)) from None
        _semantic(loaded, spec)
        apply_evaluator_defaults(loaded, spec)
        params = _stage_params(loaded, spec, base)
        if (
            problems := stage_errors(loaded, spec, params, base)
            + notify_errors(loaded, spec)
            + tabular_errors(loaded, spec, params, base, check_data)
        ):
            raise SpecErrors(problems)
        try:
            graph = build_graph(spec)
        except WiringError as exc:
            raise loaded.error(exc.path, exc.message) from None
    except SpecError as exc:
        raise SpecErrors([exc]) from None
    root = (
        resolve_local(spec.pipeline_root, loaded.path.resolve().parent)
        if spec.pipeline_root
        else default_pipeline_root()
    )
    return Pipeline(spec=spec, loaded=loaded, base_dir=base, graph=graph, pipeline_root=root, stage_params=params)


def load_pipeline(path: str | Path, *, base_dir: str | Path | None = None, environment: str | None = None) -> Pipeline:
    """Load and validate one spec; ``base_dir`` defaults to the parent of the spec's folder."""
    path = Path(path)
    return validate(load_spec(path, environment=environment), base_dir or path.resolve().parent.parent)


def discover(folder: str | Path) -> list[Path]:
    """Spec files under ``folder`` (recursively), in a stable order."""
    root = Path(folder)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_all(
    paths: list[Path],
    *,
    base_dir: str | Path,
    environment: str | None,
    only: str | None = None,
    check_data: bool = False,
) -> tuple[list[Pipeline], list[SpecErrors]]:
    """Every spec validated on its own; a pipeline name seen twice is an error on the second file.

    ``only`` (a dag id) skips the full validation of other specs: their name is read from the YAML only.
    """
    pipelines: list[Pipeline] = []
    errors: list[SpecErrors] = []
    owners: dict[str, str] = {}
    for path in paths:
        try:
            loaded = load_spec(path, environment=environment)
            name = loaded.data.get("name")
            if isinstance(name, str) and name in owners:
                raise SpecErrors(
                    [loaded.error(("name",), f"The pipeline name {name!r} is already used by {owners[name]}.")]
                )
            if isinstance(name, str):
                owners[name] = loaded.display
            if only is not None and name != only:
                continue
            pipelines.append(validate(loaded, base_dir, check_data=check_data))
        except SpecErrors as exc:
            exc.path = path
            errors.append(exc)
        except Exception as exc:  # a bug must still stay confined to its spec
            message = f"Validating the spec failed unexpectedly: {type(exc).__name__}: {exc}."
            errors.append(SpecErrors([SpecError(display_path(path), 1, "<spec>", message)], path))
    return pipelines, errors
