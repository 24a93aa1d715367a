"""The gate's evidence step: gathers each leg's logs and artifacts, writes the evidence.

Runs on the master after the fan-out, for red gates too (a red gate's evidence says why
the release was blocked).  Dry runs write none.  Logs are taken from the same data API
endpoint as the UI's download button, so the evidence copy equals what people see.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from buildbot.process import buildstep
from buildbot.process.results import SUCCESS, WARNINGS
from twisted.internet import defer, threads

from . import capabilities, props
from .evidence import GateEvidence, LegEvidence, write_evidence
from .settings import Settings

EVIDENCE_URL_PATH = "plugins/wsgi_dashboards/gate/evidence/"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "step"


def evidence_url(settings: Settings, relpath: str) -> str:
    return f"{settings.web_url}{EVIDENCE_URL_PATH}{relpath}"


class WriteEvidence(buildstep.BuildStep):
    name = "evidence"

    def __init__(self, settings: Settings, **kwargs):
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("doStepIf", props.is_real_run)
        kwargs.setdefault("hideStepIf", props.hide_skipped)
        kwargs.setdefault("flunkOnFailure", True)
        super().__init__(**kwargs)
        self.settings = settings
        self.summary = ""

    def __repr__(self):
        return "WriteEvidence()"

    @defer.inlineCallbacks
    def run(self):
        outcomes = self.getProperty("gate_legs") or []
        legs = []
        for outcome in outcomes:
            legs.append((yield self.leg_evidence(outcome)))
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
    def leg_evidence(self, outcome: dict):
        if outcome["state"] in ("skipped", "not-requested"):
            return None
        files: dict[str, bytes | Path] = {}
        buildid = outcome.get("buildid")
        if buildid is not None:
            steps = yield self.master.data.get(("builds", buildid, "steps"))
            for step in steps:
                if step["results"] == 3 and step["hidden"]:  # the skipped dry/real counterparts
                    continue
                logs = yield self.master.data.get(("steps", step["stepid"], "logs"))
                for log in logs:
                    raw = yield self.master.data.get(("logs", log["logid"], "raw"))
                    if raw is None:
                        continue
                    name = f"logs/{step['number']:02d}-{slug(step['name'])}-{log['slug']}.log"
                    files[name] = raw["raw"].encode("utf-8") if isinstance(raw["raw"], str) else raw["raw"]
            artifacts = self.settings.basedir / "artifacts" / outcome["leg"] / str(outcome["number"])
            if artifacts.is_dir():
                for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
                    files[f"artifacts/{path.relative_to(artifacts).as_posix()}"] = path
        if buildid is not None:
            plasma = yield self.plasma_record(buildid)
            if plasma:
                files["plasma.json"] = (json.dumps(plasma, indent=2, sort_keys=True) + "\n").encode()
        report = yield self.capabilities_of(outcome, buildid)
        return LegEvidence(
            name=outcome["leg"], result=outcome["result"], worker=outcome.get("worker"),
            capabilities=report, started_at=outcome.get("started_at"), complete_at=outcome.get("complete_at"),
            build_url=outcome.get("url"), files=files, note=outcome.get("reason") or "")

    @defer.inlineCallbacks
    def plasma_record(self, buildid) -> dict:
        """How a plasma leg ran its VM: QEMU's version and path, the image and its sha256,
        and what the VM smoke step proved."""
        properties = yield self.master.db.builds.getBuildProperties(buildid)
        record = {key[len("plasma_"):]: value[0] for key, value in properties.items() if key.startswith("plasma_")}
        if "vm_smoke" in properties:
            record["vm_smoke"] = properties["vm_smoke"][0]
        return record

    @defer.inlineCallbacks
    def capabilities_of(self, outcome: dict, buildid):
        """The preflight's fresh probe if the leg ran one, else what the worker reported."""
        if buildid is not None:
            properties = yield self.master.db.builds.getBuildProperties(buildid)
            fresh = properties.get(props.PROBED_CAPABILITIES)
            if fresh:
                return fresh[0]
        worker = self.master.workers.workers.get(outcome.get("worker") or "")
        return capabilities.worker_report(worker) if worker else None

    def getResultSummary(self):
        return {"step": self.summary} if self.summary else super().getResultSummary()
