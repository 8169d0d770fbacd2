"""Who the synthetic people are: the collections, fixed rates and shapes, and each subject's spec.

Also the numeric types and the seeding every other part of the generator shares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

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
