"""Turns a GCP key handed over in the environment into the key file google-auth, Beam and TF look for.

The Airflow side puts a connection's key JSON in ``MLPIPE_GCP_KEYFILE_JSON`` (hooks/gcp_storage.py). The
runtime writes it to a file only its user can read, points ``GOOGLE_APPLICATION_CREDENTIALS`` at it (inherited
by Beam's worker processes), drops the JSON from its environment, and deletes the file when it exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from airflow_provider_mlpipe.storage import KEYFILE_JSON_ENV


def materialize_gcp_keyfile(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Write the handed-over key to a private file and return its path; ``None`` when there is none."""
    raw = environ.pop(KEYFILE_JSON_ENV, None)
    if not raw:
        return None
    directory = tempfile.mkdtemp(prefix="mlpipe-gcp-")  # mode 0700
    path = os.path.join(directory, "key.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(raw)
    atexit.register(shutil.rmtree, directory, True)
    environ["GOOGLE_APPLICATION_CREDENTIALS"] = path
    return path
