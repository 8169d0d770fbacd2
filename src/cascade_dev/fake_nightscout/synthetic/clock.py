"""Time for a synthetic subject: the sampling timeline, time zones, travel and ISO timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from cascade_dev.fake_nightscout.synthetic.people import (
    MAX_TRIP_DAYS,
    MINUTES_PER_DAY,
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_MINUTE,
    BoolArray,
    FloatArray,
    IntArray,
    SubjectSpec,
)

# --------------------------------------------------------------------------- time


def _floor_to_interval(moment: datetime, interval_minutes: int) -> int:
    """Epoch ms of ``moment`` (naive = UTC) rounded down to the interval."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    step = interval_minutes * MS_PER_MINUTE
    return ms - ms % step


def _zone_offset_minutes(zone: ZoneInfo, ms: int) -> int:
    offset = datetime.fromtimestamp(ms / 1000, tz=zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


@dataclass(frozen=True)
class _OffsetTable:
    """Piecewise-constant local UTC offset: ``offsets[i]`` holds from ``starts[i]``."""

    starts_ms: IntArray
    offsets_min: IntArray

    def at(self, ms: IntArray) -> IntArray:
        idx = np.searchsorted(self.starts_ms, ms, side="right") - 1
        return self.offsets_min[np.clip(idx, 0, len(self.offsets_min) - 1)]

    def at_one(self, ms: int) -> int:
        return int(self.at(np.array([ms], dtype=np.int64))[0])


def _zone_transitions(zone_name: str, a_ms: int, b_ms: int) -> list[tuple[int, int]]:
    """(from_ms, offset) pairs for one zone over [a, b): hourly scan, minute bisection.

    Calling zoneinfo once per hour (not per reading) keeps a subject-year cheap;
    every real transition falls on a whole minute.
    """
    zone = ZoneInfo(zone_name)
    current = _zone_offset_minutes(zone, a_ms)
    out = [(a_ms, current)]
    prev_ms = a_ms
    t = (a_ms // MS_PER_HOUR + 1) * MS_PER_HOUR
    while t < b_ms + MS_PER_HOUR:
        off = _zone_offset_minutes(zone, t)
        if off != current:
            lo, hi = prev_ms // MS_PER_MINUTE, t // MS_PER_MINUTE
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _zone_offset_minutes(zone, mid * MS_PER_MINUTE) == current:
                    lo = mid
                else:
                    hi = mid
            if hi * MS_PER_MINUTE < b_ms:
                out.append((hi * MS_PER_MINUTE, off))
            current = off
        prev_ms = t
        t += MS_PER_HOUR
    return out


@dataclass(frozen=True)
class _Trip:
    start_ms: int
    end_ms: int
    timezone: str


def _trip_for(spec: SubjectSpec, start_ms: int, end_ms: int) -> _Trip | None:
    """A trip of up to a week (at most a third of the window) centred in the window."""
    if not spec.travels:
        return None
    window = end_ms - start_ms
    length = min(MAX_TRIP_DAYS * MS_PER_DAY, window // 3)
    length -= length % MS_PER_HOUR
    if length <= 0:
        return None
    trip_start = start_ms + (window - length) // 2
    trip_start -= trip_start % MS_PER_HOUR
    return _Trip(trip_start, trip_start + length, spec.travel_timezone)


def _offset_table(
    spec: SubjectSpec, start_ms: int, end_ms: int, trip: _Trip | None
) -> _OffsetTable:
    segments: list[tuple[int, int, str]]
    if trip is None:
        segments = [(start_ms, end_ms, spec.timezone)]
    else:
        segments = [
            (start_ms, trip.start_ms, spec.timezone),
            (trip.start_ms, trip.end_ms, trip.timezone),
            (trip.end_ms, end_ms, spec.timezone),
        ]
    pairs: list[tuple[int, int]] = []
    for a, b, zone in segments:
        if b > a:
            pairs.extend(_zone_transitions(zone, a, b))
    return _OffsetTable(
        np.array([p[0] for p in pairs], dtype=np.int64),
        np.array([p[1] for p in pairs], dtype=np.int64),
    )


def _offset_suffix(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _iso_utc(ms: IntArray) -> list[str]:
    """'YYYY-MM-DDTHH:MM:SS.mmmZ' for many instants at C speed."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [s + "Z" for s in text.tolist()]


def _iso_local(ms: IntArray, offsets_min: IntArray) -> list[str]:
    """ISO 8601 with the local offset, e.g. '2026-11-20T08:05:00.000+01:00'."""
    local = (ms + offsets_min * MS_PER_MINUTE).astype("datetime64[ms]")
    text = np.datetime_as_string(local, unit="ms").tolist()
    suffixes = {int(o): _offset_suffix(int(o)) for o in np.unique(offsets_min)}
    return [t + suffixes[o] for t, o in zip(text, offsets_min.tolist(), strict=True)]


def _one_iso_utc(ms: int) -> str:
    return _iso_utc(np.array([ms], dtype=np.int64))[0]


def _one_iso_local(ms: int, offset_min: int) -> str:
    return _iso_local(np.array([ms], dtype=np.int64), np.array([offset_min], dtype=np.int64))[0]


@dataclass(frozen=True)
class _Timeline:
    """The CGM grid and its local time."""

    start_ms: int
    end_ms: int
    step_min: int
    t_ms: IntArray
    offsets: _OffsetTable
    offset_min: IntArray  # per grid point
    local_min: IntArray  # minutes since the epoch in local wall time
    local_monotone: IntArray  # running max of local_min, for "first time local >= L"

    @property
    def n(self) -> int:
        return len(self.t_ms)

    def steps(self, minutes: float) -> int:
        return max(1, round(minutes / self.step_min))

    def index_at_ms(self, ms: int) -> int:
        return int(np.clip((ms - self.start_ms) // (self.step_min * MS_PER_MINUTE), 0, self.n - 1))

    def local_to_index(self, local_minutes: FloatArray) -> tuple[IntArray, BoolArray]:
        """Grid index of the first instant whose local wall time reaches each value."""
        lm = self.local_monotone
        idx = np.searchsorted(lm, local_minutes, side="left").astype(np.int64)
        valid = (local_minutes >= lm[0]) & (idx < self.n)
        return np.minimum(idx, self.n - 1), valid

    def local_days(self) -> IntArray:
        first = int(self.local_monotone[0] // MINUTES_PER_DAY)
        last = int(self.local_monotone[-1] // MINUTES_PER_DAY)
        return np.arange(first, last + 1, dtype=np.int64)


def _timeline(
    spec: SubjectSpec, start_ms: int, end_ms: int, step_min: int, trip: _Trip | None
) -> _Timeline:
    t_ms = np.arange(start_ms, end_ms, step_min * MS_PER_MINUTE, dtype=np.int64)
    table = _offset_table(spec, start_ms, end_ms, trip)
    offsets = table.at(t_ms)
    local = t_ms // MS_PER_MINUTE + offsets
    return _Timeline(
        start_ms, end_ms, step_min, t_ms, table, offsets, local, np.maximum.accumulate(local)
    )
