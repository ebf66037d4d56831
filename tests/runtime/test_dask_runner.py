"""Beam's DaskRunner (Beam 2.61) on a local dask.distributed cluster: what runs, and exactly what does not.

The cluster is real: a ``dask scheduler`` and two ``dask worker`` processes on loopback (tests/support/dask_cluster.py).
No mlpipe Beam stage runs on it, and these tests pin down why, so that a Beam upgrade that fixes a gap fails here
and sends the reader to docs/beam-runners.md:

- Through ``beam.args`` (how a spec picks a runner) every stage stops before any work: the runner hands every
  non-default pipeline option, ``runner`` included, to ``distributed.Client(...)``, which rejects them.
- Below that, the runner translates only Create, ParDo/Map, GroupByKey and Flatten to Dask bags. The features the
  stages need are missing: bounded-source reads (StatisticsGen, TFMA), side inputs (Transform's analyzers, every
  file sink), the DoFn lifecycle, and a Flatten of one PCollection (TFMA's TFRecord reader). The last test shows
  each on the smallest pipeline, beside a control pipeline that does run on the workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.executors import evaluator, statistics_gen, transform
from airflow_provider_mlpipe.runtime.io import example_io
from tests.runtime.model_fixtures import EVAL_PARAMS, make_context, transform_context
from tests.support.dask_cluster import DaskCluster, running_cluster

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = [pytest.mark.runtime, pytest.mark.slow]

OPTIONS_REJECTED = r"Unexpected keyword arguments: \['runner'\]"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask")) as started:
        yield started
    _close_leaked_clients()


def _close_leaked_clients() -> None:
    """Beam's DaskRunner opens a ``distributed.Client`` per pipeline and never closes it."""
    from distributed import default_client

    for _ in range(100):
        try:
            default_client().close()
        except ValueError:  # no client left
            return


def _split_files(examples: ArtifactRef) -> dict[str, list[str]]:
    return {
        s: example_io.split_files(examples.uri, s)
        for s in example_io.artifact_splits(examples.uri, examples.properties)
    }


def test_the_cluster_is_a_scheduler_and_two_worker_processes(cluster: DaskCluster) -> None:
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        pids = client.run(os.getpid)
    assert cluster.worker_names() == ["worker-0", "worker-1"]
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


def test_statistics_gen_cannot_select_dask_through_beam_args(
    cluster: DaskCluster, tmp_path: Path, penguins_inputs: dict[str, ArtifactRef]
) -> None:
    files = _split_files(penguins_inputs["examples"])
    targets = {split: str(tmp_path / f"{split}.tfrecord") for split in files}
    with pytest.raises(ValueError, match=OPTIONS_REJECTED):
        statistics_gen.beam_statistics(files, targets, cluster.beam_args)
    # Beam 2.61 does not know the runner's short name either.
    with pytest.raises(ValueError, match="Unexpected pipeline runner: DaskRunner"):
        statistics_gen.beam_statistics(files, targets, ["--runner=DaskRunner", *cluster.beam_args[1:]])
    assert not any(Path(t).exists() for t in targets.values())


def test_transform_cannot_select_dask_through_beam_args(
    cluster: DaskCluster, tmp_path: Path, penguins_inputs: dict[str, ArtifactRef]
) -> None:
    ctx = transform_context(tmp_path, penguins_inputs)
    ctx.beam_args = cluster.beam_args
    with pytest.raises(ValueError, match=OPTIONS_REJECTED):
        transform.execute(ctx)
    assert list(Path(ctx.output("transformed_examples").path).iterdir()) == []


def test_the_tfma_engine_cannot_select_dask_through_beam_args(
    cluster: DaskCluster, tmp_path: Path, penguins_inputs: dict[str, ArtifactRef], penguins_model: ArtifactRef
) -> None:
    ctx = make_context(
        tmp_path,
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params={**EVAL_PARAMS, "engine": "tfma"},
        inputs={"examples": [penguins_inputs["examples"]], "model": [penguins_model]},
    )
    ctx.beam_args = cluster.beam_args
    with pytest.raises(ValueError, match=OPTIONS_REJECTED):
        evaluator.execute(ctx)
    assert not Path(ctx.output("evaluation").path, "metrics.json").exists()


# ----- below beam.args: the runner passed as an object, its result gathered directly -----------------------------
def _run_on_dask(cluster: DaskCluster, build: Callable[[beam.Pipeline], Any]) -> None:
    """Runs a pipeline on the cluster the way Beam's own DaskRunner tests do (the runner as an object, only Dask
    options), gathering the result's futures directly: its ``wait_until_finish`` cannot run with this distributed
    (see the control test)."""
    from apache_beam.runners.dask.dask_runner import DaskRunner

    options = PipelineOptions([f"--dask_client_address={cluster.address}"])
    pipeline = beam.Pipeline(runner=DaskRunner(), options=options)
    build(pipeline)
    result = pipeline.run()
    try:
        result.client.gather(result.futures, errors="raise")
    finally:
        result.client.close()


def _touch(folder: str, name: str) -> None:
    Path(folder, f"{name}-pid{os.getpid()}").touch()


def test_control_create_map_and_group_by_key_run_on_the_workers(cluster: DaskCluster, tmp_path: Path) -> None:
    from apache_beam.runners.dask.dask_runner import DaskRunner

    def build(p: beam.Pipeline) -> None:
        _ = (
            p
            | beam.Create(range(20))
            | beam.Map(lambda n: (n % 2, n))
            | beam.GroupByKey()
            | beam.Map(lambda kv: _touch(str(tmp_path), f"{kv[0]}-{sum(kv[1])}"))
        )

    _run_on_dask(cluster, build)
    written = sorted(p.name.split("-pid")[0] for p in tmp_path.iterdir())
    assert written == ["0-90", "1-100"]
    pids = {int(p.name.split("-pid")[1]) for p in tmp_path.iterdir()}
    assert os.getpid() not in pids  # the work ran in the worker processes

    # Beam's own wait: Client.wait_for_workers without n_workers, required since dask/distributed#8192.
    pipeline = beam.Pipeline(runner=DaskRunner(), options=PipelineOptions([f"--dask_client_address={cluster.address}"]))
    _ = pipeline | beam.Create([1]) | beam.Map(lambda n: n)
    result = pipeline.run()
    try:
        with pytest.raises(TypeError, match=r"wait_for_workers.*n_workers"):
            result.wait_until_finish()
    finally:
        result.client.close()


class _NeedsSetup(beam.DoFn):
    def setup(self) -> None:
        self.offset = 1

    def process(self, element: int) -> Iterator[int]:
        yield element + self.offset


def _parquet_read(files: dict[str, list[str]]) -> Callable[[beam.Pipeline], Any]:
    return lambda p: p | beam.io.ReadFromParquetBatched(files["train"][0]) | beam.Map(len)


def _side_input(p: beam.Pipeline) -> Any:
    side = p | "Side" >> beam.Create([10])
    return p | beam.Create([1, 2]) | beam.Map(lambda n, k: n + k, beam.pvalue.AsSingleton(side))


def _dofn_setup(p: beam.Pipeline) -> Any:
    return p | beam.Create([1, 2]) | beam.ParDo(_NeedsSetup())


def _flatten_of_one(p: beam.Pipeline) -> Any:
    return [p | beam.Create([1, 2])] | beam.Flatten() | beam.Map(lambda n: n)


@pytest.mark.parametrize(
    ("feature", "error", "message"),
    [
        # StatisticsGen (ReadFromParquetBatched) and TFMA (ReadFromTFRecord): Read is not translated at all.
        ("bounded_read", AttributeError, "'NoneType' object has no attribute 'map'"),
        # Transform's analyzers and every file sink (WriteToTFRecord's finalize step) take side inputs.
        ("side_input", TypeError, "ArgumentPlaceholder"),
        # DoFn.setup / start_bundle never run; TFT's graph DoFn, TFDV's combiners, TFMA's model DoFns need them.
        ("dofn_setup", AttributeError, "'_NeedsSetup' object has no attribute 'offset'"),
        # tfx-bsl's TFRecord source (under TFMA) flattens the reads of its file patterns, one pattern here.
        ("flatten_of_one", TypeError, "'PCollection' object is not iterable"),
    ],
    ids=["bounded_read", "side_input", "dofn_setup", "flatten_of_one"],
)
def test_what_the_dask_runner_lacks(
    cluster: DaskCluster,
    penguins_inputs: dict[str, ArtifactRef],
    feature: str,
    error: type[Exception],
    message: str,
) -> None:
    builds = {
        "bounded_read": _parquet_read(_split_files(penguins_inputs["examples"])),
        "side_input": _side_input,
        "dofn_setup": _dofn_setup,
        "flatten_of_one": _flatten_of_one,
    }
    try:
        with pytest.raises(error, match=message):
            _run_on_dask(cluster, builds[feature])
    finally:
        _close_leaked_clients()  # a failure inside run() leaves the runner's client open
