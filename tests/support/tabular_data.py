"""A generated churn table for the tabular built-ins: numeric, categorical and missing values, and a binary label
that the features decide well enough for an AUC far above 0.8 (0.95 for the true probabilities)."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

COLUMNS = ["customer_id", "age", "income", "tenure_months", "plan", "region", "support_calls", "signup", "churned"]
PLAN_EFFECT = {"basic": 1.3, "plus": 0.0, "pro": -1.3}
REGIONS = ["north", "south", "east", "west"]


def _maybe(value: object, rng: random.Random, rate: float = 0.06) -> object:
    return "" if rng.random() < rate else value


def churn_rows(rows: int = 800, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        tenure = rng.randint(0, 72)
        calls = min(6, int(rng.expovariate(0.6)))
        plan = rng.choice(list(PLAN_EFFECT))
        income = round(rng.lognormvariate(10.5, 0.4), 2)
        logit = 1.6 * (1.1 * (calls - 1.5) - 0.07 * (tenure - 36) + PLAN_EFFECT[plan] - 0.6 * (income > 45000))
        churned = rng.random() < 1 / (1 + math.exp(-logit))
        out.append(
            {
                "customer_id": f"C{i:05d}",
                "age": _maybe(rng.randint(18, 80), rng),
                "income": _maybe(income, rng),
                "tenure_months": tenure,
                "plan": _maybe(plan, rng),
                "region": rng.choice(REGIONS),
                "support_calls": calls,
                "signup": f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "churned": "yes" if churned else "no",
            }
        )
    return out


def write_churn_csv(path: Path, rows: int = 800, seed: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(churn_rows(rows, seed))
    return path
