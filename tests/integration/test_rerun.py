"""Re-running a gate reuses the legs that passed at the same revision.

The failure here is the host's, not the code's: a real ``buildbot-worker`` started with
``MINICLOUD_FAULTS`` (the example platform's stand-in for a broken machine) fails one leg;
once the worker is fixed and the gate re-run for the same tag, only that leg runs again.
"""

from __future__ import annotations

import pytest

from harness import result_name, wait_gate

pytestmark = pytest.mark.integration

WORKERS = """
version: 1
workers:
  - name: local-kvm
    local: true
    max_builds: 2
    properties: {kvm: true, nested_virt: true, qemu: true}
  - name: basic-1
    max_builds: 2
    password_secret: worker-basic-1
    properties: {kvm: false, qemu: false}
"""


def test_rerun_reuses_passed_legs_and_runs_the_rest(make_master, repo):
    master = make_master(workers_yaml=WORKERS, env={"GATE_SECRET_WORKER_BASIC_1": "basic-1-password"})
    master.start_worker("basic-1", "basic-1-password", env={"MINICLOUD_FAULTS": "DROP_BILLING_SAMPLES"})
    commit = repo.commit("release 5.0.0")
    repo.tag("v5.0.0")
    first = wait_gate(master, "v5.0.0")[0]
    assert result_name(first) == "failure"
    assert "creditservice-nightlight" in first["state_string"]
    first_legs = {o["leg"]: o for o in master.build_properties(first["buildid"])["gate_legs"]}
    assert first_legs["creditservice-nightlight"]["worker"] == "basic-1"

    master.stop_worker("basic-1")                                 # the host gets fixed ...
    master.start_worker("basic-1", "basic-1-password")
    status, body = master.force("force-release-gate", user="rel", dry_run=False, branch="v5.0.0",
                                reason="re-run after fixing basic-1")
    assert status == 200, body
    second = wait_gate(master, "v5.0.0", count=2)[-1]
    assert result_name(second) == "success", second["state_string"]
    outcomes = {o["leg"]: o for o in master.build_properties(second["buildid"])["gate_legs"]}
    reused = {leg for leg, o in outcomes.items() if o["state"] == "reused"}
    assert reused == {"chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice"}
    assert outcomes["creditservice-nightlight"]["state"] == "done"
    assert outcomes["creditservice-nightlight"]["buildid"] != first_legs["creditservice-nightlight"]["buildid"]
    for leg in reused:  # linked to the very builds that passed in the first gate
        assert outcomes[leg]["buildid"] == first_legs[leg]["buildid"]

    # rerun_all runs everything again
    status, body = master.force("force-release-gate", user="rel", dry_run=False, branch="v5.0.0",
                                rerun_all=True)
    assert status == 200, body
    third = wait_gate(master, "v5.0.0", count=3)[-1]
    outcomes = master.build_properties(third["buildid"])["gate_legs"]
    assert not [o for o in outcomes if o["state"] == "reused"]
    # published exactly once in spite of two green gates
    assert (master.root / "published.txt").read_text().split() == ["v5.0.0", commit]
    publishes = master.wait_builds("release-publish", 2, timeout=30)   # the gate does not wait for them
    assert len(publishes) == 2
    assert "not publishing twice" in publishes[-1]["state_string"]
