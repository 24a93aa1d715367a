"""What a worker's probe found, and why it rules a worker out (src/matrixgate/capabilities.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from buildbot.process.properties import Properties

from matrixgate import capabilities
from matrixgate.props import INFO_KEY

KVM_QEMU = frozenset({"kvm", "qemu"})


def report(caps, **parts):
    return {"capabilities": list(caps), **parts}


@pytest.mark.parametrize("value, expected", [
    ('{"capabilities": ["kvm"]}', {"capabilities": ["kvm"]}),
    ('{"capabilities": ["kvm"]}\n', {"capabilities": ["kvm"]}),       # the info file ends in a newline
    ({"capabilities": []}, {"capabilities": []}),                      # already parsed
    ("", None), ("   ", None), (None, None), (42, None),
    ("not json", None), ("[1, 2]", None), ('"a string"', None), ("{broken", None),
])
def test_probed(value, expected):
    assert capabilities.probed(value) == expected


def test_probed_capabilities():
    assert capabilities.probed_capabilities(report(["kvm", "qemu"])) == KVM_QEMU
    assert capabilities.probed_capabilities(None) == frozenset()
    assert capabilities.probed_capabilities({}) == frozenset()
    assert capabilities.probed_capabilities({"capabilities": "kvm"}) == frozenset()   # not a list
    assert capabilities.probed_capabilities({"capabilities": ["kvm", 1, None]}) == frozenset({"kvm"})


def test_worker_report_reads_the_info_property():
    info = Properties()
    info.setProperty(INFO_KEY, json.dumps(report(["kvm"])), "Worker")
    assert capabilities.worker_report(SimpleNamespace(info=info)) == report(["kvm"])
    assert capabilities.worker_report(SimpleNamespace(info=Properties())) is None
    assert capabilities.worker_report(SimpleNamespace(info=None)) is None
    assert capabilities.worker_report(SimpleNamespace()) is None


def test_missing_capabilities():
    assert capabilities.missing_capabilities(KVM_QEMU, report(["kvm"])) == ["qemu"]
    assert capabilities.missing_capabilities(KVM_QEMU, report(["qemu", "kvm", "nested_virt"])) == []
    assert capabilities.missing_capabilities(KVM_QEMU, None) == ["kvm", "qemu"]


def test_refusal_reason_without_a_report():
    assert capabilities.refusal_reason(KVM_QEMU, None) == (
        "no probe report from this worker (run the probe with --write-info <worker>/info)")


def test_refusal_reason_uses_the_probes_own_words():
    found = report([], kvm={"ok": False, "detail": "/dev/kvm missing: load kvm_intel"},
                   qemu={"ok": True, "detail": "QEMU 7.2"},
                   qemu_img={"ok": False, "detail": "qemu-img not found on PATH; install qemu-utils"})
    assert capabilities.refusal_reason(KVM_QEMU, found) == (
        "kvm: /dev/kvm missing: load kvm_intel; qemu: qemu-img not found on PATH; install qemu-utils")


def test_refusal_reason_reports_both_qemu_parts():
    found = report(["kvm"], qemu={"ok": False, "detail": "qemu-system-x86_64 not found"},
                   qemu_img={"ok": False, "detail": "qemu-img not found"})
    assert capabilities.refusal_reason(KVM_QEMU, found) == (
        "qemu: qemu-system-x86_64 not found; qemu-img not found")


def test_refusal_reason_without_details():
    assert capabilities.refusal_reason(KVM_QEMU, report(["qemu"])) == "kvm: not found by the probe"
    assert capabilities.refusal_reason(KVM_QEMU, report(["kvm", "qemu"])) == ""
