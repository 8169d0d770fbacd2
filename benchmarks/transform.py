"""Transform benchmark: full build and incremental daily run for 1, 5 and 20 subject-years.

For each size, synthetic people (365 days each) are written straight into the raw tables through
the real parser and idempotent upsert (this benchmark measures dbt, not HTTP), all but their last
day. Then: a full build (`transform(full_refresh=True)`), the last day is added, and an
incremental run (`transform()`) picks it up. Target: the incremental run stays nearly flat as
history grows.

    uv run python benchmarks/transform.py [--sizes 1 5 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cascade.config import load_settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.records import ParsedBatch, Rejected, event_ms, to_arrow
from cascade.lake.tables import ensure_raw_table, upsert
from cascade.transform.runner import transform
from cascade_dev.fake_nightscout.store import SiteStore
from cascade_dev.fake_nightscout.synthetic import COLLECTIONS, generate_subject, subject_specs

DAYS = 365


def _split(
    collection: str, docs: list[dict[str, Any]], cutoff_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    before, after = [], []
    for doc in docs:
        try:
            (after if event_ms(collection, doc) >= cutoff_ms else before).append(doc)
        except Rejected:
            before.append(doc)
    return before, after


def _write(catalog: Any, site_id: str, collection: str, docs: list[dict[str, Any]]) -> None:
    batch = ParsedBatch(collection, site_id)
    batch.add(docs, now_ms=int(time.time() * 1000))
    rows = to_arrow(
        collection,
        batch.rows,
        ingested_at_us=int(time.time() * 1_000_000),
        load_id="bench",
        api="v3",
    )
    upsert(ensure_raw_table(catalog, collection), site_id, rows)


def run_size(subject_years: int, seed: int) -> dict[str, float]:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cutoff_ms = int((end - timedelta(days=1)).timestamp() * 1000)
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(cascade_home=Path(home))
        catalog = load_lake_catalog(settings)
        last_day: dict[tuple[str, str], list[dict[str, Any]]] = {}
        started = time.perf_counter()
        for spec in subject_specs(subject_years, seed):
            store = SiteStore(spec.subject_id)
            generated = generate_subject(spec, days=DAYS, seed=seed, end=end)
            for collection in COLLECTIONS:
                stored = store.insert(collection, generated[collection])
                history, new = _split(collection, stored, cutoff_ms)
                _write(catalog, spec.subject_id, collection, history)
                last_day[(spec.subject_id, collection)] = new
        load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        transform(settings, full_refresh=True)
        full_seconds = time.perf_counter() - started

        for (site_id, collection), docs in last_day.items():
            _write(catalog, site_id, collection, docs)
        started = time.perf_counter()
        incremental = transform(settings)
        incremental_seconds = time.perf_counter() - started
        changed = len(incremental.committed)
    return {
        "load": load_seconds,
        "full": full_seconds,
        "incremental": incremental_seconds,
        "tables_changed": changed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1, 5, 20],
        help="subject-years (one person-year each)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for size in args.sizes:
        print(
            f"{size} subject-year(s): loading raw, full build, +1 day incremental ...", flush=True
        )
        results[size] = run_size(size, args.seed)
        r = results[size]
        print(
            f"  raw load {r['load']:.0f}s, full build {r['full']:.1f}s, incremental day {r['incremental']:.1f}s",
            flush=True,
        )
    print(f"\n{'subject-years':>14}{'full build s':>14}{'incremental s':>15}{'incr / full':>13}")
    for size, r in results.items():
        print(
            f"{size:>14}{r['full']:>14.1f}{r['incremental']:>15.1f}{r['incremental'] / r['full']:>13.2f}"
        )
    sizes = list(results)
    if len(sizes) > 1:
        first, last = results[sizes[0]], results[sizes[-1]]
        print(
            f"\nhistory grew {sizes[-1] / sizes[0]:.0f}x: full build grew {last['full'] / first['full']:.1f}x, "
            f"incremental grew {last['incremental'] / first['incremental']:.1f}x"
        )


if __name__ == "__main__":
    main()
