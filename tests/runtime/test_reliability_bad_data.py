"""Bad data through the penguins data stages (real runner, MLMD SQLite), validated against a pinned schema.

Span 1 is good; its inferred schema is pinned as the curated ``schema_file`` (as a team does once it reviewed it).
Each bad span then either fails ExampleGen with a ValueError naming the file and the problem, or yields anomalies
that the ``fail`` data gate blocks (``blessed`` 0, ERROR anomalies). Nothing reaches the Pusher in any case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from tests.reliability.penguins_runtime import PenguinsRun
from tests.support.paths import REPO

pytestmark = pytest.mark.runtime
GOOD = (REPO / "dags" / "data" / "penguins" / "span-2024-01-02.csv").read_text(encoding="utf-8")


def drop_column(text: str, name: str) -> str:
    rows = [line.split(",") for line in text.strip().splitlines()]
    index = rows[0].index(name)
    return "\n".join(",".join(r[:index] + r[index + 1 :]) for r in rows) + "\n"


def null_column(text: str, name: str) -> str:
    rows = [line.split(",") for line in text.strip().splitlines()]
    index = rows[0].index(name)
    return "\n".join(",".join(r[:index] + ([""] if i else [name]) + r[index + 1 :]) for i, r in enumerate(rows)) + "\n"


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> PenguinsRun:
    run = PenguinsRun(tmp_path_factory.mktemp("bad-data"))
    spec_dir = run.root / "dags"
    shutil.copytree(Path(run.spec_dir) / "data", spec_dir / "data")
    run.spec_dir = str(spec_dir)
    good = run.data_stages(day=1)
    assert good["anomalies"].properties["blessed"] == 1
    (spec_dir / "schemas").mkdir()
    shutil.copyfile(Path(good["schema"].uri, "schema.pbtxt"), spec_dir / "schemas" / "penguins.pbtxt")
    run.params["schema_gen"] = {"schema_file": "schemas/penguins.pbtxt"}
    return run


def run_bad_span(run: PenguinsRun, name: str, content: bytes):
    folder = run.root / "bad" / name
    folder.mkdir(parents=True)
    (folder / "span-2024-01-02.csv").write_bytes(content)
    params = {**run.params["example_gen"]}
    params["input"] = {**params["input"], "pattern": str(folder / "span-{YYYY}-{MM}-{DD}.csv")}
    return run.data_stages(day=2, run_id=f"bad-{name}", example_gen=params)


def gate_blocks(anomalies_uri: str) -> list[dict]:
    """The data gate's rule (``sensors/gates.blocking_anomalies`` with min_severity ERROR): ERROR entries block."""
    report = json.loads(Path(anomalies_uri, "anomalies.json").read_text())
    assert report["blessed"] is False
    return [a for a in report["anomalies"] if a["severity"] == "ERROR"]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty", b"", "is empty"),
        ("non_utf8", GOOD.replace("Torgersen", "Torg\udce9rsen", 1).encode("utf-8", "surrogateescape"), "UTF-8"),
        ("header_only", GOOD.splitlines()[0].encode() + b"\n", "no rows"),
    ],
)
def test_unreadable_span_fails_example_gen(penguins: PenguinsRun, name: str, content: bytes, problem: str) -> None:
    """Inject: an empty file, non-UTF-8 bytes, a header without rows. Holds: ExampleGen raises ValueError naming the
    file and the problem; its execution is FAILED; no Examples of the span are recorded."""
    with pytest.raises(ValueError, match=problem) as err:
        run_bad_span(penguins, name, content)
    assert f"{name}/span-2024-01-02.csv" in str(err.value)
    ctx = penguins.client.store.get_context_by_type_and_name("pipeline_run", f"penguins.bad-{name}")
    [execution] = penguins.client.store.get_executions_by_context(ctx.id)
    assert execution.last_known_state == pb.Execution.FAILED
    assert penguins.client.store.get_artifacts_by_context(ctx.id) == []


@pytest.mark.parametrize(
    ("name", "make", "feature", "kind"),
    [
        ("missing_label", lambda: drop_column(GOOD, "species"), "species", "SCHEMA_MISSING_COLUMN"),
        ("semicolons", lambda: GOOD.replace(",", ";"), None, None),
        ("all_null", lambda: null_column(GOOD, "body_mass_g"), "body_mass_g", None),
    ],
)
def test_bad_span_is_an_anomaly_the_gate_blocks(penguins: PenguinsRun, name, make, feature, kind) -> None:
    """Inject: the label column dropped, a semicolon-delimited file, an all-null column. Holds: ExampleValidator
    reports ERROR anomalies against the pinned schema (the named feature and TFDV reason where given), so the
    ``fail`` data gate stops the run before Transform; no Model or PushedModel exists."""
    out = run_bad_span(penguins, name, make().encode())
    blocking = gate_blocks(out["anomalies"].uri)
    assert blocking, f"{name}: nothing would block the gate"
    if feature:
        assert feature in {a["feature"] for a in blocking}, blocking
    if kind:
        assert kind in {a["type"] for a in blocking}, blocking
    assert penguins.client.store.get_artifacts_by_type("Model") == []
    assert penguins.client.store.get_artifacts_by_type("PushedModel") == []


def test_huge_single_row(penguins: PenguinsRun) -> None:
    """Inject: one row whose ``sex`` field is 50 MB. Holds: either ExampleGen refuses the file by name, or the row
    is ingested and the validator flags ``sex`` (an unknown, huge category) as an ERROR the gate blocks."""
    lines = GOOD.splitlines()
    huge = lines[1].rsplit(",", 2)
    lines.insert(2, f"{huge[0]},{'x' * (50 * 1024 * 1024)},{huge[2]}")
    try:
        out = run_bad_span(penguins, "huge_row", ("\n".join(lines) + "\n").encode())
    except ValueError as exc:
        assert "huge_row/span-2024-01-02.csv" in str(exc)
        return
    assert "sex" in {a["feature"] for a in gate_blocks(out["anomalies"].uri)}
