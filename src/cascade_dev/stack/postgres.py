"""PostgreSQL from Debian's packages: one cluster under the stack home, run as the `postgres` user.

The server refuses to run as root, so initdb, pg_ctl and psql run as `postgres` (runuser) and the
data directory is chowned to it. The cluster listens on the stack host and port only, with its
Unix socket in the stack home (so it never clashes with a system cluster). Databases, each owned
by its own login role: nessie, dagster, superset, marts; plus `bi_reader`, which can only read
the marts database.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from cascade.config import Settings
from cascade_dev.stack.process import StackError, port_in_use, wait_until

log = logging.getLogger(__name__)

SERVICE_USER = "postgres"


@dataclass(frozen=True)
class Database:
    name: str
    owner: str
    password_field: str  # the stack settings field holding the owner's password


DATABASES = (
    Database("nessie", "nessie", "nessie_db_password"),
    Database("dagster", "dagster", "dagster_db_password"),
    Database("superset", "superset", "superset_db_password"),
    Database("marts", "marts", "marts_db_password"),
)
BI_READER = "bi_reader"


def _bin_dir() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin)."""
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def ensure_installed() -> Path:
    """Install Debian's `postgresql` if its server binaries are missing; return their directory."""
    found = _bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise StackError(
            "PostgreSQL is not installed and installing it needs root: apt-get install -y postgresql"
        )
    log.info("installing PostgreSQL from Debian's packages (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(
                f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    found = _bin_dir()
    if found is None:
        raise StackError(
            "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin/pg_ctl was found"
        )
    return found


class Postgres:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.stack_home / "postgres"
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "run"
        self.log_path = settings.stack_home / "logs" / "postgres.log"

    # ---- helpers -------------------------------------------------------------------------------
    def _as_postgres(
        self, argv: list[str], *, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        tool = Path(argv[0]).name
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        elif pwd.getpwuid(os.geteuid()).pw_name != SERVICE_USER:
            raise StackError(
                "the stack's PostgreSQL runs as the 'postgres' user: run `cascade stack` as root"
            )
        result = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, cwd="/"
        )
        if check and result.returncode != 0:
            raise StackError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def _bin(self, tool: str) -> str:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL is not installed (run `cascade stack up`)")
        return str(bin_dir / tool)

    def _chown(self, path: Path) -> None:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        """The postgres user must be able to walk down to the data directory."""
        result = self._as_postgres(["test", "-x", str(self.home)], check=False)
        if result.returncode != 0:
            raise StackError(
                f"the 'postgres' user cannot reach {self.home}: a parent directory is not searchable by others "
                "(chmod o+x it, or set CASCADE_STACK_HOME to a directory under a world-searchable path)"
            )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; return psql's unaligned output."""
        result = self._as_postgres(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.stack.postgres_port),
                "-U",
                SERVICE_USER,
                "-d",
                database,
                "-f",
                "-",
            ],
            input_text=sql,
        )
        return result.stdout.strip()

    # ---- lifecycle -----------------------------------------------------------------------------
    def install(self) -> None:
        ensure_installed()

    def _initdb(self) -> None:
        for directory in (self.home, self.socket_dir, self.log_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        self._chown(self.home)
        self._chown(self.socket_dir)
        self._check_reachable()
        if (self.data_dir / "PG_VERSION").exists():
            return
        log.info("initialising the PostgreSQL cluster in %s", self.data_dir)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster from an interrupted initdb
        pwfile = self.home / ".pwfile"
        pwfile.write_text(self.settings.stack.postgres_password.get_secret_value() + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            self._as_postgres(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SERVICE_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(
                "\n# cascade stack: ports and sockets come from this file, rewritten on every `up`\n"
                "include_if_exists = 'cascade.conf'\n"
            )

    def _write_conf(self) -> None:
        conf = self.data_dir / "cascade.conf"
        conf.write_text(
            "# Written by `cascade stack up` from the environment; edits are overwritten.\n"
            f"listen_addresses = '{self.settings.stack.host}'\n"
            f"port = {self.settings.stack.postgres_port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 100\n"
            "shared_buffers = 256MB\n"
            "logging_collector = off\n"
        )
        self._chown(conf)
        # the log file is written by the server, which runs as postgres
        self.log_path.touch(exist_ok=True)
        self._chown(self.log_path)

    def server_pid(self) -> int | None:
        """The postmaster's pid from our data directory, if it is alive."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            if b"postgres" not in cmdline.read_bytes():
                return None
        except OSError:
            return None
        return pid

    def is_running(self) -> bool:
        return self.server_pid() is not None

    def pid(self) -> int | None:
        return self.server_pid()

    def healthy(self) -> bool:
        if not self.is_running():
            return False
        result = self._as_postgres(
            [
                self._bin("pg_isready"),
                "-q",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.stack.postgres_port),
            ],
            check=False,
        )
        if result.returncode != 0:
            return False
        return self.psql("SELECT 1") == "1"

    def start(self) -> None:
        self._initdb()
        self._write_conf()
        if port_in_use(self.settings.stack.host, self.settings.stack.postgres_port):
            raise StackError(
                f"port {self.settings.stack.postgres_port} is taken by another process: set POSTGRES_PORT to a free port"
            )
        log.info(
            "starting PostgreSQL on %s:%s",
            self.settings.stack.host,
            self.settings.stack.postgres_port,
        )
        # pg_ctl starts the server in the background and returns; -w waits until it accepts connections.
        self._as_postgres(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self.settings.stack.start_timeout_seconds)),
                "start",
            ]
        )

    def wait_healthy(self) -> None:
        wait_until(
            self.healthy,
            timeout=self.settings.stack.start_timeout_seconds,
            what="PostgreSQL",
            alive=self.is_running,
            log_path=self.log_path,
        )

    def stop(self) -> bool:
        if not self.is_running():
            return False
        log.info("stopping PostgreSQL")
        self._as_postgres(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(self.settings.stack.stop_timeout_seconds)),
                "stop",
            ]
        )
        return True

    # ---- provisioning --------------------------------------------------------------------------
    def provision(self) -> None:
        """Create (or update the passwords of) every role and database; idempotent."""
        statements: list[str] = []
        for db in DATABASES:
            password: SecretStr = getattr(self.settings.stack, db.password_field)
            statements.append(_ensure_role(db.owner, password))
        statements.append(_ensure_role(BI_READER, self.settings.stack.bi_reader_password))
        self.psql("\n".join(statements))
        existing = set(self.psql("SELECT datname FROM pg_database").split())
        for db in DATABASES:
            if db.name not in existing:
                self.psql(f'CREATE DATABASE "{db.name}" OWNER "{db.owner}" ENCODING \'UTF8\'')
            self.psql(
                f'REVOKE ALL ON DATABASE "{db.name}" FROM PUBLIC; '
                f'GRANT ALL ON DATABASE "{db.name}" TO "{db.owner}";'
            )
        # bi_reader: connect to marts and read whatever the marts role creates, nothing else.
        self.psql(f'GRANT CONNECT ON DATABASE marts TO "{BI_READER}";')
        self.psql(
            f'GRANT USAGE ON SCHEMA public TO "{BI_READER}";\n'
            f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{BI_READER}";\n'
            f'ALTER DEFAULT PRIVILEGES FOR ROLE marts GRANT SELECT ON TABLES TO "{BI_READER}";\n'
            f'ALTER DEFAULT PRIVILEGES FOR ROLE marts GRANT USAGE ON SCHEMAS TO "{BI_READER}";\n',
            database="marts",
        )

    def endpoint(self) -> str:
        return f"postgresql://{self.settings.stack.host}:{self.settings.stack.postgres_port}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_role(role: str, password: SecretStr) -> str:
    secret = _literal(password.get_secret_value())
    # psql's \gexec runs the generated statement only when the SELECT returns a row.
    return (
        f"SELECT 'CREATE ROLE \"{role}\" LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(role)})\\gexec\n"
        f'ALTER ROLE "{role}" LOGIN PASSWORD {secret};\n'
    )
