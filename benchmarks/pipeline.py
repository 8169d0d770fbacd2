"""Pipeline benchmark: ingest, full build, daily run and publish, DuckDB and Trino side by side.

A size of N subject-years is N synthetic people x 365 days. For each size one fake Nightscout
serves the people's history up to yesterday 00:00 UTC, and both engines read that same fake:
DuckDB (profile `local`, a fresh lake in a temporary CASCADE_HOME) and Trino (profile
`lakehouse`, Nessie's `main` on the running stack). Stage by stage, each engine in turn:

    ingest             the whole history                     `ingest(settings)`
    full build         every model from scratch              `transform(settings, full_refresh=True)`
    daily ingest       yesterday's documents are added to the fake, then `ingest(settings)`
    incremental build  the daily run                         `transform(settings)`
    publish            first publish of the marts            `publish(settings)`

Publishing goes to the stack's PostgreSQL (database `marts`, schemas `bench_duckdb` and
`bench_trino`, both dropped first). Prints one markdown table (size x stage; DuckDB seconds,
Trino seconds, Trino/DuckDB) and, on the last line, the raw numbers as JSON.

The stack must be up (`cascade stack up`; its settings come from the environment as for
`cascade stack`). The Trino side DROPS the schemas iceberg.raw, bronze, silver, gold, marts and
_cascade (the incremental models' state), i.e. everything Cascade writes on the stack's Nessie
`main`, before each size; so it runs only with `--yes-wipe-main`. `--engines duckdb` runs
DuckDB alone (it still publishes to the stack's PostgreSQL). For a quick smoke run, `--days 16`
shortens every subject to 16 days.

    uv run python benchmarks/pipeline.py --yes-wipe-main [--sizes 1 10] [--engines duckdb trino]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from cascade.branching import MAIN
from cascade.config import Settings, SiteConfig, load_settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.nessie import NessieClient
from cascade.publish import publish
from cascade.transform.runner import transform
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.store import SiteStore
from cascade_dev.fake_nightscout.synthetic import generate_subject, subject_specs
from cascade_dev.fake_nightscout.values import event_time_ms
from cascade_dev.stack import trino_query
from cascade_dev.stack.postgres import BI_READER

ENGINES = ("duckdb", "trino")
STAGES = ("ingest", "full build", "daily ingest", "incremental build", "publish")
WIPED_NAMESPACES = ("raw", "bronze", "silver", "gold", "marts", "_cascade")
READINGS_TABLE = "silver.fct_glucose_readings"
DAY = timedelta(days=1)

T = TypeVar("T")
Documents = dict[str, list[dict[str, Any]]]  # collection -> documents, as the generator emits


@dataclass
class Run:
    """One engine's settings and measurements for one size."""

    engine: str
    settings: Settings
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def _timed(run: Run, stage: str, step: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = step()
    run.seconds[stage] = time.perf_counter() - started
    return result


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --------------------------------------------------------------------------- the source


def build_fake(
    subjects: int, days: int, seed: int, end: datetime
) -> tuple[FakeNightscout, dict[str, Documents]]:
    """A fake serving `days` days up to `end - 1 day`, and each site's held-back last day.

    Every subject is generated over `days + 1` days ending at `end` (one deterministic history),
    split by event time: documents without a usable time (dirty records) go with the history.
    """
    cutoff_ms = _ms(end - DAY)
    stores: dict[str, SiteStore] = {}
    last_day: dict[str, Documents] = {}
    for spec in subject_specs(subjects, seed):
        documents = generate_subject(spec, days=days + 1, seed=seed, end=end)
        history: Documents = {}
        held: Documents = {}
        for collection, docs in documents.items():
            history[collection], held[collection] = [], []
            for doc in docs:
                event = event_time_ms(collection, doc)
                late = event is not None and event >= cutoff_ms
                (held if late else history)[collection].append(doc)
        store = SiteStore(
            spec.subject_id,
            units=str(getattr(spec, "units", "mg/dl")),
            timezone=str(getattr(spec, "timezone", "UTC")),
        )
        store.load(history)
        stores[spec.subject_id] = store
        last_day[spec.subject_id] = held
    return FakeNightscout(stores), last_day


def add_last_day(ns: FakeNightscout, last_day: dict[str, Documents]) -> int:
    """Upload the held-back day to each site, as the uploaders would have; return the count."""
    added = 0
    for site_id, documents in last_day.items():
        for collection, docs in documents.items():
            added += len(ns.stores[site_id].insert(collection, docs))
    return added


# --------------------------------------------------------------------------- engines


def marts_dsn(stack: Settings) -> str:
    return stack.stack.marts_dsn


def engine_settings(engine: str, home: Path, ns: FakeNightscout, stack: Settings) -> Settings:
    """Settings of one engine's profile, reading the fake's sites and publishing to its schema."""
    common: dict[str, Any] = {
        "cascade_home": home,
        "nightscout_url": None,
        "nightscout_sites": [SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids],
        "marts_database_url": marts_dsn(stack),
        "marts_schema": f"bench_{engine}",
        "bi_reader_role": BI_READER,
    }
    if engine == "duckdb":
        return load_settings(
            cascade_profile="local",
            iceberg_warehouse_path=None,
            iceberg_staging_path=None,
            **common,
        )
    return stack.on_local_stack(MAIN.ref, **common)


def wipe_main(stack: Settings) -> None:
    """Drop every schema Cascade writes on Nessie's `main` (Trino catalog `iceberg`)."""
    for namespace in WIPED_NAMESPACES:
        trino_query(
            stack.stack_trino_uri,
            f"DROP SCHEMA IF EXISTS {MAIN.trino_catalog}.{namespace} CASCADE",
        )


def drop_published(stack: Settings, schema: str) -> None:
    """Drop a publish target schema (and its staging twin), so the next publish is a first one."""
    with psycopg.connect(marts_dsn(stack), autocommit=True, connect_timeout=10) as conn:
        for name in (schema, f"{schema}_staging"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def count_rows(settings: Settings, table_name: str) -> int:
    """Live rows of a lake table (a one-column scan, so position deletes are applied)."""
    table = load_lake_catalog(settings).load_table(table_name)
    first = table.schema().fields[0].name
    rows: int = table.scan(selected_fields=(first,)).to_arrow().num_rows
    return rows


def warm_up(stack: Settings, engines: Sequence[str]) -> None:
    """Pay one-time costs (imports, first ingest, a cold Trino JVM) before timing anything.

    Otherwise whichever engine runs first pays them: about 1 s of the first ingest, and the import
    of dbt (done lazily by the first transform); and a Trino just started runs its first build
    up to twice as slow as the next (JIT). A 3-day fake goes through each engine, untimed (the
    Trino side lands on main, which every size wipes first).
    """
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fake, _ = build_fake(1, 3, 0, end)
    with fake.start() as ns, tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        for engine in engines:
            settings = engine_settings(engine, Path(tmp) / engine, ns, stack)
            if engine == "trino":
                wipe_main(stack)
            ingest(settings)
            transform(settings)


def preflight(stack: Settings, engines: Sequence[str]) -> None:
    """Fail before any work when the services a run needs are not there."""
    try:
        with psycopg.connect(marts_dsn(stack), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise SystemExit(
            f"cannot reach the stack's PostgreSQL (marts database) at {stack.stack.host}:"
            f"{stack.stack.postgres_port}: {type(exc).__name__}; is the stack up (`cascade stack up`)?"
        ) from None
    if "trino" not in engines:
        return
    try:
        trino_query(stack.stack_trino_uri, "SELECT 1", timeout=30)
        with NessieClient(stack.stack.nessie_uri, timeout=10) as nessie:
            nessie.branch_hash(MAIN.ref)
    except Exception as exc:
        raise SystemExit(
            f"the stack's Trino ({stack.stack_trino_uri}) or Nessie ({stack.stack.nessie_uri}) does not answer: "
            f"{type(exc).__name__}; is the stack up (`cascade stack up`)?"
        ) from None


# --------------------------------------------------------------------------- one size


def run_size(
    size: int, days: int, seed: int, engines: Sequence[str], stack: Settings
) -> dict[str, Run]:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    fake, last_day = build_fake(size, days, seed, end)
    print(
        f"  generated {size} subject(s) x {days} days (+1 held back) up to {end - DAY:%Y-%m-%d} "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    with fake.start() as ns, tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        runs = {
            engine: Run(engine, engine_settings(engine, Path(tmp) / engine, ns, stack))
            for engine in engines
        }
        for run in runs.values():
            if run.engine == "trino":
                wipe_main(stack)
            drop_published(stack, run.settings.marts.schema_name)

        def each(label: str, step: Callable[[Run], str]) -> None:
            for run in runs.values():
                detail = step(run)
                print(
                    f"  {run.engine:<7}{label:<18}{run.seconds[label]:>9.1f}s  {detail}", flush=True
                )

        def do_ingest(stage: str) -> Callable[[Run], str]:
            def step(run: Run) -> str:
                reports = _timed(run, stage, lambda: ingest(run.settings))
                inserted = sum(r.inserted + r.replaced for r in reports)
                rejected = sum(r.rejected for r in reports)
                return f"{inserted:,} rows in, {rejected:,} rejected"

            return step

        def do_transform(stage: str, full_refresh: bool) -> Callable[[Run], str]:
            def step(run: Run) -> str:
                result = _timed(
                    run, stage, lambda: transform(run.settings, full_refresh=full_refresh)
                )
                run.rows[stage] = count_rows(run.settings, READINGS_TABLE)
                note = (
                    " (ran as a FULL refresh)" if result.full_refresh and not full_refresh else ""
                )
                return f"{result.summary()}{note}"

            return step

        def do_publish(run: Run) -> str:
            result = _timed(run, "publish", lambda: publish(run.settings))
            run.rows["published"] = result.rows
            return result.summary()

        each("ingest", do_ingest("ingest"))
        each("full build", do_transform("full build", full_refresh=True))
        print(f"  + {add_last_day(ns, last_day):,} documents of {end - DAY:%Y-%m-%d}", flush=True)
        each("daily ingest", do_ingest("daily ingest"))
        each("incremental build", do_transform("incremental build", full_refresh=False))
        each("publish", do_publish)

    for run in runs.values():
        print(
            f"  {run.engine:<7}{READINGS_TABLE}: {run.rows['full build']:,} rows after the full "
            f"build, {run.rows['incremental build']:,} after the daily build; "
            f"{run.rows['published']:,} mart rows published",
            flush=True,
        )
    if len(runs) > 1:
        counts = {tuple(run.rows.values()) for run in runs.values()}
        print(
            "  row counts agree" if len(counts) == 1 else "  WARNING: row counts DIFFER", flush=True
        )
    return runs


# --------------------------------------------------------------------------- report


def table(results: dict[int, dict[str, Run]], days: int) -> str:
    size_label = "subject-years" if days == 365 else f"subjects x {days} d"
    lines = [
        f"| {size_label} | stage | duckdb s | trino s | trino/duckdb |",
        "|---:|---|---:|---:|---:|",
    ]
    for size, runs in results.items():
        for stage in STAGES:
            duck = runs["duckdb"].seconds[stage] if "duckdb" in runs else None
            trino = runs["trino"].seconds[stage] if "trino" in runs else None
            ratio = f"{trino / duck:.2f}" if duck and trino is not None else "-"
            cells = [f"{s:.1f}" if s is not None else "-" for s in (duck, trino)]
            lines.append(f"| {size} | {stage} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def raw_numbers(results: dict[int, dict[str, Run]], args: argparse.Namespace) -> str:
    return json.dumps(
        {
            "benchmark": "pipeline",
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "days_per_subject": args.days,
            "seed": args.seed,
            "seconds": {
                str(size): {
                    engine: {stage: round(s, 3) for stage, s in run.seconds.items()}
                    for engine, run in runs.items()
                }
                for size, runs in results.items()
            },
            "rows": {
                str(size): {
                    engine: {
                        "fct_glucose_readings_full": run.rows["full build"],
                        "fct_glucose_readings_daily": run.rows["incremental build"],
                        "published": run.rows["published"],
                    }
                    for engine, run in runs.items()
                }
                for size, runs in results.items()
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 10], help="subject-years (one person-year each)"
    )
    parser.add_argument(
        "--engines", nargs="+", choices=ENGINES, default=list(ENGINES), help="default: both"
    )
    parser.add_argument(
        "--yes-wipe-main",
        action="store_true",
        help="allow dropping the schemas Cascade writes (iceberg.raw, ...) on the stack's Nessie main",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=365, help=argparse.SUPPRESS)  # dev: smoke runs
    args = parser.parse_args()
    engines = [e for e in ENGINES if e in args.engines]
    if args.days < 1 or any(size < 1 for size in args.sizes):
        parser.error("--sizes and --days must be positive")

    stack = load_settings()
    if "trino" in engines:
        print(
            f"WARNING: this benchmark drops schemas {', '.join(f'iceberg.{n}' for n in WIPED_NAMESPACES)} "
            f"(every table Cascade writes) on Nessie branch main of the stack at {stack.stack.nessie_uri}, "
            "before each size.",
            flush=True,
        )
        if not args.yes_wipe_main:
            parser.error(
                "the trino engine wipes Nessie main: pass --yes-wipe-main, or --engines duckdb"
            )
    preflight(stack, engines)
    warm_up(stack, engines)

    results: dict[int, dict[str, Run]] = {}
    for size in args.sizes:
        print(f"\n{size} subject(s) x {args.days} days, on {' and '.join(engines)}:", flush=True)
        results[size] = run_size(size, args.days, args.seed, engines, stack)
        gc.collect()
    if "trino" in engines:
        print(
            "\nNessie main keeps the last size's tables; PostgreSQL keeps bench_duckdb, bench_trino."
        )
    print()
    print(table(results, args.days))
    print()
    print(raw_numbers(results, args))


if __name__ == "__main__":
    main()
