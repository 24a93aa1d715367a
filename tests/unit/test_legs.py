"""One builder per leg (src/matrixgate/legs.py): the steps a leg build runs, and its env."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from buildbot.process.properties import Interpolate, Properties, Property
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.steps.transfer import FileDownload, FileUpload
from buildbot.test import fakedb
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import legs, props, workersteps
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
    return legs.leg_factory(leg, SETTINGS).steps


def test_plain_leg_steps():
    got = [(s.step_class, s.kwargs.get("name")) for s in steps(PLAIN)]
    assert got == [
        (DryRunPlan, None), (legs.AttemptLimit, None), (Git, "checkout"),
        (ShellCommand, "build"), (ShellCommand, "test"), (FileUpload, "upload junit.xml"),
    ]


def test_plasma_leg_steps():
    got = [(s.step_class, s.kwargs.get("name")) for s in steps(PLASMA)]
    assert got == [
        (DryRunPlan, None), (legs.AttemptLimit, None),
        (FileDownload, "send probe.py"), (FileDownload, "send provision.py"), (FileDownload, "send vmsmoke.py"),
        (workersteps.Preflight, None), (workersteps.Provision, None), (workersteps.VmSmoke, None),
        (Git, "checkout"), (ShellCommand, "vm"),
    ]
    vm_smoke = steps(PLASMA)[7]
    assert vm_smoke.args == (True,)                                   # allow_tcg reaches the step


def test_real_steps_are_skipped_in_dry_runs():
    dry_build, real_build = Properties(), Properties()
    dry_build.setProperty(props.DRY_RUN, True, "test")
    for factory_step in steps(PLASMA)[1:]:
        do = factory_step.kwargs["doStepIf"]
        assert do(SimpleNamespace(build=real_build)) is True
        assert do(SimpleNamespace(build=dry_build)) is False
    dry_plan = steps(PLASMA)[0]
    assert dry_plan.kwargs == {} and dry_plan.args == (PLASMA, "/srv/git/platform.git")


def test_shell_steps():
    shells = [s for s in steps(PLAIN) if s.step_class is ShellCommand]
    assert [(s.kwargs["command"], s.kwargs["timeout"]) for s in shells] == [("cargo build", 60), ("cargo test", 900)]
    for s in shells:
        # The worker's environment (and any secret in it) never reaches the log.
        assert s.kwargs["logEnviron"] is False and s.kwargs["haltOnFailure"] is True
    git = steps(PLAIN)[2].kwargs
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
    assert env["RELEASE_TAG"] == Property(props.RELEASE_TAG, default="")
    assert "PLASMAVMC_QEMU_PATH" not in env
    plasma = legs.leg_env(PLASMA)
    assert plasma["PLASMAVMC_QEMU_PATH"] == Property("plasma_qemu_path", default="")
    assert plasma["PLASMAVMC_QCOW2_PATH"] == Property("plasma_qcow2_path", default="")


def test_leg_builder():
    can_start, next_worker = (lambda *a: True), (lambda *a: None)
    builder = legs.leg_builder(PLASMA, SETTINGS, ["kvm-1", "gate"], can_start, next_worker)
    assert builder.name == "flaredb-plasmavmc" and builder.workernames == ["kvm-1", "gate"]
    assert builder.tags == ["matrix", "plasma"] and builder.collapseRequests is False
    assert builder.properties == {"matrix_leg": "flaredb-plasmavmc", "leg_requires": ["kvm", "qemu"],
                                  "leg_fingerprint": PLASMA.fingerprint}
    assert builder.canStartBuild is can_start and builder.nextWorker is next_worker
    assert legs.builder_tags(PLAIN) == ["matrix"]


class AttemptLimitTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """A request whose builds keep losing their worker ends after max_attempts."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setup_test_build_step()

    @defer.inlineCallbacks
    def run_with_builds(self, count, max_attempts=2):
        # setup_test_build_step already made build 92 for request 300.
        yield self.master.db.insert_test_data([
            fakedb.Build(id=93 + i, buildrequestid=300, number=8 + i, masterid=fakedb.FakeDBConnector.MASTER_ID,
                         builderid=100, workerid=400) for i in range(count - 1)])
        self.setup_step(legs.AttemptLimit(max_attempts, name="attempt-limit"))
        self.build.requests = [SimpleNamespace(id=300)]

    @defer.inlineCallbacks
    def test_first_attempt(self):
        yield self.run_with_builds(1)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("leg_attempt", 1, "attempt limit")
        self.expect_result_summary({"step": "attempt 1 of 2"})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_last_allowed_attempt(self):
        yield self.run_with_builds(2)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("leg_attempt", 2, "attempt limit")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_gives_up_after_max_attempts(self):
        yield self.run_with_builds(3)
        self.expect_outcome(result=FAILURE)
        self.expect_result_summary({"step": "gave up: attempt 3 of at most 2; earlier attempts lost their worker"})
        yield self.run_step()
