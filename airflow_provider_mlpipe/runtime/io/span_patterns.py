"""Span and version resolution for ExampleGen input patterns.

A pattern such as ``data/penguins/span-{YYYY}-{MM}-{DD}.csv`` or ``gs://bucket/in/{SPAN}/v{VERSION}/*.parquet``
is resolved for one span date: the date tokens are filled in, ``{VERSION}`` becomes the requested version or the
highest one present, and the remaining glob matches the files. The span id is the integer ``YYYYMMDD`` of the
span date (docs/artifacts-and-params.md).

Both ``fingerprint`` (before the execution exists) and ``execute`` use this module, so the cache key and the
ingested files always agree.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import glob
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.runtime.io.artifact_store import is_gcs, split_gcs

_DATE_TOKENS = ("{SPAN}", "{YYYY}", "{MM}", "{DD}")
_VERSION = "{VERSION}"


@dataclass(frozen=True)
class InputFile:
    """One resolved input file with what the cache needs to notice a change."""

    uri: str
    size: int
    signature: str  # content hash (local) or the object's md5/crc32c and generation (GCS)


@dataclass(frozen=True)
class ResolvedSplit:
    pattern: str  # the pattern with span and version filled in
    files: tuple[InputFile, ...]


def span_date(conf: dict[str, Any] | None, data_interval_start: str | None, logical_date: str | None) -> dt.date:
    """The day this run ingests: ``conf["span"]``, else the data interval start, else the logical date."""
    override = (conf or {}).get("span")
    if override not in (None, ""):
        text = str(override).strip()
        if re.fullmatch(r"\d{8}", text):
            return dt.datetime.strptime(text, "%Y%m%d").date()
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            raise ValueError(f"conf['span'] = {override!r} is neither YYYYMMDD nor an ISO date.") from None
    for value in (data_interval_start, logical_date):
        if value:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    raise ValueError("The run has no data interval, no logical date and no conf['span']: cannot pick a span.")


def span_id(day: dt.date) -> int:
    return int(day.strftime("%Y%m%d"))


def fill_date(pattern: str, day: dt.date) -> str:
    return (
        pattern.replace("{SPAN}", day.strftime("%Y%m%d"))
        .replace("{YYYY}", day.strftime("%Y"))
        .replace("{MM}", day.strftime("%m"))
        .replace("{DD}", day.strftime("%d"))
    )


def absolute_pattern(pattern: str, spec_dir: str | None) -> str:
    """Patterns are relative to the pipeline's folder unless absolute or ``gs://``."""
    if is_gcs(pattern) or os.path.isabs(pattern):
        return pattern
    if not spec_dir:
        raise ValueError(f"The input pattern {pattern!r} is relative, but the request names no pipeline folder.")
    return os.path.join(spec_dir, pattern)


def _list(glob_pattern: str) -> list[str]:
    if not is_gcs(glob_pattern):
        return sorted(p for p in glob.glob(glob_pattern) if os.path.isfile(p))
    from airflow_provider_mlpipe.runtime.io.artifact_store import _gcs_client

    bucket, key_pattern = split_gcs(glob_pattern)
    prefix = re.split(r"[*?\[]", key_pattern, maxsplit=1)[0]
    names = [b.name for b in _gcs_client().list_blobs(bucket, prefix=prefix)]
    return sorted(f"gs://{bucket}/{n}" for n in names if fnmatch.fnmatchcase(n, key_pattern))


def resolve_version(pattern: str, requested: Any) -> tuple[str, int | None]:
    """Fill ``{VERSION}``: the requested one, or the highest version that has files."""
    if _VERSION not in pattern:
        return pattern, None
    if requested not in (None, "", "latest"):
        return pattern.replace(_VERSION, str(int(requested))), int(requested)
    head, _, tail = pattern.partition(_VERSION)
    regex = re.compile(
        "^" + re.escape(head).replace(r"\*", ".*") + r"(\d+)" + re.escape(tail).replace(r"\*", ".*") + "$"
    )
    versions = set()
    for path in _list(pattern.replace(_VERSION, "*")):
        match = regex.match(path)
        if match:
            versions.add(int(match.group(1)))
    if not versions:
        raise ValueError(f"No file matches the input pattern {pattern!r} for any {{VERSION}}.")
    best = max(versions)
    return pattern.replace(_VERSION, str(best)), best


def _signature(path: str) -> InputFile:
    if is_gcs(path):
        from airflow_provider_mlpipe.runtime.io.artifact_store import _gcs_client

        bucket, name = split_gcs(path)
        blob = _gcs_client().bucket(bucket).get_blob(name)
        if blob is None:
            raise ValueError(f"The input file {path} disappeared while it was being resolved.")
        return InputFile(path, int(blob.size or 0), f"{blob.md5_hash or blob.crc32c}:{blob.generation}")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ValueError(f"The input file {path} cannot be read: {exc.strerror or exc}.") from exc
    return InputFile(path, os.path.getsize(path), digest.hexdigest())


def resolve_split(pattern: str, day: dt.date, version: Any, spec_dir: str | None) -> tuple[ResolvedSplit, int | None]:
    full = absolute_pattern(fill_date(pattern, day), spec_dir)
    filled, resolved_version = resolve_version(full, version)
    paths = _list(filled)
    if not paths:
        raise ValueError(f"No input file matches {filled!r} (pattern {pattern!r}, span {span_id(day)}).")
    return ResolvedSplit(filled, tuple(_signature(p) for p in paths)), resolved_version


def resolve_inputs(
    params: dict[str, Any], day: dt.date, spec_dir: str | None
) -> tuple[dict[str, ResolvedSplit], int | None]:
    """Resolve the span's files: ``{"": ...}`` for one pattern, or one entry per pre-split input."""
    source = params.get("input") or {}
    version = params.get("version")
    if source.get("splits"):
        resolved: dict[str, ResolvedSplit] = {}
        versions = set()
        for name, pattern in source["splits"].items():
            resolved[name], found = resolve_split(str(pattern), day, version, spec_dir)
            versions.add(found)
        if len(versions) > 1:
            raise ValueError(f"The pre-split inputs resolve to different versions {sorted(map(str, versions))}.")
        return resolved, versions.pop()
    if not source.get("pattern"):
        raise ValueError("example_gen needs params.input.pattern or params.input.splits.")
    one, found = resolve_split(str(source["pattern"]), day, version, spec_dir)
    return {"": one}, found


def input_format(params: dict[str, Any], path: str) -> str:
    fmt = str((params.get("input") or {}).get("format") or "").lower()
    if fmt:
        if fmt not in ("csv", "parquet", "tfrecord"):
            raise ValueError(f"input.format {fmt!r} is not one of csv, parquet, tfrecord.")
        return fmt
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if ".tfrecord" in name or name.endswith((".tfr", ".gz")):
        return "tfrecord"
    return "csv"
