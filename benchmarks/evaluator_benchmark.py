"""Evaluator's fast engine against TFMA's ``run_model_analysis``: a binary classifier and a regressor, 1M rows each.

Data: the seeded taxi-like table of ``benchmarks/datagen.py`` plus two label columns, written as ExampleGen would
(``Split-eval/data-*.parquet``, four shards):

- ``rated_five_stars`` (binary, int 0/1): a seeded draw whose odds rise with the fare, are higher at night and
  differ by company. The model sees the fare, the hour and the company but not the draw, so its AUC is realistic
  (about 0.8). The table's own ``tips`` would not do: they follow the payment type alone, which makes a label
  ``tips > 0`` either perfectly predictable (with the payment type as a feature) or not at all (without it).
- ``fare_tens`` (regression, float): the fare in tens of dollars, from the trip's miles, seconds, hour and company.
  Its scale is deliberate. Keras metrics (``RootMeanSquaredError`` here) keep their sums in float32, whose
  rounding, summed over 1M rows in a different order or batching, is about 1e-7 of the value. With values of
  order 1 that stays within the 1e-6 absolute tolerance below; the fare in dollars (squared errors of order 10)
  would exceed it without either side being wrong.

Models: small Keras networks (sigmoid output for the binary one, linear for the regressor) trained once on a
separate seeded sample, exported with a ``serving_default`` signature over serialized ``tf.Example``s. Data and
models are cached under ``benchmarks/.data/``.

Evaluation: Overall and per ``company`` (41 slices). Binary: ExampleCount, AUC, AUCPrecisionRecall, Precision,
Recall, BinaryAccuracy, Calibration. Regression: ExampleCount, MeanSquaredError, MeanAbsoluteError,
RootMeanSquaredError. Each metric has a value threshold, so the blessing is decided too.

Compared, per model, on the same rows with the same EvalConfig (``metric_config.tfma_eval_config`` of the same
params):

(a) the Evaluator stage's executor with ``engine: fast``, end to end: reading the Parquet split, encoding
    ``tf.Example``s, predicting, metrics per slice, thresholds, writing ``metrics.json`` and the blessing;
(b) ``tfma.run_model_analysis`` (Beam DirectRunner) on the same rows pre-encoded as a TFRecord of ``tf.Example``s,
    timed from building the shared model to its metrics output.

Not timed: generating the data, training the models, encoding the TFRecord for (b) (which favours TFMA: (a) pays
for its encoding), reading TFMA's metrics back, and the imports (warmed first). (a) keeps the best of ``--repeat``
runs (the machine is shared); (b) runs once.

The script fails (exit status 1) unless both sides report the same slices and metrics, every value within 1e-6
absolute (NaN only where both are NaN), and names every disagreeing slice, metric and the two values. It prints
``BENCH evaluator_vs_tfma ratio=<a/b> target=0.05`` and ``BENCH evaluator_regression_vs_tfma ratio=<a/b>
target=0.05``.

    .venv-runtime/bin/python benchmarks/evaluator_benchmark.py [--rows 1000000] [--repeat 2] [--model both]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.datagen import COMPANIES, DATA_DIR, make_table

TOLERANCE = 1e-6
TARGET = 0.05
COMPANY_BUCKETS = 64
NIGHT_HOURS = (20, 5)  # from 20:00 to 04:59
SliceMetrics = dict[str, dict[str, float]]


@dataclass(frozen=True)
class ModelTask:
    """One benchmarked model: its label, its features, how it is trained and what the Evaluator computes."""

    key: str
    bench_name: str
    label: str
    numeric_features: tuple[str, ...]
    activation: str
    loss: str
    output_name: str
    metrics: tuple[dict[str, Any], ...]

    def eval_params(self) -> dict[str, Any]:
        return {"label_key": self.label, "slices": [[], ["company"]], "metrics": list(self.metrics), "engine": "fast"}


BINARY = ModelTask(
    key="binary",
    bench_name="evaluator_vs_tfma",
    label="rated_five_stars",
    numeric_features=("fare", "trip_miles", "trip_seconds", "trip_start_hour"),
    activation="sigmoid",
    loss="binary_crossentropy",
    output_name="probabilities",
    metrics=(
        {"name": "auc", "class_name": "AUC", "threshold": {"lower_bound": 0.6}},
        {"name": "auc_pr", "class_name": "AUCPrecisionRecall", "threshold": {"lower_bound": 0.3}},
        {"name": "precision", "class_name": "Precision", "threshold": {"lower_bound": 0.1}},
        {"name": "recall", "class_name": "Recall", "threshold": {"lower_bound": 0.01}},
        {"name": "binary_accuracy", "class_name": "BinaryAccuracy", "threshold": {"lower_bound": 0.6}},
        {"name": "calibration", "class_name": "Calibration", "threshold": {"lower_bound": 0.5, "upper_bound": 1.5}},
    ),
)
REGRESSION = ModelTask(
    key="regression",
    bench_name="evaluator_regression_vs_tfma",
    label="fare_tens",
    numeric_features=("trip_miles", "trip_seconds", "trip_start_hour"),
    activation="linear",
    loss="mean_squared_error",
    output_name="predictions",
    metrics=(
        {"name": "mean_squared_error", "class_name": "MeanSquaredError", "threshold": {"upper_bound": 1.0}},
        {"name": "mean_absolute_error", "class_name": "MeanAbsoluteError", "threshold": {"upper_bound": 1.0}},
        {"name": "root_mean_squared_error", "class_name": "RootMeanSquaredError", "threshold": {"upper_bound": 1.0}},
    ),
)
TASKS = {task.key: task for task in (BINARY, REGRESSION)}


def with_labels(table: pa.Table, seed: int) -> pa.Table:
    """The table with both labels; the binary one is drawn from its own seeded generator."""
    rng = np.random.default_rng(seed + 1000)
    fare = table.column("fare").to_numpy()
    hour = table.column("trip_start_hour").to_numpy()
    night = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    # one effect per company, and none for a trip without a company (indexed one past the companies)
    company_effect = np.append(np.linspace(-1.0, 1.0, len(COMPANIES)), 0.0)
    company_index = pc.index_in(table.column("company"), value_set=pa.array(COMPANIES))
    effect = company_effect[company_index.fill_null(len(COMPANIES)).to_numpy()]
    logit = -1.0 + 0.2 * (fare - 12.0) + 0.8 * night + effect
    rated = rng.random(len(fare)) < 1.0 / (1.0 + np.exp(-logit))
    table = table.append_column(BINARY.label, pa.array(rated.astype(np.int64)))
    return table.append_column(REGRESSION.label, pc.divide(table.column("fare"), 10.0))


def ensure_examples(rows: int, seed: int, shards: int = 4) -> Path:
    root = DATA_DIR / f"evaluator-binary-regression-{rows}-seed{seed}" / "examples"
    if (root / "Split-eval").is_dir():
        return root
    table = with_labels(make_table(rows, seed), seed)
    tmp = root.with_name("examples.tmp")
    (tmp / "Split-eval").mkdir(parents=True, exist_ok=True)
    step = -(-rows // shards)
    for shard in range(shards):
        pq.write_table(table.slice(shard * step, step), str(tmp / "Split-eval" / f"data-{shard:05d}.parquet"))
    os.replace(tmp, root)
    return root


def ensure_model(root: Path, task: ModelTask, seed: int, train_rows: int = 50_000) -> Path:
    """Train (once) the task's small network; its serving signature parses raw ``tf.Example``s."""
    model_dir = root / f"model-{task.key}"
    if (model_dir / "Format-Serving" / "saved_model.pb").exists():
        return model_dir
    import tensorflow as tf
    import tf_keras as keras

    table = with_labels(make_table(train_rows, seed + 1), seed + 1)
    names = list(task.numeric_features)
    x = np.stack([table.column(c).to_numpy().astype(np.float32) for c in names], axis=1)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    company = np.array(table.column("company").fill_null("").to_pylist(), dtype=object).astype(bytes)
    buckets = tf.strings.to_hash_bucket_fast(company, COMPANY_BUCKETS).numpy()
    features = np.concatenate([(x - mean) / std, np.eye(COMPANY_BUCKETS, dtype=np.float32)[buckets]], axis=1)
    labels = table.column(task.label).to_numpy().astype(np.float32)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(features.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation=task.activation),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=task.loss)
    model.fit(features, labels, batch_size=256, epochs=3, verbose=0)
    integer_columns = {"trip_seconds", "trip_start_hour"}
    spec = {
        c: tf.io.FixedLenFeature([], tf.int64 if c in integer_columns else tf.float32, default_value=0) for c in names
    }
    spec["company"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    mean_t, std_t = tf.constant(mean), tf.constant(std)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, spec)
        numeric = tf.stack([tf.cast(parsed[c], tf.float32) for c in names], axis=1)
        hashed = tf.one_hot(tf.strings.to_hash_bucket_fast(parsed["company"], COMPANY_BUCKETS), COMPANY_BUCKETS)
        return {task.output_name: model(tf.concat([(numeric - mean_t) / std_t, hashed], axis=1))}

    tmp = root / f"model-{task.key}.tmp"
    model.save(str(tmp / "Format-Serving"), save_format="tf", signatures={"serving_default": serve})
    os.replace(tmp, model_dir)
    return model_dir


def run_stage(task: ModelTask, examples: Path, model_dir: Path, schema_dir: Path) -> tuple[float, SliceMetrics]:
    """(a): the Evaluator executor, end to end, as a pipeline runs it (no baseline yet)."""
    from airflow_provider_mlpipe.protocol import ArtifactRef
    from airflow_provider_mlpipe.runtime.context import ExecutorContext, OutputArtifact
    from airflow_provider_mlpipe.runtime.executors import evaluator
    from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams

    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-eval-") as tmp:
        outputs = {}
        for slot, kind in (("evaluation", "ModelEvaluation"), ("blessing", "ModelBlessing")):
            os.makedirs(os.path.join(tmp, slot))
            outputs[slot] = OutputArtifact(type=kind, path=os.path.join(tmp, slot))
        ctx = ExecutorContext(
            pipeline="bench",
            node_id="evaluator",
            run_id="bench",
            params=EvaluatorParams.model_validate(task.eval_params()),
            inputs={
                "examples": [ArtifactRef("Examples", str(examples), 1, properties={"format": "parquet"})],
                "model": [ArtifactRef("Model", str(model_dir), 2)],
                "schema": [ArtifactRef("Schema", str(schema_dir), 3)],
            },
            resolved={"baseline_model": None},
            outputs=outputs,
            tmp_dir=tmp,
        )
        started = time.perf_counter()
        summary = evaluator.execute(ctx)
        seconds = time.perf_counter() - started
        with open(os.path.join(tmp, "evaluation", "metrics.json"), encoding="utf-8") as fh:
            metrics = {s["slice"]: s["metrics"] for s in json.load(fh)["slices"]}
    if summary["engine"] != "fast":
        raise SystemExit(f"The {task.key} evaluation ran on the {summary['engine']} engine, not the fast one.")
    return seconds, metrics


def run_tfma(task: ModelTask, data_location: str, model_dir: Path) -> tuple[float, SliceMetrics]:
    """(b): TFMA with the EvalConfig the Evaluator itself would give it."""
    import tensorflow_model_analysis as tfma

    from airflow_provider_mlpipe.runtime.evaluation import metric_config, tfma_engine
    from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams

    spec = metric_config.eval_spec(EvaluatorParams.model_validate(task.eval_params()))
    eval_config = metric_config.tfma_eval_config(spec, has_transform=False, with_baseline=False)
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-tfma-") as out:
        started = time.perf_counter()
        shared = tfma.default_eval_shared_model(
            str(model_dir / "Format-Serving"), eval_config=eval_config, model_name=metric_config.CANDIDATE
        )
        tfma.run_model_analysis(
            eval_shared_model=shared, eval_config=eval_config, data_location=data_location, output_path=out
        )
        seconds = time.perf_counter() - started
        metrics = tfma_engine.read_metrics(out)[metric_config.CANDIDATE]
    return seconds, metrics


def disagreements(fast: SliceMetrics, reference: SliceMetrics) -> tuple[list[str], float]:
    """Every slice/metric where the two sides differ by more than ``TOLERANCE``, and the largest difference seen."""
    problems: list[str] = []
    largest = 0.0
    for name in sorted(set(fast) | set(reference)):
        if name not in fast or name not in reference:
            problems.append(f"slice {name!r} only in {'the fast engine' if name in fast else 'TFMA'}'s output")
            continue
        ours, theirs = fast[name], reference[name]
        for metric in sorted(set(ours) | set(theirs)):
            a, b = ours.get(metric), theirs.get(metric)
            if a is None or b is None:
                problems.append(f"{name} / {metric}: fast={a} tfma={b} (missing on one side)")
            elif math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    problems.append(f"{name} / {metric}: fast={a!r} tfma={b!r}")
            else:
                largest = max(largest, abs(a - b))
                if abs(a - b) > TOLERANCE:
                    problems.append(f"{name} / {metric}: fast={a!r} tfma={b!r} (differ by {abs(a - b):.3g})")
    return problems, largest


def prepare(rows: int, seed: int) -> tuple[Path, Path, Path]:
    """The cached eval split, its schema, and the same rows as an uncompressed TFRecord for TFMA (untimed)."""
    from airflow_provider_mlpipe.runtime.io import schema_tables

    examples = ensure_examples(rows, seed)
    root = examples.parent
    files = schema_tables.split_files(str(examples), "eval")
    schema_dir = root / "schema"
    if not (schema_dir / "schema.pbtxt").exists():
        schema_dir.mkdir(exist_ok=True)
        text = str(schema_tables.schema_from_parquet(files))
        (schema_dir / "schema.pbtxt").write_text(text, encoding="utf-8")
    tfrecord = root / "eval.tfrecord"
    if not tfrecord.exists():
        schema = schema_tables.load_schema(str(schema_dir))
        schema_tables.write_tfrecords(files, schema, str(tfrecord) + ".tmp", compress=False)
        os.replace(str(tfrecord) + ".tmp", tfrecord)
    return examples, schema_dir, tfrecord


def bench(task: ModelTask, args: argparse.Namespace, paths: tuple[Path, Path, Path]) -> tuple[float, list[str]]:
    """Times both sides for one model; returns the ratio a/b and the disagreements."""
    examples, schema_dir, tfrecord = paths
    model_dir = ensure_model(examples.parent, task, args.seed)
    stage_times = []
    for _ in range(args.repeat):
        seconds, fast_metrics = run_stage(task, examples, model_dir, schema_dir)
        stage_times.append(seconds)
        print(f"{task.key}: stage (engine: fast): {seconds:.2f} s", flush=True)
    tfma_seconds, tfma_metrics = run_tfma(task, str(tfrecord), model_dir)
    print(f"{task.key}: tfma.run_model_analysis: {tfma_seconds:.2f} s", flush=True)
    problems, largest = disagreements(fast_metrics, tfma_metrics)
    overall = ", ".join(f"{k}={v:.6g}" for k, v in fast_metrics.get("Overall", {}).items())
    print(
        f"{task.key}: rows={args.rows} slices={len(fast_metrics)} "
        f"largest |fast - tfma|={largest:.3g} (tolerance {TOLERANCE:g}); Overall: {overall}",
        flush=True,
    )
    return min(stage_times) / tfma_seconds, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=2, help="stage runs per model (best is kept); TFMA runs once")
    parser.add_argument("--model", choices=["both", *TASKS], default="both", help="benchmark one model only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import tensorflow_model_analysis  # noqa: F401 - warm the imports before timing

    paths = prepare(args.rows, args.seed)
    tasks = list(TASKS.values()) if args.model == "both" else [TASKS[args.model]]
    results = {task.key: bench(task, args, paths) for task in tasks}
    failures = []
    for task in tasks:
        ratio, problems = results[task.key]
        if problems:
            shown = "\n  ".join(problems[:40])
            more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
            failures.append(
                f"The {task.key} model's metrics differ between the fast engine and TFMA in {len(problems)} "
                f"places (tolerance {TOLERANCE:g} absolute):\n  {shown}{more}"
            )
        else:
            print(f"BENCH {task.bench_name} ratio={ratio:.3f} target={TARGET}")
    if failures:
        raise SystemExit("\n".join(failures))


if __name__ == "__main__":
    main()
