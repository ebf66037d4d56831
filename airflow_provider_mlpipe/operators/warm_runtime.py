"""The Airflow side of the warm runtime: find or start the host's server, hand it a stage, stream its output.

One server per user, runtime interpreter and runtime content: the socket's name is a hash of the interpreter, the
runtime venv's installed distributions and this package's files, so a rebuilt venv or changed code is never
served by a stale server (the old one idles out). Any problem reaching the server makes the stage run cold, with
the reason in the log; the warm runtime never fails a stage by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from airflow_provider_mlpipe.protocol import (
    MLMD_CONFIG_ENV,
    RUNTIME_MODULE,
    WARM_HELLO,
    receive_message,
    runtime_command,
    send_message,
)

_PACKAGE = Path(__file__).resolve().parents[1]
# AF_UNIX paths are limited to 108 bytes; longer homes use a per-user folder under /tmp instead.
_MAX_SOCKET_PATH = 100


class WarmRuntimeUnavailable(RuntimeError):
    """The warm server could not take the stage; the caller runs it cold."""


def _config(key: str, fallback: str) -> str:
    try:
        from airflow_provider_mlpipe.version_compat import conf

        return conf.get("mlpipe", key, fallback=fallback) or fallback
    except Exception:  # no Airflow config, e.g. in a benchmark
        return fallback


def warm_enabled(spec_value: bool | None = None) -> bool:
    """The spec's ``runtime.warm``, else ``[mlpipe] warm_runtime`` (default on)."""
    if spec_value is not None:
        return spec_value
    return _config("warm_runtime", "True").strip().lower() not in ("false", "off", "0", "no")


def server_key(python: str) -> str:
    """Changes whenever the runtime would import different code."""
    digest = hashlib.sha256(os.path.realpath(python).encode())
    venv = Path(python).parent.parent
    for site in sorted(venv.glob("lib/python3*/site-packages")):
        digest.update("\n".join(sorted(p.name for p in site.glob("*.dist-info"))).encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(_PACKAGE)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def socket_path(python: str) -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    name = f"{os.getuid()}-{server_key(python)}.sock"
    path = os.path.join(home, "mlpipe", "warm", name)
    if len(path) > _MAX_SOCKET_PATH:
        path = os.path.join("/tmp", f"mlpipe-warm-{os.getuid()}", name)
    return path


def _connect(path: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _start_lock(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(f"{path}.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def connect_or_start(python: str, env: dict[str, str], log: Any) -> socket.socket:
    """A connection to this host's warm server, starting one (once, under a lock) when none is listening."""
    path = socket_path(python)
    try:
        return _connect(path)
    except OSError:
        pass
    with _start_lock(path):
        try:
            return _connect(path)  # another task started it while we waited for the lock
        except OSError:
            pass
        idle = _config("warm_idle_timeout", "600")
        startup = float(_config("warm_startup_timeout", "180"))
        server_env = {k: v for k, v in env.items() if k != MLMD_CONFIG_ENV}  # secrets go per stage, not here
        log.info("Starting the warm runtime (%s); it keeps the ML stack imported for the next stages.", path)
        with open(f"{path}.log", "a", encoding="utf-8") as out:
            server = subprocess.Popen(
                runtime_command(python, "serve", "--socket", path, "--idle-timeout", idle),
                env=server_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives this task; ends by its idle timeout
            )
        deadline = time.monotonic() + startup
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise WarmRuntimeUnavailable(f"the warm runtime exited with code {server.returncode}; see {path}.log")
            try:
                return _connect(path)
            except OSError:
                time.sleep(0.2)
        raise WarmRuntimeUnavailable(f"the warm runtime did not start within {startup:.0f}s; see {path}.log")


class WarmChild:
    """A stage forked by the warm server, with the parts of ``Popen`` that streaming and on_kill use."""

    def __init__(self, conn: socket.socket, pid: int, stdout: IO[str]) -> None:
        self.conn = conn
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self._collect(0.0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._collect(timeout) is None:
            raise subprocess.TimeoutExpired("warm stage", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _collect(self, timeout: float | None) -> int | None:
        """Read the server's exit message within ``timeout`` (None: wait for it)."""
        self.conn.settimeout(timeout)
        try:
            message = receive_message(self.conn)
        except (TimeoutError, BlockingIOError):
            self.conn.settimeout(None)
            return None
        except OSError:
            message = None
        if message is None:  # the server died; its children die with it (PR_SET_PDEATHSIG)
            self.returncode = -signal.SIGKILL
            self.server_lost = True
        else:
            self.returncode = int(message["exit"])
        self.conn.close()
        return self.returncode

    server_lost = False


def start_warm(command: list[str], env: dict[str, str], log: Any) -> WarmChild:
    """Hand ``[python, -m, module, subcommand, ...]`` to the warm server; raises WarmRuntimeUnavailable."""
    if command[1:3] != ["-m", RUNTIME_MODULE]:
        raise WarmRuntimeUnavailable("only the runtime's own command runs in the warm runtime")
    python, argv = command[0], command[3:]
    # A server that was just killed can still accept a connection while the kernel tears it down, then reset it.
    # It took nothing, so the second attempt finds no listener and starts a new server rather than running cold.
    for attempt in (1, 2):
        try:
            conn = connect_or_start(python, env, log)
        except OSError as exc:
            raise WarmRuntimeUnavailable(str(exc)) from exc
        read_end, write_end = os.pipe()
        try:
            socket.send_fds(conn, [WARM_HELLO], [write_end])
            send_message(conn, {"argv": argv, "env": env, "cwd": os.getcwd()})
            reply = receive_message(conn)
        except OSError as exc:
            reply, error = None, exc
        else:
            error = None
        finally:
            os.close(write_end)
        if reply and "pid" in reply:
            return WarmChild(conn, int(reply["pid"]), os.fdopen(read_end, "r", encoding="utf-8", errors="replace"))
        os.close(read_end)
        conn.close()
        if attempt == 1 and isinstance(error, ConnectionError):
            log.info("The warm runtime dropped the connection (%s); reconnecting once.", error)
            time.sleep(0.5)
            continue
        break
    raise WarmRuntimeUnavailable(f"the warm runtime did not take the stage ({error or 'no answer'})")
