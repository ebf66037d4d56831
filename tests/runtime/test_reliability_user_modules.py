"""Bad user modules in the Trainer, through the real runner and MLMD: a clear failure with the user's traceback, the
Trainer execution FAILED, no Model LIVE, nothing pushed. Upstream: the penguins stages on span 2024-01-01, once."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.context import UserModuleError
from airflow_provider_mlpipe.runtime.metadata.client import properties_of
from tests.reliability.penguins_runtime import PenguinsRun

pytestmark = pytest.mark.runtime

MODULES = {
    "import_error.py": "import numpy\nimport mlpipe_no_such_package  # the user's typo\n",
    "no_run_fn.py": "def train(fn_args):\n    return None\n",
    "raises.py": (
        "def _load_features(fn_args):\n"
        "    raise KeyError('flipper_length_cm is not a feature')\n\n"
        "def run_fn(fn_args):\n"
        "    _load_features(fn_args)\n"
    ),
}


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> PenguinsRun:
    run = PenguinsRun(tmp_path_factory.mktemp("user-modules"))
    # The user's folder: the shipped modules plus the broken ones (spec_dir is the only place modules load from).
    spec_dir = run.root / "dags"
    shutil.copytree(Path(run.spec_dir) / "modules", spec_dir / "modules")
    for name, text in MODULES.items():
        (spec_dir / "modules" / name).write_text(text)
    shutil.copytree(Path(run.spec_dir) / "data", spec_dir / "data")
    run.spec_dir = str(spec_dir)
    run.inputs = run.model_inputs(run.data_stages(day=1), day=1)
    return run


def train(run: PenguinsRun, name: str, module_file: str, **hyperparameters):
    params = {**run.params["trainer"], "module_file": module_file}
    params["hyperparameters"] = {**params["hyperparameters"], **hyperparameters}
    with pytest.raises(Exception) as err:
        run.run("trainer", 1, run_id=name, params=params, **run.inputs)
    return err.value


def assert_failed_nothing_live(run: PenguinsRun, run_id: str) -> str:
    ctx = run.client.store.get_context_by_type_and_name("pipeline_run", f"penguins.{run_id}")
    [execution] = run.client.store.get_executions_by_context(ctx.id)
    assert execution.last_known_state == pb.Execution.FAILED
    models = [a for a in run.client.store.get_artifacts_by_type("Model") if a.state == pb.Artifact.LIVE]
    assert models == []
    assert not Path(run.params["pusher"]["destination"]).exists()  # nothing pushed
    return properties_of(execution)["error"]


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def test_import_error(penguins: PenguinsRun) -> None:
    """Inject: a module importing a package that does not exist. Holds: UserModuleError naming the module and
    the missing package; the printed traceback shows the user's line; FAILED; no Model."""
    exc = train(penguins, "import-error", "modules/import_error.py")
    assert isinstance(exc, UserModuleError) and "import_error.py" in str(exc) and "mlpipe_no_such_package" in str(exc)
    assert "import mlpipe_no_such_package" in full_text(exc)  # the chained user traceback
    assert "mlpipe_no_such_package" in assert_failed_nothing_live(penguins, "import-error")


def test_missing_run_fn(penguins: PenguinsRun) -> None:
    """Inject: a module without run_fn. Holds: UserModuleError saying run_fn is missing; FAILED; no Model."""
    exc = train(penguins, "no-run-fn", "modules/no_run_fn.py")
    assert isinstance(exc, UserModuleError) and "'run_fn'" in str(exc)
    assert "run_fn" in assert_failed_nothing_live(penguins, "no-run-fn")


def test_exception_in_training(penguins: PenguinsRun) -> None:
    """Inject: run_fn raising KeyError in a helper. Holds: the error text carries the user's traceback (file,
    function, message); FAILED with it; no Model."""
    exc = train(penguins, "raises", "modules/raises.py")
    text = str(exc)
    assert "run_fn in modules/raises.py raised KeyError" in text
    assert "_load_features" in text and "raises.py" in text and "flipper_length_cm" in text
    assert "flipper_length_cm" in assert_failed_nothing_live(penguins, "raises")


def test_nan_loss(penguins: PenguinsRun) -> None:
    """Inject: the shipped trainer with a learning rate of 1e30 (the loss diverges). Holds: the NaN guard fails the
    stage instead of exporting a broken model; FAILED; no Model."""
    exc = train(penguins, "nan-loss", "modules/penguins_trainer.py", learning_rate=1e30)
    assert "diverged" in str(exc) or "NaN" in str(exc) or "nan" in str(exc), str(exc)
    assert_failed_nothing_live(penguins, "nan-loss")


def test_module_outside_the_pipeline_folder(penguins: PenguinsRun) -> None:
    """Inject: module_file ``../../etc/x.py``. Holds: refused as outside the pipeline's folder; FAILED; no Model."""
    exc = train(penguins, "outside", "../../etc/x.py")
    assert isinstance(exc, UserModuleError) and "outside the pipeline's folder" in str(exc)
    assert_failed_nothing_live(penguins, "outside")
