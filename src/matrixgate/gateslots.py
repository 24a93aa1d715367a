"""The release-gate builder's extra in-master workers (``gate_2`` …): there only while gates overlap.

Buildbot runs at most one build of a builder per worker, so gates run side by side only on
as many workers as the gate builder has.  ``gate`` is an ordinary local worker; the others
are Buildbot *latent* workers whose "instance" is a worker inside the master: a slot
attaches when a gate is given to it and detaches after ``idle`` seconds without one.  A
master that never sees two gates at once never attaches them, so start-up does not pay
for them (each attach is some ten database round trips, in series; docs/performance.md).

The gate builder's ``nextWorker`` (:func:`prefer_attached`) gives a gate to ``gate`` first,
then to a slot that is already attached: a single gate never waits for a slot to attach.
"""

from __future__ import annotations

import os

from buildbot.config import error
from buildbot.worker.latent import AbstractLatentWorker
from twisted.internet import defer

from .routing import GATE_WORKER, is_gate_slot


class GateSlotWorker(AbstractLatentWorker):
    """A latent worker whose instance is a ``buildbot-worker`` bot inside the master, as a
    ``LocalWorker``'s is (same work directory, ``<master>/workers/<name>``)."""

    _bot = None

    def checkConfig(self, name, idle=300, **kwargs):
        super().checkConfig(name, None, build_wait_timeout=idle, **kwargs)
        try:
            from buildbot_worker.null import LocalWorker  # noqa: F401  (as Buildbot's LocalWorker checks)
        except ImportError:
            error("the in-master gate workers need the buildbot-worker package installed")

    def reconfigService(self, name, idle=300, **kwargs):
        self.workdir = os.path.abspath(os.path.join(self.master.basedir, "workers", name))
        return super().reconfigService(name, None, build_wait_timeout=idle, **kwargs)

    @defer.inlineCallbacks
    def start_instance(self, build):
        from buildbot_worker.null import LocalWorker as InMasterBot

        os.makedirs(self.workdir, exist_ok=True)
        self._bot = InMasterBot(self.name, self.workdir)
        # Starting the bot connects it to the master, which calls attached(): the slot is
        # substantiated before this returns.
        yield self._bot.setServiceParent(self)
        return True

    @defer.inlineCallbacks
    def stop_instance(self, fast=False):
        bot, self._bot = self._bot, None
        if bot is not None:
            yield bot.disownServiceParent()


def slot_workers(names: list[str], idle: float) -> list[GateSlotWorker]:
    return [GateSlotWorker(name, idle=idle, max_builds=1) for name in names if is_gate_slot(name)]


def prefer_attached(builder, workers, request):
    """``nextWorker`` of the gate builder: ``gate``, then attached slots, then the lowest
    slot (which attaches for this gate).  Buildbot's default picks at random."""
    def rank(wfb):
        name = wfb.worker.name
        slot = int(name.rsplit("_", 1)[1]) if is_gate_slot(name) else 0
        return (name != GATE_WORKER, wfb.worker.conn is None, slot)
    return min(workers, key=rank) if workers else None
