"""The Beam stages on a gs:// pipeline root read and write at the artifacts' own URIs, never via the local disk.

Each stage runs as the real runtime command (what an Airflow worker launches) against gcp-storage-emulator,
under ``strace``, which records every file the process and its children open. The test then proves:
- the outputs are published under their gs:// URIs with the completion marker, and nothing is left in staging;
- no input or output file of the stage was opened on the local disk (no Parquet, TFRecord, SavedModel,
  statistics or schema file; nothing written outside the interpreter's own caches and the MLMD file). The one
  exception is TensorFlow's GCS writer, which buffers each object it uploads (the transform graph's SavedModel)
  in a temp file; the Transform test allows exactly those, and checks they are gone afterwards;
- the results equal those of the same stage on local disk (statistics, transform graph outputs, metrics).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, RUNTIME_MODULE, ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.io.artifact_store import COMPLETE_MARKER, STAGING_DIR
from airflow_provider_mlpipe.storage import default_storage, join
from tests.runtime.model_fixtures import (
    EVAL_PARAMS,
    TRANSFORM_PARAMS,
    penguins_inputs,  # noqa: F401 - session fixtures
    penguins_model,  # noqa: F401
    penguins_transformed,  # noqa: F401
)
from tests.support.gcs_emulator import GcsEmulator, running_emulator
from tests.support.mlmd import sqlite_config
from tests.support.paths import REPO

pytestmark = [pytest.mark.runtime, pytest.mark.slow]

BUCKET = "mlpipe-plane"
ROOT = f"gs://{BUCKET}/root"
STRACE = shutil.which("strace")
# Local files that hold a stage's data: none of these may be opened by a URI-native stage on a gs:// root.
DATA_FILE = re.compile(
    r"\.(parquet|tfrecord|gz|pbtxt)$|saved_model\.pb$|variables\.(index|data-\d+-of-\d+)$|FeatureStats\.pb$"
    r"|/Split-|/transform_fn/|/transformed_metadata/|eval-examples|/tfma/"
)
OPEN_CALL = re.compile(r'^\d+\s+(?:openat|open|creat)\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)')
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT")


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


def upload(local_dir: str, uri: str) -> str:
    storage = default_storage()
    storage.upload_dir(local_dir, uri)
    storage.write_text(join(uri, COMPLETE_MARKER), "")
    return uri


def on_gcs(ref: ArtifactRef, name: str) -> ArtifactRef:
    return ArtifactRef(ref.type, upload(ref.uri, f"{ROOT}/inputs/{name}"), None, name, dict(ref.properties))


def run_traced(tmp: Path, emulator: GcsEmulator, request: StageRequest) -> tuple[StageResult, list[tuple[str, str]]]:
    """The runtime ``run`` command under strace; returns its result and every (path, flags) it opened."""
    assert STRACE, "strace is missing: `make system` (scripts/system-deps.sh) installs it."
    work = tmp / "work"
    scratch = tmp / "tmpdir"
    work.mkdir()
    scratch.mkdir()
    (work / "request.json").write_text(request.to_json(), encoding="utf-8")
    env = {
        **os.environ,
        **emulator.env,
        MLMD_CONFIG_ENV: json.dumps(sqlite_config(tmp / "mlmd")),
        "TMPDIR": str(scratch),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    trace = tmp / "trace.txt"
    command = [STRACE, "-f", "-qq", "--seccomp-bpf", "-e", "trace=open,openat,creat", "-o", str(trace)]
    command += [sys.executable, "-m", RUNTIME_MODULE, "run", "request.json", "--result", "result.json"]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = StageResult.from_dict(json.loads((work / "result.json").read_text(encoding="utf-8")))
    opened = []
    for line in trace.read_text(errors="replace").splitlines():
        match = OPEN_CALL.match(line)
        if match:
            opened.append((match.group(1), match.group(2)))
    return result, opened


def local_data_files(opened: list[tuple[str, str]], tmp: Path, tf_upload_buffers: bool = False) -> list[str]:
    """Opened local files that held stage data, or anything written outside the allowed places.

    ``tf_upload_buffers``: TensorFlow's own GCS writer (used for a SavedModel such as the transform graph) buffers
    each object in a ``tmp_file_tensorflow_*`` file under TMPDIR and uploads it on close; those are allowed.
    """
    work = tmp / "work"
    # MLMD's SQLite file, the result file, devices, and libuuid's clock file are not stage data.
    allowed_writes = (str(tmp / "mlmd"), str(work / "result.json"), "/dev/", "/proc/", "/var/lib/libuuid/")
    tempdir_probe = re.compile(re.escape(str(tmp / "tmpdir")) + r"/[a-z0-9_]{8}$")  # tempfile's writability check
    tf_buffer = re.compile(re.escape(str(tmp / "tmpdir")) + r"/tmp_file_tensorflow_\d+_\w+$")
    bad = []
    for raw_path, flags in opened:
        path = raw_path if raw_path.startswith("/") else str(work / raw_path)
        if DATA_FILE.search(path) and "site-packages" not in path:
            bad.append(f"{path} ({flags})")
        elif any(f in flags for f in WRITE_FLAGS) and not path.startswith(allowed_writes):
            if "__autograph_generated_file" in path or tempdir_probe.match(path):
                continue  # TensorFlow's generated code and tempfile's probe, not data
            if tf_upload_buffers and tf_buffer.match(path):
                continue
            bad.append(f"{path} ({flags})")
    return bad


def request_for(stage: str, params: dict[str, Any], inputs: dict[str, list[ArtifactRef]]) -> StageRequest:
    return StageRequest(
        pipeline="penguins",
        pipeline_root=ROOT,
        stage=stage,
        node_id=stage,
        run_id=f"plane-{stage}",
        params=params,
        inputs=inputs,
        spec_dir=str(REPO / "dags"),
        beam_args=["--direct_num_workers=1"],
        enable_cache=False,
    )


def check_published(result: StageResult) -> None:
    storage = default_storage()
    for refs in result.outputs.values():
        for ref in refs:
            assert ref.uri.startswith(f"{ROOT}/penguins/"), ref.uri
            assert storage.exists(join(ref.uri, COMPLETE_MARKER))
    assert storage.list_files(join(ROOT, STAGING_DIR)) == []  # staging and Beam temp folders are gone


def test_statistics_gen_beam_path_reads_and_writes_only_gcs(emulator, penguins_inputs, tmp_path) -> None:  # noqa: F811
    from airflow_provider_mlpipe.runtime.executors.statistics_gen import arrow_statistics, summarize
    from airflow_provider_mlpipe.runtime.io import example_io

    examples = on_gcs(penguins_inputs["examples"], "examples-stats")
    request = request_for("statistics_gen", {"mode": "beam"}, {"examples": [examples]})
    result, opened = run_traced(tmp_path, emulator, request)
    assert local_data_files(opened, tmp_path) == []
    assert any("data-00000.parquet" not in p for p, _ in opened)  # the trace did record the process's opens
    check_published(result)
    assert result.summary["path"] == "beam"
    stats_uri = result.outputs["statistics"][0].uri
    for split in ("train", "eval"):
        on_gcs_stats = example_io.load_split_stats(stats_uri, split)
        local = arrow_statistics(example_io.split_files(penguins_inputs["examples"].uri, split))
        assert summarize(on_gcs_stats) == summarize(local)


def test_transform_reads_and_writes_only_gcs(emulator, penguins_inputs, penguins_transformed, tmp_path) -> None:  # noqa: F811
    examples = on_gcs(penguins_inputs["examples"], "examples-transform")
    schema = on_gcs(penguins_inputs["schema"], "schema-transform")
    request = request_for("transform", TRANSFORM_PARAMS, {"examples": [examples], "schema": [schema]})
    result, opened = run_traced(tmp_path, emulator, request)
    # The graph is a SavedModel written by TensorFlow, whose GCS writer buffers in TMPDIR; Beam writes the rest.
    assert local_data_files(opened, tmp_path, tf_upload_buffers=True) == []
    assert not list((tmp_path / "tmpdir").rglob("tmp_file_tensorflow_*"))  # and removes its buffers
    check_published(result)
    storage = default_storage()
    graph = result.outputs["transform_graph"][0].uri
    local_graph = penguins_transformed["transform_graph"].uri
    assert (
        storage.read_bytes(join(graph, "transformed_metadata", "schema.pbtxt"))
        == Path(local_graph, "transformed_metadata", "schema.pbtxt").read_bytes()
    )
    transformed = result.outputs["transformed_examples"][0]
    assert transformed.properties["row_counts"] == penguins_transformed["transformed_examples"].properties["row_counts"]
    assert storage.glob(join(transformed.uri, "Split-eval", "transformed-*.tfrecord.gz"))


def test_evaluator_tfma_path_reads_and_writes_only_gcs(emulator, penguins_inputs, penguins_model, tmp_path) -> None:  # noqa: F811
    from airflow_provider_mlpipe.runtime.evaluation import fast_engine, metric_config
    from airflow_provider_mlpipe.runtime.executors.evaluator import SERVING_DIR
    from airflow_provider_mlpipe.runtime.io import schema_tables
    from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams

    params = {**EVAL_PARAMS, "engine": "tfma"}
    examples = on_gcs(penguins_inputs["examples"], "examples-eval")
    model = on_gcs(penguins_model, "model")
    schema = on_gcs(penguins_inputs["schema"], "schema-eval")
    request = request_for("evaluator", params, {"examples": [examples], "model": [model], "schema": [schema]})
    result, opened = run_traced(tmp_path, emulator, request)
    assert local_data_files(opened, tmp_path) == []
    check_published(result)
    assert result.summary["engine"] == "tfma"
    metrics = json.loads(default_storage().read_text(join(result.outputs["evaluation"][0].uri, "metrics.json")))
    on_gcs_metrics = {s["slice"]: s["metrics"] for s in metrics["slices"]}
    # The same model and data on local disk, through the fast engine: both engines agree exactly.
    spec = metric_config.eval_spec(EvaluatorParams.model_validate(params))
    files = schema_tables.split_files(penguins_inputs["examples"].uri, "eval")
    local_schema = schema_tables.load_schema(penguins_inputs["schema"].uri)
    local, _, _, _ = fast_engine.evaluate(spec, join(penguins_model.uri, SERVING_DIR), None, files, local_schema)
    assert set(on_gcs_metrics) == set(local)
    for name, values in local.items():
        for metric, value in values.items():
            assert on_gcs_metrics[name][metric] == pytest.approx(value, abs=1e-6), (name, metric)
