"""What the report shows: its constants, colours, rows and the data of one page.

The numbers come from the dbt project (`DomainConstants`) and the lake (`data.py`); this module
only holds them and says how a value is written (`NO_VALUE` where the lake has none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from cascade.transform.project import domain_constants

#: The constants the shipped models are built with (dbt_project.yml vars): the report describes
#: the gold tables of that project (their names carry the window: glucose_metrics_14d).
DOMAIN = domain_constants()

WINDOW_DAYS = DOMAIN.window_days
"""Gold builds rolling windows of this many days: the consensus reporting period."""

MIN_CGM_ACTIVE_PCT = DOMAIN.min_cgm_active_pct
"""Below this % time CGM active a window is not representative (consensus)."""

NO_VALUE = "\N{EN DASH}"
"""Shown where the lake holds no value (e.g. SD of a single reading)."""

AGP_BIN_MINUTES = DOMAIN.agp_bin_minutes
"""The AGP's time-of-day bin width, when the lake's rows do not show it."""

MG_DL_PER_MMOL_L = DOMAIN.mg_dl_per_mmol_l
"""The conversion the models use, quoted in the page's footnote."""

MAX_BRIDGED_INTERVALS = DOMAIN.max_bridged_intervals
"""Daily traces are not drawn across gaps longer than this many sensor intervals (as dbt's events)."""

REQUIRED_TABLES = (
    "silver.dim_subject",
    "silver.fct_glucose_readings",
    "gold.glucose_metrics_14d",
    "gold.glucose_metrics_daily",
    "gold.agp_percentiles",
    "gold.glycemic_events",
)

# Conventional AGP report colours, from the top band down.
COLOR_VERY_HIGH = "#E8691B"
COLOR_HIGH = "#FDB813"
COLOR_TARGET = "#3AAA4A"
COLOR_LOW = "#E21F26"
COLOR_VERY_LOW = "#8E1B1E"
COLOR_TARGET_FILL = "#E4F3E4"
COLOR_BAND_OUTER = "#C9DCEF"
COLOR_BAND_INNER = "#6E9FD1"
COLOR_MEDIAN = "#1B3A5C"
COLOR_TRACE = "#2B2B2B"
COLOR_GRID = "#B8B8B8"


@dataclass(frozen=True)
class Band:
    """One of the five consensus glucose ranges of the TIR bar."""

    key: str
    name: str
    range_text: str
    column: str
    color: str


BANDS: tuple[Band, ...] = (  # top of the bar first, as the AGP report lists them
    Band("very_high", "Very High", ">250 mg/dL", "tar_level_2_pct", COLOR_VERY_HIGH),
    Band("high", "High", "181-250 mg/dL", "tar_level_1_pct", COLOR_HIGH),
    Band("target", "Target", "70-180 mg/dL", "tir_pct", COLOR_TARGET),
    Band("low", "Low", "54-69 mg/dL", "tbr_level_1_pct", COLOR_LOW),
    Band("very_low", "Very Low", "<54 mg/dL", "tbr_level_2_pct", COLOR_VERY_LOW),
)


@dataclass(frozen=True)
class Target:
    """A consensus target for most adults with T1D/T2D (Battelino et al., Diabetes Care 2019)."""

    op: str  # ">", "<" or "<="
    threshold: float

    @property
    def text(self) -> str:
        symbol = {">": ">", "<": "<", "<=": "≤"}[self.op]
        return f"{symbol}{self.threshold:g}%"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        if self.op == ">":
            return value > self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold


TARGETS: dict[str, Target] = {
    metric: Target(op, threshold) for metric, (op, threshold) in DOMAIN.consensus_targets.items()
}

EVENT_TYPES: tuple[tuple[str, str, str, str], ...] = (  # as gold.glycemic_events defines them
    ("hypo_level_1", "Hypoglycemia, level 1", "Level 1", "≥15 min <70 mg/dL"),
    ("hypo_level_2", "Hypoglycemia, level 2", "level 2", "≥15 min <54 mg/dL"),
    ("hypo_extended", "Extended hypoglycemia", "extended", ">120 min <70 mg/dL"),
    ("hyper", "Hyperglycemia", "hyper", "≥15 min >250 mg/dL"),
)
"""Each event ends after >= 15 minutes back across its threshold; a long data gap ends it too."""


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class StatRow:
    """One line of the "Glucose statistics and targets" table."""

    key: str
    label: str
    value: float | None
    text: str
    target: str = ""
    met: bool | None = None
    level: int = 0  # 1: a sub-row (level 1 / level 2 of a range)
    detail: str = ""  # the same value in other units, or its zone

    @property
    def full_text(self) -> str:
        return f"{self.text} ({self.detail})" if self.detail else self.text


@dataclass(frozen=True)
class EventRow:
    key: str
    label: str
    short: str
    definition: str
    count: int
    total_minutes: float
    mean_minutes: float | None


@dataclass(frozen=True)
class DayProfile:
    """One local day of the window: its readings (local hour of day) and its daily metrics."""

    local_date: date
    hours: tuple[float, ...]
    glucose: tuple[float, ...]  # NaN where a long gap breaks the trace
    reading_count: int
    mean_glucose_mg_dl: float | None
    tir_pct: float | None
    cgm_active_pct: float | None
    clock_changed: bool = False  # the local UTC offset changed during the day (travel, DST)


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, as read from the lake."""

    site_id: str
    timezone: str | None
    sensor_interval_minutes: int
    first_local_date: date
    last_local_date: date
    window_start: date
    window_end: date
    days: int
    window: dict[str, Any]
    events: tuple[EventRow, ...]
    agp: tuple[dict[str, Any], ...]
    agp_bin_minutes: int
    day_profiles: tuple[DayProfile, ...]

    @property
    def cgm_active_pct(self) -> float | None:
        return _float(self.window.get("cgm_active_pct"))

    @property
    def is_representative(self) -> bool:
        active = self.cgm_active_pct
        return active is not None and active >= MIN_CGM_ACTIVE_PCT

    def band_pct(self, band: Band) -> float:
        return _float(self.window.get(band.column)) or 0.0

    @property
    def y_max(self) -> int:
        """The glucose axis: 0-350 mg/dL, or 0-400 when the 95th percentile goes above 350."""
        top = max((_float(r["p95_glucose_mg_dl"]) or 0.0 for r in self.agp), default=0.0)
        return 400 if top > 350 else 350

    def stat_rows(self) -> list[StatRow]:
        w = self.window

        def pct(key: str, label: str, *, level: int = 0, target: str | None = None) -> StatRow:
            value = _float(w.get(key))
            rule = TARGETS.get(key)
            return StatRow(
                key=key,
                label=label,
                value=value,
                text=_fmt(value, 1, "%"),
                target=target if target is not None else (rule.text if rule else ""),
                met=rule.met(value) if rule else None,
                level=level,
            )

        mean = _float(w.get("mean_glucose_mg_dl"))
        mean_mmol = _float(w.get("mean_glucose_mmol_l"))
        gmi = _float(w.get("gmi_pct"))
        gmi_mmol = _float(w.get("gmi_mmol_mol"))
        sd = _float(w.get("sd_glucose_mg_dl"))
        cv = _float(w.get("cv_pct"))
        gri = _float(w.get("gri"))
        lbgi = _float(w.get("lbgi"))
        hbgi = _float(w.get("hbgi"))
        zone = w.get("gri_zone") or NO_VALUE
        return [
            StatRow(
                "mean_glucose_mg_dl",
                "Mean glucose",
                mean,
                _fmt(mean, 0, " mg/dL"),
                detail=_fmt(mean_mmol, 1, " mmol/L"),
            ),
            StatRow(
                "gmi_pct",
                "Glucose Management Indicator (GMI)",
                gmi,
                _fmt(gmi, 1, "%"),
                detail=_fmt(gmi_mmol, 0, " mmol/mol"),
            ),
            StatRow(
                "cv_pct",
                "Glucose variability (CV)",
                cv,
                _fmt(cv, 1, "%"),
                TARGETS["cv_pct"].text,
                TARGETS["cv_pct"].met(cv),
            ),
            StatRow("sd_glucose_mg_dl", "Standard deviation (SD)", sd, _fmt(sd, 0, " mg/dL")),
            pct("tir_pct", "Time in Range, 70-180"),
            pct("titr_pct", "Time in Tight Range, 70-140", target="none set"),
            pct("tbr_pct", "Time Below Range, <70"),
            pct(
                "tbr_level_1_pct",
                "Level 1, 54-69",
                level=1,
                target=f"(in {TARGETS['tbr_pct'].text})",
            ),
            pct("tbr_level_2_pct", "Level 2, <54", level=1),
            pct("tar_pct", "Time Above Range, >180"),
            pct(
                "tar_level_1_pct",
                "Level 1, 181-250",
                level=1,
                target=f"(in {TARGETS['tar_pct'].text})",
            ),
            pct("tar_level_2_pct", "Level 2, >250", level=1),
            StatRow(
                "gri",
                "Glycemia Risk Index (GRI)",
                gri,
                _fmt(gri, 1),
                "zone A: 0-20",
                detail=f"zone {zone}",
            ),
            StatRow("lbgi", "LBGI (low glucose risk)", lbgi, _fmt(lbgi, 2)),
            StatRow("hbgi", "HBGI (high glucose risk)", hbgi, _fmt(hbgi, 2)),
        ]


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _fmt(value: float | None, decimals: int, suffix: str = "") -> str:
    if value is None:
        return NO_VALUE
    return f"{value:.{decimals}f}{suffix}"
