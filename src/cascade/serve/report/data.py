"""Reading one report's data from the lake's gold and silver tables, never recomputing a metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from cascade.exceptions import CascadeError, LakeError
from cascade.serve.report.model import (
    AGP_BIN_MINUTES,
    EVENT_TYPES,
    MAX_BRIDGED_INTERVALS,
    REQUIRED_TABLES,
    WINDOW_DAYS,
    DayProfile,
    EventRow,
    ReportData,
    _float,
)


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
            f"choose an --end whose {days} days hold data"
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
        (int(r["bin_start_minute_of_day"]) // int(r["time_bin"]) for r in agp if r["time_bin"]),
        AGP_BIN_MINUTES,
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
