"""Which request may start on which worker (src/matrixgate/routing.py), with fake workers."""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import pytest
from buildbot.process.properties import Properties

from matrixgate import routing
from matrixgate.model import Command, Leg
from matrixgate.props import DRY_RUN, INFO_KEY

PLASMA = Leg(name="flaredb-plasmavmc", components=("flaredb", "plasmavmc"), covers="vm metadata",
             commands=(Command("t", "make t"),), requires=frozenset({"kvm", "qemu"}))
PLAIN = Leg(name="chainfire-flaredb", components=("chainfire", "flaredb"), covers="raft",
            commands=(Command("t", "make t"),))
NO_KVM = {"capabilities": ["qemu"], "kvm": {"ok": False, "detail": "/dev/kvm: permission denied"},
          "qemu": {"ok": True}, "qemu_img": {"ok": True}}
KVM_QEMU = {"capabilities": ["kvm", "nested_virt", "qemu"], "kvm": {"ok": True}}


@pytest.fixture(autouse=True)
def clean_refusals():
    routing.REFUSALS.latest.clear()
    yield
    routing.REFUSALS.latest.clear()


def worker(name, probe_report=None):
    info = Properties()
    if probe_report is not None:
        info.setProperty(INFO_KEY, json.dumps(probe_report) + "\n", "Worker")
    return SimpleNamespace(name=name, info=info, putInQuarantine=mock.Mock(name="putInQuarantine"))


def wfb(w):
    return SimpleNamespace(worker=w)


def request(dry=None):
    properties = Properties()
    if dry is not None:
        properties.setProperty(DRY_RUN, dry, "Force Build Form")
    return SimpleNamespace(properties=properties)


def test_gate_worker_takes_only_dry_runs():
    gate = worker(routing.GATE_WORKER)
    for leg in (PLAIN, PLASMA):
        can_start = routing.can_start_build(leg)
        assert can_start(None, wfb(gate), request(dry=True)) is True
        assert can_start(None, wfb(gate), request(dry=False)) is False
        assert can_start(None, wfb(gate), request()) is False
        assert can_start(None, wfb(gate), request(dry="yes")) is False     # only a real True counts
    gate.putInQuarantine.assert_not_called()


def test_plasma_leg_refused_where_the_probe_lacks_kvm():
    w = worker("kvm-1", NO_KVM)
    assert routing.can_start_build(PLASMA)(None, wfb(w), request(dry=False)) is False
    w.putInQuarantine.assert_called_once_with()
    [refusal] = routing.REFUSALS.for_leg(PLASMA.name)
    assert (refusal.worker, refusal.leg) == ("kvm-1", PLASMA.name)
    assert refusal.reason == "kvm: /dev/kvm: permission denied"
    assert refusal.at > 0


def test_plasma_leg_refused_without_any_probe_report():
    w = worker("kvm-2")
    assert routing.can_start_build(PLASMA)(None, wfb(w), request()) is False
    w.putInQuarantine.assert_called_once_with()
    assert routing.REFUSALS.latest[("kvm-2", PLASMA.name)].reason.startswith("no probe report")


def test_plasma_leg_accepted_where_the_probe_has_kvm_and_qemu():
    routing.REFUSALS.record("kvm-1", PLASMA.name, "earlier: kvm missing")
    w = worker("kvm-1", KVM_QEMU)
    assert routing.can_start_build(PLASMA)(None, wfb(w), request(dry=False)) is True
    w.putInQuarantine.assert_not_called()
    assert routing.REFUSALS.for_leg(PLASMA.name) == []          # the old refusal is cleared


def test_non_plasma_legs_run_on_any_worker():
    for w in (worker("basic", {"capabilities": []}), worker("no-report")):
        assert routing.can_start_build(PLAIN)(None, wfb(w), request(dry=False)) is True
        w.putInQuarantine.assert_not_called()
    assert routing.REFUSALS.latest == {}


def test_dry_runs_run_anywhere():
    w = worker("basic", {"capabilities": []})
    assert routing.can_start_build(PLASMA)(None, wfb(w), request(dry=True)) is True
    w.putInQuarantine.assert_not_called()


def test_refusal_log_keeps_the_latest_per_worker_and_leg():
    log = routing.RefusalLog()
    log.record("w2", "a", "first")
    log.record("w1", "a", "other worker")
    log.record("w2", "a", "second")
    log.record("w1", "b", "other leg")
    assert [(r.worker, r.reason) for r in log.for_leg("a")] == [("w1", "other worker"), ("w2", "second")]
    log.clear("w2", "a")
    log.clear("nobody", "a")                                         # harmless
    assert [r.worker for r in log.for_leg("a")] == ["w1"]


def test_next_worker_prefers_real_workers():
    gate, real = wfb(worker(routing.GATE_WORKER)), wfb(worker("kvm-1"))
    assert routing.next_worker(None, [gate, real], None) is real
    assert routing.next_worker(None, [gate], None) is gate
    assert routing.next_worker(None, [], None) is None
