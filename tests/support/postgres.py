"""A real PostgreSQL server for the test session, started by scripts/postgres.sh on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass

from tests.support.paths import REPO

SCRIPT = REPO / "scripts" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    data_dir: str
    port: int
    host: str = "127.0.0.1"
    user: str = "mlpipe"
    password: str = "mlpipe"

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def mlmd_config(self, database: str = "mlmd") -> dict[str, object]:
        return {
            "backend": "postgresql",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database,
        }

    def sql(self, statement: str) -> None:
        """Runs ``statement`` as the server's superuser."""
        subprocess.run(
            ["psql", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-qAt", "-c", statement],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": ""},
        )  # fmt: skip

    def create_database(self, name: str, owner: str | None = None) -> None:
        self.sql(f"CREATE DATABASE {name} OWNER {owner or self.user}")

    def create_owner(self, user: str, password: str, database: str) -> dict[str, object]:
        """A login ``user`` owning a new ``database``; returns that database's MLMD config as ``user``."""
        self.sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        self.create_database(database, owner=user)
        return {**self.mlmd_config(database), "user": user, "password": password}

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", self.data_dir], check=False, capture_output=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_postgres() -> PostgresServer:
    # Not under pytest's 0700 tmp dirs: the server runs as the 'postgres' user and must reach its data dir.
    data_dir = tempfile.mkdtemp(prefix="mlpipe-pg-")
    os.chmod(data_dir, 0o755)
    port = free_port()
    proc = subprocess.run(
        ["bash", str(SCRIPT), "start", data_dir, str(port)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not start:\n{proc.stdout}\n{proc.stderr}")
    return PostgresServer(data_dir=data_dir, port=port)
