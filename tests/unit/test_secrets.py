"""Secrets from a directory, then the environment (src/matrixgate/secrets.py)."""

from __future__ import annotations

import stat

from buildbot.secrets.providers.file import SecretInAFile

from matrixgate import secrets


def test_env_name():
    assert secrets.env_name("worker-kvm-1") == "GATE_SECRET_WORKER_KVM_1"
    assert secrets.env_name("api.token") == "GATE_SECRET_API_TOKEN"


def test_secret_in_environment():
    provider = secrets.SecretInEnvironment()
    provider.reconfigService(environ={"GATE_SECRET_GIT_HOOK_SECRET": "s3", "OTHER": "x"})
    assert provider.get("git-hook-secret") == "s3"
    assert provider.get("other") is None


def test_providers_make_a_private_directory(tmp_path):
    path = tmp_path / "secrets"
    found = secrets.providers(path)
    assert [type(p) for p in found] == [SecretInAFile, secrets.SecretInEnvironment]
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    path.chmod(0o755)                                     # tightened again on the next start
    secrets.ensure_secrets_dir(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_read_secret_file_first_then_environment(tmp_path):
    (tmp_path / "users-key").write_text("from-file\n")
    env = {"GATE_SECRET_USERS_KEY": "from-env", "GATE_SECRET_ONLY_ENV": "env-only"}
    assert secrets.read_secret(tmp_path, "users-key", env) == "from-file"
    assert secrets.read_secret(tmp_path, "only-env", env) == "env-only"
    assert secrets.read_secret(tmp_path, "missing", env) is None
