"""Ingest benchmark: N subject-years from the fake Nightscout into a fresh local lake.

Prints rows/s per collection and the ratio of the whole ingest to a bare download of the same
pages (the same URLs fetched again with one keep-alive HTTP client, bodies read, nothing parsed).
Target: ingest costs at most 1.5x the bare download. The fake serves pre-serialised JSON from
memory over loopback (~370k docs/s), far faster than any real Nightscout, so also run it with
`--server-latency-ms 250` (a quick hosted instance answering a 1000-document page) to see how
much of the processing hides behind the download.

    uv run python benchmarks/ingest.py --subject-years 2 [--interval-minutes 5] [--subjects 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

import httpx

from cascade.config import SiteConfig, load_settings
from cascade.lake.ingest import ingest
from cascade_dev.fake_nightscout.server import FakeNightscout

COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subject-years", type=float, default=1.0)
    parser.add_argument(
        "--subjects", type=int, default=0, help="default: one per subject-year (at least 1)"
    )
    parser.add_argument("--interval-minutes", type=int, default=5, choices=(1, 5))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--server-latency-ms",
        type=float,
        default=0.0,
        help="answer every request this much later, like a hosted Nightscout (0: loopback speed)",
    )
    args = parser.parse_args()

    subjects = args.subjects or max(1, round(args.subject_years))
    days = round(args.subject_years * 365 / subjects)
    print(
        f"generating {subjects} subject(s) x {days} days at {args.interval_minutes}-min CGM ...",
        flush=True,
    )
    started = time.perf_counter()
    server = FakeNightscout.synthetic(
        subjects=subjects, days=days, interval_minutes=args.interval_minutes, seed=args.seed
    )
    print(f"  generated in {time.perf_counter() - started:.1f}s", flush=True)
    if args.server_latency_ms:
        server.set_random_faults(1.0, ["slow"], delay_seconds=args.server_latency_ms / 1000)
    with server.start() as ns, tempfile.TemporaryDirectory() as home:
        settings = load_settings(
            cascade_home=Path(home),
            nightscout_sites=[SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids],
        )
        started = time.perf_counter()
        reports = ingest(settings)
        ingest_seconds = time.perf_counter() - started
        replay = [
            (f"/{r.site_id}{r.path}" if r.site_id else r.path, r.query)
            for r in ns.requests
            if r.method == "GET" and r.status == 200
        ]

        # The bare download: the same GETs, bodies read, nothing parsed or written.
        started = time.perf_counter()
        downloaded = 0
        with httpx.Client(base_url=ns.base_url, timeout=60) as client:
            for path, query in replay:
                downloaded += len(
                    client.get(f"{path}?{urlencode(query)}" if query else path).content
                )
        download_seconds = time.perf_counter() - started

    rows: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for r in reports:
        rows[r.collection] += r.inserted + r.rejected
        seconds[r.collection] += r.seconds
    total = sum(rows.values())
    print(f"\n{'collection':<14}{'rows':>12}{'rows/s':>12}")
    for name in COLLECTIONS:
        rate = rows[name] / seconds[name] if seconds[name] else 0.0
        print(f"{name:<14}{rows[name]:>12,}{rate:>12,.0f}")
    print(f"{'all':<14}{total:>12,}{total / ingest_seconds:>12,.0f}")
    print(f"\nrequests: {len(replay):,}, downloaded {downloaded / 1e6:,.1f} MB")
    print(
        f"ingest {ingest_seconds:.1f}s vs bare download {download_seconds:.1f}s: ratio {ingest_seconds / download_seconds:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
