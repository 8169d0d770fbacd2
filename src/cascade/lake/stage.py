"""Landing raw API pages, compressed, under the staging location, and reading them back.

Every page that brought something into the lake (a new or changed document, or a new reject) is
kept byte for byte, landed just before the commit that wrote it, so any raw table can be rebuilt
with `cascade ingest --from-stage` without asking Nightscout again. Pages that changed nothing
are not kept: their documents are already in the lake and in earlier pages. Layout:
`<stage>/nightscout/<site_id>/<collection>/<load_id>/<sequence>-<api>.json.zst`; load ids sort
by time, so reading in path order replays the pages in the order they were received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
import zstandard

from cascade.config import Profile, Settings

_COMPRESSOR_LEVEL = 3


@dataclass(frozen=True)
class StagedPage:
    path: str
    api: str
    docs: list[dict[str, Any]]


class Stage:
    """Reads and writes pages through a pyarrow filesystem (local now, S3 with the lakehouse)."""

    def __init__(self, uri: str, filesystem: pafs.FileSystem | None = None) -> None:
        if filesystem is None:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = filesystem, uri.split("://", 1)[-1]

    @classmethod
    def for_settings(cls, settings: Settings) -> Stage:
        if settings.lake.profile is Profile.LAKEHOUSE:
            endpoint = urlparse(settings.s3.endpoint)
            s3 = pafs.S3FileSystem(
                access_key=settings.s3.access_key_id.get_secret_value(),
                secret_key=settings.s3.secret_access_key.get_secret_value(),
                endpoint_override=endpoint.netloc,
                scheme=endpoint.scheme or "http",
                region=settings.s3.region,
                force_virtual_addressing=False,
            )
            return cls(settings.lake.stage_uri, s3)
        return cls(settings.lake.stage_uri)

    def _dir(self, site_id: str, collection: str, load_id: str | None = None) -> str:
        parts = [self.root, "nightscout", site_id, collection] + ([load_id] if load_id else [])
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))

    @staticmethod
    def compress(body: bytes) -> bytes:
        """A page as it is stored; done by the fetch threads, so landing is only a write."""
        # A compressor per page: zstd contexts are not safe to share between fetch threads.
        return zstandard.ZstdCompressor(level=_COMPRESSOR_LEVEL).compress(body)

    def land(
        self,
        site_id: str,
        collection: str,
        load_id: str,
        sequence: int,
        api: str,
        compressed: bytes,
    ) -> str:
        """Write one page compressed by `compress`; return its path."""
        directory = self._dir(site_id, collection, load_id)
        self.fs.create_dir(directory, recursive=True)
        path = f"{directory}/{sequence:06d}-{api}.json.zst"
        if isinstance(self.fs, pafs.S3FileSystem):  # an S3 object appears only whole
            with self.fs.open_output_stream(path) as out:
                out.write(compressed)
            return path
        # A file appears under its name only whole: a process killed mid-write leaves a
        # `.partial` that `pages` never reads, not a truncated page that stops a rebuild.
        partial = f"{path}.partial"
        # pyarrow wraps a `.zst` name in zstd by itself (and unwraps it on reading); the name
        # `.partial` hides that suffix, so ask for it: pages keep the one format stages have.
        with self.fs.open_output_stream(partial, compression="zstd") as out:
            out.write(compressed)
        self.fs.move(partial, path)
        return path

    def pages(self, site_id: str, collection: str) -> Iterator[StagedPage]:
        selector = pafs.FileSelector(
            self._dir(site_id, collection), allow_not_found=True, recursive=True
        )
        files = sorted(
            (
                info.path
                for info in self.fs.get_file_info(selector)
                if info.path.endswith(".json.zst")
            ),
        )
        decompressor = zstandard.ZstdDecompressor()
        for path in files:
            with self.fs.open_input_stream(path) as stream:
                payload = json.loads(
                    decompressor.decompress(stream.read(), max_output_size=1 << 31)
                )
            docs = payload.get("result", []) if isinstance(payload, dict) else payload
            api = path.rsplit("-", 1)[-1].removesuffix(".json.zst")
            yield StagedPage(path=path, api=api, docs=docs if isinstance(docs, list) else [])

    def site_ids(self) -> list[str]:
        selector = pafs.FileSelector(f"{self.root.rstrip('/')}/nightscout", allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        )
