"""A GCS API emulator (gcp-storage-emulator from .venv) on a free loopback port, for either venv's tests.

The runtime venv does not hold the emulator, so it always runs as a subprocess of .venv's console script.
Clients reach it through ``STORAGE_EMULATOR_HOST``, which google-cloud-storage honours.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.paths import REPO
from tests.support.postgres import free_port

EMULATOR = REPO / ".venv" / "bin" / "gcp-storage-emulator"


@dataclass
class GcsEmulator:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to talk to the emulator instead of Google."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": "mlpipe-test"}

    def client(self) -> Any:  # google.cloud.storage.Client
        """A google-cloud-storage client of the emulator: a reader and writer independent of mlpipe's own."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        options = {"api_endpoint": self.url}
        return storage.Client(project="mlpipe-test", client_options=options, credentials=AnonymousCredentials())

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Object names under a prefix, read through the JSON API with the standard library only."""
        import json
        import urllib.parse

        names: list[str] = []
        token = ""
        while True:
            query = {"prefix": prefix, **({"pageToken": token} if token else {})}
            url = f"{self.url}/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(url, timeout=30) as resp:
                page = json.load(resp)
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_emulator(default_bucket: str | None = None, timeout: float = 60) -> GcsEmulator:
    if not EMULATOR.exists():
        raise RuntimeError(f"{EMULATOR.relative_to(REPO)} is missing: run `make venv`.")
    port = free_port()
    cmd = [str(EMULATOR), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", "--quiet"]
    if default_bucket:
        cmd.append(f"--default-bucket={default_bucket}")
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    emulator = GcsEmulator("127.0.0.1", port, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{emulator.url}/storage/v1/b?project=mlpipe-test", timeout=2):
                return emulator
        except OSError:
            time.sleep(0.2)
    emulator.stop()
    raise RuntimeError(f"gcp-storage-emulator did not answer on {emulator.url} within {timeout}s")


@contextmanager
def running_emulator(default_bucket: str | None = None) -> Iterator[GcsEmulator]:
    emulator = start_emulator(default_bucket)
    saved = {k: os.environ.get(k) for k in emulator.env}
    os.environ.update(emulator.env)
    try:
        yield emulator
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        emulator.stop()
