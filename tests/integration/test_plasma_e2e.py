"""The QEMU-backed e2e leg on a real worker, with a VM really started under KVM.

Needs /dev/kvm usable (this machine's is, as root) and QEMU; skips with the probe's reason
otherwise.  The example platform's e2e test boots the provisioned qcow2 itself and checks
that the guest reports the image id written into it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from harness import ROOT, result_name, wait_gate
from matrixgate.onworker import probe

pytestmark = pytest.mark.integration
REPORT = probe.probe()
if not REPORT["usable"]:
    pytestmark = [pytestmark, pytest.mark.skip(reason=f"KVM/QEMU not usable here: {REPORT['kvm']['detail']}; "
                                                      f"{REPORT['qemu']['detail']}")]


def steps_of(master, build) -> dict:
    return {s["name"]: s for s in master.build_steps(build["buildid"])}


def junit_of(master, build) -> str:
    path = (master.dir / "artifacts" / "plasmavmc-e2e" / str(build["number"]) / "target" / "matrix"
            / "plasmavmc-e2e" / "junit.xml")
    return path.read_text()


def test_gate_with_plasma_e2e_boots_a_vm_under_kvm(make_master, repo):
    master = make_master()
    repo.tag("v1.0.0")                       # the poller gates it: without e2e, as not requested
    plain = wait_gate(master, "v1.0.0")[0]
    outcomes = {o["leg"]: o for o in master.build_properties(plain["buildid"])["gate_legs"]}
    assert outcomes["plasmavmc-e2e"]["state"] == "not-requested"
    assert "not requested" in outcomes["plasmavmc-e2e"]["reason"]

    status, body = master.force("force-release-gate", user="rel", dry_run=False, plasma_e2e=True, branch="v1.0.0")
    assert status == 200, body
    gate = wait_gate(master, "v1.0.0", count=2)[-1]
    assert result_name(gate) == "success", gate["state_string"]
    outcomes = {o["leg"]: o for o in master.build_properties(gate["buildid"])["gate_legs"]}
    e2e = outcomes["plasmavmc-e2e"]
    assert e2e["state"] == "done" and e2e["result"] == "success" and e2e["worker"] == "local-kvm"
    build = master.get(f"builds/{e2e['buildid']}")[0]
    steps = steps_of(master, build)
    assert "image provisioned" in steps["provision qemu+qcow2"]["state_string"]
    assert "VM smoke OK under kvm" in steps["vm smoke"]["state_string"]
    props = master.build_properties(build["buildid"])
    assert props["vm_smoke"]["mode"] == "boot" and props["vm_smoke"]["accel"] == "kvm"
    assert props["vm_smoke"]["image_id"] == props["plasma_image_id"]
    log = master.stdio(build["buildid"], "plasmavmc e2e")
    assert "test result: ok" in log and "0 ignored" in log
    # what the guest wrote, as captured by the platform's test in its junit artifact
    assert f"MATRIXGATE-GUEST-OK MGID:{props['plasma_image_id'].removeprefix('MGID:')}" in junit_of(master, build)
    # the evidence records how the VM ran
    evidence = master.build_properties(gate["buildid"])["evidence"]
    record = json.loads((master.dir / "evidence" / evidence["name"] / "plasmavmc-e2e" / "plasma.json").read_text())
    assert record["qemu_version"] and len(record["qcow2_sha256"]) == 64 and record["vm_smoke"]["ok"] is True


def test_broken_qemu_fails_the_leg_at_the_smoke_step_with_qemus_message(make_master, repo, tmp_path):
    real = shutil.which("qemu-system-x86_64")
    broken = tmp_path / "qemu-broken"
    # A real QEMU that cannot start a VM here: it is handed a machine type it does not have.
    broken.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && exec {real} --version\nexec {real} \"$@\" -machine no-such-machine\n")
    broken.chmod(0o755)
    master = make_master(env={"PLASMAVMC_QEMU_PATH": str(broken)})
    status, body = master.force_leg("plasmavmc-e2e", user="dev", dry_run=False, revision=repo.head())
    assert status == 200, body
    build = master.wait_builds("plasmavmc-e2e", 1, timeout=120)[0]
    assert result_name(build) == "failure"
    steps = steps_of(master, build)
    assert steps["vm smoke"]["results"] == 2
    summary = steps["vm smoke"]["state_string"]
    assert "VM smoke failed" in summary
    assert "qemu-system-x86_64: unsupported machine type" in summary      # QEMU's own words
    assert "plasmavmc e2e" not in {name for name, s in steps.items() if s["results"] == 0}


def test_an_explicit_image_is_used_instead_of_a_new_one(make_master, repo, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "src/matrixgate/onworker/provision.py"),
                          "--out-dir", str(tmp_path / "img")], capture_output=True, text=True, check=True)
    given = json.loads(out.stdout.strip().splitlines()[-1])
    master = make_master(env={"PLASMAVMC_QCOW2_PATH": given["qcow2_path"]})
    status, body = master.force_leg("plasmavmc-e2e", user="dev", dry_run=False, revision=repo.head())
    assert status == 200, body
    build = master.wait_builds("plasmavmc-e2e", 1, timeout=120)[0]
    assert result_name(build) == "success", build["state_string"]
    props = master.build_properties(build["buildid"])
    assert props["plasma_qcow2_path"] == given["qcow2_path"] and props["plasma_provisioned"] is False
    assert props["plasma_qcow2_sha256"] == given["qcow2_sha256"]
    assert "given by PLASMAVMC_QCOW2_PATH" in steps_of(master, build)["provision qemu+qcow2"]["state_string"]
    assert f"MATRIXGATE-GUEST-OK MGID:{given['image_id'].removeprefix('MGID:')}" in junit_of(master, build)
