"""Wall-clock tracing of Matrix Gate's own code inside a running master (benchmarks only).

``gate_latency.py --trace`` points the master's ``buildbot.tac`` at a wrapper config that
calls :func:`install` and then runs the repository's ``master.cfg`` unchanged.  ``install``
wraps a few functions (Deferred-returning or plain) so that each call appends one JSON
line ``{"what", "start", "secs"}`` (``time.time()``) to ``MATRIXGATE_TRACE_FILE``.  The
wrappers change no result and no order of events; they cost a few microseconds a call.
"""

from __future__ import annotations

import functools
import json
import os
import time

TRACED = [
    ("matrixgate.gitops", None, "resolve_tag"),
    ("matrixgate.gate", "ResolveTag", "run"),
    ("matrixgate.gate", "GateFanOut", "run"),
    ("matrixgate.gate", "GateFanOut", "find_reusable"),
    ("matrixgate.gate", "GateFanOut", "trigger_leg"),
    ("matrixgate.gate", "GateFanOut", "finish_leg"),
    ("matrixgate.gate", "GateFanOut", "publish_results"),
    ("matrixgate.evidence_step", "WriteEvidence", "run"),
    ("matrixgate.evidence", None, "write_evidence"),
    ("matrixgate.legs", "AttemptLimit", "run"),       # before it moved to matrixgate.attempts
    ("matrixgate.attempts", "AttemptLimit", "run"),
    ("matrixgate.workers", None, "probe_local_workers"),
    ("matrixgate.config", None, "build_config"),
    ("matrixgate.config", None, "load_data"),
    ("matrixgate.dashboard", None, "create_app"),
]


def _record(path, what, start, end):
    with open(path, "a") as fh:
        fh.write(json.dumps({"what": what, "start": start, "secs": end - start}) + "\n")


def _wrap(fn, what, path):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.time()
        result = fn(*args, **kwargs)
        if hasattr(result, "addBoth"):
            def done(value):
                _record(path, what, start, time.time())
                return value
            result.addBoth(done)
        else:
            _record(path, what, start, time.time())
        return result
    wrapper.__matrixgate_traced__ = True
    return wrapper


def install(path: str | None = None) -> None:
    import importlib
    path = path or os.environ["MATRIXGATE_TRACE_FILE"]
    package = importlib.import_module("matrixgate")
    with open(path, "a") as fh:  # which copy of the package runs (A/B comparisons)
        fh.write(json.dumps({"what": "package", "start": time.time(), "secs": 0.0,
                             "file": package.__file__}) + "\n")
    for module_name, cls_name, attr in TRACED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = getattr(module, cls_name, None) if cls_name else module
        fn = getattr(owner, attr, None)   # a name this copy of the package lacks: not traced
        if fn is None or getattr(fn, "__matrixgate_traced__", False):
            continue
        what = f"{cls_name + '.' if cls_name else ''}{attr}"
        setattr(owner, attr, _wrap(fn, what, path))
    # evidence_step imported write_evidence by name: give it the traced one
    evidence_step = importlib.import_module("matrixgate.evidence_step")
    evidence_step.write_evidence = importlib.import_module("matrixgate.evidence").write_evidence


def count_db(path: str) -> None:
    """Record every database round trip (``DBThreadPool.do`` / ``do_with_transaction``): one
    JSON line ``{"what": "db.do"|"db.tx", "start", "secs"}`` each.  Works for any master.cfg."""
    from buildbot.db import pool

    for attr, what in (("do", "db.do"), ("do_with_transaction", "db.tx")):
        fn = getattr(pool.DBThreadPool, attr)
        if not getattr(fn, "__matrixgate_traced__", False):
            setattr(pool.DBThreadPool, attr, _wrap(fn, what, path))


WRAPPER_CFG = '''# -*- python -*-
# Benchmark wrapper (bench/_trace.py): trace Matrix Gate's own code, then run the real master.cfg.
import sys
sys.path[:0] = {prepend!r}  # a package copy to compare against (A/B), if any
if {prepend!r}:  # Buildbot may have imported matrixgate already (its www plugin entry point)
    for _name in [n for n in sys.modules if n == "matrixgate" or n.startswith("matrixgate.")]:
        del sys.modules[_name]
sys.path.insert(0, {bench!r})
import _trace
_trace.install({trace!r})
if {db!r}:
    _trace.count_db({trace!r})
_real = {real!r}
_globals = {{"basedir": basedir, "__file__": _real, "__name__": "__config__"}}
exec(compile(open(_real).read(), _real, "exec"), _globals)
BuildmasterConfig = _globals["BuildmasterConfig"]
'''


def read(path) -> list[dict]:
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
