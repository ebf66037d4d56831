"""Slices that mean one thing: a slice on a transformed feature is decided by the candidate, for both engines.

The candidate's transform buckets ``bill_length_mm`` into 3 quantile buckets, the baseline's into 4, under the
same feature name. Sliced on that feature, both models must be judged on the candidate's groups, and the fast
and TFMA engines must agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.evaluation import fast_engine, slicing, tfma_engine
from airflow_provider_mlpipe.runtime.evaluation.metric_config import slice_name
from airflow_provider_mlpipe.runtime.executors import evaluator, transform
from airflow_provider_mlpipe.runtime.io import schema_tables
from tests.runtime.model_fixtures import EVAL_PARAMS, MODULES_DIR, make_context, train_model, transform_context

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = pytest.mark.runtime

BUCKET = "bill_length_bucket_xf"
SLICES = [[], [BUCKET], ["island", BUCKET]]
# The bundled transform plus one bucketized feature, which the bundled trainer ignores.
BUCKET_MODULE = """

_penguins_preprocessing_fn = preprocessing_fn


def preprocessing_fn(inputs):
    outputs = _penguins_preprocessing_fn(inputs)
    length = _dense(inputs["bill_length_mm"], tf.float32, float("nan"))
    length = tf.where(tf.math.is_finite(length), length, tf.zeros_like(length))
    outputs["{feature}"] = tft.bucketize(length, {buckets})
    return outputs
"""
FEW_STEPS = {"stages": {"trainer": {"train_steps": 40}}}


def _bucket_model(tmp: Path, inputs: dict[str, ArtifactRef], buckets: int, model_id: int) -> ArtifactRef:
    """A penguins model whose transform adds ``BUCKET`` with ``buckets`` quantile buckets."""
    spec_dir = tmp / "spec"
    (spec_dir / "modules").mkdir(parents=True)
    source = (MODULES_DIR / "penguins_transform.py").read_text(encoding="utf-8")
    (spec_dir / "modules" / "penguins_transform.py").write_text(
        source + BUCKET_MODULE.format(feature=BUCKET, buckets=buckets), encoding="utf-8"
    )
    ctx = transform_context(tmp / "transform", inputs)
    ctx.spec_dir = str(spec_dir)
    transform.execute(ctx)
    transformed = {
        slot: ArtifactRef(type=out.type, uri=out.path, properties=dict(out.properties))
        for slot, out in ctx.outputs.items()
    }
    return train_model(tmp / "trainer", inputs, transformed, FEW_STEPS, model_id)


@pytest.fixture(scope="module")
def bucket_models(tmp_path_factory: pytest.TempPathFactory, penguins_inputs) -> tuple[ArtifactRef, ArtifactRef]:
    """(candidate with 3 buckets, baseline with 4 buckets)."""
    candidate = _bucket_model(tmp_path_factory.mktemp("bucket-candidate"), penguins_inputs, 3, 201)
    baseline = _bucket_model(tmp_path_factory.mktemp("bucket-baseline"), penguins_inputs, 4, 202)
    return candidate, baseline


def _evaluate(tmp: Path, inputs, model, baseline, **params) -> tuple[dict, str]:
    ctx = make_context(
        tmp,
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params={**EVAL_PARAMS, "slices": SLICES, **params},
        inputs={"examples": [inputs["examples"]], "model": [model]},
        resolved={"baseline_model": baseline},
    )
    evaluator.execute(ctx)
    path = ctx.output("evaluation").path
    with open(os.path.join(path, "metrics.json"), encoding="utf-8") as fh:
        return json.load(fh), path


def _by_slice(slices: list[dict]) -> dict[str, dict[str, float]]:
    return {item["slice"]: item["metrics"] for item in slices}


@pytest.fixture(scope="module")
def engine_metrics(tmp_path_factory, penguins_inputs, bucket_models) -> dict[str, dict]:
    candidate, baseline = bucket_models
    return {
        engine: _evaluate(
            tmp_path_factory.mktemp(f"eval-{engine}"), penguins_inputs, candidate, baseline, engine=engine
        )[0]
        for engine in ("tfma", "fast")
    }


@pytest.mark.parametrize("engine", ["tfma", "fast"])
def test_candidate_and_baseline_are_judged_on_the_candidates_slices(engine, engine_metrics, penguins_inputs):
    metrics = engine_metrics[engine]
    candidate = _by_slice(metrics["slices"])
    baseline = _by_slice(metrics["baseline"]["slices"])
    buckets = [f"{BUCKET}={b}" for b in range(3)]
    assert sorted(n for n in candidate if n.startswith(BUCKET)) == buckets  # the candidate's 3 buckets, named as ints
    assert sorted(candidate) == sorted(baseline)  # never the baseline's 4th bucket
    for name in candidate:
        assert candidate[name]["example_count"] == baseline[name]["example_count"], name
    overall = candidate["Overall"]["example_count"]
    assert overall == penguins_inputs["examples"].properties["row_counts"]["eval"]
    assert sum(candidate[name]["example_count"] for name in buckets) == overall
    crosses = [name for name in candidate if name.startswith("island=") and f", {BUCKET}=" in name]
    assert crosses and sum(candidate[name]["example_count"] for name in crosses) == overall


def test_both_engines_give_the_same_metrics_on_transformed_slices(engine_metrics):
    fast, tfma = engine_metrics["fast"], engine_metrics["tfma"]
    for part in ("slices", "baseline"):
        fast_slices = _by_slice(fast["slices"] if part == "slices" else fast["baseline"]["slices"])
        tfma_slices = _by_slice(tfma["slices"] if part == "slices" else tfma["baseline"]["slices"])
        assert sorted(fast_slices) == sorted(tfma_slices), part
        for name, values in fast_slices.items():
            assert values.keys() == tfma_slices[name].keys(), (part, name)
            for metric, value in values.items():
                assert tfma_slices[name][metric] == pytest.approx(value, abs=1e-6), (part, name, metric)


@pytest.mark.parametrize("engine", ["fast", "tfma"])
@pytest.mark.parametrize(
    ("params", "wrong"),
    [({"slices": [[], ["bill_length_bukcet_xf"]]}, "bill_length_bukcet_xf"), ({"label_key": "specis_xf"}, "specis_xf")],
)
def test_an_unknown_slice_feature_or_label_fails_before_scoring(
    tmp_path, penguins_inputs, bucket_models, engine, params, wrong
):
    candidate, baseline = bucket_models
    with pytest.raises(ValueError) as failure:
        _evaluate(tmp_path, penguins_inputs, candidate, baseline, engine=engine, **params)
    message = str(failure.value)
    assert repr(wrong) in message
    for existing in ("island", "bill_length_mm", BUCKET, "species_xf"):  # raw and transformed features
        assert repr(existing) in message
    assert os.listdir(tmp_path / "out" / "evaluation") == []  # nothing scored, no TFMA output


@pytest.mark.parametrize(
    "values",
    [
        np.array([[0], [2], [2]], np.int64),
        np.array([1, 3], np.int32),
        np.array([[0.1], [2.5]], np.float32),
        np.array([0.1, 1e-12], np.float64),
        np.array([b"Biscoe", b"Dream"], object),
        np.array([True, False]),
    ],
)
def test_tfma_names_a_candidate_slice_value_as_the_fast_engine_does(values):
    """Through a tf.Example, TFMA's slicer and read-back, every dtype gives the fast engine's slice name."""
    from tensorflow_model_analysis.slicer import slice_accessor, slicer_lib
    from tfx_bsl.coders import example_coder

    column = slicing.private_name(BUCKET)
    batch = pa.RecordBatch.from_arrays([slicing.slice_value_column(values)], [column])
    decoded = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(schema_tables.encode_examples(batch))
    spec = slicer_lib.SingleSliceSpec(columns=[column])
    tfma_names = []
    for row in decoded.column(0).to_pylist():
        accessor = slice_accessor.SliceAccessor([{column: np.asarray(row)}])
        for key in spec.generate_slices(accessor):
            pairs = tfma_engine._slice_pairs(slicer_lib.serialize_slice_key(key))
            tfma_names.append(slicing.ordered_slice_name(None, pairs))
    fast_names = [slice_name([(BUCKET, value)]) for value in fast_engine._column_values(values)]
    assert tfma_names == fast_names
