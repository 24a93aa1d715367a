"""Buildbot worker objects from ``workers/*.yaml``.

Besides the declared workers there is always ``gate``: a local worker inside the master
that runs the release gate's orchestration, publishing and dry runs, so the gate never
ties up a worker a leg needs.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from buildbot.process.properties import Secret
from buildbot.worker import Worker
from buildbot.worker.local import LocalWorker
from twisted.internet import defer, threads
from twisted.python import log

from . import gateslots
from .model import WorkerSet
from .props import INFO_KEY
from .routing import GATE_WORKER, gate_worker_names


def worker_properties(spec) -> dict:
    return {"declared_capabilities": sorted(spec.capabilities)}


def build_workers(workers: WorkerSet, parallel_gates: int = 1, slot_idle: float = 300,
                  probing: "BackgroundProbe | None" = None) -> list:
    """``probing``: the master host's probe, running; the declared local workers start once
    it has written their ``info/`` files."""
    built = [LocalWorker(GATE_WORKER, max_builds=None)]
    # one more in-master worker per gate that may run at the same time (release-gate only),
    # attached only while gates overlap
    built += gateslots.slot_workers(gate_worker_names(parallel_gates), slot_idle)
    for spec in workers.workers:
        if spec.local:
            built.append(ProbedLocalWorker(
                spec.name, max_builds=spec.max_builds, properties=worker_properties(spec), probing=probing))
        else:
            built.append(Worker(
                spec.name, Secret(spec.password_secret), max_builds=spec.max_builds,
                properties=worker_properties(spec), missing_timeout=300))
    return built


def probe_local_workers(basedir: Path, workers: WorkerSet, probe=None) -> dict[str, dict]:
    """Local workers run on the master host: probe it and write each one's ``info/`` file.

    A remote worker's admin writes the same file with ``nested-kvm-check --write-info``.
    """
    if probe is None:
        from .onworker.probe import probe
    reports = {}
    local = [spec for spec in workers.workers if spec.local]
    if not local:
        return reports
    try:
        report = probe()
    except Exception as exc:  # a broken probe must not stop the master: it means "nothing found"
        log.msg(f"matrixgate: probing the master host failed: {exc}")
        report = {"capabilities": [], "error": str(exc)}
    for spec in local:
        info = basedir / "workers" / spec.name / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / INFO_KEY).write_text(json.dumps(report, sort_keys=True) + "\n", encoding="utf-8")
        reports[spec.name] = report
    return reports


class BackgroundProbe:
    """:func:`probe_local_workers` in a thread, so that it overlaps the master's start-up: the
    probe mostly waits for ``qemu-system-x86_64 --version`` and ``qemu-img --version``
    (20-50 ms).  :meth:`wait` returns its reports, or raises what it raised;
    :meth:`when_done` is the same as a Deferred."""

    def __init__(self, basedir: Path, workers: WorkerSet, probe=None):
        self.reports: dict[str, dict] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(basedir, workers, probe),
                                        name="matrixgate-probe", daemon=True)
        self._thread.start()

    def _run(self, basedir, workers, probe):
        try:
            self.reports = probe_local_workers(basedir, workers, probe)
        except BaseException as exc:  # handed to wait()
            self.error = exc

    def wait(self) -> dict[str, dict]:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.reports

    def when_done(self, reactor) -> defer.Deferred:
        if not self._thread.is_alive():
            return defer.maybeDeferred(self.wait)
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.wait)


class ProbedLocalWorker(LocalWorker):
    """A declared local worker whose bot starts once the probe has written its ``info/``
    file: the bot reads that file when it attaches, and routing reads what it found.
    Waiting here rather than in the config lets the probe overlap the master's start-up
    (database, builders, schedulers, web) instead of delaying it."""

    def checkConfig(self, name, probing=None, **kwargs):
        super().checkConfig(name, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(self, name, probing=None, **kwargs):
        if probing is not None:
            yield probing.when_done(self.master.reactor)
        yield super().reconfigService(name, **kwargs)
