"""gcp-storage-emulator's command line, with one fix, plus the HTTPS front that TensorFlow's gs:// reaches it by.

The fix: an upload (XML-API PUT or JSON-API media POST) with an empty body creates an empty object.
The emulator reads an empty request body as ``None`` and its XML-API upload handler then fails on ``len(None)``.
google-cloud-cpp, under TensorFlow's modular GCS filesystem, creates folder markers (``dir/``) exactly that way,
so without the fix every ``tf.io.gfile.makedirs`` on gs:// is retried until it times out. Real GCS accepts such
uploads.

``--tls-front PORT CA_FILE`` also starts ``tests.support.gcs_tls_front`` on PORT, writing its CA certificate to
CA_FILE. Runs in .venv, where the emulator is installed: ``python -m tests.support.gcs_emulator_server start ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main

_read_data = server._read_data


def _read_data_empty_upload_as_bytes(handler: Any, query: Any) -> Any:
    data = _read_data(handler, query)
    is_upload = handler.command == "PUT" or query.get("uploadType") == ["media"]
    return b"" if data is None and is_upload else data


def _emulator_port(args: list[str]) -> int:
    return int(next(a.split("=", 1)[1] for a in args if a.startswith("--port=")))


if __name__ == "__main__":
    server._read_data = _read_data_empty_upload_as_bytes
    args = sys.argv[1:]
    if "--tls-front" in args:
        at = args.index("--tls-front")
        front_port, ca_file = int(args[at + 1]), Path(args[at + 2])
        del args[at : at + 3]
        from tests.support.gcs_tls_front import serve_in_background

        serve_in_background(front_port, _emulator_port(args), ca_file)
    main(args)
