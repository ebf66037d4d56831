"""A local dask.distributed cluster: a ``dask scheduler`` and worker processes from .venv-runtime, on loopback.

Each process is started in its own session and stopped by its process group, so nothing outlives the fixture.
If the test process itself dies, the scheduler's idle timeout and the workers' death timeout end them anyway.
The workers inherit the test's environment (``PYTHONPATH`` holds the repository), so they import
``airflow_provider_mlpipe`` and the test modules the way the runtime does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import REPO

DASK = REPO / ".venv-runtime" / "bin" / "dask"
# A safety net only: the fixture stops everything itself; these end orphans of a killed test run.
SCHEDULER_IDLE_TIMEOUT = "900s"
WORKER_DEATH_TIMEOUT = "60s"


@dataclass
class DaskCluster:
    address: str  # tcp://127.0.0.1:<port>
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def beam_args(self) -> list[str]:
        """The Beam options that send a pipeline to this cluster (Beam 2.61 needs the runner's full name)."""
        return ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner", f"--dask_client_address={self.address}"]

    def worker_names(self) -> list[str]:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return sorted(str(info["name"]) for info in client.scheduler_info()["workers"].values())

    def logs(self) -> str:
        """The tail of every process's log, for error messages."""
        parts = []
        for log in sorted(self.workdir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def _spawn(cluster: DaskCluster, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    home = cluster.workdir / name
    home.mkdir(parents=True, exist_ok=True)
    with open(cluster.workdir / f"{name}.log", "wb") as log:
        process = subprocess.Popen(
            [str(DASK), *args], cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    cluster.processes.append(process)
    return process


def _wait_for_scheduler_file(cluster: DaskCluster, path: Path, deadline: float) -> str:
    scheduler = cluster.processes[0]
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"The dask scheduler exited with code {scheduler.returncode}:\n{cluster.logs()}")
        if path.exists():
            try:
                return json.loads(path.read_text())["address"]
            except (json.JSONDecodeError, KeyError):
                pass  # written but not complete yet
        time.sleep(0.2)
    raise RuntimeError(f"The dask scheduler wrote no scheduler file within the timeout:\n{cluster.logs()}")


def start_cluster(workdir: Path, workers: int = 2, timeout: float = 120) -> DaskCluster:
    if not DASK.exists():
        raise RuntimeError(f"{DASK.relative_to(REPO)} is missing: run `make runtime` (the lock holds dask).")
    from distributed import Client

    cluster = DaskCluster(address="", workdir=workdir)
    deadline = time.monotonic() + timeout
    scheduler_file = workdir / "scheduler.json"
    try:
        _spawn(
            cluster,
            "scheduler",
            ["scheduler", "--host=127.0.0.1", "--port=0", "--no-dashboard", "--no-show",
             f"--scheduler-file={scheduler_file}", f"--idle-timeout={SCHEDULER_IDLE_TIMEOUT}"],
        )  # fmt: skip
        cluster.address = _wait_for_scheduler_file(cluster, scheduler_file, deadline)
        for index in range(workers):
            name = f"worker-{index}"
            _spawn(
                cluster,
                name,
                ["worker", cluster.address, f"--name={name}", "--host=127.0.0.1", "--nthreads=1", "--no-nanny",
                 "--no-dashboard", "--memory-limit=0", f"--local-directory={workdir / name}",
                 f"--death-timeout={WORKER_DEATH_TIMEOUT}"],
            )  # fmt: skip
        with Client(cluster.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
    except BaseException as exc:
        logs = cluster.logs()
        cluster.stop()
        raise RuntimeError(f"The local dask cluster did not come up: {exc}\n{logs}") from exc
    return cluster


@contextmanager
def running_cluster(workdir: Path, workers: int = 2) -> Iterator[DaskCluster]:
    cluster = start_cluster(workdir, workers)
    try:
        yield cluster
    finally:
        cluster.stop()
