"""The one-page AGP report, end to end: fake Nightscout -> ingest -> dbt -> report (HTML and PDF).

Every number the test checks is read from the gold tables independently through DuckDB, so the
report is held to the one implementation of each metric (dbt), not to a second one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cascade.config import Settings, SiteConfig, load_settings
from cascade.exceptions import CascadeError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, connect
from cascade.lake.ingest import ingest
from cascade.serve.report import BANDS, render_report
from cascade.transform import transform
from cascade_dev.fake_nightscout.server import FakeNightscout

pytestmark = pytest.mark.integration

SITE = "subject-01"
_ENV = (
    "NIGHTSCOUT_URL",
    "NIGHTSCOUT_SITES",
    "NIGHTSCOUT_API_SECRET",
    "NIGHTSCOUT_TOKEN",
    "CASCADE_HOME",
    "CASCADE_PROFILE",
    "ICEBERG_WAREHOUSE_PATH",
    "ICEBERG_STAGING_PATH",
    "CASCADE_DBT_PROJECT_DIR",
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One person, 15 days of synthetic CGM data, ingested and transformed once for the module."""
    home = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        for name in _ENV:
            patch.delenv(name, raising=False)
        patch.chdir(home)
        settings = load_settings(cascade_home=home / "lake", nightscout_backoff_seconds=0.01)
        with FakeNightscout.synthetic(subjects=1, days=15, seed=11).start() as ns:
            settings = settings.with_values(
                **{"nightscout_sites": [SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids]}
            )
            ingest(settings)
        transform(settings)
        yield settings


def gold(settings: Settings, sql: str, *params: Any) -> list[dict[str, Any]]:
    con = connect()
    try:
        attach_catalog(con, load_lake_catalog(settings))
        cursor = con.execute(sql, list(params))
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def latest_window(lake: Settings) -> dict[str, Any]:
    (subject,) = gold(lake, "select * from silver.dim_subject where site_id = $1", SITE)
    (window,) = gold(
        lake,
        "select * from gold.glucose_metrics_14d where site_id = $1 and window_end_date = $2",
        SITE,
        subject["last_local_date"],
    )
    return window


@pytest.fixture(scope="module")
def html(lake: Settings, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("out") / "nested" / "report.html"
    assert render_report(lake, site_id=SITE, out=out) == out
    assert out.is_file()
    return out.read_text(encoding="utf-8")


def _value(html: str, metric: str) -> tuple[str, str]:
    match = re.search(rf'data-metric="{metric}" data-value="([^"]*)">([^<]*)<', html)
    assert match, metric
    return match.group(1), match.group(2)


def test_html_is_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert "http://" not in html and "https://" not in html  # no resource, namespace or link URL
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"@import|@font-face|url\((?!#)", html)  # only in-page url(#id) references
    assert html.count("<svg") == 2 + 14  # TIR bar, AGP, one per day: inline SVG


def test_header_names_the_subject_and_window(html: str, latest_window: dict[str, Any]) -> None:
    start, end = latest_window["window_start_date"], latest_window["window_end_date"]
    assert end - start == timedelta(days=13)
    assert f'<dd id="subject">{SITE}</dd>' in html
    assert f'datetime="{start.isoformat()}"' in html and f'datetime="{end.isoformat()}"' in html
    assert f"{start} to {end}" in html
    assert '<dd id="days">14</dd>' in html
    active = latest_window["cgm_active_pct"]
    assert f'data-value="{active!r}">{active:.1f}%' in html
    assert ("not representative" in html.lower()) == (active < 70)
    assert f'<dd id="sensor-interval">{latest_window["sensor_interval_minutes"]} min</dd>' in html


def test_metrics_are_the_gold_values(html: str, latest_window: dict[str, Any]) -> None:
    tir = latest_window["tir_pct"]
    assert _value(html, "tir_pct") == (repr(tir), f"{tir:.1f}%")
    for metric in (
        "titr_pct",
        "tbr_pct",
        "tbr_level_1_pct",
        "tbr_level_2_pct",
        "tar_pct",
        "tar_level_1_pct",
        "tar_level_2_pct",
        "cv_pct",
    ):
        assert _value(html, metric) == (
            repr(latest_window[metric]),
            f"{latest_window[metric]:.1f}%",
        ), metric
    assert _value(html, "gmi_pct")[0] == repr(latest_window["gmi_pct"])
    assert f"zone {latest_window['gri_zone']}" in html
    # met / not-met markers follow the consensus targets (Battelino 2019)
    row = re.search(r'data-metric="tir_pct".*?</tr>', html, re.S)
    assert row and (("✓ met" in row.group(0)) == (tir > 70))
    row = re.search(r'data-metric="cv_pct".*?</tr>', html, re.S)
    assert row and (("✓ met" in row.group(0)) == (latest_window["cv_pct"] <= 36))


def test_tir_bar_has_the_five_bands(html: str, latest_window: dict[str, Any]) -> None:
    for name, mg_dl in (
        ("Very High", ">250"),
        ("High", "181-250"),
        ("Target", "70-180"),
        ("Low", "54-69"),
        ("Very Low", "<54"),
    ):
        assert f'<th scope="row">{name}</th>' in html
        assert re.search(
            rf"{name}</th>\s*<td>{re.escape(mg_dl.replace('>', '&gt;').replace('<', '&lt;'))}</td>",
            html,
        )
    total = sum(latest_window[band.column] for band in BANDS)
    assert abs(total - 100) < 0.01
    assert 'data-band="target"' in html


def test_events_and_agp_come_from_gold(
    lake: Settings, html: str, latest_window: dict[str, Any]
) -> None:
    start, end = latest_window["window_start_date"], latest_window["window_end_date"]
    counts = {
        r["event_type"]: r["n"]
        for r in gold(
            lake,
            "select event_type, count(*) as n from gold.glycemic_events "
            "where site_id = $1 and local_date between $2 and $3 group by 1",
            SITE,
            start,
            end,
        )
    }
    for event_type in ("hypo_level_1", "hypo_level_2", "hypo_extended", "hyper"):
        assert re.search(
            rf'data-event="{event_type}">.*?<td data-value="{counts.get(event_type, 0)}">',
            html,
            re.S,
        )
    (noon,) = gold(
        lake,
        "select * from gold.agp_percentiles where site_id = $1 and window_end_date = $2 "
        "and bin_start_minute_of_day = 720",
        SITE,
        end,
    )
    assert f'<th scope="row">12:00</th><td>{noon["reading_count"]}</td>' in html
    assert f"<td>{noon['p50_glucose_mg_dl']:.0f}</td>" in html


def test_fourteen_daily_profiles(html: str, latest_window: dict[str, Any]) -> None:
    dates = re.findall(r'<figure class="day-panel" data-date="([0-9-]+)">', html)
    start = latest_window["window_start_date"]
    assert dates == [(start + timedelta(days=i)).isoformat() for i in range(14)]


def test_pdf_is_one_page(lake: Settings, tmp_path: Path) -> None:
    out = render_report(lake, site_id=SITE, out=tmp_path / "report.PDF")
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    assert b"%%EOF" in data[-32:]
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 1
    assert re.search(rb"/Type\s*/Pages\b.*?/Count\s+1\b", data, re.S)


def test_explicit_end_gives_that_window(
    lake: Settings, latest_window: dict[str, Any], tmp_path: Path
) -> None:
    end = latest_window["window_end_date"] - timedelta(days=1)
    (window,) = gold(
        lake,
        "select * from gold.glucose_metrics_14d where site_id = $1 and window_end_date = $2",
        SITE,
        end,
    )
    html = render_report(lake, site_id=SITE, end=end, out=tmp_path / "r.html").read_text(
        encoding="utf-8"
    )
    assert _value(html, "tir_pct")[0] == repr(window["tir_pct"])
    assert f'datetime="{end.isoformat()}"' in html


def test_thin_window_is_shown_and_flagged(lake: Settings, tmp_path: Path) -> None:
    """A window with < 70 % CGM data is reported, not hidden, and says it is not representative."""
    (subject,) = gold(lake, "select * from silver.dim_subject where site_id = $1", SITE)
    end = subject["first_local_date"] + timedelta(days=3)
    (window,) = gold(
        lake,
        "select * from gold.glucose_metrics_14d where site_id = $1 and window_end_date = $2",
        SITE,
        end,
    )
    assert window["cgm_active_pct"] < 70
    html = render_report(lake, site_id=SITE, end=end, out=tmp_path / "thin.html").read_text(
        encoding="utf-8"
    )
    assert 'role="alert">Not representative' in html
    assert f"{window['cgm_active_pct']:.1f}% (not representative)" in html
    assert _value(html, "tir_pct")[0] == repr(window["tir_pct"])
    assert len(re.findall(r'<figure class="day-panel"', html)) == 14
    assert "no readings" in html  # the days before the first reading are shown as empty


def test_unknown_subject_names_the_known_ones(lake: Settings, tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match=rf"no subject 'nobody'.*known subjects: {SITE}"):
        render_report(lake, site_id="nobody", out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_window_outside_the_span_says_what_exists(
    lake: Settings, latest_window: dict[str, Any], tmp_path: Path
) -> None:
    (subject,) = gold(lake, "select * from silver.dim_subject where site_id = $1", SITE)
    with pytest.raises(CascadeError) as info:
        render_report(lake, site_id=SITE, end=date(2001, 1, 1), out=tmp_path / "r.html")
    message = str(info.value)
    assert "2001-01-01" in message
    assert (
        str(subject["first_local_date"]) in message and str(subject["last_local_date"]) in message
    )


@pytest.mark.parametrize("days", [7, 30])
def test_other_window_lengths_are_refused_clearly(
    lake: Settings, days: int, tmp_path: Path
) -> None:
    with pytest.raises(CascadeError, match=r"--days .*14-day windows.*consensus"):
        render_report(lake, site_id=SITE, days=days, out=tmp_path / "r.html")


def test_lake_without_gold_tables(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="cascade transform"):
        render_report(settings, site_id=SITE, out=tmp_path / "r.html")
