"""Fast tests of the stack's parts that need no services: settings, supervisor, verified downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cascade.config import load_settings
from cascade.exceptions import ConfigurationError
from cascade_dev.stack import StackError
from cascade_dev.stack.downloads import MavenArtifact, fetch_maven
from cascade_dev.stack.process import ManagedProcess, tail, wait_until
from cascade_dev.stack.stack import _with_dependencies, logs
from cascade_dev.stack.trino import run_query as trino_query


# ---- settings ------------------------------------------------------------------------------------
def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in (
        "CASCADE_HOME",
        "CASCADE_STACK_HOME",
        "POSTGRES_PORT",
        "TRINO_PLUGINS",
        "NESSIE_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    settings = load_settings()
    assert settings.stack_home == (tmp_path / "home" / "stack").resolve()
    assert settings.stack.postgres_port == 55432
    assert settings.on_local_stack("dev").nessie.catalog_uri == "http://127.0.0.1:19120/iceberg/dev"
    assert "cascade-minio-secret" not in repr(settings)  # secrets stay hidden

    monkeypatch.setenv("CASCADE_STACK_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("TRINO_PLUGINS", "postgresql, iceberg")
    settings = load_settings()
    assert settings.stack_home == (tmp_path / "elsewhere").resolve()
    assert settings.stack.postgres_port == 6543
    assert settings.stack.trino_plugin_names == ["iceberg", "postgresql"]


def test_settings_refuse_a_short_minio_password() -> None:
    with pytest.raises(ConfigurationError, match="MINIO_ROOT_PASSWORD"):
        load_settings(minio_root_password="short")


def test_services_bring_their_dependencies() -> None:
    assert _with_dependencies(["trino"]) == ["postgres", "minio", "nessie", "trino"]
    assert _with_dependencies(["minio"]) == ["minio"]
    with pytest.raises(StackError, match="unknown service"):
        _with_dependencies(["spark"])


def test_logs_of_a_service_never_started(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="has no log yet"):
        logs(load_settings(cascade_stack_home=tmp_path), "trino")


# ---- supervisor ----------------------------------------------------------------------------------
def test_managed_process_start_stop_and_pid_file(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path / "run" / "sleeper.json", tmp_path / "sleeper.log")
    pid = proc.start(
        [sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert proc.pid() == pid
    with pytest.raises(StackError, match="already running"):
        proc.start([sys.executable, "-c", "pass"], env={}, cwd=tmp_path)
    wait_until(lambda: "hello" in tail(proc.log_path), timeout=10, what="sleeper")
    assert proc.stop(timeout=10) is True
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert proc.stop(timeout=1) is False


def test_a_reused_pid_is_never_taken_for_ours(tmp_path: Path) -> None:
    """A pid file whose pid now belongs to another process (other start time) is ignored."""
    proc = ManagedProcess("ghost", tmp_path / "ghost.json", tmp_path / "ghost.log")
    # this very test process: alive, but not started at the recorded time
    proc.pid_file.write_text(json.dumps({"pid": __import__("os").getpid(), "start_time": 1}))
    assert proc.pid() is None
    assert proc.stop(timeout=1) is False  # and nothing was signalled: we are still here


def test_wait_until_reports_a_dead_process_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("line one\nboom: port already in use\n")
    with pytest.raises(StackError, match=r"exited while starting(.|\n)*boom"):
        wait_until(lambda: False, timeout=5, what="svc", alive=lambda: False, log_path=log)


def test_wait_until_polls_past_failed_checks_without_sleeping_for_real() -> None:
    answers: list[bool | Exception] = [OSError("refused"), False, True]
    waits: list[float] = []

    def check() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer  # a probe that raises is "not yet"
        return answer

    wait_until(check, timeout=60, what="svc", interval=0.5, sleep=waits.append)
    assert waits == [0.5, 0.5] and answers == []


def test_wait_until_gives_up_after_its_timeout(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("still warming up\n")
    waits: list[float] = []
    with pytest.raises(StackError, match=r"svc: not healthy after 0s(.|\n)*warming up"):
        wait_until(lambda: False, timeout=0, what="svc", log_path=log, sleep=waits.append)
    assert waits == []  # out of time after the first check: no pause before giving up


def test_trino_query_asks_again_while_trino_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """502/503 mean "not yet": the same request again, every 0.2 s (here on a fake sleep)."""
    answers = [
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(200, json={"data": [[1]], "nextUri": "http://trino/v1/next"}),
        httpx.Response(502),
        httpx.Response(200, json={"data": [[2]]}),
    ]
    sent: list[str] = []
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # tenacity's default sleep calls it

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return answers.pop(0)

    rows = trino_query("http://trino", "select 1", transport=httpx.MockTransport(answer))
    assert rows == [[1], [2]]
    assert sent == ["POST /v1/statement"] * 3 + ["GET /v1/next"] * 2
    assert waits == [0.2] * 3


# ---- downloads -----------------------------------------------------------------------------------
@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny Maven-layout HTTP repository on loopback."""
    root = tmp_path / "repo"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def _publish(root: Path, artifact: MavenArtifact, data: bytes, *, sha1: str | None = None) -> None:
    path = root / artifact.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    Path(f"{path}.sha1").write_text((sha1 or hashlib.sha1(data).hexdigest()) + "\n")
    Path(f"{path}.sha512").write_text(hashlib.sha512(data).hexdigest() + "  " + path.name + "\n")


def test_fetch_maven_downloads_verifies_and_caches(
    repository: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = repository
    artifact = MavenArtifact("org.example", "server", "1.2.3", "jar", "runner")
    _publish(root, artifact, b"the real jar")
    cache = tmp_path / "cache"
    path = fetch_maven(artifact, url, cache)
    assert path.read_bytes() == b"the real jar"
    assert path == cache / "maven" / "org/example/server/1.2.3/server-1.2.3-runner.jar"
    # cached: served from disk even when the repository is gone
    (root / artifact.path).unlink()
    assert fetch_maven(artifact, url, cache) == path


def test_fetch_maven_rejects_a_corrupt_download(
    repository: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = repository
    artifact = MavenArtifact("org.example", "server", "1.2.3", "tar.gz")
    _publish(root, artifact, b"tampered bytes", sha1="0" * 40)
    with pytest.raises(StackError, match="checksum mismatch"):
        fetch_maven(artifact, url, tmp_path / "cache")
    assert not (tmp_path / "cache" / "maven" / artifact.path).exists()


def test_fetch_maven_names_a_version_the_registry_does_not_serve(
    repository: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = repository
    with pytest.raises(StackError, match="not served"):
        fetch_maven(MavenArtifact("org.example", "server", "9.9.9"), url, tmp_path / "cache")
