"""Runs `cascade` commands as forked children of one interpreter that has already imported Cascade.

`python -m cascade ingest` spends about three seconds importing PyIceberg, PyArrow and SQLAlchemy
on the CI machine before it reads a single page. The reliability suite starts well over a hundred
ingest processes, so it starts them from this fork server instead: one interpreter imports
Cascade once, starts no thread, and forks a child per command. The child sets its environment,
working directory, argv and output files and calls `cascade.cli.app.main`, exactly what the
`cascade` script does; it is a separate process with its own pid, killed with SIGKILL like any
other. Children can be held at a gate and let go at the same instant, so concurrent writers
really race (separately started interpreters would be seconds apart).

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
  {"op": "spawn", "argv": [...], "env": {...}, "cwd": "...", "out": "path", "err": "path"}
      -> {"pid": 1234}
  {"op": "spawn", ..., "gated": true} -> {"pid": 1234}: the child waits for the next "open"
  {"op": "open"} -> {"opened": true}: every gated child starts at the same instant
  {"op": "wait", "pid": 1234, "timeout": 60}
      -> {"returncode": 0}   (negative: killed by that signal; null: still running at timeout)
End of stdin: every child still running is killed and reaped, then the server exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _child(request: dict[str, Any], gate: tuple[int, int] | None) -> None:
    """In the forked child: become `cascade <argv>` and never return."""
    code = 1
    try:
        if gate is not None:
            os.close(gate[1])
            if request.get("gated"):
                os.read(gate[0], 1)  # end of file once the server closes the gate's last writer
            os.close(gate[0])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request["out"]), (2, request["err"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["cascade", *request["argv"]]
        from cascade.cli.app import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _exit_code(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


#: What an ingest imports, some of it only when it first needs it: imported once, here.
PRELOAD = (
    "cascade.cli.app",
    "cascade.cli.render",
    "cascade.lake.ingest",
    "pyiceberg.catalog.sql",
    "pyiceberg.catalog.rest",
    "pyiceberg.io.pyarrow",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.orm",
    "httpcore",
    "h11",
    "certifi",
)


def serve() -> None:
    # Imported once, and no thread started (a fork copies only the thread that forks).
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if threading.active_count() != 1:  # a fork would copy a lock some other thread holds
        raise SystemExit(f"the fork server has {threading.active_count()} threads, not 1")
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()

    children: set[int] = set()
    gate: tuple[int, int] | None = None  # a pipe: gated children start when it is closed
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        if request["op"] == "spawn":
            if request.get("gated") and gate is None:
                gate = os.pipe()
            pid = os.fork()
            if pid == 0:
                _child(request, gate)
            children.add(pid)
            answer: dict[str, Any] = {"pid": pid}
        elif request["op"] == "open":
            if gate is not None:
                os.close(gate[1])
                os.close(gate[0])
                gate = None
            answer = {"opened": True}
        elif request["op"] == "wait":
            returncode = _wait(int(request["pid"]), float(request["timeout"]))
            if returncode is not None:
                children.discard(int(request["pid"]))
            answer = {"returncode": returncode}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


# ---- the parent's side (only the standard library is imported above, so both sides load fast)


class ForkServer:
    """The parent's handle on a fork server: spawn `cascade` commands, kill them, wait for them."""

    def __init__(self, python: str = sys.executable) -> None:
        self._process = subprocess.Popen(
            [python, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self._process.stdout is not None
        if not self._process.stdout.readline():  # {"ready": true}: Cascade is imported
            raise RuntimeError(f"the fork server did not start ({self._process.wait()})")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: Path, logs: Path, *, gated: bool = False
    ) -> int:
        """Start `cascade <argv>`; its stdout and stderr go to `<logs>.out` and `<logs>.err`.
        A `gated` child waits for `open()`, so that several start at the same instant."""
        answer = self._ask(
            {
                "op": "spawn",
                "argv": argv,
                "env": env,
                "cwd": str(cwd),
                "out": f"{logs}.out",
                "err": f"{logs}.err",
                "gated": gated,
            }
        )
        return int(answer["pid"])

    def open(self) -> None:
        """Let every gated child go."""
        self._ask({"op": "open"})

    def wait(self, pid: int, timeout: float = 300) -> int:
        """The child's exit code (negative: the signal that killed it); raises on timeout."""
        returncode = self._ask({"op": "wait", "pid": pid, "timeout": timeout})["returncode"]
        if returncode is None:
            os.kill(pid, signal.SIGKILL)
            self._ask({"op": "wait", "pid": pid, "timeout": 30})
            raise TimeoutError(f"cascade process {pid} still running after {timeout}s: killed")
        return int(returncode)

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL the child (a no-op on one that has already exited and awaits its `wait`)."""
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()


if __name__ == "__main__":
    serve()
