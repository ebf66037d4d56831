"""Evaluator stage against TFMA's ``run_model_analysis`` on a seeded 1M-row eval split, same model, same data.

Data: the taxi-like table of ``benchmarks/datagen.py`` (seeded) plus an integer label ``payment_code`` (the
payment type), written as ExampleGen would (``Split-eval/data-*.parquet``). Model: a small Keras classifier
trained on a separate seeded sample, exported with a ``serving_default`` signature over serialized
``tf.Example``s. Evaluation: overall and per ``company`` (41 slices), ``ExampleCount`` and
``SparseCategoricalAccuracy`` with a value threshold.

(a) the Evaluator stage's executor (``engine: auto`` picks the fast engine), end to end: reading Parquet,
    encoding examples, predicting, metrics, blessing, files;
(b) ``tfma.run_model_analysis`` with the same EvalConfig on the same rows, pre-encoded as a TFRecord of
    ``tf.Example``s (the encoding is not timed, which favours TFMA).

The metrics of (a) and (b) must be identical (every slice, every metric, exact float equality). Prints
``BENCH evaluator_vs_tfma ratio=<a/b> target=0.25``.

    .venv-runtime/bin/python benchmarks/evaluator_benchmark.py [--rows 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.datagen import DATA_DIR, PAYMENT, make_table

NUMERIC = ["trip_miles", "trip_seconds", "fare", "tips", "trip_start_hour"]
COMPANY_BUCKETS = 16
EVAL_PARAMS = {
    "label_key": "payment_code",
    "slices": [[], ["company"]],
    "metrics": [{"name": "accuracy", "class_name": "SparseCategoricalAccuracy", "threshold": {"lower_bound": 0.1}}],
}


def with_label(table: pa.Table) -> pa.Table:
    codes = pc.index_in(table.column("payment_type"), value_set=pa.array(PAYMENT))
    return table.append_column("payment_code", codes.cast(pa.int64()))


def ensure_examples(rows: int, seed: int, shards: int = 4) -> Path:
    root = DATA_DIR / f"evaluator-{rows}-seed{seed}" / "examples"
    split = root / "Split-eval"
    if split.is_dir():
        return root
    table = with_label(make_table(rows, seed))
    tmp = root.with_name("examples.tmp")
    (tmp / "Split-eval").mkdir(parents=True, exist_ok=True)
    step = -(-rows // shards)
    for shard in range(shards):
        pq.write_table(table.slice(shard * step, step), str(tmp / "Split-eval" / f"data-{shard:05d}.parquet"))
    os.replace(tmp, root)
    return root


def ensure_model(root: Path, seed: int, train_rows: int = 50_000) -> Path:
    """Train (once) a small classifier; its serving signature parses raw tf.Examples."""
    model_dir = root / "model"
    if (model_dir / "Format-Serving" / "saved_model.pb").exists():
        return model_dir
    import tensorflow as tf
    import tf_keras as keras

    table = with_label(make_table(train_rows, seed + 1))
    x = np.stack([table.column(c).to_numpy().astype(np.float32) for c in NUMERIC], axis=1)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    company = np.array(table.column("company").fill_null("").to_pylist(), dtype=object).astype(bytes)
    buckets = tf.strings.to_hash_bucket_fast(company, COMPANY_BUCKETS).numpy()
    features = np.concatenate([(x - mean) / std, np.eye(COMPANY_BUCKETS, dtype=np.float32)[buckets]], axis=1)
    labels = table.column("payment_code").to_numpy()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(features.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(len(PAYMENT), activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(features, labels, batch_size=256, epochs=3, verbose=0)
    spec = {c: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for c in NUMERIC if c != "trip_start_hour"}
    spec["trip_start_hour"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    spec["trip_seconds"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    spec["company"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    mean_t, std_t = tf.constant(mean), tf.constant(std)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        numeric = tf.stack([tf.cast(parsed[c], tf.float32) for c in NUMERIC], axis=1)
        hashed = tf.one_hot(tf.strings.to_hash_bucket_fast(parsed["company"], COMPANY_BUCKETS), COMPANY_BUCKETS)
        return {"probabilities": model(tf.concat([(numeric - mean_t) / std_t, hashed], axis=1))}

    tmp = root / "model.tmp"
    model.save(str(tmp / "Format-Serving"), save_format="tf", signatures={"serving_default": serve})
    os.replace(tmp, model_dir)
    return model_dir


def run_stage(examples: Path, model_dir: Path, schema_dir: Path) -> tuple[float, dict]:
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
            params=EvaluatorParams.model_validate(EVAL_PARAMS),
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
    assert summary["engine"] == "fast", summary
    return seconds, metrics


def run_tfma(data_location: str, model_dir: Path) -> tuple[float, dict]:
    import tensorflow_model_analysis as tfma

    from airflow_provider_mlpipe.runtime.evaluation import metric_config, tfma_engine
    from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams

    spec = metric_config.eval_spec(EvaluatorParams.model_validate(EVAL_PARAMS))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=2, help="stage runs (best is kept); TFMA runs once")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import tensorflow_model_analysis  # noqa: F401 - warm the imports before timing

    from airflow_provider_mlpipe.runtime.io import schema_tables

    examples = ensure_examples(args.rows, args.seed)
    root = examples.parent
    model_dir = ensure_model(root, args.seed)
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

    stage_times = []
    for _ in range(args.repeat):
        seconds, stage_metrics = run_stage(examples, model_dir, schema_dir)
        stage_times.append(seconds)
        print(f"stage (fast engine): {seconds:.2f} s", flush=True)
    tfma_seconds, tfma_metrics = run_tfma(str(tfrecord), model_dir)
    print(f"tfma.run_model_analysis: {tfma_seconds:.2f} s", flush=True)

    if stage_metrics != tfma_metrics:
        diff = {
            s: (stage_metrics.get(s), tfma_metrics.get(s))
            for s in set(stage_metrics) | set(tfma_metrics)
            if stage_metrics.get(s) != tfma_metrics.get(s)
        }
        raise SystemExit(f"Metrics differ between the stage and TFMA: {json.dumps(diff, indent=1)[:4000]}")
    overall = stage_metrics["Overall"]
    print(
        f"rows={args.rows} slices={len(stage_metrics)} metrics identical: "
        f"example_count={overall['example_count']:.0f} accuracy={overall['accuracy']!r}"
    )
    print(f"BENCH evaluator_vs_tfma ratio={min(stage_times) / tfma_seconds:.3f} target=0.25")


if __name__ == "__main__":
    main()
