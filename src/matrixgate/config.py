"""Assembles ``BuildmasterConfig`` from settings, the matrix and the workers.

``master.cfg`` only calls :func:`load`; everything else lives in one module per concern.
A broken matrix or worker file raises ``ConfigErrors`` listing every problem, so
``buildbot checkconfig`` prints them all and nothing half-loads.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from pathlib import Path

from buildbot.config.errors import ConfigErrors
from buildbot.warnings import ConfigWarning
from twisted.python import log

from . import bbfixes, dashboard, dbtuning, gate, legs, loader, publish, routing, schedulers, secrets, settings as settings_mod
from . import web, workers as workers_mod
from .evidence_step import EvidenceWriter
from .model import Matrix, WorkerSet
from .settings import Settings
from .waits import WaitWatcher


def leg_workernames(leg, workerset: WorkerSet) -> list[str]:
    """Static routing: the workers that declare every capability, plus ``gate`` (dry runs only)."""
    return [w.name for w in workerset.capable_of(leg)] + [routing.GATE_WORKER]


def build_config(cfg: Settings, matrix: Matrix, workerset: WorkerSet, probing=None) -> dict:
    """``probing``: the master host's probe, running (None: none runs, as under checkconfig)."""
    for warning in loader.legs_without_workers(matrix, workerset):
        # Shown by `buildbot checkconfig` and in twistd.log at start, like Buildbot's own.
        warnings.warn(f"WARNING: {warning}", ConfigWarning, stacklevel=1)
        log.msg(f"matrixgate: WARNING: {warning}")
    builders = [gate.gate_builder(matrix, cfg, evidence=EvidenceWriter(cfg)), publish.publish_builder(matrix, cfg)]
    for leg in matrix.enabled_legs:
        builders.append(legs.leg_builder(
            leg, cfg, leg_workernames(leg, workerset), routing.can_start_build(leg), routing.next_worker))
    order = {b.name: i for i, b in enumerate(builders)}
    return {
        "title": "Matrix Gate",
        "titleURL": cfg.web_url,
        "buildbotURL": cfg.web_url,
        "buildbotNetUsageData": None,
        "db": {"db_url": cfg.db_url, "engine_kwargs": {"pool_pre_ping": True}},
        "protocols": {"pb": {"port": f"tcp:{cfg.worker_port}:interface={cfg.worker_host}"}},
        "workers": workers_mod.build_workers(workerset, cfg.parallel_gates, cfg.gate_slot_idle, probing),
        "builders": builders,
        "schedulers": schedulers.build_schedulers(matrix, cfg),
        "change_source": schedulers.build_change_sources(cfg),
        "secretsProviders": secrets.providers(cfg.secrets_dir),
        "services": [WaitWatcher(matrix.enabled_legs, cfg.wait_check_interval, cfg.wait_for_worker_override)],
        "www": web.build_www(cfg, dashboard.plugin_config(cfg, matrix, workerset)),
        "collapseRequests": False,
        # The gate first, then publish, then the legs in matrix order.
        "prioritizeBuilders": lambda master, bldrs: sorted(bldrs, key=lambda b: order.get(b.name, 99)),
    }


def load_data(cfg: Settings) -> tuple[Matrix, WorkerSet]:
    """Both files, with every problem of both reported together."""
    problems: list[str] = []
    matrix = workerset = None
    try:
        matrix = loader.load_matrix(cfg.matrix_path)
    except loader.DataError as exc:
        problems += exc.messages
    try:
        workerset = loader.load_workers(cfg.workers_path)
    except loader.DataError as exc:
        problems += exc.messages
    if problems:
        raise ConfigErrors(problems)
    return matrix, workerset


def load(basedir: str | Path, env=None) -> dict:
    """Entry point for ``master.cfg``."""
    # Reading a big matrix allocates some 100 000 objects that all live on (or die by
    # reference count): the collector's passes over them find next to nothing and cost
    # 50 ms at 500 legs, so it waits until the config is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(basedir, env)
    finally:
        if collecting:
            gc.enable()


def only_checking() -> bool:
    """Is this ``buildbot checkconfig``?  It reads the config to check it and starts nothing,
    so nothing that only a running master needs (the local workers' probe) is done."""
    return "buildbot.scripts.checkconfig" in sys.modules


def _load(basedir: str | Path, env) -> dict:
    try:
        cfg = settings_mod.from_env(basedir, env)
    except settings_mod.SettingsError as exc:
        raise ConfigErrors([str(exc)]) from None
    matrix, workerset = load_data(cfg)
    if not cfg.repo_url:
        raise ConfigErrors(["GATE_REPO_URL is not set: the gate needs the repository it gates "
                            "(the demo launcher `matrixgate demo` sets it to the example platform)"])
    cfg.evidence_dir.mkdir(parents=True, exist_ok=True)
    sync = dbtuning.configure(cfg.db_url, cfg.sqlite_synchronous)
    log.msg(f"matrixgate: database {cfg.db_display}" + (f" (SQLite synchronous={sync})" if sync else ""))
    if not only_checking():
        bbfixes.apply()
    probing = None
    if os.environ.get("MATRIXGATE_SKIP_LOCAL_PROBE") != "1" and not only_checking():
        # in a thread while the master starts (the probe mostly waits for QEMU to answer);
        # the local workers wait for its info files before they attach
        probing = workers_mod.BackgroundProbe(cfg.basedir, workerset)
    return build_config(cfg, matrix, workerset, probing)
