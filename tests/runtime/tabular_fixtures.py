"""Generated customer data and a Transform -> Trainer -> Evaluator run with the built-in tabular stages.

The rows carry an identifier, numerics with missing values (nulls in ExampleGen's Parquet), an always-present INT
and FLOAT column, a categorical with missing values and one rare value, and three labels made learnable from the
features: ``churned`` (0/1), ``segment`` (three age groups, some labels flipped) and ``spend`` (linear in income,
plan and age, plus noise); a few training rows have no segment or spend. Each kind gets the features and its own
label column, written as ExampleGen writes Examples, with a schema TFDV infers from the same rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS
from tests.runtime.model_fixtures import make_context, write_examples

ROWS = 600
FEATURES = ["customer_id", "age", "balance", "income", "tenure", "plan", "color"]
LABELS = {"binary": "churned", "multiclass": "segment", "regression": "spend"}


def customer_columns(rows: int = ROWS, seed: int = 0) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    balance = rng.normal(1000.0, 300.0, rows)  # always present, and no help to any label
    income = rng.normal(50.0, 15.0, rows)
    tenure = rng.integers(0, 20, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    color = rng.choice(["red", "green", "blue"], rows).astype(object)
    color[rng.random(rows) < 0.05] = None
    color[7] = "violet"  # seen once: a rare value
    plan_effect = {"basic": 0.8, "plus": 0.0, "pro": -0.8}
    color_effect = {"red": 1.0, "green": 0.0, "blue": -1.0, "violet": 0.0, None: 0.0}
    score = (
        1.2 * (income - 50.0) / 15.0
        - 1.0 * (tenure - 10.0) / 6.0
        + np.array([plan_effect[p] for p in plan])
        + np.array([color_effect[c] for c in color])
        + rng.normal(0.0, 0.6, rows)
    )
    segment = np.where(age < 35, "young", np.where(age < 55, "middle", "senior")).astype(object)
    flipped = rng.random(rows) < 0.08
    segment[flipped] = rng.choice(["young", "middle", "senior"], int(flipped.sum()))
    spend = 20.0 + 0.8 * income + np.array([{"basic": 0.0, "plus": 5.0, "pro": 15.0}[p] for p in plan])
    spend = spend - 0.2 * age + rng.normal(0.0, 4.0, rows)
    # Some training rows (write_examples sends every third row, from row 0, to eval) lack the label: the trainer
    # skips them.
    unlabelled = [i for i in range(rows) if i % 30 == 1]
    segment[unlabelled] = None
    spend = [None if i in unlabelled else float(v) for i, v in enumerate(spend)]
    return {
        "customer_id": [f"c{i:04d}" for i in range(rows)],
        "age": age.tolist(),
        "balance": balance.tolist(),
        "income": [None if rng.random() < 0.08 else float(v) for v in income],
        "tenure": [None if rng.random() < 0.05 else int(v) for v in tenure],
        "plan": plan.tolist(),
        "color": color.tolist(),
        "churned": (score > 0).astype(int).tolist(),
        "segment": segment.tolist(),
        "spend": spend,
    }


def customer_table(label: str, columns: dict[str, list[Any]] | None = None) -> pa.Table:
    columns = columns or customer_columns()
    return pa.table({name: columns[name] for name in [*FEATURES, label]})


def write_table_schema(root: Path, table: pa.Table) -> ArtifactRef:
    """The schema TFDV infers from the table's rows, as SchemaGen would."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(table.to_pandas()))
    root.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(root / "schema.pbtxt"))
    return ArtifactRef(type="Schema", uri=str(root), properties={"source": "inferred"})


def as_ref(output: Any, artifact_id: int | None = None) -> ArtifactRef:
    return ArtifactRef(type=output.type, uri=output.path, id=artifact_id, properties=dict(output.properties))


@dataclass
class TabularRun:
    label: str
    kind: str
    examples: ArtifactRef
    schema: ArtifactRef
    transform_graph: ArtifactRef
    transformed_examples: ArtifactRef
    model: ArtifactRef
    metrics: dict[str, Any]
    blessed: bool

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.model.uri, "Format-Serving")

    def tabular_config(self) -> dict[str, Any]:
        with open(os.path.join(self.transform_graph.uri, "mlpipe_tabular.json"), encoding="utf-8") as fh:
            return json.load(fh)

    def overall(self) -> dict[str, float]:
        return next(s["metrics"] for s in self.metrics["slices"] if s["slice"] == "Overall")


def run_tabular(
    tmp: Path, kind: str, features: Any, model: dict[str, Any], slices: list[list[str]] | None = None
) -> TabularRun:
    """Transform, Trainer and Evaluator executors on the generated rows with ``kind``'s label."""
    from airflow_provider_mlpipe.runtime.executors import evaluator, trainer, transform

    label = LABELS[kind]
    table = customer_table(label)
    examples = write_examples(tmp / "examples", table)
    schema = write_table_schema(tmp / "schema", table)
    transform_ctx = make_context(
        tmp / "transform",
        "transform",
        {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
        params={"features": features, "label": {"name": label, "kind": kind}},
        inputs={"examples": [examples], "schema": [schema]},
    )
    transform.execute(transform_ctx)
    graph, transformed = (
        as_ref(transform_ctx.output("transform_graph")),
        as_ref(transform_ctx.output("transformed_examples")),
    )
    trainer_ctx = make_context(
        tmp / "trainer",
        "trainer",
        {"model": "Model"},
        params={"model": model},
        inputs={"examples": [transformed], "schema": [schema], "transform_graph": [graph]},
    )
    trainer.execute(trainer_ctx)
    model_ref = as_ref(trainer_ctx.output("model"), artifact_id=1)
    evaluator_ctx = make_context(
        tmp / "evaluator",
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params={"label_key": f"{label}_xf", "metrics": DEFAULT_METRICS[kind], "slices": slices or [[]]},
        inputs={"examples": [examples], "model": [model_ref]},
        resolved={"baseline_model": None},
    )
    summary = evaluator.execute(evaluator_ctx)
    with open(os.path.join(evaluator_ctx.output("evaluation").path, "metrics.json"), encoding="utf-8") as fh:
        metrics = json.load(fh)
    return TabularRun(label, kind, examples, schema, graph, transformed, model_ref, metrics, bool(summary["blessed"]))
