"""Bounded retries (src/matrixgate/attempts.py): which builds count, and when to give up."""

from __future__ import annotations

from types import SimpleNamespace

from buildbot.process.results import FAILURE, SUCCESS
from buildbot.test import fakedb
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import attempts

STARTED_AT = 1_000_000.0


def request(brid, submitted):
    return SimpleNamespace(id=brid, submittedAt=submitted)


def test_a_request_submitted_while_this_process_runs_is_a_first_attempt_once():
    started = attempts.StartedRequests()
    assert attempts.may_be_retry(request(1, STARTED_AT + 5), started, STARTED_AT) is False
    assert attempts.may_be_retry(request(1, STARTED_AT + 5), started, STARTED_AT) is True   # requeued
    assert attempts.may_be_retry(request(2, STARTED_AT + 5), started, STARTED_AT) is False


def test_a_request_older_than_the_process_may_have_run_before_a_restart():
    started = attempts.StartedRequests()
    assert attempts.may_be_retry(request(3, STARTED_AT - 1), started, STARTED_AT) is True
    assert attempts.may_be_retry(request(4, None), started, STARTED_AT) is True            # unknown: count


def test_the_memory_of_started_requests_is_bounded():
    started = attempts.StartedRequests(limit=3)
    for brid in range(5):
        started.seen(brid)
    assert started.seen(4) is True and started.seen(0) is False   # the oldest were forgotten


class AttemptLimitTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """A request whose builds keep losing their worker ends after max_attempts."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setup_test_build_step()

    @defer.inlineCallbacks
    def run_with_builds(self, count, max_attempts=2):
        # setup_test_build_step already made build 92 for request 300.
        yield self.master.db.insert_test_data([
            fakedb.Build(id=93 + i, buildrequestid=300, number=8 + i, masterid=fakedb.FakeDBConnector.MASTER_ID,
                         builderid=100, workerid=400) for i in range(count - 1)])
        self.setup_step(attempts.AttemptLimit(max_attempts, name="attempt-limit"))
        self.build.requests = [SimpleNamespace(id=300)]

    @defer.inlineCallbacks
    def test_first_attempt(self):
        yield self.run_with_builds(1)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("leg_attempt", 1, "attempt limit")
        self.expect_result_summary({"step": "attempt 1 of 2"})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_last_allowed_attempt(self):
        yield self.run_with_builds(2)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("leg_attempt", 2, "attempt limit")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_gives_up_after_max_attempts(self):
        yield self.run_with_builds(3)
        self.expect_outcome(result=FAILURE)
        self.expect_result_summary({"step": "gave up: attempt 3 of at most 2; earlier attempts lost their worker"})
        yield self.run_step()
