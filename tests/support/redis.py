"""A private Redis server (Debian ``redis-server``) on a free loopback port, for the Celery broker of the tests.

Like the PostgreSQL of tests/support/postgres.py it runs in its own temporary directory, keeps nothing on disk,
and is always stopped by ``running_redis``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import free_port
from tests.support.processes import stop_process


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def url(self, database: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{database}"

    @property
    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ping(self) -> bool:
        """True when the server answers PING (the inline protocol needs no client library)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis(timeout: float = 30) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make system` (Debian package redis-server).")
    directory = Path(tempfile.mkdtemp(prefix="mlpipe-redis-"))
    port = free_port()
    command = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
        # A broker for one test session: nothing to persist, and no snapshot forks competing for the two cores.
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
    server = RedisServer(port=port, directory=directory, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = server.log
            server.stop()
            raise RuntimeError(f"redis-server exited with code {process.returncode}:\n{log[-3000:]}")
        if server.ping():
            return server
        time.sleep(0.1)
    log = server.log
    server.stop()
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:.0f} s:\n{log[-3000:]}")


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
