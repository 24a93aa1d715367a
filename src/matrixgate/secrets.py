"""Secrets: a secrets directory first, then the environment.  Never the repository.

Buildbot's ``SecretInAFile`` reads ``GATE_SECRETS_DIR/<name>``; the environment provider
maps a secret name to ``GATE_SECRET_<NAME>`` (upper case, ``-``/``.`` -> ``_``), for
hosts where secrets arrive as environment variables (systemd credentials, CI vaults).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from buildbot.secrets.providers.base import SecretProviderBase
from buildbot.secrets.providers.file import SecretInAFile


def env_name(secret: str) -> str:
    return "GATE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", secret).upper()


class SecretInEnvironment(SecretProviderBase):
    name = "SecretInEnvironment"

    def reconfigService(self, environ=None):
        self.environ = dict(os.environ if environ is None else environ)

    def get(self, entry):
        return self.environ.get(env_name(entry))


def ensure_secrets_dir(path: Path) -> Path:
    """SecretInAFile refuses a directory others can read: create it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def providers(secrets_dir: Path) -> list:
    ensure_secrets_dir(secrets_dir)
    return [SecretInAFile(dirname=str(secrets_dir)), SecretInEnvironment()]


def read_secret(secrets_dir: Path, name: str, environ=None) -> str | None:
    """The same lookup, synchronously, for config-time needs (e.g. the users file)."""
    environ = os.environ if environ is None else environ
    path = secrets_dir / name
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return environ.get(env_name(name))
