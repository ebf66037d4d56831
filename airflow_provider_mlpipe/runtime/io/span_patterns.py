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
import os
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.stages.example_gen import DATE_PLACEHOLDERS, ExampleGenParams
from airflow_provider_mlpipe.stages.example_gen import VERSION_PLACEHOLDER as _VERSION
from airflow_provider_mlpipe.stages.example_gen import input_format as input_format  # declared with the stage
from airflow_provider_mlpipe.storage import default_storage, is_gcs


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
    for placeholder, date_format in DATE_PLACEHOLDERS.items():
        pattern = pattern.replace(placeholder, day.strftime(date_format))
    return pattern


def absolute_pattern(pattern: str, spec_dir: str | None) -> str:
    """Patterns are relative to the pipeline's folder unless absolute or ``gs://``."""
    if is_gcs(pattern) or os.path.isabs(pattern):
        return pattern
    if not spec_dir:
        raise ValueError(f"The input pattern {pattern!r} is relative, but the request names no pipeline folder.")
    return os.path.join(spec_dir, pattern)


def _list(glob_pattern: str) -> list[str]:
    return default_storage().glob(glob_pattern)


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
    try:
        info = default_storage().info(path)
    except FileNotFoundError as exc:
        raise ValueError(f"The input file {path} disappeared while it was being resolved.") from exc
    except OSError as exc:
        raise ValueError(f"The input file {path} cannot be read: {exc.strerror or exc}.") from exc
    return InputFile(path, info.size, info.signature)


def resolve_split(pattern: str, day: dt.date, version: Any, spec_dir: str | None) -> tuple[ResolvedSplit, int | None]:
    full = absolute_pattern(fill_date(pattern, day), spec_dir)
    filled, resolved_version = resolve_version(full, version)
    paths = _list(filled)
    if not paths:
        raise ValueError(f"No input file matches {filled!r} (pattern {pattern!r}, span {span_id(day)}).")
    return ResolvedSplit(filled, tuple(_signature(p) for p in paths)), resolved_version


def resolve_inputs(
    params: ExampleGenParams, day: dt.date, spec_dir: str | None
) -> tuple[dict[str, ResolvedSplit], int | None]:
    """Resolve the span's files: ``{"": ...}`` for one pattern, or one entry per pre-split input."""
    source = params.input
    version = params.version
    if source.splits:
        resolved: dict[str, ResolvedSplit] = {}
        versions = set()
        for name, pattern in source.splits.items():
            resolved[name], found = resolve_split(str(pattern), day, version, spec_dir)
            versions.add(found)
        if len(versions) > 1:
            raise ValueError(f"The pre-split inputs resolve to different versions {sorted(map(str, versions))}.")
        return resolved, versions.pop()
    if not source.pattern:
        raise ValueError("example_gen needs params.input.pattern or params.input.splits.")
    one, found = resolve_split(source.pattern, day, version, spec_dir)
    return {"": one}, found
