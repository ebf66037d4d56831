"""A Hook for storage access with an Airflow GCP connection: ``gs://`` reads on the Airflow side, and the runtime's
credentials, both from the connection and never from a pipeline spec.

Order of precedence: the ``google_cloud_default`` connection (or the one named), when it exists and names a key;
otherwise whatever the process's environment provides (``GOOGLE_APPLICATION_CREDENTIALS``, Application Default
Credentials of the VM or the Kubernetes service account), which the runtime inherits anyway.

The connection may hold ``key_path`` (a key file the worker can read) or ``keyfile_dict`` (the key's JSON), under
those names or the Google provider's ``extra__google_cloud_platform__`` prefix, plus ``project``. A key's JSON
travels to the runtime in an environment variable, like the MLMD password, and the runtime writes it to a
private file only for its own lifetime (``runtime/io/credentials.py``), so it never lands in a request file, a log or
XCom. The same mapping feeds :func:`airflow_provider_mlpipe.storage.gcs_options`, where credentials resolve on both
sides. The hook does not register a connection type: ``google_cloud_platform`` belongs to the Google provider,
which this hook does not need installed.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_mlpipe.storage import KEYFILE_JSON_ENV, Storage, is_gcs
from airflow_provider_mlpipe.version_compat import BaseHook

DEFAULT_GCP_CONN_ID = "google_cloud_default"
EXTRA_PREFIX = "extra__google_cloud_platform__"


def _extra(extra: dict[str, Any], name: str) -> Any:
    return extra.get(name) or extra.get(f"{EXTRA_PREFIX}{name}")


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


class GcpStorageHook(BaseHook):
    """Storage and runtime credentials from a GCP connection; the environment's when there is no connection.

    :param gcp_conn_id: the connection; ``None`` or empty uses the environment only.
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = DEFAULT_GCP_CONN_ID
    hook_name = "mlpipe storage (GCP)"

    def __init__(self, gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID) -> None:
        super().__init__()
        self.gcp_conn_id = gcp_conn_id

    def credentials_env(self) -> dict[str, str]:
        """Environment additions for the runtime from the connection; empty without one (the environment rules)."""
        if not self.gcp_conn_id:
            return {}
        try:
            conn = self.get_connection(self.gcp_conn_id)
        except Exception:  # no such connection: credentials come from the environment, as without Airflow
            return {}
        return credentials_env_from_extra(conn.extra_dejson or {})

    async def acredentials_env(self) -> dict[str, str]:
        """:meth:`credentials_env` for the triggerer's event loop, which must not look connections up blocking."""
        if not self.gcp_conn_id:
            return {}
        try:
            conn = await self.aget_connection(self.gcp_conn_id)
        except Exception:  # no such connection: the environment rules, as in credentials_env
            return {}
        return credentials_env_from_extra(conn.extra_dejson or {})

    def get_storage(self) -> Storage:
        """Storage whose ``gs://`` access uses this connection's credentials."""
        return Storage(self.credentials_env())


def storage_for(uri: str, gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID) -> Storage:
    """Storage to read ``uri`` with on the Airflow side; only ``gs://`` needs (and looks up) the connection."""
    return GcpStorageHook(gcp_conn_id).get_storage() if is_gcs(uri) else Storage()


def gcp_credentials_env(conn_id: str | None = DEFAULT_GCP_CONN_ID) -> dict[str, str]:
    """The runtime's environment additions from the GCP connection (see :meth:`GcpStorageHook.credentials_env`)."""
    return GcpStorageHook(conn_id).credentials_env()
