"""Gates side by side: the release-gate builder's in-master workers (``GATE_PARALLEL_GATES``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from buildbot.worker.local import LocalWorker

from matrixgate import dashboard, loader, routing, settings, workers
from matrixgate.model import WorkerSet, WorkerSpec

REPO = Path(__file__).resolve().parents[2]


def test_parallel_gates_setting(tmp_path):
    assert settings.from_env(tmp_path, {}).parallel_gates == 8
    assert settings.from_env(tmp_path, {"GATE_PARALLEL_GATES": "1"}).parallel_gates == 1
    assert settings.from_env(tmp_path, {"GATE_PARALLEL_GATES": " 20 "}).parallel_gates == 20
    for bad in ("0", "101", "two", "1.5"):
        with pytest.raises(settings.SettingsError, match="GATE_PARALLEL_GATES"):
            settings.from_env(tmp_path, {"GATE_PARALLEL_GATES": bad})


def test_gate_worker_names():
    assert routing.gate_worker_names(1) == ["gate"]
    assert routing.gate_worker_names(3) == ["gate", "gate_2", "gate_3"]
    assert routing.gate_worker_names(0) == ["gate"]
    assert [routing.is_gate_slot(n) for n in ("gate", "gate_2", "gate-2", "kvm-1")] == [False, True, False, False]


def test_slot_names_cannot_clash_with_declared_workers():
    # declared names are [a-z0-9-]: an underscore never passes the loader
    assert not loader.NAME_RE.fullmatch("gate_2")


def test_build_workers_adds_one_local_worker_per_extra_gate():
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    built = workers.build_workers(spec, parallel_gates=4)
    slots = [w for w in built if routing.is_gate_slot(w.name)]
    assert [(type(w), w.name, w._config_kwargs["max_builds"]) for w in slots] == [
        (LocalWorker, f"gate_{i}", 1) for i in (2, 3, 4)]
    assert [w.name for w in workers.build_workers(spec)] == ["gate", "local-kvm", "local-basic"]


def test_dashboard_does_not_list_the_extra_gate_workers():
    rest = [{"name": n, "connected_to": [{"masterid": 1}], "paused": False} for n in ("gate", "gate_2", "kvm-1")]
    view = dashboard.workers_view(rest, WorkerSet("w.yaml", (WorkerSpec("kvm-1", {"kvm": True}),)), lambda n: None)
    assert [row["name"] for row in view] == ["kvm-1", "gate"]
