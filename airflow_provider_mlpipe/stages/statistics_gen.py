"""StatisticsGen: TFDV statistics per split, in memory or on Beam."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airflow_provider_mlpipe.stages.description import (
    EXAMPLES,
    STATISTICS,
    InputSlot,
    OutputSlot,
    StageDescription,
    StageParams,
)


class StatisticsGenParams(StageParams):
    mode: Literal["auto", "arrow", "beam"] = Field(
        "auto", description="auto picks the in-memory Arrow path up to arrow_max_bytes, Beam above."
    )
    arrow_max_bytes: int = Field(1 << 30, ge=1)


DESCRIPTION = StageDescription(
    name="statistics_gen",
    component="StatisticsGen",
    params=StatisticsGenParams,
    executor="airflow_provider_mlpipe.runtime.executors.statistics_gen",
    inputs=(InputSlot("examples", EXAMPLES),),
    outputs=(OutputSlot("statistics", STATISTICS),),
    uses_beam=True,
    ui_color="#d9ead3",
    order=20,
    doc=(
        "TFDV statistics per split, on an in-memory Arrow path for data that fits (auto-selected by size) or on "
        "Beam; both give the same statistics; also TFDV's HTML view"
    ),
)
