"""Shared helpers for the benchmarks: real masters side by side, events with client times.

Two kinds of master run here, each with ``buildbot start`` in a temporary directory:

* ``MatrixGate``: this repository's ``master.cfg`` through ``tests/integration/harness.py``'s
  ``GateMaster``, fed a generated matrix and workers YAML;
* ``PlainMaster``: a minimal plain-Buildbot ``master.cfg`` written by the benchmark
  (AnyBranchScheduler on tags -> one builder whose single ``Trigger`` step waits for one
  Triggerable per leg; the legs on the same local workers, doing the same steps).

Build and step events come from Buildbot's websocket (``/ws``), stamped with the client's
``time.monotonic()`` when they arrive: REST timestamps are whole seconds, and polling the
REST API every few ms would load the very master being measured.

Everything started here is registered and stopped at exit (also on SIGINT/SIGTERM).
Nothing here asserts a figure: the scripts print what they measure.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import harness  # noqa: E402  (tests/integration/harness.py: GateMaster, free_port, git)
from matrixgate import hooks  # noqa: E402

BIN = Path(sys.executable).parent
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}

# --------------------------------------------------------------------------- clean-up

_CLEANUPS: list = []


def on_exit(fn):
    """Run ``fn`` at exit (last registered first); returns ``fn``."""
    _CLEANUPS.append(fn)
    return fn


def _run_cleanups():
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as exc:  # clean-up must go on
            print(f"  (clean-up: {exc})", file=sys.stderr)


def _on_signal(signum, frame):
    _run_cleanups()
    sys.exit(128 + signum)


atexit.register(_run_cleanups)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    on_exit(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# --------------------------------------------------------------------------- figures

def gate_bench_parser(doc: str, *, reps: int, quick_reps: int, sleep: float) -> argparse.ArgumentParser:
    """The options every gate benchmark shares: how many gates, legs and how long a leg is.
    Parse with ``parse_gate_bench``, which applies ``--quick``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{quick_reps} gates per configuration")
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--legs", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=sleep, help="seconds each leg's command sleeps")
    parser.set_defaults(quick_reps=quick_reps)
    return parser


def parse_gate_bench(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.quick:
        args.reps = args.quick_reps
    return args


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def fmt(value, unit="s", digits=2):
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f} {unit}".rstrip()


def table(headers, rows) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


class LoadSampler:
    """Samples the 1-minute load average and the machine's busy CPU share while it runs."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self.loads: list[float] = []
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu():
        with open("/proc/stat") as fh:
            parts = [int(x) for x in fh.readline().split()[1:]]
        idle = parts[3] + parts[4]
        return idle, sum(parts)

    def _run(self):
        idle0, total0 = self._cpu()
        while not self._stop.wait(self.interval):
            idle1, total1 = self._cpu()
            if total1 > total0:
                self.busy.append(1 - (idle1 - idle0) / (total1 - total0))
            idle0, total0 = idle1, total1
            self.loads.append(os.getloadavg()[0])

    def __enter__(self):
        self.loads.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        loads = self.loads or [os.getloadavg()[0]]
        busy = f", CPU busy median {100 * median(self.busy):.0f}% (max {100 * max(self.busy):.0f}%)" if self.busy else ""
        return (f"load average (1 min) during the run: median {median(loads):.2f}, "
                f"min {min(loads):.2f}, max {max(loads):.2f} on {os.cpu_count()} CPUs{busy}")


def machine() -> str:
    import buildbot
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            total = int(fh.readline().split()[1])
        mem = f", RAM {total / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs{mem}, Python {platform.python_version()}, Buildbot {buildbot.version}, "
            f"{platform.system()} {platform.release()}; load now {os.getloadavg()[0]:.2f}")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- git

def git(*args, cwd=None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **GIT_ENV),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class BenchRepo:
    """A tiny bare repository and a clone to commit and tag in (one commit per gate, so no
    gate can reuse an earlier gate's legs: every measured gate really runs every leg)."""

    def __init__(self, root: Path, name: str = "platform"):
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("clone", "-q", str(self.bare), str(self.work))
        (self.work / "README").write_text("bench\n")
        git("add", "README", cwd=self.work)
        git("commit", "-q", "-m", "start", cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        self.count = 0

    @property
    def url(self) -> str:
        return str(self.bare)

    def new_tag(self, prefix: str = "v0.0.") -> tuple[str, str]:
        """A new commit and a tag on it, both pushed: (tag, commit)."""
        self.count += 1
        git("commit", "-q", "--allow-empty", "-m", f"change {self.count}", cwd=self.work)
        tag = f"{prefix}{self.count}"
        git("tag", tag, cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", f"refs/tags/{tag}", cwd=self.work)
        return tag, git("rev-parse", "HEAD", cwd=self.work)


# --------------------------------------------------------------------------- websocket

class WsEvents:
    """A minimal websocket client for Buildbot's ``/ws``: every message with its arrival time.

    Stdlib only (RFC 6455 client: masked frames out, unmasked in).  ``events`` is a queue of
    ``(monotonic time, routing key list, message dict)``.
    """

    def __init__(self, port: int, paths=("builds/*/*", "steps/*/*")):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self.sock.settimeout(None)
        self.events: queue.Queue = queue.Queue()
        self.acks: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()
        for i, path in enumerate(paths, 1):
            self._send_text(json.dumps({"cmd": "startConsuming", "path": path, "_id": i}))
        for _ in paths:
            ack = self.acks.get(timeout=10)
            if ack.get("code") != 200:
                raise ConnectionError(f"websocket subscription refused: {ack}")
        on_exit(self.close)

    def _send(self, opcode: int, payload: bytes):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._lock:
            self.sock.sendall(header + mask + masked)

    def _send_text(self, text: str):
        self._send(0x1, text.encode())

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _reader(self):
        message = b""
        try:
            while not self._closed:
                b1, b2 = self._read(2)
                opcode, n = b1 & 0x0F, b2 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                if b2 & 0x80:
                    mask = self._read(4)
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))
                else:
                    payload = self._read(n)
                now = time.monotonic()
                if opcode == 0x9:          # ping
                    self._send(0xA, payload)
                    continue
                if opcode == 0x8:          # close
                    return
                if opcode in (0x1, 0x2, 0x0):
                    message += payload
                    if not b1 & 0x80:
                        continue
                    data, message = json.loads(message), b""
                    if "k" in data:
                        self.events.put((now, data["k"].split("/"), data["m"]))
                    else:
                        self.acks.put(data)
        except (OSError, ConnectionError, ValueError):
            return

    def drain(self) -> list:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self._send(0x8, b"")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- masters

def write_matrix(path: Path, legs: list[str], command: str, *, publish: list[str] | None = None) -> Path:
    lines = ["version: 1", "platform: bench", "defaults: {timeout: 600, wait_for_worker: 30m, max_attempts: 2}",
             "legs:"]
    for name in legs:
        lines += [f"  - name: {name}", "    components: [a, b]", "    covers: benchmark leg",
                  f"    commands: [{{name: run, run: {json.dumps(command)}}}]"]
    lines += ["release:", "  tags: \"v*\""]
    if publish:
        lines.append("  publish:")
        lines += [f"    - {{name: publish, run: {json.dumps(c)}}}" for c in publish]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_workers(path: Path, names: list[str], *, local: bool = True, max_builds: int = 1) -> Path:
    lines = ["version: 1", "workers:"]
    for name in names:
        lines += [f"  - name: {name}", f"    local: {'true' if local else 'false'}",
                  f"    max_builds: {max_builds}", "    properties: {kvm: false, qemu: false}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class MasterBase:
    """What both kinds of master share: REST, hooks, events, life cycle."""

    kind = "?"
    gate_builder = "?"
    dir: Path
    url: str
    web_port: int
    worker_port: int
    env: dict

    def get(self, path: str, **params):
        query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/{path}{query}", timeout=10) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        keys = [k for k in data if k != "meta"]
        return data[keys[0]] if keys else data

    def pid(self) -> int | None:
        try:
            return int((self.dir / "twistd.pid").read_text())
        except (OSError, ValueError):
            return None

    def builder_ids(self) -> dict[str, int]:
        return {b["name"]: b["builderid"] for b in self.get("builders") or []}

    def wait_rest(self, timeout: float = 120, interval: float = 0.02) -> float:
        """Poll the REST API until it answers; returns the monotonic time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/builders?limit=1", timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(interval)
        raise RuntimeError(f"{self.kind}: REST API did not answer within {timeout}s\n{self.log_tail()}")

    def buildbot(self, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "buildbot"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self) -> float:
        """``buildbot start`` until REST answers; returns the seconds that took."""
        t0 = time.monotonic()
        out = self.buildbot("start", "--start_timeout=600", str(self.dir), timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"{self.kind}: buildbot start failed:\n{out.stdout}{out.stderr}\n{self.log_tail()}")
        return self.wait_rest() - t0

    def stop(self):
        pid = self.pid()
        if pid is None:
            return
        try:
            self.buildbot("stop", str(self.dir), timeout=120)
        except subprocess.TimeoutExpired:
            pass
        # `buildbot stop` waits for the process; make sure (this pid only, never a broad kill).
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def checkconfig(self) -> tuple[float, bool]:
        t0 = time.monotonic()
        out = self.buildbot("checkconfig", str(self.dir))
        return time.monotonic() - t0, out.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        log = self.dir / "twistd.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def post(self, path: str, body: bytes, headers: dict) -> int:
        request = urllib.request.Request(f"{self.url}/{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                resp.read()
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def push_hook(self, tag: str, commit: str) -> int:
        raise NotImplementedError

    # --- real workers (buildbot-worker processes on loopback) -------------------------
    def start_real_worker(self, name: str, password: str, root: Path) -> Path:
        wdir = root / "real-workers" / self.kind / name
        wdir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(BIN / "buildbot-worker"), "create-worker", "-q", str(wdir),
                        f"127.0.0.1:{self.worker_port}", name, password], check=True, capture_output=True)
        # --quiet: do not follow the log for 10 s; wait_workers_connected() checks the connection
        on_exit(lambda: stop_worker_dir(wdir))
        self.real_workers = getattr(self, "real_workers", []) + [wdir]
        out = subprocess.run([str(BIN / "buildbot-worker"), "start", "--quiet", str(wdir)], capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"worker {name}: {out.stdout}{out.stderr}")
        return wdir

    def wait_workers_connected(self, names: list[str], timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.get("workers") or []
            connected = {w["name"] for w in workers if w.get("connected_to")}
            if set(names) <= connected:
                return
            time.sleep(0.2)
        tails = []
        for wdir in getattr(self, "real_workers", []):
            log = wdir / "twistd.log"
            if log.exists():
                tails.append(f"--- {wdir.name}: " + "\n".join(log.read_text(errors="replace").splitlines()[-5:]))
        raise RuntimeError(f"{self.kind}: workers {names} did not connect (worker port {self.worker_port})\n"
                           + "\n".join(tails) + f"\n--- master:\n{self.log_tail()}")


def stop_worker_dir(wdir: Path):
    pidfile = wdir / "twistd.pid"
    if not pidfile.exists():
        return
    subprocess.run([str(BIN / "buildbot-worker"), "stop", str(wdir)], capture_output=True, timeout=60)
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


_COMPILED: set[Path] = set()


def compile_bytecode(src: Path) -> bool:
    """Byte-compile the ``matrixgate`` package under ``src`` (once per run): what pip did for
    Buildbot's own modules when it installed them.  Without it, a master started with
    PYTHONDONTWRITEBYTECODE=1 (as some sandboxes set it), or by a user who may not write
    ``src/``, compiles every Matrix Gate module from source at each start and checkconfig
    (about 55 ms and 1.5 MB of RSS, measured), which an installed Buildbot never does."""
    import compileall
    src = Path(src).resolve()
    if src not in _COMPILED:
        _COMPILED.add(src)
        return bool(compileall.compile_dir(str(src / "matrixgate"), quiet=1))
    return True


class MatrixGate(MasterBase):
    """This repository's master.cfg (through the integration tests' ``GateMaster``)."""

    kind = "matrix-gate"
    gate_builder = "release-gate"

    def __init__(self, root: Path, repo: BenchRepo, legs: list[str], command: str, workers: list[str], *,
                 local: bool = True, max_builds: int = 1, env: dict | None = None, publish=None,
                 trace: bool = False, package_dir: str | None = None, count_db: bool = False,
                 compile: bool = False):
        root.mkdir(parents=True, exist_ok=True)
        if compile:
            compile_bytecode(Path(package_dir) if package_dir else ROOT / "src")
        matrix = write_matrix(root / "matrix.yaml", legs, command, publish=publish)
        workers_yaml = write_workers(root / "workers.yaml", workers, local=local, max_builds=max_builds)
        extra = {"GATE_WORKERS": str(workers_yaml),
                 # triggered through the hook: a poller would start a second gate per tag
                 "GATE_POLL_INTERVAL": "0",
                 "GATE_WAIT_CHECK_INTERVAL": "15"}
        if not local:
            extra.update({harness_env_name(f"worker-{w}"): f"pw-{w}" for w in workers})
        extra.update(env or {})
        self._gm = harness.GateMaster(root, repo, matrix=matrix, env=extra)
        self.root = root
        self.dir = self._gm.dir
        self.url = self._gm.url
        self.web_port = self._gm.web_port
        self.worker_port = self._gm.worker_port
        self.env = self._gm.env
        self.worker_names = workers
        self.secret = harness.HOOK_SECRET.encode()
        self._gm.create()
        self.trace_file = None
        if trace or package_dir or count_db:
            self.enable_trace([package_dir] if package_dir else [], count_db)
        on_exit(self.stop)

    def enable_trace(self, prepend: list[str] = (), count_db: bool = False):
        """Point buildbot.tac at a wrapper config that traces Matrix Gate's code (bench/_trace.py);
        ``prepend``: directories put first on sys.path (another copy of the package, for A/B)."""
        import _trace
        self.trace_file = self.root / "trace.jsonl"
        wrapper = self.root / "traced-master.cfg"
        wrapper.write_text(_trace.WRAPPER_CFG.format(bench=str(Path(__file__).resolve().parent),
                                                     trace=str(self.trace_file), real=str(ROOT / "master.cfg"),
                                                     prepend=list(prepend), db=count_db))
        tac = self.dir / "buildbot.tac"
        text = tac.read_text()
        import re
        text, n = re.subn(r"^configfile = .*$", f"configfile = {str(wrapper)!r}", text, flags=re.M)
        if n != 1:
            raise RuntimeError("buildbot.tac: no configfile line to redirect")
        tac.write_text(text)

    def trace(self) -> list[dict]:
        import _trace
        return _trace.read(self.trace_file) if self.trace_file else []

    def push_hook(self, tag: str, commit: str) -> int:
        body = urllib.parse.urlencode({"ref": f"refs/tags/{tag}", "newrev": commit}).encode()
        return self.post("change_hook/git", body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Matrixgate-Signature": hooks.signature(self.secret, body)})


def harness_env_name(secret: str) -> str:
    from matrixgate.secrets import env_name
    return env_name(secret)


PLAIN_CFG = r'''# -*- python -*-
# A minimal plain-Buildbot gate, written by bench/_benchlib.py as the benchmark's baseline.
import json, os
from buildbot.plugins import changes, schedulers, steps, util, worker

spec = json.load(open(os.path.join(basedir, "bench.json")))
if spec.get("rest_fix"):  # Buildbot 4.3's REST-from-a-thread bug can stop the master accepting
    import sys              # connections (src/matrixgate/bbfixes.py): a crash, not a speed figure
    sys.path.insert(0, spec["src_dir"])
    from matrixgate import bbfixes
    bbfixes.apply()
if spec.get("trace_file"):  # benchmarks only: count database round trips (bench/_trace.py)
    import sys
    sys.path.insert(0, spec["bench_dir"])
    import _trace
    _trace.count_db(spec["trace_file"])
c = BuildmasterConfig = {}
c["title"] = "plain gate"
c["buildbotURL"] = "http://127.0.0.1:%d/" % spec["web_port"]
c["buildbotNetUsageData"] = None
c["db"] = {"db_url": "sqlite:///state.sqlite"}
c["protocols"] = {"pb": {"port": "tcp:%d:interface=127.0.0.1" % spec["worker_port"]}}
if spec["local"]:
    legworkers = [worker.LocalWorker(n, max_builds=spec["max_builds"]) for n in spec["workers"]]
else:
    legworkers = [worker.Worker(n, "pw-" + n, max_builds=spec["max_builds"]) for n in spec["workers"]]
c["workers"] = [worker.LocalWorker("gate", max_builds=None)] + legworkers

gate = util.BuildFactory()
gate.addStep(steps.Trigger(name="legs", schedulerNames=["leg-" + n for n in spec["legs"]], waitForFinish=True))
c["builders"] = [util.BuilderConfig(name="gate", workernames=["gate"], factory=gate)]
c["schedulers"] = [schedulers.AnyBranchScheduler(
    name="tags", builderNames=["gate"], treeStableTimer=None,
    change_filter=util.ChangeFilter(branch_re=r"^refs/tags/"))]
for n in spec["legs"]:
    f = util.BuildFactory()
    if spec["checkout"]:
        f.addStep(steps.Git(name="checkout", repourl=spec["repo"], mode="full", method="fresh", logEnviron=False))
    f.addStep(steps.ShellCommand(name="run", command=spec["command"], logEnviron=False))
    c["builders"].append(util.BuilderConfig(name=n, workernames=spec["workers"], factory=f))
    c["schedulers"].append(schedulers.Triggerable(name="leg-" + n, builderNames=[n]))
    if spec.get("force_per_leg"):  # as Matrix Gate had before force-leg: one force form per leg
        c["schedulers"].append(schedulers.ForceScheduler(name="force-" + n, builderNames=[n]))
if spec.get("poll_interval"):  # Buildbot's own GitPoller, set up as Matrix Gate's (bench/poll_cost.py)
    c["change_source"] = [changes.GitPoller(
        repourl=spec["repo"], branches=lambda ref: ref.startswith(("refs/heads/", "refs/tags/")),
        buildPushesWithNoCommits=True, pollInterval=spec["poll_interval"], pollAtLaunch=True,
        workdir="gitpoller-work", project="")]
c["www"] = {"port": "tcp:%d:interface=127.0.0.1" % spec["web_port"],
            "plugins": {p: {} for p in spec["plugins"]},
            "change_hook_dialects": {"base": {}}}
'''


class PlainMaster(MasterBase):
    """The baseline: a minimal plain-Buildbot master.cfg with the same legs and workers."""

    kind = "plain-buildbot"
    gate_builder = "gate"

    def __init__(self, root: Path, repo: BenchRepo | None, legs: list[str], command: str, workers: list[str], *,
                 local: bool = True, max_builds: int = 1, checkout: bool = True,
                 plugins=("waterfall_view", "console_view", "grid_view"), count_db: bool = False,
                 force_per_leg: bool = False, poll_interval: int = 0, rest_fix: bool = False):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.dir = root / "master"
        self.web_port = harness.free_port()
        self.worker_port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = dict(os.environ)
        self.worker_names = workers
        subprocess.run([str(BIN / "buildbot"), "create-master", "-q", str(self.dir)], check=True,
                       capture_output=True)
        (self.dir / "master.cfg.sample").unlink(missing_ok=True)
        (self.dir / "master.cfg").write_text(PLAIN_CFG)
        (self.dir / "bench.json").write_text(json.dumps({
            "web_port": self.web_port, "worker_port": self.worker_port, "local": local,
            "max_builds": max_builds, "workers": workers, "legs": legs, "command": command,
            "repo": repo.url if repo else "", "checkout": bool(checkout and repo), "plugins": list(plugins),
            "trace_file": str(root / "trace.jsonl") if count_db else "", "force_per_leg": force_per_leg,
            "poll_interval": poll_interval, "rest_fix": rest_fix, "src_dir": str(ROOT / "src"),
            "bench_dir": str(Path(__file__).resolve().parent)}))
        self.trace_file = root / "trace.jsonl" if count_db else None
        self.repo_url = repo.url if repo else ""
        if force_per_leg:
            self.kind = "plain-buildbot+force"
        on_exit(self.stop)

    def trace(self) -> list[dict]:
        import _trace
        return _trace.read(self.trace_file) if self.trace_file else []

    def push_hook(self, tag: str, commit: str) -> int:
        body = urllib.parse.urlencode({"branch": f"refs/tags/{tag}", "revision": commit,
                                       "repository": self.repo_url, "project": "", "author": "bench",
                                       "comments": f"pushed refs/tags/{tag}"}).encode()
        return self.post("change_hook/base", body, {"Content-Type": "application/x-www-form-urlencoded"})


# --------------------------------------------------------------------------- one gate, timed

class GateRun:
    """Client-side times of one gate: push, gate started/finished, each leg's start/finish,
    and the gate's own steps (started/finished)."""

    def __init__(self):
        self.push = None
        self.gate_buildid = None
        self.gate_new = None
        self.gate_done = None
        self.gate_results = None
        self.legs: dict[int, dict] = {}       # buildid -> {builder, new, done, results}
        self.steps: dict[int, dict] = {}      # stepid -> {buildid, name, started, done}
        self.other_builds: dict[int, dict] = {}
        self.push_wall = self.done_wall = None    # time.time(), to match bench/_trace.py records

    def figures(self) -> dict:
        legs = [leg for leg in self.legs.values()]
        starts = [leg["new"] for leg in legs]
        durations = [leg["done"] - leg["new"] for leg in legs if leg.get("done")]
        gate_duration = self.gate_done - self.gate_new if self.gate_done else None
        slowest = max(durations) if durations else None
        return {
            "gate_started": self.gate_new - self.push,
            "legs_started": max(starts) - self.push if starts else None,
            "first_leg_started": min(starts) - self.push if starts else None,
            "gate_finished": self.gate_done - self.push if self.gate_done else None,
            "gate_duration": gate_duration,
            "slowest_leg": slowest,
            "overhead": gate_duration - slowest if gate_duration is not None and slowest is not None else None,
            "results": self.gate_results,
            "legs": len(legs),
            **self.fanout(),
        }

    def fanout(self) -> dict:
        """Around the gate's fan-out step ("legs"): step started -> all legs started, and
        last leg finished -> step finished (the gate noticing and tallying)."""
        step = next((s for s in self.steps.values()
                     if s["buildid"] == self.gate_buildid and s["name"] == "legs"), None)
        legs = list(self.legs.values())
        if not step or not legs or not step.get("started"):
            return {"fanout": None, "tally": None, "verdict": None, "overhead_verdict": None}
        dones = [leg["done"] for leg in legs if leg.get("done")]
        slowest = max((leg["done"] - leg["new"] for leg in legs if leg.get("done")), default=None)
        done = step.get("done")
        return {"fanout": max(leg["new"] for leg in legs) - step["started"],
                "tally": done - max(dones) if done and dones else None,
                "verdict": done - self.push if done else None,
                "overhead_verdict": done - self.gate_new - slowest if done and slowest is not None else None}

    def gate_steps(self) -> list[tuple[str, float]]:
        """(step name, client-side seconds) of the gate build's steps, in order."""
        out = []
        for step in sorted(self.steps.values(), key=lambda s: s.get("number", 0)):
            if step["buildid"] == self.gate_buildid and step.get("started") and step.get("done"):
                out.append((step["name"], step["done"] - step["started"]))
        return out

    def leg_steps(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for step in self.steps.values():
            if step["buildid"] in self.legs and step.get("started") and step.get("done"):
                out.setdefault(step["name"], []).append(step["done"] - step["started"])
        return out


def run_gate(master: MasterBase, ws: WsEvents, repo: BenchRepo, n_legs: int, builder_ids: dict[str, int],
             timeout: float = 300) -> GateRun:
    """Tag a new commit, POST the hook, follow the gate and its legs to the end."""
    tag, commit = repo.new_tag()
    gate_bid = builder_ids[master.gate_builder]
    names = {v: k for k, v in builder_ids.items()}
    time.sleep(0.3)          # let the git push's own CPU settle before the clock starts
    ws.drain()
    run = GateRun()
    run.push = time.monotonic()
    run.push_wall = time.time()
    status = master.push_hook(tag, commit)
    if status != 200:
        raise RuntimeError(f"{master.kind}: hook answered {status}\n{master.log_tail()}")
    deadline = time.monotonic() + timeout
    while run.gate_done is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"{master.kind}: gate for {tag} did not finish in {timeout}s\n{master.log_tail()}")
        try:
            now, key, msg = ws.events.get(timeout=remaining)
        except queue.Empty:
            continue
        if key[0] == "builds" and len(key) == 3:
            buildid, event = int(key[1]), key[2]
            if event == "new":
                if msg["builderid"] == gate_bid and run.gate_buildid is None:
                    run.gate_buildid, run.gate_new = buildid, now
                elif run.gate_buildid is not None and names.get(msg["builderid"], "").startswith("leg"):
                    run.legs[buildid] = {"builder": names[msg["builderid"]], "new": now}
                else:
                    run.other_builds[buildid] = {"builder": names.get(msg["builderid"]), "new": now}
            elif event == "finished":
                if buildid == run.gate_buildid:
                    run.gate_done, run.gate_results = now, msg.get("results")
                elif buildid in run.legs:
                    run.legs[buildid].update(done=now, results=msg.get("results"))
                elif buildid in run.other_builds:
                    run.other_builds[buildid].update(done=now, results=msg.get("results"))
        elif key[0] == "steps" and len(key) == 3:
            stepid, event = int(key[1]), key[2]
            step = run.steps.setdefault(stepid, {"buildid": msg["buildid"], "name": msg["name"],
                                                 "number": msg.get("number", 0)})
            step["name"] = msg["name"]
            if event == "started":
                step["started"] = now
            elif event == "finished":
                step["done"] = now
    run.done_wall = time.time()
    if len(run.legs) != n_legs:
        print(f"  warning: {master.kind} gate {tag}: {len(run.legs)} leg builds seen, expected {n_legs}",
              file=sys.stderr)
    return run


def wait_idle(master: MasterBase, timeout: float = 120):
    """Until no build of this master is running (publish builds etc. finish after a gate)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = master.get("builds", complete="false")
        if running == []:
            return
        time.sleep(0.1)
