"""What an executor sees: its inputs, where to write its outputs, parameters.

Executors are pure functions of this context: they never talk to Airflow or MLMD, so a unit test can build a
context over temporary directories and call ``execute`` directly.

Single-host stages see local paths only. Beam stages (``uses_beam``) are URI-native: input URIs and output
staging locations may be ``gs://``, so Beam workers on other hosts reach them; such an executor does its file
I/O through ``airflow_provider_mlpipe.storage`` or Beam/TensorFlow (which stream, never download).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.stages.description import StageParams

log = logging.getLogger("mlpipe.runtime")


class UserModuleError(RuntimeError):
    """A user module could not be found, imported, or lacks the function a stage needs."""


@dataclass
class OutputArtifact:
    type: str
    path: str  # staging location the executor writes into (``gs://`` only for URI-native stages)
    uri: str = ""  # final URI, known before the executor runs
    properties: dict[str, Any] = field(default_factory=dict)
    # Set by executors whose real output lives outside the pipeline root (the Pusher's serving directory).
    external_uri: str | None = None


@dataclass
class ExecutorContext:
    pipeline: str
    node_id: str
    run_id: str
    params: StageParams = field(default_factory=StageParams)  # the stage's own validated params model
    inputs: dict[str, list[ArtifactRef]] = field(default_factory=dict)
    resolved: dict[str, ArtifactRef | None] = field(default_factory=dict)
    outputs: dict[str, OutputArtifact] = field(default_factory=dict)
    beam_args: list[str] = field(default_factory=list)
    logical_date: str | None = None
    data_interval_start: str | None = None
    data_interval_end: str | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    spec_dir: str | None = None
    pipeline_root: str = ""
    tmp_dir: str = ""  # local scratch on this host, removed after the stage
    # Scratch that Beam workers can reach: a ``gs://`` prefix for a Beam stage on a GCS root, else ``tmp_dir``.
    temp_uri: str = ""

    def __post_init__(self) -> None:
        self.temp_uri = self.temp_uri or self.tmp_dir

    def input(self, slot: str) -> ArtifactRef:
        refs = self.inputs.get(slot) or []
        if not refs:
            raise ValueError(f"The {self.node_id} stage needs a {slot!r} input, but none was given.")
        return refs[0]

    def optional_input(self, slot: str) -> ArtifactRef | None:
        refs = self.inputs.get(slot) or []
        return refs[0] if refs else None

    def output(self, slot: str) -> OutputArtifact:
        return self.outputs[slot]

    def load_user_module(self, module_file: str, required: tuple[str, ...] = ()) -> ModuleType:
        """Import a user module that must live inside the pipeline's folder (``spec_dir``)."""
        return load_user_module(module_file, self.spec_dir, required)


def load_user_module(module_file: str, spec_dir: str | None, required: tuple[str, ...] = ()) -> ModuleType:
    if not spec_dir:
        raise UserModuleError("User modules need the pipeline's folder, but the request names none.")
    base = Path(spec_dir).resolve()
    path = (base / module_file).resolve()
    if base != path and base not in path.parents:
        raise UserModuleError(
            f"The user module {module_file!r} lies outside the pipeline's folder {base}; "
            "modules are only loaded from there."
        )
    if not path.is_file():
        raise UserModuleError(f"The user module {module_file!r} was not found in {base}.")
    name = f"mlpipe_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserModuleError(f"The user module {path} cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserModuleError(f"Importing the user module {path} failed: {type(exc).__name__}: {exc}") from exc
    for attr in required:
        if not callable(getattr(module, attr, None)):
            raise UserModuleError(f"The user module {path} does not define a function {attr!r}.")
    return module
