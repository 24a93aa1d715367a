"""The ``release-gate`` builder: resolve the tag, fan out to every leg, tally, evidence, publish.

The gate runs on the master's own ``gate`` worker, so it never takes a worker a leg
needs.  Its one step, the fan-out, resolves the tag, triggers one Triggerable per leg at
exactly the tag's commit, links each leg build as it starts, says which leg blocks as soon
as one fails, waits for all of them, and then writes the evidence (``evidence_step``) and
starts the publish build of a green tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from buildbot.config import BuilderConfig
from buildbot.process import buildstep
from buildbot.process.factory import BuildFactory
from buildbot.process.properties import Properties
from buildbot.process.results import EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, Results, worst_status
from buildbot.reporters.utils import getURLForBuild, getURLForBuildrequest
from twisted.internet import defer
from twisted.python import log

from . import gateslots, gitops, props, tally
from .model import Matrix
from .routing import gate_worker_names
from .settings import Settings
from .tags import tag_of
from .waits import REASONS

GATE_BUILDER = "release-gate"
PUBLISH_SCHEDULER = "publish"


def leg_scheduler_name(leg: str) -> str:
    return f"leg-{leg}"


@dataclass
class Target:
    """What a gate build gates: the tag (if any) and the commit, or why it cannot."""

    tag: str | None = None
    commit: str | None = None
    lines: list[str] = field(default_factory=list)   # how it was resolved, for the log
    refused: int | None = None                         # FAILURE / EXCEPTION when nothing can be gated
    refusal: str = ""                                  # why, for the build's summary


@defer.inlineCallbacks
def resolve_target(build, repo_url: str):
    """Which tag, which commit: annotated tags are peeled to the commit they name, and the
    tag is asked of the repository now (a moved tag gates its new commit)."""
    source = build.getSourceStamp("")
    tag = build.getProperty(props.RELEASE_TAG) or tag_of(source.branch if source else None,
                                                         build.getProperty("category"))
    given = source.revision if source else None
    target = Target(tag=tag or None)
    target.lines = [f"repository: {repo_url}", f"tag: {tag or '(none)'}", f"revision given: {given or '(none)'}"]
    if tag:
        try:
            commit = yield gitops.resolve_tag(repo_url, tag)
        except gitops.GitError as exc:
            target.refused, target.refusal = EXCEPTION, f"cannot resolve tag {tag}: {exc}"
            return target
        if commit is None:
            target.refused, target.refusal = FAILURE, f"tag {tag} does not exist in {repo_url}"
            return target
        if given and given != commit:
            target.lines.append(f"note: the change named {given}, the tag's commit is {commit} "
                                "(an annotated tag object, or the tag moved); gating the commit")
    elif given:
        commit = given
    else:
        target.refused, target.refusal = FAILURE, "nothing to gate: neither a tag nor a revision was given"
        return target
    target.commit = commit
    target.lines.append(f"gating commit: {commit}")
    return target


class GateFanOut(buildstep.BuildStep):
    """Triggers every selected leg at the gate's commit and tallies them as they finish."""

    name = "legs"

    def __init__(self, matrix: Matrix, settings: Settings, evidence=None, **kwargs):
        # WARNINGS (skipped plasma legs) must mark the whole gate, never leave it SUCCESS.
        kwargs.setdefault("warnOnWarnings", True)
        super().__init__(**kwargs)
        self.matrix = matrix
        self.settings = settings
        # The evidence writer (``evidence_step.EvidenceWriter``): told of each leg as it
        # finishes (it reads that leg's logs while the others run), asked to write after
        # the verdict.  None: no evidence (unit tests).
        self.evidence = evidence
        self.evidence_problem = ""                # why the evidence could not be written
        self.tally = tally.Tally()
        self.tag = None
        self.resolved: list[str] = []             # how the tag was resolved (top of the log)
        self.refusal = ""                         # why nothing was gated, if so
        self.brids: dict[int, str] = {}           # buildrequest id -> leg
        self.leg_builds: dict[int, dict[int, dict]] = {}   # buildrequest id -> {buildid: build}, from events
        self.consumers: list = []

    def __repr__(self):
        return f"GateFanOut({len(self.matrix.enabled_legs)} legs)"

    # --- selection ------------------------------------------------------------------
    def select(self, tag, dry, skip_plasma, skip_reason, plasma_e2e) -> list[str]:
        """Fills the tally with every enabled leg; returns the legs to run."""
        run = []
        for leg in self.matrix.enabled_legs:
            outcome = tally.LegOutcome(leg=leg.name)
            self.tally.outcomes.append(outcome)
            if leg.on_request and not (plasma_e2e or leg.requested_for_tag(tag)):
                outcome.state = "not-requested"
                outcome.reason = "not requested (set plasma_e2e, or tag matching " \
                                 f"{', '.join(leg.run_for_tags) or 'none'})"
            elif skip_plasma and leg.is_plasma:
                outcome.state = "skipped"
                outcome.reason = f"skip_plasma: {skip_reason}"
            else:
                run.append(leg.name)
        return run

    @defer.inlineCallbacks
    def find_reusable(self, legs: list[str], revision: str):
        """``{leg: build}``: for each of ``legs``, its newest passing, real (not dry) build at
        exactly ``revision``, if any.

        Only a build of the leg as the matrix defines it now counts: a leg whose commands,
        env or requirements changed since (another fingerprint) runs again.  One query for
        all legs: the lookup comes before any leg is triggered, and reading each candidate
        build's properties on its own (as the data API does) delayed a 4-leg gate's first
        trigger by up to 230 ms once the legs had history (docs/performance.md)."""
        builderids = {}
        for leg in legs:
            builder = self.master.botmaster.builders.get(leg)
            if builder is not None:
                builderids[(yield builder.getBuilderId())] = leg
        if not builderids:
            return {}
        wanted = {leg: self.matrix.leg(leg).fingerprint for leg in legs}
        rows = yield self.master.db.pool.do(passing_builds_at, self.master.db.model, list(builderids), revision)
        found: dict[str, int] = {}
        for buildid, builderid, dry, fingerprint in rows:   # newest first
            leg = builderids[builderid]
            if leg not in found and dry is not True and fingerprint == wanted[leg]:
                found[leg] = buildid
        builds = {}
        for leg, buildid in found.items():
            builds[leg] = yield self.master.data.get(("builds", buildid))
        return builds

    # --- running ----------------------------------------------------------------------
    @defer.inlineCallbacks
    def run(self):
        # Resolving the tag is part of this step, not a step of its own: Buildbot records
        # every step in the database, and this one sits between the push and the legs.
        target = yield resolve_target(self.build, self.settings.repo_url)
        self.resolved = target.lines
        if target.refused is not None:
            self.refusal = target.refusal
            yield self.addCompleteLog("legs", "\n".join(target.lines + [target.refusal]) + "\n")
            return target.refused
        self.tag, revision = target.tag, target.commit
        self.setProperty(props.RELEASE_TAG, self.tag or "", "release gate")
        self.setProperty(props.GATE_REVISION, revision, "release gate")
        builderid = yield self.build.builder.getBuilderId()
        self.setProperty("gate_url", getURLForBuild(self.master, builderid, self.build.number), "release gate")
        dry = props.is_dry_run(self.build)
        skip_plasma = props.flag(self.build, props.SKIP_PLASMA)
        skip_reason = (self.getProperty(props.SKIP_REASON) or "").strip()
        if skip_plasma and not skip_reason:  # the force form refuses this; triggers may not
            self.refusal = "skip_plasma was set without a skip_reason: refused"
            yield self.addCompleteLog("legs", self.refusal + "\n")
            return FAILURE
        self.tally.dry_run = dry
        to_run = self.select(self.tag, dry, skip_plasma, skip_reason, props.flag(self.build, props.PLASMA_E2E))
        if not dry and not props.flag(self.build, props.RERUN_ALL) and to_run:
            reusable = yield self.find_reusable(to_run, revision)
            for leg, build in reusable.items():
                yield self.mark_reused(leg, build)
                to_run.remove(leg)
        self.consumers = [
            (yield self.master.mq.startConsuming(self.on_build_new, ("builds", None, "new"))),
            (yield self.master.mq.startConsuming(self.on_build_finished, ("builds", None, "finished"))),
        ]
        try:
            waits = [self.trigger_leg(leg, revision, dry) for leg in to_run]
            self.updateSummary()
            # Buildbot stores a build's properties between steps; this step runs for the
            # whole gate, and the dashboard and REST clients must see which tag it gates
            # while the legs run.  (After the triggers: the legs need not wait for it.)
            yield self.master.data.updates.setBuildProperties(self.build.buildid, self.build)
            yield defer.DeferredList(waits, consumeErrors=True)
        finally:
            for consumer in self.consumers:
                consumer.stopConsuming()
        return (yield self.after_verdict(dry, revision))

    @defer.inlineCallbacks
    def after_verdict(self, dry: bool, revision: str):
        """The evidence of a real gate, red or green, then the publish build of a green one.

        In this step rather than steps of their own: each Buildbot step is a round of
        database writes, and these follow the verdict on every gate."""
        results = self.tally.results()
        logged = self.publish_results()   # the legs log and properties, while the evidence is written
        if not dry and self.evidence is not None:
            try:
                yield self.evidence.write(self, self.tally, revision)
            except Exception as exc:  # a gate without its evidence must not release
                log.err(None, "matrixgate: writing the gate's evidence failed")
                self.evidence_problem = f"evidence not written ({exc}): not published"
                yield self.addCompleteLog("evidence error", f"{type(exc).__name__}: {exc}\n")
                results = worst_status(results, EXCEPTION)
        yield logged
        if not self.evidence_problem and publish_allowed(self.matrix, self):
            yield self.start_publish(revision)
        return results

    @defer.inlineCallbacks
    def start_publish(self, revision: str):
        """Starts the publish build of a green gate's tag and does not wait for it: a
        release's publish may take minutes and has its own builder, result and once-per-tag
        ledger; the gate is green or red on its legs alone."""
        scheduler = self.master.scheduler_manager.namedServices[PUBLISH_SCHEDULER]
        set_props = Properties()
        for name, value in (
            (props.RELEASE_TAG, self.tag), (props.GATE_REVISION, revision),
            (props.GATE_BUILDID, self.build.buildid), ("gate_url", self.getProperty("gate_url")),
            (props.GATE_VERDICT, self.tally.verdict()), ("reason", f"publish {self.tag} after its green gate"),
        ):
            set_props.setProperty(name, value, "release gate")
        ids, finished = scheduler.trigger(
            waited_for=False, sourcestamps=self.sourcestamps(f"refs/tags/{self.tag}", revision), set_props=set_props,
            parent_buildid=self.build.buildid, parent_relationship="release gate")
        finished.addErrback(log.err, "matrixgate: publish build")
        _, brids = yield ids
        for brid in brids.values():
            yield self.addURL(f"publish #{brid}", getURLForBuildrequest(self.master, brid))

    def sourcestamps(self, branch: str | None, revision: str) -> list[dict]:
        """What a triggered leg or publish build checks out: exactly the gated commit."""
        return [{"codebase": "", "repository": self.settings.repo_url, "branch": branch,
                 "revision": revision, "project": self.matrix.platform}]

    @defer.inlineCallbacks
    def mark_reused(self, leg: str, build: dict):
        outcome = self.tally.get(leg)
        outcome.state = "reused"
        yield self.fill_from_build(outcome, build)
        outcome.reason = f"reused build #{build['number']} (passed at this revision)"
        self.leg_finished(outcome)
        yield self.addURL(f"{leg} #{build['number']} (reused)", outcome.url)

    def leg_finished(self, outcome):
        if outcome.buildid is not None:
            self.read_evidence_early(outcome.leg, outcome.buildid, outcome.number, outcome.worker)

    def read_evidence_early(self, leg: str, buildid: int, number: int, worker: str | None):
        if self.evidence is not None and not self.tally.dry_run:
            self.evidence.leg_finished(self, leg, buildid, number, worker)

    @defer.inlineCallbacks
    def trigger_leg(self, leg: str, revision: str, dry: bool):
        scheduler = self.master.scheduler_manager.namedServices[leg_scheduler_name(leg)]
        outcome = self.tally.get(leg)
        outcome.state = "running"
        # Only what the leg cannot know otherwise: every build property is a database write
        # in every leg build, and the legs of a gate start all at once on SQLite's single
        # database thread.  A real run is the default (no dry_run property); the tag and
        # revision are the source stamp's, and the gate is the buildset's parent.
        set_props = Properties()
        if dry:
            set_props.setProperty(props.DRY_RUN, True, "release gate")
        source = self.build.getSourceStamp("")
        branch = f"refs/tags/{self.tag}" if self.tag else (source.branch if source else None)
        ids, results = scheduler.trigger(
            waited_for=True, sourcestamps=self.sourcestamps(branch, revision), set_props=set_props,
            parent_buildid=self.build.buildid, parent_relationship="release gate")
        try:
            _, brids = yield ids
            for brid in brids.values():
                self.brids[brid] = leg
            request_results, _ = yield results   # the buildset of one request: that request's result
        except Exception as exc:  # the master stopping, a scheduler gone: never green
            log.err(None, f"matrixgate: leg {leg} did not finish")
            outcome.state = "done"
            outcome.results = EXCEPTION
            outcome.reason = f"leg did not finish: {exc}"
            self.updateSummary()
            return
        yield self.finish_leg(leg, list(brids.values()), request_results)

    @defer.inlineCallbacks
    def finish_leg(self, leg: str, brids: list[int], request_results):
        outcome = self.tally.get(leg)
        brid = brids[0]
        builds = self.builds_seen(brid)
        if builds is None:
            builds = yield self.master.data.get(("buildrequests", brid, "builds"))
        outcome.results = request_results if request_results is not None else EXCEPTION
        if builds:
            final = max(builds, key=lambda b: b["number"])
            yield self.fill_from_build(outcome, final)
            if len(builds) > 1:
                outcome.reason = f"attempt {len(builds)} (earlier attempts lost their worker)"
        else:
            outcome.reason = REASONS.by_request.get(brid) or f"never ran (request ended {Results[outcome.results]})"
        outcome.state = "done"
        self.leg_finished(outcome)
        if not outcome.green:
            if outcome.results == SUCCESS:  # SUCCESS without a build must never pass
                outcome.results = FAILURE
            if outcome.url:
                yield self.addURL(f"BLOCKING: {leg} #{outcome.number}", outcome.url)
            if not outcome.reason:
                outcome.reason = yield self.failing_step(outcome.buildid)
        self.updateSummary()

    @defer.inlineCallbacks
    def failing_step(self, buildid):
        if buildid is None:
            return ""
        steps = yield self.master.data.get(("builds", buildid, "steps"))
        for step in steps:
            if step["results"] not in (None, SUCCESS, SKIPPED):  # skipped: not what failed
                return f"{Results[step['results']]} in step '{step['name']}': {step['state_string']}"
        return ""

    @defer.inlineCallbacks
    def fill_from_build(self, outcome, build: dict):
        outcome.buildid = build["buildid"]
        outcome.number = build["number"]
        outcome.builderid = build["builderid"]
        outcome.url = getURLForBuild(self.master, build["builderid"], build["number"])
        outcome.started_at = _epoch(build.get("started_at"))
        outcome.complete_at = _epoch(build.get("complete_at"))
        if outcome.results is None:
            outcome.results = build.get("results")
        outcome.worker = yield self.worker_name(build["workerid"])

    def known_worker(self, workerid) -> str | None:
        """The name of a configured worker (they are in memory), or None."""
        for worker in self.master.workers.workers.values():
            if getattr(worker, "workerid", None) == workerid:
                return worker.workername
        return None

    @defer.inlineCallbacks
    def worker_name(self, workerid):
        """A worker's name; the database is asked only for a worker no longer configured."""
        name = self.known_worker(workerid)
        if name is None:
            worker = yield self.master.data.get(("workers", workerid))
            name = worker["name"] if worker else None
        return name

    def builds_seen(self, brid: int) -> list[dict] | None:
        """The request's builds as their events told them, if that account is complete (every
        build seen finished, the last not a retry); else None, and the database is asked.

        The build's "finished" event comes before Buildbot completes the request and its
        buildset, so this saves a query between the last leg's end and the verdict."""
        builds = list(self.leg_builds.get(brid, {}).values())
        if not builds or any(not b.get("complete") for b in builds):
            return None
        if max(builds, key=lambda b: b["number"]).get("results") == RETRY:
            return None
        return builds

    def on_build_finished(self, key, build):
        """Note each leg build as it ends, and start reading its evidence at once."""
        brid = build.get("buildrequestid")
        leg = self.brids.get(brid)
        if leg is None:
            return
        self.leg_builds.setdefault(brid, {})[build["buildid"]] = build
        if build.get("results") != RETRY:
            self.read_evidence_early(leg, build["buildid"], build["number"], self.known_worker(build.get("workerid")))

    def on_build_new(self, key, build):
        """Link each leg build as soon as it starts, like Buildbot's Trigger does."""
        leg = self.brids.get(build.get("buildrequestid"))
        if leg is None:
            return None
        self.leg_builds.setdefault(build["buildrequestid"], {}).setdefault(build["buildid"], build)
        url = getURLForBuild(self.master, build["builderid"], build["number"])
        return self.addURL(f"{leg} #{build['number']}", url)

    @defer.inlineCallbacks
    def publish_results(self):
        verdict = self.tally.verdict()
        self.setProperty(props.GATE_VERDICT, verdict, "release gate")
        self.setProperty("gate_legs", [o.as_dict() for o in self.tally.outcomes], "release gate")
        # The same data as JSON is the gate_legs property (REST: builds/<id>/properties).
        yield self.addCompleteLog("legs", "\n".join(self.resolved) + "\n\n" + tally.table(self.tally))

    def getCurrentSummary(self):
        return {"step": tally.summary(self.tally, self.tag)}

    def getResultSummary(self):
        text = self.refusal or tally.summary(self.tally, self.tag)
        if self.evidence_problem:
            text += f"; {self.evidence_problem}"
        return {"step": text, "build": text}

    @defer.inlineCallbacks
    def interrupt(self, reason):
        """Stopping the gate stops its legs: a half-run gate must not leave builds behind."""
        for brid in list(self.brids):
            self.master.data.control("cancel", {"reason": f"gate stopped: {reason}"}, ("buildrequests", brid))
            builds = yield self.master.data.get(("buildrequests", brid, "builds"))
            for build in builds:
                if build["complete_at"] is None:
                    yield self.master.data.control("stop", {"reason": f"gate stopped: {reason}"},
                                                   ("builds", build["buildid"]))
        yield super().interrupt(reason)


def passing_builds_at(conn, model, builderids: list[int], revision: str) -> list[tuple]:
    """(buildid, builderid, dry_run, leg_fingerprint) of the passing builds of
    ``builderids`` whose checkout got ``revision``, newest first (runs in the DB thread)."""
    builds = model.builds
    properties = model.build_properties
    got = properties.alias("got")
    query = (sa.select(builds.c.id, builds.c.builderid)
             .join(got, sa.and_(got.c.buildid == builds.c.id, got.c.name == "got_revision"))
             .where(builds.c.builderid.in_(builderids), builds.c.results == SUCCESS,
                    got.c.value == json.dumps(revision))
             .order_by(builds.c.id.desc()))
    candidates = conn.execute(query).all()
    if not candidates:
        return []
    found: dict[int, dict] = {}
    names = (props.DRY_RUN, "leg_fingerprint")
    ids = [row.id for row in candidates]
    for start in range(0, len(ids), 500):   # bound the IN list
        rows = conn.execute(sa.select(properties.c.buildid, properties.c.name, properties.c.value).where(
            properties.c.buildid.in_(ids[start:start + 500]), properties.c.name.in_(names)))
        for row in rows:
            found.setdefault(row.buildid, {})[row.name] = json.loads(row.value)
    return [(row.id, row.builderid, found.get(row.id, {}).get(props.DRY_RUN, False),
             found.get(row.id, {}).get("leg_fingerprint")) for row in candidates]


def _epoch(value):
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def publish_allowed(matrix: Matrix, step) -> bool:
    """May the gate ``step`` runs in start its tag's publish build?"""
    verdict = step.getProperty(props.GATE_VERDICT)
    if props.is_dry_run(step.build) or not step.getProperty(props.RELEASE_TAG):
        return False
    return verdict == tally.GREEN or (verdict == tally.GREEN_WITH_SKIPS and matrix.release.allow_skip_plasma)


def gate_factory(matrix: Matrix, settings: Settings, evidence=None) -> BuildFactory:
    return BuildFactory([GateFanOut(matrix, settings, evidence=evidence)])


def gate_builder(matrix: Matrix, settings: Settings, evidence=None) -> BuilderConfig:
    legs = ", ".join(leg.name for leg in matrix.enabled_legs)
    return BuilderConfig(
        name=GATE_BUILDER, workernames=gate_worker_names(settings.parallel_gates),
        factory=gate_factory(matrix, settings, evidence),
        tags=["gate"], collapseRequests=False, nextWorker=gateslots.prefer_attached,
        description=f"Release gate for tags matching {matrix.release.tags}: every leg ({legs}) at the tag's commit",
    )
