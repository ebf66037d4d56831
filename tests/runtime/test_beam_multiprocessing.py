"""Distributed Beam: a stage's Beam options reach the pipeline unchanged, and multi-processing changes nothing.

StatisticsGen in ``mode: beam`` is the Beam stage under test. The same stage request runs once in-process and
once with ``--direct_running_mode=multi_processing --direct_num_workers=2`` (separate SDK worker processes, the
closest this machine gets to a distributed runner); the statistics must agree. Dataflow, Flink and Spark option
sets cannot run here, so for them the test stops at the pipeline's construction and checks what Beam was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.executors import example_gen
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.runtime.data_fixtures import PATTERN, as_input, make_ctx
from tests.runtime.test_statistics_gen import assert_same_statistics
from tests.support.mlmd import sqlite_client

pytestmark = pytest.mark.runtime

IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
MULTI_PROCESSING = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=acme-ml",
    "--region=europe-west1",
    "--temp_location=gs://acme-ml-tmp/beam",
    "--staging_location=gs://acme-ml-tmp/staging",
    "--service_account_email=mlpipe@acme-ml.iam.gserviceaccount.com",
    "--machine_type=n2-standard-4",
    "--max_num_workers=10",
    "--experiments=use_runner_v2",
    "--sdk_container_image=europe-docker.pkg.dev/acme-ml/ml/mlpipe-runtime:1.2.3",
]
FLINK = [
    "--runner=FlinkRunner",
    "--flink_master=flink-jobmanager:8081",
    "--parallelism=4",
    "--environment_type=LOOPBACK",
]
SPARK = ["--runner=SparkRunner", "--spark_master_url=spark://spark-master:7077", "--environment_type=DOCKER"]


class PipelineSeen(Exception):
    """Stops a stage at its Beam pipeline's construction, for runners that cannot run here."""


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRef:
    tmp = tmp_path_factory.mktemp("examples")
    ctx = make_ctx(tmp, "example_gen", {"input": {"pattern": PATTERN}}, date="2024-01-03T00:00:00+00:00")
    example_gen.execute(ctx)
    return as_input(ctx, "examples")


@pytest.fixture
def seen_pipelines(monkeypatch: pytest.MonkeyPatch) -> list[PipelineOptions]:
    """Records the options of every Beam pipeline built (the executors look ``beam.Pipeline`` up at run time)."""
    seen: list[PipelineOptions] = []

    # A subclass, not a function: Beam and TFDV use ``beam.Pipeline`` as a type hint.
    class SpyPipeline(apache_beam.Pipeline):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs.get("options"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(apache_beam, "Pipeline", SpyPipeline)
    return seen


@pytest.fixture
def started_sdk_workers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts SDK worker subprocesses that Beam's FnApiRunner starts (multi_processing mode only uses them)."""
    started: list[str] = []
    original = worker_handlers.SubprocessSdkWorkerHandler.start_worker

    def spy(self: worker_handlers.SubprocessSdkWorkerHandler) -> None:
        command = self._worker_command_line
        started.append(command.decode() if isinstance(command, bytes) else command)
        original(self)

    monkeypatch.setattr(worker_handlers.SubprocessSdkWorkerHandler, "start_worker", spy)
    return started


def run_statistics(tmp_path: Path, examples: ArtifactRef, beam_args: list[str], run_id: str):
    client = sqlite_client(tmp_path)
    request = StageRequest(
        pipeline="beam-test",
        pipeline_root=str(tmp_path / "root"),
        stage="statistics_gen",
        node_id="statistics_gen",
        run_id=run_id,
        params={"mode": "beam"},
        inputs={"examples": [examples]},
        beam_args=list(beam_args),
        enable_cache=False,
    )
    return run_stage(request, client)


def test_multi_processing_gives_the_same_statistics(
    tmp_path: Path, examples: ArtifactRef, seen_pipelines: list, started_sdk_workers: list
) -> None:
    in_process = run_statistics(tmp_path / "in-process", examples, IN_PROCESS, "run-in-process")
    assert started_sdk_workers == []  # in_memory runs the bundles in this process
    multi = run_statistics(tmp_path / "multi", examples, MULTI_PROCESSING, "run-multi")

    assert len(started_sdk_workers) >= 2, "multi_processing must start separate SDK worker processes"
    assert all("sdk_worker_main" in cmd for cmd in started_sdk_workers)
    modes = [(o.view_as(DirectOptions).direct_running_mode, o.view_as(DirectOptions).direct_num_workers)
             for o in seen_pipelines]  # fmt: skip
    assert modes == [("in_memory", 1), ("multi_processing", 2)]

    assert in_process.summary["path"] == multi.summary["path"] == "beam"
    assert in_process.summary["num_examples"] == multi.summary["num_examples"] == examples.properties["row_counts"]
    for split in ("train", "eval"):
        a = example_io.load_split_stats(in_process.artifact("statistics").uri, split)
        b = example_io.load_split_stats(multi.artifact("statistics").uri, split)
        assert_same_statistics(a, b)
    # Not vacuous: the comparison tells two different splits apart.
    with pytest.raises(AssertionError):
        assert_same_statistics(
            example_io.load_split_stats(in_process.artifact("statistics").uri, "train"),
            example_io.load_split_stats(multi.artifact("statistics").uri, "eval"),
        )


@pytest.mark.parametrize("beam_args", [DATAFLOW, FLINK, SPARK], ids=["dataflow", "flink", "spark"])
def test_runner_options_reach_the_pipeline_unchanged(
    tmp_path: Path, examples: ArtifactRef, monkeypatch: pytest.MonkeyPatch, beam_args: list[str]
) -> None:
    seen: list[PipelineOptions] = []

    class StopPipeline(apache_beam.Pipeline):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs["options"])
            raise PipelineSeen

    monkeypatch.setattr(apache_beam, "Pipeline", StopPipeline)
    with pytest.raises(PipelineSeen):
        run_statistics(tmp_path, examples, beam_args, "run-1")

    [options] = seen
    assert options.get_all_options(retain_unknown_options=True) == PipelineOptions(beam_args).get_all_options(
        retain_unknown_options=True
    )
    parsed = options.get_all_options(drop_default=True)
    for arg in beam_args:
        key, _, value = arg[2:].partition("=")
        expected = parsed[key]
        assert str(expected[0] if isinstance(expected, list) else expected) == value, key
    assert options.view_as(StandardOptions).runner == beam_args[0].split("=", 1)[1]
    if beam_args is DATAFLOW:
        gcp = options.view_as(GoogleCloudOptions)
        assert (gcp.project, gcp.region, gcp.temp_location) == ("acme-ml", "europe-west1", "gs://acme-ml-tmp/beam")
