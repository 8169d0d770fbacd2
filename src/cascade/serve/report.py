"""The one-page AGP report (`cascade report`): IDC AGP report v4 layout, from the gold tables.

Every number on the page is read from the lake, never recomputed here (one implementation of each
metric: the dbt models, see docs/TRANSFORM.md, Metrics):

- the 14-day window's metrics: `gold.glucose_metrics_14d` at `window_end_date = end`;
- the AGP percentiles: `gold.agp_percentiles` (same window, 15-minute local time-of-day bins);
- the glycaemic events of the window: `gold.glycemic_events` (events starting on a local date
  of the window, counted and their durations added up);
- the daily profiles: `silver.fct_glucose_readings` (each reading's own local time) and the
  per-day TIR and mean of `gold.glucose_metrics_daily`;
- the subject's span and sensor interval: `silver.dim_subject`.

Python only compares the published values with the consensus targets (Battelino et al., Diabetes
Care 2019) to mark each one met or not met, and draws the charts.

The page: header (subject, window, % time CGM active, flagged below 70 %, sensor interval),
"Glucose statistics and targets" table, "Time in ranges" stacked bar, the AGP curve, and one
small glucose trace per day. HTML is self-contained (inline CSS, inline SVG charts from
matplotlib, no scripts, fonts or links): it prints on one A4 or Letter page. `out` ending in
`.pdf` gives the same page drawn by matplotlib as a one-page A4 PDF.
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import matplotlib
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cascade.config import Settings
from cascade.exceptions import CascadeError, LakeError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, connect
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
            pct("tbr_level_1_pct", "Level 1, 54-69", level=1, target="(in <4%)"),
            pct("tbr_level_2_pct", "Level 2, <54", level=1),
            pct("tar_pct", "Time Above Range, >180"),
            pct("tar_level_1_pct", "Level 1, 181-250", level=1, target="(in <25%)"),
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


def _records(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(params))
    columns = [d[0] for d in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _check_days(days: int) -> None:
    if days != WINDOW_DAYS:
        raise CascadeError(
            f"--days {days} is not available: the gold layer builds {WINDOW_DAYS}-day windows only "
            f"(the international-consensus reporting period for CGM metrics and the AGP), and the "
            f"report reads its metrics from there rather than recomputing them; use --days {WINDOW_DAYS}"
        )


def load_report_data(
    con: duckdb.DuckDBPyConnection,
    *,
    site_id: str,
    end: date | None = None,
    days: int = WINDOW_DAYS,
) -> ReportData:
    """Read one subject's window from a connection with the lake attached (`attach_catalog`)."""
    _check_days(days)
    present = {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    missing = [t for t in REQUIRED_TABLES if t not in present]
    if missing:
        raise LakeError(
            f"the lake has no {', '.join(missing)} yet: run `cascade transform` "
            "(or `cascade run`) to build the silver and gold tables first"
        )

    subjects = _records(con, "select * from silver.dim_subject order by site_id", [])
    subject = next((s for s in subjects if s["site_id"] == site_id), None)
    if subject is None:
        known = (
            ", ".join(s["site_id"] for s in subjects)
            or "none yet: run `cascade ingest` and `cascade transform`"
        )
        raise CascadeError(f"no subject {site_id!r} in the lake (known subjects: {known})")
    first, last = subject["first_local_date"], subject["last_local_date"]
    if first is None or last is None:
        raise CascadeError(
            f"subject {site_id!r} has no glucose readings in the lake, so there is no report to draw"
        )
    span = f"its readings span the local dates {first} to {last}"

    if isinstance(end, datetime):
        end = end.date()
    end = end or last
    rows = _records(
        con,
        "select * from gold.glucose_metrics_14d where site_id = $1 and window_end_date = $2",
        [site_id, end],
    )
    if not rows:
        raise CascadeError(
            f"no {days}-day window of subject {site_id!r} ends on {end}: {span}, so --end must be "
            f"one of those dates (default: {last}, the last day with readings)"
        )
    window = rows[0]
    start = window["window_start_date"]
    if (window["window_end_date"] - start).days + 1 != days:
        raise LakeError(
            f"gold.glucose_metrics_14d holds {(window['window_end_date'] - start).days + 1}-day windows, "
            f"not {days}: the dbt project's metrics_window_days changed; rebuild with `cascade transform`"
        )
    if not window["reading_count"]:
        raise CascadeError(
            f"subject {site_id!r} has no glucose readings in the window {start} to {end} ({span}); "
            "choose an --end whose 14 days hold data"
        )
    interval = int(window["sensor_interval_minutes"] or subject["sensor_interval_minutes"] or 5)

    counted = {
        r["event_type"]: r
        for r in _records(
            con,
            "select event_type, count(*) as n, sum(duration_minutes) as minutes "
            "from gold.glycemic_events where site_id = $1 and local_date between $2 and $3 "
            "group by event_type",
            [site_id, start, end],
        )
    }
    events = []
    for key, label, short, definition in EVENT_TYPES:
        count = int(counted[key]["n"]) if key in counted else 0
        minutes = float(counted[key]["minutes"]) if key in counted else 0.0
        events.append(
            EventRow(
                key, label, short, definition, count, minutes, minutes / count if count else None
            )
        )

    agp = tuple(
        _records(
            con,
            "select * from gold.agp_percentiles where site_id = $1 and window_end_date = $2 "
            "order by time_bin",
            [site_id, end],
        )
    )
    bin_minutes = next(
        (int(r["bin_start_minute_of_day"]) // int(r["time_bin"]) for r in agp if r["time_bin"]), 15
    )

    daily = {
        r["local_date"]: r
        for r in _records(
            con,
            "select local_date, reading_count, mean_glucose_mg_dl, tir_pct, cgm_active_pct "
            "from gold.glucose_metrics_daily where site_id = $1 and local_date between $2 and $3",
            [site_id, start, end],
        )
    }
    readings: dict[date, list[tuple[int, float, float]]] = {}
    for local_date, epoch_ms, hour, glucose in con.execute(
        "select local_date, epoch_ms(event_at), "
        "extract(hour from local_at) + extract(minute from local_at) / 60.0 "
        "+ extract(second from local_at) / 3600.0, glucose_mg_dl "
        "from silver.fct_glucose_readings "
        "where site_id = $1 and local_date between $2 and $3 and not is_sensor_error "
        "order by local_date, event_at, glucose_mg_dl",
        [site_id, start, end],
    ).fetchall():
        readings.setdefault(local_date, []).append((int(epoch_ms), float(hour), float(glucose)))

    profiles = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        hours, glucose, clock_changed = _trace(readings.get(day, []), interval)
        stats = daily.get(day, {})
        profiles.append(
            DayProfile(
                local_date=day,
                hours=hours,
                glucose=glucose,
                reading_count=int(stats.get("reading_count") or 0),
                mean_glucose_mg_dl=_float(stats.get("mean_glucose_mg_dl")),
                tir_pct=_float(stats.get("tir_pct")),
                cgm_active_pct=_float(stats.get("cgm_active_pct")),
                clock_changed=clock_changed,
            )
        )

    return ReportData(
        site_id=site_id,
        timezone=subject.get("timezone"),
        sensor_interval_minutes=interval,
        first_local_date=first,
        last_local_date=last,
        window_start=start,
        window_end=end,
        days=days,
        window=window,
        events=tuple(events),
        agp=agp,
        agp_bin_minutes=bin_minutes,
        day_profiles=tuple(profiles),
    )


def _trace(
    points: list[tuple[int, float, float]], interval_minutes: int
) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    """One day's readings (in real-time order) as hours of local time and glucose, for a line.

    The line is broken (a NaN) where the sensor was silent longer than MAX_BRIDGED_INTERVALS
    intervals, and where the local clock moved differently from real time (travel, a DST change:
    each reading carries its own UTC offset), which the third value reports.
    """
    hours: list[float] = []
    glucose: list[float] = []
    limit_ms = MAX_BRIDGED_INTERVALS * interval_minutes * 60_000
    clock_changed = False
    previous: tuple[int, float] | None = None
    for epoch_ms, hour, value in points:
        if previous is not None:
            real_ms = epoch_ms - previous[0]
            jumped = abs((hour - previous[1]) * 3_600_000 - real_ms) > 60_000
            clock_changed = clock_changed or jumped
            if jumped or real_ms > limit_ms:
                hours.append(hour)
                glucose.append(math.nan)
        hours.append(hour)
        glucose.append(value)
        previous = (epoch_ms, hour)
    return tuple(hours), tuple(glucose), clock_changed


# ------------------------------------------------------------------------------------ charts

_RC: dict[Any, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 7,
    "axes.linewidth": 0.6,
    "axes.edgecolor": "#555555",
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "svg.fonttype": "none",  # text stays text: selectable, small, and no embedded glyph paths
    "svg.hashsalt": "cascade-agp",  # stable element ids: the same data gives the same file
    "pdf.fonttype": 42,
    "path.simplify": True,
}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


def _hour_label(hour: int) -> str:
    hour %= 24
    if hour == 0:
        return "12am"
    if hour == 12:
        return "12pm"
    return f"{hour}am" if hour < 12 else f"{hour - 12}pm"


def draw_tir_bar(ax: Axes, data: ReportData, *, font: float = 7.5) -> None:
    """The Time in Ranges stacked bar with a label, percentage and goal per band (AGP v4)."""
    ax.set_xlim(0, 1)
    ax.set_ylim(-2, 102)
    ax.axis("off")
    bar_left, bar_width = 0.02, 0.16
    bottom = 0.0
    centres: dict[str, float] = {}
    for band in reversed(BANDS):  # stack from Very Low upwards
        height = data.band_pct(band)
        ax.bar(
            bar_left,
            height,
            width=bar_width,
            bottom=bottom,
            align="edge",
            color=band.color,
            edgecolor="white",
            linewidth=0.6,
        )
        centres[band.key] = bottom + height / 2
        bottom += height
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (bar_left, 0), bar_width, 100, fill=False, edgecolor="#555555", linewidth=0.5
        )
    )
    w = data.window
    tar = _float(w.get("tar_pct"))
    tbr = _float(w.get("tbr_pct"))
    goals = {
        "very_high": f"Goal: {TARGETS['tar_level_2_pct'].text}",
        "high": f"High + Very High {_fmt(tar, 1, '%')}, goal {TARGETS['tar_pct'].text}",
        "target": f"Goal: {TARGETS['tir_pct'].text}",
        "low": f"Low + Very Low {_fmt(tbr, 1, '%')}, goal {TARGETS['tbr_pct'].text}",
        "very_low": f"Goal: {TARGETS['tbr_level_2_pct'].text}",
    }
    slots = {"very_high": 93.0, "high": 72.0, "target": 51.0, "low": 30.0, "very_low": 9.0}
    label_x = bar_left + bar_width + 0.1
    step = font * 0.62  # one line of text, in axis units (0-100 over the bar's height)
    for band in BANDS:
        y = slots[band.key]
        ax.plot(
            [bar_left + bar_width, bar_left + bar_width + 0.03, label_x - 0.015],
            [centres[band.key], y, y],
            color="#777777",
            linewidth=0.5,
        )
        ax.text(
            label_x, y, band.name, fontsize=font, fontweight="bold", va="center", color="#1A1A1A"
        )
        ax.text(
            0.99,
            y,
            f"{data.band_pct(band):.1f}%",
            fontsize=font + 1,
            fontweight="bold",
            va="center",
            ha="right",
            color="#1A1A1A",
        )
        ax.text(
            label_x, y - step, band.range_text, fontsize=font - 1.5, va="center", color="#555555"
        )
        ax.text(
            0.99,
            y - 2 * step if band.key in ("high", "low") else y - step,
            goals[band.key],
            fontsize=font - 1.5,
            va="center",
            ha="right",
            color="#555555",
        )


def draw_agp(ax: Axes, data: ReportData, *, font: float = 7.0) -> None:
    """Median, 25-75 and 5-95 percentile bands over one local day, target range shaded."""
    y_max = data.y_max
    ax.axhspan(70, 180, color=COLOR_TARGET_FILL, zorder=0, linewidth=0)
    for level, color, width in (
        (54, COLOR_VERY_LOW, 0.5),
        (70, COLOR_TARGET, 0.9),
        (180, COLOR_TARGET, 0.9),
        (250, COLOR_HIGH, 0.5),
    ):
        ax.axhline(level, color=color, linewidth=width, zorder=1)
    for hour in range(3, 24, 3):
        ax.axvline(hour, color=COLOR_GRID, linewidth=0.4, linestyle=(0, (2, 2)), zorder=1)
    rows = data.agp
    if rows:
        half = data.agp_bin_minutes / 2 / 60
        x = [float(r["bin_start_minute_of_day"]) / 60 + half for r in rows]
        series = {
            p: [float(r[f"p{p:02d}_glucose_mg_dl"]) for r in rows] for p in (5, 25, 50, 75, 95)
        }
        # the day is a circle: continue past midnight on both sides so the curve spans 0-24 h
        x = [x[-1] - 24, *x, x[0] + 24]
        series = {p: [v[-1], *v, v[0]] for p, v in series.items()}
        ax.fill_between(x, series[5], series[95], color=COLOR_BAND_OUTER, linewidth=0, zorder=2)
        ax.plot(
            x, series[5], color=COLOR_BAND_INNER, linewidth=0.6, linestyle=(0, (3, 2)), zorder=3
        )
        ax.plot(
            x, series[95], color=COLOR_BAND_INNER, linewidth=0.6, linestyle=(0, (3, 2)), zorder=3
        )
        ax.fill_between(x, series[25], series[75], color=COLOR_BAND_INNER, linewidth=0, zorder=3)
        ax.plot(x, series[50], color=COLOR_MEDIAN, linewidth=1.6, zorder=4)
        at_end = {p: v[-2] for p, v in series.items()}
        for p in (95, 75, 50, 25, 5):
            ax.annotate(
                f"{p}%",
                xy=(24, min(at_end[p], y_max)),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=font - 1,
                va="center",
                color=COLOR_MEDIAN if p == 50 else "#4A6C91",
                fontweight="bold" if p == 50 else "normal",
                annotation_clip=False,
            )
    ax.set_xlim(0, 24)
    ax.set_ylim(0, y_max)
    ax.set_xticks(range(0, 25, 3), [_hour_label(h) for h in range(0, 25, 3)], fontsize=font)
    ax.set_yticks(
        [0, 54, 70, 180, 250, y_max], [str(v) for v in (0, 54, 70, 180, 250, y_max)], fontsize=font
    )
    ax.set_ylabel("mg/dL", fontsize=font)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw_day(
    ax: Axes, day: DayProfile, y_max: int, *, title: str | None = None, font: float = 6.0
) -> None:
    """One day's glucose trace (local time) with the target range and the excursions filled."""
    ax.axhspan(70, 180, color=COLOR_TARGET_FILL, zorder=0, linewidth=0)
    ax.axhline(70, color=COLOR_TARGET, linewidth=0.5, zorder=1)
    ax.axhline(180, color=COLOR_TARGET, linewidth=0.5, zorder=1)
    ax.axvline(12, color=COLOR_GRID, linewidth=0.4, linestyle=(0, (2, 2)), zorder=1)
    if day.hours:
        x, y = list(day.hours), list(day.glucose)
        above = [v > 180 if not math.isnan(v) else False for v in y]
        below = [v < 70 if not math.isnan(v) else False for v in y]
        ax.fill_between(
            x, y, 180, where=above, interpolate=True, color=COLOR_HIGH, linewidth=0, zorder=2
        )
        ax.fill_between(
            x, y, 70, where=below, interpolate=True, color=COLOR_LOW, linewidth=0, zorder=2
        )
        ax.plot(x, [min(v, y_max) for v in y], color=COLOR_TRACE, linewidth=0.6, zorder=3)
    else:
        ax.text(12, y_max / 2, "no data", ha="center", va="center", fontsize=font, color="#777777")
    ax.set_xlim(0, 24)
    ax.set_ylim(0, y_max)
    ax.set_xticks([0, 12, 24])
    ax.set_yticks([])
    ax.tick_params(axis="x", labelbottom=False, length=1.5)
    for spine in ax.spines.values():
        spine.set_linewidth(0.4)
        spine.set_color("#888888")
    if title:
        ax.set_title(title, fontsize=font, pad=2, loc="left")


def _svg(fig: Figure, prefix: str, label: str) -> Markup:
    """A figure as an inline <svg>: no prolog, metadata or namespaces, ids unique in the page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'<style type="text/css">.*?</style>\s*', "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'<svg\s+width="[^"]*"\s+height="[^"]*"', "<svg", text, count=1)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    text = text.replace("'DejaVu Sans'", "'DejaVu Sans', Arial, Helvetica, sans-serif")
    text = text.replace("<svg", f'<svg class="chart" role="img" aria-label="{escape(label)}"', 1)
    return Markup(text.strip())


def _figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=100)


def _day_title(day: DayProfile) -> str:
    return f"{day.local_date:%a} {day.local_date.day} {day.local_date:%b}"


def chart_svgs(data: ReportData) -> dict[str, Any]:
    """The HTML page's charts: TIR bar, AGP, and one small trace per day."""
    with _style():
        fig = _figure(3.3, 2.35)
        draw_tir_bar(fig.add_axes((0.0, 0.0, 1.0, 1.0)), data, font=8.5)
        tir = _svg(
            fig,
            "tir",
            "Time in ranges: "
            + ", ".join(f"{b.name} {b.range_text} {data.band_pct(b):.1f}%" for b in BANDS),
        )

        fig = _figure(7.2, 1.95)
        draw_agp(fig.add_axes((0.07, 0.12, 0.875, 0.84)), data)
        agp = _svg(
            fig,
            "agp",
            f"Ambulatory glucose profile, {data.window_start} to {data.window_end}: "
            "median, 25-75th and 5-95th percentiles by local time of day",
        )

        days = []
        for i, day in enumerate(data.day_profiles):
            fig = _figure(1.3, 0.8)
            draw_day(fig.add_axes((0.01, 0.02, 0.98, 0.96)), day, data.y_max)
            days.append(_svg(fig, f"day{i}", f"Glucose trace of {day.local_date:%A %Y-%m-%d}"))
    return {"tir": tir, "agp": agp, "days": days}


# ------------------------------------------------------------------------------------ page

_ENV = Environment(
    loader=PackageLoader("cascade.serve", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(data: ReportData, *, generated_at: datetime | None = None) -> str:
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    charts = chart_svgs(data)
    agp_hours = [r for r in data.agp if int(r["bin_start_minute_of_day"]) % 60 == 0]
    return _ENV.get_template("agp_report.html.j2").render(
        data=data,
        w=data.window,
        bands=BANDS,
        stats=data.stat_rows(),
        charts=charts,
        agp_hours=agp_hours,
        days=list(zip(data.day_profiles, charts["days"], strict=True)),
        generated=generated,
        fmt=_fmt,
        fl=_float,
        min_active=MIN_CGM_ACTIVE_PCT,
        max_gap_minutes=MAX_BRIDGED_INTERVALS * data.sensor_interval_minutes,
    )


def page_figure(data: ReportData) -> Figure:
    """The whole page as one A4 portrait matplotlib figure (the PDF, and a PNG for a quick look)."""
    with _style():
        fig = Figure(figsize=(8.27, 11.69), dpi=100)
        _draw_page(fig, data)
    return fig


def _draw_page(fig: Figure, data: ReportData) -> None:
    dark = "#1A1A1A"
    fig.text(
        0.06,
        0.965,
        "AGP Report: Continuous Glucose Monitoring",
        fontsize=14,
        fontweight="bold",
        color=dark,
    )
    active = data.cgm_active_pct
    fig.text(
        0.06,
        0.945,
        f"Subject {data.site_id}    {data.window_start:%d %b %Y} to {data.window_end:%d %b %Y}"
        f" ({data.days} days, {data.window['days_with_readings']} with data)    "
        f"Time CGM active {_fmt(active, 1, '%')}    Sensor interval {data.sensor_interval_minutes} min",
        fontsize=8.5,
        color=dark,
    )
    if not data.is_representative:
        fig.text(
            0.06,
            0.93,
            f"Not representative: CGM active {_fmt(active, 1, '%')} of the time, below the "
            f"{MIN_CGM_ACTIVE_PCT:g}% needed for a reliable report.",
            fontsize=8,
            color=COLOR_LOW,
            fontweight="bold",
        )
    fig.add_artist(
        matplotlib.lines.Line2D([0.06, 0.95], [0.922, 0.922], color="#888888", linewidth=0.6)
    )

    # Glucose statistics and targets
    fig.text(
        0.06, 0.905, "GLUCOSE STATISTICS AND TARGETS", fontsize=9, fontweight="bold", color=dark
    )
    fig.text(0.6, 0.905, "ranges in mg/dL, % of readings", fontsize=6, ha="right", color="#666666")
    y = 0.885
    for row in data.stat_rows():
        indent = 0.015 if row.level else 0.0
        fig.text(
            0.06 + indent,
            y,
            row.label,
            fontsize=7 if not row.level else 6.5,
            color=dark if not row.level else "#444444",
        )
        fig.text(0.455, y, row.full_text, fontsize=7, ha="right", fontweight="bold", color=dark)
        fig.text(0.468, y, row.target, fontsize=6.5, color="#555555")
        if row.met is not None:
            fig.text(
                0.555,
                y,
                "✓ met" if row.met else "✗ not met",
                fontsize=6.5,
                color=COLOR_TARGET if row.met else COLOR_LOW,
                fontweight="bold",
            )
        y -= 0.0145
    y -= 0.004
    fig.text(0.06, y, "Events in window", fontsize=7, fontweight="bold", color=dark)
    fig.text(0.455, y, "count · total · mean", fontsize=6.5, ha="right", color="#555555")
    y -= 0.0135
    for event in data.events:
        fig.text(0.06, y, f"{event.label} ({event.definition})", fontsize=6.5, color=dark)
        fig.text(
            0.455,
            y,
            f"{event.count} · {event.total_minutes:.0f} min · {_fmt(event.mean_minutes, 0, ' min')}",
            fontsize=6.5,
            ha="right",
            color=dark,
        )
        y -= 0.0135

    fig.text(0.64, 0.905, "TIME IN RANGES", fontsize=9, fontweight="bold", color=dark)
    draw_tir_bar(fig.add_axes((0.64, 0.6, 0.31, 0.29)), data, font=7)

    fig.add_artist(
        matplotlib.lines.Line2D([0.06, 0.95], [0.585, 0.585], color="#888888", linewidth=0.6)
    )
    fig.text(
        0.06, 0.567, "AMBULATORY GLUCOSE PROFILE (AGP)", fontsize=9, fontweight="bold", color=dark
    )
    fig.text(
        0.06,
        0.553,
        "Readings of the window folded onto one day (local time): median, 25-75th and "
        "5-95th percentiles; target range 70-180 mg/dL shaded.",
        fontsize=6.5,
        color="#555555",
    )
    draw_agp(fig.add_axes((0.1, 0.34, 0.81, 0.2)), data)

    fig.add_artist(
        matplotlib.lines.Line2D([0.06, 0.95], [0.305, 0.305], color="#888888", linewidth=0.6)
    )
    fig.text(0.06, 0.287, "DAILY GLUCOSE PROFILES", fontsize=9, fontweight="bold", color=dark)
    fig.text(
        0.06,
        0.268,
        "Each panel is one local day, midnight to midnight; target range shaded, above 180 mg/dL "
        "yellow, below 70 mg/dL red. Traces break at long gaps and\nat local clock changes "
        "(travel, daylight saving; * marks such a day).",
        fontsize=6.5,
        color="#555555",
    )
    cols, left, right, top = 7, 0.06, 0.95, 0.238
    width = (right - left) / cols
    height, gap = 0.078, 0.026
    for i, day in enumerate(data.day_profiles):
        line, col = divmod(i, cols)
        ax = fig.add_axes(
            (
                left + col * width + 0.003,
                top - (line + 1) * (height + gap) + gap,
                width - 0.006,
                height,
            )
        )
        draw_day(ax, day, data.y_max, title=_day_title(day))
        caption = (
            f"TIR {_fmt(day.tir_pct, 0, '%')} · mean {_fmt(day.mean_glucose_mg_dl, 0)}"
            if day.reading_count
            else "no readings"
        )
        if day.clock_changed:
            caption += " *"
        ax.text(
            0.5,
            -0.08,
            caption,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=5.5,
            color="#444444",
        )
    fig.text(
        0.06,
        0.012,
        "Percentages are of readings; glucose in mg/dL. Targets for most adults with T1D/T2D: international "
        "consensus on time in range (Battelino et al., Diabetes Care 2019).\nGMI: Bergenstal 2018. "
        "GRI: Klonoff 2023. LBGI/HBGI: Kovatchev. Layout after the IDC AGP report v4. Generated by "
        f"Cascade from the lake's gold tables; readings span {data.first_local_date} to {data.last_local_date}.",
        fontsize=5.5,
        color="#666666",
        linespacing=1.4,
    )


def render_pdf(data: ReportData) -> bytes:
    fig = page_figure(data)
    buffer = io.BytesIO()
    with _style():
        fig.savefig(
            buffer,
            format="pdf",
            metadata={
                "Title": f"AGP report {data.site_id} {data.window_start} to {data.window_end}",
                "Creator": "Cascade",
                "CreationDate": None,
            },
        )
    return buffer.getvalue()


def _write_atomically(out: Path, content: bytes) -> None:
    """Write beside the target, then rename: a reader never sees half a report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def render_report(
    settings: Settings,
    *,
    site_id: str,
    end: date | None = None,
    days: int = WINDOW_DAYS,
    out: Path,
) -> Path:
    """Write the one-page AGP report of `site_id` for the `days` local dates ending `end`.

    `end` defaults to the subject's last local date with readings. Only 14-day windows exist
    (the gold layer's consensus period): any other `days` raises CascadeError, as do an unknown
    subject (the message names the known ones) and a window outside the subject's span (the
    message gives the span). Writes HTML, or a one-page PDF when `out` ends with `.pdf`.
    """
    _check_days(days)
    out = Path(out)
    con = connect(settings=settings)
    try:
        try:
            attach_catalog(con, load_lake_catalog(settings))
        except duckdb.Error as exc:
            raise LakeError(f"the lake could not be read: {exc}") from None
        data = load_report_data(con, site_id=site_id, end=end, days=days)
    finally:
        con.close()
    if out.suffix.lower() == ".pdf":
        content = render_pdf(data)
    else:
        content = render_html(data).encode("utf-8")
    _write_atomically(out, content)
    return out
