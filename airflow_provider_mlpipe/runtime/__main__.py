"""Entry point: ``python -m airflow_provider_mlpipe.runtime run <request.json> --result <result.json>``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

FAILURE_PREFIX = "mlpipe stage failed: "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_mlpipe.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run one stage request.")
    run.add_argument("request")
    run.add_argument("--result", required=True, help="Where to write the stage result JSON.")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from airflow_provider_mlpipe.protocol import StageRequest
        from airflow_provider_mlpipe.runtime.metadata import MetadataClient
        from airflow_provider_mlpipe.runtime.runner import run_stage

        request = StageRequest.read(args.request)
        client = MetadataClient()
        result = run_stage(request, client)
        tmp = f"{args.result}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(result.to_json())
        os.replace(tmp, args.result)
    except Exception as exc:
        traceback.print_exc()
        print(f"{FAILURE_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    logging.getLogger("mlpipe.runtime").info(
        "Stage %s finished (execution %s%s).",
        result.stage,
        result.execution_id,
        ", cached" if result.cached else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
