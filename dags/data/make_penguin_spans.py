"""Split the Palmer Penguins CSV shipped in the ``palmerpenguins`` package into daily span files.

Row ``i`` goes to day ``i % days``, so every span has the same mix of species and islands (the original file
is ordered by species) and consecutive spans show no drift. Rows with NA values are kept: they are real data.

    .venv/bin/python dags/data/make_penguin_spans.py            # writes dags/data/penguins/span-2024-01-0N.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path


def source_csv() -> Path:
    import palmerpenguins

    return Path(os.path.dirname(palmerpenguins.__file__)) / "data" / "penguins.csv"


def make_spans(out_dir: Path, days: int = 5, start: dt.date = dt.date(2024, 1, 1)) -> list[Path]:
    lines = source_csv().read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for day in range(days):
        date = start + dt.timedelta(days=day)
        path = out_dir / f"span-{date:%Y-%m-%d}.csv"
        path.write_text("\n".join([header, *rows[day::days]]) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("penguins")))
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()
    for path in make_spans(Path(args.out), args.days):
        print(path)


if __name__ == "__main__":
    main()
