"""Nightscout profile documents: basal, carb ratio and ISF schedules, changed over time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _one_iso_utc, _Timeline, _Trip
from cascade_dev.fake_nightscout.synthetic.people import (
    MS_PER_DAY,
    PROFILE_EVERY_DAYS,
    Doc,
    FloatArray,
    SubjectSpec,
    _rng,
)

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
