"""Dry-run plans (src/matrixgate/dryrun.py): what a leg would run, exactly, with secrets masked."""

from __future__ import annotations

import shlex
import subprocess

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.properties import Properties
from buildbot.process.results import SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin

from matrixgate import dryrun
from matrixgate.model import Command, Leg, SecretRef

HOSTILE = "echo 'it''s' \"$HOME\" $(id) `uname`; rm -rf / && printf '%s\\n' \\' ; cat <<EOF"

LEG = Leg(
    name="flaredb-plasmavmc", components=("flaredb", "plasmavmc"), covers="vm metadata",
    commands=(Command("hostile", HOSTILE, timeout=5), Command("tests", "cargo nextest run -p plasmavmc")),
    requires=frozenset({"kvm", "qemu"}),
    env={"API_TOKEN": "t0p-s3cret", "DB_PASSWORD": "hunter2", "PLAIN": "a b", "SIGNING": SecretRef("sign-key"),
         "RUST_LOG": "info"},
    timeout=77, artifacts=("target/junit.xml",),
)


def plan(leg=LEG, **kw):
    args = dict(repo_url="https://git.example.org/platform.git", revision="0123abcd" * 5,
                branch="refs/tags/v1.2.3", workdir="wkdir/build (on the worker)", worker="gate")
    args.update(kw)
    return dryrun.plan_text(leg, **args)


def test_each_command_is_shown_as_the_shell_receives_it():
    text = plan()
    assert f"     /bin/sh -c {shlex.quote(HOSTILE)}\n" in text
    assert "     /bin/sh -c 'cargo nextest run -p plasmavmc'\n" in text
    assert "  1. [hostile] timeout 5s\n" in text
    assert "  2. [tests] timeout 77s\n" in text            # the leg's timeout when the command has none


def test_a_hostile_command_is_quoted_verbatim():
    line = next(l for l in plan().splitlines() if l.startswith("     /bin/sh -c ") and "rm -rf" in l)
    argv = shlex.split(line.strip())
    assert argv == ["/bin/sh", "-c", HOSTILE]
    # And a real shell, given that quoted word, receives exactly the command string.
    echoed = subprocess.run(["/bin/sh", "-c", "printf %s " + line.strip().split(" ", 2)[2]],
                            capture_output=True, text=True, check=True).stdout
    assert echoed == HOSTILE


def test_env_is_masked():
    text = plan()
    assert "    API_TOKEN=<masked>\n" in text
    assert "    DB_PASSWORD=<masked>\n" in text
    assert "    SIGNING=<secret:sign-key, masked>\n" in text
    assert "    PLAIN='a b'\n" in text
    assert "    RUST_LOG=info\n" in text
    assert "t0p-s3cret" not in text and "hunter2" not in text
    # Sorted by name.
    env_lines = [l.strip().split("=")[0] for l in text.splitlines() if l.startswith("    ") and "=" in l]
    assert env_lines == sorted(env_lines)


def test_masked_env_names():
    for name in ("GITHUB_TOKEN", "aws_secret_access_key", "SSH_PRIVATE", "Cookie_Jar", "NPM_AUTH", "PASSWD",
                 "MY_CREDENTIALS"):
        assert dryrun.masked_env({name: "v"}) == [f"    {name}=<masked>"], name
    assert dryrun.masked_env({"HOME_DIR": "v"}) == ["    HOME_DIR=v"]


def test_plan_header_workdir_timeout_capabilities():
    lines = plan().splitlines()
    assert lines[0] == ("DRY RUN of leg flaredb-plasmavmc: flaredb → plasmavmc: vm metadata "
                        "(needs: kvm, qemu)")
    assert "Nothing below was executed." in lines
    assert "worker (for this dry run): gate" in lines
    assert "capabilities a real run needs: kvm, qemu" in lines
    assert ("checkout: git https://git.example.org/platform.git at revision " + "0123abcd" * 5
            + " (ref refs/tags/v1.2.3)") in lines
    assert "working directory: wkdir/build (on the worker)" in lines
    assert "timeout per command (seconds without output): 77" in lines
    assert "  3. VM smoke: boot the image under KVM" in lines
    assert "  - target/junit.xml" in lines


def test_plain_leg_plan():
    leg = Leg(name="plain", components=("a", "b"), covers="x", commands=(Command("t", "make test"),),
              allow_tcg=True)
    text = plan(leg, revision=None, branch=None, repo_url="/srv/git/platform repo.git")
    assert "capabilities a real run needs: none" in text
    assert "checkout: git '/srv/git/platform repo.git' at revision (latest)\n" in text
    assert "    (nothing)\n" in text
    assert "plasma steps" not in text and "artifacts" not in text
    assert text.endswith("     /bin/sh -c 'make test'\n")


def test_tcg_note_for_plasma_legs_that_allow_it():
    leg = Leg(name="vm", components=("a", "b"), covers="x", commands=(Command("t", "make"),),
              requires=frozenset({"kvm"}), allow_tcg=True)
    assert "  3. VM smoke: boot the image under KVM (TCG allowed)\n" in plan(leg)


class DryRunPlanStepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """The step, run by Buildbot's own step test harness on a fake build."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setup_test_build_step()

    @defer.inlineCallbacks
    def test_writes_the_plan_and_runs_nothing(self):
        # Buildbot's fake data API insists on identifier step names (the real one stores any
        # name of up to 50 characters), so the step is renamed for the harness.
        self.setup_step(dryrun.DryRunPlan(LEG, "https://git.example.org/platform.git", name="dry-run-plan"))
        self.build.builder.config.workerbuilddir = "flaredb-plasmavmc"
        self.build.workername = "gate"
        self.build.sources = []
        self.build.getSourceStamp = lambda codebase: None
        self.build.setProperty("dry_run", True, "test")
        # No remote command is expected: running anything would fail the test.
        self.expect_log_file("plan", plan(revision=None, branch=None,
                                          workdir="flaredb-plasmavmc/build (on the worker)"))
        summary = "dry run: would run 2 command(s), ran none"
        self.expect_outcome(result=SUCCESS, state_string=summary)
        self.expect_result_summary({"step": summary, "build": summary})
        self.expect_build_result_summary({"step": summary, "build": summary})
        yield self.run_step()
