"""Pusher executor and versioned pushes: blessing checks, atomic numbered versions, pruning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.executors import pusher
from airflow_provider_mlpipe.runtime.serving import model_versions
from tests.runtime.model_fixtures import make_context
from tests.support.trees import tree_digest

pytestmark = pytest.mark.runtime


def _model(root: Path, marker: bytes = b"graph", model_id: int = 5) -> ArtifactRef:
    serving = root / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(marker)
    (serving / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(2048))
    (serving / "variables" / "variables.index").write_bytes(b"index")
    return ArtifactRef(type="Model", uri=str(root), id=model_id, properties={"span": 20240105})


def _blessing(root: Path, blessed: bool, model_id: int = 5) -> ArtifactRef:
    root.mkdir(parents=True)
    (root / ("BLESSED" if blessed else "NOT_BLESSED")).write_text("accuracy 0.41 is below the lower bound 0.8\n")
    props = {"blessed": int(blessed), "current_model_id": model_id}
    return ArtifactRef(type="ModelBlessing", uri=str(root), id=9, properties=props)


def _push(tmp_path: Path, model: ArtifactRef, blessing: ArtifactRef, name: str, **params):
    ctx = make_context(
        tmp_path / name,
        "pusher",
        {"pushed_model": "PushedModel"},
        params={"destination": str(tmp_path / "serving"), **params},
        inputs={"model": [model], "blessing": [blessing]},
    )
    summary = pusher.execute(ctx)
    return summary, ctx.output("pushed_model")


def test_blessed_models_become_consecutive_versions(tmp_path):
    model = _model(tmp_path / "model")
    blessing = _blessing(tmp_path / "blessing", True)
    first, out = _push(tmp_path, model, blessing, "a")
    second, _ = _push(tmp_path, model, blessing, "b")
    serving = tmp_path / "serving"
    assert (first["version"], second["version"]) == (1, 2)
    # No temporary folder left behind; beside the versions only their records (which span each one holds).
    assert sorted(os.listdir(serving)) == [model_versions.VERSION_RECORDS, "1", "2"]
    assert tree_digest(serving / "1") == tree_digest(Path(model.uri) / "Format-Serving")
    assert out.external_uri == str(serving / "1")
    assert out.properties == {
        "pushed": 1,
        "version": 1,
        "destination": str(serving),
        "push_policy": "newest_span_only",
        "source_model_id": 5,
        "blessing_id": 9,
        "span": 20240105,
    }
    record = json.loads(Path(out.path, "push.json").read_text())
    assert record["version"] == 1 and record["uri"] == str(serving / "1")


def test_unblessed_model_is_refused_and_nothing_changes(tmp_path):
    model = _model(tmp_path / "model")
    _push(tmp_path, model, _blessing(tmp_path / "good", True), "a")
    before = tree_digest(tmp_path / "serving")
    with pytest.raises(pusher.NotBlessedError, match=r"NOT_BLESSED.*lower bound"):
        _push(tmp_path, model, _blessing(tmp_path / "bad", False), "b")
    assert tree_digest(tmp_path / "serving") == before


def test_blessing_property_and_marker_must_agree(tmp_path):
    model = _model(tmp_path / "model")
    blessing = _blessing(tmp_path / "blessing", True)
    blessing.properties["blessed"] = 0
    with pytest.raises(pusher.NotBlessedError, match="not marked blessed"):
        _push(tmp_path, model, blessing, "a")
    assert not (tmp_path / "serving").exists()


def test_blessing_of_another_model_is_refused(tmp_path):
    model = _model(tmp_path / "model", model_id=5)
    with pytest.raises(pusher.NotBlessedError, match="model 6"):
        _push(tmp_path, model, _blessing(tmp_path / "blessing", True, model_id=6), "a")


def test_keep_versions_prunes_the_oldest(tmp_path):
    model = _model(tmp_path / "model")
    blessing = _blessing(tmp_path / "blessing", True)
    for name in "abc":
        _push(tmp_path, model, blessing, name)
    summary, _ = _push(tmp_path, model, blessing, "d", keep_versions=2)
    assert summary["version"] == 4 and summary["pruned"] == [1, 2]
    assert sorted(os.listdir(tmp_path / "serving")) == [model_versions.VERSION_RECORDS, "3", "4"]
    assert sorted(os.listdir(tmp_path / "serving" / model_versions.VERSION_RECORDS)) == ["3.json", "4.json"]


def test_a_version_taken_concurrently_is_not_overwritten(tmp_path):
    source = Path(_model(tmp_path / "model").uri) / "Format-Serving"
    other = Path(_model(tmp_path / "other", marker=b"other").uri) / "Format-Serving"
    destination = tmp_path / "serving"
    model_versions.push_version(str(other), str(destination))
    # Another pusher published version 1 between our listing and our rename: the rename must not replace it.
    assert model_versions._push_local(str(source), str(destination), 1) is False
    assert (destination / "1" / "saved_model.pb").read_bytes() == b"other"
    assert model_versions.list_versions(str(destination)) == [1]
    assert model_versions.read_version_record(str(destination), 1)["version"] == 1  # the winner's record stays
    version, _ = model_versions.push_version(str(source), str(destination))
    assert version == 2


def test_relative_destination_resolves_against_the_pipeline_folder(tmp_path):
    model = _model(tmp_path / "model")
    ctx = make_context(
        tmp_path / "ctx",
        "pusher",
        {"pushed_model": "PushedModel"},
        params={"destination": "serving/penguins"},
        inputs={"model": [model], "blessing": [_blessing(tmp_path / "blessing", True)]},
    )
    ctx.spec_dir = str(tmp_path / "spec")
    summary = pusher.execute(ctx)
    assert summary["uri"] == str(tmp_path / "spec" / "serving" / "penguins" / "1")


def test_a_directory_without_a_saved_model_is_not_pushed(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(model_versions.PushError, match=r"saved_model\.pb"):
        model_versions.push_version(str(tmp_path / "empty"), str(tmp_path / "serving"))
