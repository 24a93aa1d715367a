"""The embedded default: one command runs the gate on this machine.

State lives under ``state/`` (ignored by git): the example platform as a bare git
repository (made from ``examples/platform`` at first run), the master directory with
SQLite and two local workers, and a secrets directory with generated local secrets.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import users
from .secrets import ensure_secrets_dir
from .settings import PROJECT_ROOT

EXAMPLE_SOURCE = PROJECT_ROOT / "examples" / "platform"
EXAMPLE_MATRIX = PROJECT_ROOT / "matrix" / "example-platform.yaml"
#: Secrets the demo generates once; production puts real ones in GATE_SECRETS_DIR.
DEMO_SECRETS = ("git-hook-secret", "github-webhook-secret", "gitlab-webhook-secret")


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Example Dev", GIT_AUTHOR_EMAIL="dev@example.invalid",
               GIT_COMMITTER_NAME="Example Dev", GIT_COMMITTER_EMAIL="dev@example.invalid")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_example_repo(bare: Path, source: Path = EXAMPLE_SOURCE, tag: str | None = None) -> str:
    """A bare repository holding ``source`` as one commit on ``main``; returns the commit."""
    with tempfile.TemporaryDirectory(prefix="matrixgate-example-") as tmp:
        work = Path(tmp) / "platform"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__", "target", "*.pyc"))
        git("init", "-q", "-b", "main", cwd=work)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "Example platform", cwd=work)
        if tag:
            git("tag", tag, cwd=work)
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--bare", str(work), str(bare))
        return git("rev-parse", "HEAD", cwd=work).strip()


def create_master(master_dir: Path, db_url: str | None = None) -> None:
    """``buildbot create-master`` bound to this repository's master.cfg."""
    if (master_dir / "buildbot.tac").exists():
        return
    buildbot = Path(sys.executable).with_name("buildbot")
    args = [str(buildbot), "create-master", "-r", f"--config={PROJECT_ROOT / 'master.cfg'}"]
    if db_url:
        args.append(f"--db={db_url}")
    subprocess.run(args + [str(master_dir)], check=True, capture_output=True, text=True)
    sample = master_dir / "master.cfg.sample"
    if sample.exists():
        sample.unlink()


def prepare(state: Path) -> dict[str, str]:
    """Everything the demo needs on disk; returns the environment for the master."""
    state = state.resolve()
    repo = state / "example-platform.git"
    if not repo.exists():
        make_example_repo(repo)
        print(f"created the example platform repository: {repo}")
    master_dir = state / "master"
    create_master(master_dir)
    secrets_dir = ensure_secrets_dir(master_dir / "secrets")
    for name in DEMO_SECRETS:
        path = secrets_dir / name
        if not path.exists():
            path.write_text(pysecrets.token_hex(20) + "\n")
            os.chmod(path, 0o600)
    password = users.ensure_admin(secrets_dir / users.FILE_NAME)
    if password:
        print("=" * 72)
        print(f"  Web login created: user 'admin', password '{password}'")
        print(f"  (stored hashed in {secrets_dir / users.FILE_NAME}; shown only this once)")
        print("=" * 72)
    env = {
        "GATE_REPO_URL": str(repo),
        "GATE_MATRIX": str(EXAMPLE_MATRIX),
        "GATE_POLL_INTERVAL": os.environ.get("GATE_POLL_INTERVAL", "10"),
    }
    return {**env, **{k: v for k, v in os.environ.items() if k.startswith(("GATE_", "BUILDBOT_"))}}


def run(state: Path) -> int:
    env = prepare(state)
    master_dir = Path(state).resolve() / "master"
    port = os.environ.get("BUILDBOT_WEB_PORT", "8010")
    print(f"Matrix Gate: UI on http://localhost:{port}/  (Ctrl-C stops it)")
    print(f"  push a tag matching the release pattern to {env['GATE_REPO_URL']} to start a gate")
    buildbot = Path(sys.executable).with_name("buildbot")
    os.environ.update(env)
    os.execv(str(buildbot), [str(buildbot), "start", "--nodaemon", str(master_dir)])
