"""A private PostgreSQL server for the integration tests: ``initdb`` into a temporary
directory, ``pg_ctl start`` on a free loopback port, one database per master, stopped at
the end.  Nothing touches the host's own clusters.

Run as root (as here), every PostgreSQL binary runs as the ``postgres`` user through
``runuser`` (PostgreSQL refuses to run as root), and the data directory is owned by it.
The superuser has a password and TCP connections need it (scram-sha-256), so the masters
connect with a URL carrying a password, the way a production master would; local
socket connections (used only to create databases) are trusted.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port

PASSWORD = "test-postgres-password"


def find_bindir() -> Path | None:
    """PostgreSQL's binaries: ``MATRIXGATE_PG_BINDIR``, the newest Debian
    ``/usr/lib/postgresql/<version>/bin``, or ``initdb`` on PATH."""
    override = os.environ.get("MATRIXGATE_PG_BINDIR", "").strip()
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted((p for p in debian.iterdir() if (p / "bin" / "initdb").exists()),
                          key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)] or [0])
        if versions:
            return versions[-1] / "bin"
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def unavailable_reason() -> str | None:
    """Why a private PostgreSQL cannot run here, or None if it can."""
    if find_bindir() is None:
        return ("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH; "
                "`scripts/bootstrap.sh test` installs it)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` user to run PostgreSQL as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (psycopg[binary]) is not installed in this virtual environment"
    return None


class PrivatePostgres:
    """One throw-away PostgreSQL server (``start`` / ``stop`` / ``create_database``)."""

    def __init__(self, name: str = "matrixgate"):
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError(unavailable_reason())
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: that is root-only (0700) and postgres could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix=f"{name}-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root              # the -k socket directory
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        self.databases: list[str] = []
        if self.as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)

    # --- running PostgreSQL's tools ------------------------------------------------------
    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True):
        argv = [str(self.bindir / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n"
                               f"--- postgres log ---\n{self.log_tail()}")
        return out

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- life cycle ------------------------------------------------------------------------
    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-instructions",
                      "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                      # throw-away data: no need to wait for the disk
                      "--no-sync", timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   # fsync off only risks data if the *host* crashes; a killed PostgreSQL still
                   # recovers every committed transaction (synchronous_commit stays on).
                   "-c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "60",
                  "start", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is the closest to a crash: no clean shutdown, connections cut."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90,
                      check=False)

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- databases -------------------------------------------------------------------------
    def create_database(self, prefix: str = "master", driver: str = "psycopg") -> str:
        """A new, empty database; returns the SQLAlchemy URL a master uses for it
        (``driver=""``: plain ``postgresql://``, which SQLAlchemy 2.1 maps to psycopg 3)."""
        name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{len(self.databases) + 1}_{int(time.time() * 1000) % 10**8}".lower())
        self._run("createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", name)
        self.databases.append(name)
        return self.url(name, driver)

    def url(self, database: str, driver: str = "psycopg") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        return self._run("psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-At", "-c", sql).stdout.strip()
