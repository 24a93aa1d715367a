"""No silent waits: a leg request that no connected worker can take is shown, then failed.

Every ``check_interval`` seconds the watcher looks at the unclaimed requests of the leg
builders.  While a request has no capable worker connected, its builder's description
says so, naming the missing capabilities; once it has waited longer than the leg's
``wait_for_worker`` the request is completed as FAILURE and the reason kept for the gate.
"""

from __future__ import annotations

import datetime
import time

from buildbot.data import resultspec
from buildbot.process.results import FAILURE
from buildbot.util import service
from twisted.internet import defer, task
from twisted.python import log

from . import capabilities, props
from .model import Leg
from .routing import GATE_WORKER, REFUSALS


class WaitReasons:
    """Why the watcher failed a request (brid -> reason), read by the gate's tally."""

    def __init__(self):
        self.by_request: dict[int, str] = {}


REASONS = WaitReasons()


def capable_connected(builder, leg: Leg, dry: bool) -> list[str]:
    """Names of connected workers that could run this request now (busy or not)."""
    names = []
    for wfb in builder.workers:
        worker = wfb.worker
        if worker.name == GATE_WORKER:
            if dry:
                names.append(worker.name)
            continue
        if dry or not leg.is_plasma:
            names.append(worker.name)
            continue
        report = capabilities.worker_report(worker)
        if not capabilities.missing_capabilities(leg.requires, report):
            names.append(worker.name)
    return names


def waiting_text(leg: Leg, waited: float, limit: float) -> str:
    refusals = REFUSALS.for_leg(leg.name)
    refused = "".join(f"; refused {r.worker}: {r.reason}" for r in refusals)
    return (f"⏳ waiting for a worker with {', '.join(sorted(leg.requires)) or 'any capability'}: none "
            f"connected (waiting {int(waited)}s, fails after {int(limit)}s){refused}")


class WaitWatcher(service.BuildbotService):
    name = "matrixgate-wait-watcher"

    def checkConfig(self, legs, check_interval=15.0, override=0.0):
        pass

    @defer.inlineCallbacks
    def reconfigService(self, legs, check_interval=15.0, override=0.0):
        self.legs = {leg.name: leg for leg in legs}
        self.check_interval = check_interval
        self.override = override
        self.waiting_descriptions: dict[str, str] = {}
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.loop = task.LoopingCall(self.check)
        self.loop.clock = self.master.reactor
        if self.running:
            self.loop.start(self.check_interval, now=False)
        yield defer.succeed(None)

    # BuildbotService.startService runs the first reconfigService (which creates the loop)
    # before the service counts as running, so the loop is started after it.
    loop = None

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        if self.loop is not None and not self.loop.running:
            self.loop.start(self.check_interval, now=False)

    def stopService(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        return super().stopService()

    def limit_for(self, leg: Leg) -> float:
        return self.override or leg.wait_for_worker

    @defer.inlineCallbacks
    def check(self):
        try:
            yield self._check()
        except Exception:  # one bad pass must not stop the loop
            log.err(None, "matrixgate: wait watcher pass failed")

    @defer.inlineCallbacks
    def _check(self):
        requests = yield self.master.data.get(
            ("buildrequests",), filters=[resultspec.Filter("claimed", "eq", [False])])
        now = time.time()
        waiting: dict[str, str] = {}
        for request in requests:
            builder = yield self._builder_for(request["builderid"])
            leg = self.legs.get(builder.name) if builder else None
            if leg is None:
                continue
            properties = yield self.master.data.get(("buildsets", request["buildsetid"], "properties"))
            dry = (properties or {}).get(props.DRY_RUN, (False,))[0] is True
            if capable_connected(builder, leg, dry):
                continue
            submitted = request["submitted_at"]
            waited = now - (submitted.timestamp() if isinstance(submitted, datetime.datetime) else submitted)
            limit = self.limit_for(leg)
            if waited >= limit:
                yield self._fail(request, leg, waited)
            else:
                waiting[leg.name] = waiting_text(leg, waited, limit)
        yield self._show(waiting)

    @defer.inlineCallbacks
    def _builder_for(self, builderid):
        for builder in self.master.botmaster.builders.values():
            if (yield builder.getBuilderId()) == builderid:
                return builder
        return None

    @defer.inlineCallbacks
    def _fail(self, request, leg: Leg, waited: float):
        brid = request["buildrequestid"]
        reason = (f"no worker with {', '.join(sorted(leg.requires))} connected within "
                  f"{int(self.limit_for(leg))}s (waited {int(waited)}s)")
        refusals = REFUSALS.for_leg(leg.name)
        if refusals:
            reason += "; " + "; ".join(f"refused {r.worker}: {r.reason}" for r in refusals)
        claimed = yield self.master.data.updates.claimBuildRequests([brid])
        if not claimed:
            return  # a worker took it meanwhile
        REASONS.by_request[brid] = reason
        log.msg(f"matrixgate: failing request {brid} of {leg.name}: {reason}")
        yield self.master.data.updates.completeBuildRequests([brid], FAILURE)

    @defer.inlineCallbacks
    def _show(self, waiting: dict[str, str]):
        """Put the waiting note on the builder's description (and take it off again)."""
        for name, leg in self.legs.items():
            text = waiting.get(name)
            if self.waiting_descriptions.get(name) == text:
                continue
            builder = self.master.botmaster.builders.get(name)
            if builder is None:
                continue
            builderid = yield builder.getBuilderId()
            description = f"{text} — {leg.description}" if text else leg.description
            info = yield self.master.data.get(("builders", builderid))
            yield self.master.data.updates.updateBuilderInfo(
                builderid, description, None, None, info.get("projectid"), builder.config.tags)
            self.waiting_descriptions[name] = text
