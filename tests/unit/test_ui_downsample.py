"""A year of daily spans in one trend chart: thinned to what the chart can show, without losing a spike."""

from __future__ import annotations

import re

from airflow_provider_mlpipe.ui.svg import MAX_TREND_POINTS, thin_spans, trend_svg

SPANS = [str(20240101 + day) for day in range(365)]


def year_of_scores() -> list[float | None]:
    scores: list[float | None] = [0.1 + 0.001 * (day % 7) for day in range(365)]
    scores[200] = 0.9  # one day of strong drift
    scores[300] = 0.0  # one day of none
    scores[50] = None  # a day the validator did not run
    return scores


def test_a_long_history_keeps_its_extremes_first_and_last_span() -> None:
    scores = year_of_scores()
    thresholds: list[float | None] = [0.3] * 365
    labels, series = thin_spans(SPANS, {"jsd score": scores, "threshold": thresholds})
    assert len(labels) <= MAX_TREND_POINTS + 2
    kept = dict(zip(labels, series["jsd score"], strict=True))
    assert kept[SPANS[200]] == 0.9 and kept[SPANS[300]] == 0.0
    assert labels[0] == SPANS[0] and labels[-1] == SPANS[-1]
    assert labels == sorted(labels)
    assert set(series["threshold"]) == {0.3}


def test_the_chart_draws_the_thinned_points_with_their_spans() -> None:
    svg = trend_svg("drift of amount (jsd)", SPANS, {"jsd score": year_of_scores()}, zero_based=True)
    titles = re.findall(r"<title>jsd score = ([0-9.]+) \(span (\d+)\)</title>", svg)
    assert len(titles) <= MAX_TREND_POINTS + 2
    assert ("0.9", SPANS[200]) in titles and ("0", SPANS[300]) in titles
    assert titles[-1][1] == SPANS[-1]


def test_a_short_history_is_drawn_in_full() -> None:
    labels = SPANS[:30]
    scores: list[float | None] = [float(i) for i in range(30)]
    assert thin_spans(labels, {"s": scores}) == (labels, {"s": scores})
    svg = trend_svg("accuracy", labels, {"s": scores})
    assert len(re.findall(r"<circle class=\"point\"", svg)) == 30
