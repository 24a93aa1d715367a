"""Gates side by side: the release-gate builder's in-master workers (``GATE_PARALLEL_GATES``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from buildbot.worker.latent import AbstractLatentWorker
from buildbot.worker.local import LocalWorker

from matrixgate import dashboard, gateslots, loader, routing, settings, workers
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


def test_build_workers_adds_one_latent_in_master_worker_per_extra_gate():
    spec = loader.load_workers(REPO / "workers" / "workers.yaml")
    built = workers.build_workers(spec, parallel_gates=4, slot_idle=42)
    assert type(built[0]) is LocalWorker and built[0].name == "gate"      # always attached
    slots = [w for w in built if routing.is_gate_slot(w.name)]
    assert [(type(w), w.name, w._config_kwargs) for w in slots] == [
        (gateslots.GateSlotWorker, f"gate_{i}", {"idle": 42, "max_builds": 1}) for i in (2, 3, 4)]
    assert all(isinstance(w, AbstractLatentWorker) for w in slots)
    assert [w.name for w in workers.build_workers(spec)] == ["gate", "local-kvm", "local-basic"]


def test_slot_idle_setting(tmp_path):
    assert settings.from_env(tmp_path, {}).gate_slot_idle == 300
    assert settings.from_env(tmp_path, {"GATE_SLOT_IDLE": "0"}).gate_slot_idle == 0


def slot(name, attached):
    return SimpleNamespace(worker=SimpleNamespace(name=name, conn=object() if attached else None))


def test_a_gate_goes_to_gate_first_then_to_an_attached_slot_then_to_the_lowest_slot():
    gate, g2, g3, g10 = slot("gate", True), slot("gate_2", False), slot("gate_3", True), slot("gate_10", False)
    pick = lambda *wfbs: gateslots.prefer_attached(None, list(wfbs), None)  # noqa: E731
    assert pick(g10, g3, g2, gate) is gate
    assert pick(g10, g2, g3) is g3               # attached: no wait for an attach
    assert pick(g10, g2) is g2                   # numerically lowest, not "gate_10" < "gate_2"
    assert pick() is None


def test_dashboard_does_not_list_the_extra_gate_workers():
    rest = [{"name": n, "connected_to": [{"masterid": 1}], "paused": False} for n in ("gate", "gate_2", "kvm-1")]
    view = dashboard.workers_view(rest, WorkerSet("w.yaml", (WorkerSpec("kvm-1", {"kvm": True}),)), lambda n: None)
    assert [row["name"] for row in view] == ["kvm-1", "gate"]
