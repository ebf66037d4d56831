"""A small pipeline for the UI tests: real MLMD lineage, real artifact files, StageResult XComs, no TensorFlow.

Each task hands one stage to the runtime venv (this same file run as a script), which records the execution
in MLMD the way the runner does (three contexts, INPUT/OUTPUT events, LIVE artifacts, CACHED executions with
``cached_from``) and writes the files the UI reads (``summary.json``, ``stats.html``, ``anomalies.json``,
``metrics.json``, ``plots.json``, ``blessing.json``, ``push.json``). Figures are computed from the Palmer Penguins
rows of the span with a nearest-centroid "model", so they change with the data; the plots are those of its
Adelie-or-not score, for the candidate and the baseline model. ``dag_run.conf`` may set
``{"shuffle_labels": true}`` (a worse model, not blessed) or ``{"drop_feature": "<name>"}`` (a schema anomaly).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

PIPELINE = "penguins_ui"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CHAIN = [
    ("example_gen", "ExampleGen", {}, [("examples", "Examples")]),
    ("statistics_gen", "StatisticsGen", {"examples": "example_gen"}, [("statistics", "ExampleStatistics")]),
    ("schema_gen", "SchemaGen", {"statistics": "statistics_gen"}, [("schema", "Schema")]),
    (
        "example_validator",
        "ExampleValidator",
        {"statistics": "statistics_gen", "schema": "schema_gen"},
        [("anomalies", "ExampleAnomalies")],
    ),
    ("transform", "Transform", {"schema": "schema_gen"}, [("transform_graph", "TransformGraph")]),
    (
        "trainer",
        "Trainer",
        {"examples": "example_gen", "transform_graph": "transform"},
        [("model", "Model")],
    ),
    (
        "evaluator",
        "Evaluator",
        {"examples": "example_gen", "model": "trainer"},
        [("evaluation", "ModelEvaluation"), ("blessing", "ModelBlessing")],
    ),
    ("pusher", "Pusher", {"model": "trainer", "blessing": "evaluator"}, [("pushed_model", "PushedModel")]),
]


# ----- runtime side (runs in .venv-runtime) --------------------------------------------------------------
def _rows(req: dict[str, Any]) -> list[dict[str, Any]]:
    import csv

    with open(req["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = random.Random(req["span"])
    picked = rng.sample(rows, 240)
    drop = req["conf"].get("drop_feature")
    for row in picked:
        for key in NUMERIC:
            row[key] = float(row[key]) if row[key] not in ("", "NA") else None
        if drop:
            row.pop(drop, None)
    return picked


def _split(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"train": rows[::3] + rows[1::3], "eval": rows[2::3]}


# The categorical features' drift against the day before's sample, as the ExampleValidator records it.
DRIFT_THRESHOLDS = {"island": 0.03}


def _drift_scores(rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    scores = {}
    for name in ("island", "sex", "species"):
        values = {r.get(name) for r in rows + before}
        share = {
            v: (sum(r.get(name) == v for r in rows) / len(rows), sum(r.get(name) == v for r in before) / len(before))
            for v in values
        }
        linf = max(abs(now - then) for now, then in share.values())
        scores[name] = {"comparator": "linf", "score": round(linf, 6), "threshold": DRIFT_THRESHOLDS.get(name)}
    return scores


def _buckets(values: list[float], count: int = 10) -> list[dict[str, float]]:
    """Equal-width buckets from min to max, the last one closed, as TFDV's standard histogram."""
    low, high = min(values), max(values)
    width = (high - low) / count or 1.0
    counts = [0] * count
    for v in values:
        counts[min(int((v - low) / width), count - 1)] += 1
    return [{"low": low + i * width, "high": low + (i + 1) * width, "count": n} for i, n in enumerate(counts)]


def _feature_stats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in [*NUMERIC, "island", "sex", "species"]:
        values = [r.get(name) for r in rows]
        present = [v for v in values if v not in (None, "", "NA")]
        entry: dict[str, Any] = {"name": name, "count": len(present), "missing": len(values) - len(present)}
        if name in NUMERIC and present:
            mean = sum(present) / len(present)
            std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
            entry.update(type="FLOAT", mean=round(mean, 3), std_dev=round(std, 3), min=min(present), max=max(present))
            entry["histogram"] = _buckets(present)
        else:
            tops = sorted({v: present.count(v) for v in present}.items(), key=lambda item: (-item[1], item[0]))
            top_values = [{"value": v, "count": n} for v, n in tops]
            entry.update(type="STRING", unique=len(set(present)), top_values=top_values)
        out.append(entry)
    return out


def _error_cost(model: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    return 10.0 * round((1 - _accuracy(model, rows)) * len(rows))


def _accuracy(model: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    hits = 0
    for row in rows:
        best = min(
            model["centroids"],
            key=lambda s: sum(
                ((row[k] - model["centroids"][s][k]) / model["scale"][k]) ** 2 for k in model["features"]
            ),
        )
        hits += best == row["species"]
    return round(hits / max(len(rows), 1), 4)


def _execute(stage: str, req: dict[str, Any], out: dict[str, Path]) -> tuple[dict[str, dict[str, Any]], dict]:
    """Writes the stage's files under ``out[slot]``; returns (properties per slot, summary)."""
    span, conf = req["span"], req["conf"]
    inputs = req["inputs"]
    splits = _split(_rows(req))
    if stage == "example_gen":
        for name, rows in splits.items():
            Path(out["examples"], f"Split-{name}").mkdir(parents=True)
            Path(out["examples"], f"Split-{name}", "data.json").write_text(json.dumps(rows))
        counts = {k: len(v) for k, v in splits.items()}
        return {"examples": {"span": span, "split_names": list(splits), "row_counts": counts}}, {"rows": counts}
    if stage == "statistics_gen":
        summary: dict[str, Any] = {"span": span, "splits": {}}
        for name, rows in splits.items():
            feats = _feature_stats(rows)
            summary["splits"][name] = {"num_examples": len(rows), "features": feats}
            Path(out["statistics"], f"Split-{name}").mkdir(parents=True)
            cells = "".join(f"<tr><td>{f['name']}</td><td>{f['count']}</td></tr>" for f in feats)
            html = f"<html><body><h3>Split {name}</h3><table id='facets'>{cells}</table></body></html>"
            Path(out["statistics"], f"Split-{name}", "stats.html").write_text(html)
        Path(out["statistics"], "summary.json").write_text(json.dumps(summary))
        counts = {k: len(v) for k, v in splits.items()}
        return {"statistics": {"span": span, "split_names": list(splits), "num_examples": counts}}, {"rows": counts}
    if stage == "schema_gen":
        stats = json.loads(Path(inputs["statistics"][0]["uri"], "summary.json").read_text())
        features = [f["name"] for f in stats["splits"]["train"]["features"] if f["count"]]
        Path(out["schema"], "schema.pbtxt").write_text("".join(f'feature {{ name: "{f}" }}\n' for f in features))
        diff = [{"feature": conf["drop_feature"], "change": "removed"}] if conf.get("drop_feature") else []
        return {"schema": {"source": "inferred", "diff": diff}}, {"features": len(features)}
    if stage == "example_validator":
        stats = json.loads(Path(inputs["statistics"][0]["uri"], "summary.json").read_text())
        anomalies = []
        for split, data in stats["splits"].items():
            for feat in data["features"]:
                if feat["count"] == 0:
                    desc = "The feature is in the schema but every value is missing."
                    anomalies.append(
                        dict(
                            split=split,
                            feature=feat["name"],
                            severity="ERROR",
                            kind="schema",
                            short_description="Column dropped",
                            description=desc,
                        )
                    )
                elif feat["missing"]:
                    desc = f"{feat['missing']} of {data['num_examples']} examples lack the feature."
                    anomalies.append(
                        dict(
                            split=split,
                            feature=feat["name"],
                            severity="WARNING",
                            kind="schema",
                            short_description="Missing values",
                            description=desc,
                        )
                    )
        counts: dict[str, int] = {}
        for item in anomalies:
            counts[item["severity"]] = counts.get(item["severity"], 0) + 1
        blessed = "ERROR" not in counts
        body = {
            "blessed": blessed,
            "span": span,
            "counts": counts,
            "anomalies": anomalies,
            "features": sorted({a["feature"] for a in anomalies}),
        }
        Path(out["anomalies"], "anomalies.json").write_text(json.dumps(body))
        props = {"blessed": int(blessed), "anomaly_count": len(anomalies), "span": span, "severity_counts": counts}
        props["drift_scores"] = _drift_scores(splits["train"], _split(_rows({**req, "span": span - 1}))["train"])
        return {"anomalies": props}, {"anomaly_count": len(anomalies)}
    if stage == "transform":
        Path(out["transform_graph"], "transform_fn").mkdir(parents=True)
        return {"transform_graph": {}}, {}
    if stage == "trainer":
        feats = [f for f in NUMERIC if all(r.get(f) is not None for r in splits["train"][:1])]
        train = [r for r in splits["train"] if all(r.get(f) is not None for f in feats)]
        labels = [r["species"] for r in train]
        if conf.get("shuffle_labels"):
            random.Random(0).shuffle(labels)
        centroids: dict[str, dict[str, float]] = {}
        for species in sorted(set(labels)):
            members = [r for r, lab in zip(train, labels, strict=True) if lab == species]
            centroids[species] = {f: sum(r[f] for r in members) / len(members) for f in feats}
        scale = {}
        for f in feats:
            mean = sum(r[f] for r in train) / len(train)
            scale[f] = math.sqrt(sum((r[f] - mean) ** 2 for r in train) / len(train)) or 1.0
        model = {"features": feats, "centroids": centroids, "scale": scale}
        Path(out["model"], "model.json").write_text(json.dumps(model))
        return {"model": {"span": span, "train_steps": len(train)}}, {"train_rows": len(train)}
    if stage == "evaluator":
        model = json.loads(Path(inputs["model"][0]["uri"], "model.json").read_text())
        rows = [r for r in splits["eval"] if all(r.get(f) is not None for f in model["features"])]
        parts = {"Overall": rows}
        for island in sorted({r["island"] for r in rows}):
            parts[f"island={island}"] = [r for r in rows if r["island"] == island]
        slices = [
            {"slice": name, "metrics": {"accuracy": _accuracy(model, part), "example_count": len(part)}}
            for name, part in parts.items()
        ]
        baseline = req.get("baseline")
        base_model = json.loads(Path(baseline["uri"], "model.json").read_text()) if baseline else None
        # The repository's root: tests.support is not installed in the runtime venv that runs this file.
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.support.ui_fixture_plots import adelie_plots

        base_plots = adelie_plots(base_model, parts) if base_model else None
        plots = {"kind": "binary", "candidate": adelie_plots(model, parts), "baseline": base_plots}
        Path(out["evaluation"], "plots.json").write_text(json.dumps(plots))
        thresholds = [{"metric": "accuracy", "lower_bound": 0.8, "change": {"direction": "higher", "absolute": -0.1}}]
        overall = slices[0]["metrics"]["accuracy"]
        failed = []
        if overall < 0.8:
            failed.append({"metric": "accuracy", "slice": "Overall", "value": overall, "threshold": "lower_bound 0.8"})
        if baseline and overall < baseline["accuracy"] - 0.1:
            failed.append(
                {
                    "metric": "accuracy",
                    "slice": "Overall",
                    "value": overall,
                    "threshold": f"change > -0.1 vs baseline {baseline['accuracy']}",
                }
            )
        blessed = not failed
        reason = (
            "all thresholds passed"
            if blessed
            else "; ".join(f"{f['metric']} {f['value']} fails {f['threshold']}" for f in failed)
        )
        base_block = (
            {
                "model_id": baseline["model_id"],
                "slices": [{"slice": "Overall", "metrics": {"accuracy": baseline["accuracy"]}}],
            }
            if baseline
            else None
        )
        # Business KPIs in the Evaluator's shape: a wrong species costs 10.
        kpis: dict[str, Any] = {"module": "kpis.py", "declared": ["error_cost"], "baseline": None}
        kpis["slices"] = [{"slice": n, "metrics": {"error_cost": _error_cost(model, p)}} for n, p in parts.items()]
        if base_model:
            base_kpis = [{"slice": n, "metrics": {"error_cost": _error_cost(base_model, p)}} for n, p in parts.items()]
            kpis["baseline"] = {"model_id": baseline["model_id"], "slices": base_kpis}
        Path(out["evaluation"], "metrics.json").write_text(
            json.dumps({"slices": slices, "thresholds": thresholds, "baseline": base_block, "kpis": kpis})
        )
        model_id = inputs["model"][0]["id"]
        bless = {
            "blessed": blessed,
            "reason": reason,
            "failed": failed,
            "current_model_id": model_id,
            "baseline_model_id": baseline["model_id"] if baseline else None,
        }
        Path(out["blessing"], "blessing.json").write_text(json.dumps(bless))
        Path(out["blessing"], "BLESSED" if blessed else "NOT_BLESSED").write_text(reason)
        props = {"blessed": int(blessed), "current_model_id": model_id, "reason": reason}
        if baseline:
            props["baseline_model_id"] = baseline["model_id"]
        return {"evaluation": {"span": span}, "blessing": props}, {"accuracy": overall, "blessed": blessed}
    if stage == "pusher":
        blessing = json.loads(Path(inputs["blessing"][0]["uri"], "blessing.json").read_text())
        if not blessing["blessed"]:  # the Pusher refuses an unblessed model even without a gate
            raise RuntimeError("The model is not blessed; nothing is pushed.")
        dest = Path(req["root"], "serving", PIPELINE)
        version = 1 + max((int(p.name) for p in dest.glob("*") if p.name.isdigit()), default=0)
        (dest / str(version)).mkdir(parents=True)
        model = Path(inputs["model"][0]["uri"], "model.json").read_bytes()
        # TF Serving's layout: the fixture "model" stands in the SavedModel file the push and rollback copy.
        (dest / str(version) / "saved_model.pb").write_bytes(model)
        record = {"version": version, "destination": str(dest), "source_model_id": inputs["model"][0]["id"]}
        Path(out["pushed_model"], "push.json").write_text(json.dumps(record))
        props = {"pushed": 1, **record, "blessing_id": inputs["blessing"][0]["id"]}
        return {"pushed_model": props}, {"version": version}
    raise ValueError(stage)


def runtime_main(stage: str, request_json: str) -> dict[str, Any]:
    from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, State, properties_of

    req = json.loads(request_json)
    client = MetadataClient()
    client.register_types()
    component = {s[0]: s[1] for s in CHAIN}[stage]
    contexts = client.lineage_contexts(PIPELINE, req["run_id"], stage)
    refs = [ArtifactRef.from_dict({**a, "name": slot}) for slot, arts in req["inputs"].items() for a in arts]
    props = {"pipeline": PIPELINE, "node_id": stage, "run_id": req["run_id"], "cache_key": f"{stage}:v1"}
    if stage == "evaluator":  # resolve the baseline: the newest blessed model of the pipeline, as the runtime does
        blessed = [a for a in client.live_artifacts(PIPELINE, "ModelBlessing") if properties_of(a).get("blessed")]
        if blessed:
            [model] = client.store.get_artifacts_by_id([properties_of(blessed[-1])["current_model_id"]])
            metrics = Path(blessed[-1].uri).parent / "evaluation" / "metrics.json"
            acc = json.loads(metrics.read_text())["slices"][0]["metrics"]["accuracy"]
            req["baseline"] = {"model_id": model.id, "uri": model.uri, "accuracy": acc}
    execution_id = client.start_execution(f"mlpipe.{component}", contexts, refs, props)
    if stage == "transform":  # the transform graph only depends on the schema: a cache hit after the first run
        earlier = [e for e in client.executions_in_context(contexts[2]) if e.last_known_state == State.COMPLETE]
        if earlier:
            outputs = client.outputs_of(earlier[0].id)
            client.finish_execution(execution_id, contexts, outputs, {"cached_from": earlier[0].id}, State.CACHED)
            return StageResult(stage, execution_id, True, outputs, {"cached_from": earlier[0].id}).to_dict()
    slots = {slot: Path(req["root"], PIPELINE, stage, str(execution_id), slot) for slot, _ in CHAIN_OUT[stage]}
    for path in slots.values():
        path.mkdir(parents=True)
    try:
        properties, summary = _execute(stage, req, slots)
    except Exception as exc:
        client.fail_execution(execution_id, str(exc))
        raise
    uris = {slot: str(path) for slot, path in slots.items()}
    if stage == "pusher":  # as the real Pusher: the PushedModel's URI is the served version directory
        pushed = properties["pushed_model"]
        uris["pushed_model"] = str(Path(pushed["destination"], str(pushed["version"])))
    outputs = {
        slot: [ArtifactRef(atype, uris[slot], name=slot, properties=properties[slot])]
        for slot, atype in CHAIN_OUT[stage]
    }
    client.finish_execution(execution_id, contexts, outputs, {"summary": summary})
    return StageResult(stage, execution_id, False, outputs, summary).to_dict()


def runtime_batch(runs_json: str) -> dict[str, dict[str, Any]]:
    """Whole runs in one process (for tests without Airflow): run_id -> task_id -> StageResult dict."""
    out: dict[str, dict[str, Any]] = {}
    for run in json.loads(runs_json):
        results: dict[str, Any] = {}
        for stage, _, upstream, _ in CHAIN:
            inputs = {slot: results[task]["outputs"][slot] for slot, task in upstream.items()}
            if stage == "pusher" and not inputs["blessing"][0]["properties"]["blessed"]:
                continue
            results[stage] = runtime_main(stage, json.dumps({**run, "inputs": inputs}))
        out[run["run_id"]] = results
    return out


CHAIN_OUT = {name: outs for name, _, _, outs in CHAIN}

if __name__ == "__main__":
    if sys.argv[1] == "--batch":
        print("RESULT " + json.dumps(runtime_batch(sys.argv[2]), default=str))
    else:
        print("RESULT " + json.dumps(runtime_main(sys.argv[1], sys.argv[2]), default=str))
else:  # ----- Airflow side ---------------------------------------------------------------------------------
    import pendulum
    from airflow.sdk import DAG

    def _run_stage(stage: str, upstream: dict[str, str], **context: Any) -> dict[str, Any]:
        from importlib.resources import files

        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python

        ti = context["ti"]
        inputs = {slot: ti.xcom_pull(task_ids=t, key="return_value")["outputs"][slot] for slot, t in upstream.items()}
        if stage == "pusher" and not inputs["blessing"][0]["properties"]["blessed"]:
            raise AirflowSkipException("The blessing gate holds the push: the model is not blessed.")
        logical = context["dag_run"].logical_date or context["dag_run"].run_after
        request = {
            "run_id": context["run_id"],
            "span": int(logical.strftime("%Y%m%d")),
            "conf": dict(context["dag_run"].conf or {}),
            "root": os.environ.get("MLPIPE_UI_FIXTURE_ROOT", "/tmp/mlpipe-ui-fixture"),
            "csv": str(files("palmerpenguins").joinpath("data/penguins.csv")),
            "inputs": inputs,
        }
        proc = subprocess.run(
            [resolve_runtime_python(), __file__, stage, json.dumps(request)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        if proc.returncode != 0:
            raise RuntimeError(f"{stage} failed: {proc.stderr[-500:]}")
        return json.loads(proc.stdout.split("RESULT ", 1)[1])

    from airflow.sdk import BaseOperator

    from airflow_provider_mlpipe.links.stage import MlpipeArtifactsLink, MlpipeRunViewLink

    class FixtureStageOperator(BaseOperator):
        """Carries the same extra links as MlpipeStageOperator, so the UI tests can follow them."""

        operator_extra_links = (MlpipeRunViewLink(), MlpipeArtifactsLink())

        def __init__(self, *, stage: str, upstream: dict[str, str], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stage, self.upstream = stage, upstream

        def execute(self, context: Any) -> dict[str, Any]:
            return _run_stage(self.stage, self.upstream, **context)

    with DAG(
        dag_id=PIPELINE,
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
    ):
        tasks = {}
        for name, _, upstream, _ in CHAIN:
            tasks[name] = FixtureStageOperator(task_id=name, stage=name, upstream=upstream)
            for task_id in upstream.values():
                tasks[task_id] >> tasks[name]
