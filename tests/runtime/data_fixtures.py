"""Helpers for the data-stage tests: contexts over temporary directories and the penguin span files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.overrides import with_stage_overrides
from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.context import ExecutorContext, OutputArtifact
from airflow_provider_mlpipe.stages import get_stage
from tests.support.paths import DAGS

SPANS = DAGS / "data" / "penguins"
PATTERN = "data/penguins/span-{YYYY}-{MM}-{DD}.csv"


def make_ctx(
    tmp_path: Path,
    stage: str,
    params: dict[str, Any] | None = None,
    inputs: dict[str, ArtifactRef] | None = None,
    resolved: dict[str, ArtifactRef | None] | None = None,
    date: str | None = "2024-01-01T00:00:00+00:00",
    conf: dict[str, Any] | None = None,
    spec_dir: Path | str | None = DAGS,
) -> ExecutorContext:
    outputs = {}
    for slot in get_stage(stage).outputs:
        path = tmp_path / f"{stage}-{slot.name}-{len(list(tmp_path.glob(f'{stage}-*')))}"
        path.mkdir(parents=True)
        outputs[slot.name] = OutputArtifact(type=slot.artifact_type, path=str(path), uri=str(path))
    work = tmp_path / f"work-{stage}"
    work.mkdir(exist_ok=True)
    return ExecutorContext(
        pipeline="test",
        node_id=stage,
        run_id="run-1",
        params=get_stage(stage).params.model_validate(with_stage_overrides(params or {}, conf, stage, stage)),
        inputs={k: [v] for k, v in (inputs or {}).items()},
        resolved=resolved or {},
        outputs=outputs,
        logical_date=date,
        data_interval_start=date,
        conf=conf or {},
        spec_dir=str(spec_dir) if spec_dir else None,
        pipeline_root=str(tmp_path),
        tmp_dir=str(work),
    )


def as_input(ctx: ExecutorContext, slot: str) -> ArtifactRef:
    """The output of an executed context, as the next stage's input."""
    out = ctx.output(slot)
    return ArtifactRef(type=out.type, uri=out.path, id=None, name=slot, properties=dict(out.properties))


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def write_rows(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def corrupt_rows(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[str]]:
    """A broken span: ``bill_depth_mm`` dropped, ``body_mass_g`` turned into text, flippers 60 mm longer,
    and every bird on Biscoe (a shifted categorical distribution)."""
    out = []
    for row in rows:
        row = dict(row)
        row.pop("bill_depth_mm")
        if row["body_mass_g"] != "NA":
            row["body_mass_g"] = f"{row['body_mass_g']} g"
        if row["flipper_length_mm"] != "NA":
            row["flipper_length_mm"] = str(int(row["flipper_length_mm"]) + 60)
        row["island"] = "Biscoe"
        out.append(row)
    return out, list(out[0])


def copy_spans(target: Path, days: int = 5) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(SPANS.glob("span-*.csv"))[:days]:
        (target / path.name).write_bytes(path.read_bytes())
    return target
