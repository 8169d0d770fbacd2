"""A faithful fake Nightscout (API v1, v2 auth, v3) over real HTTP, for tests, demo and benchmarks.

`SiteStore` holds one site's documents with Nightscout's server-side fields; `FakeNightscout`
serves several stores, each under `http://HOST:PORT/<site_id>`, and can inject faults.
"""

from __future__ import annotations

from cascade_dev.fake_nightscout.protocol import FAULT_KINDS, RequestRecord
from cascade_dev.fake_nightscout.schema import COLLECTIONS
from cascade_dev.fake_nightscout.server import FakeNightscout, serve
from cascade_dev.fake_nightscout.store import SiteStore

__all__ = ["COLLECTIONS", "FAULT_KINDS", "FakeNightscout", "RequestRecord", "SiteStore", "serve"]
