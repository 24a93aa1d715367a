"""One Buildbot builder per enabled matrix leg.

A leg build: (dry run: print the plan, stop) or (attempt limit -> plasma preflight,
provision and VM smoke -> checkout at the requested revision -> the leg's commands ->
artifacts uploaded to the master).
"""

from __future__ import annotations

from pathlib import Path

from buildbot.config import BuilderConfig
from buildbot.process import buildstep
from buildbot.process.factory import BuildFactory
from buildbot.process.properties import Interpolate, Property
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.steps.transfer import FileUpload
from twisted.internet import defer

from . import props, workersteps
from .dryrun import DryRunPlan
from .model import Leg, SecretRef
from .settings import Settings

TAGS_FOR_LEG = ("matrix",)


def builder_tags(leg: Leg) -> list[str]:
    return list(TAGS_FOR_LEG) + (["plasma"] if leg.is_plasma else [])


class AttemptLimit(buildstep.BuildStep):
    """Fails the request once a leg has been lost ``max_attempts`` times.

    Buildbot requeues a build that ends RETRY (a worker lost mid-leg) forever; a gate
    must end instead, and never count a lost leg as passed.
    """

    name = "attempt limit"

    def __init__(self, max_attempts: int, **kwargs):
        kwargs.setdefault("hideStepIf", lambda results, step: results == SUCCESS or props.hide_skipped(results, step))
        super().__init__(**kwargs)
        self.max_attempts = max_attempts
        self.summary = ""

    @defer.inlineCallbacks
    def run(self):
        brid = self.build.requests[0].id
        builds = yield self.master.data.get(("buildrequests", brid, "builds"))
        attempt = len(builds)
        self.setProperty("leg_attempt", attempt, "attempt limit")
        if attempt > self.max_attempts:
            self.summary = (f"gave up: attempt {attempt} of at most {self.max_attempts}; earlier attempts "
                            "lost their worker")
            return FAILURE
        self.summary = f"attempt {attempt} of {self.max_attempts}"
        return SUCCESS

    def getResultSummary(self):
        return {"step": self.summary} if self.summary else super().getResultSummary()


def matrix_env(leg: Leg) -> dict:
    """The env the matrix gives the leg; secrets rendered by Buildbot (and redacted in logs)."""
    return {name: Interpolate(f"%(secret:{value.name})s") if isinstance(value, SecretRef) else value
            for name, value in leg.env.items()}


def leg_env(leg: Leg) -> dict:
    """The env of the leg's commands: the matrix's, plus what the gate knows.

    Plasma legs get the QEMU and image that the provision step chose (which honoured
    PLASMAVMC_QEMU_PATH / PLASMAVMC_QCOW2_PATH from the matrix or the worker's env).
    """
    env = matrix_env(leg)
    env.setdefault("MATRIX_LEG", leg.name)
    env.setdefault("RELEASE_TAG", Property(props.RELEASE_TAG, default=""))
    if leg.is_plasma:
        env["PLASMAVMC_QEMU_PATH"] = Property("plasma_qemu_path", default="")
        env["PLASMAVMC_QCOW2_PATH"] = Property("plasma_qcow2_path", default="")
    return env


def leg_factory(leg: Leg, settings: Settings) -> BuildFactory:
    real = {"doStepIf": props.is_real_run, "hideStepIf": props.hide_skipped}
    factory = BuildFactory()
    factory.addStep(DryRunPlan(leg, settings.repo_url))
    factory.addStep(AttemptLimit(leg.max_attempts, haltOnFailure=True, **real))
    if leg.is_plasma:
        for script in ("probe.py", "provision.py", "vmsmoke.py"):
            factory.addStep(workersteps.download(script, haltOnFailure=True, doStepIf=props.is_real_run))
        factory.addStep(workersteps.Preflight(leg.requires, haltOnFailure=True, logEnviron=False, **real))
        factory.addStep(workersteps.Provision(haltOnFailure=True, logEnviron=False, env=matrix_env(leg), **real))
        factory.addStep(workersteps.VmSmoke(leg.allow_tcg, haltOnFailure=True, logEnviron=False, **real))
    factory.addStep(Git(
        name="checkout", repourl=settings.repo_url, mode="full", method="fresh",
        logEnviron=False, haltOnFailure=True, **real))
    env = leg_env(leg)
    for command in leg.commands:
        factory.addStep(ShellCommand(
            name=command.name, command=command.run, env=env, logEnviron=False,
            timeout=command.timeout or leg.timeout, haltOnFailure=True, **real))
    artifacts_root = settings.basedir / "artifacts" / leg.name
    for path in leg.artifacts:
        factory.addStep(FileUpload(
            name=f"upload {Path(path).name}"[:50], workersrc=path,
            masterdest=Interpolate(f"{artifacts_root}/%(prop:buildnumber)s/{path}"),
            alwaysRun=True, flunkOnFailure=False, warnOnFailure=True, **real))
    return factory


def leg_builder(leg: Leg, settings: Settings, workernames: list[str], can_start, next_worker) -> BuilderConfig:
    return BuilderConfig(
        name=leg.name,
        workernames=workernames,
        factory=leg_factory(leg, settings),
        tags=builder_tags(leg),
        description=leg.description,
        collapseRequests=False,
        canStartBuild=can_start,
        nextWorker=next_worker,
        properties={"matrix_leg": leg.name, "leg_requires": sorted(leg.requires),
                    "leg_fingerprint": leg.fingerprint},
    )
