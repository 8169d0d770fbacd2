"""A clean environment for `cascade` subprocesses, and a fake Nightscout served as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_support import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_"))
    }
    return dict(base, CASCADE_HOME=str(tmp_path / "lake"), COLUMNS="200")


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[dict[str, str]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cascade",
            "nightscout",
            "serve",
            "--port",
            str(port),
            "--subjects",
            "2",
            "--days",
            "2",
            "--api-secret",
            "clinic-secret-123",
            "--token",
            "reader-0123456789",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The server prints NIGHTSCOUT_SITES once it listens: read its output, rather than poll it.
    lines: list[str] = []
    listening = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("NIGHTSCOUT_SITES="):
                listening.set()
        listening.set()  # the process ended: let the check below say so

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        assert listening.wait(60) and process.poll() is None, "".join(lines)
        httpx.get(f"http://127.0.0.1:{port}/subject-01/api/v3/version", timeout=5)
        sites = [
            {
                "id": f"subject-0{i}",
                "url": f"http://127.0.0.1:{port}/subject-0{i}",
                "token": "reader-0123456789",
            }
            for i in (1, 2)
        ]
        yield dict(env, NIGHTSCOUT_SITES=json.dumps(sites))
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(10)
        output = "".join(lines)
        assert "clinic-secret-123" not in output and "reader-0123456789" not in output
