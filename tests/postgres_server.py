"""A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, started on
127.0.0.1 with a free port (and a unix socket in that folder), stopped and deleted after.

    with PostgresServer(tmp_path) as server:
        server.url          # postgresql://dptune@127.0.0.1:<port>/dptune (the README's form)
        server.restart()    # stop (fast: connections are cut) and start again, same data

PostgreSQL refuses to run as root; as root (CI), the server runs as `nobody` (runuser or
setpriv), its folder owned by that user. `postgres_or_skip()` skips a test when the binaries
are missing, saying how to install them (Debian: `apt-get install -y postgresql`).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

INSTALL = "apt-get install -y postgresql"


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (PATH, then Debian's /usr/lib/postgresql/*/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl") and shutil.which("postgres"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all((Path(candidate) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def postgres_or_skip() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL is not installed (initdb, pg_ctl, postgres); install it with `{INSTALL}`")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed: .venv/bin/pip install -r requirements.txt")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None, user: str = "dptune", database: str = "dptune"):
        self.bin_dir = bin_dir or postgres_or_skip()
        self.user, self.database = user, database
        self.root = Path(tempfile.mkdtemp(prefix="dptune-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", "nobody", "--", *command]
            else:
                command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr[-2000:]}\n{log}")
        return result

    def __enter__(self) -> PostgresServer:
        if self.as_root:
            os.chmod(self.root, 0o777)
            shutil.chown(self.root, user="nobody")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\nmax_connections = 200\n")
        self.start()
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop", check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
