"""Settings read from the environment, with Buildbot's usual names and safe local defaults.

One frozen object is built once per (re)configuration and handed to every module, so no
module reads ``os.environ`` on its own and tests can build settings from a plain dict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

#: The repository this package lives in (``src/matrixgate`` -> repo root).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """An environment variable holds a value Matrix Gate cannot use."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={raw!r}: port out of range 1-65535")
    return port


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a whole number") from None
    if not 1 <= value <= 100:
        raise SettingsError(f"{name}={raw!r}: out of range 1-100")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a number of seconds") from None
    if not value >= 0:      # also refuses nan
        raise SettingsError(f"{name}={raw!r}: must be 0 or more seconds")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _path(env: Mapping[str, str], name: str, default: Path, base: Path) -> Path:
    raw = env.get(name, "").strip()
    path = Path(raw).expanduser() if raw else default
    return path if path.is_absolute() else (base / path)


@dataclass(frozen=True)
class Settings:
    basedir: Path                 # the Buildbot master directory
    web_port: int = 8010
    web_host: str = "127.0.0.1"
    worker_port: int = 9989
    worker_host: str = "127.0.0.1"
    db_url: str = ""
    web_url: str = ""
    repo_url: str = ""
    matrix_path: Path = PROJECT_ROOT / "matrix" / "matrix.yaml"
    workers_path: Path = PROJECT_ROOT / "workers" / "workers.yaml"
    secrets_dir: Path = Path()
    evidence_dir: Path = Path()
    poll_interval: float = 60.0
    #: Overrides every leg's ``wait_for_worker`` (tests shorten it); 0 = use the matrix.
    wait_for_worker_override: float = 0.0
    #: How often the master looks for requests that no connected worker can take.
    wait_check_interval: float = 15.0
    #: Gates that may run at the same time (each holds an in-master worker, no leg worker).
    parallel_gates: int = 8
    #: Seconds an extra gate worker (``gate_2`` …) stays attached without a gate to run.
    gate_slot_idle: float = 300.0
    #: SQLite's ``synchronous`` pragma: "normal" (WAL commits without an fsync each; see
    #: ``dbtuning``) or "full" (SQLite's default).
    sqlite_synchronous: str = "normal"

    @property
    def db_display(self) -> str:
        """The DB URL without its password, for logs."""
        url = self.db_url
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url


def from_env(basedir: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings for the master in ``basedir`` from ``env`` (default: os.environ)."""
    env = os.environ if env is None else env
    basedir = Path(basedir).resolve()
    web_port = _port(env, "BUILDBOT_WEB_PORT", 8010)
    web_host = env.get("BUILDBOT_WEB_HOST", "").strip() or "127.0.0.1"
    web_url = env.get("BUILDBOT_WEB_URL", "").strip() or f"http://localhost:{web_port}/"
    if not web_url.endswith("/"):
        web_url += "/"
    db_url = env.get("BUILDBOT_DB_URL", "").strip() or "sqlite:///state.sqlite"
    return Settings(
        basedir=basedir,
        web_port=web_port,
        web_host=web_host,
        worker_port=_port(env, "BUILDBOT_WORKER_PORT", 9989),
        worker_host=env.get("BUILDBOT_WORKER_HOST", "").strip() or "127.0.0.1",
        db_url=db_url,
        web_url=web_url,
        repo_url=env.get("GATE_REPO_URL", "").strip(),
        matrix_path=_path(env, "GATE_MATRIX", PROJECT_ROOT / "matrix" / "matrix.yaml", PROJECT_ROOT),
        workers_path=_path(env, "GATE_WORKERS", PROJECT_ROOT / "workers" / "workers.yaml", PROJECT_ROOT),
        secrets_dir=_path(env, "GATE_SECRETS_DIR", basedir / "secrets", basedir),
        evidence_dir=_path(env, "GATE_EVIDENCE_DIR", basedir / "evidence", basedir),
        poll_interval=_seconds(env, "GATE_POLL_INTERVAL", 60.0),
        wait_for_worker_override=_seconds(env, "GATE_WAIT_FOR_WORKER", 0.0),
        wait_check_interval=_seconds(env, "GATE_WAIT_CHECK_INTERVAL", 15.0),
        parallel_gates=_count(env, "GATE_PARALLEL_GATES", 8),
        gate_slot_idle=_seconds(env, "GATE_SLOT_IDLE", 300.0),
        sqlite_synchronous=_choice(env, "GATE_SQLITE_SYNCHRONOUS", ("normal", "full"), "normal"),
    )
