"""The trigger behind the gate sensors: waits on the triggerer until a verdict file can be read.

It runs inside the triggerer's event loop, so every blocking read happens in a worker thread. It imports
neither TensorFlow nor ML Metadata: the verdict is plain JSON written by the runtime.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_mlpipe.hooks.gcp_storage import DEFAULT_GCP_CONN_ID, GcpStorageHook
from airflow_provider_mlpipe.storage import Storage
from airflow_provider_mlpipe.version_compat import BaseTrigger, TriggerEvent

STATUS_SUCCESS = "success"
STATUS_TIMEOUT = "timeout"
STATUS_ERROR = "error"


def read_verdict(uri: str, storage: Storage) -> dict[str, Any] | None:
    """The parsed verdict, or None while the file does not exist. Parse errors propagate (``ValueError``)."""
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:  # both backends say "not there yet" this way
        return None
    verdict = json.loads(text)
    if not isinstance(verdict, dict):
        raise ValueError(f"The verdict at {uri} is a JSON {type(verdict).__name__}, not an object.")
    return verdict


class VerdictFileTrigger(BaseTrigger):
    """Fires once the JSON file at ``uri`` (local path or ``gs://``) is readable.

    The event payload is ``{"status": "success", "uri", "verdict"}``, or ``{"status": "timeout" | "error",
    "uri", "message"}`` when ``timeout`` seconds pass or the file is not valid JSON.

    :param uri: the verdict file, e.g. ``<anomalies artifact>/anomalies.json``.
    :param poll_interval: seconds between reads.
    :param timeout: seconds to wait in total; ``None`` waits until Airflow's own deferral timeout.
    :param gcp_conn_id: the GCP connection whose credentials read ``gs://`` (the environment's without one).
    """

    def __init__(
        self,
        *,
        uri: str,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.gcp_conn_id = gcp_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "uri": self.uri,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "gcp_conn_id": self.gcp_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        polls = 0
        # Only gs:// needs the connection; looking it up costs the triggerer a round trip per trigger.
        remote = self.uri.startswith("gs://")
        storage = Storage(await GcpStorageHook(self.gcp_conn_id).acredentials_env() if remote else None)
        while True:
            polls += 1
            try:
                verdict = await asyncio.to_thread(read_verdict, self.uri, storage)
            except Exception as exc:  # unreadable or not JSON: waiting longer will not fix it
                self.log.error("The verdict %s cannot be read: %s", self.uri, exc)
                yield TriggerEvent({"status": STATUS_ERROR, "uri": self.uri, "message": f"{type(exc).__name__}: {exc}"})
                return
            if verdict is not None:
                self.log.info("Verdict %s found after %d poll(s).", self.uri, polls)
                yield TriggerEvent({"status": STATUS_SUCCESS, "uri": self.uri, "verdict": verdict})
                return
            if deadline is not None and time.monotonic() >= deadline:
                message = f"No verdict appeared at {self.uri} within {self.timeout:g} s."
                self.log.warning("%s", message)
                yield TriggerEvent({"status": STATUS_TIMEOUT, "uri": self.uri, "message": message})
                return
            self.log.info("Waiting for the verdict %s (poll %d).", self.uri, polls)
            wait = self.poll_interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            await asyncio.sleep(wait)
