"""GCP credentials for the ML runtime from an Airflow connection, never from a pipeline spec.

Order of precedence: the ``google_cloud_default`` connection (or the one named), when it exists and names a key;
otherwise whatever the worker's environment provides (``GOOGLE_APPLICATION_CREDENTIALS``, Application Default
Credentials of the VM or the Kubernetes service account), which the runtime inherits anyway.

The connection may hold ``key_path`` (a key file the worker can read) or ``keyfile_dict`` (the key's JSON), under
those names or the Google provider's ``extra__google_cloud_platform__`` prefix, plus ``project``. A key's JSON
travels to the runtime in an environment variable, like the MLMD password, and the runtime writes it to a
private file only for its own lifetime (``runtime/io/credentials.py``), so it never lands in a request file, a log or
XCom. This module does not need the Google provider installed.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_mlpipe.version_compat import BaseHook

DEFAULT_GCP_CONN_ID = "google_cloud_default"
# Read by runtime/io/credentials.py; the name is shared by convention, as the runtime may not import this module.
KEYFILE_JSON_ENV = "MLPIPE_GCP_KEYFILE_JSON"
_PREFIX = "extra__google_cloud_platform__"


def _extra(extra: dict[str, Any], name: str) -> Any:
    return extra.get(name) or extra.get(f"{_PREFIX}{name}")


def credentials_env_from_extra(extra: dict[str, Any]) -> dict[str, str]:
    """The runtime environment a GCP connection's extra asks for; empty when it names no key or project."""
    env: dict[str, str] = {}
    key_path = _extra(extra, "key_path")
    keyfile = _extra(extra, "keyfile_dict")
    if key_path and keyfile:
        raise ValueError("The GCP connection sets both key_path and keyfile_dict; keep one.")
    if key_path:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key_path)
    elif keyfile:
        info = keyfile if isinstance(keyfile, dict) else json.loads(keyfile)
        if not isinstance(info, dict) or "type" not in info:
            raise ValueError("The GCP connection's keyfile_dict is not a service account key (no 'type').")
        env[KEYFILE_JSON_ENV] = json.dumps(info)
    project = _extra(extra, "project")
    if project:
        env["GOOGLE_CLOUD_PROJECT"] = str(project)
    return env


def gcp_credentials_env(conn_id: str | None = DEFAULT_GCP_CONN_ID) -> dict[str, str]:
    """Environment additions for the runtime from the GCP connection; empty without one (the environment rules)."""
    if not conn_id:
        return {}
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no such connection: credentials come from the environment, as without Airflow
        return {}
    return credentials_env_from_extra(conn.extra_dejson or {})
