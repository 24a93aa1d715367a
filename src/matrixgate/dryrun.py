"""Dry runs: print exactly what a leg would run, run none of it.

The plan is built from the same ``Leg`` data and the same command strings the real steps
use, so what the dry run shows is what a real run would execute.
"""

from __future__ import annotations

import re
import shlex

from buildbot.process import buildstep
from buildbot.process.results import SUCCESS
from twisted.internet import defer

from .model import Leg, SecretRef

#: Env names whose values are masked in the plan even when written in the matrix.
SECRET_NAME = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|COOKIE|PRIVATE)", re.I)


def masked_env(env: dict) -> list[str]:
    lines = []
    for name in sorted(env):
        value = env[name]
        if isinstance(value, SecretRef):
            shown = f"<secret:{value.name}, masked>"
        elif SECRET_NAME.search(name):
            shown = "<masked>"
        else:
            shown = shlex.quote(value)
        lines.append(f"    {name}={shown}")
    return lines


def plan_text(leg: Leg, *, repo_url: str, revision: str | None, branch: str | None,
              workdir: str, worker: str) -> str:
    """The dry-run plan of ``leg``: each command as the shell would receive it."""
    out = [
        f"DRY RUN of leg {leg.name}: {leg.description}",
        "Nothing below was executed.",
        "",
        f"worker (for this dry run): {worker}",
        f"capabilities a real run needs: {', '.join(sorted(leg.requires)) or 'none'}",
        f"checkout: git {shlex.quote(repo_url)} at revision {revision or '(latest)'}"
        + (f" (ref {branch})" if branch else ""),
        f"working directory: {workdir}",
        f"timeout per command (seconds without output): {leg.timeout}",
        "environment added to the worker's:",
        *(masked_env(leg.env) or ["    (nothing)"]),
    ]
    if leg.is_plasma:
        out += [
            "",
            "plasma steps before the tests:",
            "  1. preflight: re-run the KVM/QEMU probe on the worker",
            "  2. provision: QEMU from PLASMAVMC_QEMU_PATH or PATH; a qcow2 from PLASMAVMC_QCOW2_PATH"
            " or a new one made with qemu-img",
            f"  3. VM smoke: boot the image under {'KVM (TCG allowed)' if leg.allow_tcg else 'KVM'}",
        ]
    out += ["", "commands, in order (each stops the leg on failure):"]
    for number, command in enumerate(leg.commands, 1):
        timeout = command.timeout or leg.timeout
        out.append(f"  {number}. [{command.name}] timeout {timeout}s")
        out.append(f"     /bin/sh -c {shlex.quote(command.run)}")
    if leg.artifacts:
        out += ["", "artifacts uploaded to the master afterwards:"]
        out += [f"  - {path}" for path in leg.artifacts]
    return "\n".join(out) + "\n"


class DryRunPlan(buildstep.BuildStep):
    """Writes the plan log and ends SUCCESS with "dry run" in the summary.

    It is the only step of a dry-run leg build (``legs.LegFactory``)."""

    name = "dry run plan"

    def __init__(self, leg: Leg, repo_url: str, **kwargs):
        super().__init__(**kwargs)
        self.leg = leg
        self.repo_url = repo_url

    def __repr__(self):
        return f"DryRunPlan({self.leg.name})"

    @defer.inlineCallbacks
    def run(self):
        source = self.build.getSourceStamp("") or (self.build.sources[0] if self.build.sources else None)
        text = plan_text(
            self.leg,
            repo_url=self.repo_url,
            revision=getattr(source, "revision", None),
            branch=getattr(source, "branch", None),
            workdir=f"{self.build.builder.config.workerbuilddir}/build (on the worker)",
            worker=self.build.workername,
        )
        yield self.addCompleteLog("plan", text)
        self.summary = f"dry run: would run {len(self.leg.commands)} command(s), ran none"
        return SUCCESS

    summary = ""

    def getResultSummary(self):
        if not self.summary:
            return super().getResultSummary()
        return {"step": self.summary, "build": self.summary}
