"""Follows the demo's Airflow log and prints one line per stage or gate as it ends, so a person sees progress.

Usage: demo_progress.py <log file> <pid of the airflow process>; it stops when that process has ended.
"""

from __future__ import annotations

import os
import re
import sys
import time

STAGE = re.compile(r"Stage (\S+) (finished as|reused \(cache hit\) as) execution (\d+) in ([\d.]+)s")
GATE = re.compile(r"\] (Data validation|Model blessing) gate (passed|failed|skipped)[^\[]*")
FAILED = re.compile(r"mlpipe stage failed: (.*?)( \[airflow|$)")


def line_for(text: str, started: float) -> str | None:
    elapsed = f"{time.monotonic() - started:5.0f}s"
    if match := STAGE.search(text):
        cached = "  (cache hit)" if match.group(2).startswith("reused") else ""
        return f"  {elapsed}  {match.group(1):<20} ok      {float(match.group(4)):6.1f}s{cached}"
    if match := GATE.search(text):
        return f"  {elapsed}  {match.group(1).lower()} gate: {match.group(2)}"
    if match := FAILED.search(text):
        return f"  {elapsed}  a stage FAILED: {match.group(1).strip()}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def follow(path: str, pid: int) -> None:
    started = time.monotonic()
    while not os.path.exists(path) and _alive(pid):
        time.sleep(0.2)
    with open(path, encoding="utf-8", errors="replace") as log:
        while True:
            text = log.readline()
            if not text:
                if not _alive(pid):
                    return
                time.sleep(0.2)
                continue
            if (line := line_for(text, started)) is not None:
                print(line, flush=True)


if __name__ == "__main__":
    follow(sys.argv[1], int(sys.argv[2]))
