"""The release-gate dashboard: a Flask app under Buildbot's WSGI dashboards plugin.

Served at ``/plugins/wsgi_dashboards/gate/``; the Buildbot UI shows its ``index.html``
at ``#/gate``.  It also serves the evidence files (``evidence/<path>``) from
``GATE_EVIDENCE_DIR`` and nothing outside it.

Two halves: :func:`gather` reads the data API (through any ``data_get(path, **kwargs)``,
so tests pass a fake) and returns plain dicts; :func:`render` turns them into HTML with
Jinja autoescaping on, because tag names and skip reasons are user input.  ``gather``
asks only for what the page shows: the newest :data:`GATE_LIMIT` gate builds, their
properties, and the steps of blocking legs, so the page stays fast with any history.

Flask is imported, and the Flask app and its templates built, on the dashboard's first request
(:class:`LazyDashboard`): ``buildbot checkconfig`` and the master's start-up never pay for
them (about 55 ms of imports and 5.6 MB of memory, measured).
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote, urlparse

from buildbot.data import resultspec

from . import capabilities, props, tally
from .model import Leg, Matrix, WorkerSet
from .routing import GATE_WORKER, REFUSALS, is_gate_slot
from .settings import Settings

if TYPE_CHECKING:
    from flask import Flask

DASHBOARD_NAME = "gate"
MOUNT = f"plugins/wsgi_dashboards/{DASHBOARD_NAME}/"
GATE_BUILDER = "release-gate"   # gate.GATE_BUILDER (not imported: gate pulls in the build steps)
GATE_LIMIT = 25                 # gate builds shown
WAIT_LIMIT = 20                 # unclaimed build requests looked at
RESULT_CSS = {0: "ok", 1: "warn", 2: "fail", 3: "skip", 4: "exc", 5: "exc", 6: "exc"}
VERDICT_CSS = {tally.GREEN: "ok", tally.GREEN_WITH_SKIPS: "warn", tally.BLOCKED: "fail", tally.DRY_RUN: "skip",
               tally.DRY_RUN_BLOCKED: "fail", "running": "run"}
RESULT_NAMES = {0: "success", 1: "warnings", 2: "failure", 3: "skipped", 4: "exception",
                5: "retry", 6: "cancelled"}
TEMPLATES = Path(__file__).resolve().parent / "templates"

DataGet = Callable[..., object]


# --- data gathering ---------------------------------------------------------------------------

def gather(data_get: DataGet, matrix: Matrix, workerset: WorkerSet, *, probe_of=lambda name: None,
           refusals_for=REFUSALS.for_leg, base: str = "/", limit: int = GATE_LIMIT,
           now: float | None = None) -> dict:
    """Everything the page shows, as plain data.

    ``probe_of(worker name)`` gives a connected worker's probe report (or None);
    ``refusals_for(leg name)`` the routing refusals; ``base`` the UI's path ("/").
    """
    now = time.time() if now is None else now
    links = Links(base)
    builders = {b["name"]: b["builderid"] for b in data_get(("builders",))}
    gates = []
    if GATE_BUILDER in builders:
        builds = data_get(("builders", builders[GATE_BUILDER], "builds"), order=["-number"], limit=limit)
        gates = [gate_row(data_get, build, matrix, links) for build in builds]
    workers = workers_view(data_get(("workers",)), workerset, probe_of)
    probed = {w["name"]: frozenset(w["probed"]) for w in workers if w["connected"]}
    legs_by_id = {builders[leg.name]: leg for leg in matrix.enabled_legs if leg.name in builders}
    waiting = waiting_view(data_get, legs_by_id, workerset, probed, refusals_for, links, now)
    return {
        "legs": [leg.name for leg in matrix.enabled_legs],
        "gates": gates,
        "summary": summary(gates),
        "waiting": waiting,
        "workers": workers,
        "limit": limit,
        "allow_skip_plasma": matrix.release.allow_skip_plasma,
        "generated_at": _when(now),
    }


class Links:
    """URLs that work both inside the Buildbot UI (``#/gate``) and on the plugin page itself."""

    def __init__(self, base: str):
        self.base = base if base.endswith("/") else base + "/"

    def build(self, builderid, number) -> str | None:
        if builderid is None or number is None:
            return None
        return f"{self.base}#/builders/{int(builderid)}/builds/{int(number)}"

    def buildrequest(self, brid) -> str:
        return f"{self.base}#/buildrequests/{int(brid)}"

    def log(self, buildid, step_number, slug) -> str:
        return f"{self.base}api/v2/builds/{int(buildid)}/steps/{int(step_number)}/logs/{quote(slug, safe='')}/raw"

    def evidence(self, relpath: str) -> str:
        return f"{self.base}{MOUNT}evidence/{quote(relpath)}"


def gate_row(data_get: DataGet, build: dict, matrix: Matrix, links: Links) -> dict:
    raw = data_get(("builds", build["buildid"], "properties")) or {}
    properties = {name: value[0] for name, value in raw.items()}
    tag = properties.get(props.RELEASE_TAG) or ""
    revision = properties.get(props.GATE_REVISION) or properties.get("revision") or ""
    outcomes = [_outcome(o) for o in properties.get("gate_legs") or [] if isinstance(o, dict) and o.get("leg")]
    by_leg = {o.leg: o for o in outcomes}
    verdict = properties.get(props.GATE_VERDICT) or ("running" if not build.get("complete") else "none")
    blocking = [blocking_view(data_get, o, links) for o in tally.Tally(outcomes=outcomes).blocking]
    log_of = {b["leg"]: b["log_url"] for b in blocking}
    cells = [cell(by_leg[leg.name], links, log_of.get(leg.name)) if leg.name in by_leg
             else placeholder_cell(leg.name, running=verdict == "running") for leg in matrix.enabled_legs]
    skipped = [{"leg": o.leg, "reason": o.reason} for o in outcomes if o.state == "skipped"]
    evidence = properties.get("evidence")
    row = {
        "buildid": build["buildid"], "number": build["number"],
        "url": links.build(build["builderid"], build["number"]),
        "tag": tag, "revision": revision,
        "subject": tag or (f"revision {revision[:12]}" if revision else "(unresolved)"),
        "verdict": verdict, "verdict_css": VERDICT_CSS.get(verdict, "none"),
        "dry_run": properties.get(props.DRY_RUN) is True,
        "results": build.get("results"), "state_string": build.get("state_string") or "",
        "started_at": _when(build.get("started_at")), "cells": cells, "blocking": blocking,
        "skipped": skipped,
        "skip_reason": skipped[0]["reason"].removeprefix("skip_plasma: ") if skipped else "",
        "evidence": evidence_links(evidence, links) if isinstance(evidence, dict) else None,
    }
    row["releasable"], row["headline"] = headline(row, matrix)
    return row


def _outcome(data: dict) -> tally.LegOutcome:
    known = tally.LegOutcome.__dataclass_fields__
    outcome = tally.LegOutcome(**{k: v for k, v in data.items() if k in known and k != "reason"})
    outcome.reason = str(data.get("reason") or "")
    return outcome


def cell(outcome: tally.LegOutcome, links: Links, log_url: str | None) -> dict:
    if outcome.state in ("skipped", "not-requested"):
        css = "skip"
    elif outcome.state in ("pending", "running"):
        css = "run"
    elif outcome.state == "reused" or outcome.green:
        css = "ok"
    else:
        css = RESULT_CSS.get(outcome.results, "fail")
    return {"leg": outcome.leg, "css": css, "text": outcome.result_name, "worker": outcome.worker,
            "url": links.build(outcome.builderid, outcome.number) or outcome.url, "log_url": log_url,
            "reason": outcome.reason}


def placeholder_cell(leg: str, running: bool) -> dict:
    """A leg the gate has not tallied (yet): the gate is running, or ended without a tally."""
    return {"leg": leg, "css": "run" if running else "none", "text": "running" if running else "—",
            "worker": None, "url": None, "log_url": None, "reason": ""}


def blocking_view(data_get: DataGet, outcome: tally.LegOutcome, links: Links) -> dict:
    """A blocking leg with its first failing step and that step's log (two small queries)."""
    step = None
    log_url = None
    if outcome.buildid is not None:
        for s in data_get(("builds", outcome.buildid, "steps")) or []:
            if s.get("results") not in (None, 0, 3):
                step = {"name": s["name"], "state_string": s.get("state_string") or "", "number": s["number"],
                        "result": RESULT_NAMES.get(s["results"], str(s["results"]))}
                logs = data_get(("steps", s["stepid"], "logs")) or []
                slugs = [log["slug"] for log in logs]
                slug = "stdio" if "stdio" in slugs else (slugs[0] if slugs else None)
                if slug:
                    log_url = links.log(outcome.buildid, s["number"], slug)
                break
    reason = outcome.reason
    if step and reason.startswith(f"{step['result']} in step '{step['name']}'"):
        reason = ""   # the gate's own "first failing step" text: the step is shown already
    return {"leg": outcome.leg, "worker": outcome.worker, "result": outcome.result_name,
            "reason": reason, "step": step, "log_url": log_url,
            "url": links.build(outcome.builderid, outcome.number) or outcome.url}


def evidence_links(evidence: dict, links: Links) -> dict | None:
    name, bundle = evidence.get("name"), evidence.get("bundle")
    if not isinstance(name, str) or not name:
        return None
    return {"name": name,
            "bundle": links.evidence(bundle) if isinstance(bundle, str) and bundle else None,
            "notes": links.evidence(f"{name}/release-notes.md"),
            "manifest": links.evidence(f"{name}/manifest.json")}


def headline(row: dict, matrix: Matrix) -> tuple[bool, str]:
    """(may this gate's tag be released?, the one line that says why)."""
    verdict = row["verdict"]
    skipped, why_skipped = ", ".join(s["leg"] for s in row["skipped"]), row["skip_reason"]
    if verdict == tally.GREEN:
        if row["results"] not in (0, 1, None):  # the legs passed, the evidence was not written
            return False, (f"held back: the legs passed, but the gate build ended "
                           f"{RESULT_NAMES.get(row['results'], row['results'])} after the verdict (no evidence "
                           "written, nothing published): see the gate build, then re-run the gate")
        return bool(row["tag"]), "may be released" if row["tag"] else "green (a revision, not a release tag)"
    if verdict == tally.GREEN_WITH_SKIPS:
        if matrix.release.allow_skip_plasma:
            return bool(row["tag"]), f"may be released, with plasma legs skipped ({skipped}): {why_skipped}"
        return False, f"not releasable: plasma legs skipped ({skipped}: {why_skipped}) and allow_skip_plasma is off"
    if verdict in (tally.BLOCKED, tally.DRY_RUN_BLOCKED):
        holders = "; ".join(_holder(b) for b in row["blocking"]) or "a leg that did not pass"
        return False, ("dry run would be " if verdict == tally.DRY_RUN_BLOCKED else "") + f"BLOCKED by {holders}"
    if verdict == tally.DRY_RUN:
        return False, "dry run: no test ran; a real gate must pass before release"
    if verdict == "running":
        return False, "gate running"
    return False, f"no verdict: the gate ended {RESULT_NAMES.get(row['results'], 'unknown')} ({row['state_string']})"


def _holder(blocking: dict) -> str:
    where = f" on worker {blocking['worker']}" if blocking["worker"] else " (never ran)"
    if blocking["step"]:
        why = f"{blocking['step']['result']} in step '{blocking['step']['name']}'"
    else:
        why = blocking["reason"] or blocking["result"]
    return f"{blocking['leg']}{where}: {why}"


def summary(gates: list[dict]) -> dict:
    """The newest gate of each tag decides: which tags may go out, which are held back."""
    latest: dict[str, dict] = {}
    for row in gates:               # newest first
        if row["tag"] and not row["dry_run"]:
            latest.setdefault(row["tag"], row)
    rows = list(latest.values())
    return {"releasable": [r["tag"] for r in rows if r["releasable"]],
            "held": [{"tag": r["tag"], "headline": r["headline"]} for r in rows
                     if not r["releasable"] and r["verdict"] != "running"],
            "running": [r["tag"] for r in rows if r["verdict"] == "running"]}


def workers_view(workers: list[dict], workerset: WorkerSet, probe_of) -> list[dict]:
    specs = {spec.name: spec for spec in workerset.workers}
    view = []
    for worker in sorted(workers, key=lambda w: (w["name"] == GATE_WORKER, w["name"])):
        name = worker["name"]
        if is_gate_slot(name):      # gate_2 …: more of the in-master gate worker, not shown apart
            continue
        connected = bool(worker.get("connected_to"))
        spec = specs.get(name)
        declared = sorted(spec.capabilities) if spec else []
        report = probe_of(name) if connected and name != GATE_WORKER else None
        probed = sorted(capabilities.probed_capabilities(report))
        lacking = frozenset(declared) - frozenset(probed)
        view.append({
            "name": name, "connected": connected, "paused": bool(worker.get("paused")),
            "gate": name == GATE_WORKER, "declared": declared, "probed": probed,
            "probe_missing": report is None and connected and name != GATE_WORKER,
            "disagrees": capabilities.refusal_reason(lacking, report) if lacking and connected else "",
            "notes": str(spec.properties.get("notes", "")) if spec else "",
        })
    return view


def waiting_view(data_get: DataGet, legs_by_id: dict[int, Leg], workerset: WorkerSet,
                 probed: dict[str, frozenset], refusals_for, links: Links, now: float) -> list[dict]:
    """Unclaimed leg requests: who could take them, and what no connected worker has."""
    requests = data_get(("buildrequests",), filters=[resultspec.Filter("claimed", "eq", [False])],
                        order=["buildrequestid"], limit=WAIT_LIMIT) or []
    # A worker provides a capability it declares (the builder lists it) and its probe confirms.
    provided = frozenset().union(*[spec.capabilities & probed[spec.name]
                                   for spec in workerset.workers if spec.name in probed])
    view = []
    for request in requests:
        leg = legs_by_id.get(request["builderid"])
        if leg is None:
            continue
        properties = data_get(("buildsets", request["buildsetid"], "properties")) or {}
        value = lambda name, default=None: (properties.get(name) or (default,))[0]  # noqa: E731
        dry = value(props.DRY_RUN) is True
        capable = capable_workers(leg, dry, probed, workerset)
        missing = [] if dry else sorted(leg.requires - provided)
        view.append({
            "leg": leg.name, "brid": request["buildrequestid"], "url": links.buildrequest(request["buildrequestid"]),
            "for": value(props.RELEASE_TAG) or "", "dry_run": dry,
            "waited": _duration(now - _epoch(request.get("submitted_at"), now)),
            "requires": sorted(leg.requires), "missing": missing, "capable": capable,
            "refusals": [{"worker": r.worker, "reason": r.reason} for r in refusals_for(leg.name)],
        })
    return view


def capable_workers(leg: Leg, dry: bool, probed: dict[str, frozenset], workerset: WorkerSet) -> list[str]:
    """Connected workers that may run this request (the rules of routing.can_start_build)."""
    names = [GATE_WORKER] if dry and GATE_WORKER in probed else []
    for spec in workerset.capable_of(leg):
        if spec.name in probed and (dry or not leg.is_plasma or leg.requires <= probed[spec.name]):
            names.append(spec.name)
    return names


def _epoch(value, default: float) -> float:
    if value is None:
        return default
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _when(value) -> str:
    if value is None:
        return ""
    stamp = _epoch(value, 0.0)
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --- rendering and the app --------------------------------------------------------------------

@functools.cache
def _templates():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(view: dict) -> str:
    return _templates().get_template("gate_dashboard.html").render(**view)


def base_path(web_url: str) -> str:
    """The UI's path from ``buildbotURL`` ("/" or "/ci/"): links stay on the host the reader used."""
    path = urlparse(web_url).path or "/"
    return path if path.endswith("/") else path + "/"


APP_NAME = "matrixgate_dashboard"


def create_app(settings: Settings, matrix: Matrix, workerset: WorkerSet, api_of=None) -> Flask:
    """The Flask app.  ``api_of()`` gives Buildbot's plugin API (``dataGet``, ``master``);
    by default the ``buildbot_api`` attribute that Buildbot sets on the app."""
    from flask import Flask

    from .evidence_web import evidence_blueprint

    app = Flask(APP_NAME)
    app.register_blueprint(evidence_blueprint(settings.evidence_dir))
    base = base_path(settings.web_url)
    if api_of is None:
        api_of = lambda: app.buildbot_api  # noqa: E731

    def probe_of(name: str):
        worker = api_of().master.workers.workers.get(name)
        return capabilities.worker_report(worker) if worker is not None else None

    @app.route("/index.html")
    def index():
        view = gather(api_of().dataGet, matrix, workerset, probe_of=probe_of, base=base)
        return render(view), 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}

    return app


class LazyDashboard:
    """The WSGI app Buildbot mounts: builds the Flask app on the first request, in the
    web thread pool, once (a lock), and hands every request to it.

    Buildbot's plugin sets ``buildbot_api`` on this object, which the Flask app reads."""

    name = APP_NAME

    def __init__(self, settings: Settings, matrix: Matrix, workerset: WorkerSet):
        self.settings, self.matrix, self.workerset = settings, matrix, workerset
        self.buildbot_api = None
        self._app = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Flask:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app(self.settings, self.matrix, self.workerset,
                                           api_of=lambda: self.buildbot_api)
        return self._app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def plugin_config(settings: Settings, matrix: Matrix, workerset: WorkerSet) -> dict:
    return {"wsgi_dashboards": [{
        "name": DASHBOARD_NAME, "caption": "Release gate", "app": LazyDashboard(settings, matrix, workerset),
        "order": 5, "icon": "shield-check",
    }]}
