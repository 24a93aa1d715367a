"""Buildbot worker objects and the local probe (src/matrixgate/workers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from buildbot.process.properties import Secret
from buildbot.worker import Worker
from buildbot.worker.local import LocalWorker

from matrixgate import capabilities, loader, workers
from matrixgate.props import INFO_KEY

REPO = Path(__file__).resolve().parents[2]


def test_local_workers_and_the_gate_worker():
    built = workers.build_workers(loader.load_workers(REPO / "workers" / "workers.yaml"))
    assert [(type(w), w.name) for w in built] == [
        (LocalWorker, "gate"), (LocalWorker, "local-kvm"), (LocalWorker, "local-basic")]
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
