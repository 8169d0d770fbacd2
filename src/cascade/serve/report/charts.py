"""The report's charts with matplotlib: the time-in-ranges bar, the AGP curve, the daily traces,
and the whole page as one figure (for the PDF).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from markupsafe import Markup, escape
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cascade.serve.report.model import (
    BANDS,
    COLOR_BAND_INNER,
    COLOR_BAND_OUTER,
    COLOR_GRID,
    COLOR_HIGH,
    COLOR_LOW,
    COLOR_MEDIAN,
    COLOR_TARGET,
    COLOR_TARGET_FILL,
    COLOR_TRACE,
    COLOR_VERY_LOW,
    MIN_CGM_ACTIVE_PCT,
    TARGETS,
    DayProfile,
    ReportData,
    _float,
    _fmt,
)

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
