"""What the reliability tests share: trial counts, ingest processes, and what a lake holds.

Every test here compares a lake that went through something (kills, racing writers, faults) with
a *reference*: the same fake Nightscout read once by one uninterrupted, undisturbed ingest. Both
must hold the same rows (site, id, version, document) and the same rejects, each exactly once;
the reference itself is checked against the documents the fake server serves.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from pydantic import SecretStr

from cascade.config import Settings, SiteConfig
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.schemas import RAW_COLLECTIONS
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.synthetic import dirty_record_counts

from .forkserver import ForkServer

# ---- trial counts -------------------------------------------------------------------------------

#: Multiplies every trial count: `CASCADE_RELIABILITY_SOAK=10 pytest tests/reliability` soaks.
SOAK = max(1, int(os.environ.get("CASCADE_RELIABILITY_SOAK", "1")))
#: Seeds every random choice (kill delays, fault draws); the default makes CI runs repeatable.
SEED = int(os.environ.get("CASCADE_RELIABILITY_SEED", "20260518"))


def trials(base: int) -> int:
    return base * SOAK


def rng(*salt: object) -> random.Random:
    return random.Random(f"{SEED}:" + ":".join(map(str, salt)))


def timeout(base_seconds: int) -> Any:
    """A pytest timeout that grows with the soak factor."""
    import pytest

    return pytest.mark.timeout(base_seconds * SOAK)


# ---- how the fake site is read ------------------------------------------------------------------

TOKEN = "reader-0123456789abcdef"


@dataclass(frozen=True)
class Mode:
    """How the documents reached Nightscout and how Cascade reads them."""

    name: str
    uploaded_through: str  # "v1" (no server fields, as nearly every uploader) or "v3"
    token: bool  # read with an access token: v3 history too

    def server(self, *, subjects: int, days: int, seed: int) -> FakeNightscout:
        return FakeNightscout.synthetic(
            subjects=subjects,
            days=days,
            seed=seed,
            uploaded_through=self.uploaded_through,  # type: ignore[arg-type]
            tokens=[TOKEN],
            auth_default_roles="readable",
        )

    def sites(self, ns: FakeNightscout, ids: Iterable[str] | None = None) -> list[SiteConfig]:
        extra = {"token": SecretStr(TOKEN)} if self.token else {}
        return [SiteConfig(id=s, url=ns.site_url(s), **extra) for s in (ids or ns.site_ids)]

    def invisible(self, collection: str, days: int) -> int:
        """Documents of a synthetic site that no read of this mode can see.

        Through v1 an entry with no date matches no date query, and a treatment whose
        `created_at` is "not a date" sorts outside every `created_at` range; v3 history (of
        documents uploaded through v3) shows every document.
        """
        if self.uploaded_through == "v3" and self.token:
            return 0
        dirty = dirty_record_counts(days)
        return {
            "entries": dirty["entries_missing_date"],
            "treatments": dirty["treatments_created_at_unparseable"],
        }.get(collection, 0)


V1 = Mode("v1", "v1", token=False)  # an open site read anonymously: v1 paging alone
V1_V3 = Mode("v1+v3", "v1", token=True)  # v1 uploads read with a token: v3 history and v1 paging
V3 = Mode("v3", "v3", token=True)  # v3 uploads: v3 history alone
MODES = (V1, V1_V3, V3)


# ---- processes ----------------------------------------------------------------------------------

INGEST_ENV = {
    "NIGHTSCOUT_PAGE_SIZE": "50",  # many pages ...
    "INGEST_COMMIT_ROWS": "100",  # ... and many commits: many places to be killed or to collide
    "NIGHTSCOUT_BACKOFF_SECONDS": "0.02",
}


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return json.dumps(
            [
                {
                    k: (v.get_secret_value() if isinstance(v, SecretStr) else v)
                    for k, v in dict(site).items()
                    if v is not None
                }
                for site in value
            ]
        )
    return str(value)


def cascade_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment in which `cascade` builds exactly `settings` (plus `extra`), and nothing
    of the developer's own Cascade or Nightscout variables."""
    variables = settings.variables()
    env = {k: v for k, v in os.environ.items() if k.upper() not in variables}
    for name, held in variables.items():
        value = _env_value(held)
        if value is not None:
            env[name] = value
    env.update(extra)
    return env


@dataclass
class Run:
    """One `cascade ingest` process: its exit code and output."""

    pid: int
    logs: Path
    returncode: int | None = None

    @property
    def stdout(self) -> str:
        return Path(f"{self.logs}.out").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return Path(f"{self.logs}.err").read_text(errors="replace")

    def assert_clean(self) -> None:
        """Exit 0 and no traceback."""
        assert self.returncode == 0, f"exit {self.returncode}:\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.stderr, self.stderr[-3000:]


@dataclass
class Launcher:
    """Starts `cascade ingest` processes (see forkserver.py) and keeps their logs apart."""

    server: ForkServer
    logs: Path
    started: int = 0
    runs: list[Run] = field(default_factory=list)

    def ingest(
        self,
        settings: Settings,
        *,
        sites: Iterable[str] | None = None,
        collections: Iterable[str] = RAW_COLLECTIONS,
        gated: bool = False,
        **env: str,
    ) -> Run:
        """Start `cascade ingest` (for `sites`, else every configured site) with `settings`;
        `gated`: it waits for `go()`."""
        argv = ["ingest", "--collections", ",".join(collections)]
        for site in sites or ():
            argv += ["--site", site]
        self.started += 1
        logs = self.logs / f"run-{self.started:04d}"
        home = settings.lake.home
        home.mkdir(parents=True, exist_ok=True)
        pid = self.server.spawn(
            argv, cascade_env(settings, **(INGEST_ENV | env)), home, logs, gated=gated
        )
        run = Run(pid, logs)
        self.runs.append(run)
        return run

    def go(self) -> None:
        """Let every gated process start, all at once."""
        self.server.open()

    def race(
        self,
        settings: Settings,
        writers: Iterable[Iterable[str] | None],
        collections: Iterable[str] = RAW_COLLECTIONS,
        **env: str,
    ) -> list[Run]:
        """One process per entry of `writers` (its sites), started at the same instant; waited for."""
        runs = [
            self.ingest(settings, sites=sites, collections=collections, gated=True, **env)
            for sites in writers
        ]
        self.go()
        return [self.wait(run) for run in runs]

    def wait(self, run: Run, timeout: float = 300) -> Run:
        run.returncode = self.server.wait(run.pid, timeout)
        return run

    def kill(self, run: Run) -> Run:
        self.server.kill(run.pid)
        return self.wait(run)


@contextmanager
def launcher(logs: Path) -> Iterator[Launcher]:
    logs.mkdir(parents=True, exist_ok=True)
    server = ForkServer()
    try:
        yield Launcher(server, logs)
    finally:
        server.close()


# ---- what a lake holds --------------------------------------------------------------------------

ROW_FIELDS = ("site_id", "source_id", "srv_modified_at", "is_valid", "document")
REJECT_FIELDS = ("site_id", "collection", "reject_id", "source_id", "reason")


@dataclass(frozen=True)
class Contents:
    """Every row and reject of a lake (for some sites), as sorted lists: duplicates show."""

    rows: dict[str, list[tuple[Any, ...]]]
    rejects: list[tuple[Any, ...]]
    snapshots: int  # commits on the raw tables and raw.rejects, in all

    def count(self, collection: str, site: str | None = None) -> tuple[int, int]:
        """(rows, rejects) of one collection, for one site or all."""
        rows = [r for r in self.rows[collection] if site is None or r[0] == site]
        rejects = [r for r in self.rejects if r[1] == collection and (site is None or r[0] == site)]
        return len(rows), len(rejects)

    def duplicates(self) -> dict[str, int]:
        """Records held more than once, by collection (rows by site and id; rejects by id)."""
        found = {
            collection: sum(n - 1 for n in Counter(r[:2] for r in rows).values())
            for collection, rows in self.rows.items()
        }
        found["rejects"] = sum(n - 1 for n in Counter(r[2] for r in self.rejects).values())
        return {k: v for k, v in found.items() if v}


def lake_contents(
    settings: Settings,
    sites: Iterable[str] | None = None,
    collections: Iterable[str] = RAW_COLLECTIONS,
) -> Contents:
    catalog = load_lake_catalog(settings)
    wanted = None if sites is None else set(sites)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    snapshots = 0

    def table(name: str, fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
        nonlocal snapshots
        try:
            loaded = catalog.load_table(name)
        except Exception:  # not created yet (a run killed before it got there)
            return []
        snapshots += len(loaded.snapshots())
        data = loaded.scan(selected_fields=fields).to_arrow()
        if wanted is not None:
            data = data.filter(pc.is_in(data["site_id"], value_set=_array(wanted)))
        return sorted(zip(*(data[f].to_pylist() for f in fields), strict=True), key=_sort_key)

    for collection in collections:
        rows[collection] = table(f"raw.{collection}", ROW_FIELDS)
    rejects = table("raw.rejects", REJECT_FIELDS)
    rejects = [r for r in rejects if r[1] in rows]
    return Contents(rows, rejects, snapshots)


def _array(values: set[str]) -> Any:
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def _sort_key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in row)


def assert_same(actual: Contents, expected: Contents, what: str = "") -> None:
    """Same rows and rejects, each exactly once (a readable message, not a 10,000-line diff)."""
    label = f"{what}: " if what else ""
    assert not actual.duplicates(), f"{label}duplicates {actual.duplicates()}"
    for collection, rows in expected.rows.items():
        got = actual.rows.get(collection, [])
        if got != rows:
            missing = Counter(rows) - Counter(got)
            extra = Counter(got) - Counter(rows)
            raise AssertionError(
                f"{label}raw.{collection}: {len(got)} rows, expected {len(rows)}; "
                f"{sum(missing.values())} missing (e.g. {_short(missing)}), "
                f"{sum(extra.values())} unexpected (e.g. {_short(extra)})"
            )
    if actual.rejects != expected.rejects:
        missing = Counter(expected.rejects) - Counter(actual.rejects)
        extra = Counter(actual.rejects) - Counter(expected.rejects)
        raise AssertionError(
            f"{label}raw.rejects: {len(actual.rejects)}, expected {len(expected.rejects)}; "
            f"missing {_short(missing)}, unexpected {_short(extra)}"
        )


def _short(rows: Counter[tuple[Any, ...]]) -> str:
    first = next(iter(rows), None)
    return "none" if first is None else re.sub(r"\s+", " ", str(first))[:200]


def assert_served_documents(
    contents: Contents, ns: FakeNightscout, mode: Mode, days: int, sites: Iterable[str]
) -> None:
    """Every document the server shows this mode is a row or a reject with a reason, once."""
    assert not contents.duplicates(), contents.duplicates()
    assert all(r[4] for r in contents.rejects), "a reject without a reason"
    for site in sites:
        store = ns.stores[site]
        for collection in contents.rows:
            rows, rejects = contents.count(collection, site)
            served = store.count(collection, include_deleted=True) - mode.invisible(
                collection, days
            )
            assert rows + rejects == served, (
                f"{site} {collection} ({mode.name}): {rows} rows + {rejects} rejects, "
                f"the server shows {served} documents"
            )
