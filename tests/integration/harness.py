"""A real Matrix Gate for tests: ``buildbot start`` on a temporary directory, real git.

The gated repository is a bare git repository made from ``examples/platform`` (the stand-in
for the platform, whose legs really run).  Tests push commits and tags to it the way a
developer would and read every result back through Buildbot's REST API.
"""

from __future__ import annotations

import base64
import http.client
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from matrixgate import demo, users

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_MATRIX = ROOT / "matrix" / "example-platform.yaml"
RESULTS = {0: "success", 1: "warnings", 2: "failure", 3: "skipped", 4: "exception", 5: "retry", 6: "cancelled"}
USERS = {"admin": ("admin-password-1", ("releasers", "admins")),
         "rel": ("releaser-password", ("releasers",)),
         "dev": ("developer-password", ())}
HOOK_SECRET = "test-hook-secret-0123456789"
GITHUB_SECRET = "test-github-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args, cwd=None, check=True) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Test Dev", GIT_AUTHOR_EMAIL="dev@example.invalid",
               GIT_COMMITTER_NAME="Test Dev", GIT_COMMITTER_EMAIL="dev@example.invalid")
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=check, capture_output=True, text=True)
    return out.stdout.strip()


class PlatformRepo:
    """The gated repository (bare) and a developer's clone of it."""

    def __init__(self, root: Path):
        self.bare = root / "platform.git"
        self.work = root / "platform-work"
        demo.make_example_repo(self.bare)
        git("clone", "-q", str(self.bare), str(self.work))

    @property
    def url(self) -> str:
        return str(self.bare)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def commit(self, message: str, edit=None) -> str:
        """Commit a change made by ``edit(work_dir)`` (or an empty commit) and push it."""
        if edit:
            edit(self.work)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return self.head()

    def set_fault(self, name: str, on: bool = True) -> str:
        def edit(work):
            path = work / "minicloud" / "faults.py"
            text = path.read_text()
            old, new = (f"{name} = False", f"{name} = True") if on else (f"{name} = True", f"{name} = False")
            assert old in text, f"{old!r} not in faults.py"
            path.write_text(text.replace(old, new))
        return self.commit(f"{'break' if on else 'fix'} {name}", edit)

    def tag(self, tag: str, annotated: bool = False, rev: str = "HEAD", push: bool = True) -> str:
        if annotated:
            git("tag", "-a", tag, "-m", f"release {tag}", rev, cwd=self.work)
        else:
            git("tag", tag, rev, cwd=self.work)
        if push:
            git("push", "-q", "origin", f"refs/tags/{tag}", cwd=self.work)
        return git("rev-parse", f"{tag}^{{commit}}", cwd=self.work)


class GateMaster:
    """One real buildmaster in ``root/master`` with its own ports."""

    def __init__(self, root: Path, repo: PlatformRepo, *, workers_yaml: str | None = None,
                 matrix: Path = EXAMPLE_MATRIX, env: dict | None = None, db_url: str | None = None):
        self.root = root
        self.repo = repo
        self.dir = root / "master"
        self.web_port = free_port()
        self.worker_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.workers_file = None
        if workers_yaml is not None:
            self.workers_file = root / "workers.yaml"
            self.workers_file.write_text(workers_yaml)
        self.env = dict(os.environ)
        self.env.update({
            "BUILDBOT_WEB_PORT": str(self.web_port), "BUILDBOT_WORKER_PORT": str(self.worker_port),
            "BUILDBOT_WEB_URL": f"http://127.0.0.1:{self.web_port}/",
            "GATE_REPO_URL": repo.url, "GATE_MATRIX": str(matrix), "GATE_POLL_INTERVAL": "1",
            "GATE_WAIT_CHECK_INTERVAL": "1", "EXAMPLE_RELEASES_FILE": str(root / "published.txt"),
        })
        if self.workers_file:
            self.env["GATE_WORKERS"] = str(self.workers_file)
        if db_url:
            self.env["BUILDBOT_DB_URL"] = db_url
        self.env.update(env or {})
        self.db_url = db_url
        self.workers: dict[str, subprocess.Popen | Path] = {}

    # --- life cycle ---------------------------------------------------------------------
    def create(self) -> None:
        demo.create_master(self.dir, self.db_url)
        secrets_dir = self.dir / "secrets"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(secrets_dir, 0o700)
        for name, (password, roles) in USERS.items():
            users.set_user(secrets_dir / users.FILE_NAME, name, password, roles)
        for name, value in (("git-hook-secret", HOOK_SECRET), ("github-webhook-secret", GITHUB_SECRET)):
            (secrets_dir / name).write_text(value + "\n")
            os.chmod(secrets_dir / name, 0o600)

    def start(self, timeout: float = 60) -> None:
        if not (self.dir / "buildbot.tac").exists():
            self.create()
        out = subprocess.run([str(BIN / "buildbot"), "start", str(self.dir)], env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"buildbot start failed:\n{out.stdout}\n{out.stderr}\n{self.log_tail()}")
        self.wait_for(lambda: self.get("workers") is not None, timeout, "REST API")

    def stop(self, clean: bool = False) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        pidfile = self.dir / "twistd.pid"
        pid = int(pidfile.read_text()) if pidfile.exists() else None
        args = [str(BIN / "buildbot"), "stop"] + (["--clean"] if clean else []) + [str(self.dir)]
        subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120)
        # `buildbot stop` gives up after 10 s on a master that does not exit (a build wedged by
        # a database outage never finishes): never leave it running on a shared machine
        if pid is not None and Path(f"/proc/{pid}").exists():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pidfile.unlink(missing_ok=True)

    def restart(self, clean: bool = True) -> None:
        args = [str(BIN / "buildbot"), "restart"] + (["--clean"] if clean else []) + [str(self.dir)]
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"restart failed: {out.stdout}{out.stderr}")
        self.wait_for(lambda: self.get("workers") is not None, 60, "REST API after restart")

    def log_tail(self, lines: int = 80) -> str:
        log = self.dir / "twistd.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    # --- real workers -------------------------------------------------------------------
    def start_worker(self, name: str, password: str, *, probe_args: tuple = (), env: dict | None = None) -> Path:
        """A real ``buildbot-worker`` process on loopback, probed the way an admin would."""
        wdir = self.root / "workers" / name
        if not wdir.exists():
            wdir.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(BIN / "buildbot-worker"), "create-worker", "-q", str(wdir),
                            f"127.0.0.1:{self.worker_port}", name, password], check=True, capture_output=True)
            subprocess.run([sys.executable, str(ROOT / "src/matrixgate/onworker/probe.py"), "--json",
                            "--write-info", str(wdir / "info"), *probe_args], capture_output=True)
        wenv = dict(self.env)
        wenv.update(env or {})
        out = subprocess.run([str(BIN / "buildbot-worker"), "start", str(wdir)], env=wenv,
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"worker {name} failed to start: {out.stdout}{out.stderr}")
        self.workers[name] = wdir
        self.wait_for(lambda: self.worker_connected(name), 30, f"worker {name} to connect")
        return wdir

    def stop_worker(self, name: str, kill: bool = False) -> None:
        wdir = self.workers.pop(name, None)
        if wdir is None:
            return
        if kill:
            pid = int((wdir / "twistd.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            (wdir / "twistd.pid").unlink(missing_ok=True)
        else:
            subprocess.run([str(BIN / "buildbot-worker"), "stop", str(wdir)], capture_output=True, timeout=60)

    def worker_connected(self, name: str) -> bool:
        workers = self.get("workers", name=name) or []
        return any(w["name"] == name and w["connected_to"] for w in workers)

    # --- REST ---------------------------------------------------------------------------
    def get(self, path: str, **params):
        """A collection or object from /api/v2 (the list under its key), or None on error."""
        query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        # A loaded machine (several masters at once) now and then cuts a response short:
        # retry a read a few times before calling the master unreachable.
        for attempt in range(3):
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/{path}{query}", timeout=10) as resp:
                    data = json.loads(resp.read())
                break
            except urllib.error.HTTPError:
                return None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError):
                if attempt == 2:
                    return None
                time.sleep(0.2)
        keys = [k for k in data if k != "meta"]
        return data[keys[0]] if keys else data

    def raw(self, path: str) -> bytes:
        for attempt in range(3):
            try:
                with urllib.request.urlopen(f"{self.url}/{path.lstrip('/')}", timeout=30) as resp:
                    return resp.read()
            except (http.client.IncompleteRead, ConnectionResetError):
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def session(self, user: str | None):
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        if user:
            password = USERS[user][0]
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            opener.open(urllib.request.Request(f"{self.url}/auth/login",
                                               headers={"Authorization": f"Basic {token}"})).read()
        return opener

    def force(self, scheduler: str, user: str | None = "admin", **params) -> tuple[int, dict]:
        """POST a force through JSON-RPC as ``user``; returns (HTTP status, JSON body)."""
        opener = self.session(user)
        body = json.dumps({"jsonrpc": "2.0", "method": "force", "params": params, "id": 1}).encode()
        request = urllib.request.Request(f"{self.url}/api/v2/forceschedulers/{scheduler}", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def force_leg(self, leg: str, user: str | None = "admin", **params) -> tuple[int, dict]:
        """Force one leg as the web UI does from the leg's builder page: the one leg form
        (``force-leg``) with that builder's id, as a string."""
        return self.force("force-leg", user=user, builderid=str(self.builder_id(leg)), **params)

    def post_hook(self, dialect: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}/change_hook/{dialect}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    # --- waiting ------------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- master log ---\n{self.log_tail()}")

    def builder_id(self, name: str) -> int:
        builders = self.get("builders", name=name)
        assert builders, f"no builder {name}"
        return builders[0]["builderid"]

    def builds(self, builder: str, **params) -> list[dict]:
        return self.get(f"builders/{self.builder_id(builder)}/builds", order="number", **params) or []

    def wait_builds(self, builder: str, count: int, timeout: float = 120, complete: bool = True) -> list[dict]:
        def ready():
            builds = self.builds(builder)
            done = [b for b in builds if b["complete"]] if complete else builds
            return builds if len(done) >= count else None
        return self.wait_for(ready, timeout, f"{count} build(s) of {builder}")

    def build_properties(self, buildid: int) -> dict:
        props = self.get(f"builds/{buildid}/properties") or [{}]
        return {k: v[0] for k, v in props[0].items()}

    def build_steps(self, buildid: int) -> list[dict]:
        return self.get(f"builds/{buildid}/steps") or []

    def step(self, buildid: int, step_name: str) -> dict:
        steps = [s for s in self.build_steps(buildid) if s["name"] == step_name]
        assert steps, f"build {buildid} has no step {step_name!r}: {[s['name'] for s in self.build_steps(buildid)]}"
        return steps[0]

    def stdio(self, buildid: int, step_name: str, log: str = "stdio") -> str:
        """A step's log through the raw download endpoint (what the UI's download button gets)."""
        number = self.step(buildid, step_name)["number"]
        return self.raw(f"api/v2/builds/{buildid}/steps/{number}/logs/{log}/raw").decode()

    def buildrequests(self, **params) -> list[dict]:
        return self.get("buildrequests", **params) or []


def gate_builds_for(master: GateMaster, tag: str) -> list[dict]:
    """Gate builds whose resolved tag is ``tag`` (read from their properties)."""
    found = []
    for build in master.builds("release-gate"):
        if master.build_properties(build["buildid"]).get("release_tag") == tag:
            found.append(build)
    return found


def wait_gate(master: GateMaster, tag: str, count: int = 1, timeout: float = 120) -> list[dict]:
    def done():
        builds = gate_builds_for(master, tag)
        return builds if len([b for b in builds if b["complete"]]) >= count else None
    return master.wait_for(done, timeout, f"{count} completed gate(s) for {tag}", interval=0.5)


def leg_builds_of_gate(master: GateMaster, gate_buildid: int) -> dict[str, dict]:
    """The leg builds a gate triggered, by leg name (the final attempt of each)."""
    legs = master.build_properties(gate_buildid).get("gate_legs") or []
    builds = {}
    for outcome in legs:
        if outcome.get("buildid"):
            builds[outcome["leg"]] = master.get(f"builds/{outcome['buildid']}")[0]
    return builds


def result_name(build: dict) -> str:
    return RESULTS.get(build.get("results"), str(build.get("results")))


def cleanup(master: GateMaster) -> None:
    try:
        master.stop()
    finally:
        for wdir in (master.root / "workers").glob("*") if (master.root / "workers").exists() else []:
            pidfile = wdir / "twistd.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(master.dir / "workers", ignore_errors=True)
