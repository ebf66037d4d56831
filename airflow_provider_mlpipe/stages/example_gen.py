"""ExampleGen: ingests one span of input and splits it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from airflow_provider_mlpipe.stages.description import EXAMPLES, OutputSlot, StageDescription, StageParams

# The placeholders of an input pattern, declared once: the runtime fills them (runtime/io/span_patterns.py) and
# the spec layer refuses any other ``{...}``, which would otherwise match no file at run time.
DATE_PLACEHOLDERS = {"{SPAN}": "%Y%m%d", "{YYYY}": "%Y", "{MM}": "%m", "{DD}": "%d"}  # -> the span date's strftime
VERSION_PLACEHOLDER = "{VERSION}"
PATTERN_PLACEHOLDERS = (*DATE_PLACEHOLDERS, VERSION_PLACEHOLDER)


def input_format(declared: str | None, path: str) -> str:
    """The spec's ``input.format``, or a guess from the file name when it names none (the runtime reads the file
    so, and the spec layer samples it so)."""
    if declared:
        return declared
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if ".tfrecord" in name or name.endswith((".tfr", ".gz")):
        return "tfrecord"
    return "csv"


class ExampleGenInput(StageParams):
    pattern: str | None = Field(None, description=f"Files of one span; takes {' '.join(PATTERN_PLACEHOLDERS)}.")
    format: Literal["csv", "parquet", "tfrecord"] | None = Field(
        None, description="Input format; guessed from the file name when absent."
    )
    splits: dict[str, str] | None = Field(None, description="Pre-split input: split name -> pattern.")


class CsvOptions(StageParams):
    delimiter: str = Field(",", min_length=1, max_length=1)


class ExampleGenParams(StageParams):
    input: ExampleGenInput
    splits: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"train": 2, "eval": 1}, description="Hash buckets per split."
    )
    partition_feature: str | None = Field(None, description="Hash this column instead of the whole row.")
    version: int | None = Field(None, ge=0, description="Input version; the latest when absent.")
    csv: CsvOptions | None = None
    rows_per_shard: int = Field(1_000_000, ge=1, description="Rows per Parquet file of a split.")


DESCRIPTION = StageDescription(
    name="example_gen",
    component="ExampleGen",
    params=ExampleGenParams,
    executor="airflow_provider_mlpipe.runtime.executors.example_gen",
    outputs=(OutputSlot("examples", EXAMPLES),),
    ui_color="#d9ead3",
    order=10,
    doc=(
        "ingests one span of CSV, Parquet or TFRecord (local or `gs://`); the span comes from the run's data "
        "interval, so a backfill of N days ingests N spans, each once; hash-bucket or pre-split splits; writes "
        "Parquet, which TFDV, tf.Transform and the Evaluator read directly"
    ),
)
