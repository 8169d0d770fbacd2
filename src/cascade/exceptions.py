"""Every error Cascade raises on purpose, one class each, so callers and the CLI can tell them apart."""

from __future__ import annotations

from typing import Any


class CascadeError(Exception):
    """Base class: an error with a message meant for the person running Cascade."""


class ConfigurationError(CascadeError):
    """The environment does not describe a usable setup (missing or contradictory settings)."""


class NightscoutError(CascadeError):
    """A Nightscout site could not be read."""


class NightscoutAuthError(NightscoutError):
    """A site refused our credentials (401/403). The message names the site, never the secret."""


class NightscoutUnavailableError(NightscoutError):
    """A site kept failing (timeouts, connection errors, 429, 5xx) after every retry."""


class PagingError(NightscoutError):
    """Paging cannot make progress without skipping records (more same-time records than a page holds)."""


class IncompleteLoadError(NightscoutError):
    """After a load, the lake holds fewer of a site's documents than the site's v1 API counts."""

    def __init__(self, reports: list[Any]) -> None:
        self.reports = reports
        lines = [
            f"site {r.site_id!r} {r.collection}: Nightscout counts {r.server_count:,} documents, "
            f"the lake holds {r.lake_count:,}"
            for r in reports
        ]
        super().__init__(
            "the lake is missing documents the source holds (what was read is committed):\n  "
            + "\n  ".join(lines)
            + "\nRe-run `cascade ingest`; if the numbers stay apart, run `cascade doctor` and report it."
        )


class SitesFailedError(NightscoutError):
    """Some sites could not be read; the others were loaded and committed."""

    def __init__(self, reports: list[Any]) -> None:
        self.reports = reports
        failed = [r for r in reports if r.error]
        sites = sorted({r.site_id for r in failed})
        lines = [f"site {r.site_id!r} {r.collection}: {r.error}" for r in failed]
        super().__init__(
            f"{len(sites)} site(s) failed ({', '.join(sites)}); the others were loaded:\n  "
            + "\n  ".join(lines)
        )


class LakeError(CascadeError):
    """The lake (catalog or tables) is missing something or is in an unexpected state."""


class QueryError(CascadeError):
    """An ad-hoc query could not be run."""


class TransformError(CascadeError):
    """The dbt transform failed: the message names the failing model or test and dbt's reason."""


class PublishError(CascadeError):
    """The marts could not be published; the message says why and what to do (never a secret)."""
