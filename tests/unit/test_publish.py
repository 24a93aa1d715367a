"""Publishing once per tag (src/matrixgate/publish.py): the release ledger in Buildbot's state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from buildbot.process.results import FAILURE, SUCCESS
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import dbtuning, loader, props, publish
from matrixgate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_publish_builder():
    matrix = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
    builder = publish.publish_builder(matrix, Settings(basedir=Path("/srv/gate"), repo_url="/srv/git/p.git",
                                                       web_url="http://gate/"))
    assert (builder.name, builder.workernames, builder.tags, builder.collapseRequests) == (
        "release-publish", ["gate"], ["gate", "publish"], False)
    classes = [s.step_class for s in builder.factory.steps]
    assert classes == [publish.ClaimRelease, Git, ShellCommand, publish.RecordRelease]
    shell = builder.factory.steps[2].kwargs
    assert shell["command"] == './scripts/publish-release.sh "$RELEASE_TAG" "$RELEASE_REVISION"'
    assert shell["logEnviron"] is False and shell["haltOnFailure"] is True
    assert set(shell["env"]) == {"RELEASE_TAG", "RELEASE_REVISION", "GATE_BUILD_URL"}


def test_a_release_without_publish_commands_only_keeps_the_ledger():
    matrix = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
    empty = dataclasses.replace(matrix, release=dataclasses.replace(matrix.release, publish=()))
    builder = publish.publish_builder(empty, Settings(basedir=Path("/srv/gate"), repo_url="/srv/git/p.git"))
    assert [s.step_class for s in builder.factory.steps] == [publish.ClaimRelease, publish.RecordRelease]


class LedgerTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setup_test_build_step(want_db=True)

    def claim(self, tag="v1.2.3", revision=COMMIT, buildid=92, verdict="green"):
        self.setup_step(publish.ClaimRelease(name="claim-release"))
        self.build.buildid = buildid
        if tag:
            self.build.setProperty(props.RELEASE_TAG, tag, "trigger")
        if revision:
            self.build.setProperty(props.GATE_REVISION, revision, "trigger")
        self.build.setProperty(props.GATE_BUILDID, 7, "trigger")
        if verdict:
            self.build.setProperty(props.GATE_VERDICT, verdict, "trigger")

    @defer.inlineCallbacks
    def entry(self, tag="v1.2.3"):
        return (yield publish.ledger_entry(self.master, tag))

    @defer.inlineCallbacks
    def test_first_claim(self):
        self.claim()
        self.expect_outcome(result=SUCCESS)
        self.expect_result_summary({"step": f"claimed v1.2.3 at {COMMIT[:12]}",
                                    "build": f"claimed v1.2.3 at {COMMIT[:12]}"})
        synced = []
        self.patch(dbtuning, "sync_to_disk", lambda master: synced.append(master) or defer.succeed(None))
        yield self.run_step()
        entry = yield self.entry()
        self.assertEqual(entry, {"state": "claimed", "revision": COMMIT, "buildid": 92, "gate_buildid": 7})
        self.assertEqual(synced, [self.master])   # the claim is on disk before any publish command

    @defer.inlineCallbacks
    def test_a_published_tag_is_not_published_twice(self):
        objectid = yield publish.ledger_id(self.master)
        yield self.master.db.state.setState(objectid, "v1.2.3", {
            "state": "published", "revision": COMMIT, "buildid": 11, "gate_buildid": 5})
        self.claim(buildid=92)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("already_published", True, "claim release")
        yield self.run_step()
        entry = yield self.entry()
        self.assertEqual(entry["buildid"], 11)                      # the earlier publish stays on record
        self.assertEqual(publish._not_already(self.get_nth_step(0)), False)

    @defer.inlineCallbacks
    def test_a_failed_publish_may_be_retried(self):
        objectid = yield publish.ledger_id(self.master)
        yield self.master.db.state.setState(objectid, "v1.2.3", {
            "state": "failed", "revision": COMMIT, "buildid": 11, "gate_buildid": 5})
        self.claim(buildid=92)
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        entry = yield self.entry()
        self.assertEqual((entry["state"], entry["buildid"]), ("claimed", 92))

    @defer.inlineCallbacks
    def test_a_forced_publish_needs_a_green_gate_of_that_revision(self):
        self.claim(verdict=None)         # forced by hand: no gate passed its verdict
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        self.assertIsNone((yield self.entry()))

    @defer.inlineCallbacks
    def test_nothing_to_publish_without_a_tag(self):
        self.claim(tag=None)
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        entry = yield self.entry("")
        self.assertIsNone(entry)

    @defer.inlineCallbacks
    def record(self, results, owner=92):
        objectid = yield publish.ledger_id(self.master)
        yield self.master.db.state.setState(objectid, "v1.2.3", {
            "state": "claimed", "revision": COMMIT, "buildid": owner, "gate_buildid": 7})
        self.setup_step(publish.RecordRelease(name="record-release"))
        self.build.buildid = 92
        self.build.results = results
        self.build.setProperty(props.RELEASE_TAG, "v1.2.3", "trigger")
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        entry = yield self.entry()
        return entry["state"]

    @defer.inlineCallbacks
    def test_record_published(self):
        self.assertEqual((yield self.record(SUCCESS)), "published")

    @defer.inlineCallbacks
    def test_record_failed(self):
        self.assertEqual((yield self.record(FAILURE)), "failed")

    @defer.inlineCallbacks
    def test_record_leaves_another_builds_claim_alone(self):
        self.assertEqual((yield self.record(SUCCESS, owner=11)), "claimed")
