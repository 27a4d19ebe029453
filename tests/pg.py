"""A throw-away PostgreSQL cluster for tests (real server, no mocks).

`PgCluster.start()` runs initdb and pg_ctl from /usr/lib/postgresql/*/bin in a
temporary directory, listening on 127.0.0.1 at a free port and on a unix
socket in the same directory; `create_database(name)` gives each test its own
database; `stop()` shuts the server down and removes the directory.

PostgreSQL refuses to run as root: when the tests run as root the server runs
as the `postgres` system user (or `nobody`) through `runuser`.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.procs import free_port

SUPERUSER = "vks"


class PgUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine (scripts/system-packages.sh installs them)."""


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if not found:
        raise PgUnavailable("initdb not found under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class PgCluster:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.tmp = Path(tempfile.mkdtemp(prefix="vks-pg-"))
        self.datadir = self.tmp / "data"
        self.port = free_port()
        self.run_as: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self.run_as = name
                break
            else:
                raise PgUnavailable("running as root and no postgres/nobody user to run the server as")
            user = pwd.getpwnam(self.run_as)
            os.chown(self.tmp, user.pw_uid, user.pw_gid)
        self._started = False

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> PgCluster:
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                  "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.tmp} -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.tmp / "log"),
                  "-o", opts, "-w", "-t", "60", "start")
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        """A `postgresql://` URL in the form the controller's --db takes."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.tmp), "-p", str(self.port), "-U", SUPERUSER,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
            capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {proc.stderr}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._started:
            subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m",
                                     "immediate", "-w", "stop"), capture_output=True, timeout=60)
            self._started = False
        shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":  # manual use: python tests/pg.py -> prints a URL, Ctrl-C stops
    c = PgCluster().start()
    print(c.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        c.stop()
