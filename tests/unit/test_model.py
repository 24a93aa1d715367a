"""The validated data model (src/matrixgate/model.py)."""

from __future__ import annotations

import dataclasses

import pytest

from matrixgate.model import Command, Leg, Matrix, Release, WorkerSet, WorkerSpec


def leg(name="a", requires=(), **kw):
    return Leg(name=name, components=("x", "y"), covers="z", commands=(Command("t", "make"),),
               requires=frozenset(requires), **kw)


def test_plasma_legs():
    assert leg(requires={"kvm"}).is_plasma
    assert leg(requires={"qemu"}).is_plasma
    assert leg(requires={"nested_virt"}).is_plasma
    assert not leg().is_plasma


def test_description():
    assert leg(requires={"qemu", "kvm"}).description == "x → y: z (needs: kvm, qemu)"
    assert leg().description == "x → y: z (needs: any worker)"


def test_requested_for_tag():
    e2e = leg(on_request=True, run_for_tags=("v*.0", "rc-*"))
    assert e2e.requested_for_tag("v2.0") and e2e.requested_for_tag("rc-1")
    assert not e2e.requested_for_tag("v2.0.1") and not e2e.requested_for_tag(None)
    assert not e2e.requested_for_tag("")
    assert not leg().requested_for_tag("v2.0")


def test_release_matches_case_sensitively():
    assert Release().matches("v1.2.3")
    assert not Release().matches("V1.2.3") and not Release().matches("release-1")


def test_matrix_lookup():
    m = Matrix(source="m.yaml", platform="p", legs=(leg("a"), leg("b", enabled=False)), release=Release())
    assert [l.name for l in m.enabled_legs] == ["a"]
    assert m.leg("b").enabled is False
    with pytest.raises(KeyError):
        m.leg("c")


def test_worker_capabilities_are_true_booleans_only():
    w = WorkerSpec(name="w", properties={"kvm": True, "qemu": "true", "nested_virt": 1, "arch": "x86_64"})
    assert w.capabilities == frozenset({"kvm"})
    assert w.declares(frozenset({"kvm"})) and w.declares(frozenset())
    assert not w.declares(frozenset({"kvm", "qemu"}))


def test_capable_of():
    kvm = WorkerSpec(name="kvm", properties={"kvm": True, "qemu": True})
    basic = WorkerSpec(name="basic", properties={})
    workers = WorkerSet(source="w.yaml", workers=(kvm, basic))
    assert workers.capable_of(leg(requires={"kvm", "qemu"})) == (kvm,)
    assert workers.capable_of(leg()) == (kvm, basic)
    assert workers.capable_of(leg(requires={"nested_virt"})) == ()


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        leg().name = "b"
