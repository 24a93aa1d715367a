"""Force builds through the real master's JSON-RPC API: dry runs, validation, access control."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import urllib.parse

import pytest

from harness import HOOK_SECRET, ROOT, gate_builds_for, git, result_name, wait_gate

pytestmark = pytest.mark.integration
DEFAULT_LEGS = {"chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight"}


def request_count(master) -> int:
    return len(master.buildrequests())


def test_dry_run_gate_runs_no_test_and_never_publishes(shared_gate):
    master, repo = shared_gate
    repo.tag("v0.9.0")  # the poller gates it too: wait for that, then dry-run on top
    real = wait_gate(master, "v0.9.0")[0]
    junits_before = sorted((master.dir / "workers").rglob("junit.xml"))
    status, body = master.force("force-release-gate", user="dev", branch="v0.9.0", reason="wiring check")
    assert status == 200, body                                   # dry_run defaults to true
    gate = master.wait_for(lambda: [b for b in gate_builds_for(master, "v0.9.0")
                                    if b["buildid"] != real["buildid"] and b["complete"]], 90, "dry gate")[0]
    assert result_name(gate) == "success"
    assert "dry run of release v0.9.0" in gate["state_string"]
    outcomes = master.build_properties(gate["buildid"])["gate_legs"]
    ran = {o["leg"] for o in outcomes if o["state"] == "done"}
    assert ran == DEFAULT_LEGS                                   # dry runs reuse nothing
    for outcome in outcomes:
        if outcome["state"] != "done":
            continue
        build = master.get(f"builds/{outcome['buildid']}")[0]
        assert "dry run" in build["state_string"]
        assert master.build_properties(build["buildid"])["dry_run"] is True
        plan = master.stdio(build["buildid"], "dry run plan", log="plan")
        assert "/bin/sh -c 'python3 ci/run_leg.py" in plan and "Nothing below was executed." in plan
        names = [s["name"] for s in master.build_steps(build["buildid"]) if not s["hidden"]]
        assert names == ["worker_preparation", "dry run plan"]
    # no test command ran: no new junit.xml appeared on any worker
    assert sorted((master.dir / "workers").rglob("junit.xml")) == junits_before
    steps = {s["name"]: s for s in master.build_steps(gate["buildid"])}
    urls = {u["name"] for u in steps["legs"]["urls"]}
    assert not [u for u in urls if u.startswith("publish") or "evidence" in u]   # neither published nor recorded
    assert "evidence" not in master.build_properties(gate["buildid"])
    assert len([b for b in master.builds("release-publish")]) == 1   # only the real gate's


def test_anonymous_force_is_refused(shared_gate):
    master, repo = shared_gate
    before = request_count(master)
    status, body = master.force("force-release-gate", user=None, revision=repo.head())
    assert status == 403 and "role" in body["error"]["message"]
    status, _ = master.force_leg("chainfire-flaredb", user=None)
    assert status == 403
    assert request_count(master) == before


def test_real_gate_needs_the_releasers_role(shared_gate):
    master, repo = shared_gate
    before = request_count(master)
    status, body = master.force("force-release-gate", user="dev", dry_run=False, revision=repo.head())
    assert status == 403 and "releasers" in body["error"]["message"]
    status, body = master.force("force-release-publish", user="dev", branch="v0.9.0")
    assert status == 403
    assert request_count(master) == before
    status, body = master.force("force-release-gate", user="rel", dry_run=False, revision=repo.head())
    assert status == 200, body
    assert request_count(master) == before + 1


def test_the_leg_form_runs_the_one_leg_it_names(shared_gate):
    master, repo = shared_gate
    leg = "creditservice-nightlight"
    builderid = master.builder_id(leg)
    before = request_count(master)
    # Buildbot's default for a force naming no builder would be every leg at once: refused.
    status, body = master.force("force-leg", user="dev", dry_run=False, revision=repo.head())
    assert status == 400, body
    assert "Name the leg to run" in body["error"]["message"]["builderid"]
    assert "force-release-gate" in body["error"]["message"]["builderid"]
    for other in ("release-gate", "release-publish"):           # the leg form builds legs only
        status, body = master.force("force-leg", user="admin", builderid=str(master.builder_id(other)),
                                    dry_run=False, revision=repo.head())
        assert status == 400 and "Not an enabled leg" in body["error"]["message"]["builderid"], body
    status, body = master.force("force-leg", user="dev", builderNames=[leg, "chainfire-flaredb"])
    assert status == 400 and "One leg per force" in body["error"]["message"]["builderid"], body
    assert request_count(master) == before
    # As the UI does it from the leg's page: that leg, and only it (a dry run by default).
    status, body = master.force_leg(leg, user="dev", revision=repo.head(), reason="one leg")
    assert status == 200, body
    [(requested, brid)] = body["result"][1].items()
    assert int(requested) == builderid
    assert request_count(master) == before + 1
    build = master.wait_for(lambda: [b for b in master.get(f"buildrequests/{brid}/builds") or [] if b["complete"]],
                            60, "the forced leg")[0]
    assert result_name(build) == "success" and "dry run" in build["state_string"]
    assert master.build_properties(build["buildid"])["owner"] == "dev"


@pytest.mark.parametrize("params, field, text", [
    ({"dry_run": "yes", "revision": "0" * 40}, "dry_run", "JSON boolean"),
    ({"skip_plasma": True, "skip_reason": "  ", "branch": "v0.9.0"}, "skip_reason", "needs a reason"),
    ({"revision": "not-a-sha"}, "revision", "not a commit id"),
    ({"branch": "v404.0.0"}, "branch", "does not exist"),
    ({"branch": "v0.9.0", "revision": "abcdef1"}, "revision", "points at"),
    ({}, "branch", "Give a tag"),
])
def test_bad_properties_are_refused_before_any_request(shared_gate, params, field, text):
    master, _ = shared_gate
    before = request_count(master)
    status, body = master.force("force-release-gate", user="admin", **params)
    assert status == 400, body
    message = body["error"]["message"]
    assert any(field in key and text in value for key, value in message.items()), message
    assert request_count(master) == before


def test_hostile_skip_reason_is_shown_verbatim_and_runs_nothing(shared_gate, tmp_path):
    master, repo = shared_gate
    marker = tmp_path / "pwned"
    reason = f'$(touch {marker}); echo "x` touch {marker} `'
    status, body = master.force("force-release-gate", user="rel", dry_run=False, branch="v0.9.0",
                                skip_plasma=True, skip_reason=reason)
    assert status == 200, body
    gate = master.wait_for(lambda: [b for b in gate_builds_for(master, "v0.9.0")
                                    if b["complete"] and "SKIPPED" in b["state_string"]], 120, "skip gate")[0]
    assert result_name(gate) == "warnings"                       # never SUCCESS with skipped plasma legs
    assert reason in gate["state_string"]
    outcomes = {o["leg"]: o for o in master.build_properties(gate["buildid"])["gate_legs"]}
    assert outcomes["flaredb-plasmavmc"]["state"] == "skipped"
    assert outcomes["flaredb-plasmavmc"]["reason"] == f"skip_plasma: {reason}"
    assert not marker.exists()
    steps = {s["name"]: s for s in master.build_steps(gate["buildid"])}
    # the matrix forbids releases with skips: no publish build was started
    assert not [u for u in steps["legs"]["urls"] if u["name"].startswith("publish")]
    assert "evidence bundle" in {u["name"] for u in steps["legs"]["urls"]}   # but a real gate has evidence


def test_change_hook_needs_the_signature(shared_gate):
    master, repo = shared_gate
    body = urllib.parse.urlencode({"ref": "refs/tags/v0.9.1", "newrev": repo.head()}).encode()
    before = len(master.get("changes") or [])
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert master.post_hook("git", body, form)[0] == 400
    wrong = "sha256=" + hmac.new(b"nope", body, hashlib.sha256).hexdigest()
    assert master.post_hook("git", body, {**form, "X-Matrixgate-Signature": wrong})[0] == 400
    assert master.post_hook("base", body, form)[0] == 400     # the unauthenticated base hook is off
    assert len(master.get("changes") or []) == before


def test_post_receive_hook_of_a_plain_git_server_starts_the_gate(shared_gate, tmp_path):
    master, repo = shared_gate
    hook = repo.bare / "hooks" / "post-receive"
    shutil.copy(ROOT / "contrib" / "git" / "post-receive", hook)
    secret = tmp_path / "hook-secret"
    secret.write_text(HOOK_SECRET + "\n")
    git("config", "matrixgate.url", f"{master.url}/change_hook/git", cwd=repo.bare)
    git("config", "matrixgate.secretfile", str(secret), cwd=repo.bare)
    try:
        commit = repo.commit("0.9.2")
        repo.tag("v0.9.2")
        gates = wait_gate(master, "v0.9.2")
        assert master.build_properties(gates[0]["buildid"])["gate_revision"] == commit
        hook_changes = [c for c in master.get("changes") or [] if c["comments"] == "pushed refs/tags/v0.9.2"]
        assert hook_changes and hook_changes[0]["revision"] == commit
    finally:
        hook.unlink()
