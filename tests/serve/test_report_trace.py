"""How a day's readings become a line on the daily profile: gaps and clock changes break it."""

from __future__ import annotations

import math

from cascade.serve.report.data import _trace

MINUTE_MS = 60_000


def _points(*readings: tuple[int, float, float]) -> list[tuple[int, float, float]]:
    return list(readings)


def test_regular_readings_make_one_line() -> None:
    points = [(i * 5 * MINUTE_MS, i * 5 / 60, 100.0 + i) for i in range(4)]
    hours, glucose, clock_changed = _trace(points, 5)
    assert hours == tuple(p[1] for p in points)
    assert glucose == tuple(p[2] for p in points)
    assert not clock_changed


def test_a_gap_longer_than_three_intervals_breaks_the_line() -> None:
    points = _points(
        (0, 0.0, 100.0), (15 * MINUTE_MS, 0.25, 110.0), (31 * MINUTE_MS, 31 / 60, 120.0)
    )
    hours, glucose, clock_changed = _trace(points, 5)
    assert [math.isnan(g) for g in glucose] == [False, False, True, False]  # 15 min bridged, 16 not
    assert len(hours) == len(glucose)
    assert not clock_changed


def test_a_clock_change_breaks_the_line_both_ways() -> None:
    # flying east at 05:00: the next reading, 5 minutes later, reads 11:05 local
    east = _points((0, 5.0, 100.0), (5 * MINUTE_MS, 11 + 5 / 60, 101.0))
    _, glucose, clock_changed = _trace(east, 5)
    assert clock_changed and math.isnan(glucose[1])
    # flying west at 11:00: the next reading reads 05:05 local
    west = _points((0, 11.0, 100.0), (5 * MINUTE_MS, 5 + 5 / 60, 101.0))
    _, glucose, clock_changed = _trace(west, 5)
    assert clock_changed and math.isnan(glucose[1])
