"""The stage protocol: what the Airflow side hands the runtime, and what comes back.

Both sides import this module, so it uses only the standard library. Requests and results travel as JSON
files; secrets (MLMD passwords, cloud credentials) travel in the child's environment, never in these files.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
# The runtime reads the MLMD connection from this variable so passwords never land on disk or in XCom.
MLMD_CONFIG_ENV = "MLPIPE_MLMD_CONFIG"
# The runtime prints this before its one-line error, so the Airflow task fails with the real cause.
FAILURE_PREFIX = "mlpipe stage failed: "
RUNTIME_MODULE = "airflow_provider_mlpipe.runtime"
# The subcommands of ``python -m RUNTIME_MODULE``; the runtime's parser offers exactly these (a test checks).
RUNTIME_SUBCOMMANDS = ("run", "rollback", "gc", "bless", "baseline-reset", "gate-record", "serve")


def runtime_command(python: str, subcommand: str, *args: str) -> list[str]:
    """The argv that runs one subcommand of the runtime's entry point with the runtime's interpreter."""
    if subcommand not in RUNTIME_SUBCOMMANDS:
        raise ValueError(f"The runtime has no subcommand {subcommand!r}; it has {', '.join(RUNTIME_SUBCOMMANDS)}.")
    return [python, "-m", RUNTIME_MODULE, subcommand, *args]


def default_sqlite_path() -> str:
    """The embedded MLMD store: an SQLite file under $AIRFLOW_HOME (both sides must agree on it)."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "mlpipe", "mlmd.sqlite")


def decode_json_text(text: str) -> Any:
    """A property's string value; lists and dicts travel as JSON text in MLMD, so decode those back."""
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


@dataclass
class ArtifactRef:
    """An artifact as both sides see it: an MLMD id, a type, a URI and its properties."""

    type: str
    uri: str
    id: int | None = None
    name: str = ""
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(
            type=data["type"],
            uri=data["uri"],
            id=data.get("id"),
            name=data.get("name", ""),
            properties=dict(data.get("properties") or {}),
        )


@dataclass
class StageRequest:
    pipeline: str
    pipeline_root: str
    stage: str
    node_id: str
    run_id: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[ArtifactRef]] = field(default_factory=dict)
    beam_args: list[str] = field(default_factory=list)
    logical_date: str | None = None
    data_interval_start: str | None = None
    data_interval_end: str | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    spec_dir: str | None = None
    enable_cache: bool = True
    try_number: int = 1
    # The module of the stage's description, so a runtime finds stages defined outside this package.
    stage_module: str | None = None
    protocol_version: int = PROTOCOL_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRequest:
        data = dict(data)
        if data.get("protocol_version", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise ValueError(
                f"The stage request speaks protocol {data.get('protocol_version')}, "
                f"but this runtime speaks {PROTOCOL_VERSION}. Install the same mlpipe version in both venvs."
            )
        data["inputs"] = {
            slot: [ArtifactRef.from_dict(a) for a in arts] for slot, arts in (data.get("inputs") or {}).items()
        }
        return cls(**data)

    @classmethod
    def read(cls, path: str | Path) -> StageRequest:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class StageResult:
    stage: str
    execution_id: int | None
    cached: bool
    outputs: dict[str, list[ArtifactRef]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageResult:
        return cls(
            stage=data["stage"],
            execution_id=data.get("execution_id"),
            cached=bool(data.get("cached")),
            outputs={
                slot: [ArtifactRef.from_dict(a) for a in arts] for slot, arts in (data.get("outputs") or {}).items()
            },
            summary=dict(data.get("summary") or {}),
            duration_s=float(data.get("duration_s") or 0.0),
        )

    def artifact(self, slot: str) -> ArtifactRef:
        arts = self.outputs.get(slot) or []
        if not arts:
            raise KeyError(f"The {self.stage} result has no {slot!r} output.")
        return arts[0]


# ----- the warm runtime's socket messages (runtime/warm_server.py and operators/warm_runtime.py) -----------------
WARM_HELLO = b"mlpipe-warm-1"
_FRAME = struct.Struct("!I")


def send_message(conn: socket.socket, message: dict[str, Any]) -> None:
    """One length-prefixed JSON message."""
    body = json.dumps(message).encode()
    conn.sendall(_FRAME.pack(len(body)) + body)


def receive_message(conn: socket.socket) -> dict[str, Any] | None:
    """One length-prefixed JSON message, or None when the peer closed the connection first."""
    header = _read_exactly(conn, _FRAME.size)
    body = _read_exactly(conn, _FRAME.unpack(header)[0]) if header is not None else None
    return json.loads(body) if body is not None else None


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
