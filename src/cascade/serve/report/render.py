"""The report as a file: self-contained HTML (template + inline SVG charts) or a one-page PDF."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
from jinja2 import Environment, PackageLoader, select_autoescape

from cascade.config import Settings
from cascade.exceptions import LakeError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, connect
from cascade.serve.report.charts import _style, chart_svgs, page_figure
from cascade.serve.report.data import _check_days, load_report_data
from cascade.serve.report.model import (
    BANDS,
    MAX_BRIDGED_INTERVALS,
    MG_DL_PER_MMOL_L,
    MIN_CGM_ACTIVE_PCT,
    WINDOW_DAYS,
    ReportData,
    _float,
    _fmt,
)

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
        mg_dl_per_mmol_l=MG_DL_PER_MMOL_L,
        max_gap_minutes=MAX_BRIDGED_INTERVALS * data.sensor_interval_minutes,
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

    `end` defaults to the subject's last local date with readings. Only windows of
    `WINDOW_DAYS` exist (the gold layer's consensus period, dbt var `metrics_window_days`): any
    other `days` raises CascadeError, as do an unknown subject (the message names the known
    ones) and a window outside the subject's span (the message gives the span). Writes HTML, or a one-page PDF when `out` ends with `.pdf`.
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
