"""Deterministic, plausible Nightscout data for tests, the demo and benchmarks.

Why a simulator and not random numbers: the analytics downstream (time in range,
AGP by local hour, hypo events, dedup, late-data handling) only get a meaningful
test when the data behaves like a real person's data. This module simulates a
person with type 1 diabetes on a closed loop and emits the documents exactly as
the uploaders (xDrip+/Dexcom Share, Loop, AndroidAPS) POST them to Nightscout v1:
no server fields (``_id``, ``identifier``, ``srvCreated``, ``srvModified``,
``isValid``), those are added by the (fake) server.

Physiology (a linear, superposed glucose model, vectorised with numpy)
---------------------------------------------------------------------
glucose = baseline + carb effects - insulin effects + exercise + site failures
+ slow drift + dawn phenomenon, where every rate input is convolved with a
first-order return to baseline (the loop pulling glucose back, time constant
2.5 h). Carbs are absorbed on a gamma curve (peak 25/45/70 min for fast,
mixed and fatty meals), insulin acts on the oref0 exponential curve (peak 75 min,
duration 5 h), so a matched meal bolus still gives a post-meal spike. The
everyday excursions are scaled to the subject's variability and mapped onto a
right-skewed scale (long hyperglycaemic tails, short hypos); below 60 mg/dL
counter-regulation slows the fall. Therapy settings in ``subject_specs`` follow
the 1800/500 rules from a total daily dose. On top:

* 3 meals a day at varying local times and sizes plus frequent snacks; ~4 % of
  meals are not announced (no bolus), the person corrects later;
* correction boluses for sustained highs, rescue carbs ("Carb Correction") for
  lows, so hypos last tens of minutes, as in life;
* dawn phenomenon (rise between ~04:00 and ~08:00 local), exercise dips, a day
  to day insulin-sensitivity factor, and an occasional infusion-site failure
  (glucose climbs for hours, often past 400, until a site change and correction);
* the sensor: ~5 min interstitial lag, per-sensor calibration bias, correlated
  noise, a 2 h warm-up gap at every sensor change (every 10 days, aligned with the
  "Sensor Start"/"Sensor Change" treatments), short signal losses, night-time
  compression lows, clamps (below 40 is sent as 39 = LOW, above 400 as 401 =
  HIGH) and rare sensor error codes (5, 9 or 10);
* the closed loop: a devicestatus every 5 minutes (on the 5-minute tick plus a
  per-subject phase of 5-50 s, whatever the CGM interval; Loop or
  AndroidAPS/OpenAPS shape), a 30-minute temp basal whenever the recommendation
  moves or the running one is about to expire (~190-220 a day), SMBs (AAPS) /
  automatic boluses (Loop) capped by a max-IOB setting. The controller reads the
  simulated sensor but does not feed back into the glucose model (the return to
  baseline stands for it), so its IOB/COB/predictions are plausible, not exact.

What comes out (48 simulated subject-months, 30-day windows): mean 150-177
mg/dL (median 162), CV 31-37 %, TIR 53-77 % (median 67 %), TBR<70 0.5-4 %,
TAR>250 2-13 %; about 3 finger sticks a week; one subject-year at 5 min is
~105k readings, ~75-80k treatments and 105k devicestatus documents.

Local time comes from :mod:`zoneinfo` per instant, so DST transitions are real;
the travelling subject spends up to a week in another time zone in the middle of
the window (at most a third of the window), gets a new profile with that time
zone on arrival and on return, and eats by local time.

Determinism: the output is a pure function of (spec, days, interval_minutes,
seed, end); the random streams are derived from a SHA-256 of those, never from
Python's salted ``hash``.

Dirty data (``dirty=True``; exact counts from :func:`dirty_record_counts`)
--------------------------------------------------------------------------
Positions are "the first suitable sgv reading at or after X % of the window".
The clean records are all still present (``dirty=False`` gives exactly the same
documents minus the additions and without the type changes).

entries
  * duplicates: ``max(1, nominal_readings * 15 // 1000)`` consecutive sgv
    readings starting at 40 % of the window are sent again by a second uploader
    (same ``date``, ``dateString`` and ``sgv``, different ``device``); each copy
    follows its original. Not rejectable, must be deduplicated.
  * 3 readings (at 10 %, 20 % and 30 %) carry ``sgv`` as a numeric string such as
    ``"123"``: valid, must be coerced (replacing, not adding, records).
  * rejectable extra records (4): a copy of the 50 % reading dated in January
    1970; a copy of the 60 % reading dated 40 days after the window end; a
    reading at 70 % (+30 s) with ``sgv: "abc"``; a copy of the 80 % reading with
    neither ``date`` nor ``dateString``.
treatments
  * a manual 2.5 U "Correction Bolus" at 30 % of the window is always simulated;
    with ``dirty=True`` its ``insulin`` is the string ``"2.5"`` (coercible).
  * rejectable extra record (1): a careportal "Note" with
    ``created_at: "not a date"`` (and no ``date``).
devicestatus
  * rejectable extra record (1): a copy of the status at 50 % of the window whose
    ``created_at`` (and pump clock) reset to January 1970.
profile
  * nothing dirty.

A record is *rejectable* when its event time (entries: ``date``, else
``dateString``; treatments and devicestatus: ``created_at``; profile:
``startDate``) is missing or unparseable, before 2000-01-01, or more than one
day after ingestion (the future entry is 40 days after ``end``, so it stays
rejectable for any ingestion within 39 days of ``end``), or when a typed
analytic field (sgv, mbg, insulin, carbs, rate, duration) is present but neither
a number nor a numeric string.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

__all__ = [
    "COLLECTIONS",
    "DUPLICATE_PERMILLE",
    "ERROR_CODES",
    "HIGH_CLAMP",
    "LOW_CLAMP",
    "SubjectSpec",
    "dirty_record_counts",
    "generate_subject",
    "scripted_entries",
    "subject_specs",
]

COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Doc = dict[str, Any]

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR
MINUTES_PER_DAY = 1440

LOOP_CYCLE_MINUTES = 5
SENSOR_SESSION_DAYS = 10
WARMUP_MINUTES = 120
SITE_CHANGE_DAYS = 3
PROFILE_EVERY_DAYS = 14
MAX_TRIP_DAYS = 7

LOW_CLAMP = 39
HIGH_CLAMP = 401
ERROR_CODES = (5, 9, 10)

# Dirty-data knobs (see the module docstring and dirty_record_counts()).
DUPLICATE_PERMILLE = 15
DUPLICATE_START_FRACTION = 0.40
NUMERIC_STRING_FRACTIONS = (0.10, 0.20, 0.30)
MARKER_BOLUS_FRACTION = 0.30
MARKER_BOLUS_UNITS = 2.5
FUTURE_CLOCK_DAYS = 40

LOOP_ENTERED_BY = "loop://iPhone"
AAPS_ENTERED_BY = "openaps://AndroidAPS"
AAPS_DEVICE = "openaps://samsung SM-G970F"
UPLOADERS = ("loop", "aaps")

# Subject templates cycled by subject_specs(): (timezone, uploader, cgm device, travel tz).
_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("America/New_York", "loop", "share2", "Europe/Berlin"),
    ("Europe/Berlin", "aaps", "xDrip-DexcomG6", "America/New_York"),
    ("Asia/Kolkata", "aaps", "xDrip-DexcomG6", "Europe/London"),
    ("Australia/Sydney", "loop", "share2", "Asia/Tokyo"),
    ("America/Los_Angeles", "aaps", "xDrip-DexcomG6", "America/New_York"),
    ("Europe/London", "loop", "share2", "Europe/Madrid"),
    ("America/Sao_Paulo", "aaps", "xDrip-DexcomG6", "Europe/Lisbon"),
    ("Asia/Tokyo", "loop", "share2", "America/Los_Angeles"),
)

_NOTES = (
    "pizza night",
    "stressful day at work",
    "glass of wine with dinner",
    "feeling a cold coming",
    "forgot to pre-bolus",
    "long walk with the dog",
    "birthday cake",
    "bad night, woke up twice",
)


@dataclass(frozen=True)
class SubjectSpec:
    """One simulated person: identity, uploader and physiology.

    The physiology fields are tendencies, not guarantees: the simulated mean and
    CV land near ``mean_glucose_mg_dl`` / ``glucose_cv`` but meals, corrections
    and rescues move them.
    """

    subject_id: str
    timezone: str
    uploader: str
    travels: bool
    travel_timezone: str = "America/New_York"
    cgm_device: str = "xDrip-DexcomG6"
    isf_mg_dl_per_u: float = 45.0
    carb_ratio_g_per_u: float = 10.0
    basal_u_per_h: float = 0.9
    target_mg_dl: float = 105.0
    mean_glucose_mg_dl: float = 158.0
    glucose_cv: float = 0.34
    dawn_mg_dl: float = 20.0
    bolus_error_sigma: float = 0.2
    missed_bolus_probability: float = 0.04
    exercise_per_week: float = 2.0
    meal_carb_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.uploader not in UPLOADERS:
            raise ValueError(f"uploader must be one of {UPLOADERS}, not {self.uploader!r}")
        ZoneInfo(self.timezone)  # fail early on a typo
        ZoneInfo(self.travel_timezone)

    @property
    def entered_by(self) -> str:
        return LOOP_ENTERED_BY if self.uploader == "loop" else AAPS_ENTERED_BY

    @property
    def carb_sensitivity(self) -> float:
        """mg/dL rise per gram of carbohydrate (ISF / carb ratio)."""
        return self.isf_mg_dl_per_u / self.carb_ratio_g_per_u


# --------------------------------------------------------------------------- seeds


def _stable_seed(*parts: object) -> int:
    """A seed from the repr of ``parts`` that is stable across processes."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _rng(base: int, stream: str) -> np.random.Generator:
    """An independent generator per component, so adding one does not shift others."""
    return np.random.default_rng(_stable_seed(base, stream))


def subject_specs(subjects: int, seed: int) -> list[SubjectSpec]:
    """``subjects`` deterministic, different people.

    Time zones and uploaders cycle through templates that include a negative UTC
    offset (America/New_York), a +05:30 one (Asia/Kolkata), a southern-hemisphere
    DST zone and both uploader shapes. Subject index 1 travels (Europe/Berlin to
    America/New_York and back), or subject 0 when it is the only one.
    """
    if subjects < 1:
        raise ValueError("subjects must be >= 1")
    specs: list[SubjectSpec] = []
    for i in range(subjects):
        tz, uploader, cgm, travel_tz = _TEMPLATES[i % len(_TEMPLATES)]
        rng = _rng(_stable_seed(seed, i), "subject")
        # Settings that fit together: the 1800 and 500 rules from a total daily
        # dose, about 45 % of it as basal, each with a personal deviation.
        tdd = float(rng.uniform(28.0, 60.0))
        personal = rng.uniform(0.9, 1.1, 3)
        specs.append(
            SubjectSpec(
                subject_id=f"subject-{i + 1:02d}",
                timezone=tz,
                uploader=uploader,
                travels=(i == 1) or subjects == 1,
                travel_timezone=travel_tz,
                cgm_device=cgm,
                isf_mg_dl_per_u=float(round(1800 / tdd * personal[0])),
                carb_ratio_g_per_u=round(500 / tdd * float(personal[1]), 1),
                basal_u_per_h=round(0.45 * tdd / 24 * float(personal[2]), 2),
                target_mg_dl=float(rng.choice([100.0, 105.0, 110.0])),
                mean_glucose_mg_dl=round(float(rng.uniform(150.0, 166.0)), 1),
                glucose_cv=round(float(rng.uniform(0.33, 0.39)), 3),
                dawn_mg_dl=round(float(rng.uniform(10.0, 30.0)), 1),
                bolus_error_sigma=round(float(rng.uniform(0.15, 0.3)), 3),
                missed_bolus_probability=round(float(rng.uniform(0.02, 0.06)), 3),
                exercise_per_week=round(float(rng.uniform(1.0, 4.0)), 1),
                meal_carb_scale=round(float(rng.uniform(0.8, 1.2)), 2),
            )
        )
    return specs


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


# --------------------------------------------------------------------------- kernels


def _fft_convolve(signal: FloatArray, kernel: FloatArray) -> FloatArray:
    """Causal convolution truncated to len(signal); FFT keeps a 1-min year fast."""
    n = len(signal)
    size = 1 << (n + len(kernel) - 2).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(kernel, size), size)[:n]
    return np.asarray(out, dtype=np.float64)


def _insulin_curves(
    t: FloatArray, peak: float = 75.0, dia: float = 300.0
) -> tuple[FloatArray, FloatArray]:
    """oref0/Loop exponential insulin model: (activity per minute, insulin on board)."""
    tau = peak * (1 - peak / dia) / (1 - 2 * peak / dia)
    a = 2 * tau / dia
    s = 1 / (1 - a + (1 + a) * math.exp(-dia / tau))
    tt = np.minimum(t, dia)
    activity = (s / tau**2) * tt * (1 - tt / dia) * np.exp(-tt / tau)
    activity[t >= dia] = 0.0
    iob = 1 - s * (1 - a) * ((tt**2 / (tau * dia * (1 - a)) - tt / tau - 1) * np.exp(-tt / tau) + 1)
    iob[t >= dia] = 0.0
    return activity, np.clip(iob, 0.0, 1.0)


def _carb_curves(t: FloatArray, peak: float) -> tuple[FloatArray, FloatArray]:
    """Gamma(2) absorption: (fraction absorbed per minute, fraction still on board)."""
    rate = t / peak**2 * np.exp(-t / peak)
    remaining = (1 + t / peak) * np.exp(-t / peak)
    return rate, remaining


@dataclass(frozen=True)
class _Kernels:
    """Glucose responses (mg/dL per unit input) sampled on the grid."""

    carb: tuple[FloatArray, ...]  # per gram x CSF, for absorption classes
    rescue: FloatArray
    insulin: FloatArray  # per unit x ISF
    decay: FloatArray  # response to a direct rate input (mg/dL per step)
    iob_grid: FloatArray
    cob_grid: FloatArray


CARB_PEAKS_MIN = (25.0, 45.0, 70.0)  # fast, mixed, fatty
RESCUE_PEAK_MIN = 12.0
RETURN_TAU_MIN = 150.0


def _kernels(step_min: int) -> _Kernels:
    n = int(12 * 60 / step_min)
    t = np.arange(n, dtype=np.float64) * step_min
    decay = np.exp(-t / RETURN_TAU_MIN)

    def through_decay(rate: FloatArray) -> FloatArray:
        return np.convolve(rate * step_min, decay)[:n]

    activity, iob = _insulin_curves(t)
    carb = tuple(through_decay(_carb_curves(t, p)[0]) for p in CARB_PEAKS_MIN)
    rescue = through_decay(_carb_curves(t, RESCUE_PEAK_MIN)[0])
    _, cob = _carb_curves(t, CARB_PEAKS_MIN[1])
    cob[t > 300] = 0.0
    return _Kernels(carb, rescue, through_decay(activity), decay, iob, cob)


# --------------------------------------------------------------------------- simulation


@dataclass
class _Bolus:
    index: int
    units: float
    kind: str  # "meal", "correction", "marker", "failure"
    carbs: float = 0.0
    absorption_min: int = 0


@dataclass
class _Events:
    boluses: list[_Bolus]
    rescues: list[tuple[int, float]]  # (index, grams)
    exercises: list[tuple[int, int, float]]  # (start index, duration min, target)
    failures: list[tuple[int, int]]  # (start index, end index)
    notes: list[tuple[int, str]]


@dataclass
class _Sim:
    true_glucose: FloatArray
    sensor: FloatArray  # NaN where there is no reading
    error_code: IntArray  # 0, or the code sent instead of a reading
    noise_level: IntArray
    sensor_changes_ms: list[int]
    site_changes_ms: list[int]
    events: _Events
    insulin_units: FloatArray  # announced/delivered boluses on the grid
    announced_carbs: FloatArray


def _day_factor(tl: _Timeline, per_day: FloatArray) -> FloatArray:
    """Expand a per-local-day value onto the grid."""
    day = tl.local_monotone // MINUTES_PER_DAY - tl.local_days()[0]
    return np.asarray(per_day[np.clip(day, 0, len(per_day) - 1)], dtype=np.float64)


def _episode_starts(mask: BoolArray, min_steps: int, refractory_steps: int) -> list[int]:
    """Indices where ``mask`` has held for ``min_steps`` consecutive steps, spaced apart."""
    m = mask.astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], m, [0]))))
    starts, stops = edges[::2], edges[1::2]
    out: list[int] = []
    last = -(10**12)
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        if b - a < min_steps:
            continue
        i = a + min_steps - 1
        while i < b:
            if i - last >= refractory_steps:
                out.append(i)
                last = i
            i += refractory_steps
    return out


def _simulate(spec: SubjectSpec, tl: _Timeline, base_seed: int, marker_index: int) -> _Sim:
    n, dt = tl.n, tl.step_min
    k = _kernels(dt)
    days = tl.local_days()
    nd = len(days)
    day_start = (days * MINUTES_PER_DAY).astype(np.float64)
    csf, isf = spec.carb_sensitivity, spec.isf_mg_dl_per_u

    # --- meals and their boluses -------------------------------------------------
    rng = _rng(base_seed, "meals")
    # (mean local minute, sd minutes, mean grams, absorption class): breakfast, lunch, dinner.
    meal_table = ((435.0, 40.0, 35.0, 0), (765.0, 45.0, 55.0, 1), (1140.0, 50.0, 70.0, 1))
    carb_in = [np.zeros(n) for _ in CARB_PEAKS_MIN]
    insulin = np.zeros(n)
    boluses: list[_Bolus] = []
    notes: list[tuple[int, str]] = []
    meal_rows: list[tuple[FloatArray, FloatArray, IntArray]] = []
    for mean_min, sd_min, mean_carbs, cls in meal_table:
        when = day_start + np.clip(rng.normal(mean_min, sd_min, nd), mean_min - 150, mean_min + 150)
        grams = mean_carbs * spec.meal_carb_scale * rng.lognormal(0, 0.3, nd)
        classes = np.full(nd, cls, dtype=np.int64)
        if mean_min > 1000:  # one dinner in six is pizza-like: larger and slowly absorbed
            fatty = rng.random(nd) < 0.17
            grams = np.where(fatty, grams * 1.4, grams)
            classes[fatty] = 2
        meal_rows.append((when, np.clip(np.round(grams / 5) * 5, 10, 120), classes))
    snack = rng.random(nd) < 0.45
    snack_when = day_start + rng.choice([630.0, 960.0, 1290.0], nd) + rng.normal(0, 40, nd)
    snack_grams = np.round(rng.uniform(10, 30, nd) / 5) * 5
    meal_rows.append(
        (snack_when[snack], snack_grams[snack], np.zeros(int(snack.sum()), dtype=np.int64))
    )

    when_all = np.concatenate([r[0] for r in meal_rows])
    grams_all = np.concatenate([r[1] for r in meal_rows])
    class_all = np.concatenate([r[2] for r in meal_rows])
    order = np.argsort(when_all, kind="stable")
    when_all, grams_all, class_all = when_all[order], grams_all[order], class_all[order]
    m = len(when_all)
    missed = rng.random(m) < spec.missed_bolus_probability
    error = np.clip(rng.lognormal(0, spec.bolus_error_sigma, m), 0.7, 1.35)
    prebolus = np.clip(rng.normal(-8, 10, m), -30, 25)
    note_roll = rng.random(m)
    idx, valid = tl.local_to_index(when_all)
    sens_day = np.exp(rng.normal(0, 0.12, nd))
    sens = _day_factor(tl, sens_day)
    announced = np.zeros(n)
    cr_by_hour = _hourly(CARB_RATIO_SHAPE)  # the profile's stronger breakfast ratio
    for j in range(m):
        if not valid[j]:
            continue
        i = int(idx[j])
        carb_in[int(class_all[j])][i] += grams_all[j]
        if missed[j]:
            continue
        ratio = spec.carb_ratio_g_per_u * cr_by_hour[int(when_all[j] % MINUTES_PER_DAY) // 60]
        units = round(float(grams_all[j] / ratio * error[j]) * 20) / 20
        bi = int(np.clip(i + round(prebolus[j] / dt), 0, n - 1))
        absorption = (120, 180, 300)[int(class_all[j])]
        boluses.append(_Bolus(bi, units, "meal", float(grams_all[j]), absorption))
        insulin[bi] += units
        announced[bi] += grams_all[j]
        if class_all[j] == 2 and note_roll[j] < 0.5:
            notes.append((bi, "pizza night"))
        elif note_roll[j] < 0.04:
            notes.append((bi, _NOTES[int(note_roll[j] * 1000) % len(_NOTES)]))

    # --- exercise, site failures, drift, dawn -------------------------------------
    rng = _rng(base_seed, "exercise")
    rate_in = np.zeros(n)
    exercises: list[tuple[int, int, float]] = []
    ex_day = rng.random(nd) < spec.exercise_per_week / 7
    ex_when = day_start + np.clip(rng.normal(1050, 80, nd), 480, 1290)
    ex_dur = rng.choice([30, 45, 60, 75, 90], nd)
    ex_rate = rng.uniform(0.6, 1.3, nd)
    ex_tt = rng.random(nd) < 0.6
    ex_idx, ex_valid = tl.local_to_index(ex_when)
    for d in np.flatnonzero(ex_day & ex_valid).tolist():
        a = int(ex_idx[d])
        b = min(n, a + tl.steps(float(ex_dur[d])))
        rate_in[a:b] -= ex_rate[d] * dt
        exercises.append((a, int(ex_dur[d]), 140.0 if ex_tt[d] else 0.0))

    rng = _rng(base_seed, "failures")
    failures: list[tuple[int, int]] = []
    failure_in = np.zeros(n)
    fail_day = rng.random(nd) < 1 / 40
    fail_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    fail_hours = rng.uniform(3, 7, nd)
    fail_rate = rng.uniform(0.8, 1.5, nd)
    fail_idx, fail_valid = tl.local_to_index(fail_when)
    for d in np.flatnonzero(fail_day & fail_valid).tolist():
        a = int(fail_idx[d])
        b = min(n - 1, a + tl.steps(float(fail_hours[d]) * 60))
        if b - a < 6:
            continue
        failure_in[a:b] += fail_rate[d] * dt
        failures.append((a, b))

    rng = _rng(base_seed, "drift")
    ou = np.exp(-np.arange(int(600 / dt)) * dt / 120.0)
    drift = _fft_convolve(rng.normal(0, 1, n), ou)
    drift *= 18.0 / max(float(drift.std()), 1e-9)

    rng = _rng(base_seed, "dawn")
    minute_of_day = (tl.local_min % MINUTES_PER_DAY).astype(np.float64)
    rise = np.clip((minute_of_day - 210) / 240, 0, 1)
    fall = np.clip((630 - minute_of_day) / 180, 0, 1)
    bump = np.where(
        minute_of_day < 450, np.sin(rise * np.pi / 2) ** 2, np.sin(fall * np.pi / 2) ** 2
    )
    dawn = spec.dawn_mg_dl * bump * _day_factor(tl, rng.uniform(0.6, 1.4, nd))

    insulin[marker_index] += MARKER_BOLUS_UNITS
    boluses.append(_Bolus(marker_index, MARKER_BOLUS_UNITS, "marker"))

    # --- pass 1: glucose without corrections or rescues ----------------------------
    carb_effect = sum(
        (_fft_convolve(c, kern) for c, kern in zip(carb_in, k.carb, strict=True)),
        np.zeros(n),
    )
    dev = csf * carb_effect - isf * _fft_convolve(insulin * sens, k.insulin)
    dev += _fft_convolve(rate_in, k.decay) + drift + dawn
    # Scale the everyday excursions to the subject's variability and skew them
    # (glucose is right-skewed: long hyperglycaemic tails, short hypoglycaemic
    # ones); site failures come on top, so a failure does not flatten every other day.
    mean_target = spec.mean_glucose_mg_dl
    target_sd = spec.mean_glucose_mg_dl * spec.glucose_cv * 1.06
    centred = dev - float(dev.mean())
    scale = target_sd / max(float(centred.std()), 1e-9)
    g1 = _skew(scale * centred, mean_target)
    scale *= target_sd / max(float(g1.std()), 1e-9)
    scale = float(np.clip(scale, 0.4, 2.5))
    g1 = _skew(scale * centred, mean_target)
    g1 += scale * _fft_convolve(failure_in, k.decay)
    g1 += mean_target - float(g1.mean())

    # --- pass 2: correction boluses for sustained highs and after site failures -----
    corrections = np.zeros(n)
    recent = np.concatenate(([0], np.cumsum(insulin > 0)))
    window = tl.steps(150)
    forced = {b for _, b in failures}
    candidates = set(_episode_starts(g1 > 240, tl.steps(30), tl.steps(180))) | forced
    for i in sorted(candidates):
        if i not in forced and recent[i + 1] - recent[max(0, i + 1 - window)] > 0:
            continue
        units = round(float(np.clip((g1[i] - spec.target_mg_dl) / isf * 0.6, 0.3, 10.0)) * 20) / 20
        corrections[i] += units
        boluses.append(_Bolus(i, units, "failure" if i in forced else "correction"))
    insulin += corrections
    # After a site failure the rise already decays on its own (the failure input
    # stops when the new site works), which stands for the forced correction.
    acting = corrections.copy()
    acting[sorted(forced)] = 0.0
    g2 = g1 - isf * _fft_convolve(acting * sens, k.insulin)

    # --- pass 3: rescue carbs for lows (a second round when the first was not enough) ---
    rng = _rng(base_seed, "rescue")
    rescue_in = np.zeros(n)
    rescues: list[tuple[int, float]] = []
    glucose = g2
    for threshold, min_minutes in ((60.0, 15.0), (54.0, 25.0)):
        added = np.zeros(n)
        last = np.full(n, -(10**9), dtype=np.int64)
        if rescues:
            marks = np.zeros(n, dtype=np.int64) - 10**9
            marks[[r[0] for r in rescues]] = [r[0] for r in rescues]
            last = np.maximum.accumulate(marks)
        for i in _episode_starts(glucose < threshold, tl.steps(min_minutes), tl.steps(60)):
            if i - last[i] < tl.steps(25):
                continue
            j = min(n - 1, i + tl.steps(float(rng.choice([0, 5, 10, 20]))))
            back = tl.steps(15)
            falling_fast = i >= back and glucose[i] - glucose[i - back] < -20
            rescue_g = float(rng.choice([10, 15, 15, 20, 25])) + (10.0 if falling_fast else 0.0)
            added[j] += rescue_g
            rescues.append((j, rescue_g))
        rescue_in += added
        glucose = glucose + csf * _fft_convolve(added, k.rescue)
    rescues.sort()
    announced += rescue_in
    # Counter-regulation (glucagon, liver) slows the fall below ~60 mg/dL.
    glucose = np.where(glucose < 60.0, 20.0 + 40.0 * np.exp((glucose - 60.0) / 40.0), glucose)

    events = _Events(sorted(boluses, key=lambda b: b.index), rescues, exercises, failures, notes)
    sensor, codes, noise_level, sensor_changes, site_changes = _sensor(tl, glucose, base_seed)
    return _Sim(
        glucose,
        sensor,
        codes,
        noise_level,
        sensor_changes,
        site_changes,
        events,
        insulin,
        announced,
    )


SKEW = 0.45


def _skew(deviation: FloatArray, centre: float) -> FloatArray:
    """Map a symmetric deviation onto right-skewed glucose around ``centre``."""
    return centre + centre / SKEW * np.expm1(np.clip(SKEW * deviation / centre, -5.0, 2.0))


def _periodic_ms(
    tl: _Timeline, rng: np.random.Generator, period_days: int, jitter_min: float
) -> list[int]:
    """Times every ``period_days`` from a random phase, each with a small jitter."""
    period = period_days * MS_PER_DAY
    phase = int(rng.uniform(0, period))
    first = tl.start_ms - period + phase
    count = (tl.end_ms - first) // period + 2
    jitter = rng.uniform(0, jitter_min, count) * MS_PER_MINUTE
    times = [first + k * period + int(jitter[k]) for k in range(count)]
    times = [t - t % MS_PER_MINUTE for t in times]
    return [t for t in times if t < tl.end_ms]


def _sensor(
    tl: _Timeline, glucose: FloatArray, base_seed: int
) -> tuple[FloatArray, IntArray, IntArray, list[int], list[int]]:
    """What the CGM reports: lag, bias, noise, compression lows, gaps, clamps, codes."""
    n, dt = tl.n, tl.step_min
    rng = _rng(base_seed, "sensor")
    days = tl.local_days()
    nd = len(days)
    day_start = (days * MINUTES_PER_DAY).astype(np.float64)

    lag = np.exp(-np.arange(int(30 / dt) + 1) * dt / 5.0)
    lag /= lag.sum()
    lagged = _fft_convolve(glucose - glucose[0], lag) + glucose[0]

    changes_all = _periodic_ms(tl, rng, SENSOR_SESSION_DAYS, 180)
    session = np.searchsorted(np.array(changes_all, dtype=np.int64), tl.t_ms, side="right")
    bias = np.exp(rng.normal(0, 0.04, len(changes_all) + 1))[session]
    since_change = np.full(n, 10**9, dtype=np.int64)
    if changes_all:
        prev = np.array([-(10**15), *changes_all], dtype=np.int64)[session]
        since_change = (tl.t_ms - prev) // MS_PER_MINUTE
    first_day = since_change < MINUTES_PER_DAY

    ar = np.exp(-np.arange(int(60 / dt) + 1) * dt / 8.0)
    colored = _fft_convolve(rng.normal(0, 1, n), ar)
    colored /= max(float(colored.std()), 1e-9)
    noise = colored * np.where(first_day, 7.0, 4.0) + rng.normal(0, 1.2, n)
    noise_level = np.where(first_day, 2, 1).astype(np.int64)

    comp = np.zeros(n)
    night = rng.random(nd) < 0.09
    c_when = day_start + rng.uniform(60, 300, nd)
    c_depth = rng.uniform(30, 60, nd)
    c_hold = rng.uniform(15, 45, nd)
    c_idx, c_valid = tl.local_to_index(c_when)
    for d in np.flatnonzero(night & c_valid).tolist():
        t_rel = np.arange(int((25 + c_hold[d]) / dt) + 2) * dt
        shape = np.minimum.reduce(
            [t_rel / 8.0, np.ones_like(t_rel), (25 + c_hold[d] - t_rel) / 12.0]
        )
        shape = np.clip(shape, 0, 1) * c_depth[d]
        a = int(c_idx[d])
        b = min(n, a + len(shape))
        comp[a:b] = np.maximum(comp[a:b], shape[: b - a])
        noise_level[a:b] = np.maximum(noise_level[a:b], 3)

    sensor = np.round(lagged * bias + noise - comp)
    sensor = np.where(sensor < 40, LOW_CLAMP, np.where(sensor > 400, HIGH_CLAMP, sensor))

    codes = np.zeros(n, dtype=np.int64)
    err_day = rng.random(nd) < 0.07
    err_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    err_len = rng.integers(1, 4, nd)
    err_code = rng.choice(np.array(ERROR_CODES), nd)
    e_idx, e_valid = tl.local_to_index(err_when)
    for d in np.flatnonzero(err_day & e_valid).tolist():
        a = int(e_idx[d])
        codes[a : min(n, a + int(err_len[d]) * tl.steps(5))] = int(err_code[d])

    missing = np.zeros(n, dtype=bool)
    for c in changes_all:
        a = (c - tl.start_ms) // (dt * MS_PER_MINUTE)
        b = (c + WARMUP_MINUTES * MS_PER_MINUTE - tl.start_ms - 1) // (dt * MS_PER_MINUTE) + 1
        missing[max(0, a) : max(0, min(n, b))] = True
    loss_day = rng.random(nd) < 0.12
    loss_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    loss_len = rng.uniform(10, 40, nd)
    l_idx, l_valid = tl.local_to_index(loss_when)
    for d in np.flatnonzero(loss_day & l_valid).tolist():
        a = int(l_idx[d])
        missing[a : min(n, a + tl.steps(float(loss_len[d])))] = True
    sensor[missing] = np.nan
    codes[missing] = 0

    site_changes = _periodic_ms(tl, _rng(base_seed, "sites"), SITE_CHANGE_DAYS, 240)
    sensor_changes = [c for c in changes_all if c >= tl.start_ms]
    return sensor, codes, noise_level, sensor_changes, site_changes


# --------------------------------------------------------------------------- profiles

# (hour, multiplier): more basal for the dawn phenomenon, less in the afternoon.
BASAL_SHAPE = ((0, 0.9), (3, 1.25), (8, 1.0), (12, 0.9), (18, 1.0))
CARB_RATIO_SHAPE = ((0, 1.0), (6, 0.8), (11, 1.0))  # breakfast needs more insulin
ISF_SHAPE = ((0, 1.1), (6, 1.0), (22, 1.1))


def _hourly(shape: tuple[tuple[int, float], ...]) -> FloatArray:
    out = np.empty(24)
    for (hour, value), nxt in zip(shape, [*shape[1:], (24, 0.0)], strict=True):
        out[hour : nxt[0]] = value
    return out


@dataclass(frozen=True)
class _ProfilePlan:
    start_ms: int
    timezone: str
    basal_scale: float
    isf_scale: float
    cr_scale: float


def _profile_plans(
    spec: SubjectSpec, tl: _Timeline, trip: _Trip | None, base_seed: int
) -> list[_ProfilePlan]:
    """A profile at the window start, a small tweak every two weeks, and one on
    each time-zone change of the traveller (the timezone lives in the profile)."""
    rng = _rng(base_seed, "profiles")
    plans: list[_ProfilePlan] = []
    t = tl.start_ms
    scales = (1.0, 1.0, 1.0)
    while t < tl.end_ms:
        tz = trip.timezone if trip and trip.start_ms <= t < trip.end_ms else spec.timezone
        plans.append(_ProfilePlan(t, tz, *scales))
        drift = np.round(rng.lognormal(0, 0.04, 3), 2)
        scales = (float(drift[0]), float(drift[1]), float(drift[2]))
        t += PROFILE_EVERY_DAYS * MS_PER_DAY
    if trip is not None:
        for when, tz in ((trip.start_ms, trip.timezone), (trip.end_ms, spec.timezone)):
            current = max((p for p in plans if p.start_ms <= when), key=lambda p: p.start_ms)
            if current.start_ms == when:
                plans.remove(current)
            plans.append(
                _ProfilePlan(when, tz, current.basal_scale, current.isf_scale, current.cr_scale)
            )
    return sorted(plans, key=lambda p: p.start_ms)


def _schedule(shape: tuple[tuple[int, float], ...], base: float, digits: int) -> list[Doc]:
    return [
        {
            "time": f"{hour:02d}:00",
            "timeAsSeconds": hour * 3600,
            "value": round(base * mult, digits),
        }
        for hour, mult in shape
    ]


def _profile_doc(spec: SubjectSpec, plan: _ProfilePlan) -> Doc:
    iso = _one_iso_utc(plan.start_ms)
    high = spec.target_mg_dl + (10.0 if spec.uploader == "loop" else 0.0)
    store = {
        "dia": 5,
        "timezone": plan.timezone,
        "units": "mg/dl",
        "carbs_hr": 20,
        "delay": 20,
        "carbratio": _schedule(CARB_RATIO_SHAPE, spec.carb_ratio_g_per_u * plan.cr_scale, 1),
        "sens": _schedule(ISF_SHAPE, spec.isf_mg_dl_per_u * plan.isf_scale, 0),
        "basal": _schedule(BASAL_SHAPE, spec.basal_u_per_h * plan.basal_scale, 2),
        "target_low": _schedule(((0, 1.0),), spec.target_mg_dl, 0),
        "target_high": _schedule(((0, 1.0),), high, 0),
    }
    return {
        "defaultProfile": "Default",
        "startDate": iso,
        "created_at": iso,
        "mills": plan.start_ms,
        "units": "mg/dl",
        "store": {"Default": store},
    }


# --------------------------------------------------------------------------- entries

DIRECTIONS = (
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
)
NOT_COMPUTABLE = "NOT COMPUTABLE"
_SHARE_TREND = {name: i + 1 for i, name in enumerate(DIRECTIONS)} | {NOT_COMPUTABLE: 8}


def _cgm_device(spec: SubjectSpec, interval_minutes: int) -> str:
    """Libre 3 (1-min) arrives through xDrip+; Dexcom through Share or xDrip+."""
    return "xDrip-LibreReceiver" if interval_minutes == 1 else spec.cgm_device


def _second_uploader(device: str) -> str:
    return "xDrip-DexcomG6" if device == "share2" else "share2"


@dataclass
class _EntryTable:
    """The sgv readings as columns (grid order), for documents and dirty picks."""

    index: IntArray
    value: IntArray
    is_code: BoolArray
    docs: list[Doc]


def _sgv_entries(tl: _Timeline, sim: _Sim, device: str, base_seed: int) -> _EntryTable:
    n = tl.n
    present = ~np.isnan(sim.sensor)
    value = np.where(sim.error_code > 0, sim.error_code, np.nan_to_num(sim.sensor)).astype(np.int64)
    code = sim.error_code > 0
    lag = tl.steps(5)
    prev_ok = np.zeros(n, dtype=bool)
    prev_ok[lag:] = present[:-lag] & ~code[:-lag]
    prev_val = np.zeros(n, dtype=np.int64)
    prev_val[lag:] = value[:-lag]
    computable = present & ~code & prev_ok
    computable &= _rng(base_seed, "directions").random(n) >= 0.002
    delta = (value - prev_val).astype(np.float64)
    slope = delta / 5.0
    direction = np.select(
        [slope > 3, slope > 2, slope > 1, slope >= -1, slope >= -2, slope >= -3],
        list(DIRECTIONS[:6]),
        DIRECTIONS[6],
    ).astype(object)
    direction[~computable] = NOT_COMPUTABLE

    idx = np.flatnonzero(present)
    ms = tl.t_ms[idx]
    offsets = tl.offset_min[idx]
    date_strings = _iso_local(ms, offsets)
    share = device == "share2"
    docs: list[Doc] = []
    for when, text, off, val, dirn, ok, dlt, noise in zip(
        ms.tolist(),
        date_strings,
        offsets.tolist(),
        value[idx].tolist(),
        direction[idx].tolist(),
        computable[idx].tolist(),
        delta[idx].tolist(),
        sim.noise_level[idx].tolist(),
        strict=True,
    ):
        doc: Doc = {
            "type": "sgv",
            "sgv": val,
            "date": when,
            "dateString": text,
            "utcOffset": off,
            "direction": dirn,
            "device": device,
            "noise": noise,
        }
        if ok:
            doc["delta"] = dlt
        if share:
            doc["trend"] = _SHARE_TREND[dirn]
        docs.append(doc)
    return _EntryTable(idx, value[idx], code[idx], docs)


def _meter_entries(tl: _Timeline, sim: _Sim, device: str, base_seed: int) -> list[tuple[int, Doc]]:
    """Finger sticks (~3 a week) and one calibration record per sensor session."""
    rng = _rng(base_seed, "meter")
    days = tl.local_days()
    nd = len(days)
    # three finger sticks a week, spread evenly (a Bernoulli draw per day is too lumpy)
    stick = (np.arange(nd) * 3 / 7 + rng.uniform()) % 1 < 3 / 7
    when = days * MINUTES_PER_DAY + rng.uniform(7 * 60, 22 * 60, nd)
    error = rng.lognormal(0, 0.05, nd)
    idx, valid = tl.local_to_index(when)
    out: list[tuple[int, Doc]] = []
    for d in np.flatnonzero(stick & valid).tolist():
        i = int(idx[d])
        ms = int(tl.t_ms[i]) + int(rng.integers(0, tl.step_min * 60)) * 1000
        off = tl.offsets.at_one(ms)
        mbg = int(np.clip(round(sim.true_glucose[i] * error[d]), 20, 600))
        out.append(
            (
                ms,
                {
                    "type": "mbg",
                    "mbg": mbg,
                    "date": ms,
                    "dateString": _one_iso_local(ms, off),
                    "utcOffset": off,
                    "device": "xDrip-BluetoothMeter" if device.startswith("xDrip") else device,
                },
            )
        )
    for change in sim.sensor_changes_ms:
        ms = change + (WARMUP_MINUTES + 7) * MS_PER_MINUTE
        if ms >= tl.end_ms:
            continue
        off = tl.offsets.at_one(ms)
        out.append(
            (
                ms,
                {
                    "type": "cal",
                    "date": ms,
                    "dateString": _one_iso_local(ms, off),
                    "utcOffset": off,
                    "device": device,
                    "slope": round(float(rng.uniform(800, 1000)), 2),
                    "intercept": round(float(rng.uniform(25000, 35000)), 2),
                    "scale": 1,
                },
            )
        )
    return out


# --------------------------------------------------------------------------- closed loop

TEMP_DURATION_MIN = 30


@dataclass
class _Loop:
    """Per 5-minute loop cycle: what the controller saw, decided and reported."""

    grid_index: IntArray
    ms: IntArray
    offset_min: IntArray
    bg: FloatArray  # NaN when there is no usable reading
    delta: FloatArray
    iob: FloatArray
    basal_iob: FloatArray
    cob: FloatArray
    eventual: FloatArray
    scheduled: FloatArray
    rate: FloatArray  # basal rate in effect
    wrote_temp: BoolArray
    auto_bolus: FloatArray
    reservoir: FloatArray
    pump_battery: IntArray
    phone_battery: IntArray


def _site_changes(tl: _Timeline, sim: _Sim) -> list[tuple[int, bool]]:
    """Scheduled site changes plus an unscheduled one ending every site failure."""
    out = [(ms, False) for ms in sim.site_changes_ms if ms >= tl.start_ms]
    out += [(int(tl.t_ms[b]) + 3 * MS_PER_MINUTE, True) for _, b in sim.events.failures]
    return sorted(out)


def _run_loop(
    spec: SubjectSpec, tl: _Timeline, sim: _Sim, plans: list[_ProfilePlan], base_seed: int
) -> _Loop:
    rng = _rng(base_seed, "loop")
    ci = np.flatnonzero(tl.t_ms % (LOOP_CYCLE_MINUTES * MS_PER_MINUTE) == 0)
    nc = len(ci)
    phase_s = int(rng.integers(5, 50))
    ms = tl.t_ms[ci] + phase_s * 1000
    isf, csf, target = spec.isf_mg_dl_per_u, spec.carb_sensitivity, spec.target_mg_dl

    bg = np.where(sim.error_code[ci] > 0, np.nan, sim.sensor[ci])
    delta = np.full(nc, np.nan)
    delta[1:] = bg[1:] - bg[:-1]
    trend = np.nan_to_num(delta)

    kern = _kernels(tl.step_min)
    iob_bolus = _fft_convolve(sim.insulin_units, kern.iob_grid)[ci]
    cob = np.maximum(_fft_convolve(sim.announced_carbs, kern.cob_grid)[ci], 0.0)

    hour = (tl.local_min[ci] % MINUTES_PER_DAY) // 60
    starts = np.array([p.start_ms for p in plans], dtype=np.int64)
    which = np.clip(np.searchsorted(starts, ms, side="right") - 1, 0, len(plans) - 1)
    basal_scale = np.array([p.basal_scale for p in plans])[which]
    scheduled = spec.basal_u_per_h * _hourly(BASAL_SHAPE)[hour] * basal_scale

    # Automatic boluses (Loop) / SMBs (AAPS) on a predicted rise, counting the
    # insulin the earlier ones still have on board.
    t5 = np.arange(72, dtype=np.float64) * LOOP_CYCLE_MINUTES
    iob5 = _insulin_curves(t5)[1]
    eventual_pre = bg + 3 * trend - iob_bolus * isf + cob * csf
    ratio, cap, quantum, spacing = (
        (0.3, 1.5, 0.05, 2) if spec.uploader == "loop" else (0.25, 1.0, 0.1, 1)
    )
    candidate = (bg > target + 60) & (eventual_pre > target + 80) & (trend > -3)
    auto = np.zeros(nc)
    max_auto_iob = 2.5 * spec.basal_u_per_h  # the user's max IOB setting caps automation
    recent: list[tuple[int, float]] = []
    for c in np.flatnonzero(candidate).tolist():
        recent = [(j, u) for j, u in recent if c - j < len(iob5)]
        if recent and c - recent[-1][0] < spacing:
            continue
        auto_iob = sum(u * float(iob5[c - j]) for j, u in recent)
        if auto_iob > max_auto_iob:
            continue
        need = (float(eventual_pre[c]) - auto_iob * isf - target) / isf
        units = round(min(cap, max(0.0, need * ratio)) / quantum) * quantum
        if units >= quantum and need * isf > 80:
            auto[c] = units
            recent.append((c, units))
    iob_all = iob_bolus + _fft_convolve(auto, iob5)

    eventual = np.clip(bg + 3 * trend - iob_all * isf + cob * csf, 39, 400)
    desired = scheduled + 0.5 * (eventual - target) / isf
    suspend = ((bg < 80) & (trend < 0)) | (eventual < target - 25)
    desired = np.where(suspend, 0.0, np.clip(desired, 0.0, 4 * scheduled))
    desired = np.round(desired * 20) / 20

    # Temp basals: a new one when the recommendation moves, or to renew one about to expire.
    rate = np.empty(nc)
    wrote = np.zeros(nc, dtype=bool)
    usable = ~np.isnan(bg)
    current = float(scheduled[0]) if nc else 0.0
    until = -1
    for c in range(nc):
        now = int(ms[c])
        if now >= until:
            current = float(scheduled[c])
        if usable[c]:
            d = float(desired[c])
            if now >= until - 6 * MS_PER_MINUTE or abs(d - current) >= max(
                0.1, 0.15 * float(scheduled[c])
            ):
                current = d
                until = now + TEMP_DURATION_MIN * MS_PER_MINUTE
                wrote[c] = True
        rate[c] = current
    basal_iob = _fft_convolve((rate - scheduled) * LOOP_CYCLE_MINUTES / 60, iob5)

    # Reservoir: filled at each site change, drained by basal and boluses.
    bolus_per_cycle = np.bincount(
        np.clip(
            np.searchsorted(ci, np.flatnonzero(sim.insulin_units > 0), side="right") - 1,
            0,
            max(nc - 1, 0),
        ),
        weights=sim.insulin_units[sim.insulin_units > 0],
        minlength=nc,
    )[:nc]
    delivered = rate * LOOP_CYCLE_MINUTES / 60 + bolus_per_cycle + auto
    before = np.cumsum(delivered) - delivered
    change_ms = np.array([c for c, _ in _site_changes(tl, sim)], dtype=np.int64)
    segment = np.searchsorted(change_ms, ms, side="right")
    first_cycle = np.searchsorted(ms, change_ms, side="left")
    # People fill for about five days of their usual total daily dose.
    fill = float(np.clip(np.ceil(spec.basal_u_per_h * 24 / 0.45 * 5 / 10) * 10, 150, 300))
    base = np.concatenate(([-fill * 0.4], before[np.minimum(first_cycle, max(nc - 1, 0))]))
    reservoir = np.asarray(
        np.round(np.clip(fill - (before - base[segment]), 0, None), 1), dtype=np.float64
    )

    days_in = (ms - tl.start_ms) / MS_PER_DAY + float(rng.uniform(0, 30))
    pump_battery = (100 - (days_in % 30) * 2.7).astype(np.int64)
    local_hours = (tl.local_min[ci] % MINUTES_PER_DAY) / 60.0
    awake = (local_hours - 7.0) % 24.0
    phone = np.where(awake < 16.0, 100 - awake * 4.2, 33 + (awake - 16.0) * 9)
    phone_battery = np.clip(phone + rng.normal(0, 2, nc), 5, 100).astype(np.int64)

    return _Loop(
        ci,
        ms,
        tl.offset_min[ci],
        bg,
        delta,
        iob_all + basal_iob,
        basal_iob,
        cob,
        eventual,
        scheduled,
        rate,
        wrote,
        auto,
        reservoir,
        pump_battery,
        phone_battery,
    )


def _predictions(lp: _Loop, steps: int, towards: FloatArray) -> IntArray:
    """Short forecast curves from the current reading towards an eventual value."""
    s = np.arange(steps, dtype=np.float64)
    bg = np.nan_to_num(lp.bg)[:, None]
    trend = np.nan_to_num(lp.delta)[:, None]
    curve = bg + trend * np.minimum(s, 3) * 0.8 + (towards[:, None] - bg) * (1 - np.exp(-s / 12))
    return np.asarray(np.rint(np.clip(curve, 39, 400)), dtype=np.int64)


def _devicestatus(spec: SubjectSpec, lp: _Loop) -> list[Doc]:
    created = _iso_utc(lp.ms)
    common = zip(
        created,
        lp.offset_min.tolist(),
        (~np.isnan(lp.bg)).tolist(),
        np.nan_to_num(lp.bg).astype(np.int64).tolist(),
        np.round(lp.iob, 2).tolist(),
        np.round(lp.basal_iob, 2).tolist(),
        np.round(lp.cob, 1).tolist(),
        np.rint(np.nan_to_num(lp.eventual)).astype(np.int64).tolist(),
        lp.rate.round(2).tolist(),
        lp.wrote_temp.tolist(),
        lp.auto_bolus.round(2).tolist(),
        lp.reservoir.tolist(),
        lp.pump_battery.tolist(),
        lp.phone_battery.tolist(),
        strict=True,
    )
    docs: list[Doc] = []
    if spec.uploader == "loop":
        predicted = _predictions(lp, 24, np.nan_to_num(lp.eventual)).tolist()
        for c, (
            ts,
            off,
            ok,
            _bg,
            iob,
            _biob,
            cob,
            _ev,
            rate,
            wrote,
            bolus,
            res,
            pbat,
            ubat,
        ) in enumerate(common):
            loop: Doc = {
                "name": "Loop",
                "version": "3.4.4",
                "timestamp": ts,
                "iob": {"iob": iob, "timestamp": ts},
                "cob": {"cob": cob, "timestamp": ts},
            }
            if ok:
                loop["predicted"] = {"startDate": ts, "values": predicted[c]}
                loop["recommendedBolus"] = 0.0
            if wrote:
                loop["enacted"] = {
                    "rate": rate,
                    "duration": TEMP_DURATION_MIN,
                    "timestamp": ts,
                    "received": True,
                    "bolusVolume": bolus,
                }
            docs.append(
                {
                    "device": LOOP_ENTERED_BY,
                    "created_at": ts,
                    "utcOffset": off,
                    "loop": loop,
                    "pump": {
                        "clock": ts,
                        "reservoir": res,
                        "battery": {"percent": pbat},
                        "manufacturer": "Insulet",
                        "model": "Dash",
                        "suspended": False,
                        "bolusing": False,
                    },
                    "uploader": {"name": "iPhone", "timestamp": ts, "battery": ubat},
                }
            )
        return docs

    eventual_iob = np.clip(
        np.nan_to_num(lp.bg) + 3 * np.nan_to_num(lp.delta) - lp.iob * spec.isf_mg_dl_per_u, 39, 400
    )
    pred_iob = _predictions(lp, 24, eventual_iob).tolist()
    pred_cob = _predictions(lp, 24, np.nan_to_num(lp.eventual)).tolist()
    pred_zt = _predictions(lp, 12, eventual_iob + lp.scheduled * spec.isf_mg_dl_per_u).tolist()
    for c, (ts, off, ok, bg, iob, biob, cob, ev, rate, wrote, bolus, res, pbat, ubat) in enumerate(
        common
    ):
        openaps: Doc = {
            "iob": {"iob": iob, "basaliob": biob, "activity": round(iob * 0.012, 4), "time": ts}
        }
        if ok:
            pred: Doc = {"IOB": pred_iob[c], "ZT": pred_zt[c]}
            if cob > 0.5:
                pred["COB"] = pred_cob[c]
            openaps["suggested"] = {
                "temp": "absolute",
                "bg": bg,
                "tick": f"{int(lp.delta[c]):+d}" if not math.isnan(lp.delta[c]) else "",
                "eventualBG": ev,
                "targetBG": int(spec.target_mg_dl),
                "COB": cob,
                "IOB": iob,
                "rate": rate,
                "duration": TEMP_DURATION_MIN,
                "units": bolus,
                "reason": f"COB: {cob:g}, Dev: {int(ev - bg)}, BGI: {-round(iob, 1):g}, ISF: {int(spec.isf_mg_dl_per_u)}",
                "predBGs": pred,
                "timestamp": ts,
                "deliverAt": ts,
            }
        else:
            openaps["suggested"] = {"reason": "CGM data is unchanged or too old", "timestamp": ts}
        if wrote:
            openaps["enacted"] = {
                "temp": "absolute",
                "rate": rate,
                "duration": TEMP_DURATION_MIN,
                "smb": bolus,
                "timestamp": ts,
                "received": True,
            }
        docs.append(
            {
                "device": AAPS_DEVICE,
                "created_at": ts,
                "utcOffset": off,
                "openaps": openaps,
                "pump": {
                    "clock": ts,
                    "reservoir": res,
                    "battery": {"percent": pbat},
                    "status": {"status": "normal", "timestamp": ts},
                },
                "uploaderBattery": ubat,
                "isCharging": ubat > 95,
            }
        )
    return docs


# --------------------------------------------------------------------------- treatments


class _Treatments:
    """Collects treatments as uploaders shape them, kept in upload (time) order."""

    def __init__(self, spec: SubjectSpec, tl: _Timeline, rng: np.random.Generator) -> None:
        self.spec = spec
        self.tl = tl
        self.rng = rng
        self.items: list[tuple[int, Doc]] = []
        self.next_pump_id = 4_100_000 + int(rng.integers(0, 900_000))

    def at_index(self, index: int) -> int:
        """An instant inside the grid step (people do not bolus on the 5-minute tick)."""
        jitter = int(self.rng.integers(0, self.tl.step_min * 60)) * 1000
        return int(self.tl.t_ms[index]) + jitter

    def add(
        self,
        ms: int,
        event_type: str,
        fields: Doc,
        *,
        pump: bool = False,
        created_at: str | None = None,
        offset: int | None = None,
    ) -> Doc:
        doc: Doc = {
            "eventType": event_type,
            "created_at": created_at if created_at is not None else _one_iso_utc(ms),
            "enteredBy": self.spec.entered_by,
            "utcOffset": offset if offset is not None else self.tl.offsets.at_one(ms),
        }
        doc.update(fields)
        if self.spec.uploader == "aaps":
            doc["date"] = ms
            if pump:
                doc["pumpId"] = self.next_pump_id
                doc["pumpType"] = "DANA_I"
                doc["pumpSerial"] = "VCX12345AB"
                self.next_pump_id += 1
        self.items.append((ms, doc))
        return doc

    def bolus(
        self, ms: int, event_type: str, units: float, *, smb: bool = False, **fields: Any
    ) -> Doc:
        body: Doc = {"insulin": round(units, 2), **fields}
        if self.spec.uploader == "aaps":
            body["isSMB"] = smb
            body["type"] = "SMB" if smb else "NORMAL"
        elif smb:
            body["automatic"] = True
        return self.add(ms, event_type, body, pump=True)

    def sorted_docs(self) -> list[tuple[int, Doc]]:
        return sorted(self.items, key=lambda item: item[0])


def _treatments(
    spec: SubjectSpec,
    tl: _Timeline,
    sim: _Sim,
    lp: _Loop,
    plans: list[_ProfilePlan],
    trip: _Trip | None,
    base_seed: int,
) -> tuple[list[tuple[int, Doc]], Doc]:
    """All treatments, plus the marker correction bolus (dirty data changes its type)."""
    rng = _rng(base_seed, "treatments")
    out = _Treatments(spec, tl, rng)
    loop = spec.uploader == "loop"
    marker: Doc = {}

    for b in sim.events.boluses:
        ms = out.at_index(b.index)
        if b.kind == "meal":
            extra: Doc = {"absorptionTime": b.absorption_min} if loop else {}
            out.bolus(ms, "Meal Bolus", b.units, carbs=round(b.carbs), **extra)
        elif b.kind == "marker":
            marker = out.bolus(ms, "Correction Bolus", b.units)
        else:
            out.bolus(ms, "Correction Bolus", b.units)
    for index, grams in sim.events.rescues:
        extra = {"absorptionTime": 30} if loop else {}
        out.add(out.at_index(index), "Carb Correction", {"carbs": round(grams), **extra})
    for index, text in sim.events.notes:
        out.add(out.at_index(index), "Note", {"notes": text})
    for index, duration, target in sim.events.exercises:
        if target <= 0:
            continue
        start = max(0, index - tl.steps(45))
        out.add(
            out.at_index(start),
            "Temporary Target",
            {
                "targetTop": target,
                "targetBottom": target,
                "duration": duration + 45,
                "reason": "Activity",
                "units": "mg/dl",
            },
        )

    for ms, failed in _site_changes(tl, sim):
        if ms < tl.end_ms:
            out.add(
                ms,
                "Site Change",
                {"notes": "kinked cannula, glucose would not come down"} if failed else {},
            )
    for ms in sim.sensor_changes_ms:
        out.add(ms, "Sensor Change", {})
        out.add(ms + 1000, "Sensor Start", {})

    if trip is not None:
        out.add(trip.start_ms, "Note", {"notes": f"travelling to {trip.timezone}"})
        out.add(trip.end_ms, "Note", {"notes": f"back home in {spec.timezone}"})
    if not loop:
        for plan in plans:
            out.add(
                plan.start_ms + 1000,
                "Profile Switch",
                {"profile": "Default", "duration": 0, "percentage": 100, "timeshift": 0},
            )
        days = tl.local_days()
        switch = rng.random(len(days)) < 0.05
        pct = rng.choice([80, 90, 110, 120], len(days))
        hours = rng.choice([2, 4, 8, 12], len(days))
        idx, valid = tl.local_to_index(
            days * MINUTES_PER_DAY + rng.uniform(8 * 60, 20 * 60, len(days))
        )
        for d in np.flatnonzero(switch & valid).tolist():
            out.add(
                out.at_index(int(idx[d])),
                "Profile Switch",
                {
                    "profile": "Default",
                    "duration": int(hours[d]) * 60,
                    "percentage": int(pct[d]),
                    "timeshift": 0,
                },
            )

    created = _iso_utc(lp.ms)
    offsets = lp.offset_min.tolist()
    rates = lp.rate.round(2).tolist()
    autos = lp.auto_bolus.round(2).tolist()
    temp_fields: Doc = {"duration": TEMP_DURATION_MIN, "temp": "absolute"}
    if not loop:
        temp_fields = {
            "duration": TEMP_DURATION_MIN,
            "durationInMilliseconds": TEMP_DURATION_MIN * MS_PER_MINUTE,
            "type": "NORMAL",
        }
    for c in np.flatnonzero(lp.wrote_temp | (lp.auto_bolus > 0)).tolist():
        ms = int(lp.ms[c])
        if lp.wrote_temp[c]:
            out.add(
                ms,
                "Temp Basal",
                {"rate": rates[c], "absolute": rates[c], **temp_fields},
                pump=True,
                created_at=created[c],
                offset=offsets[c],
            )
        if autos[c] > 0:
            body: Doc = {"insulin": autos[c]}
            if loop:
                body["automatic"] = True
            else:
                body.update(isSMB=True, type="SMB")
            out.add(ms + 2000, "Correction Bolus", body, pump=True, offset=offsets[c])
    return out.sorted_docs(), marker


# --------------------------------------------------------------------------- dirty data


def _nominal_readings(days: int, interval_minutes: int) -> int:
    return days * MINUTES_PER_DAY // interval_minutes


def dirty_record_counts(days: int, interval_minutes: int = 5) -> dict[str, int]:
    """Exactly what ``generate_subject(..., dirty=True)`` adds or changes.

    ``rejectable_<collection>`` counts the extra records an ingester must reject
    (see the module docstring for the rule); duplicates and numeric strings are
    not rejectable (dedup and coercion handle them).
    """
    duplicates = max(1, _nominal_readings(days, interval_minutes) * DUPLICATE_PERMILLE // 1000)
    return {
        "entries_duplicates": duplicates,
        "entries_sgv_numeric_string": len(NUMERIC_STRING_FRACTIONS),
        "entries_date_1970": 1,
        "entries_date_future": 1,
        "entries_sgv_unparseable": 1,
        "entries_missing_date": 1,
        "treatments_created_at_unparseable": 1,
        "treatments_insulin_numeric_string": 1,
        "devicestatus_date_1970": 1,
        "rejectable_entries": 4,
        "rejectable_treatments": 1,
        "rejectable_devicestatus": 1,
        "rejectable_profile": 0,
        "extra_entries": duplicates + 4,
        "extra_treatments": 1,
        "extra_devicestatus": 1,
        "extra_profile": 0,
    }


def _pick(table: _EntryTable, tl: _Timeline, fraction: float, *, normal: bool) -> int:
    """Position of the first (normal-valued) sgv reading at or after ``fraction`` of the window."""
    ms = tl.t_ms[table.index]
    pos = int(np.searchsorted(ms, tl.start_ms + int(fraction * (tl.end_ms - tl.start_ms))))
    if normal:
        while pos < len(table.docs) and (table.is_code[pos] or not 40 <= table.value[pos] <= 400):
            pos += 1
    return min(pos, len(table.docs) - 1)


def _dirty_entries(
    table: _EntryTable, tl: _Timeline, device: str, days: int
) -> list[tuple[int, int, Doc]]:
    counts = dirty_record_counts(days, tl.step_min)
    docs = table.docs
    extras: list[tuple[int, int, Doc]] = []

    n_dup = counts["entries_duplicates"]
    first = min(_pick(table, tl, DUPLICATE_START_FRACTION, normal=False), len(docs) - n_dup)
    second = _second_uploader(device)
    for doc in docs[first : first + n_dup]:
        copy = {key: value for key, value in doc.items() if key != "trend"}
        copy["device"] = second
        extras.append((doc["date"], 1, copy))

    for fraction in NUMERIC_STRING_FRACTIONS:
        doc = docs[_pick(table, tl, fraction, normal=True)]
        doc["sgv"] = str(doc["sgv"])

    base = docs[_pick(table, tl, 0.5, normal=True)]
    old = dict(base, date=base["date"] % (30 * MS_PER_DAY))
    old["dateString"] = _one_iso_local(old["date"], old["utcOffset"])
    extras.append((base["date"], 2, old))

    base = docs[_pick(table, tl, 0.6, normal=True)]
    future = dict(
        base,
        date=tl.end_ms + FUTURE_CLOCK_DAYS * MS_PER_DAY + (base["date"] - tl.start_ms) % MS_PER_DAY,
    )
    future["dateString"] = _one_iso_local(future["date"], future["utcOffset"])
    extras.append((base["date"], 2, future))

    base = docs[_pick(table, tl, 0.7, normal=True)]
    broken = {key: value for key, value in base.items() if key not in ("delta", "trend")}
    broken.update(sgv="abc", direction=NOT_COMPUTABLE, date=base["date"] + 30_000)
    broken["dateString"] = _one_iso_local(broken["date"], broken["utcOffset"])
    extras.append((base["date"], 2, broken))

    base = docs[_pick(table, tl, 0.8, normal=True)]
    undated = {key: value for key, value in base.items() if key not in ("date", "dateString")}
    extras.append((base["date"], 2, undated))
    return extras


# --------------------------------------------------------------------------- public API


def generate_subject(
    spec: SubjectSpec,
    *,
    days: int,
    interval_minutes: int = 5,
    seed: int = 0,
    end: datetime | None = None,
    dirty: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """One person's Nightscout documents for the window [end - days, end).

    ``end`` (default: now; naive means UTC) is rounded down to the CGM interval.
    Every list is in upload order (by event time; dirty extras follow the record
    they were derived from). Documents carry no server fields. The same
    arguments always give the same documents; ``seed`` picks another history for
    the same person. ``dirty`` adds the records listed in the module docstring
    and counted by :func:`dirty_record_counts`.
    """
    if interval_minutes not in (1, 5):
        raise ValueError("interval_minutes must be 1 or 5")
    if days < 1:
        raise ValueError("days must be >= 1")
    end_ms = _floor_to_interval(end if end is not None else datetime.now(UTC), interval_minutes)
    start_ms = end_ms - days * MS_PER_DAY
    base_seed = _stable_seed(spec, days, interval_minutes, seed, end_ms)

    trip = _trip_for(spec, start_ms, end_ms)
    tl = _timeline(spec, start_ms, end_ms, interval_minutes, trip)
    marker_index = tl.index_at_ms(start_ms + int(MARKER_BOLUS_FRACTION * (end_ms - start_ms)))
    sim = _simulate(spec, tl, base_seed, marker_index)
    plans = _profile_plans(spec, tl, trip, base_seed)
    lp = _run_loop(spec, tl, sim, plans, base_seed)

    device = _cgm_device(spec, interval_minutes)
    table = _sgv_entries(tl, sim, device, base_seed)
    entry_items: list[tuple[int, int, Doc]] = [(doc["date"], 0, doc) for doc in table.docs]
    entry_items += [(ms, 0, doc) for ms, doc in _meter_entries(tl, sim, device, base_seed)]
    treatment_items, marker = _treatments(spec, tl, sim, lp, plans, trip, base_seed)
    devicestatus = _devicestatus(spec, lp)
    profiles = [_profile_doc(spec, plan) for plan in plans]

    if dirty:
        entry_items += _dirty_entries(table, tl, device, days)
        marker["insulin"] = str(marker["insulin"])
        half = start_ms + (end_ms - start_ms) // 2
        treatment_items.append(
            (
                half,
                {
                    "eventType": "Note",
                    "created_at": "not a date",
                    "enteredBy": "careportal",
                    "utcOffset": tl.offsets.at_one(half),
                    "notes": "entered on a phone with a broken date picker",
                },
            )
        )
        treatment_items.sort(key=lambda item: item[0])
        pos = min(int(np.searchsorted(lp.ms, half)), len(devicestatus) - 1)
        stale = _reset_clock(devicestatus[pos])
        devicestatus.insert(pos + 1, stale)

    entry_items.sort(key=lambda item: (item[0], item[1]))
    return {
        "entries": [doc for _, _, doc in entry_items],
        "treatments": [doc for _, doc in treatment_items],
        "devicestatus": devicestatus,
        "profile": profiles,
    }


def _reset_clock(doc: Doc) -> Doc:
    """A copy of a devicestatus whose phone and pump clocks reset to January 1970."""
    ms = int(np.datetime64(doc["created_at"].rstrip("Z"), "ms").astype(np.int64))
    stamp = _one_iso_utc(ms % MS_PER_DAY)
    copy: Doc = deepcopy(doc)
    copy["created_at"] = stamp
    copy["pump"]["clock"] = stamp
    return copy


def scripted_entries(
    values_mg_dl: Sequence[int | None],
    *,
    start: datetime,
    interval_minutes: int = 5,
    utc_offset_minutes: int = 0,
    device: str = "scripted",
) -> list[dict[str, Any]]:
    """One sgv entry per value, ``interval_minutes`` apart from ``start`` (None = gap).

    For known-answer tests: no noise, no clamping, no dirt. ``delta`` (per 5
    minutes, as uploaders report it) and ``direction`` come from the reading 5
    minutes earlier (one slot at a 5-min interval); without one the reading is
    "NOT COMPUTABLE" with no ``delta``, as a real uploader reports it after a gap.
    """
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    step = interval_minutes * MS_PER_MINUTE
    lag = max(1, 5 // interval_minutes)
    out: list[dict[str, Any]] = []
    for i, value in enumerate(values_mg_dl):
        if value is None:
            continue
        ms = start_ms + i * step
        doc: dict[str, Any] = {
            "type": "sgv",
            "sgv": int(value),
            "date": ms,
            "dateString": _one_iso_local(ms, utc_offset_minutes),
            "utcOffset": utc_offset_minutes,
            "direction": NOT_COMPUTABLE,
            "device": device,
            "noise": 1,
        }
        prev = values_mg_dl[i - lag] if i >= lag else None
        if prev is not None:
            delta = (int(value) - int(prev)) * 5 / (lag * interval_minutes)
            doc["delta"] = float(delta)
            doc["direction"] = _direction(delta / 5.0)
        out.append(doc)
    return out


def _direction(slope_per_minute: float) -> str:
    """Nightscout/Dexcom trend arrow for a slope in mg/dL per minute."""
    s = slope_per_minute
    if s > 3:
        return "DoubleUp"
    if s > 2:
        return "SingleUp"
    if s > 1:
        return "FortyFiveUp"
    if s >= -1:
        return "Flat"
    if s >= -2:
        return "FortyFiveDown"
    if s >= -3:
        return "SingleDown"
    return "DoubleDown"
