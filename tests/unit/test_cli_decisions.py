"""``mlpipe bless`` and ``mlpipe baseline reset``: their arguments, and what they say, through the real runtime.

The commands run in this process (``cli.main``), each launching the real runtime as a child. The MLMD store is the
embedded default (an SQLite file under ``$AIRFLOW_HOME``); a small lineage (span 1 blessed, span 2 NOT_BLESSED
against it) is written by the runtime tests' own helper, in the runtime environment.
"""

from __future__ import annotations

import getpass
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_mlpipe.cli.main import main
from tests.support.airflow_env import mlmd_dump
from tests.support.paths import REPO

RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__MLPIPE__RUNTIME_PYTHON": str(RUNTIME_PYTHON),
        "MLPIPE_RUNTIME_PYTHON": str(RUNTIME_PYTHON),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRFLOW_CONN_MLMD_DEFAULT", raising=False)
    return values


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def mlpipe(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def mlmd_path(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"], "mlpipe", "mlmd.sqlite")


def write_lineage(env: dict[str, str]) -> dict[str, int]:
    """Span 1's model blessed, span 2's NOT_BLESSED, span 3's not evaluated yet, in the pipeline ``churn``."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tests.runtime.test_baseline_decisions import Lineage, three_spans\n"
        "lineage = Lineage(Path(sys.argv[1]))\n"
        "models = three_spans(lineage)\n"
        "print(json.dumps({f'm{i}': m.id for i, m in enumerate(models, 1)}))\n"
    )
    folder = mlmd_path(env).parent
    folder.mkdir(parents=True)
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", script, str(folder)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bless", "churn", "--reason", "x"], "the following arguments are required: --model"),
        (["bless", "churn", "--model", "7"], "the following arguments are required: --reason"),
        (["baseline"], "the following arguments are required: ACTION"),
        (["baseline", "reset", "churn"], "the following arguments are required: --reason"),
        (["baseline", "reset", "churn", "--reason", "x", "--from-span", "soon"], "invalid int value: 'soon'"),
    ],
)
def test_missing_or_malformed_arguments_are_usage_errors(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    proc = mlpipe(capsys, *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_an_empty_reason_is_refused_before_anything_runs(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    proc = mlpipe(capsys, "bless", "churn", "--model", "7", "--reason", "  ")
    assert proc.returncode == 2
    assert proc.stderr == "mlpipe bless: --reason must say why; it is recorded with the decision.\n"
    assert not mlmd_path(env).exists()


def test_what_cannot_be_done_is_one_sentence_from_the_runtime(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = write_lineage(env)
    cases = [
        (["bless", "churn", "--model", "999"], "mlpipe bless: There is no artifact 999 in ML Metadata.\n"),
        (
            ["bless", "churn", "--model", "nightly"],
            "mlpipe bless: 'nightly' is neither a Model artifact id nor a run id of the pipeline churn.\n",
        ),
        (["bless", "other", "--model", str(ids["m2"])], f"mlpipe bless: Model {ids['m2']} belongs to the pipeline "
         "churn, not to other.\n"),
        (
            ["baseline", "reset", "other"],
            "mlpipe baseline reset: The pipeline other has no model in ML Metadata yet, so it has no baseline to "
            "reset.\n",
        ),
    ]  # fmt: skip
    for args, message in cases:
        proc = mlpipe(capsys, *args, "--reason", "because")
        assert (proc.returncode, proc.stderr) == (1, message), args


def test_bless_then_reset_record_who_and_why_and_say_what_happens_next(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = write_lineage(env)
    proc = mlpipe(capsys, "bless", "churn", "--model", "run-2", "--reason", "labels re-coded", "--user", "alice")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Blessed model {ids['m2']} (span 2) of churn by override, recorded as MLMD ")
    assert proc.stdout.endswith("it is the baseline of the next run.\n")

    again = mlpipe(capsys, "bless", "churn", "--model", str(ids["m2"]), "--reason", "twice")
    assert again.returncode == 1 and again.stderr.startswith(f"mlpipe bless: Model {ids['m2']} is already blessed")

    reset = mlpipe(capsys, "baseline", "reset", "churn", "--reason", "new label", "--from-span", "3")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.startswith("Reset the baseline of churn from span 3, recorded as MLMD execution ")

    dump = mlmd_dump(mlmd_path(env))
    [override] = [e for e in dump["executions"] if e["type"] == "mlpipe.Override"]
    assert override["properties"]["user"] == "alice" and override["properties"]["reason"] == "labels re-coded"
    assert override["properties"]["model_run_id"] == "run-2"
    [reset_run] = [e for e in dump["executions"] if e["type"] == "mlpipe.BaselineReset"]
    assert reset_run["properties"]["user"] == getpass.getuser()  # the login name, when --user is not given
    assert reset_run["properties"]["span"] == 3
