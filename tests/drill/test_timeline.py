"""The timeline's geometry: buckets by who answered, round ticks, label rows, merged marks."""

from __future__ import annotations

import math

import pytest

from sidecar.drill.load import Request
from sidecar.drill.timeline import (
    Bucket,
    Mark,
    buckets,
    fit_left,
    label_rows,
    merge_marks,
    nice_step,
    ticks,
)


def test_requests_are_counted_per_bucket_by_the_pod_that_answered_and_failures_apart() -> None:
    requests = [
        Request(99.9, 100.0, 200, None, "web-1"),  # before the origin: bucket -1
        Request(100.0, 100.1, 200, None, "web-1"),
        Request(100.1, 100.2, 200, None, "web-2"),
        Request(100.2, 100.3, 200, None, None),  # answered, by nobody named: the others
        Request(100.3, 100.4, 503, None, "web-1"),  # an HTTP error counts as failed
        Request(100.3, 100.4, None, "ClientConnectorError"),
    ]
    got = buckets(requests, origin=100.0, width=0.25, deleted_pod="web-1")
    assert [b.start for b in got] == [pytest.approx(-0.25), 0.0, 0.25]
    assert got[0] == Bucket(pytest.approx(-0.25), deleted=1)  # type: ignore[arg-type]
    assert (got[1].deleted, got[1].others, got[1].failed) == (1, 2, 0)
    assert (got[2].deleted, got[2].others, got[2].failed, got[2].total) == (0, 0, 2, 2)


@pytest.mark.parametrize(
    ("low", "high", "most", "expected"),
    [
        (0, 30, 4, [0, 10, 20, 30]),
        (0, 137, 4, [0, 50, 100, 150]),
        (0, 1000, 4, [0, 500, 1000]),
        (0, 0.3, 3, [0, 0.1, 0.2, 0.3]),
        (-2.1, 4.4, 12, [-3, -2, -1, 0, 1, 2, 3, 4, 5]),
        (-2.1, 4.4, 13, [-2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5]),
        (0, 0, 4, [0, 0.5, 1]),  # an empty range still gets an axis
    ],
)
def test_ticks_are_round_and_cover_the_range(
    low: float, high: float, most: int, expected: list[float]
) -> None:
    assert ticks(low, high, most) == expected


@pytest.mark.parametrize("high", [1, 3, 7, 12.5, 99, 101, 250, 999, 1001, 40000])
def test_rate_ticks_stay_few_and_round_for_any_tallest_bar(high: float) -> None:
    levels = ticks(0, high, most=4)
    assert levels[0] == 0
    assert levels[-1] >= high  # the tallest bar fits under the top tick
    assert 2 <= len(levels) <= 6
    step = levels[1] - levels[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 9) in (1, 2, 5)


def test_nice_step_is_one_two_or_five_times_a_power_of_ten() -> None:
    assert [nice_step(span, 5) for span in (5, 6, 11, 24, 0.7)] == [1, 2, 5, 5, 0.2]
    assert nice_step(0, 5) == 1.0


def test_overlapping_labels_go_to_separate_rows_and_free_rows_are_reused() -> None:
    spans = [(0, 100), (50, 150), (120, 200), (300, 400), (60, 70)]
    rows = label_rows(spans, gap=6)
    assert rows == [0, 1, 0, 0, 2]
    for i, (a, b) in enumerate(spans):
        for j, (c, d) in enumerate(spans):
            if i < j and rows[i] == rows[j]:
                assert b + 6 <= c or d + 6 <= a  # never closer than the gap in one row


def test_labels_just_the_gap_apart_share_a_row() -> None:
    assert label_rows([(0, 10), (16, 20)], gap=6) == [0, 0]
    assert label_rows([(0, 10), (15, 20)], gap=6) == [0, 1]
    assert label_rows([]) == []


def test_marks_at_one_instant_are_merged_into_one_label() -> None:
    def x(t: float) -> float:
        return 100 + t * 100  # 1 px per 10 ms

    marks = [
        Mark("endpoint not ready", 0.01, "#2"),
        Mark("delete", 0.0, "#1"),
        Mark("data plane moved", 2.0, "#3"),
        Mark("app SIGTERM", 2.06, "#4"),  # 6 px away: merged, times shown apart
        Mark("pod gone", 3.5, "#5"),
    ]
    groups = merge_marks(marks, x, within_px=8)
    assert [g.text for g in groups] == [
        "delete, endpoint not ready 0.0 s",
        "data plane moved 2.0 s, app SIGTERM 2.1 s",
        "pod gone 3.5 s",
    ]
    assert [g.seconds for g in groups] == [0.0, 2.0, 3.5]


def test_marks_further_apart_than_the_threshold_keep_their_own_labels() -> None:
    marks = [Mark("a", 0.0, "#1"), Mark("b", 0.05, "#2")]
    assert [g.text for g in merge_marks(marks, lambda t: t * 100, within_px=4)] == [
        "a 0.0 s",
        "b 0.1 s",
    ]


def test_a_label_that_would_overflow_is_moved_left_just_enough() -> None:
    assert fit_left(100, 50, 900) == 100
    assert fit_left(880, 50, 900) == 850
    assert fit_left(10, 2000, 900) == 0
