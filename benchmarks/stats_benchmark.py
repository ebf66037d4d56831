"""StatisticsGen against its anchors on a seeded 1M-row, ~50 MB CSV (benchmarks/datagen.py).

(a) the StatisticsGen stage end to end through the runtime: ``run_stage`` with a real MLMD SQLite store, on the
    ExampleGen output of the CSV (ExampleGen itself is not timed);
(b) the TFX-style path: ``tfdv.generate_statistics_from_csv`` on the Beam DirectRunner;
(c) the limit: pyarrow ``read_csv`` plus ``tfdv.generate_statistics_from_dataframe``.

Imports are warmed up before any timing. (a) and (c) take the best of ``--repeat`` runs (the machine is shared);
(b) runs once. Targets: a/c <= 2 and a/b <= 0.1.

    .venv-runtime/bin/python benchmarks/stats_benchmark.py
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.datagen import ensure_csv


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-beam", action="store_true", help="leave out (b); no stats_vs_beam line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import pyarrow.csv as pcsv
    import tensorflow_data_validation as tfdv

    from airflow_provider_mlpipe.protocol import StageRequest
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
    from airflow_provider_mlpipe.runtime.runner import run_stage

    csv_path = ensure_csv(args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    print(f"data: {csv_path.name}, {args.rows} rows, {size_mb:.1f} MB")
    tmp = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    client = MetadataClient({"backend": "sqlite", "path": str(tmp / "mlmd.sqlite")})

    def request(stage: str, run_id: str, inputs: dict | None = None, params: dict | None = None) -> StageRequest:
        return StageRequest(
            pipeline="bench", pipeline_root=str(tmp / "root"), stage=stage, node_id=stage, run_id=run_id,
            params=params or {}, inputs=inputs or {}, logical_date="2024-01-01T00:00:00+00:00",
            enable_cache=False,
        )  # fmt: skip

    seconds, gen = timed(
        lambda: run_stage(request("example_gen", "gen", params={"input": {"pattern": str(csv_path)}}), client)
    )
    print(f"ExampleGen (not part of a): {seconds:.2f}s, rows {gen.summary['row_counts']}")
    examples = gen.outputs["examples"]

    # Warm-up: first use of the TFDV generators, HTML view and pandas conversion pays one-off import costs.
    small = pcsv.read_csv(csv_path, read_options=pcsv.ReadOptions(block_size=1 << 16)).slice(0, 2000).to_pandas()
    tfdv.utils.display_util.get_statistics_html(tfdv.generate_statistics_from_dataframe(small))

    def limit():
        frame = pcsv.read_csv(csv_path).to_pandas()
        return tfdv.generate_statistics_from_dataframe(frame)

    def stage(i: int):
        return run_stage(request("statistics_gen", f"stats-{i}", inputs={"examples": examples}), client)

    c_times, a_times = [], []
    for i in range(args.repeat):
        c_times.append(timed(limit)[0])
        seconds, result = timed(lambda i=i: stage(i))
        a_times.append(seconds)
    a, c = min(a_times), min(c_times)
    runs_a, runs_c = (", ".join(f"{t:.2f}" for t in times) for times in (a_times, c_times))
    path, compute = result.summary["path"], result.summary["compute_s"]
    print(f"(a) StatisticsGen stage via run_stage [{path}]: {a:.2f}s (runs {runs_a}; TFDV compute {compute:.2f}s)")
    print(f"(c) pyarrow read_csv + generate_statistics_from_dataframe: {c:.2f}s (runs {runs_c})")
    b = None
    if not args.skip_beam:
        b, _ = timed(lambda: tfdv.generate_statistics_from_csv(str(csv_path), output_path=str(tmp / "beam_stats.pb")))
        print(f"(b) tfdv.generate_statistics_from_csv on Beam DirectRunner: {b:.2f}s")
    print(f"BENCH stats_vs_limit ratio={a / c:.3f} target=2")
    if b is not None:
        print(f"BENCH stats_vs_beam ratio={a / b:.3f} target=0.1")


if __name__ == "__main__":
    main()
