"""The UI end to end: pipeline runs through Airflow, a real API server, headless Chromium through the Airflow UI.

By default the runs come from the real penguins pipeline of ``dags/`` (three spans) and, in the same Airflow, two
spans of the binary test pipeline (``tests/support/binary_penguins``), whose Evaluator plots ROC, precision-recall
and calibration curves; ``MLPIPE_UI_TEST_SOURCE=fixture`` uses the light UI fixture DAG instead
(``tests/dags/mlpipe_ui_fixture.py``: real MLMD lineage and the documented artifact files, plots included, no
TensorFlow). Screenshots land in ``.test-artifacts/ui/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from airflow_provider_mlpipe.ui.histograms import MAX_TOP_VALUES
from airflow_provider_mlpipe.ui.plots import MAX_CALIBRATION_POINTS, MAX_CURVE_POINTS
from tests.integration.ui_server import USERS, ApiServer, auth_env, start_api_server
from tests.support import binary_penguins
from tests.support.airflow_env import ARTIFACTS, REPO, RUNTIME_PYTHON, AirflowEnv, mlmd_dump
from tests.support.span_order import accept_stopped_run
from tests.support.trees import tree_checksums

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]
SHOTS = ARTIFACTS / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


IMPOSSIBLE_KPI = {"name": "error_cost", "threshold": {"upper_bound": -1.0}}  # a cost is never negative


@dataclass
class Scenario:
    dag_id: str
    dags_folder: Path
    runs: list[tuple[str, dict[str, Any] | None, bool]]  # logical date, conf, whether the run must succeed
    extra_env: dict[str, str]
    plots_dag: str  # a binary pipeline: its second run's view shows the candidate's and the baseline's curves
    plots_runs: tuple[tuple[str, dict[str, Any] | None], ...] = ()  # (logical date, conf) runs of plots_dag


def scenario(tmp: Path) -> Scenario:
    if os.environ.get("MLPIPE_UI_TEST_SOURCE", "penguins") == "fixture":
        runs = [("2024-01-01", None, True), ("2024-01-02", None, True), ("2024-01-03", {"shuffle_labels": True}, True)]
        extra = {"MLPIPE_UI_FIXTURE_ROOT": str(tmp / "root")}
        return Scenario("penguins_ui", REPO / "tests" / "dags", runs, extra, plots_dag="penguins_ui")
    # Span 2 drifts from span 1 (bill_length_mm), so the data gate stops it: the anomaly table has a row. Span 3
    # runs with relaxed drift thresholds (a stage override in dag_run.conf) and pushes a second version.
    relaxed = {"jsd": {"comparator": "jsd", "threshold": 0.9}, "linf": {"comparator": "linf", "threshold": 0.9}}
    conf = {"stages": {"example_validator": {"drift": {"bill_length_mm": relaxed["jsd"], "island": relaxed["linf"]}}}}
    runs = [("2024-01-01", None, True), ("2024-01-02", None, False), ("2024-01-03", conf, True)]
    extra = {"MLPIPE_PIPELINE_ROOT": str(tmp / "pipelines"), "MLPIPE_SERVING_DIR": str(tmp / "serving")}
    # The third binary run evaluates span 2 again (upstream stages are cache hits) with a KPI threshold no model
    # meets: its blessing gate (policy skip) withholds the push.
    kpi_gate = {"span": 20240102, "stages": {"evaluator": {"kpis": [IMPOSSIBLE_KPI]}}}
    binary_runs = (("2024-01-01", None), ("2024-01-02", None), ("2024-01-03", kpi_gate))
    return Scenario("penguins", penguins_and_binary_dags(tmp), runs, extra, binary_penguins.DAG_ID, binary_runs)


def penguins_and_binary_dags(tmp: Path) -> Path:
    """A copy of the bundled dags folder with the binary test pipeline added, so one Airflow serves both."""
    folder = tmp / "dags"
    shutil.copytree(REPO / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    binary_penguins.add_to_dags(folder)
    return folder


def binary_serving(env: AirflowEnv) -> Path:
    """The binary pipeline's push destination (its spec's ``${AIRFLOW_HOME}/mlpipe/serving/binary_penguins``)."""
    return env.home / "mlpipe" / "serving" / binary_penguins.DAG_ID


def runtime_has_rollback() -> bool:
    proc = subprocess.run(
        [RUNTIME_PYTHON, "-m", "airflow_provider_mlpipe.runtime", "rollback", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode == 0


def fake_runtime_python(tmp: Path) -> tuple[str, Path]:
    """Stands in for the runtime interpreter until `runtime rollback` exists: records its arguments."""
    calls = tmp / "rollback-calls.json"
    script = tmp / "fake-runtime-python"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "rolled back (fake runtime): $@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), calls


@dataclass
class Served:
    env: AirflowEnv
    server: ApiServer
    scenario: Scenario
    run_ids: list[str]
    rollback_calls: Path | None
    serving_before_last_plots_run: dict[str, str] | None = None  # plots_dag's serving folder, by file checksum


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ui-browser")
    sc = scenario(tmp)
    env = AirflowEnv(tmp / "home", sc.dags_folder, sc.extra_env)
    env.migrate()
    for date, conf, must_succeed in sc.runs:
        env.dags_test(sc.dag_id, date, conf=conf, check=must_succeed)
        if not must_succeed:  # a gate stopped it: accept that, or the next span's ordered stages wait for it
            accept_stopped_run(env, sc.dag_id)
    serving_before = None
    for date, conf in sc.plots_runs:
        serving_before = tree_checksums(binary_serving(env))
        env.dags_test(sc.plots_dag, date, conf=conf)
    server_env = auth_env(env.home)
    calls = None
    if not runtime_has_rollback():
        python, calls = fake_runtime_python(tmp)
        server_env["AIRFLOW__MLPIPE__RUNTIME_PYTHON"] = python
    server = start_api_server(env, server_env)
    try:
        yield Served(env, server, sc, env.run_ids(sc.dag_id), calls, serving_before)
    finally:
        server.stop()


def http(server: ApiServer, path: str, token: str | None = None, data: bytes | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(server.url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def q(**params: Any) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())


def stats_artifact(served: Served, run_id: str) -> dict[str, Any]:
    result = served.env.xcom(served.scenario.dag_id, "statistics_gen", run_id)
    return result["outputs"]["statistics"][0]


def test_endpoints_require_airflow_auth_and_refuse_path_tricks(served: Served) -> None:
    server, dag = served.server, served.scenario.dag_id
    run1, run3 = served.run_ids[0], served.run_ids[-1]
    stats = stats_artifact(served, run1)
    pages = [
        f"/mlpipe/run?{q(dag_id=dag, run_id=run1)}",
        f"/mlpipe/pipeline?{q(dag_id=dag)}",
        f"/mlpipe/stats?{q(dag_id=dag, run_id=run1, artifact_id=stats['id'], split='train')}",
        f"/mlpipe/artifact?{q(dag_id=dag, run_id=run1, artifact_id=stats['id'])}",
        f"/mlpipe/task?{q(dag_id=dag, run_id=run1, task_id='statistics_gen')}",
    ]
    for page in pages:
        assert http(server, page)[0] == 401, page
        assert http(server, page, token="not-a-jwt")[0] in (401, 403), page
    assert http(server, f"/mlpipe/rollback?{q(dag_id=dag)}", data=b"version=1&confirm=yes")[0] == 401

    admin, viewer = server.token("admin"), server.token("viewer")
    for page in pages:
        assert http(server, page, admin)[0] == 200, page
    assert http(server, pages[0], viewer)[0] == 200
    assert http(server, f"/mlpipe/rollback?{q(dag_id=dag)}", viewer, b"version=1&confirm=yes")[0] == 403

    status, body = http(server, pages[2], admin)
    assert status == 200 and body == Path(stats["uri"], "Split-train", "stats.html").read_text()
    other = stats_artifact(served, run3)["id"]
    for split, artifact_id in [("../../../../etc/passwd", stats["id"]), ("..", stats["id"]), ("train", other)]:
        path = f"/mlpipe/stats?{q(dag_id=dag, run_id=run1, artifact_id=artifact_id, split=split)}"
        assert http(server, path, admin)[0] == 404, (split, artifact_id)
    assert http(server, "/mlpipe/stats?path=../../etc/passwd", admin)[0] == 422


def test_stage_tasks_link_to_the_run_view_and_their_artifacts(served: Served) -> None:
    server, dag, run = served.server, served.scenario.dag_id, served.run_ids[0]
    status, body = http(
        server, f"/api/v2/dags/{dag}/dagRuns/{quote(run, safe='')}/taskInstances/evaluator/links", server.token()
    )
    assert status == 200, body
    links = json.loads(body)["extra_links"]
    assert links["mlpipe run view"].endswith(f"/dags/{dag}/runs/{quote(run, safe='')}/plugin/mlpipe-run")
    target = urlsplit(links["mlpipe artifacts"])  # relative, or absolute when [api] base_url is set
    status, page = http(server, f"{target.path}?{target.query}", server.token())
    assert status == 200 and "ModelBlessing" in page and "ModelEvaluation" in page


def anomaly_count(result: dict[str, Any] | None) -> int:
    if not result:
        return 0
    props = result["outputs"]["anomalies"][0]["properties"]
    return int(props.get("anomaly_count", 0))


def run_executions(served: Served, run_id: str) -> list[dict[str, Any]]:
    dump = mlmd_dump(served.env.mlmd_path)
    [ctx] = [c["id"] for c in dump["contexts"] if c["type"] == "pipeline_run" and c["name"].endswith(f".{run_id}")]
    return [e for e in dump["executions"] if ctx in e["contexts"]]


@contextmanager
def logged_in_page(server: ApiServer) -> Iterator[Any]:
    """A Chromium page logged in to the Airflow UI as admin."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            login(page, server)
            yield page
        finally:
            browser.close()


def login(page: Any, server: ApiServer, user: str = "admin") -> None:
    page.goto(server.url + "/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(USERS[user][1])
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=120_000)


def test_run_and_pipeline_views_in_chromium(served: Served) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    server, dag = served.server, served.scenario.dag_id
    # A run that evaluated a model (and pushed it, if any did), and a run whose validation found anomalies.
    xcom = served.env.xcom
    evaluated = [r for r in served.run_ids if xcom(dag, "evaluator", r)]
    pushed = [r for r in evaluated if xcom(dag, "pusher", r)]
    run2 = (pushed or evaluated)[-1]
    flagged = [r for r in served.run_ids if anomaly_count(xcom(dag, "example_validator", r)) > 0]
    assert flagged, "no run found anomalies; the anomaly table cannot be shown"
    metrics = json.loads(
        Path(xcom(dag, "evaluator", run2)["outputs"]["evaluation"][0]["uri"], "metrics.json").read_text()
    )
    blessing_uri = xcom(dag, "evaluator", run2)["outputs"]["blessing"][0]["uri"]
    blessing = json.loads(Path(blessing_uri, "blessing.json").read_text())
    summary = json.loads(Path(stats_artifact(served, run2)["uri"], "summary.json").read_text())
    with logged_in_page(server) as page:
        # The run view, as the "ML run" tab of the Airflow DAG run page.
        page.goto(f"{server.url}/dags/{dag}/runs/{quote(run2, safe='')}/plugin/mlpipe-run")
        run_view = page.frame_locator("iframe[title='ML run']")
        stats_table = run_view.locator("table.stats-table").first
        expect(stats_table).to_be_visible(timeout=120_000)
        first_feature = next(iter(summary["splits"]["train"]["features"]))
        first_feature = first_feature if isinstance(first_feature, str) else first_feature["name"]
        expect(stats_table.locator("td", has_text=first_feature).first).to_be_visible()
        accuracy = metrics["slices"][0]["metrics"]["accuracy"]
        cell = run_view.locator("#metrics-table td.metric[data-metric='accuracy']").first
        expect(cell).to_contain_text(f"{accuracy:.4g}")
        expect(run_view.locator("#verdict")).to_have_text("BLESSED" if blessing["blessed"] else "NOT BLESSED")
        node = run_view.locator("svg.lineage g.node.execution").first
        expect(node).to_be_visible()
        assert run_view.locator("svg.lineage g.node.execution").count() == len(run_executions(served, run2))
        page.screenshot(path=str(SHOTS / "run-view-in-airflow.png"))
        if flagged[-1] != run2:
            page.goto(f"{server.url}/dags/{dag}/runs/{quote(flagged[-1], safe='')}/plugin/mlpipe-run")
            run_view = page.frame_locator("iframe[title='ML run']")
        expect(run_view.locator("tr.anomaly").first).to_be_visible(timeout=120_000)
        page.goto(f"{server.url}/dags/{dag}/runs/{quote(run2, safe='')}/plugin/mlpipe-run")
        run_view = page.frame_locator("iframe[title='ML run']")
        # TFDV's own view of a split loads through the authenticated stats endpoint.
        with page.expect_response(lambda r: "/mlpipe/stats?" in r.url) as response:
            run_view.locator("details.tfdv summary").first.click()
        assert response.value.status == 200
        page.goto(f"{server.url}/mlpipe/run?{q(dag_id=dag, run_id=run2)}")
        page.screenshot(path=str(SHOTS / "run-view.png"), full_page=True)

        # The pipeline view, as the "ML pipeline" tab of the DAG page (a taller window shows all of it).
        page.set_viewport_size({"width": 1440, "height": 1500})
        page.goto(f"{server.url}/dags/{dag}/plugin/mlpipe-pipeline")
        pipeline_view = page.frame_locator("iframe[title='ML pipeline']")
        chart = pipeline_view.locator("svg.trend[aria-label='accuracy']")
        expect(chart).to_be_visible(timeout=120_000)
        assert chart.locator("circle.point").count() == len(evaluated)
        expect(pipeline_view.locator("#runs-table tr")).to_have_count(len(served.run_ids) + 1)
        page.screenshot(path=str(SHOTS / "pipeline-view-in-airflow.png"))
        page.goto(f"{server.url}/mlpipe/pipeline?{q(dag_id=dag)}")
        page.screenshot(path=str(SHOTS / "pipeline-view.png"), full_page=True)
        check_served_model_trend(served, page, evaluated)

        # Rollback: a button, an inline confirmation (no window.confirm in a sandboxed iframe), then a POST.
        page.goto(f"{server.url}/dags/{dag}/plugin/mlpipe-pipeline")
        pipeline_view = page.frame_locator("iframe[title='ML pipeline']")
        expect(pipeline_view.locator("#versions-table")).to_be_visible(timeout=120_000)
        if len(pushed) < 2:  # one pushed version: it serves, there is nothing to roll back to
            assert pipeline_view.locator("button[data-open]").count() == 0
            return
        pipeline_view.locator("button[data-open]").last.click()
        confirm = pipeline_view.locator(".confirm.open")
        expect(confirm).to_be_visible()
        version = confirm.locator("input[name=version]").get_attribute("value")
        confirm.locator("button[type=submit]").click()
        expect(pipeline_view.locator("#rollback-result")).to_contain_text("Rolled back", timeout=120_000)
        page.screenshot(path=str(SHOTS / "rollback-done.png"))
        if served.rollback_calls is None:  # the real command: the pipeline view shows the new version
            pipeline_view.locator("nav.top a").click()
            expect(pipeline_view.locator("#rollbacks")).to_contain_text("mlpipe.Rollback")
            expect(pipeline_view.locator("#versions-table")).to_contain_text(f"rollback to {version}")
            page.screenshot(path=str(SHOTS / "pipeline-after-rollback.png"))
    if served.rollback_calls is not None:  # the fake runtime: the command and its arguments are what we check
        [call] = served.rollback_calls.read_text().splitlines()
        assert call.startswith("-m airflow_provider_mlpipe.runtime rollback ") and f"--to {version}" in call
    else:  # the real command re-pointed serving and recorded an mlpipe.Rollback execution in MLMD
        dump = mlmd_dump(served.env.mlmd_path)
        rollbacks = [e for e in dump["executions"] if e["type"] == "mlpipe.Rollback"]
        assert [e["properties"]["rollback_of"] for e in rollbacks] == [int(version)]
        assert rollbacks[0]["state"] == "COMPLETE"


def served_evaluation(served: Served, run_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The properties and metrics.json of a run's served-model evaluation, or None when it has none."""
    outputs = served.env.xcom(served.scenario.dag_id, "evaluator", run_id)["outputs"]
    if "served_evaluation" not in outputs:  # the UI fixture DAG records no served model
        return None
    ref = outputs["served_evaluation"][0]
    return ref["properties"], json.loads(Path(ref["uri"], "metrics.json").read_text())


def check_served_model_trend(served: Served, page: Any, evaluated: list[str]) -> None:
    """The pipeline view (already open) plots each span's served model beside the candidate; a run view shows it."""
    from playwright.sync_api import expect

    records = [(run, found) for run in evaluated if (found := served_evaluation(served, run))]
    if not records:
        return
    scored = [(run, props, doc) for run, (props, doc) in records if doc["status"] == "scored"]
    assert scored, f"no run scored a served model: {[doc['reason'] for _, (_, doc) in records]}"
    trend = page.locator("#served-trend-accuracy-Overall")
    expect(trend).to_be_visible(timeout=60_000)
    titles = trend.locator("circle.point title").all_text_contents()
    for _, props, doc in scored:
        accuracy = next(s["metrics"]["accuracy"] for s in doc["slices"] if s["slice"] == "Overall")
        assert f"served model = {accuracy:.4g} (span {props['span']})" in titles, titles
        expect(trend.locator(".served-versions")).to_contain_text(f"{props['span']}: {doc['served_version']}")
    assert len([t for t in titles if t.startswith("candidate = ")]) == len(records)
    section = page.locator("#served-trends")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(SHOTS / "pipeline-view-served.png"))
    run, _, doc = scored[-1]
    page.goto(f"{served.server.url}/mlpipe/run?{q(dag_id=served.scenario.dag_id, run_id=run)}")
    expect(page.locator("#served-version")).to_have_text(str(doc["served_version"]), timeout=60_000)
    accuracy = next(s["metrics"]["accuracy"] for s in doc["slices"] if s["slice"] == "Overall")
    cell = page.locator("#served-table td.served-metric[data-metric='accuracy'][data-slice='Overall']")
    expect(cell).to_contain_text(f"{accuracy:.4g}")


def test_run_view_plots_the_candidate_beside_the_baseline_in_chromium(served: Served) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    server, dag = served.server, served.scenario.plots_dag
    run = served.env.run_ids(dag)[1]  # the second run: the first one's model is its baseline
    evaluation = served.env.xcom(dag, "evaluator", run)["outputs"]["evaluation"][0]["uri"]
    plots_file = Path(evaluation, "plots.json")
    assert plots_file.is_file(), f"the Evaluator of {dag} wrote no plots.json"
    plots = json.loads(plots_file.read_text())
    assert plots["kind"] == "binary" and plots["baseline"], "the second run's evaluation has no baseline plots"
    other = next(name for name in plots["candidate"] if name != "Overall")
    with logged_in_page(server) as page:
        page.goto(f"{server.url}/dags/{dag}/runs/{quote(run, safe='')}/plugin/mlpipe-run")
        run_view = page.frame_locator("iframe[title='ML run']")
        roc = run_view.locator("svg#roc-plot[data-slice='Overall']")
        expect(roc).to_be_visible(timeout=120_000)
        calibration = run_view.locator("svg#calibration-plot[data-slice='Overall']")
        expect(calibration).to_be_visible()
        for model in ("candidate", "baseline"):
            # The ROC curve starts and ends where plots.json does, thinned to at most MAX_CURVE_POINTS.
            curve = plots[model]["Overall"]["roc"]
            path = roc.locator(f"path.{model}")
            expect(path).to_have_count(1)
            assert path.get_attribute("data-first") == f"{curve['fpr'][0]!r},{curve['tpr'][0]!r}"
            assert path.get_attribute("data-last") == f"{curve['fpr'][-1]!r},{curve['tpr'][-1]!r}"
            assert 2 <= int(path.get_attribute("data-points")) <= MAX_CURVE_POINTS
            box = path.bounding_box()  # laid out by Chromium, not an empty path
            assert box is not None and box["width"] > 50 and box["height"] > 50
            # A small eval split has few calibration buckets: one point each, in order.
            buckets = plots[model]["Overall"]["calibration"]
            assert 0 < len(buckets) <= MAX_CALIBRATION_POINTS
            points = calibration.locator(f"circle.{model}")
            expect(points).to_have_count(len(buckets))
            for index in (0, len(buckets) - 1):
                point = points.nth(index)
                assert float(point.get_attribute("data-prediction")) == buckets[index]["mean_prediction"]
                assert float(point.get_attribute("data-label")) == buckets[index]["mean_label"]
            matrix = plots[model]["Overall"]["confusion_matrix"]["counts"]
            cells = run_view.locator(f"table#confusion-{model} td").all_inner_texts()
            assert [float(c) for c in cells] == [float(v) for row in matrix for v in row]
        expect(run_view.locator("svg#pr-plot path.baseline")).to_have_count(1)

        # Another slice, picked from the list: the page is rendered again for it.
        run_view.locator("form.slice-picker select").select_option(other)
        expect(run_view.locator(f"svg#roc-plot[data-slice='{other}']")).to_be_visible(timeout=60_000)

        page.goto(f"{server.url}/mlpipe/run?{q(dag_id=dag, run_id=run)}")
        page.locator("div.card", has=page.locator("#plots")).screenshot(path=str(SHOTS / "run-view-plots.png"))


def figure(value: float) -> str:
    """A count as the histograms' titles write it."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def present(entry: dict[str, Any]) -> float:
    """The examples with a value: StatisticsGen's ``present``, the UI fixture's ``count``."""
    return entry.get("present", entry.get("count"))


def summary_features(summary: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    features = summary["splits"][split]["features"]
    return features if isinstance(features, dict) else {f["name"]: f for f in features}


def test_run_view_draws_each_features_histogram_over_the_previous_span_in_chromium(served: Served) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    server, dag = served.server, served.scenario.dag_id
    run, before = served.run_ids[-1], served.run_ids[-2]
    stats, previous = stats_artifact(served, run), stats_artifact(served, before)
    features = summary_features(json.loads(Path(stats["uri"], "summary.json").read_text()), "train")
    old = summary_features(json.loads(Path(previous["uri"], "summary.json").read_text()), "train")
    numeric = next(name for name, f in features.items() if f.get("histogram") and old.get(name, {}).get("histogram"))
    categorical = next((name for name, f in features.items() if f.get("top_values")), None)
    with logged_in_page(server) as page:
        page.goto(f"{server.url}/dags/{dag}/runs/{quote(run, safe='')}/plugin/mlpipe-run")
        train = page.frame_locator("iframe[title='ML run']").locator("section.split[data-split='train']")
        chart = train.locator(f"svg.histogram[data-feature='{numeric}']")
        expect(chart).to_be_visible(timeout=120_000)
        buckets, entry = features[numeric]["histogram"], features[numeric]
        bars = chart.locator("rect.bar")
        expect(bars).to_have_count(len(buckets))
        assert [float(c) for c in bars.evaluate_all("els => els.map(e => e.dataset.count)")] == [
            b["count"] for b in buckets
        ]
        first_title = bars.first.locator("title").text_content()
        assert f"{figure(buckets[0]['count'])} of {figure(present(entry))} (" in first_title
        box = bars.first.bounding_box()  # laid out by Chromium inside the table cell
        assert box is not None and box["width"] > 2
        overlay = chart.locator("polyline.previous title").text_content()
        assert f"train, span {previous['properties']['span']} (dashed)" in overlay
        assert f"{figure(old[numeric]['histogram'][-1]['count'])} of {figure(present(old[numeric]))}" in overlay
        if categorical is not None:
            tops = features[categorical]["top_values"]
            expect(train.locator(f"svg.histogram[data-feature='{categorical}'] rect.bar")).to_have_count(
                min(len(tops), MAX_TOP_VALUES)
            )
        # The legend and the first split's table, in one picture (unscrolled: page and viewport coordinates agree).
        page.goto(f"{server.url}/mlpipe/run?{q(dag_id=dag, run_id=run)}")
        top = page.locator("p.legend").bounding_box()
        bottom = page.locator("section.split table.stats-table").first.bounding_box()
        assert top is not None and bottom is not None
        height = bottom["y"] + bottom["height"] - top["y"]
        clip = {"x": top["x"], "y": top["y"], "width": bottom["width"], "height": height}
        page.screenshot(path=str(SHOTS / "run-view-histograms.png"), clip=clip, full_page=True)


def binary_runs_or_skip(served: Served) -> list[str]:
    if served.scenario.plots_dag != binary_penguins.DAG_ID:
        pytest.skip("the light fixture pipeline computes no KPIs through the Evaluator")
    return served.env.run_ids(binary_penguins.DAG_ID)


def overall_kpis(served: Served, run_id: str) -> dict[str, float]:
    evaluation = served.env.xcom(binary_penguins.DAG_ID, "evaluator", run_id)["outputs"]["evaluation"][0]["uri"]
    return json.loads(Path(evaluation, "metrics.json").read_text())["kpis"]["slices"][0]["metrics"]


def test_a_kpi_threshold_failure_withholds_the_push(served: Served) -> None:
    env, dag = served.env, binary_penguins.DAG_ID
    *earlier, gated = binary_runs_or_skip(served)
    assert any(env.xcom(dag, "pusher", run) for run in earlier), "no earlier run pushed: nothing to keep unchanged"
    blessing_uri = env.xcom(dag, "evaluator", gated)["outputs"]["blessing"][0]["uri"]
    blessing = json.loads(Path(blessing_uri, "blessing.json").read_text())
    assert blessing["blessed"] is False
    assert blessing["reason"].startswith("KPI error_cost on Overall: ")
    assert "fails upper_bound -1.0" in blessing["reason"]
    assert {f["metric"] for f in blessing["failed"]} == {"error_cost"} and all(f["kpi"] for f in blessing["failed"])
    states = env.task_states(dag, gated)
    assert states["blessing_gate"] == "skipped" and states["pusher"] == "skipped"
    assert [s for t, s in states.items() if t not in ("blessing_gate", "pusher")] == ["success"] * (len(states) - 2)
    gate = [e for e in mlmd_dump(env.mlmd_path)["executions"] if e["type"] == "mlpipe.Gate"][-1]
    assert gate["properties"]["push_withheld"] in (1, True) and "KPI error_cost" in json.dumps(gate["properties"])
    assert tree_checksums(binary_serving(env)) == served.serving_before_last_plots_run
    # the same model on the same span, judged only by the new KPI threshold: the KPI values are the earlier run's
    assert overall_kpis(served, gated) == overall_kpis(served, earlier[-1])


def test_pipeline_view_trends_business_kpis_in_chromium(served: Served) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    runs = binary_runs_or_skip(served)
    server, dag = served.server, binary_penguins.DAG_ID
    expected = [overall_kpis(served, run)["error_cost"] for run in runs]
    with logged_in_page(server) as page:
        page.set_viewport_size({"width": 1440, "height": 1200})
        page.goto(f"{server.url}/dags/{dag}/plugin/mlpipe-pipeline")
        pipeline_view = page.frame_locator("iframe[title='ML pipeline']")
        chart = pipeline_view.locator("svg.trend[aria-label='KPI error_cost']")
        expect(chart).to_be_visible(timeout=120_000)
        points = chart.locator("circle.point")
        expect(points).to_have_count(len(runs))
        assert [float(v) for v in points.evaluate_all("els => els.map(e => e.dataset.value)")] == expected
        titles = points.evaluate_all("els => els.map(e => e.querySelector('title').textContent)")
        assert [t.split(" (span")[0] for t in titles] == [f"error_cost = {value:g}" for value in expected]
        box = chart.bounding_box()  # laid out by Chromium
        assert box is not None and box["width"] > 200 and box["height"] > 100
        expect(pipeline_view.locator("svg.trend[aria-label='KPI missed_adelie']")).to_be_visible()
        page.goto(f"{server.url}/mlpipe/pipeline?{q(dag_id=dag)}")
        page.locator("div.grid").first.screenshot(path=str(SHOTS / "pipeline-kpi-trends.png"))


def drift_scores(served: Served, run_id: str) -> dict[str, dict[str, Any]]:
    """The drift scores the run's ExampleValidator recorded (feature -> comparator, score, threshold)."""
    result = served.env.xcom(served.scenario.dag_id, "example_validator", run_id)
    return (result or {}).get("outputs", {}).get("anomalies", [{}])[0].get("properties", {}).get("drift_scores") or {}


def overall_metrics(served: Served, run_id: str) -> dict[str, float]:
    result = served.env.xcom(served.scenario.dag_id, "evaluator", run_id)
    if not result:
        return {}
    evaluation = result["outputs"]["evaluation"][0]["uri"]
    slices = json.loads(Path(evaluation, "metrics.json").read_text())["slices"]
    return next(s["metrics"] for s in slices if s["slice"] == "Overall")


def test_drift_trends_and_the_comparison_of_two_runs_in_chromium(served: Served) -> None:
    """The pipeline view trends every feature's drift score with its threshold line, and its run table's A/B pick
    opens the comparison of two runs: metrics by slice with deltas and the drift of B against A."""
    from playwright.sync_api import expect

    if served.scenario.dag_id != "penguins":
        pytest.skip("the drifted spans come from the penguins scenario")
    SHOTS.mkdir(parents=True, exist_ok=True)
    server, dag = served.server, served.scenario.dag_id
    first, a, b = served.run_ids[:3]  # spans 1, 2 (drifted from 1) and 3
    assert not drift_scores(served, first), "the first span has no previous span to drift from"
    scores = {run: drift_scores(served, run) for run in (a, b)}
    # The feature that drifted most into span 2, and one with a configured threshold (drawn as a dashed line).
    feature = max(scores[a], key=lambda f: scores[a][f]["score"])
    gated = next(f for f in sorted(scores[a]) if scores[a][f]["threshold"] is not None)
    with logged_in_page(server) as page:
        page.goto(f"{server.url}/mlpipe/pipeline?{q(dag_id=dag)}")
        for name in dict.fromkeys((feature, gated)):
            card = page.locator(f"#drift-trend-{name}")
            expect(card).to_be_visible(timeout=120_000)
            points = card.locator("circle.point")
            titles = points.evaluate_all("els => els.map(e => e.querySelector('title').textContent)")
            values = points.evaluate_all("els => els.map(e => Number(e.dataset.value))")
            comparator = scores[a][name]["comparator"]
            measured = [v for t, v in zip(titles, values, strict=True) if t.startswith(f"{comparator} score = ")]
            assert measured == [scores[run][name]["score"] for run in (a, b)], name
            lines = [v for t, v in zip(titles, values, strict=True) if t.startswith("threshold = ")]
            assert lines == [
                scores[run][name]["threshold"] for run in (a, b) if scores[run][name]["threshold"] is not None
            ]
        every = {f for run in (a, b) for f in scores[run]}
        expect(page.locator("#drift-trends .drift-trend")).to_have_count(len(every))
        page.locator("#drift-trends").screenshot(path=str(SHOTS / "pipeline-drift-trends.png"))

        # The run table's default pick is the newest run as B and the one before it as A.
        expect(page.locator(f"input[name='a'][value='{a}']")).to_be_checked()
        expect(page.locator(f"input[name='b'][value='{b}']")).to_be_checked()
        page.get_by_role("button", name="Compare A and B").click()
        page.wait_for_url(re.compile(r".*/compare\?.*"), timeout=60_000)
        expect(page.locator("#compared-runs tr[data-side='B'] a")).to_have_text(b)
        expect(page.locator("#drift-note")).to_contain_text(f"Measured by run {b}'s validation against run {a}'s")
        rows = page.locator("#drift-between tr.drift")
        expect(rows).to_have_count(len(scores[b]))
        shown = rows.evaluate_all("els => els.map(e => [e.dataset.feature, Number(e.dataset.score)])")
        assert dict(shown) == {f: s["score"] for f, s in scores[b].items()}
        metrics_a, metrics_b = overall_metrics(served, a), overall_metrics(served, b)
        assert metrics_b, f"run {b} evaluated no model"
        for metric, value in metrics_b.items():
            row = page.locator(f"#metric-deltas tr.metric[data-slice='Overall'][data-metric='{metric}']")
            cells = row.locator("td.num")
            expect(cells.nth(1)).to_have_text(figure(value))
            if metric in metrics_a:
                expect(cells.nth(0)).to_have_text(figure(metrics_a[metric]))
        page.screenshot(path=str(SHOTS / "compare-two-runs.png"), full_page=True)
