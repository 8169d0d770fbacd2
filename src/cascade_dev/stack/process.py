"""A small process supervisor: start a server detached, remember it in a pid file, stop only it.

A pid file records the pid *and* the kernel's start time of that process, so a pid reused by an
unrelated process after a reboot or a crash is never mistaken for ours (and never signalled).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from cascade.exceptions import CascadeError

if TYPE_CHECKING:
    from cascade.config import Settings

log = logging.getLogger(__name__)


class StackError(CascadeError):
    """A service of the local stack could not be installed, started, checked or stopped."""


def _proc_start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this Python process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 100) -> str:
    """The last `lines` lines of a text file ('' if it does not exist)."""
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block = 64 * 1024
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_path: Path | None = None,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll `check` until it is true; fail fast if the process died, with the end of its log."""

    def ready() -> bool:
        try:
            if check():
                return True
        except Exception:  # a health probe that raises is just "not yet"
            pass
        if alive is not None and not alive():
            raise StackError(f"{what}: the process exited while starting{_log_excerpt(log_path)}")
        return False

    if not poll(ready, timeout=timeout, interval=interval, sleep=sleep):
        raise StackError(f"{what}: not healthy after {timeout:.0f}s{_log_excerpt(log_path)}")


def poll(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call `ready` every `interval` seconds until it is true (True) or `timeout` has passed (False).

    What `ready` raises is not caught: it ends the wait at once (tenacity retries only a False).
    """
    polling = Retrying(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        sleep=sleep,
        retry_error_callback=lambda state: False,
    )
    return bool(polling(ready))


def _log_excerpt(log_path: Path | None, lines: int = 25) -> str:
    if log_path is None:
        return ""
    excerpt = tail(log_path, lines)
    return (
        f" (log: {log_path})\n--- last lines of the log ---\n{excerpt}"
        if excerpt
        else f" (log: {log_path})"
    )


@dataclass(frozen=True)
class ManagedProcess:
    """One long-running server process started by the stack, known by its pid file."""

    name: str
    pid_file: Path
    log_path: Path

    def pid(self) -> int | None:
        """The pid of our running process, or None (no pid file, process gone, or pid reused)."""
        try:
            record = json.loads(self.pid_file.read_text())
            pid, started = int(record["pid"]), int(record["start_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        _reap(pid)
        return pid if _proc_start_time(pid) == started else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> int:
        """Start `argv` in its own session, output appended to the log; record it in the pid file."""
        if self.is_running():
            raise StackError(f"{self.name} is already running (pid file {self.pid_file})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(
                f"\n==== cascade stack: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode()
            )
            log.flush()
            try:
                process = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=dict(env),
                    start_new_session=True,  # not killed by a Ctrl-C meant for the CLI
                    close_fds=True,
                )
            except OSError as exc:
                raise StackError(f"could not start {self.name} ({argv[0]}): {exc}") from exc
        started = _proc_start_time(process.pid)
        if started is None:
            process.wait()
            raise StackError(f"{self.name} exited at once{_log_excerpt(self.log_path)}")
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"pid": process.pid, "start_time": started, "argv": list(argv)[:3]})
        )
        tmp.replace(self.pid_file)
        return process.pid

    def stop(self, timeout: float) -> bool:
        """SIGTERM our process group, SIGKILL after `timeout`. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._signal(pid, signal.SIGTERM)
        # Often not our child (an earlier `cascade stack up` started it): no exit to wait on, so poll.
        if not poll(self._gone, timeout=timeout, interval=0.2):
            self._signal(pid, signal.SIGKILL)
            poll(self._gone, timeout=10, interval=0.2)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _gone(self) -> bool:
        return self.pid() is None

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # The process leads its own session (start_new_session), so its group id is its pid:
        # signalling the group also reaches helpers it forked, and nothing else.
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


class ProcessService:
    """Lifecycle shared by the services the stack runs as one managed process (MinIO, Nessie,
    Trino): running and pid from the pid file, waiting until healthy, stopping."""

    label: str  # how messages name the service
    health_interval: float = 0.5
    settings: Settings
    process: ManagedProcess
    log_path: Path

    def healthy(self) -> bool:
        raise NotImplementedError

    def is_running(self) -> bool:
        return self.process.is_running()

    def pid(self) -> int | None:
        return self.process.pid()

    def wait_healthy(self) -> None:
        wait_until(
            self.healthy,
            timeout=self.settings.stack.start_timeout_seconds,
            what=self.label,
            alive=self.is_running,
            log_path=self.log_path,
            interval=self.health_interval,
        )

    def stop(self) -> bool:
        if self.is_running():
            log.info("stopping %s", self.label)
        return self.process.stop(self.settings.stack.stop_timeout_seconds)
