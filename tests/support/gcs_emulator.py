"""A GCS API emulator (gcp-storage-emulator from .venv) on a free loopback port, for either venv's tests.

The runtime venv does not hold the emulator, so it always runs as a subprocess of .venv's console script.
Clients reach it through ``STORAGE_EMULATOR_HOST``, which google-cloud-storage honours.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.paths import REPO
from tests.support.postgres import free_port

EMULATOR = REPO / ".venv" / "bin" / "gcp-storage-emulator"
AIRFLOW_SIDE_PYTHON = REPO / ".venv" / "bin" / "python"


@dataclass
class GcsEmulator:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    tls_front_port: int
    ca_file: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to talk to the emulator instead of Google.

        gcsfs, google-cloud-storage and Beam read ``STORAGE_EMULATOR_HOST``. TensorFlow's gs:// filesystem goes to
        Google's endpoints through ``https_proxy``, answered by the emulator's HTTPS front (gcs_tls_front.py).
        """
        front = f"http://127.0.0.1:{self.tls_front_port}"
        return {
            "STORAGE_EMULATOR_HOST": self.url,
            "GOOGLE_CLOUD_PROJECT": "mlpipe-test",
            "https_proxy": front,
            "HTTPS_PROXY": front,
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": self.ca_file,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TensorFlow's own test hook: no OAuth round trip
            # google-auth (under Beam's GcsIO) would first probe for a GCE metadata server for about 25 s.
            "NO_GCE_CHECK": "true",
        }

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
    port, front_port = free_port(), free_port()
    ca_file = os.path.join(tempfile.mkdtemp(prefix="mlpipe-gcs-ca-"), "ca.pem")
    # Through tests.support.gcs_emulator_server: the emulator's empty-upload fix and TensorFlow's HTTPS front.
    cmd = [str(AIRFLOW_SIDE_PYTHON), "-m", "tests.support.gcs_emulator_server", "start", "--host=127.0.0.1"]
    cmd += [f"--port={port}", "--in-memory", "--quiet", "--tls-front", str(front_port), ca_file]
    if default_bucket:
        cmd.append(f"--default-bucket={default_bucket}")
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    emulator = GcsEmulator("127.0.0.1", port, process, front_port, ca_file)
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
