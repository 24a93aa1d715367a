"""Buildbot worker objects and the local probe (src/matrixgate/workers.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from buildbot.process.properties import Secret
from buildbot.worker import Worker
from buildbot.worker.local import LocalWorker
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool

from matrixgate import capabilities, loader, workers
from matrixgate.props import INFO_KEY

REPO = Path(__file__).resolve().parents[2]


def test_local_workers_and_the_gate_worker():
    built = workers.build_workers(loader.load_workers(REPO / "workers" / "workers.yaml"))
    assert [(type(w), w.name) for w in built] == [
        (LocalWorker, "gate"), (workers.ProbedLocalWorker, "local-kvm"), (workers.ProbedLocalWorker, "local-basic")]
    assert built[0]._config_kwargs == {"max_builds": None}       # orchestration never waits for a slot
    assert built[1]._config_kwargs["properties"] == {"declared_capabilities": ["kvm", "nested_virt", "qemu"]}
    assert built[1]._config_kwargs["max_builds"] == 2


def test_remote_workers_take_their_password_from_the_secrets_provider():
    built = workers.build_workers(loader.load_workers(REPO / "workers" / "production.example.yaml"))
    remote = {w.name: w for w in built if type(w) is Worker}
    assert sorted(remote) == ["build-1", "kvm-1", "kvm-2"]
    name, password = remote["kvm-1"]._config_args
    assert isinstance(password, Secret) and password.secret_name == "worker-kvm-1"
    assert remote["build-1"]._config_kwargs["max_builds"] == 2


def test_probe_local_workers_writes_each_info_file(tmp_path):
    report = {"capabilities": ["kvm", "qemu"], "kvm": {"ok": True}}
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    got = workers.probe_local_workers(tmp_path, spec, probe=lambda: report)
    assert got == {"local-kvm": report, "local-basic": report}
    for name in ("local-kvm", "local-basic"):
        text = (tmp_path / "workers" / name / "info" / INFO_KEY).read_text()
        assert capabilities.probed(text) == report


def test_a_broken_probe_means_nothing_found(tmp_path):
    def broken():
        raise OSError("no /proc here")
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    got = workers.probe_local_workers(tmp_path, spec, probe=broken)
    assert got["local-kvm"] == {"capabilities": [], "error": "no /proc here"}
    info = json.loads((tmp_path / "workers" / "local-kvm" / "info" / INFO_KEY).read_text())
    assert capabilities.probed_capabilities(info) == frozenset()


def test_no_probe_without_local_workers(tmp_path):
    spec = loader.load_workers(REPO / "workers" / "production.example.yaml")
    called = []
    assert workers.probe_local_workers(tmp_path, spec, probe=lambda: called.append(1)) == {}
    assert called == [] and not (tmp_path / "workers").exists()


def test_background_probe_writes_the_same_files(tmp_path):
    report = {"capabilities": ["kvm"], "kvm": {"ok": True}}
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    probing = workers.BackgroundProbe(tmp_path, spec, probe=lambda: report)
    assert probing.wait() == {"local-kvm": report, "local-basic": report}
    assert capabilities.probed((tmp_path / "workers" / "local-basic" / "info" / INFO_KEY).read_text()) == report


def test_background_probe_hands_its_error_to_wait(tmp_path):
    (tmp_path / "workers").write_text("not a directory")      # the info files cannot be written
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    probing = workers.BackgroundProbe(tmp_path, spec, probe=lambda: {"capabilities": []})
    with pytest.raises(OSError):
        probing.wait()


class ThreadedReactor:
    """Just what ``when_done`` uses of a reactor: a thread pool, and results handed back
    (here in the pool's thread; the test waits for them with an Event)."""

    def __init__(self):
        self.pool = ThreadPool(1, 1)
        self.pool.start()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def fired(d: defer.Deferred, timeout: float = 10) -> list:
    done = threading.Event()
    got = []
    d.addBoth(lambda r: (got.append(r), done.set()))
    assert done.wait(timeout), "the Deferred never fired"
    return got


def test_when_done_fires_once_the_probe_has_written_its_files(tmp_path):
    release = threading.Event()
    report = {"capabilities": ["kvm"]}
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    probing = workers.BackgroundProbe(tmp_path, spec, probe=lambda: release.wait(10) and report)
    reactor = ThreadedReactor()
    try:
        d = probing.when_done(reactor)
        assert not d.called                                     # still probing
        release.set()
        assert fired(d) == [{"local-kvm": report, "local-basic": report}]
        assert (tmp_path / "workers" / "local-kvm" / "info" / INFO_KEY).exists()
        assert probing.when_done(reactor).result == {"local-kvm": report, "local-basic": report}  # done: at once
    finally:
        reactor.pool.stop()


def test_a_declared_local_worker_starts_its_bot_only_after_the_probe(tmp_path, monkeypatch):
    release = threading.Event()
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    probing = workers.BackgroundProbe(tmp_path, spec, probe=lambda: release.wait(10) and {"capabilities": []})
    started = []       # LocalWorker.reconfigService creates and starts the bot: record when it runs
    monkeypatch.setattr(LocalWorker, "reconfigService",
                        lambda self, name, **kwargs: started.append((name, probing.reports)) or defer.succeed(None))
    reactor = ThreadedReactor()
    try:
        [kvm] = [w for w in workers.build_workers(spec, probing=probing) if w.name == "local-kvm"]
        kvm.parent = SimpleNamespace(master=SimpleNamespace(reactor=reactor))
        d = kvm.reconfigService(*kvm._config_args, **kvm._config_kwargs)
        assert started == []
        release.set()
        fired(d)
        assert started == [("local-kvm", {"local-kvm": {"capabilities": []}, "local-basic": {"capabilities": []}})]
    finally:
        reactor.pool.stop()
