"""The warm runtime: one process per host that keeps the ML stack imported and forks a fresh child per stage.

``python -m airflow_provider_mlpipe.runtime serve --socket PATH`` imports TensorFlow, TFDV, TFMA, tf.Transform,
Beam and MLMD once, then listens on a Unix socket that only its user may open. For each connection it receives
the client's output pipe (SCM_RIGHTS), the runtime argv, the environment and the working directory, and forks:

- the child starts its own session, so the Airflow side can kill the stage's whole process group;
- it dies with the server (PR_SET_PDEATHSIG), so a killed server never leaves a stage running unseen;
- its stdout and stderr are the client's pipe, so the task log streams live as with a cold subprocess;
- it runs the same ``main(argv)`` as a cold ``python -m airflow_provider_mlpipe.runtime``, then ``_exit``s:
  user modules are loaded fresh in every child, and nothing a stage does reaches the next one.

The server never runs a TensorFlow op itself (forking after that is unsafe), is single-threaded for the same
reason, answers ``{"pid": …}`` then ``{"exit": code}``, kills a child whose client went away, and exits after an
idle timeout. docs/warm-runtime.md has the measurements behind this design.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import os
import select
import signal
import socket
import sys
import time
import traceback

from airflow_provider_mlpipe.protocol import WARM_HELLO, receive_message, send_message

# What every stage would import again in a cold process (about 25 s on 2 cores); never run an op here.
PRELOAD = (
    "tensorflow",
    "tensorflow_data_validation",
    "tensorflow_model_analysis",
    "tensorflow_transform",
    "tensorflow_transform.beam",
    "apache_beam",
    "ml_metadata",
    "pyarrow.parquet",
    "airflow_provider_mlpipe.runtime.__main__",
    "airflow_provider_mlpipe.runtime.runner",
    "airflow_provider_mlpipe.runtime.metadata.client",
)
_PR_SET_PDEATHSIG = 1


def preload() -> list[str]:
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as exc:  # a runtime without one of them still serves the stages that need the others
            print(f"mlpipe warm runtime: not preloading {name}: {exc}", file=sys.stderr, flush=True)
    return loaded


def listen(path: str) -> socket.socket:
    """A socket only this user can reach: a 0700 folder and a 0600 socket, created under a 077 umask."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    old = os.umask(0o077)
    try:
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    server.listen(64)
    return server


def _child(server: socket.socket, conn: socket.socket, out_fd: int, request: dict, parent: int) -> None:
    """In the forked child: become a stage process and never return."""
    code = 1
    try:
        server.close()
        conn.close()
        os.setsid()
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the server died before the death signal was armed
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request.get("cwd") or "/")
        # The server's exit handlers are the server's; the stage's own (the GCP key file's removal, TensorFlow's
        # generated-code files) must run when the stage ends, as in a cold process, or they pile up on disk.
        atexit._clear()
        import logging

        logging.root.handlers.clear()  # the stage configures its own logging, as in a cold process
        from airflow_provider_mlpipe.runtime.__main__ import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
        except BaseException:
            traceback.print_exc()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code or 0)


def serve(path: str, idle_timeout: float) -> int:
    started = time.monotonic()
    loaded = preload()
    server = listen(path)
    print(
        f"mlpipe warm runtime: pid {os.getpid()} serving {path} after {time.monotonic() - started:.1f}s "
        f"(preloaded {', '.join(loaded)}).",
        file=sys.stderr,
        flush=True,
    )
    children: dict[int, socket.socket] = {}
    last_active = time.monotonic()
    try:
        while children or time.monotonic() - last_active < idle_timeout:
            if not os.path.exists(path):  # someone removed the socket: a newer server owns this key now
                break
            readable, _, _ = select.select([server, *children.values()], [], [], 0.2)
            for ready in readable:
                if ready is server:
                    _accept(server, children)
                    last_active = time.monotonic()
                else:  # a client that went away (its task was killed): end its stage
                    pid = next(p for p, c in children.items() if c is ready)
                    _killpg(pid)
            _reap(children)
            if children:
                last_active = time.monotonic()
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)
        for pid in children:
            _killpg(pid)
    return 0


def _accept(server: socket.socket, children: dict[int, socket.socket]) -> None:
    conn, _ = server.accept()
    try:
        conn.settimeout(10)
        hello, fds, _, _ = socket.recv_fds(conn, len(WARM_HELLO), 1)
        if hello != WARM_HELLO or len(fds) != 1:
            raise ConnectionError(f"unexpected greeting {hello!r} with {len(fds)} descriptor(s)")
        request = receive_message(conn)
        if request is None:
            raise ConnectionError("the client closed the connection before its request")
    except (OSError, ValueError) as exc:
        print(f"mlpipe warm runtime: refused a connection: {exc}", file=sys.stderr, flush=True)
        conn.close()
        return
    conn.settimeout(None)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(server, conn, fds[0], request, parent)
    os.close(fds[0])
    try:
        send_message(conn, {"pid": pid})
    except OSError:
        _killpg(pid)
    children[pid] = conn


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            send_message(conn, {"exit": code})
        except OSError:
            pass
        conn.close()


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
