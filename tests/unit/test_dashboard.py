"""The release-gate dashboard (src/matrixgate/dashboard.py) against a fake data API."""

from __future__ import annotations

import datetime
import pytest
from markupsafe import escape

from matrixgate import dashboard
from matrixgate.model import Command, Leg, Matrix, Release, WorkerSet, WorkerSpec
from matrixgate.routing import Refusal

RUN = (Command("run", "true"),)
LEGS = (
    Leg("chainfire-flaredb", ("chainfire", "flaredb"), "raft", RUN),
    Leg("flaredb-plasmavmc", ("flaredb", "plasmavmc"), "vm metadata", RUN, requires=frozenset({"kvm", "qemu"})),
    Leg("creditservice-nightlight", ("creditservice", "nightlight"), "billing", RUN),
    Leg("tenant-e2e", ("tenant", "fiberlb"), "tenant loop", RUN, enabled=False),
)
MATRIX = Matrix("matrix.yaml", "example", LEGS, Release())
WORKERS = WorkerSet("workers.yaml", (
    WorkerSpec("kvm-1", {"kvm": True, "qemu": True, "nested_virt": True, "notes": "rack 4"}),
    WorkerSpec("basic-1", {"kvm": False}),
))
BUILDER_IDS = {"release-gate": 10, "chainfire-flaredb": 1, "flaredb-plasmavmc": 2, "creditservice-nightlight": 3,
               "release-publish": 11}
NOW = 1_800_000_000.0
T0 = datetime.datetime.fromtimestamp(NOW - 600, datetime.timezone.utc)
REPORTS = {"kvm-1": {"capabilities": ["qemu"], "kvm": {"ok": False, "detail": "/dev/kvm: permission denied"}},
           "basic-1": {"capabilities": []}}


def leg(name, state="done", results=0, worker="kvm-1", buildid=None, number=1, reason=""):
    builderid = BUILDER_IDS[name]
    return {"leg": name, "state": state, "results": results, "worker": worker, "buildid": buildid,
            "number": number, "builderid": builderid, "url": f"http://bb/#/builders/{builderid}/builds/{number}",
            "started_at": 1.0, "complete_at": 2.0, "reason": reason, "result": "x"}


def green_legs(first_buildid):
    return [leg("chainfire-flaredb", buildid=first_buildid, worker="basic-1"),
            leg("flaredb-plasmavmc", buildid=first_buildid + 1),
            leg("creditservice-nightlight", state="reused", buildid=first_buildid + 2)]


class FakeData:
    """The data API as dataGet sees it; records every call."""

    def __init__(self):
        self.calls = []
        self.gates = []          # (build dict, properties dict), oldest first
        self.steps = {}          # buildid -> steps
        self.logs = {}           # stepid -> logs
        self.requests = []
        self.buildset_props = {}
        self.workers = [
            {"name": "gate", "workerid": 1, "connected_to": [{"masterid": 1}], "paused": False},
            {"name": "kvm-1", "workerid": 2, "connected_to": [{"masterid": 1}], "paused": False},
            {"name": "basic-1", "workerid": 3, "connected_to": [{"masterid": 1}], "paused": False},
            {"name": "gone-1", "workerid": 4, "connected_to": [], "paused": False},
        ]

    def add_gate(self, properties, complete=True, results=0, state_string="finished"):
        number = len(self.gates) + 1
        build = {"buildid": 1000 + number, "number": number, "builderid": 10, "complete": complete,
                 "results": results if complete else None, "state_string": state_string, "started_at": T0}
        self.gates.append((build, {k: (v, "test") for k, v in properties.items()}))
        return build

    def __call__(self, path, filters=None, order=None, limit=None, **kwargs):
        self.calls.append(path)
        if path == ("builders",):
            return [{"builderid": i, "name": n} for n, i in BUILDER_IDS.items()]
        if path == ("builders", 10, "builds"):
            assert order == ["-number"] and limit is not None
            return [b for b, _ in reversed(self.gates)][:limit]
        if path[0] == "builds" and path[2] == "properties":
            return next(p for b, p in self.gates if b["buildid"] == path[1])
        if path[0] == "builds" and path[2] == "steps":
            return self.steps.get(path[1], [])
        if path[0] == "steps" and path[2] == "logs":
            return self.logs.get(path[1], [])
        if path == ("workers",):
            return self.workers
        if path == ("buildrequests",):
            assert [(f.field, f.op, f.values) for f in filters] == [("claimed", "eq", [False])]
            return self.requests[:limit]
        if path[0] == "buildsets" and path[2] == "properties":
            return self.buildset_props.get(path[1], {})
        raise AssertionError(f"unexpected dataGet {path}")


def gather(data, refusals=None, **kwargs):
    refusals = refusals or {}
    return dashboard.gather(data, MATRIX, WORKERS, probe_of=REPORTS.get,
                            refusals_for=lambda name: refusals.get(name, []), now=NOW, **kwargs)


@pytest.fixture
def data():
    return FakeData()


def add_red(data, tag="v1.0.1"):
    legs = green_legs(20)
    legs[1] = leg("flaredb-plasmavmc", results=2, buildid=21, number=7,
                  reason="failure in step 'vm metadata across leader switch': failed (failure)")
    data.steps[21] = [
        {"stepid": 301, "number": 0, "name": "worker_preparation", "results": 0, "state_string": "ready"},
        {"stepid": 302, "number": 1, "name": "dry run plan", "results": 3, "state_string": "skipped"},
        {"stepid": 303, "number": 8, "name": "vm metadata across leader switch", "results": 2,
         "state_string": "'python3 ci/run_leg.py ...' (failure)"},
        {"stepid": 304, "number": 9, "name": "upload junit.xml", "results": 1, "state_string": "warnings"},
    ]
    data.logs[303] = [{"slug": "stdio", "logid": 9}]
    return data.add_gate({"release_tag": tag, "gate_revision": "b" * 40, "gate_verdict": "blocked",
                          "gate_legs": legs}, results=2)


def test_a_green_verdict_without_evidence_is_held_back(data):
    data.add_gate({"release_tag": "v1.0.2", "gate_revision": "c" * 40, "gate_verdict": "green",
                   "gate_legs": green_legs(30)}, results=4)          # EXCEPTION: evidence not written
    (gate,) = gather(data)["gates"]
    assert not gate["releasable"]
    assert gate["headline"].startswith("held back: the legs passed, but the gate build ended exception")


def test_green_gate_may_be_released_with_links_to_builds_and_evidence(data):
    data.add_gate({"release_tag": "v1.0.0", "gate_revision": "a" * 40, "gate_verdict": "green",
                   "gate_legs": green_legs(10), "dry_run": False,
                   "evidence": {"name": "integration-matrix-20261204T164531Z", "directory": "/x",
                                "bundle": "integration-matrix-20261204T164531Z.tar.gz"}})
    view = gather(data)
    assert view["legs"] == ["chainfire-flaredb", "flaredb-plasmavmc", "creditservice-nightlight"]
    (gate,) = view["gates"]
    assert gate["subject"] == "v1.0.0" and gate["verdict"] == "green"
    assert gate["releasable"] and gate["headline"] == "may be released"
    assert [c["css"] for c in gate["cells"]] == ["ok", "ok", "ok"]
    assert gate["cells"][0] == {"leg": "chainfire-flaredb", "css": "ok", "text": "success", "worker": "basic-1",
                                "url": "/#/builders/1/builds/1", "log_url": None, "reason": ""}
    assert gate["cells"][2]["text"] == "success (reused)"
    assert gate["url"] == "/#/builders/10/builds/1"
    assert gate["evidence"] == {
        "name": "integration-matrix-20261204T164531Z",
        "bundle": "/plugins/wsgi_dashboards/gate/evidence/integration-matrix-20261204T164531Z.tar.gz",
        "notes": "/plugins/wsgi_dashboards/gate/evidence/integration-matrix-20261204T164531Z/release-notes.md",
        "manifest": "/plugins/wsgi_dashboards/gate/evidence/integration-matrix-20261204T164531Z/manifest.json"}
    assert view["summary"] == {"releasable": ["v1.0.0"], "held": [], "running": []}


def test_links_follow_the_ui_path_of_buildbot_url(data):
    data.add_gate({"release_tag": "v1", "gate_verdict": "green", "gate_legs": green_legs(10),
                   "evidence": {"name": "n", "bundle": "n.tar.gz"}})
    (gate,) = gather(data, base=dashboard.base_path("https://ci.example.org/buildbot/"))["gates"]
    assert gate["url"] == "/buildbot/#/builders/10/builds/1"
    assert gate["evidence"]["bundle"] == "/buildbot/plugins/wsgi_dashboards/gate/evidence/n.tar.gz"


def test_red_gate_names_the_blocking_leg_its_worker_and_first_failing_step(data):
    add_red(data)
    (gate,) = gather(data)["gates"]
    assert not gate["releasable"]
    (blocking,) = gate["blocking"]
    assert blocking["leg"] == "flaredb-plasmavmc" and blocking["worker"] == "kvm-1"
    assert blocking["step"] == {"name": "vm metadata across leader switch", "number": 8, "result": "failure",
                                "state_string": "'python3 ci/run_leg.py ...' (failure)"}
    assert blocking["log_url"] == "/api/v2/builds/21/steps/8/logs/stdio/raw"
    assert blocking["reason"] == ""     # the gate's "failure in step ..." repeats the step shown
    assert gate["headline"] == ("BLOCKED by flaredb-plasmavmc on worker kvm-1: "
                                "failure in step 'vm metadata across leader switch'")
    cells = {c["leg"]: c for c in gate["cells"]}
    assert cells["flaredb-plasmavmc"]["css"] == "fail"
    assert cells["flaredb-plasmavmc"]["log_url"] == blocking["log_url"]
    assert cells["flaredb-plasmavmc"]["url"] == "/#/builders/2/builds/7"
    # Steps are only read for the blocking leg, never for the green ones.
    assert [c for c in data.calls if c[0] == "builds" and c[2] == "steps"] == [("builds", 21, "steps")]


def test_a_leg_that_never_ran_blocks_with_its_reason(data):
    legs = green_legs(10)
    legs[1] = leg("flaredb-plasmavmc", results=2, worker=None, buildid=None, number=None,
                  reason="no worker with kvm, qemu connected within 1800s (waited 1801s)")
    data.add_gate({"release_tag": "v2", "gate_verdict": "blocked", "gate_legs": legs}, results=2)
    (gate,) = gather(data)["gates"]
    assert gate["headline"] == ("BLOCKED by flaredb-plasmavmc (never ran): "
                                "no worker with kvm, qemu connected within 1800s (waited 1801s)")
    assert ("builds", None, "steps") not in data.calls


def test_skipped_plasma_legs_show_the_reason_and_are_not_releasable_by_default(data):
    legs = green_legs(10)
    legs[1] = leg("flaredb-plasmavmc", state="skipped", results=None, worker=None, buildid=None, number=None,
                  reason="skip_plasma: kvm host in maintenance (OPS-12)")
    data.add_gate({"release_tag": "v1.1.0", "gate_verdict": "green-with-skips", "gate_legs": legs}, results=1)
    view = gather(data)
    (gate,) = view["gates"]
    assert gate["skipped"] == [{"leg": "flaredb-plasmavmc", "reason": "skip_plasma: kvm host in maintenance (OPS-12)"}]
    assert gate["skip_reason"] == "kvm host in maintenance (OPS-12)"
    assert [c["css"] for c in gate["cells"]] == ["ok", "skip", "ok"]
    assert not gate["releasable"]
    assert "allow_skip_plasma is off" in gate["headline"] and "OPS-12" in gate["headline"]
    assert view["summary"]["held"] == [{"tag": "v1.1.0", "headline": gate["headline"]}]


def test_running_and_unresolved_gates(data):
    data.add_gate({"release_tag": "v9.9.9", "gate_verdict": None}, complete=False, state_string="legs")
    data.add_gate({}, complete=True, results=2, state_string="tag v0 does not exist")
    view = gather(data)
    unresolved, running = view["gates"]
    assert running["verdict"] == "running" and running["headline"] == "gate running"
    assert [c["css"] for c in running["cells"]] == ["run"] * 3
    assert unresolved["subject"] == "(unresolved)"
    assert unresolved["headline"] == "no verdict: the gate ended failure (tag v0 does not exist)"
    assert view["summary"]["running"] == ["v9.9.9"]


def test_revision_only_gate_shows_the_revision(data):
    data.add_gate({"release_tag": "", "gate_revision": "c" * 40, "gate_verdict": "green", "gate_legs": green_legs(1)})
    (gate,) = gather(data)["gates"]
    assert gate["subject"] == "revision cccccccccccc"
    assert not gate["releasable"]


def test_newest_gate_of_a_tag_decides(data):
    add_red(data, "v3")
    data.add_gate({"release_tag": "v3", "gate_verdict": "green", "gate_legs": green_legs(40)})
    assert gather(data)["summary"] == {"releasable": ["v3"], "held": [], "running": []}


def test_waiting_leg_names_the_capability_no_connected_worker_has(data):
    data.requests = [
        {"buildrequestid": 55, "builderid": 2, "buildsetid": 7,
         "submitted_at": datetime.datetime.fromtimestamp(NOW - 95, datetime.timezone.utc)},
        {"buildrequestid": 56, "builderid": 11, "buildsetid": 8, "submitted_at": NOW},    # publish: not a leg
    ]
    data.buildset_props = {7: {"release_tag": ("v1.2.0", "gate"), "dry_run": (False, "gate")}}
    refusals = {"flaredb-plasmavmc": [Refusal("kvm-1", "flaredb-plasmavmc", "kvm: /dev/kvm: permission denied", NOW)]}
    (waiting,) = gather(data, refusals)["waiting"]
    assert waiting == {
        "leg": "flaredb-plasmavmc", "brid": 55, "url": "/#/buildrequests/55", "for": "v1.2.0", "dry_run": False,
        "waited": "1m35s", "requires": ["kvm", "qemu"], "missing": ["kvm"], "capable": [],
        "refusals": [{"worker": "kvm-1", "reason": "kvm: /dev/kvm: permission denied"}]}


def test_a_capability_counts_only_where_declared_and_probed(data):
    """basic-1's probe finds kvm and qemu, but it does not declare them: its builders never list it."""
    data.requests = [{"buildrequestid": 58, "builderid": 2, "buildsetid": 9, "submitted_at": NOW}]
    reports = {"kvm-1": {"capabilities": ["qemu"]}, "basic-1": {"capabilities": ["kvm", "qemu"]}}
    view = dashboard.gather(data, MATRIX, WORKERS, probe_of=reports.get, refusals_for=lambda leg: [], now=NOW)
    (waiting,) = view["waiting"]
    assert waiting["missing"] == ["kvm"] and waiting["capable"] == []


def test_a_dry_run_request_can_always_go_to_the_gate_worker(data):
    data.requests = [{"buildrequestid": 57, "builderid": 2, "buildsetid": 9, "submitted_at": NOW}]
    data.buildset_props = {9: {"dry_run": (True, "force")}}
    (waiting,) = gather(data)["waiting"]
    assert waiting["missing"] == [] and waiting["capable"] == ["gate", "kvm-1"]


def test_workers_declared_versus_probed(data):
    workers = {w["name"]: w for w in gather(data)["workers"]}
    assert list(workers) == ["basic-1", "gone-1", "kvm-1", "gate"]
    assert workers["kvm-1"]["declared"] == ["kvm", "nested_virt", "qemu"]
    assert workers["kvm-1"]["probed"] == ["qemu"]
    assert workers["kvm-1"]["disagrees"] == ("kvm: /dev/kvm: permission denied; "
                                             "nested_virt: not found by the probe")
    assert workers["kvm-1"]["notes"] == "rack 4"
    assert workers["basic-1"]["disagrees"] == "" and workers["basic-1"]["probed"] == []
    assert workers["gate"]["gate"] and workers["gate"]["declared"] == []
    assert not workers["gone-1"]["connected"] and workers["gone-1"]["probe_missing"] is False
    page = dashboard.render(gather(data))
    assert "master's orchestration worker, dry runs only" in page


def test_hostile_tag_and_skip_reason_are_escaped(data):
    evil_tag = '<img src=x onerror="alert(1)">'
    evil_reason = "skip_plasma: <script>alert('x')</script> & \"quotes\""
    legs = green_legs(10)
    legs[1] = leg("flaredb-plasmavmc", state="skipped", results=None, buildid=None, worker=None, reason=evil_reason)
    data.add_gate({"release_tag": evil_tag, "gate_verdict": "green-with-skips", "gate_legs": legs,
                   "evidence": {"name": "e/../../x\"><script>", "bundle": "b.tar.gz"}})
    data.add_gate({"release_tag": "v1</td><script>x()</script>", "gate_verdict": "blocked",
                   "gate_legs": [leg("chainfire-flaredb", results=2, buildid=None, reason="<b>bad</b>")]})
    page = dashboard.render(gather(data))
    assert "<script>" not in page and "<img" not in page and "<b>bad" not in page
    assert str(escape(evil_tag)) in page
    assert str(escape("<script>alert('x')</script> & \"quotes\"")) in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page


def test_dataget_calls_are_bounded_by_the_page_limit_not_the_history(data):
    for i in range(300):
        if i % 3 == 0:
            add_red(data, f"v1.{i}")
        else:
            data.add_gate({"release_tag": f"v1.{i}", "gate_verdict": "green", "gate_legs": green_legs(10)})
    data.requests = [{"buildrequestid": n, "builderid": 2, "buildsetid": n, "submitted_at": NOW} for n in range(100)]
    view = gather(data, limit=25)
    assert len(view["gates"]) == 25
    per_red_gate = 2   # steps + logs of its blocking leg
    reds = sum(1 for g in view["gates"] if g["blocking"])
    # builders, gate builds, workers, buildrequests + properties per shown gate + per waiting request
    assert len(data.calls) == 4 + 25 + reds * per_red_gate + dashboard.WAIT_LIMIT
    assert len(data.calls) <= 4 + 25 * 3 + dashboard.WAIT_LIMIT


def test_app_serves_index_and_evidence(tmp_path, data):
    from matrixgate.settings import Settings
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "x.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    settings = Settings(basedir=tmp_path, evidence_dir=tmp_path / "ev", web_url="http://localhost:8010/")

    class Api:
        dataGet = data
        master = type("M", (), {"workers": type("W", (), {"workers": {}})()})()

    app = dashboard.create_app(settings, MATRIX, WORKERS)
    app.buildbot_api = Api()
    add_red(data)
    client = app.test_client()
    response = client.get("/index.html")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b"BLOCKED by flaredb-plasmavmc on worker kvm-1" in response.data
    assert client.get("/evidence/x.tar.gz").status_code == 200
    config = dashboard.plugin_config(settings, MATRIX, WORKERS)["wsgi_dashboards"][0]
    assert config["name"] == "gate" and config["app"].name == "matrixgate_dashboard"


def test_plugin_app_is_built_on_its_first_request(tmp_path, data):
    """Buildbot mounts a small WSGI object; Flask is imported and the app built on the first
    request, once, so checkconfig and start-up do not pay for them."""
    from werkzeug.test import Client

    from matrixgate.settings import Settings
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "x.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    settings = Settings(basedir=tmp_path, evidence_dir=tmp_path / "ev", web_url="http://localhost:8010/")
    lazy = dashboard.plugin_config(settings, MATRIX, WORKERS)["wsgi_dashboards"][0]["app"]
    assert isinstance(lazy, dashboard.LazyDashboard) and lazy._app is None

    class Api:
        dataGet = data
        master = type("M", (), {"workers": type("W", (), {"workers": {}})()})()

    lazy.buildbot_api = Api()           # as buildbot_wsgi_dashboards does at configuration
    add_red(data)
    client = Client(lazy)
    response = client.get("/index.html")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b"BLOCKED by flaredb-plasmavmc on worker kvm-1" in response.get_data()
    app = lazy._app
    assert app is not None and app.name == "matrixgate_dashboard"
    assert client.get("/evidence/x.tar.gz").status_code == 200
    assert client.get("/nothing-here").status_code == 404
    assert lazy._app is app             # built once
