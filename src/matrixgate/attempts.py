"""Bounded retries of a leg whose worker was lost.

Buildbot re-queues a build that ends RETRY (its worker went away mid-leg) without limit;
a gate must end instead, and never count a lost leg as passed.  ``AttemptLimit`` counts
the request's builds and fails the request past ``max_attempts``.

The count costs a step (three to five database transactions) and a query, and almost
every build is a first attempt, so the leg factory adds the step only to a build that may
be a retry (``may_be_retry``): a request this master process has already started a build
for, or one submitted before the process started (a retry across a restart, or a request
another master may have started).  A first attempt of a request submitted while this
process runs cannot have an earlier build here; on another master (multi-master) it could,
but that master's next retry is counted, so attempts stay bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from buildbot.process import buildstep
from buildbot.process.results import FAILURE, SUCCESS
from twisted.internet import defer

#: When this process loaded Matrix Gate (the master's start, for a request's purposes).
PROCESS_STARTED = time.time()


class StartedRequests:
    """The build requests this process has started a build for (bounded, newest kept)."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._ids: OrderedDict[int, None] = OrderedDict()

    def seen(self, brid: int) -> bool:
        """True if ``brid`` was started before; records it either way."""
        before = brid in self._ids
        self._ids[brid] = None
        self._ids.move_to_end(brid)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return before


STARTED = StartedRequests()


def may_be_retry(request, started: StartedRequests = STARTED, process_started: float = PROCESS_STARTED) -> bool:
    """Could ``request`` (a Buildbot ``BuildRequest``) have had a build before this one?"""
    already = started.seen(request.id)
    submitted = getattr(request, "submittedAt", None)
    return already or submitted is None or submitted <= process_started


class AttemptLimit(buildstep.BuildStep):
    """Fails the request once a leg has been lost ``max_attempts`` times."""

    name = "attempt limit"

    def __init__(self, max_attempts: int, **kwargs):
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
