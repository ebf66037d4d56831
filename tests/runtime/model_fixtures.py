"""Penguins inputs for the model-stage tests, shaped like the data stages' outputs (see the contract doc).

``Examples``: ``Split-train`` / ``Split-eval`` folders of Parquet, read from the CSV with pyarrow (so nulls stay
nulls and integer columns stay integers, as ExampleGen writes them). ``Schema``: inferred by TFDV from the pandas
frame of the same CSV. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlpipe.overrides import with_stage_overrides
from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.context import ExecutorContext, OutputArtifact
from airflow_provider_mlpipe.stages import get_stage
from tests.support.paths import REPO
from tests.support.trees import tree_digest as tree_digest  # the model-stage tests import it from here

DATA = Path(__file__).parent / "data"
PENGUINS_CSV = DATA / "penguins.csv"
MODULES_DIR = REPO / "dags" / "modules"
SPAN = 20240105


def penguins_table() -> pa.Table:
    return pacsv.read_csv(str(PENGUINS_CSV))


def write_examples(root: Path, table: pa.Table | None = None, eval_every: int = 3) -> ArtifactRef:
    """Split rows deterministically (every ``eval_every``-th row to eval) and write Parquet per split."""
    table = table if table is not None else penguins_table()
    is_eval = pa.array([i % eval_every == 0 for i in range(table.num_rows)])
    splits = {"train": table.filter(pa.compute.invert(is_eval)), "eval": table.filter(is_eval)}
    for name, part in splits.items():
        folder = root / f"Split-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, str(folder / "data-00000.parquet"))
    return ArtifactRef(
        type="Examples",
        uri=str(root),
        id=None,
        properties={
            "span": SPAN,
            "version": 0,
            "split_names": list(splits),
            "row_counts": {k: v.num_rows for k, v in splits.items()},
            "format": "parquet",
        },
    )


def write_schema(root: Path) -> ArtifactRef:
    import pandas as pd
    import tensorflow_data_validation as tfdv

    frame = pd.read_csv(PENGUINS_CSV)
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(frame))
    root.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(root / "schema.pbtxt"))
    return ArtifactRef(type="Schema", uri=str(root), properties={"source": "inferred"})


def make_context(
    tmp: Path,
    node_id: str,
    outputs: dict[str, str],
    params: dict | None = None,
    inputs: dict[str, list[ArtifactRef]] | None = None,
    resolved: dict[str, ArtifactRef | None] | None = None,
    conf: dict | None = None,
) -> ExecutorContext:
    """An ExecutorContext over temporary folders, as the runner would build it."""
    out = {}
    for slot, artifact_type in outputs.items():
        path = tmp / "out" / slot
        path.mkdir(parents=True)
        out[slot] = OutputArtifact(type=artifact_type, path=str(path), uri=str(path))
    scratch = tmp / "scratch"
    scratch.mkdir()
    return ExecutorContext(
        pipeline="penguins",
        node_id=node_id,
        run_id="test-run",
        # as the runner does: dag_run.conf overrides merged in, then validated by the stage's params model
        params=get_stage(node_id).params.model_validate(with_stage_overrides(params or {}, conf, node_id, node_id)),
        inputs=inputs or {},
        resolved=resolved or {},
        outputs=out,
        conf=conf or {},
        spec_dir=str(REPO / "dags"),
        pipeline_root=str(tmp / "root"),
        tmp_dir=str(scratch),
    )


TRANSFORM_PARAMS = {"module_file": "modules/penguins_transform.py"}
TRAINER_PARAMS = {
    "module_file": "modules/penguins_trainer.py",
    "train_steps": 150,
    "eval_steps": 5,
    "hyperparameters": {"learning_rate": 0.02, "batch_size": 16, "seed": 7},
}
EVAL_PARAMS = {
    "label_key": "species_xf",
    "slices": [[], ["island"]],
    "metrics": [
        {
            "name": "accuracy",
            "class_name": "SparseCategoricalAccuracy",
            "threshold": {"lower_bound": 0.3, "change": {"direction": "higher_is_better", "absolute": -0.05}},
        }
    ],
}


@pytest.fixture(scope="session")
def penguins_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArtifactRef]:
    root = tmp_path_factory.mktemp("penguins-inputs")
    return {"examples": write_examples(root / "examples"), "schema": write_schema(root / "schema")}


def transform_context(tmp: Path, inputs: dict[str, ArtifactRef]) -> ExecutorContext:
    """A Transform context over the penguins inputs, with the bundled module."""
    return make_context(
        tmp,
        "transform",
        {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
        params=TRANSFORM_PARAMS,
        inputs={"examples": [inputs["examples"]], "schema": [inputs["schema"]]},
    )


@pytest.fixture(scope="session")
def penguins_transformed(tmp_path_factory: pytest.TempPathFactory, penguins_inputs) -> dict[str, ArtifactRef]:
    """Transform outputs (graph and transformed examples), computed once for the session."""
    from airflow_provider_mlpipe.runtime.executors import transform

    tmp = tmp_path_factory.mktemp("penguins-transform")
    ctx = transform_context(tmp, penguins_inputs)
    transform.execute(ctx)
    return {
        slot: ArtifactRef(type=out.type, uri=out.path, properties=dict(out.properties))
        for slot, out in ctx.outputs.items()
    }


def train_model(
    tmp: Path, inputs: dict[str, ArtifactRef], transformed: dict[str, ArtifactRef], conf: dict | None, model_id: int
) -> ArtifactRef:
    from airflow_provider_mlpipe.runtime.executors import trainer

    ctx = make_context(
        tmp,
        "trainer",
        {"model": "Model"},
        params=TRAINER_PARAMS,
        inputs={
            "examples": [transformed["transformed_examples"]],
            "schema": [inputs["schema"]],
            "transform_graph": [transformed["transform_graph"]],
        },
        conf=conf,
    )
    trainer.execute(ctx)
    out = ctx.output("model")
    return ArtifactRef(type="Model", uri=out.path, id=model_id, properties=dict(out.properties))


@pytest.fixture(scope="session")
def penguins_model(tmp_path_factory: pytest.TempPathFactory, penguins_inputs, penguins_transformed) -> ArtifactRef:
    """A trained penguins model (few steps), computed once for the session."""
    return train_model(tmp_path_factory.mktemp("penguins-trainer"), penguins_inputs, penguins_transformed, None, 101)


@pytest.fixture(scope="session")
def penguins_bad_model(tmp_path_factory: pytest.TempPathFactory, penguins_inputs, penguins_transformed) -> ArtifactRef:
    """A deliberately worse model: labels shuffled within each batch through a run override."""
    conf = {"stages": {"trainer": {"hyperparameters": {"shuffle_labels": True}}}}
    return train_model(tmp_path_factory.mktemp("penguins-bad"), penguins_inputs, penguins_transformed, conf, 102)


def copy_tree(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    return dst
