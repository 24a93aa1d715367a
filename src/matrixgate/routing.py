"""Dynamic routing: which request may start on which worker, right now.

``canStartBuild`` is Buildbot's hook for this.  Rules:
* the master's own ``gate`` worker takes dry runs only (they run no tests, so any worker
  will do), never a real leg;
* a real plasma build needs a worker whose probe found every required capability; a
  worker declared capable whose probe disagrees is refused, put in quarantine (Buildbot's
  own back-off) and the refusal is logged and shown on the builder and the dashboard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twisted.python import log

from . import capabilities, props
from .model import Leg

GATE_WORKER = "gate"
#: Extra in-master workers of the release-gate builder only.  Buildbot runs at most one build
#: of a builder per worker, so with ``gate`` alone every gate waited for the previous one;
#: ``_`` keeps these names apart from any declared worker's (loader: [a-z0-9-]).
GATE_SLOT_PREFIX = f"{GATE_WORKER}_"


def gate_worker_names(parallel_gates: int) -> list[str]:
    """The workers of the release-gate builder: ``gate``, ``gate_2`` … ``gate_<n>``."""
    return [GATE_WORKER] + [f"{GATE_SLOT_PREFIX}{i}" for i in range(2, max(1, parallel_gates) + 1)]


def is_gate_slot(name: str) -> bool:
    return name.startswith(GATE_SLOT_PREFIX)


@dataclass
class Refusal:
    worker: str
    leg: str
    reason: str
    at: float


class RefusalLog:
    """The latest refusal per (worker, leg): read by the dashboard and the wait watcher."""

    def __init__(self):
        self.latest: dict[tuple[str, str], Refusal] = {}

    def record(self, worker: str, leg: str, reason: str) -> Refusal:
        refusal = Refusal(worker, leg, reason, time.time())
        self.latest[(worker, leg)] = refusal
        return refusal

    def clear(self, worker: str, leg: str) -> None:
        self.latest.pop((worker, leg), None)

    def for_leg(self, leg: str) -> list[Refusal]:
        return [r for (w, l), r in sorted(self.latest.items()) if l == leg]


REFUSALS = RefusalLog()


def can_start_build(leg: Leg):
    """A ``canStartBuild`` callable for ``leg``'s builder."""

    def can_start(builder, wfb, request) -> bool:
        worker = wfb.worker
        dry = props.is_dry_run(request.properties)
        if worker.name == GATE_WORKER:
            return dry
        if dry or not leg.is_plasma:
            return True
        report = capabilities.worker_report(worker)
        missing = capabilities.missing_capabilities(leg.requires, report)
        if not missing:
            REFUSALS.clear(worker.name, leg.name)
            return True
        reason = capabilities.refusal_reason(leg.requires, report)
        REFUSALS.record(worker.name, leg.name, reason)
        log.msg(f"matrixgate: refused {leg.name} on worker {worker.name}: its probe lacks "
                f"{', '.join(missing)} ({reason}); putting it in quarantine")
        worker.putInQuarantine()
        return False

    return can_start


def next_worker(builder, workers, request):
    """Prefer real workers; the ``gate`` worker (dry runs only) is the last resort."""
    if not workers:
        return None
    real = [w for w in workers if w.worker.name != GATE_WORKER]
    return (real or list(workers))[0]
