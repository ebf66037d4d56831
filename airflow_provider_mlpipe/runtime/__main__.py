"""The runtime's one entry point: ``python -m airflow_provider_mlpipe.runtime <subcommand> ...``.

- ``run <request.json> --result <result.json>`` runs one stage. In a container (the Kubernetes runtime) there is no
  shared file to hand over, so the request may also come from a variable (``run --request-env MLPIPE_REQUEST
  --result /airflow/xcom/return.json``) or from stdin (``run -``).
- ``rollback <pipeline> --destination DIR [--to VERSION]`` serves an earlier pushed version again; prints a JSON
  summary as its last line.
- ``gc <pipeline> --pipeline-root ROOT [--dry-run] ...`` applies the retention policy (runtime/retention/); prints
  what it deleted and kept, then the plan as its last JSON line.
- ``bless <pipeline> --model ID --reason R --user U`` blesses a NOT_BLESSED model by override, and
  ``baseline-reset <pipeline> --reason R --user U [--from-span S]`` resets the Evaluator's baseline; both print a
  JSON summary as their last line (``runtime/metadata/baseline_decisions.py``).
- ``gate-record '<decision json>'`` records a gate sensor's decision, or an approval, in MLMD.
- ``serve --socket PATH`` is the warm runtime: the stack imported once, a forked child per stage (warm_server.py).

Every failure ends with one ``FAILURE_PREFIX`` line, which the Airflow side turns into the task's error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, RUNTIME_MODULE


class StageTerminated(BaseException):
    """Raised on SIGTERM so the runner discards staged outputs and marks the execution FAILED."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise StageTerminated(f"The stage was terminated by signal {signum}.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {RUNTIME_MODULE}", description="The mlpipe ML runtime (runs in the runtime environment)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="Run one stage request.", description="Run one stage request.")
    run.add_argument("request", nargs="?", help="The stage request JSON file, or - for stdin.")
    run.add_argument("--request-env", metavar="VAR", help="Read the stage request JSON from this variable.")
    run.add_argument("--result", required=True, help="Where to write the stage result JSON.")
    run.set_defaults(handler=run_command, subparser=run)

    back_help = "Serve an earlier pushed version again, recorded in MLMD."
    back = sub.add_parser("rollback", help=back_help, description=back_help)
    back.add_argument("pipeline")
    back.add_argument("--destination", required=True, help="The serving directory the Pusher pushes to.")
    back.add_argument("--to", type=int, default=None, help="The version to serve (default: the previous one).")
    back.add_argument(
        "--keep-versions", type=int, default=None, help="Prune to this many versions, never the served or target."
    )
    back.set_defaults(handler=rollback_command)

    gc_help = "Delete what the retention policy no longer keeps (never a served model's or baseline's lineage)."
    gc = sub.add_parser("gc", help=gc_help, description=gc_help)
    gc.add_argument("pipeline")
    gc.add_argument("--pipeline-root", required=True, help="The pipeline root the stages write under.")
    gc.add_argument("--destination", action="append", default=[], help="A Pusher's serving directory (repeatable).")
    gc.add_argument("--keep-spans", type=int, default=None, help="Keep the artifacts of the newest N spans.")
    gc.add_argument("--keep-days", type=float, default=None, help="Keep artifacts written in the last D days.")
    gc.add_argument("--keep-versions", type=int, default=None, help="Prune serving to the newest K versions.")
    gc.add_argument(
        "--min-age", type=float, default=86400.0, help="Seconds; nothing younger is touched (the longest timeout)."
    )
    gc.add_argument("--dry-run", action="store_true", help="Only print what would be deleted and what is kept.")
    gc.set_defaults(handler=gc_command)
    bless_help = "Bless a NOT_BLESSED model by override, recorded in MLMD with the user and the reason."
    bless = sub.add_parser("bless", help=bless_help, description=bless_help)
    bless.add_argument("pipeline")
    bless.add_argument("--model", required=True, help="The Model's MLMD artifact id, or the run id that evaluated it.")
    bless.add_argument("--reason", required=True)
    bless.add_argument("--user", required=True)
    bless.set_defaults(handler=decision_command)

    reset_help = "Reset the Evaluator's baseline: later candidates are judged on value thresholds only."
    reset = sub.add_parser("baseline-reset", help=reset_help, description=reset_help)
    reset.add_argument("pipeline")
    reset.add_argument("--reason", required=True)
    reset.add_argument("--user", required=True)
    reset.add_argument("--from-span", type=int, default=None, help="Default: the newest span a model was trained on.")
    reset.set_defaults(handler=decision_command)

    gate_help = "Record a gate decision in MLMD."
    gate = sub.add_parser("gate-record", help=gate_help, description=gate_help)
    gate.add_argument(
        "decision",
        help="JSON with pipeline, run_id, node_id, gate, decision, reason and optionally "
        "input_artifact_id, policy, verdict_uri, model_artifact_id, details.",
    )
    gate.set_defaults(handler=gate_record_command)

    serve_help = "Keep the ML stack imported and fork a fresh child per stage (the warm runtime)."
    serve = sub.add_parser("serve", help=serve_help, description=serve_help)
    serve.add_argument("--socket", required=True, help="The Unix socket to listen on (made 0600).")
    serve.add_argument("--idle-timeout", type=float, default=600.0, help="Exit after this many idle seconds.")
    serve.set_defaults(handler=serve_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _report_failure(exc: BaseException, *, with_traceback: bool = True) -> int:
    if with_traceback:
        traceback.print_exc()
    print(f"{FAILURE_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return 1


def run_command(args: argparse.Namespace) -> int:
    if (args.request is None) == (args.request_env is None):
        args.subparser.error("give either a request file (or -) or --request-env VAR")
    _configure_logging()
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
        return _report_failure(exc)
    logging.getLogger("mlpipe.runtime").info(
        "Stage %s finished (execution %s%s).",
        result.stage,
        result.execution_id,
        ", cached" if result.cached else "",
    )
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        from airflow_provider_mlpipe.runtime.io.credentials import materialize_gcp_keyfile
        from airflow_provider_mlpipe.runtime.serving.model_versions import PushError, rollback
    except Exception as exc:  # a broken install: reported like any other failure, so `except PushError` is safe
        return _report_failure(exc)
    try:
        materialize_gcp_keyfile()
        summary = rollback(args.destination, args.pipeline, to_version=args.to, keep_versions=args.keep_versions)
    except PushError as exc:  # a sentence for people, e.g. "Cannot roll back to version 9: it does not exist..."
        print(f"{FAILURE_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        return _report_failure(exc, with_traceback=False)  # its errors are for people: no traceback
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)
    return 0


def gc_command(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        import datetime as dt

        from airflow_provider_mlpipe.runtime.io.credentials import materialize_gcp_keyfile
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
        from airflow_provider_mlpipe.runtime.retention.gc import collect, report
        from airflow_provider_mlpipe.runtime.retention.plan import RetentionPolicy

        materialize_gcp_keyfile()
        policy = RetentionPolicy(
            keep_spans=args.keep_spans,
            keep_for=dt.timedelta(days=args.keep_days) if args.keep_days is not None else None,
            keep_versions=args.keep_versions,
            min_age=dt.timedelta(seconds=args.min_age),
        )
        plan = collect(
            MetadataClient(), args.pipeline, args.pipeline_root, args.destination, policy, dry_run=args.dry_run
        )
    except Exception as exc:
        return _report_failure(exc)
    print(report(plan, args.dry_run), flush=True)
    print(json.dumps(plan.to_dict(), sort_keys=True, default=str), flush=True)
    return 0


def decision_command(args: argparse.Namespace) -> int:
    """``bless`` and ``baseline-reset``: a person's decision about the baseline, recorded in MLMD."""
    _configure_logging()
    try:
        from airflow_provider_mlpipe.runtime.metadata import baseline_decisions as decisions
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
    except Exception as exc:  # a broken install: reported like any other failure
        return _report_failure(exc)
    try:
        client = MetadataClient()
        if args.command == "bless":
            summary = decisions.bless_by_override(client, args.pipeline, args.model, args.reason, args.user)
        else:
            summary = decisions.reset_baseline(client, args.pipeline, args.reason, args.user, args.from_span)
    except decisions.DecisionError as exc:  # a sentence for people, e.g. "Model 7 is already blessed ..."
        print(f"{FAILURE_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        return _report_failure(exc)
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)
    return 0


def gate_record_command(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
        from airflow_provider_mlpipe.runtime.metadata.gate_record import record_gate_decision

        data = json.loads(args.decision)
        execution_id = record_gate_decision(
            MetadataClient(),
            data["pipeline"],
            data["run_id"],
            data["node_id"],
            data["gate"],
            data["decision"],
            data["reason"],
            data.get("input_artifact_id"),
            policy=data.get("policy", ""),
            verdict_uri=data.get("verdict_uri", ""),
            model_artifact_id=data.get("model_artifact_id"),
            details=data.get("details"),
        )
    except Exception as exc:
        return _report_failure(exc)
    logging.getLogger("mlpipe.runtime.gate").info(
        "Recorded the %s decision %r as MLMD execution %d.", data["gate"], data["decision"], execution_id
    )
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.runtime.warm_server import serve

    return serve(args.socket, args.idle_timeout)


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
