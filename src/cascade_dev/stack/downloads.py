"""Cached, verified downloads of release artifacts from Maven Central.

A file is downloaded once into the download cache (outside the repository), next to the checksum
files Maven Central publishes for it (`.sha1`, and `.sha512` where published). It is written to a
`.part` file, verified against every published checksum, then renamed into place, so an
interrupted or corrupted download is never taken for a good one. A cached file is re-verified
(size and checksums recorded in a `.verified` marker) before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from cascade_dev.stack.process import StackError

log = logging.getLogger(__name__)

_CHECKSUMS = ("sha512", "sha1")  # strongest first; at least one must be published


@dataclass(frozen=True)
class MavenArtifact:
    group: str
    artifact: str
    version: str
    extension: str = "jar"
    classifier: str | None = None

    @property
    def filename(self) -> str:
        classifier = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{classifier}.{self.extension}"

    @property
    def path(self) -> str:
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"

    @property
    def coordinates(self) -> str:
        classifier = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.artifact}:{self.version}{classifier} ({self.extension})"


def _client() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=20.0))


def _published_checksums(client: httpx.Client, url: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for algorithm in _CHECKSUMS:
        response = client.get(f"{url}.{algorithm}")
        if response.status_code == 200:
            # The file holds the hex digest, sometimes followed by a file name.
            sums[algorithm] = response.text.strip().split()[0].lower()
        elif response.status_code != 404:
            response.raise_for_status()
    return sums


def _digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def fetch_maven(artifact: MavenArtifact, repository: str, cache: Path) -> Path:
    """The verified local copy of `artifact`, downloaded into `cache/maven/...` if needed."""
    target = cache / "maven" / artifact.path
    marker = target.with_name(target.name + ".verified")
    if target.exists() and marker.exists():
        record = json.loads(marker.read_text())
        if record.get("size") == target.stat().st_size:
            return target
    url = f"{repository.rstrip('/')}/{artifact.path}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with _client() as client:
        try:
            expected = _published_checksums(client, url)
        except httpx.HTTPError as exc:
            raise StackError(
                f"could not reach the Maven repository for {artifact.coordinates}: {exc}"
            ) from exc
        if not expected:
            head = client.head(url)
            if head.status_code == 404:
                raise StackError(
                    f"{artifact.coordinates} is not served by {repository} (404). "
                    "Pick a version the registry serves (see docs/STACK.md)."
                )
            raise StackError(
                f"{url} publishes no .sha1/.sha512 checksum: refusing an unverified download"
            )
        if not target.exists():
            _download(client, url, target, artifact)
    actual = _digests(target, list(expected))
    bad = {name for name, digest in expected.items() if actual[name] != digest}
    if bad:
        target.unlink(missing_ok=True)
        raise StackError(
            f"checksum mismatch ({', '.join(sorted(bad))}) for {url}: the download was removed, try again"
        )
    marker.write_text(json.dumps({"url": url, "size": target.stat().st_size, **actual}))
    return target


def _download(client: httpx.Client, url: str, target: Path, artifact: MavenArtifact) -> None:
    part = target.with_name(target.name + ".part")
    started = time.monotonic()
    log.info("downloading %s", url)
    try:
        with client.stream("GET", url) as response:
            if response.status_code == 404:
                raise StackError(
                    f"{artifact.coordinates} is not served by the Maven repository (404): {url}"
                )
            response.raise_for_status()
            with part.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise StackError(f"download of {url} failed: {exc}") from exc
    part.replace(target)
    size_mb = target.stat().st_size / 1e6
    log.info("downloaded %s (%.0f MB in %.0fs)", target.name, size_mb, time.monotonic() - started)
