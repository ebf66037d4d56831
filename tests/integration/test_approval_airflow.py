"""The approval gate under real Airflow: api-server (REST API and UI), scheduler, dag-processor and triggerer.

One stack serves the module. The penguins pipeline runs with its ``prod`` overlay plus an approval gate (only
``admin`` may answer; two minutes to answer, then the default, reject), three runs at once:

- 2024-01-01: approved through the REST API, so it pushes the first served version;
- 2024-01-02: rejected through the REST API once that version is served, so its push is withheld and the serving
  directory keeps every byte;
- 2024-01-03: nobody answers, so the default (reject) applies when the timeout passes. While it waits, Chromium
  takes the README's screenshot of its request on Airflow's "Required actions" tab.

The runs overlap; the Evaluator and the Pusher take the spans in order, so each request waits on its own.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.test_ui_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.airflow_env import ARTIFACTS, AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, query, running_stack, stack_env, wait_for
from tests.support.penguins_variants import copy_penguins_modules, penguins_variant
from tests.support.postgres import free_port
from tests.support.spec_fixtures import make_dags_folder
from tests.support.trees import tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(2400)]

DAG = "penguins_approval"
TIMEOUT = "2m"  # long enough to answer two requests, short enough to wait out the third
GATE = "approval_gate"
USERS = {"admin": "admin-pw-approval", "other": "other-pw-approval"}  # both Admins; only admin is an approver
SHOT = ARTIFACTS / "ui" / "approval-required-actions.png"


def approval_spec(name: str, root: Path, serving: Path, timeout: str) -> str:
    prod = f"    max_active_runs: 3\n    gates:\n      approval: {{approvers: [admin], timeout: {timeout}}}\n"
    return penguins_variant(name, root, serving, last_day="2024-01-03", **{"    max_active_runs: 3\n": prod})


class Api:
    """The stack's REST API as one user."""

    def __init__(self, url: str, user: str) -> None:
        self.url = url
        body = json.dumps({"username": user, "password": USERS[user]}).encode()
        req = urllib.request.Request(f"{url}/auth/token", body, {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            self.token = json.loads(resp.read())["access_token"]

    def call(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        req = urllib.request.Request(f"{self.url}/api/v2{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def hitl_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{GATE}/-1/hitlDetails"


class Stack:
    def __init__(self, stack: AirflowStack, serving: Path, url: str) -> None:
        self.stack, self.env, self.serving, self.url = stack, stack.env, serving, url
        self.runs: dict[str, tuple[str, str]] = {}  # approve | reject | timeout -> (dag id, run id)
        self.served_digest = ""  # the serving tree once the approved run pushed

    def state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        rows = query(self.env, "select state from task_instance where dag_id=? and run_id=? and task_id=?",
                     dag_id, run_id, task_id)  # fmt: skip
        return rows[0][0] if rows else None

    def wait_task(self, case: str, task_id: str, states: set[str], timeout: float = 1500) -> str:
        dag_id, run_id = self.runs[case]

        def reached() -> str | None:
            self.stack.check_alive()
            failed = query(self.env, "select task_id from task_instance where dag_id=? and run_id=? and state='failed'",
                           dag_id, run_id)  # fmt: skip
            if failed:
                folder = self.env.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
                logs = [f"--- {p}\n{p.read_text(errors='replace')[-6000:]}" for (t,) in failed
                        for p in folder.glob(f"task_id={t}/**/*") if p.is_file()]  # fmt: skip
                scheduler = [line for line in self.stack.log("scheduler").splitlines() if run_id in line]
                raise AssertionError(f"{case}: {failed} failed\n" + "\n".join([*logs, *scheduler[-30:]]))
            state = self.state(dag_id, run_id, task_id)
            return state if state in states else None

        return wait_for(f"{case}: {task_id} to be {states}", reached, timeout=timeout, interval=2)

    def waiting_request(self, api: Api, case: str) -> dict[str, Any]:
        """The open request of a case's run, once the scheduler has seen the parked task's process end.

        Answering before that races Airflow: the scheduler may read the process's exit as a task that ended
        while queued again and fail it (a person never answers that fast).
        """
        self.wait_task(case, GATE, {"awaiting_input", "deferred"})
        key = f"task_id='{GATE}', run_id='{self.runs[case][1]}'"

        def exit_seen() -> bool:
            self.stack.check_alive()
            log = self.stack.log("scheduler")
            return any("Received executor event with state" in line and key in line for line in log.splitlines())

        wait_for(f"the scheduler to see the {case} request's task park", exit_seen, timeout=300, interval=1)
        status, detail = api.call("GET", hitl_path(*self.runs[case]))
        assert status == 200, detail
        return detail


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("approval")
    root, serving = tmp / "root", tmp / "serving"
    dags = make_dags_folder(tmp, {DAG: approval_spec(DAG, root, serving, TIMEOUT)})
    copy_penguins_modules(dags)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps(USERS))
    env = AirflowEnv(tmp / "home", dags, {
        **stack_env(port),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{user}:admin" for user in USERS),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "3",  # how often timed-out requests are resolved
        "MLPIPE_ENVIRONMENT": "prod",
        "MLPIPE_PIPELINE_ROOT": str(root),  # the prod overlay's pipeline_root
    })  # fmt: skip
    with running_stack(env, port, apps="all") as stack:
        wait_for("the DAG to be parsed", lambda: query(env, "select dag_id from serialized_dag")
                 or stack.check_alive(), timeout=300, interval=2)  # fmt: skip
        admin = wait_for("the REST API", lambda: _api(url), timeout=240, interval=2)
        out = Stack(stack, serving, url)
        for case, day in (("approve", "01"), ("reject", "02"), ("timeout", "03")):
            status, run = admin.call("POST", f"/dags/{DAG}/dagRuns", {"logical_date": f"2024-01-{day}T00:00:00Z"})
            assert status == 200, run
            out.runs[case] = (DAG, run["dag_run_id"])
        yield out


def _api(url: str, user: str = "admin") -> Api | None:
    try:
        return Api(url, user)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def approvals(env: AirflowEnv, run_id: str, dag_id: str = DAG) -> list[dict[str, Any]]:
    """The run's ``mlpipe.Approval`` executions in MLMD."""
    store = mlmd_dump(env.mlmd_path)
    [ctx] = [c["id"] for c in store["contexts"] if c["type"] == "pipeline_run" and c["name"] == f"{dag_id}.{run_id}"]
    return [e for e in store["executions"] if e["type"] == "mlpipe.Approval" and ctx in e["contexts"]]


def test_approving_through_the_rest_api_pushes_and_mlmd_records_the_approver(served: Stack) -> None:
    admin, other = Api(served.url, "admin"), Api(served.url, "other")
    dag_id, run_id = served.runs["approve"]
    detail = served.waiting_request(admin, "approve")
    body = detail["body"]
    assert detail["subject"].startswith("Push model ") and "of penguins_approval?" in detail["subject"]
    assert "| slice | examples | metric | candidate | baseline | diff | threshold |" in body
    assert (
        re.search(r"\| Overall \| \d+ \| accuracy \| [\d.]+ \| — \| — \|", body)
        and ">= 0; absolute change >= -1 (no baseline: not applied)" in body
    )
    assert "#### Data: anomalies and drift" in body and "Drift against the previous span" not in body  # first span
    assert f"{served.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/plugin/mlpipe-run" in body
    assert [u["id"] for u in detail["assigned_users"]] == ["admin"] and detail["defaults"] == ["Reject"]

    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "metrics look right"}}
    status, text = other.call("PATCH", hitl_path(dag_id, run_id), answer)
    assert status == 403, text  # an Admin, but not an assigned approver
    status, text = admin.call("PATCH", hitl_path(dag_id, run_id), answer)
    assert status == 200, text
    assert served.wait_task("approve", "pusher", {"success", "skipped"}) == "success"
    assert sorted(p.name for p in served.serving.iterdir() if not p.name.startswith(".")) == ["1"]

    [approval] = approvals(served.env, run_id)
    props = approval["properties"]
    assert (props["decision"], props["approver"], props["comment"], props["timed_out"]) == (
        "approve", "admin", "metrics look right", 0,
    )  # fmt: skip
    assert props["push_withheld"] == 0 and "admin chose Approve" in props["reason"]
    decision = served.env.xcom(dag_id, GATE, run_id, key="gate_decision")
    assert decision["decision"] == "approve" and decision["approver"] == "admin"
    # The run view lists the decision, and its lineage graph draws it with the approver.
    req = urllib.request.Request(
        f"{served.url}/mlpipe/run?dag_id={dag_id}&run_id={quote(run_id, safe='')}",
        headers={"Authorization": f"Bearer {admin.token}"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        page = resp.read().decode()
    assert "decision=approve Approval: admin chose Approve" in page and "approve by admin" in page


def test_rejecting_withholds_the_push_and_the_serving_directory_keeps_every_byte(served: Stack) -> None:
    assert served.wait_task("approve", "pusher", {"success", "skipped"}) == "success"  # a version is served
    before = served.served_digest = tree_digest(served.serving)
    admin = Api(served.url, "admin")
    dag_id, run_id = served.runs["reject"]
    detail = served.waiting_request(admin, "reject")
    assert "against baseline model" in detail["body"] and "Drift against the previous span" in detail["body"]

    status, text = admin.call("PATCH", hitl_path(dag_id, run_id), {"chosen_options": ["Reject"], "params_input": {}})
    assert status == 200, text
    assert served.wait_task("reject", "pusher", {"success", "skipped"}) == "skipped"
    assert served.state(dag_id, run_id, GATE) == "success"  # on_reject: skip -> the run succeeds, nothing pushed
    assert tree_digest(served.serving) == before
    [approval] = approvals(served.env, run_id)
    assert approval["properties"]["decision"] == "reject" and approval["properties"]["push_withheld"] == 1
    assert approval["properties"]["approver"] == "admin"


def take_screenshot(served: Stack, dag_id: str, run_id: str) -> None:
    """Airflow's "Required actions" tab of the waiting request, in Chromium, for the README."""
    from playwright.sync_api import expect, sync_playwright

    SHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1500}).new_page()
            page.goto(served.url + "/")
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(USERS["admin"])
            page.locator("button[type=submit]").click()
            page.wait_for_url(lambda u: "/auth/login" not in u, timeout=120_000)
            page.goto(f"{served.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{GATE}/required_actions")
            expect(page.get_by_text("Metrics by slice").first).to_be_visible(timeout=120_000)
            expect(page.get_by_role("button", name="Reject").first).to_be_in_viewport()
            page.screenshot(path=str(SHOT), full_page=True)
        finally:
            browser.close()


def test_a_timeout_takes_the_default_outcome(served: Stack) -> None:
    dag_id, run_id = served.runs["timeout"]
    # The screenshot needs the request still open; on a slow machine the timeout may already have passed.
    if served.wait_task("timeout", GATE, {"awaiting_input", "success"}) == "awaiting_input":
        take_screenshot(served, dag_id, run_id)
    assert served.wait_task("timeout", "pusher", {"success", "skipped"}) == "skipped"
    assert served.state(dag_id, run_id, GATE) == "success"
    [approval] = approvals(served.env, run_id)
    props = approval["properties"]
    assert (props["decision"], props["timed_out"], props["default"]) == ("reject", 1, "reject")
    assert "approver" not in props and "nobody answered in time" in props["reason"]
    assert served.served_digest and tree_digest(served.serving) == served.served_digest
