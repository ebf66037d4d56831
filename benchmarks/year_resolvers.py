"""The resolver lookups of a year's last span, timed against the year's MLMD (runs in .venv-runtime).

    .venv-runtime/bin/python benchmarks/year_resolvers.py <last results.json>

``MLPIPE_MLMD_CONFIG`` names the store. The requests are the ones the stages of the last day sent: SchemaGen's
previous schema, ExampleValidator's previous-span statistics (drift) and the Evaluator's latest blessed
baseline. Prints one JSON line: strategy -> median seconds of ``REPEATS`` calls, each with a fresh client, as
a stage's own process would make them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from airflow_provider_mlpipe.protocol import StageRequest, StageResult
from airflow_provider_mlpipe.runtime.metadata import resolvers
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

REPEATS = 5
# stage task, its wired input (task.slot), the resolved slot's artifact type and strategy
LOOKUPS = (
    ("schema_gen", {"statistics": "statistics_gen.statistics"}, "Schema", "previous_output"),
    ("example_validator", {"statistics": "statistics_gen.statistics"}, "ExampleStatistics", "previous_span_statistics"),
    ("evaluator", {"model": "trainer.model", "examples": "example_gen.examples"}, "Model", "latest_blessed_model"),
)


def main(results_file: str) -> None:
    results = {k: StageResult.from_dict(v) for k, v in json.loads(Path(results_file).read_text()).items()}
    timings: dict[str, float] = {}
    for task, wiring, type_name, strategy in LOOKUPS:
        inputs = {}
        for slot, source in wiring.items():
            upstream, _, out_slot = source.partition(".")
            inputs[slot] = results[upstream].outputs[out_slot]
        request = StageRequest(pipeline="year", pipeline_root="", stage=task, node_id=task, run_id="", inputs=inputs)
        exclude = [ref.id for refs in inputs.values() for ref in refs if ref.id is not None]
        seconds, found = [], None
        for _ in range(REPEATS):
            client = MetadataClient()
            started = time.perf_counter()
            found = resolvers.STRATEGIES[strategy](client, request, type_name, exclude)
            seconds.append(time.perf_counter() - started)
        if found is None:
            raise SystemExit(f"The {strategy} lookup of {task} found nothing; the year's store is incomplete.")
        timings[f"{task}.{strategy}"] = statistics.median(seconds)
    print(json.dumps(timings))


if __name__ == "__main__":
    main(sys.argv[1])
