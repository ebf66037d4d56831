"""Trainer: calls the user's ``run_fn(fn_args)`` (or the built-in tabular trainer's) and checks the exported model.

``fn_args`` (see ``model_fn_args.FnArgs``) carries the example file patterns, the schema, the transform graph,
``serving_model_dir`` (``Format-Serving`` inside the Model artifact), ``model_run_dir`` (logs), the step counts and
the hyperparameters: the spec's ``hyperparameters`` updated by ``dag_run.conf["stages"]["trainer"]
["hyperparameters"]``. A NaN loss or an exception in user code fails the stage with a clear message.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import traceback
from typing import Any

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io, schema_tables
from airflow_provider_mlpipe.runtime.training.fn_args import FnArgs
from airflow_provider_mlpipe.runtime.training.user_modules import builtin_digest, module_digest
from airflow_provider_mlpipe.stages.trainer import TrainerParams

log = logging.getLogger("mlpipe.runtime.trainer")

SERVING_DIR = "Format-Serving"
RUN_DIR = "model_run"
_PATTERNS = {"tfrecord_gzip": "*.tfrecord.gz", "parquet": "*.parquet"}


class UserCodeError(RuntimeError):
    """The user's run_fn raised; the message carries its traceback."""


def fingerprint(request: StageRequest, params: TrainerParams) -> str:
    if params.builtin:
        return builtin_digest(params.model_dump(mode="json"))
    return module_digest(params.module_file, request.spec_dir)


def _patterns(examples_uri: str, split: str, fmt: str) -> list[str]:
    pattern = os.path.join(example_io.split_dir(examples_uri, split), _PATTERNS[fmt])
    if not glob.glob(pattern):
        raise FileNotFoundError(f"No {_PATTERNS[fmt]} files for the {split!r} split in {examples_uri}.")
    return [pattern]


def build_fn_args(ctx: ExecutorContext) -> FnArgs:
    examples = ctx.input("examples")
    fmt = str(examples.properties.get("format") or "tfrecord_gzip")
    if fmt not in _PATTERNS:
        raise ValueError(f"The trainer reads Examples in {sorted(_PATTERNS)}, not {fmt!r}.")
    splits = schema_tables.split_names(examples.uri, examples.properties.get("split_names"))
    params: TrainerParams = ctx.params
    train_split, eval_split = params.train_split, params.eval_split
    for split in (train_split, eval_split):
        if split not in splits:
            raise ValueError(f"The examples have no {split!r} split (they have {splits}).")
    transform_graph = ctx.optional_input("transform_graph")
    model_dir = ctx.output("model").path
    return FnArgs(
        train_files=_patterns(examples.uri, train_split, fmt),
        eval_files=_patterns(examples.uri, eval_split, fmt),
        schema_path=os.path.join(ctx.input("schema").uri, schema_tables.SCHEMA_FILE),
        serving_model_dir=os.path.join(model_dir, SERVING_DIR),
        model_run_dir=os.path.join(model_dir, RUN_DIR),
        train_steps=params.train_steps,
        eval_steps=params.eval_steps,
        transform_output=transform_graph.uri if transform_graph else None,
        hyperparameters=_hyperparameters(params),
        examples_format=fmt,
        span=examples.properties.get("span"),
        tmp_dir=ctx.tmp_dir,
    )


def _hyperparameters(params: TrainerParams) -> dict[str, Any]:
    """The spec's hyperparameters; for the built-in model, its fields with the hyperparameters laid over them, so
    a run's ``hyperparameters`` override (``dag_run.conf``) tunes the built-in model too."""
    if not params.builtin or params.model is None:
        return dict(params.hyperparameters)
    return {**params.model.model_dump(mode="json"), **params.hyperparameters}


def _run_fn(ctx: ExecutorContext) -> tuple[Any, str]:
    """The run_fn to call and how to name it in messages: the user's module, or the built-in trainer."""
    module_file = ctx.params.module_file
    if module_file:
        return ctx.load_user_module(module_file, required=("run_fn",)).run_fn, f"run_fn in {module_file}"
    from airflow_provider_mlpipe.runtime.builtin import tabular_config, tabular_trainer

    transform_graph = ctx.optional_input("transform_graph")
    tabular_config.read(transform_graph.uri if transform_graph else None)  # fails early, saying what to wire
    return tabular_trainer.run_fn, "the built-in tabular trainer"


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    module_file = ctx.params.module_file
    run_fn, trainer_name = _run_fn(ctx)
    fn_args = build_fn_args(ctx)
    fn_args.add_guards()
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    steps = f"for {fn_args.train_steps} steps" if fn_args.train_steps else "until early stopping"
    log.info("Training with %s %s; hyperparameters %s.", trainer_name, steps, fn_args.hyperparameters)
    try:
        run_fn(fn_args)
    except Exception as exc:
        raise UserCodeError(
            f"{trainer_name} raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        ) from exc
    fn_args.check_guards()
    if not os.path.isfile(os.path.join(fn_args.serving_model_dir, "saved_model.pb")):
        raise UserCodeError(
            f"{trainer_name} returned without exporting a SavedModel to fn_args.serving_model_dir "
            f"({SERVING_DIR}/saved_model.pb is missing)."
        )
    # The model carries the raw schema its serving signature parses (Transform's, which may have relaxed some
    # features, else the Schema input), so the Evaluator encodes examples the way serving reads them.
    raw_schema = fn_args.schema_path
    if fn_args.transform_output:
        transform_schema = os.path.join(fn_args.transform_output, "metadata", schema_tables.SCHEMA_FILE)
        raw_schema = transform_schema if os.path.isfile(transform_schema) else raw_schema
    shutil.copyfile(raw_schema, os.path.join(ctx.output("model").path, schema_tables.SCHEMA_FILE))
    signatures = _signatures(fn_args.serving_model_dir)
    if "serving_default" not in signatures:
        raise UserCodeError(f"The exported model has no serving_default signature (it has {sorted(signatures)}).")
    props: dict[str, Any] = {"train_steps": fn_args.train_steps, "module_file": module_file}
    if not module_file:
        props["builtin"] = "tabular"
    if fn_args.span is not None:
        props["span"] = fn_args.span
    if fn_args.hyperparameters:
        props["hyperparameters"] = fn_args.hyperparameters
    ctx.output("model").properties.update(props)
    return {"train_steps": fn_args.train_steps, "hyperparameters": fn_args.hyperparameters, "signatures": signatures}


def _signatures(saved_model_dir: str) -> list[str]:
    """Signature names read from saved_model.pb, without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as fh:
        proto.ParseFromString(fh.read())
    return sorted({name for graph in proto.meta_graphs for name in graph.signature_def if not name.startswith("__")})
