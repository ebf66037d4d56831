"""The ``mlmd`` connection type: where ML Metadata lives (SQLite, PostgreSQL or MySQL).

The hook never imports ``ml_metadata``; it turns a connection into a plain dict that the runtime receives in
its environment, so passwords stay out of request files, logs and XCom.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_mlpipe.protocol import default_sqlite_path
from airflow_provider_mlpipe.version_compat import BaseHook

BACKENDS = ("sqlite", "postgresql", "mysql")


class MlmdHook(BaseHook):
    """Resolves an ``mlmd`` connection into the config the runtime's MLMD client reads.

    Schema field: the backend (``sqlite``, ``postgresql`` or ``mysql``). For SQLite, ``host`` holds the file
    path; for the servers, host, port, login, password and the ``database`` extra (or the path) apply.
    """

    conn_name_attr = "mlmd_conn_id"
    default_conn_name = "mlmd_default"
    conn_type = "mlmd"
    hook_name = "ML Metadata"

    def __init__(self, mlmd_conn_id: str | None = default_conn_name) -> None:
        super().__init__()
        self.mlmd_conn_id = mlmd_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Backend", "host": "Host (or SQLite file path)", "login": "User"},
            "placeholders": {
                "schema": "sqlite | postgresql | mysql",
                "host": "localhost or /path/to/mlmd.sqlite",
                "port": "5432",
                "extra": '{"database": "mlmd"}',
            },
        }

    def get_config(self) -> dict[str, Any]:
        """The MLMD connection as a dict; the embedded SQLite default when the connection does not exist."""
        if not self.mlmd_conn_id:
            return {"backend": "sqlite", "path": default_sqlite_path()}
        try:
            conn = self.get_connection(self.mlmd_conn_id)
        except Exception:
            if self.mlmd_conn_id == self.default_conn_name:
                return {"backend": "sqlite", "path": default_sqlite_path()}
            raise
        return config_from_connection(conn.schema, conn.host, conn.port, conn.login, conn.password, conn.extra_dejson)


def config_from_connection(
    backend: str | None,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    extra = extra or {}
    backend = (backend or extra.get("backend") or "sqlite").lower()
    if backend in ("postgres", "postgresql"):
        backend = "postgresql"
    if backend not in BACKENDS:
        raise ValueError(f"The mlmd connection's backend {backend!r} is not one of {', '.join(BACKENDS)}.")
    if backend == "sqlite":
        return {"backend": "sqlite", "path": host or extra.get("path") or default_sqlite_path()}
    database = extra.get("database") or extra.get("dbname")
    if not database:
        raise ValueError(f"The mlmd connection for {backend} needs a 'database' in its extra.")
    return {
        "backend": backend,
        "host": host or "localhost",
        "port": port or (5432 if backend == "postgresql" else 3306),
        "user": login or "",
        "password": password or "",
        "database": database,
    }


# Executors whose workers may run on several hosts: an SQLite file cannot be shared between them.
MULTI_HOST_EXECUTORS = ("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor", "CeleryKubernetesExecutor")


def check_backend_fits_executor(config: dict[str, Any], executor: str) -> None:
    """Fail fast when an SQLite MLMD store meets an executor whose tasks run on several hosts.

    SQLite supports one writer at a time on one host; the runtime serialises writers with a file lock, which
    is enough for LocalExecutor but not for workers on other machines, each of which would see its own file.
    """
    if config.get("backend") != "sqlite":
        return
    names = [part.strip().rsplit(".", 1)[-1] for part in executor.split(",") if part.strip()]
    clash = [name for name in names if name in MULTI_HOST_EXECUTORS]
    if clash:
        raise ValueError(
            f"The ML Metadata store is an SQLite file ({config.get('path')}), but the {clash[0]} runs tasks on "
            "several hosts, which would each write their own copy. Point the mlmd connection at PostgreSQL or "
            "MySQL (see README, 'Production'), or use the LocalExecutor."
        )
