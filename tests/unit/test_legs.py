"""One builder per leg (src/matrixgate/legs.py): the steps a leg build runs, and its env."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from buildbot.process.properties import Interpolate, Properties, Property
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.steps.transfer import FileDownload, FileUpload

from matrixgate import attempts, legs, props, workersteps
from matrixgate.dryrun import DryRunPlan
from matrixgate.model import Command, Leg, SecretRef
from matrixgate.settings import Settings

SETTINGS = Settings(basedir=Path("/srv/gate"), repo_url="/srv/git/platform.git")
PLAIN = Leg(name="chainfire-flaredb", components=("chainfire", "flaredb"), covers="raft",
            commands=(Command("build", "cargo build", timeout=60), Command("test", "cargo test")),
            env={"RUST_LOG": "info", "API_TOKEN": SecretRef("api-token")}, timeout=900,
            artifacts=("target/nextest/ci/junit.xml",))
PLASMA = Leg(name="flaredb-plasmavmc", components=("flaredb", "plasmavmc"), covers="vm",
             commands=(Command("vm", "cargo test -p plasmavmc"),), requires=frozenset({"kvm", "qemu"}),
             allow_tcg=True)


def steps(leg):
    """The real run's steps (a first attempt)."""
    return legs.leg_factory(leg, SETTINGS).steps


def request(dry_run=None, brid=1, submitted=None):
    properties = Properties()
    if dry_run is not None:
        properties.setProperty(props.DRY_RUN, dry_run, "test")
    return SimpleNamespace(id=brid, properties=properties,
                           submittedAt=submitted if submitted is not None else attempts.PROCESS_STARTED + 10)


def test_plain_leg_steps():
    got = [(s.step_class, s.kwargs.get("name")) for s in steps(PLAIN)]
    assert got == [
        (Git, "checkout"), (ShellCommand, "build"), (ShellCommand, "test"), (FileUpload, "upload junit.xml"),
    ]


def test_plasma_leg_steps():
    got = [(s.step_class, s.kwargs.get("name")) for s in steps(PLASMA)]
    assert got == [
        (FileDownload, "send probe.py"), (FileDownload, "send provision.py"), (FileDownload, "send vmsmoke.py"),
        (workersteps.Preflight, None), (workersteps.Provision, None), (workersteps.VmSmoke, None),
        (Git, "checkout"), (ShellCommand, "vm"),
    ]
    vm_smoke = steps(PLASMA)[5]
    assert vm_smoke.args == (True,)                                   # allow_tcg reaches the step


def test_a_dry_run_gets_the_plan_and_nothing_else(monkeypatch):
    monkeypatch.setattr(attempts, "STARTED", attempts.StartedRequests())
    factory = legs.leg_factory(PLASMA, SETTINGS)
    dry = factory.steps_for(request(dry_run=True, brid=10))
    assert [s.step_class for s in dry] == [DryRunPlan]
    assert dry[0].args == (PLASMA, "/srv/git/platform.git")
    # only a real boolean counts: a string "yes", or no property, is a real run
    for value in ("yes", None, False):
        real = factory.steps_for(request(dry_run=value, brid=11 + (value is None) + 2 * (value is False)))
        assert real == factory.steps and DryRunPlan not in [s.step_class for s in real]


def test_a_build_that_may_be_a_retry_counts_its_attempts(monkeypatch):
    started = attempts.StartedRequests()
    monkeypatch.setattr(attempts, "STARTED", started)
    factory = legs.leg_factory(PLAIN, SETTINGS)
    first = factory.steps_for(request(brid=20))
    assert first == factory.steps                                   # a new request: no extra step
    again = factory.steps_for(request(brid=20))                     # requeued after a lost worker
    assert [s.step_class for s in again] == [attempts.AttemptLimit] + [s.step_class for s in factory.steps]
    assert again[0].args == (PLAIN.max_attempts,) and again[0].kwargs["haltOnFailure"] is True
    # submitted before this master process started: it may have run before a restart
    old = factory.steps_for(request(brid=21, submitted=attempts.PROCESS_STARTED - 60))
    assert old[0].step_class is attempts.AttemptLimit


def test_the_factory_builds_the_chosen_steps(monkeypatch):
    monkeypatch.setattr(attempts, "STARTED", attempts.StartedRequests())
    factory = legs.leg_factory(PLAIN, SETTINGS)
    builder = SimpleNamespace(name=PLAIN.name, master=None, config_version=0, config=None)

    def buildrequest(**kwargs):   # what Build() reads of a request besides its properties
        return SimpleNamespace(**vars(request(**kwargs)), mergeSourceStampsWith=lambda others: [],
                               mergeReasons=lambda others: "test")
    build = factory.newBuild([buildrequest(dry_run=True, brid=30)], builder)
    assert [s.step_class for s in build.stepFactories] == [DryRunPlan]
    build = factory.newBuild([buildrequest(dry_run=False, brid=31)], builder)
    assert build.stepFactories == factory.steps


def test_shell_steps():
    shells = [s for s in steps(PLAIN) if s.step_class is ShellCommand]
    assert [(s.kwargs["command"], s.kwargs["timeout"]) for s in shells] == [("cargo build", 60), ("cargo test", 900)]
    for s in shells:
        # The worker's environment (and any secret in it) never reaches the log.
        assert s.kwargs["logEnviron"] is False and s.kwargs["haltOnFailure"] is True
    git = steps(PLAIN)[0].kwargs
    assert (git["repourl"], git["mode"], git["method"], git["logEnviron"]) == (
        "/srv/git/platform.git", "full", "fresh", False)


def test_uploads_keep_going_and_land_per_build():
    upload = steps(PLAIN)[-1].kwargs
    assert upload["workersrc"] == "target/nextest/ci/junit.xml"
    assert upload["alwaysRun"] is True and upload["flunkOnFailure"] is False
    assert upload["masterdest"] == Interpolate(
        "/srv/gate/artifacts/chainfire-flaredb/%(prop:buildnumber)s/target/nextest/ci/junit.xml")


def test_leg_env():
    env = legs.leg_env(PLAIN)
    assert env["RUST_LOG"] == "info"
    assert env["API_TOKEN"] == Interpolate("%(secret:api-token)s")   # rendered late, redacted in logs
    assert env["MATRIX_LEG"] == "chainfire-flaredb"
    assert env["RELEASE_TAG"] is legs.release_tag                   # from the source stamp's branch
    assert "PLASMAVMC_QEMU_PATH" not in env
    plasma = legs.leg_env(PLASMA)
    assert plasma["PLASMAVMC_QEMU_PATH"] == Property("plasma_qemu_path", default="")
    assert plasma["PLASMAVMC_QCOW2_PATH"] == Property("plasma_qcow2_path", default="")


def test_leg_builder():
    can_start, next_worker = (lambda *a: True), (lambda *a: None)
    builder = legs.leg_builder(PLASMA, SETTINGS, ["kvm-1", "gate"], can_start, next_worker)
    assert builder.name == "flaredb-plasmavmc" and builder.workernames == ["kvm-1", "gate"]
    assert builder.tags == ["matrix", "plasma"] and builder.collapseRequests is False
    assert builder.properties == {"leg_fingerprint": PLASMA.fingerprint}
    assert "needs: kvm, qemu" in builder.description
    assert builder.canStartBuild is can_start and builder.nextWorker is next_worker
    assert legs.builder_tags(PLAIN) == ["matrix"]


def test_release_tag_comes_from_the_branch_a_gate_triggered_the_leg_on():
    def rendered(branch):
        properties = Properties()
        if branch is not None:
            properties.setProperty("branch", branch, "Build")
        result = []
        properties.render(legs.release_tag).addCallback(result.append)
        return result[0]
    assert rendered("refs/tags/v1.2.3") == "v1.2.3"
    assert rendered("refs/heads/main") == "" and rendered(None) == ""   # a forced leg on a branch
