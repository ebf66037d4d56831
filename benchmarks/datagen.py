"""Seeded generator of a taxi-like table: 1M rows, numeric and categorical columns, about 50 MB of CSV.

The file is cached under ``benchmarks/.data/`` (git-ignored) and only regenerated when missing.

    .venv-runtime/bin/python benchmarks/datagen.py [--rows 1000000] [--seed 42]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

DATA_DIR = Path(__file__).resolve().parent / ".data"
PAYMENT = ["Cash", "Credit Card", "Mobile", "No Charge", "Dispute"]
COMPANIES = [f"Company {i:02d}" for i in range(40)]


def _with_missing(rng: np.random.Generator, values: np.ndarray, rate: float) -> pa.Array:
    return pa.array(values, mask=rng.random(len(values)) < rate)


def make_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    miles = np.round(rng.gamma(1.5, 2.5, rows), 2)
    seconds = (miles * rng.normal(180, 40, rows)).clip(60, None).astype(np.int64)
    fare = np.round(3.25 + miles * 2.25 + rng.normal(0, 1.5, rows).clip(-3, None), 2)
    payment = rng.choice(len(PAYMENT), rows, p=[0.45, 0.4, 0.1, 0.03, 0.02])
    tips = np.where(payment == 1, np.round(fare * rng.uniform(0.1, 0.25, rows), 2), 0.0)
    return pa.table(
        {
            "trip_start_hour": rng.integers(0, 24, rows),
            "trip_seconds": seconds,
            "trip_miles": miles,
            "pickup_area": _with_missing(rng, rng.integers(1, 78, rows), 0.05),
            "fare": fare,
            "tips": tips,
            "trip_total": np.round(fare + tips, 2),
            "payment_type": pa.array(np.array(PAYMENT)[payment]),
            "company": _with_missing(rng, np.array(COMPANIES)[rng.zipf(1.6, rows) % len(COMPANIES)], 0.1),
        }
    )


def ensure_csv(rows: int = 1_000_000, seed: int = 42) -> Path:
    path = DATA_DIR / f"taxi-{rows}-seed{seed}.csv"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    table = make_table(rows, seed)
    tmp = path.with_suffix(".csv.tmp")
    pcsv.write_csv(table, tmp)
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.monotonic()
    path = ensure_csv(args.rows, args.seed)
    print(f"{path} {path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
