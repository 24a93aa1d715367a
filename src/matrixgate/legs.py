"""One Buildbot builder per enabled matrix leg.

A leg build is one of two step lists, chosen when the build is created:

* dry run: the plan, nothing else;
* real run: (attempt limit, only when the build may be a retry) -> plasma preflight,
  provision and VM smoke -> checkout at the requested revision -> the leg's commands ->
  artifacts uploaded to the master.

Choosing the list up front, rather than listing both and skipping half with ``doStepIf``,
matters for speed: Buildbot records even a skipped step (three database transactions),
and the slowest leg's extra steps are added to every gate.
"""

from __future__ import annotations

import functools
from pathlib import Path

from buildbot.config import BuilderConfig
from buildbot.process.buildstep import get_factory_from_step_or_factory
from buildbot.process.factory import BuildFactory
from buildbot.process.properties import Interpolate, Property, renderer
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.steps.transfer import FileUpload

from . import attempts, props, workersteps
from .dryrun import DryRunPlan
from .model import Leg, SecretRef
from .settings import Settings
from .tags import tag_of

TAGS_FOR_LEG = ("matrix",)


def builder_tags(leg: Leg) -> list[str]:
    return list(TAGS_FOR_LEG) + (["plasma"] if leg.is_plasma else [])


def matrix_env(leg: Leg) -> dict:
    """The env the matrix gives the leg; secrets rendered by Buildbot (and redacted in logs)."""
    return {name: Interpolate(f"%(secret:{value.name})s") if isinstance(value, SecretRef) else value
            for name, value in leg.env.items()}


@renderer
def release_tag(properties) -> str:
    """The tag a leg build runs for: its source stamp's branch is ``refs/tags/<tag>`` when a
    gate triggered it (a forced leg on a branch or a bare revision has none)."""
    return tag_of(properties.getProperty("branch"), None) or ""


def leg_env(leg: Leg) -> dict:
    """The env of the leg's commands: the matrix's, plus what the gate knows.

    Plasma legs get the QEMU and image that the provision step chose (which honoured
    PLASMAVMC_QEMU_PATH / PLASMAVMC_QCOW2_PATH from the matrix or the worker's env).
    """
    env = matrix_env(leg)
    env.setdefault("MATRIX_LEG", leg.name)
    env.setdefault("RELEASE_TAG", release_tag)
    if leg.is_plasma:
        env["PLASMAVMC_QEMU_PATH"] = Property("plasma_qemu_path", default="")
        env["PLASMAVMC_QCOW2_PATH"] = Property("plasma_qcow2_path", default="")
    return env


class LegFactory(BuildFactory):
    """A build factory with a dry-run step list and a real one.

    The request's ``dry_run`` property (set by the gate's trigger or the force form, and
    fixed for the life of the request) picks the list when Buildbot creates the build.
    """

    compare_attrs = (*BuildFactory.compare_attrs, "dry_steps", "attempt_step")

    def __init__(self, dry_steps, real_steps, attempt_step):
        super().__init__(real_steps)
        self.dry_steps = [get_factory_from_step_or_factory(step) for step in dry_steps]
        self.attempt_step = get_factory_from_step_or_factory(attempt_step)

    def steps_for(self, request) -> list:
        if props.is_dry_run(request.properties):
            return self.dry_steps
        if attempts.may_be_retry(request):
            return [self.attempt_step, *self.steps]
        return self.steps

    def newBuild(self, requests, builder):
        build = super().newBuild(requests, builder)
        build.setStepFactories(self.steps_for(requests[0]))
        return build


def leg_factory(leg: Leg, settings: Settings) -> LegFactory:
    real = []
    if leg.is_plasma:
        for script in ("probe.py", "provision.py", "vmsmoke.py"):
            real.append(workersteps.download(script, haltOnFailure=True))
        real.append(workersteps.Preflight(leg.requires, haltOnFailure=True, logEnviron=False))
        real.append(workersteps.Provision(haltOnFailure=True, logEnviron=False, env=matrix_env(leg)))
        real.append(workersteps.VmSmoke(leg.allow_tcg, haltOnFailure=True, logEnviron=False))
    real.append(Git(
        name="checkout", repourl=settings.repo_url, mode="full", method="fresh",
        logEnviron=False, haltOnFailure=True))
    env = leg_env(leg)
    for command in leg.commands:
        real.append(ShellCommand(
            name=command.name, command=command.run, env=env, logEnviron=False,
            timeout=command.timeout or leg.timeout, haltOnFailure=True))
    for path in leg.artifacts:
        artifacts_root = settings.basedir / "artifacts" / leg.name
        real.append(FileUpload(
            name=f"upload {Path(path).name}"[:50], workersrc=path,
            masterdest=Interpolate(f"{artifacts_root}/%(prop:buildnumber)s/{path}"),
            alwaysRun=True, flunkOnFailure=False, warnOnFailure=True))
    return LegFactory(
        dry_steps=[DryRunPlan(leg, settings.repo_url)],
        real_steps=real,
        attempt_step=attempt_limit(leg.max_attempts))


@functools.lru_cache(maxsize=None)
def attempt_limit(max_attempts: int):
    """One step factory per limit, shared by the legs that have it (Buildbot builds a new
    step from it for every build; at 500 legs a factory each cost 20 ms of checkconfig)."""
    return attempts.AttemptLimit(max_attempts, haltOnFailure=True)


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
        # Recorded on every build so a later gate reuses it only while the leg is unchanged.
        # (Each build property is a database write per build: only what is read goes here;
        # the leg's name and requirements are the builder's name and description.)
        properties={"leg_fingerprint": leg.fingerprint},
    )
