"""The CLI's tables and progress rows at 80 columns and when piped (no servers, no lake)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cascade.cli import app as cli
from cascade.cli import lake as lake_commands
from cascade.cli import output
from cascade.cli.render import INGEST_SUM, ProgressRows, cursor_text, ingest_table, status_tables
from cascade.lake.ingest import LoadReport
from cascade.lake.status import TableStatus

COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")
SITES = ("subject-01", "clinic-patient-0042")
LONG_NAMES = (
    "marts.mrt_glucose_hourly_patterns",
    "silver.stg_nightscout__device_status",
    "gold.fct_glucose_readings",
    "raw.devicestatus",
)


def _report(site: str, collection: str, i: int) -> LoadReport:
    inserted, replaced, unchanged, rejected = 104_000 * i + 32, 30 * i, 100_002 + i, i % 3
    return LoadReport(
        site,
        collection,
        api="v1+v3" if i % 2 else "v3",
        documents=inserted + replaced + unchanged + rejected,
        inserted=inserted,
        replaced=replaced,
        unchanged=unchanged,
        rejected=rejected,
        seconds=12.345 * i,
    )


def _reports() -> list[LoadReport]:
    # in the order ingest returns them: collection by collection, every site in each
    return [_report(s, c, i + j) for i, c in enumerate(COLLECTIONS) for j, s in enumerate(SITES)]


def _render(*renderables: object, width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.parametrize("width", [80, 60])
def test_ingest_table_keeps_every_table_name_whole(width: int) -> None:
    text = _render(ingest_table(_reports()), width=width)
    lines = text.splitlines()
    for collection in COLLECTIONS:
        assert sum(f"raw.{collection}" in line for line in lines) == len(SITES)
    for site in SITES:
        assert any(site in line for line in lines)
    if width == 80:
        assert max(len(line.rstrip()) for line in lines) <= 80
        assert INGEST_SUM in text


def test_ingest_table_numbers_add_up_at_80_columns() -> None:
    reports = _reports()
    lines = _render(ingest_table(reports)).splitlines()
    header = next(line for line in lines if "site / table" in line)
    assert header.split()[3:] == ["api", "read", "new", "updated", "unchanged", "rejected", "secs"]

    site, printed = None, {}
    for line in lines:
        if line.strip() in SITES:
            site = line.strip()
        elif match := re.match(
            r"  raw\.(\w+) +(\S+) +([\d,]+) +([\d,]+) +([\d,]+) +([\d,]+) +([\d,]+) +[\d.]+$",
            line.rstrip(),
        ):
            collection, api, *figures = match.groups()
            printed[(site, collection)] = (api, [_number(f) for f in figures])
    assert len(printed) == len(reports)
    for r in reports:
        api, (read, new, updated, unchanged, rejected) = printed[(r.site_id, r.collection)]
        assert api == r.api
        assert (read, new, updated, unchanged, rejected) == (
            r.documents,
            r.inserted,
            r.replaced,
            r.unchanged,
            r.rejected,
        )
        assert read == new + updated + unchanged + rejected

    in_all = next(line for line in lines if "in all:" in line)
    read, new, updated, unchanged, rejected = (_number(f) for f in re.findall(r"[\d,]+", in_all))
    assert read == sum(r.documents for r in reports) == new + updated + unchanged + rejected
    assert new == sum(r.inserted for r in reports) and rejected == sum(r.rejected for r in reports)


def test_one_report_has_no_total() -> None:
    text = _render(ingest_table([_report("subject-01", "entries", 1)]))
    assert (
        "in all" not in text
        and "raw.entries" in text
        and "-" not in text.split("raw.entries")[1].split()[0]
    )


def _statuses() -> list[TableStatus]:
    cursor = {
        "v3": {"srv_modified": 1_714_566_896_789},
        "v1": {
            "loaded_until": 1_714_566_896_789,
            "pending": {"top": 1_714_566_896_789, "through": 1_714_566_000_000},
        },
    }
    return [
        *(TableStatus(name, 1_234_567, 12, "2024-05-01T12:34:56+00:00") for name in LONG_NAMES[:3]),
        TableStatus(
            "raw.devicestatus",
            8_064,
            4,
            "2024-05-01T12:34:56+00:00",
            {"subject-01": cursor, "subject-02": {"api": "v1", "loaded_until": 1_714_566_896_789}},
        ),
        TableStatus("raw.rejects", 0, 0, None),
    ]


@pytest.mark.parametrize("width", [80, 60])
def test_status_keeps_every_table_name_whole(width: int) -> None:
    lines = _render(*status_tables(_statuses()), width=width).splitlines()
    for name in (*LONG_NAMES, "raw.rejects"):
        assert any(name in line for line in lines), name
    if width == 80:
        assert max(len(line.rstrip()) for line in lines) <= 80
        row = next(line for line in lines if line.startswith("marts.mrt_glucose_hourly_patterns"))
        assert row.split()[1:] == ["1,234,567", "12", "2024-05-01", "12:34:56"]
        assert any(line.startswith("raw.rejects") and line.rstrip().endswith("-") for line in lines)


def test_cursors_read_as_times_per_api() -> None:
    assert (
        cursor_text({"v3": {"srv_modified": 1_714_566_896_789}})
        == "v3 srv_modified 2024-05-01 12:34:56"
    )
    assert (
        cursor_text({"api": "v1", "loaded_until": 1_714_566_896_789})
        == "v1 loaded_until 2024-05-01 12:34:56"
    )
    pending = cursor_text(
        {
            "v1": {
                "loaded_until": 1_714_566_896_789,
                "pending": {"top": 1_714_566_896_789, "through": 1_714_566_000_000},
            }
        }
    )
    assert (
        pending
        == "v1 loaded_until 2024-05-01 12:34:56, pending (top 2024-05-01 12:34:56, through 2024-05-01 12:20:00)"
    )


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=80)


def test_done_stops_the_row_at_once() -> None:
    with ProgressRows(_terminal()) as rows:
        rows.ingest("subject-01", "entries", 100)  # today's three-argument calls still work
        rows.ingest("subject-01", "entries", 50)
        rows.ingest("subject-02", "entries", 7)
        rows.ingest("subject-01", "entries", 0, done=True)
        rows.ingest("subject-01", "food", 0, True)  # done without a document: a row that read none
        by_name = {t.description: t for t in rows.progress.tasks}
        entries = by_name["ingest subject-01 entries"]
        assert entries.finished and entries.completed == 150 and entries.stop_time is not None
        stopped_at = entries.finished_time
        assert by_name["ingest subject-01 food"].finished
        assert not by_name["ingest subject-02 entries"].finished  # still reading
        rows.ingest("subject-02", "entries", 3, done=True)
        assert [t for t in rows.progress.tasks if not t.finished] == []
    assert entries.finished_time == stopped_at  # the timer did not run on


def test_rows_left_open_finish_when_the_block_ends() -> None:
    with ProgressRows(_terminal()) as rows:
        rows.stage("ingest")
        rows.ingest("subject-01", "entries", 10)
        rows.stage("transform")
        rows.stage("promote")
        transform, promote = rows.progress.tasks[1:]
        assert transform.finished and not promote.finished
    assert all(t.finished for t in rows.progress.tasks)


def test_a_row_without_documents_shows_no_count() -> None:
    with ProgressRows(_terminal()) as rows:
        rows.step("dbt build")
        rows.ingest("subject-01", "profile", 1, done=True)
        rows.ingest("subject-01", "food", 0, done=True)
    lines = _render(rows.progress.get_renderable()).splitlines()
    dbt, profile, food = (
        next(line for line in lines if name in line) for name in ("dbt build", "profile", "food")
    )
    assert "doc" not in dbt and " 0 " not in dbt and "?" not in dbt
    assert "1 doc " in profile and "0 docs " in food  # an ingest row counts, even nothing
    assert all(line.startswith("✓") for line in (dbt, profile, food))


def test_piped_progress_prints_plain_lines_once() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert not console.is_terminal
    with ProgressRows(console) as rows:
        rows.ingest("subject-01", "entries", 4_032)
        rows.ingest("subject-01", "entries", 0, done=True)
        rows.step("dbt build")
    lines = out.getvalue().splitlines()
    assert [re.sub(r" in \d+\.\ds$", "", line) for line in lines] == [
        "ingest subject-01 entries: 4,032 docs",
        "dbt build: done",
    ]
    assert "\x1b" not in out.getvalue() and "━" not in out.getvalue()


def _fresh_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consoles made after COLUMNS is set (rich reads the width once), and no settings needed."""
    stdout, stderr = Console(), Console(stderr=True)
    for module in (output, lake_commands):
        monkeypatch.setattr(module, "console", stdout)
        monkeypatch.setattr(module, "errors", stderr)
    monkeypatch.setattr(lake_commands, "get_settings", lambda: None)


def test_cascade_ingest_prints_the_summary_at_columns_80(monkeypatch: pytest.MonkeyPatch) -> None:
    import cascade.lake.ingest

    reports = _reports()

    def fake_ingest(
        settings: object, *, progress: cascade.lake.ingest.ProgressCallback, **_: object
    ) -> list[LoadReport]:
        for r in reports:
            progress(r.site_id, r.collection, r.documents)
            progress(r.site_id, r.collection, 0, done=True)
        return reports

    monkeypatch.setenv("COLUMNS", "80")
    _fresh_consoles(monkeypatch)
    monkeypatch.setattr(cascade.lake.ingest, "ingest", fake_ingest)
    result = CliRunner().invoke(cli.app, ["ingest"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for collection in COLLECTIONS:
        assert sum(f"raw.{collection}" in line for line in lines) == len(SITES)
    assert "\x1b" not in result.output  # piped: no spinners, no cursor moves
    assert "ingest subject-01 devicestatus: " in result.stderr


def test_a_failed_site_is_shown_in_the_table_and_the_command_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cascade.lake.ingest
    from cascade.exceptions import SitesFailedError

    reports = _reports()
    failed = [r for r in reports if r.site_id == SITES[-1]]
    for r in failed:
        r.error = "no Nightscout API at http://x (HTTP 404 for /api/v1/entries.json)"

    def fake_ingest(settings: object, **_: object) -> list[LoadReport]:
        raise SitesFailedError(reports)

    monkeypatch.setenv("COLUMNS", "80")
    _fresh_consoles(monkeypatch)
    monkeypatch.setattr(cascade.lake.ingest, "ingest", fake_ingest)
    result = CliRunner().invoke(cli.app, ["ingest"])
    assert result.exit_code == 1
    assert result.stdout.count("FAILED") == len(failed)
    assert f"1 site(s) failed ({SITES[-1]})" in result.stderr
    assert "Traceback" not in result.output
