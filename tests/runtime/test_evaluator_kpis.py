"""Business KPIs in the Evaluator: a user's kpis() per slice for the candidate and the baseline, the same on both
engines, judged by thresholds like metrics (a failure withholds the blessing and names the KPI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlpipe.runtime.evaluation import metric_config
from airflow_provider_mlpipe.runtime.evaluation.kpis import KpiError, KpiModule
from airflow_provider_mlpipe.runtime.executors import evaluator
from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams
from tests.runtime.model_fixtures import EVAL_PARAMS, make_context

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = pytest.mark.runtime

# A multi-class KPI module: a wrong species costs 10; the mean body mass shows the features are the slice's rows.
KPI_MODULE = """
import numpy as np


def kpis(features, labels, predictions):
    wrong = predictions.argmax(axis=1) != labels
    return {
        "error_cost": 10.0 * float(np.sum(wrong)),
        "examples": float(len(labels)),
        "mean_body_mass": float(np.nanmean(features["body_mass_g"])),
    }
"""


def _evaluate(tmp_path: Path, inputs, model, baseline=None, **params):
    spec_dir = tmp_path / "pipeline"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kpis.py").write_text(KPI_MODULE)
    ctx = make_context(
        tmp_path,
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params={**EVAL_PARAMS, "kpi_module": "kpis.py", **params},
        inputs={"examples": [inputs["examples"]], "model": [model]},
        resolved={"baseline_model": baseline},
    )
    ctx.spec_dir = str(spec_dir)
    summary = evaluator.execute(ctx)
    metrics = json.loads(Path(ctx.output("evaluation").path, "metrics.json").read_text())
    blessing = json.loads(Path(ctx.output("blessing").path, "blessing.json").read_text())
    return summary, metrics, blessing, ctx


def _by_slice(doc: dict) -> dict[str, dict[str, float]]:
    return {entry["slice"]: entry["metrics"] for entry in doc["slices"]}


def test_kpis_per_slice_on_both_engines(tmp_path, penguins_inputs, penguins_model, penguins_bad_model):
    fast = _evaluate(tmp_path / "fast", penguins_inputs, penguins_bad_model, penguins_model, engine="fast")
    tfma = _evaluate(tmp_path / "tfma", penguins_inputs, penguins_bad_model, penguins_model, engine="tfma")
    summary, metrics, blessing, ctx = fast
    kpis, values = metrics["kpis"], _by_slice(metrics)
    kpi_values = _by_slice(kpis)
    assert list(kpi_values) == list(values) == ["Overall", "island=Biscoe", "island=Dream", "island=Torgersen"]
    # the KPIs describe the metrics' own slice groups: same counts, and error cost = 10 * errors
    eval_rows = pq.read_table(Path(penguins_inputs["examples"].uri, "Split-eval")).to_pandas()
    for name, kpi in kpi_values.items():
        assert kpi["examples"] == values[name]["example_count"]
        assert math.isclose(kpi["error_cost"], 10.0 * kpi["examples"] * (1 - values[name]["accuracy"]), abs_tol=1e-3)
        rows = eval_rows if name == "Overall" else eval_rows[eval_rows["island"] == name.split("=")[1]]
        assert math.isclose(kpi["mean_body_mass"], float(np.nanmean(rows["body_mass_g"])))
    # the baseline is scored on the same groups; the diff is candidate minus baseline
    base, diff = _by_slice(kpis["baseline"]), _by_slice({"slices": kpis["baseline"]["diff"]})
    assert kpis["baseline"]["model_id"] == penguins_model.id
    for name, kpi in kpi_values.items():
        assert diff[name]["error_cost"] == pytest.approx(kpi["error_cost"] - base[name]["error_cost"])
    assert kpi_values["Overall"]["error_cost"] > base["Overall"]["error_cost"]  # the bad model errs more
    # both engines give the same KPIs, and MLMD holds the overall ones on the evaluation artifact
    assert tfma[1]["kpis"] == kpis and tfma[0]["engine"] == "tfma"
    assert ctx.output("evaluation").properties["kpis"] == kpi_values["Overall"] == summary["kpis"]
    assert blessing["blessed"] == tfma[2]["blessed"]


@pytest.mark.parametrize("engine", ["fast", "tfma"])
def test_a_kpi_threshold_withholds_the_blessing(tmp_path, penguins_inputs, penguins_model, penguins_bad_model, engine):
    kpis = [
        {"name": "error_cost", "threshold": {"change": {"direction": "lower_is_better", "absolute": 0.0}}},
        {"name": "examples", "threshold": {"lower_bound": 1, "slices": ["Overall"]}},
    ]
    params = {
        "engine": engine,
        "kpis": kpis,
        "metrics": [{"name": "accuracy", "class_name": "SparseCategoricalAccuracy"}],
    }
    summary, metrics, blessing, ctx = _evaluate(tmp_path, penguins_inputs, penguins_bad_model, penguins_model, **params)
    assert summary["blessed"] is False
    assert "KPI error_cost on Overall" in blessing["reason"]
    assert {f["metric"] for f in blessing["failed"]} == {"error_cost"}
    assert all(f["kpi"] is True and f["diff"] > 0 for f in blessing["failed"])
    marker = Path(ctx.output("blessing").path, "NOT_BLESSED")
    assert "KPI error_cost" in marker.read_text()
    assert [t["metric"] for t in metrics["thresholds"] if t.get("kpi")] == ["error_cost", "examples"]
    assert metrics["kpis"]["declared"] == ["error_cost", "examples"]


def test_kpi_value_thresholds_follow_the_metric_rules():
    spec = metric_config.eval_spec(
        EvaluatorParams.model_validate(
            {
                "label_key": "y",
                "kpi_module": "k.py",
                "kpis": [{"name": "cost", "threshold": {"upper_bound": 10, "min_examples": 5}}],
            }
        )
    )
    candidate = {"Overall": {"example_count": 20}, "a=1": {"example_count": 3}, "a=2": {"example_count": 8}}
    kpis = {"Overall": {"cost": 9.0}, "a=1": {"cost": 50.0}, "a=2": {"cost": 11.0}}
    failed = metric_config.validate(spec, metric_config.with_kpis(candidate, kpis), None)
    assert [(f["slice"], f["threshold"]) for f in failed] == [("a=2", "upper_bound 10.0")]  # a=1: too few examples
    assert metric_config.unjudged(spec, candidate) == [
        {"metric": "cost", "slice": "a=1", "examples": 3, "min_examples": 5}
    ]
    assert metric_config.reason(failed, False).startswith("KPI cost on a=2: 11.0000 fails upper_bound 10.0")


def test_kpis_must_return_every_declared_number():
    from airflow_provider_mlpipe.runtime.evaluation.fast_engine import Scored
    from airflow_provider_mlpipe.runtime.evaluation.fast_metrics import SliceInputs

    scored = Scored(SliceInputs(np.zeros((2, 1)), np.zeros((2, 1)), None), features={"x": np.array([1.0, 2.0])})
    groups = [("Overall", np.arange(2))]
    with pytest.raises(KpiError, match=r"returned no \['cost'\] on the slice Overall"):
        KpiModule(lambda f, y, p: {"other": 1.0}, "k.py", ["cost"]).by_slice(scored, groups)
    with pytest.raises(KpiError, match="a KPI is one number"):
        KpiModule(lambda f, y, p: {"cost": [1, 2]}, "k.py", ["cost"]).by_slice(scored, groups)
    with pytest.raises(KpiError, match="raised ZeroDivisionError on the slice Overall"):
        KpiModule(lambda f, y, p: {"cost": 1 / 0}, "k.py", []).by_slice(scored, groups)
    assert KpiModule(lambda f, y, p: {"cost": f["x"].sum()}, "k.py", ["cost"]).by_slice(scored, groups) == {
        "Overall": {"cost": 3.0}
    }
