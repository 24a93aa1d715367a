"""The gate's evidence step: gathers each leg's logs and artifacts, writes the evidence.

Runs on the master after the fan-out, for red gates too (a red gate's evidence says why
the release was blocked).  Dry runs write none.  Logs are taken from the same data API
endpoint as the UI's download button, so the evidence copy equals what people see.  Each
leg's logs are read as soon as that leg finishes (``EarlyGather``), so after the verdict
only the files are left to write.
"""

from __future__ import annotations

import json
import re
import weakref
from pathlib import Path

from buildbot.process import buildstep
from buildbot.process.results import SUCCESS, WARNINGS
from twisted.internet import defer, threads
from twisted.python import log

from . import capabilities, props
from .evidence import GateEvidence, LegEvidence, write_evidence
from .settings import Settings

EVIDENCE_URL_PATH = "plugins/wsgi_dashboards/gate/evidence/"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "step"


def evidence_url(settings: Settings, relpath: str) -> str:
    return f"{settings.web_url}{EVIDENCE_URL_PATH}{relpath}"


class LegFiles:
    """What the evidence keeps of one leg build, read back from Buildbot's database."""

    def __init__(self, buildid: int, files: dict, plasma: dict, probed: dict | None):
        self.buildid = buildid
        self.files = files
        self.plasma = plasma
        self.probed = probed


@defer.inlineCallbacks
def read_leg_files(master, settings: Settings, leg: str, buildid: int, number: int):
    """A leg build's logs (as the UI's download button serves them), its uploaded artifacts
    and what its plasma steps recorded."""
    files: dict[str, bytes | Path] = {}
    steps = yield master.data.get(("builds", buildid, "steps"))
    for step in steps:
        if step["results"] == 3 and step["hidden"]:  # skipped and hidden: nothing to keep
            continue
        logs = yield master.data.get(("steps", step["stepid"], "logs"))
        for log in logs:
            raw = yield master.data.get(("logs", log["logid"], "raw"))
            if raw is None:
                continue
            name = f"logs/{step['number']:02d}-{slug(step['name'])}-{log['slug']}.log"
            files[name] = raw["raw"].encode("utf-8") if isinstance(raw["raw"], str) else raw["raw"]
    artifacts = settings.basedir / "artifacts" / leg / str(number)
    if artifacts.is_dir():
        for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
            files[f"artifacts/{path.relative_to(artifacts).as_posix()}"] = path
    properties = yield master.db.builds.getBuildProperties(buildid)
    # How a plasma leg ran its VM: QEMU's version and path, the image and its sha256, and
    # what the VM smoke step proved.
    plasma = {key[len("plasma_"):]: value[0] for key, value in properties.items() if key.startswith("plasma_")}
    if "vm_smoke" in properties:
        plasma["vm_smoke"] = properties["vm_smoke"][0]
    probed = properties.get(props.PROBED_CAPABILITIES)
    return LegFiles(buildid, files, plasma, probed[0] if probed else None)


class EarlyGather:
    """Reads each leg's evidence as soon as that leg finishes, while the others still run.

    The fan-out calls it for every finished or reused leg; the evidence step then only
    waits for what is not read yet (usually the last leg's logs) instead of reading every
    leg after the verdict.  Reads of a build are kept per gate build until its evidence
    step takes them; a gate that ends before its evidence step just drops them.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._by_build: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, step, outcome) -> None:
        if props.is_dry_run(step.build) or outcome.buildid is None:
            return
        reading = read_leg_files(step.master, self.settings, outcome.leg, outcome.buildid, outcome.number)

        def failed(failure):  # the evidence step reads it again and reports its own error
            log.msg(f"matrixgate: early read of {outcome.leg}'s evidence failed: {failure.getErrorMessage()}")
            return None
        self._by_build.setdefault(step.build, {})[outcome.buildid] = reading.addErrback(failed)

    def take(self, build) -> dict:
        """``{buildid: Deferred(LegFiles | None)}`` read early for ``build``; forgets them."""
        return self._by_build.pop(build, {})

    def __repr__(self):
        return "EarlyGather()"


class WriteEvidence(buildstep.BuildStep):
    name = "evidence"

    def __init__(self, settings: Settings, early: EarlyGather | None = None, **kwargs):
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("doStepIf", props.is_real_run)
        kwargs.setdefault("hideStepIf", props.hide_skipped)
        kwargs.setdefault("flunkOnFailure", True)
        super().__init__(**kwargs)
        self.settings = settings
        self.early = early
        self.summary = ""

    def __repr__(self):
        return "WriteEvidence()"

    @defer.inlineCallbacks
    def run(self):
        outcomes = self.getProperty("gate_legs") or []
        read_early = self.early.take(self.build) if self.early else {}
        legs = []
        for outcome in outcomes:
            legs.append((yield self.leg_evidence(outcome, read_early)))
        verdict = self.getProperty(props.GATE_VERDICT)
        this_build = yield self.master.data.get(("builds", self.build.buildid))
        gate = GateEvidence(
            tag=self.getProperty(props.RELEASE_TAG) or None,
            revision=self.getProperty(props.GATE_REVISION) or "",
            repository=self.settings.repo_url,
            gate_url=f"{self.settings.web_url}#/builders/{this_build['builderid']}/builds/{self.build.number}",
            result={"green": "success", "green-with-skips": "warnings"}.get(verdict, "failure"),
            started_at=this_build["started_at"].timestamp() if this_build.get("started_at") else None,
            complete_at=None,
            legs=[leg for leg in legs if leg is not None],
            skipped={o["leg"]: o["reason"] for o in outcomes if o["state"] in ("skipped", "not-requested")},
            blocking=[o["leg"] for o in outcomes if o["state"] == "done" and o["result"] != "success"],
        )
        record = yield threads.deferToThread(write_evidence, self.settings.evidence_dir, gate)
        self.setProperty("evidence", {"name": record.name, "directory": str(record.directory),
                                      "bundle": record.bundle.name}, "evidence")
        for label, rel in (("evidence bundle", record.bundle.name),
                           ("manifest.json", f"{record.name}/manifest.json"),
                           ("release notes", f"{record.name}/release-notes.md")):
            yield self.addURL(label, evidence_url(self.settings, rel))
        files = sum(len(leg.files) for leg in gate.legs)
        self.summary = f"evidence {record.name}: {len(gate.legs)} legs, {files} files" + (
            " (FAILED gate)" if gate.result == "failure" else "")
        return SUCCESS if gate.result != "warnings" else WARNINGS

    @defer.inlineCallbacks
    def leg_evidence(self, outcome: dict, read_early: dict):
        if outcome["state"] in ("skipped", "not-requested"):
            return None
        buildid = outcome.get("buildid")
        files, probed = {}, None
        if buildid is not None:
            leg_files = None
            if buildid in read_early:
                leg_files = yield read_early[buildid]
            if leg_files is None:
                leg_files = yield read_leg_files(self.master, self.settings, outcome["leg"], buildid,
                                                 outcome["number"])
            files = dict(leg_files.files)
            if leg_files.plasma:
                files["plasma.json"] = (json.dumps(leg_files.plasma, indent=2, sort_keys=True) + "\n").encode()
            probed = leg_files.probed
        return LegEvidence(
            name=outcome["leg"], result=outcome["result"], worker=outcome.get("worker"),
            capabilities=probed or self.reported_capabilities(outcome), started_at=outcome.get("started_at"),
            complete_at=outcome.get("complete_at"), build_url=outcome.get("url"), files=files,
            note=outcome.get("reason") or "")

    def reported_capabilities(self, outcome: dict):
        """Without a fresh probe from the leg's preflight: what the worker reported."""
        worker = self.master.workers.workers.get(outcome.get("worker") or "")
        return capabilities.worker_report(worker) if worker else None

    def getResultSummary(self):
        return {"step": self.summary} if self.summary else super().getResultSummary()
