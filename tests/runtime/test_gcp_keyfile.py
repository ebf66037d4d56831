"""The runtime turns a GCP key handed over in its environment into a private key file that google-auth uses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_mlpipe.runtime.io.credentials import KEYFILE_JSON_ENV, materialize_gcp_keyfile


def service_account_key() -> dict[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "acme-ml",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "mlpipe@acme-ml.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def test_nothing_handed_over_changes_nothing() -> None:
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": "/adc.json"}
    assert materialize_gcp_keyfile(environ) is None
    assert environ == {"GOOGLE_APPLICATION_CREDENTIALS": "/adc.json"}


def test_key_becomes_a_private_file_that_google_auth_loads(tmp_path: Path) -> None:
    key = service_account_key()
    environ = {KEYFILE_JSON_ENV: json.dumps(key)}
    path = materialize_gcp_keyfile(environ)
    assert path is not None and environ == {"GOOGLE_APPLICATION_CREDENTIALS": path}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert json.loads(Path(path).read_text()) == key

    # google.auth.default() (used by google-cloud-storage and Beam) picks the file up in a fresh process,
    # and the file is gone once that process exits.
    script = (
        "import json, os, sys, google.auth\n"
        "from airflow_provider_mlpipe.runtime.io.credentials import materialize_gcp_keyfile\n"
        "path = materialize_gcp_keyfile()\n"
        "creds, project = google.auth.default()\n"
        f"assert {KEYFILE_JSON_ENV!r} not in os.environ\n"
        "print(json.dumps({'path': path, 'email': creds.service_account_email, 'project': project}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, KEYFILE_JSON_ENV: json.dumps(key)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["email"] == key["client_email"] and seen["project"] == "acme-ml"
    assert not os.path.exists(seen["path"]) and not os.path.exists(os.path.dirname(seen["path"]))
