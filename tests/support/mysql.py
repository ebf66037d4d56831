"""A real MySQL-protocol server (Debian's MariaDB) for the test session: a private data dir, loopback only.

Never the system service: ``mariadb-install-db`` makes a data dir of its own in a temp folder and ``mariadbd``
serves it on a free loopback port and a socket in that folder until the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import free_port

# The server refuses to run as root; as root it runs as the Debian package's 'mysql' user.
RUN_AS = "mysql" if os.geteuid() == 0 else None
SERVER = shutil.which("mariadbd") or "/usr/sbin/mariadbd"  # sbin is not on every user's PATH


@dataclass
class MysqlServer:
    folder: str
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    user: str = "mlpipe"
    password: str = "mlpipe"

    @property
    def socket(self) -> str:
        return str(Path(self.folder) / "mysqld.sock")

    def mlmd_config(self, database: str = "mlmd") -> dict[str, object]:
        return {
            "backend": "mysql",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database,
        }

    def sql(self, statement: str) -> str:
        """Runs ``statement`` as the server's root user over its socket."""
        proc = subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.socket, "-u", "root", "-N", "-B", "-e", statement],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"MariaDB refused {statement!r}: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE {name}")

    def create_owner(self, user: str, password: str, database: str) -> dict[str, object]:
        """A login ``user`` with every right on a new ``database``; returns its MLMD config as ``user``."""
        self.create_database(database)
        self.sql(f"CREATE USER '{user}'@'{self.host}' IDENTIFIED BY '{password}'")
        self.sql(f"GRANT ALL ON {database}.* TO '{user}'@'{self.host}'")
        return {**self.mlmd_config(database), "user": user, "password": password}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # mariadbd shuts down cleanly on SIGTERM
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_mysql() -> MysqlServer:
    if not Path(SERVER).exists():
        raise RuntimeError("MariaDB is not installed: run 'make system' (Debian package mariadb-server).")
    # Not under pytest's 0700 tmp dirs: as root the server runs as 'mysql' and must reach its folder.
    folder = tempfile.mkdtemp(prefix="mlpipe-my-")
    os.chmod(folder, 0o755)
    data = Path(folder) / "data"
    user = [f"--user={RUN_AS}"] if RUN_AS else []
    if RUN_AS:
        shutil.chown(folder, RUN_AS, RUN_AS)
    install = subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", *user,
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if install.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}")
    port = free_port()
    log = Path(folder) / "error.log"
    process = subprocess.Popen(
        [SERVER, "--no-defaults",
         f"--datadir={data}", *user, "--bind-address=127.0.0.1", f"--port={port}",
         f"--socket={folder}/mysqld.sock", f"--pid-file={folder}/mysqld.pid", f"--log-error={log}",
         "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M",
         "--max-connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    server = MysqlServer(folder=folder, port=port, process=process)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.sql("SELECT 1")
            break
        except RuntimeError:
            if process.poll() is not None or time.monotonic() > deadline:
                error = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                server.stop()
                raise RuntimeError(f"MariaDB did not start:\n{error}") from None
            time.sleep(0.3)
    # MLMD connects over TCP with a password, as a deployment would.
    server.sql(
        f"CREATE USER '{server.user}'@'127.0.0.1' IDENTIFIED BY '{server.password}'; "
        f"GRANT ALL ON *.* TO '{server.user}'@'127.0.0.1'"
    )
    return server
