"""The argument object a trainer module's ``run_fn(fn_args)`` receives, close to TFX's ``FnArgs``.

File lists are glob patterns, as in TFX. ``callbacks`` holds the guards the Trainer relies on (stop on a NaN
loss and remember it); pass them to ``model.fit`` so a diverging run fails the stage instead of exporting a
broken model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class NanLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def _keras_callbacks() -> tuple[Any, Any]:
    import tf_keras

    class NanLossRecorder(tf_keras.callbacks.Callback):
        """Remembers the first non-finite loss, which TerminateOnNaN only logs."""

        def __init__(self) -> None:
            super().__init__()
            self.bad_batch: int | None = None
            self.bad_loss: float | None = None

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and self.bad_batch is None and not math.isfinite(float(loss)):
                self.bad_batch, self.bad_loss = batch, float(loss)

    return tf_keras.callbacks.TerminateOnNaN(), NanLossRecorder()


@dataclass
class FnArgs:
    train_files: list[str]
    eval_files: list[str]
    schema_path: str
    serving_model_dir: str
    model_run_dir: str
    train_steps: int | None  # None: the built-in trainer runs whole epochs
    eval_steps: int | None = None
    transform_output: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    examples_format: str = "tfrecord_gzip"
    span: int | None = None
    tmp_dir: str = ""
    callbacks: list[Any] = field(default_factory=list)

    @property
    def schema_file(self) -> str:
        return self.schema_path

    @property
    def transform_graph_path(self) -> str | None:
        return self.transform_output

    @property
    def custom_config(self) -> dict[str, Any]:
        return self.hyperparameters

    def load_schema(self) -> Any:
        """The schema as a ``tensorflow_metadata`` ``Schema`` proto."""
        from airflow_provider_mlpipe.runtime.io.schema_tables import load_schema

        return load_schema(self.schema_path)

    def add_guards(self) -> None:
        self.callbacks.extend(_keras_callbacks())

    def check_guards(self) -> None:
        for callback in self.callbacks:
            if getattr(callback, "bad_batch", None) is not None:
                raise NanLossError(
                    f"Training diverged: the loss was {callback.bad_loss} at batch {callback.bad_batch}. "
                    "Lower the learning rate or check the transformed features for NaN."
                )
