"""The gate's evidence: gathers each leg's logs and artifacts, writes the evidence.

Written on the master at the end of the gate's fan-out step, for red gates too (a red
gate's evidence says why the release was blocked).  Dry runs write none.  Each log is
built exactly as the data API's raw endpoint (the UI's download button) builds it, so the
evidence copy equals what people download (the evidence integration test compares them
byte for byte).  Each leg's logs are read as soon as that leg finishes, so after the
verdict only the files are left to write.
"""

from __future__ import annotations

import json
import re
import weakref
from pathlib import Path

import sqlalchemy as sa
from twisted.internet import defer, threads
from twisted.python import log

from . import capabilities, props
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


def steps_with_logs(conn, model, buildid: int) -> list:
    """(step number, step name, hidden, results, logid, log slug, log type) of every log of a
    build, in order (runs in the DB thread)."""
    steps, logs = model.steps, model.logs
    query = (sa.select(steps.c.number, steps.c.name, steps.c.hidden, steps.c.results,
                       logs.c.id, logs.c.slug, logs.c.type)
             .join(logs, logs.c.stepid == steps.c.id)
             .where(steps.c.buildid == buildid)
             .order_by(steps.c.number, logs.c.id))
    return conn.execute(query).all()


async def _log_text(master, logid: int, prefix: str, stdio: bool) -> str:
    parts = [prefix] if prefix else []
    async for line in master.db.logs.iter_log_lines(logid):
        parts.append(line[1:] if stdio else line)   # a stdio line starts with its stream
    return "".join(parts)


def raw_log(master, logid: int, log_type: str, builder: str, number: int, worker: str | None):
    """A log as the data API's ``/logs/<id>/raw`` (the UI's download button) serves it,
    byte for byte, from one query over its chunks instead of one per build, builder,
    worker, step and log: the gate reads every leg's logs, and Buildbot's database runs
    one query at a time on SQLite."""
    prefix = ""
    if log_type == "s":
        prefix = f"Builder: {builder}\nBuild number: {number}\n" + (f"Worker name: {worker}\n" if worker else "")
    return defer.Deferred.fromCoroutine(_log_text(master, logid, prefix, log_type == "s"))


@defer.inlineCallbacks
def read_leg_files(master, settings: Settings, leg: str, buildid: int, number: int, worker: str | None):
    """A leg build's logs (as the UI's download button serves them), its uploaded artifacts
    and what its plasma steps recorded."""
    files: dict[str, bytes | Path] = {}
    rows = yield master.db.pool.do(steps_with_logs, master.db.model, buildid)
    for step_number, step_name, hidden, results, logid, log_slug, log_type in rows:
        if results == 3 and hidden:  # skipped and hidden: nothing to keep
            continue
        text = yield raw_log(master, logid, log_type, leg, number, worker)
        files[f"logs/{step_number:02d}-{slug(step_name)}-{log_slug}.log"] = text.encode("utf-8")
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


class EvidenceWriter:
    """Writes a real gate's evidence, red or green (dry runs write none).

    The fan-out tells it of each leg as that leg finishes or is reused (``leg_finished``),
    and it reads that leg's logs then, while the other legs still run; after the verdict
    (``write``) only what is not read yet (usually the last leg's logs) and the files are
    left.  Reads are kept per gate build until it writes; a gate that ends before writing
    just drops them.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._reads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __repr__(self):
        return "EvidenceWriter()"

    def leg_finished(self, step, leg: str, buildid: int, number: int, worker: str | None) -> None:
        reads = self._reads.setdefault(step.build, {})
        if buildid in reads:  # told twice: by the build's end and by the request's
            return
        reading = read_leg_files(step.master, self.settings, leg, buildid, number, worker)

        def failed(failure):  # read again when writing, which reports its own error
            log.msg(f"matrixgate: early read of {leg}'s evidence failed: {failure.getErrorMessage()}")
            return None
        reads[buildid] = reading.addErrback(failed)

    @defer.inlineCallbacks
    def write(self, step, tally, revision: str):
        """Writes ``integration-matrix-<UTC>/`` and its bundle for the gate ``step`` runs in;
        links them on the step and records them in the ``evidence`` property."""
        from .evidence import GateEvidence, write_evidence   # not at config time: gzip, tarfile, ...
        read_early = self._reads.pop(step.build, {})
        outcomes = [o.as_dict() for o in tally.outcomes]
        legs = []
        for outcome in outcomes:
            legs.append((yield self.leg_evidence(step, outcome, read_early)))
        this_build = yield step.master.data.get(("builds", step.build.buildid))
        verdict = tally.verdict()
        gate = GateEvidence(
            tag=step.tag,
            revision=revision,
            repository=self.settings.repo_url,
            gate_url=f"{self.settings.web_url}#/builders/{this_build['builderid']}/builds/{step.build.number}",
            result={"green": "success", "green-with-skips": "warnings"}.get(verdict, "failure"),
            started_at=this_build["started_at"].timestamp() if this_build.get("started_at") else None,
            complete_at=None,
            legs=[leg for leg in legs if leg is not None],
            skipped={o["leg"]: o["reason"] for o in outcomes if o["state"] in ("skipped", "not-requested")},
            blocking=[o["leg"] for o in outcomes if o["state"] == "done" and o["result"] != "success"],
        )
        record = yield threads.deferToThread(write_evidence, self.settings.evidence_dir, gate)
        step.setProperty("evidence", {"name": record.name, "directory": str(record.directory),
                                      "bundle": record.bundle.name}, "evidence")
        yield defer.gatherResults([
            step.addURL(label, evidence_url(self.settings, rel))
            for label, rel in (("evidence bundle", record.bundle.name),
                               ("manifest.json", f"{record.name}/manifest.json"),
                               ("release notes", f"{record.name}/release-notes.md"))], consumeErrors=True)
        return record

    @defer.inlineCallbacks
    def leg_evidence(self, step, outcome: dict, read_early: dict):
        from .evidence import LegEvidence
        if outcome["state"] in ("skipped", "not-requested"):
            return None
        buildid = outcome.get("buildid")
        files, probed = {}, None
        if buildid is not None:
            leg_files = None
            if buildid in read_early:
                leg_files = yield read_early[buildid]
            if leg_files is None:
                leg_files = yield read_leg_files(step.master, self.settings, outcome["leg"], buildid,
                                                 outcome["number"], outcome.get("worker"))
            files = dict(leg_files.files)
            if leg_files.plasma:
                files["plasma.json"] = (json.dumps(leg_files.plasma, indent=2, sort_keys=True) + "\n").encode()
            probed = leg_files.probed
        return LegEvidence(
            name=outcome["leg"], result=outcome["result"], worker=outcome.get("worker"),
            capabilities=probed or reported_capabilities(step.master, outcome), started_at=outcome.get("started_at"),
            complete_at=outcome.get("complete_at"), build_url=outcome.get("url"), files=files,
            note=outcome.get("reason") or "")


def reported_capabilities(master, outcome: dict):
    """Without a fresh probe from the leg's preflight: what the worker reported."""
    worker = master.workers.workers.get(outcome.get("worker") or "")
    return capabilities.worker_report(worker) if worker else None
