"""Reading, listing and writing URIs, a local path or ``gs://``, for both the Airflow side and the runtime.

Local paths use the standard library. ``gs://`` goes through fsspec's ``gcsfs`` (the filesystem Airflow's own
``ObjectStoragePath`` uses for GCS), imported only when a ``gs://`` URI is touched, so the Airflow side pays
nothing for local pipelines. Credentials for ``gs://`` are resolved in one place, :func:`gcs_options`, from an
environment mapping: the process's own, plus whatever an Airflow GCP connection adds (``hooks/gcp_storage.py``).
This module imports neither Airflow nor the ML libraries; see ``docs/storage.md`` for why gcsfs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GCS_SCHEME = "gs://"
# An Airflow GCP connection's key JSON travels to the runtime in this variable, never in a file or a request.
KEYFILE_JSON_ENV = "MLPIPE_GCP_KEYFILE_JSON"
EMULATOR_HOST_ENV = "STORAGE_EMULATOR_HOST"
CREDENTIALS_FILE_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
DEFAULT_PROJECT = "mlpipe"


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def join(base: str, *parts: str) -> str:
    if is_gcs(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> ``("bucket", "a/b")``."""
    bucket, _, prefix = uri[len(GCS_SCHEME) :].partition("/")
    return bucket, prefix.strip("/")


def gcs_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """gcsfs arguments for the credentials ``environ`` names; the one place where ``gs://`` credentials resolve.

    In order: an emulator (anonymous, the endpoint comes from ``STORAGE_EMULATOR_HOST``, which gcsfs reads
    itself); a connection's key JSON; a key file; else Google's default chain (VM or workload identity).
    """
    project = environ.get(PROJECT_ENV) or DEFAULT_PROJECT
    token: Any
    if environ.get(EMULATOR_HOST_ENV):
        token = "anon"
    elif environ.get(KEYFILE_JSON_ENV):
        token = json.loads(environ[KEYFILE_JSON_ENV])
    elif environ.get(CREDENTIALS_FILE_ENV):
        token = environ[CREDENTIALS_FILE_ENV]
    else:
        token = "google_default"
    return {"project": project, "token": token}


@dataclass(frozen=True)
class ObjectInfo:
    """What identifies a file's content: its size and a content signature (checksum, plus generation on GCS)."""

    size: int
    signature: str


class Storage:
    """URI operations with one set of credentials: the process environment, plus ``credentials`` over it."""

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self.credentials = dict(credentials or {})

    def gcs(self) -> Any:  # gcsfs.GCSFileSystem, imported lazily
        # The plain JSON-API filesystem: since 2026.x, ``gcsfs.GCSFileSystem`` is an "extended" class that first
        # asks the gRPC Storage Control API for the bucket type, which an emulator cannot answer (60 s of retries).
        from gcsfs.core import GCSFileSystem

        # No listings cache: gates poll for files other processes write, and a cached listing would hide them.
        # fsspec reuses one instance per distinct set of arguments, so this is cheap to call per operation.
        return GCSFileSystem(**gcs_options({**os.environ, **self.credentials}), use_listings_cache=False)

    # ----- reading -------------------------------------------------------------------------------------------
    def read_bytes(self, uri: str) -> bytes:
        """The file's bytes; ``FileNotFoundError`` when it does not exist (on either backend)."""
        if is_gcs(uri):
            return self.gcs().cat_file(uri)
        return Path(uri).read_bytes()

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def exists(self, uri: str) -> bool:
        return self.gcs().exists(uri) if is_gcs(uri) else os.path.exists(uri)

    def size(self, uri: str) -> int | None:
        """The size of the file at ``uri``; ``None`` when there is no such file."""
        if is_gcs(uri):
            try:
                info = self.gcs().info(uri)
            except FileNotFoundError:
                return None
            return int(info["size"]) if info.get("type") == "file" else None
        return os.path.getsize(uri) if os.path.isfile(uri) else None

    def info(self, uri: str) -> ObjectInfo:
        """Size and content signature: sha256 of a local file; checksum and generation of a GCS object."""
        if is_gcs(uri):
            info = self.gcs().info(uri)
            checksum = info.get("md5Hash") or info.get("crc32c")
            return ObjectInfo(int(info["size"]), f"{checksum}:{info.get('generation')}")
        import hashlib

        digest = hashlib.sha256()
        with open(uri, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return ObjectInfo(os.path.getsize(uri), digest.hexdigest())

    def open(self, uri: str, mode: str = "rb") -> Any:
        """A file object for ``uri``; writing creates missing local folders (GCS has none to create).

        For streaming readers such as pyarrow's Parquet reader, which then fetch only the byte ranges they need.
        """
        if is_gcs(uri):
            return self.gcs().open(uri, mode)
        if any(flag in mode for flag in "wax"):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        return open(uri, mode)

    # ----- listing -------------------------------------------------------------------------------------------
    def list_files(self, uri: str, limit: int | None = None) -> list[str]:
        """Files under the directory ``uri``, relative to it and sorted; empty when there is none."""
        if is_gcs(uri):
            base = uri[len(GCS_SCHEME) :].rstrip("/") + "/"
            found = self.gcs().find(base)
            # Only objects inside the prefix: an object named like the prefix itself is not "under" it.
            names = sorted(name[len(base) :] for name in found if name.startswith(base) and name != base)
        elif os.path.isdir(uri):
            root = Path(uri)
            names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        else:
            names = []
        return names[:limit] if limit is not None else names

    def list_dirs(self, uri: str) -> list[str]:
        """Names of the directories (prefixes, on GCS) directly under ``uri``."""
        if is_gcs(uri):
            try:
                entries = self.gcs().ls(uri.rstrip("/"), detail=True)
            except FileNotFoundError:
                return []
            return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")
        if not os.path.isdir(uri):
            return []
        return sorted(e.name for e in os.scandir(uri) if e.is_dir())

    def glob(self, pattern: str) -> list[str]:
        """Files matching a glob pattern (``*``, ``?``, ``[...]``), sorted."""
        if not is_gcs(pattern):
            return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        bucket, key_pattern = split_gcs(pattern)
        # Listing by the literal prefix and matching here keeps fnmatch's semantics: ``*`` crosses ``/``.
        prefix = re.split(r"[*?\[]", key_pattern, maxsplit=1)[0]
        directory, _, start = prefix.rpartition("/")
        names = self.gcs().find(f"{bucket}/{directory}".rstrip("/"), prefix=start)
        keys = (name.split("/", 1)[1] for name in names)
        return sorted(f"{GCS_SCHEME}{bucket}/{k}" for k in keys if fnmatch.fnmatchcase(k, key_pattern))

    def usage(self, uri: str) -> tuple[int, float | None]:
        """Bytes under ``uri`` (a file or a folder/prefix) and the newest change time (epoch s); (0, None) if none."""
        if is_gcs(uri):
            try:
                found = self.gcs().find(uri.rstrip("/"), detail=True)
            except FileNotFoundError:
                return 0, None
            times = [_gcs_time(info) for info in found.values()]
            return sum(int(info.get("size") or 0) for info in found.values()), max(times, default=None)
        if os.path.isfile(uri):
            return os.path.getsize(uri), os.path.getmtime(uri)
        size, newest = 0, None
        for folder, _, names in os.walk(uri):
            stamps = [os.path.getmtime(folder)]
            for name in names:
                with contextlib.suppress(OSError):  # a file removed while we walk
                    stat = os.stat(os.path.join(folder, name))
                    size += stat.st_size
                    stamps.append(stat.st_mtime)
            newest = max([*stamps, newest] if newest is not None else stamps)
        return size, newest

    # ----- writing -------------------------------------------------------------------------------------------
    def write_text(self, uri: str, text: str) -> None:
        """Write a small file atomically: a rename locally; a single object write on GCS is atomic already."""
        if is_gcs(uri):
            self.gcs().pipe_file(uri, text.encode("utf-8"))
            return
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{uri}.tmp-{uuid.uuid4().hex[:8]}"
        Path(tmp).write_text(text, encoding="utf-8")
        os.replace(tmp, uri)

    def create_exclusive(self, uri: str, data: bytes = b"") -> bool:
        """Create the file only if it does not exist yet; ``False`` when it already did (a lost race)."""
        if is_gcs(uri):
            try:
                self.gcs().pipe_file(uri, data, mode="create")  # ifGenerationMatch=0
            except FileExistsError:
                return False
            return True
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True

    def upload_dir(self, local_dir: str, uri: str) -> None:
        """Copy every file under the local ``local_dir`` to the ``gs://`` prefix ``uri``, in name order."""
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        if files:
            base = uri.rstrip("/")
            self.gcs().put([str(p) for p in files], [f"{base}/{p.relative_to(root).as_posix()}" for p in files])

    def download_file(self, uri: str, local_path: str) -> None:
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        self.gcs().get_file(uri, local_path)

    def download_dir(self, uri: str, local_dir: str) -> None:
        """Copy every object under the ``gs://`` prefix ``uri`` into ``local_dir``; an empty prefix is an error."""
        names = self.list_files(uri)
        if not names:
            raise FileNotFoundError(f"No objects found under {uri}.")
        base = uri.rstrip("/")
        targets = [os.path.join(local_dir, *name.split("/")) for name in names]
        for target in targets:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        self.gcs().get([f"{base}/{name}" for name in names], targets)

    def copy(self, source_uri: str, target_uri: str) -> None:
        """A server-side copy of one ``gs://`` object."""
        self.gcs().copy(source_uri, target_uri)

    def copy_prefix(self, source_uri: str, target_uri: str, skip: str | None = None) -> list[str]:
        """Server-side copy of every object under one ``gs://`` prefix to another, in name order.

        Objects named ``skip`` are left out (a completion marker is written by the caller, last). Returns the
        copied names, relative to the prefix.
        """
        source, target = source_uri.rstrip("/"), target_uri.rstrip("/")
        names = [n for n in self.list_files(source) if posixpath.basename(n) != skip]
        if names:
            self.gcs().copy([f"{source}/{n}" for n in names], [f"{target}/{n}" for n in names])
        return names

    def delete(self, uri: str) -> None:
        """Delete one file; a missing one is not an error."""
        if is_gcs(uri):
            try:
                self.gcs().rm_file(uri)
            except FileNotFoundError:
                pass
        elif os.path.exists(uri):
            os.remove(uri)

    def delete_prefix(self, uri: str, first: str | None = None) -> None:
        """Delete every object under the ``gs://`` prefix ``uri``; objects named ``first`` go before the rest.

        Deleting the file that makes a folder look finished or loadable first means a reader never sees a
        complete-looking folder with missing parts.
        """
        base = uri.rstrip("/")
        names = self.list_files(base)
        ordered = sorted(names, key=lambda name: posixpath.basename(name) != first)
        for name in ordered:
            self.delete(f"{base}/{name}")
        self.delete(f"{base}/")  # the folder's own placeholder object, which TensorFlow's makedirs creates

    def delete_tree(self, uri: str) -> None:
        """Delete a local folder or every object under a ``gs://`` prefix; a missing one is not an error."""
        if is_gcs(uri):
            self.delete_prefix(uri)
        else:
            shutil.rmtree(uri, ignore_errors=True)


def _gcs_time(info: Mapping[str, Any]) -> float | None:
    """An object's last change (epoch seconds) from gcsfs's listing details."""
    import datetime as dt

    stamp = info.get("updated") or info.get("timeCreated")
    if not stamp:
        return None
    if isinstance(stamp, dt.datetime):
        return stamp.timestamp()
    return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def default_storage() -> Storage:
    """Storage with the process's own credentials (the runtime's, once it has materialized a connection's key)."""
    return Storage()
