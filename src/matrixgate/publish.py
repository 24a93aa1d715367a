"""The ``release-publish`` builder: runs the matrix's publish commands, once per tag.

Only a green, real gate triggers it (``gate.publish_allowed``).  A ledger in Buildbot's
own database state (so it holds across restarts and on PostgreSQL) records each tag as
claimed, then published or failed: running the gate twice never publishes twice, and a
failed publish may be retried.
"""

from __future__ import annotations

from buildbot.config import BuilderConfig
from buildbot.process import buildstep
from buildbot.process.factory import BuildFactory
from buildbot.process.properties import Property
from buildbot.process.results import FAILURE, SUCCESS, WARNINGS
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from twisted.internet import defer

from . import dbtuning, props
from .model import Matrix
from .routing import GATE_WORKER
from .settings import Settings

PUBLISH_BUILDER = "release-publish"
GATE_BUILDER = "release-gate"   # (gate.py imports this module's neighbours; no import cycle)
LEDGER = ("matrixgate-release-ledger", "ReleaseLedger")


@defer.inlineCallbacks
def ledger_id(master):
    return (yield master.db.state.getObjectId(*LEDGER))


@defer.inlineCallbacks
def ledger_entry(master, tag: str):
    objectid = yield ledger_id(master)
    return (yield master.db.state.getState(objectid, tag, None))


class ClaimRelease(buildstep.BuildStep):
    """Claims the tag in the ledger; a tag published or being published is not claimed again."""

    name = "claim release"

    def __init__(self, **kwargs):
        super().__init__(haltOnFailure=True, **kwargs)
        self.summary = ""

    @defer.inlineCallbacks
    def run(self):
        tag = self.getProperty(props.RELEASE_TAG)
        revision = self.getProperty(props.GATE_REVISION)
        if not tag or not revision:
            self.summary = "nothing to publish: no tag or revision"
            return FAILURE
        gate = yield self.green_gate(tag, revision)
        if gate is None:
            self.summary = (f"refused: no green, real gate of {tag} at {revision[:12]}; "
                            "only a gated revision is published")
            return FAILURE
        objectid = yield ledger_id(self.master)
        mine = {"state": "claimed", "revision": revision, "buildid": self.build.buildid,
                "gate_buildid": gate}
        entry = yield self.master.db.state.atomicCreateState(objectid, tag, lambda: mine)
        if entry.get("buildid") != self.build.buildid:
            abandoned = yield self.abandoned(entry)
            if entry.get("state") == "failed" or abandoned:
                yield self.master.db.state.setState(objectid, tag, mine)
            else:
                self.summary = (f"{tag} already {entry.get('state')} by publish build id {entry.get('buildid')} "
                                f"(revision {str(entry.get('revision'))[:12]}): not publishing twice")
                self.setProperty("already_published", True, "claim release")
                return SUCCESS
        # On disk before any publish command runs, even with SQLite's relaxed commits: a
        # power cut must not forget that this tag is being published.
        yield dbtuning.sync_to_disk(self.master)
        self.summary = f"claimed {tag} at {revision[:12]}"
        return SUCCESS

    @defer.inlineCallbacks
    def green_gate(self, tag: str, revision: str):
        """The id of a green, real gate build of ``tag`` at ``revision``, or None.

        The gate passes its own id when it triggers publish; a publish forced by hand must
        name a tag whose revision a gate passed (its newest 50 builds are searched).
        """
        if self.getProperty(props.GATE_VERDICT) in ("green", "green-with-skips"):
            return self.getProperty(props.GATE_BUILDID)
        builder = self.master.botmaster.builders.get(GATE_BUILDER)
        if builder is None:
            return None
        builderid = yield builder.getBuilderId()
        builds = yield self.master.data.get(("builders", builderid, "builds"), order=["-number"], limit=50)
        for build in builds:
            if build["results"] not in (SUCCESS, WARNINGS):
                continue
            properties = yield self.master.db.builds.getBuildProperties(build["buildid"])
            value = {name: item[0] for name, item in properties.items()}
            if (value.get(props.RELEASE_TAG) == tag and value.get(props.GATE_REVISION) == revision
                    and value.get(props.GATE_VERDICT) == "green" and value.get(props.DRY_RUN) is not True):
                return build["buildid"]
        return None

    @defer.inlineCallbacks
    def abandoned(self, entry: dict):
        """A claim whose publish build ended without recording (the master died mid-publish)."""
        if entry.get("state") != "claimed" or entry.get("buildid") is None:
            return False
        build = yield self.master.data.get(("builds", entry["buildid"]))
        return build is None or build.get("complete_at") is not None

    def getResultSummary(self):
        return {"step": self.summary, "build": self.summary} if self.summary else super().getResultSummary()


class RecordRelease(buildstep.BuildStep):
    """Marks the claim published (or failed, so a later publish may retry)."""

    name = "record release"

    def __init__(self, **kwargs):
        super().__init__(alwaysRun=True, **kwargs)

    @defer.inlineCallbacks
    def run(self):
        tag = self.getProperty(props.RELEASE_TAG)
        objectid = yield ledger_id(self.master)
        entry = yield self.master.db.state.getState(objectid, tag, None)
        if not entry or entry.get("buildid") != self.build.buildid:
            return SUCCESS
        state = "published" if self.build.results in (SUCCESS, None) else "failed"
        entry = dict(entry, state=state)
        yield self.master.db.state.setState(objectid, tag, entry)
        yield dbtuning.sync_to_disk(self.master)
        self.descriptionDone = f"{tag} {state}"
        return SUCCESS


def _not_already(step) -> bool:
    return not step.getProperty("already_published")


def publish_factory(matrix: Matrix, settings: Settings) -> BuildFactory:
    factory = BuildFactory()
    factory.addStep(ClaimRelease())
    guarded = {"doStepIf": _not_already, "hideStepIf": props.hide_skipped}
    if matrix.release.publish:  # nothing to run, nothing to check out: the ledger is the record
        factory.addStep(Git(name="checkout", repourl=settings.repo_url, mode="full", method="fresh",
                            logEnviron=False, haltOnFailure=True, **guarded))
    env = {"RELEASE_TAG": Property(props.RELEASE_TAG), "RELEASE_REVISION": Property(props.GATE_REVISION),
           "GATE_BUILD_URL": Property("gate_url", default="")}
    for command in matrix.release.publish:
        factory.addStep(ShellCommand(name=command.name, command=command.run, env=env, logEnviron=False,
                                     timeout=command.timeout or 1800, haltOnFailure=True, **guarded))
    factory.addStep(RecordRelease(**guarded))
    return factory


def publish_builder(matrix: Matrix, settings: Settings) -> BuilderConfig:
    return BuilderConfig(
        name=PUBLISH_BUILDER, workernames=[GATE_WORKER], factory=publish_factory(matrix, settings),
        tags=["gate", "publish"], collapseRequests=False,
        description=f"Publishes a release after a green gate ({len(matrix.release.publish)} command(s)); once per tag")
