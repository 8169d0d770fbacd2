"""Property-based fuzzing of served pages: arbitrary documents on a fake site, through a whole ingest.

tests/lake/test_poison_records.py fuzzes the parser alone. Here hypothesis fills a fake Nightscout
site with arbitrary JSON documents (poison values in the fields Cascade reads, random fields,
deep nesting, huge integers, NaN and infinities, lone surrogates, colliding ids), uploaded
through v1 or v3, and one real ingest reads them over HTTP in small pages into an Iceberg lake.
What the server actually served is recorded on the wire. The properties:

* the ingest ends normally: no crash, no failed site, nothing "incomplete";
* every document served is in the lake exactly once, as a row or as a reject with a reason:
  the ids served are exactly the ids held, and rows plus rejects number the documents served.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.config import Settings, SiteConfig, load_settings
from cascade.lake.ingest import Ingestor
from cascade.lake.schemas import RAW_COLLECTIONS
from cascade.source.nightscout.client import NightscoutClient
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.store import SiteStore

from .harness import TOKEN, lake_contents, timeout, trials

pytestmark = [pytest.mark.integration, timeout(600)]

#: Hypothesis examples: each a new site of fuzzed documents, ingested into the same lake.
EXAMPLES = trials(30)
PAGE_SIZE = 10  # the smallest Cascade allows: several pages even for a dozen documents

NOW_MS = int(datetime.now(UTC).timestamp() * 1000)
DAY_MS = 86_400_000

# ---- documents ----------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=10)  # lone surrogates included
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
RECENT_MS = st.integers(NOW_MS - 2 * DAY_MS, NOW_MS)
RECENT_ISO = RECENT_MS.map(lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat())
#: What an uploader of each collection plausibly sends, its event time (v1 pages by it) included.
PLAUSIBLE = {
    "entries": st.fixed_dictionaries(
        {"type": st.just("sgv"), "sgv": st.integers(39, 401), "date": RECENT_MS},
        optional={"direction": st.sampled_from(["Flat", "FortyFiveUp"]), "device": st.text()},
    ),
    "treatments": st.fixed_dictionaries(
        {"eventType": st.sampled_from(["Meal Bolus", "Temp Basal"]), "created_at": RECENT_ISO},
        optional={"insulin": st.floats(0, 20), "carbs": st.integers(0, 150), "notes": st.text()},
    ),
    "devicestatus": st.fixed_dictionaries(
        {"device": st.text(max_size=10), "created_at": RECENT_ISO},
        optional={"uploaderBattery": st.integers(0, 100), "pump": JSON},
    ),
    "profile": st.fixed_dictionaries(
        {"defaultProfile": st.just("Default"), "startDate": RECENT_ISO},
        optional={"store": st.dictionaries(st.just("Default"), JSON, max_size=1)},
    ),
}
FIELDS = (
    "date", "dateString", "sysTime", "created_at", "timestamp", "mills", "startDate", "sgv",
    "mbg", "type", "direction", "delta", "noise", "utcOffset", "srvCreated", "srvModified",
    "isValid", "device", "app", "enteredBy", "insulin", "carbs", "rate", "absolute", "percent",
    "duration", "glucose", "targetTop", "isSMB", "eventType", "notes", "units", "store",
    "defaultProfile",
)  # fmt: skip
#: The fields Cascade reads from each collection (types, ranges, times): where poison bites.
READ = {
    "entries": ("date", "dateString", "sysTime", "sgv", "mbg", "utcOffset", "srvModified"),
    "treatments": ("created_at", "timestamp", "insulin", "carbs", "rate", "duration", "mills"),
    "devicestatus": ("created_at", "date", "mills", "utcOffset", "srvCreated"),
    "profile": ("startDate", "created_at", "mills", "store", "defaultProfile"),
}
#: Values known to have stopped ingest once (issue: one bad record stopped every site).
POISON = st.sampled_from(
    ["NaN", "Infinity", "inf", 1e10, 1e30, 1e300, -5, 2**64, "\ud800", "", True, [], {}]
)
#: Ids uploaders send: a few shared ones, so that documents collide (an upload of an id already
#: held replaces that document, in Nightscout as here).
IDS = st.fixed_dictionaries(
    {},
    optional={
        "identifier": st.sampled_from(
            ["loop-7f3a1c", "loop-7f3a1d", "6c0d4a3e-1b2f-4c5d-8e9f-0a1b2c3d4e5f", ""]
        ),
        "_id": st.sampled_from(["5f1e2d3c4b5a69788796a5b4", "5f1e2d3c4b5a69788796a5b5"])
        | st.integers(0, 9),
    },
)


def document(collection: str) -> st.SearchStrategy[dict[str, Any]]:
    """A plausible document with a few fields (those Cascade reads, or any) set to arbitrary
    JSON, and now and then an uploader's own id."""
    read = st.dictionaries(
        st.sampled_from(READ[collection]) | st.sampled_from(FIELDS), POISON | JSON, max_size=3
    )
    other = st.dictionaries(st.text(max_size=6), JSON, max_size=2)
    return st.tuples(PLAUSIBLE[collection], other, read, IDS).map(
        lambda parts: {**parts[0], **parts[1], **parts[2], **parts[3]}
    )


@st.composite
def sites(draw: st.DrawFn) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    api = draw(st.sampled_from(["v1", "v3"]))
    collections = draw(
        st.lists(st.sampled_from(RAW_COLLECTIONS), min_size=1, max_size=4, unique=True)
    )
    return api, {
        name: draw(st.lists(document(name), min_size=1, max_size=25)) for name in collections
    }


# ---- what the server served ---------------------------------------------------------------------

_DATA_PATH = re.compile(r"/api/(?:v1/(\w+)\.json|v3/(\w+)/history)")


@dataclass
class Wire(httpx.BaseTransport):
    """An HTTP transport that records every document a data page carried, by collection."""

    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    served: dict[str, list[Any]] = field(default_factory=dict)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        match = _DATA_PATH.search(request.url.path)
        if match and response.status_code == 200:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            docs = payload.get("result") if isinstance(payload, dict) else payload
            if isinstance(docs, list):
                self.served.setdefault(match[1] or match[2], []).extend(docs)
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


def identity(doc: Any) -> str | None:
    """Nightscout's id of a served document: its `identifier`, else its `_id`."""
    if not isinstance(doc, dict):
        return None
    value = doc.get("identifier")
    if isinstance(value, str) and value:
        return value
    value = doc.get("_id")
    return str(value) if value else None


# ---- the test -----------------------------------------------------------------------------------


@dataclass
class Lake:
    ns: FakeNightscout
    settings: Settings
    names: Iterator[int]
    tally: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    with FakeNightscout({}, tokens=[TOKEN], auth_default_roles="readable").start() as ns:
        home: Path = tmp_path_factory.mktemp("fuzzed-pages")
        settings = load_settings(
            cascade_home=home,
            nightscout_page_size=PAGE_SIZE,
            nightscout_backoff_seconds=0.01,
        )
        lake = Lake(ns, settings, itertools.count(1))
        yield lake
        tally = lake.tally
        print(
            f"\nfuzzed pages: {tally['examples']} sites, {tally['served']} documents served, "
            f"{tally['rows']} rows, {tally['rejects']} rejects"
        )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(site=sites())
def test_every_served_document_becomes_a_row_or_a_reject_once(
    lake: Lake, site: tuple[str, dict[str, list[dict[str, Any]]]]
) -> None:
    api, documents = site
    site_id = f"fuzz-{next(lake.names):04d}"
    store = SiteStore(site_id, uploaded_through=api)  # type: ignore[arg-type]
    for collection, docs in documents.items():
        store.insert(collection, docs)
    lake.ns.stores[site_id] = store
    config = SiteConfig(
        id=site_id, url=lake.ns.site_url(site_id), token=TOKEN if api == "v3" else None
    )
    settings = lake.settings.with_values(**{"nightscout_sites": [config]})
    wire = Wire()
    ingestor = Ingestor(settings, clients={site_id: _client(settings, config, wire)})
    try:
        ingestor.run([config], tuple(documents))  # raises on any failed or incomplete site
    finally:
        ingestor.close()

    held = lake_contents(settings, [site_id], documents)
    assert not held.duplicates(), held.duplicates()
    for collection in documents:
        served = {identity(doc) for doc in wire.served.get(collection, [])}
        rows = {r[1] for r in held.rows[collection]}
        rejects = [r for r in held.rejects if r[1] == collection]
        assert all(r[4] for r in rejects), "a reject without a reason"
        assert rows | {r[3] for r in rejects} == served, collection
        assert len(rows) + len(rejects) == len(served), collection
        lake.tally.update(served=len(served), rows=len(rows), rejects=len(rejects))
    lake.tally["examples"] += 1


def _client(settings: Settings, site: SiteConfig, wire: Wire) -> NightscoutClient:
    """The client `ingest` would make (`make_client`), on the recording transport."""
    return NightscoutClient(
        site,
        page_size=settings.nightscout.page_size,
        timeout_seconds=settings.nightscout.timeout_seconds,
        max_retries=settings.nightscout.max_retries,
        backoff_seconds=settings.nightscout.backoff_seconds,
        concurrency=settings.nightscout.concurrency,
        transport=wire,
    )


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_one_upload_holding_an_id_twice_is_one_document(api: str) -> None:
    """Found by the fuzzing above: the fake kept both, where a later upload replaces."""
    store = SiteStore("s", uploaded_through=api)  # type: ignore[arg-type]
    first = {"eventType": "Note", "created_at": "2026-05-01T10:00:00Z", "notes": "first"}
    store.insert(
        "treatments",
        [{**first, "identifier": "loop-1"}, {**first, "identifier": "loop-1", "notes": "second"}],
    )
    store.insert(
        "entries", [{"_id": "5f1e2d3c4b5a69788796a5b4", "sgv": s, "date": 1} for s in (90, 91)]
    )
    assert store.count("treatments") == store.count("entries") == 1
    assert store.documents("treatments")[0]["notes"] == "second"
    assert store.documents("entries")[0]["sgv"] == 91


def test_a_document_with_a_lone_surrogate_is_stored_and_served_escaped() -> None:
    """Found by the fuzzing above: the fake failed to store it (UnicodeEncodeError)."""
    store = SiteStore("s", uploaded_through="v1")
    store.insert("entries", [{"sgv": 100, "date": 1, "device": "\udb95", "n": 2**70}])
    assert (
        store.records("entries")[0]
        .v1_json()
        .endswith(b'"device":"\\udb95","n":1180591620717411303424}')
    )
