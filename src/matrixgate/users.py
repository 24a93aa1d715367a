"""The users file: ``GATE_SECRETS_DIR/users``, one user a line, passwords hashed.

Line format: ``name:pbkdf2_sha256$<iterations>$<salt>$<hash>:role,role``.  Every user
has the role ``users``; ``releasers`` may start real gates and publish.  The file lives in
the secrets directory, never in the repository; it is re-read on every login, so adding
a user needs no restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets as pysecrets
from dataclasses import dataclass
from pathlib import Path

ITERATIONS = 200_000
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ROLE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
FILE_NAME = "users"


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    roles: tuple[str, ...]


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"pbkdf2_sha256${iterations}${b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def parse(text: str) -> dict[str, User]:
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not USERNAME_RE.match(parts[0]):
            raise ValueError(f"users file line {number}: expected name:hash:roles")
        roles = tuple(r for r in parts[2].split(",") if r)
        bad = [r for r in roles if not ROLE_RE.match(r)]
        if bad:
            raise ValueError(f"users file line {number}: bad role name {bad[0]!r}")
        users[parts[0]] = User(parts[0], parts[1], roles)
    return users


def load(path: Path) -> dict[str, User]:
    if not path.is_file():
        return {}
    return parse(path.read_text(encoding="utf-8"))


def save(path: Path, users: dict[str, User]) -> None:
    lines = ["# Matrix Gate users: name:pbkdf2 hash:roles  (manage with `matrixgate user`)"]
    lines += [f"{u.name}:{u.password_hash}:{','.join(u.roles)}" for u in sorted(users.values(), key=lambda u: u.name)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def set_user(path: Path, name: str, password: str, roles: tuple[str, ...]) -> User:
    if not USERNAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid user name")
    users = load(path)
    user = User(name, hash_password(password), tuple(roles))
    users[name] = user
    save(path, users)
    return user


def ensure_admin(path: Path) -> str | None:
    """First start of the embedded default: an ``admin`` releaser with a random password.

    Returns the new password (to print once) or None when the file already exists.
    """
    if path.exists():
        return None
    password = pysecrets.token_urlsafe(12)
    set_user(path, "admin", password, ("releasers", "admins"))
    return password
