"""KVM-aware scheduling with real ``buildbot-worker`` processes on loopback.

kvm-1 declares KVM and its probe agrees; basic-1 declares nothing; liar-1 declares KVM but
its probe is pointed at a device that does not exist (a host whose KVM went away).
"""

from __future__ import annotations


import pytest

from harness import result_name

pytestmark = pytest.mark.integration

WORKERS = """
version: 1
workers:
  - name: kvm-1
    password_secret: worker-kvm-1
    properties: {kvm: true, nested_virt: true, qemu: true}
  - name: basic-1
    password_secret: worker-basic-1
    properties: {kvm: false, qemu: false}
  - name: liar-1
    password_secret: worker-liar-1
    properties: {kvm: true, nested_virt: true, qemu: true}
"""
PASSWORDS = {"kvm-1": "kvm-1-password", "basic-1": "basic-1-password", "liar-1": "liar-1-password"}
PLASMA = ("flaredb-plasmavmc", "plasmavmc-creditservice")
OTHERS = ("chainfire-flaredb", "creditservice-nightlight")


def worker_of(master, build) -> str:
    return master.get(f"workers/{build['workerid']}")[0]["name"]


@pytest.fixture
def kvm_master(make_master):
    env = {f"GATE_SECRET_WORKER_{n.upper().replace('-', '_')}": p for n, p in PASSWORDS.items()}
    env["GATE_WAIT_FOR_WORKER"] = "6"
    master = make_master(workers_yaml=WORKERS, env=env)
    master.start_worker("kvm-1", PASSWORDS["kvm-1"])
    master.start_worker("basic-1", PASSWORDS["basic-1"])
    master.start_worker("liar-1", PASSWORDS["liar-1"], probe_args=("--kvm-device", "/nonexistent/kvm"),
                        env={"MATRIXGATE_KVM_DEVICE": "/nonexistent/kvm"})
    return master


def test_plasma_legs_run_only_where_kvm_really_is(kvm_master, repo):
    master = kvm_master
    # static layer: liar-1 declares KVM, so it is configured on the plasma builders; basic-1 is not
    plasma_id = master.builder_id("flaredb-plasmavmc")
    configured = {w["name"] for w in master.get(f"builders/{plasma_id}/workers")}
    assert configured == {"kvm-1", "liar-1", "gate"}
    for _ in range(2):
        for leg in PLASMA + OTHERS:
            status, body = master.force_leg(leg, user="dev", dry_run=False, revision=repo.head())
            assert status == 200, body
    for leg in PLASMA + OTHERS:
        master.wait_builds(leg, 2, timeout=240)
    for leg in PLASMA:
        for build in master.builds(leg):
            assert result_name(build) == "success", (leg, build["state_string"])
            assert worker_of(master, build) == "kvm-1"
            steps = {s["name"]: s for s in master.build_steps(build["buildid"])}
            assert "usable on kvm-1" in steps["preflight kvm+qemu"]["state_string"]
            assert "VM smoke OK under kvm" in steps["vm smoke"]["state_string"]
    for leg in OTHERS:
        for build in master.builds(leg):
            assert result_name(build) == "success"
            assert worker_of(master, build) in {"kvm-1", "basic-1", "liar-1"}
    # the dynamic layer refused liar-1, said why, and quarantined it
    log = (master.dir / "twistd.log").read_text()
    assert "refused flaredb-plasmavmc on worker liar-1" in log or "refused plasmavmc-creditservice on worker liar-1" in log
    assert "liar-1 has been put in quarantine" in log
    page = master.raw("plugins/wsgi_dashboards/gate/index.html").decode()
    assert "liar-1" in page and "/nonexistent/kvm" in page


def test_without_a_capable_worker_the_request_fails_with_the_reason(kvm_master, repo):
    master = kvm_master
    master.stop_worker("kvm-1")
    master.wait_for(lambda: not master.worker_connected("kvm-1"), 30, "kvm-1 to disconnect")
    status, body = master.force_leg("flaredb-plasmavmc", user="dev", dry_run=False, revision=repo.head())
    assert status == 200, body
    builderid = master.builder_id("flaredb-plasmavmc")
    # the note appears within a watcher pass; the refusal of liar-1 joins it once the
    # distributor has offered liar-1 the request
    description = master.wait_for(
        lambda: (lambda d: d if d and "waiting for a worker with kvm, qemu" in d and "refused liar-1" in d
                 else None)(master.get(f"builders/{builderid}")[0]["description"]), 10, "the waiting note")
    assert "/nonexistent/kvm" in description
    request = master.wait_for(lambda: [r for r in master.buildrequests(builderid=builderid) if r["complete"]],
                              30, "the request to end")[0]
    assert request["results"] == 2                              # FAILURE, not a silent wait
    assert master.get(f"buildrequests/{request['buildrequestid']}/builds") == []
    log = (master.dir / "twistd.log").read_text()
    assert "no worker with kvm, qemu connected within 6s" in log
    # once nothing waits, the builder's description is the leg's own again
    master.wait_for(lambda: "waiting" not in master.get(f"builders/{builderid}")[0]["description"], 10,
                    "the waiting note to go")
    # a dry run needs no KVM: it runs anyway
    status, body = master.force_leg("flaredb-plasmavmc", user="dev", dry_run=True, revision=repo.head())
    assert status == 200, body
    build = master.wait_builds("flaredb-plasmavmc", 1, timeout=30)[-1]
    assert result_name(build) == "success" and "dry run" in build["state_string"]


def test_preflight_catches_kvm_that_went_away_since_the_probe(make_master, repo):
    """stale-1's info/ file was written while KVM worked; at build time it does not."""
    workers = """
version: 1
workers:
  - name: stale-1
    password_secret: worker-stale-1
    properties: {kvm: true, nested_virt: true, qemu: true}
"""
    master = make_master(workers_yaml=workers, env={"GATE_SECRET_WORKER_STALE_1": "stale-1-password"})
    master.start_worker("stale-1", "stale-1-password", env={"MATRIXGATE_KVM_DEVICE": "/nonexistent/kvm"})
    status, body = master.force_leg("flaredb-plasmavmc", user="dev", dry_run=False, revision=repo.head())
    assert status == 200, body
    build = master.wait_builds("flaredb-plasmavmc", 1, timeout=90)[0]
    assert result_name(build) == "exception"                   # infrastructure, not a test failure
    steps = {s["name"]: s for s in master.build_steps(build["buildid"])}
    summary = steps["preflight kvm+qemu"]["state_string"]
    assert "preflight failed on stale-1, not a test failure" in summary and "/nonexistent/kvm" in summary
    assert "vm metadata across leader switch" not in steps and "checkout" not in steps  # nothing ran after it
