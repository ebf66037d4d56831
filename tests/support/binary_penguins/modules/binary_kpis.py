"""Business KPIs of the Adelie classifier: what its mistakes cost, from a cost matrix.

A missed Adelie (a false negative) costs 5, a false alarm (a false positive) costs 1, a right answer nothing.
``kpis`` gets the examples of one slice: raw features by column, the 0/1 labels, and ``predictions[:, 0]``, the
model's probability of an Adelie.
"""

from __future__ import annotations

import numpy as np

MISSED_ADELIE_COST = 5.0
FALSE_ALARM_COST = 1.0
DECISION_THRESHOLD = 0.5


def kpis(features: dict[str, np.ndarray], labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    predicted = predictions[:, 0] >= DECISION_THRESHOLD
    actual = labels >= 0.5
    missed = float(np.sum(actual & ~predicted))
    false_alarms = float(np.sum(~actual & predicted))
    cost = MISSED_ADELIE_COST * missed + FALSE_ALARM_COST * false_alarms
    return {
        "missed_adelie": missed,
        "false_alarms": false_alarms,
        "error_cost": cost,
        "cost_per_penguin": cost / len(labels) if len(labels) else 0.0,
    }
