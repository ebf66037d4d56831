"""StatisticsGen against its anchors on a seeded 1M-row, ~50 MB CSV (benchmarks/datagen.py).

Every comparison starts both sides from the same input:

- ``stats_vs_limit``: (a) the StatisticsGen stage end to end through the runtime (``run_stage`` with a real MLMD
  SQLite store) on ExampleGen's Parquet splits, against (c) the limit on those same Parquet files: pyarrow
  ``read_table`` plus ``tfdv.generate_statistics_from_dataframe`` per split.
- ``gen_stats_vs_limit``: (e) ExampleGen plus StatisticsGen, CSV in and statistics out, against (d) pyarrow
  ``read_csv`` plus ``tfdv.generate_statistics_from_dataframe`` on the CSV.
- ``gen_stats_vs_beam``: (e) against (b) the TFX-style path from the same CSV: ``tfdv.generate_statistics_from_csv``
  on the Beam DirectRunner.

Imports are warmed up before any timing. (a), (c), (d) and (e) take the best of ``--repeat`` runs (the machine is
shared); (b) runs once. Targets: a/c <= 2, e/d <= 2 and e/b <= 0.1.

    .venv-runtime/bin/python benchmarks/stats_benchmark.py
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.datagen import ensure_csv

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-beam", action="store_true", help="leave out (b); no gen_stats_vs_beam line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import tensorflow_data_validation as tfdv

    from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
    from airflow_provider_mlpipe.runtime.io import example_io
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
    from airflow_provider_mlpipe.runtime.runner import run_stage

    csv_path = ensure_csv(args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    print(f"data: {csv_path.name}, {args.rows} rows, {size_mb:.1f} MB")
    tmp = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    client = MetadataClient({"backend": "sqlite", "path": str(tmp / "mlmd.sqlite")})

    def run(stage: str, run_id: str, inputs: dict | None = None, params: dict | None = None) -> StageResult:
        request = StageRequest(
            pipeline="bench", pipeline_root=str(tmp / "root"), stage=stage, node_id=stage, run_id=run_id,
            params=params or {}, inputs=inputs or {}, logical_date="2024-01-01T00:00:00+00:00",
            enable_cache=False,
        )  # fmt: skip
        return run_stage(request, client)

    def example_gen(i: int) -> StageResult:
        return run("example_gen", f"gen-{i}", params={"input": {"pattern": str(csv_path)}})

    def statistics_gen(i: int, examples: list[ArtifactRef]) -> StageResult:
        return run("statistics_gen", f"stats-{i}", inputs={"examples": examples})

    def csv_limit() -> Any:
        return tfdv.generate_statistics_from_dataframe(pcsv.read_csv(csv_path).to_pandas())

    def parquet_limit(examples: ArtifactRef) -> dict[str, Any]:
        # Per split, as the stage computes them, from the very files the stage reads.
        splits = example_io.artifact_splits(examples.uri, examples.properties)
        return {
            split: tfdv.generate_statistics_from_dataframe(
                pq.read_table(example_io.split_files(examples.uri, split)).to_pandas()
            )
            for split in splits
        }

    # Warm-up: first use of the TFDV generators, HTML view and pandas conversion pays one-off import costs.
    small = pcsv.read_csv(csv_path, read_options=pcsv.ReadOptions(block_size=1 << 16)).slice(0, 2000).to_pandas()
    tfdv.utils.display_util.get_statistics_html(tfdv.generate_statistics_from_dataframe(small))

    gen_times, stage_times, parquet_times, csv_times = [], [], [], []
    for i in range(args.repeat):
        csv_times.append(timed(csv_limit)[0])
        seconds, gen = timed(lambda i=i: example_gen(i))
        gen_times.append(seconds)
        examples = gen.outputs["examples"]
        seconds, result = timed(lambda i=i, examples=examples: statistics_gen(i, examples))
        stage_times.append(seconds)
        parquet_times.append(timed(lambda examples=examples: parquet_limit(examples[0]))[0])
    pairs = [g + s for g, s in zip(gen_times, stage_times, strict=True)]
    a, c, d, e = min(stage_times), min(parquet_times), min(csv_times), min(pairs)
    path, compute = result.summary["path"], result.summary["compute_s"]
    print(f"ExampleGen rows {gen.summary['row_counts']}; ExampleGen runs {runs(gen_times)}")
    print(f"(a) StatisticsGen stage via run_stage [{path}]: {a:.2f}s "
          f"(runs {runs(stage_times)}; last TFDV compute {compute:.2f}s)")  # fmt: skip
    print(f"(c) pyarrow read_table of the same Parquet + generate_statistics_from_dataframe per split: {c:.2f}s "
          f"(runs {runs(parquet_times)})")  # fmt: skip
    print(f"(e) ExampleGen + StatisticsGen stages from the CSV: {e:.2f}s (runs {runs(pairs)})")
    print(f"(d) pyarrow read_csv + generate_statistics_from_dataframe: {d:.2f}s (runs {runs(csv_times)})")
    b = None
    if not args.skip_beam:
        b, _ = timed(lambda: tfdv.generate_statistics_from_csv(str(csv_path), output_path=str(tmp / "beam_stats.pb")))
        print(f"(b) tfdv.generate_statistics_from_csv on Beam DirectRunner: {b:.2f}s")
    print(f"BENCH stats_vs_limit ratio={a / c:.3f} target=2")
    print(f"BENCH gen_stats_vs_limit ratio={e / d:.3f} target=2")
    if b is not None:
        print(f"BENCH gen_stats_vs_beam ratio={e / b:.3f} target=0.1")


if __name__ == "__main__":
    main()
