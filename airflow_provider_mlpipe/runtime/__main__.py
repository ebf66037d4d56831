"""Entry point: ``python -m airflow_provider_mlpipe.runtime run <request.json> --result <result.json>``.

In a container (the Kubernetes runtime) there is no shared file to hand over, so the request may also come from
an environment variable: ``run --request-env MLPIPE_REQUEST --result /airflow/xcom/return.json``, or from
stdin with ``run -``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from types import FrameType

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX


class StageTerminated(BaseException):
    """Raised on SIGTERM so the runner discards staged outputs and marks the execution FAILED."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise StageTerminated(f"The stage was terminated by signal {signum}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_mlpipe.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run one stage request.")
    run.add_argument("request", nargs="?", help="The stage request JSON file, or - for stdin.")
    run.add_argument("--request-env", metavar="VAR", help="Read the stage request JSON from this variable.")
    run.add_argument("--result", required=True, help="Where to write the stage result JSON.")
    back = sub.add_parser("rollback", help="Serve an earlier pushed version again, recorded in MLMD.")
    back.add_argument("pipeline")
    back.add_argument("--destination", required=True, help="The serving directory the Pusher pushes to.")
    back.add_argument("--to", type=int, default=None, help="The version to serve (default: the previous one).")
    args = parser.parse_args(argv)
    if args.command == "rollback":
        return _rollback(args)
    if (args.request is None) == (args.request_env is None):
        parser.error("give either a request file (or -) or --request-env VAR")

    logging.basicConfig(
        level=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from airflow_provider_mlpipe.protocol import StageRequest
        from airflow_provider_mlpipe.runtime.io.credentials import materialize_gcp_keyfile
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
        from airflow_provider_mlpipe.runtime.runner import run_stage

        materialize_gcp_keyfile()  # a GCP connection's key, handed over in the environment
        request = _read_request(args.request, args.request_env, StageRequest)
        client = MetadataClient()
        result = run_stage(request, client)
        tmp = f"{args.result}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(result.to_json())
        os.replace(tmp, args.result)
    except (Exception, StageTerminated) as exc:
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


def _rollback(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"), stream=sys.stdout)
    try:
        from airflow_provider_mlpipe.runtime.io.credentials import materialize_gcp_keyfile
        from airflow_provider_mlpipe.runtime.serving.model_versions import rollback

        materialize_gcp_keyfile()
        summary = rollback(args.destination, args.pipeline, to_version=args.to)
    except Exception as exc:
        print(f"{FAILURE_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)
    return 0


def _read_request(path: str | None, env_var: str | None, request_cls: type) -> object:
    if env_var is not None:
        raw = os.environ.get(env_var)
        if not raw:
            raise ValueError(f"The stage request variable {env_var} is not set or empty.")
        return request_cls.from_dict(json.loads(raw))
    if path == "-":
        return request_cls.from_dict(json.loads(sys.stdin.read()))
    return request_cls.read(path)


if __name__ == "__main__":
    sys.exit(main())
