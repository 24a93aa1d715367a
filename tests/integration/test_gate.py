"""The release gate end to end: real tag pushes to a real repository, a real master.

The legs run the example platform's real tests on the master's local workers; the
GitPoller (1 s interval here) sees the pushes exactly as it would in production.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from harness import GITHUB_SECRET, leg_builds_of_gate, result_name, wait_gate

pytestmark = pytest.mark.integration
PLASMA_DEFAULT_LEGS = {"chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight"}


def published_tags(master) -> list[str]:
    path = master.root / "published.txt"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.both_dbs           # also on a private PostgreSQL (conftest)
def test_tag_push_gates_every_leg_at_the_tag_commit_and_publishes_once(shared_gate):
    master, repo = shared_gate
    commit = repo.commit("release 1.0.0")
    repo.tag("v1.0.0")
    gate = wait_gate(master, "v1.0.0")[0]
    assert result_name(gate) == "success", gate["state_string"]
    assert "GREEN" in gate["state_string"]
    props = master.build_properties(gate["buildid"])
    assert props["gate_revision"] == commit and props["gate_verdict"] == "green"
    legs = leg_builds_of_gate(master, gate["buildid"])
    assert set(legs) == PLASMA_DEFAULT_LEGS            # plasmavmc-e2e: not requested
    outcomes = {o["leg"]: o for o in props["gate_legs"]}
    assert outcomes["plasmavmc-e2e"]["state"] == "not-requested"
    for name, build in legs.items():
        assert result_name(build) == "success", (name, build["state_string"])
        assert master.build_properties(build["buildid"])["got_revision"] == commit
        request = master.get(f"buildrequests/{build['buildrequestid']}")[0]
        sourcestamps = master.get(f"buildsets/{request['buildsetid']}")[0]["sourcestamps"]
        assert sourcestamps[0]["revision"] == commit
    # the leg's commands were told which release they test (RELEASE_TAG, from the source stamp)
    chainfire = legs["chainfire-flaredb"]["buildid"]
    assert "release tag: v1.0.0" in master.stdio(chainfire, "raft+gossip write/read with failover")
    assert master.wait_for(lambda: published_tags(master) == ["v1.0.0"], 30, "publish of v1.0.0")
    publish = master.wait_builds("release-publish", 1)
    assert [result_name(b) for b in publish] == ["success"]
    # the legs' summary table in the gate
    table = master.stdio(gate["buildid"], "legs", log="legs")
    for leg in PLASMA_DEFAULT_LEGS:
        assert leg in table


@pytest.mark.both_dbs           # also on a private PostgreSQL (conftest)
def test_failing_leg_blocks_and_names_the_leg_and_never_publishes(shared_gate):
    master, repo = shared_gate
    repo.set_fault("NON_ATOMIC_CAS")
    repo.tag("v1.1.0")
    gate = wait_gate(master, "v1.1.0")[0]
    assert result_name(gate) == "failure"
    assert "BLOCKED by plasmavmc-creditservice" in gate["state_string"]
    props = master.build_properties(gate["buildid"])
    assert props["gate_verdict"] == "blocked"
    others = {o["leg"]: o for o in props["gate_legs"]}
    # the other legs still finished, so the evidence is complete
    assert all(others[l]["state"] == "done" for l in PLASMA_DEFAULT_LEGS)
    steps = {s["name"]: s for s in master.build_steps(gate["buildid"])}
    urls = {u["name"]: u["url"] for u in steps["legs"]["urls"]}
    assert any(name.startswith("BLOCKING: plasmavmc-creditservice") for name in urls), steps
    time.sleep(2)
    assert "v1.1.0" not in published_tags(master)
    repo.set_fault("NON_ATOMIC_CAS", on=False)


def test_branch_push_and_other_tags_start_no_gate(shared_gate):
    master, repo = shared_gate
    before = len(master.builds("release-gate"))
    repo.commit("just a branch push")
    repo.tag("nightly-2026-12-04")
    repo.tag("experiment")
    time.sleep(5)  # five poll intervals
    assert len(master.builds("release-gate")) == before
    changes = master.get("changes", order="-changeid", limit=5)
    assert any(c["branch"] == "refs/tags/nightly-2026-12-04" for c in changes)  # seen, and ignored


@pytest.mark.both_dbs           # also on a private PostgreSQL (conftest)
def test_two_tags_back_to_back_get_two_gates_at_their_own_revisions(shared_gate):
    master, repo = shared_gate
    first = repo.commit("2.0.0")
    repo.tag("v2.0.0", push=False)
    second = repo.commit("2.0.1")
    repo.tag("v2.0.1", push=False)
    from harness import git
    git("push", "-q", "origin", "refs/tags/v2.0.0", "refs/tags/v2.0.1", cwd=repo.work)
    one = wait_gate(master, "v2.0.0")[0]
    two = wait_gate(master, "v2.0.1")[0]
    assert master.build_properties(one["buildid"])["gate_revision"] == first
    assert master.build_properties(two["buildid"])["gate_revision"] == second
    for gate, commit in ((one, first), (two, second)):
        assert result_name(gate) == "success"
        for build in leg_builds_of_gate(master, gate["buildid"]).values():
            assert result_name(build) == "success"
            assert master.build_properties(build["buildid"])["got_revision"] == commit


@pytest.mark.both_dbs           # also on a private PostgreSQL (conftest)
def test_annotated_tag_and_tag_on_an_already_gated_commit(shared_gate):
    master, repo = shared_gate
    commit = repo.commit("3.0.0")
    assert repo.tag("v3.0.0", annotated=True) == commit
    gate = wait_gate(master, "v3.0.0")[0]
    assert master.build_properties(gate["buildid"])["gate_revision"] == commit  # peeled
    assert result_name(gate) == "success"
    repo.tag("v3.0.0-hotfix-name", rev=commit)  # second tag on the same commit
    again = wait_gate(master, "v3.0.0-hotfix-name")[0]
    assert master.build_properties(again["buildid"])["gate_revision"] == commit
    # a second gate at a revision whose legs all passed reuses them
    outcomes = master.build_properties(again["buildid"])["gate_legs"]
    assert {o["leg"] for o in outcomes if o["state"] == "reused"} == PLASMA_DEFAULT_LEGS


def github_push(tag: str, sha: str) -> bytes:
    return json.dumps({
        "ref": f"refs/tags/{tag}", "before": "0" * 40, "after": sha, "created": True, "deleted": False,
        "repository": {"name": "platform", "full_name": "example/platform", "html_url": "https://example.invalid/platform",
                       "clone_url": "https://example.invalid/platform.git", "owner": {"login": "example", "name": "example"}},
        "pusher": {"name": "dev", "email": "dev@example.invalid"}, "sender": {"login": "dev"},
        "head_commit": {"id": sha, "message": "release", "timestamp": "2026-12-04T10:00:00+00:00",
                        "url": "https://example.invalid/c", "author": {"name": "dev", "email": "dev@example.invalid"},
                        "committer": {"name": "dev", "email": "dev@example.invalid"}, "added": [], "removed": [], "modified": []},
        "commits": [],
    }).encode()


def test_github_webhook_needs_a_valid_signature(shared_gate):
    master, repo = shared_gate
    commit = repo.commit("4.0.0")
    repo.tag("v4.0.0", push=False)
    from harness import git
    # the tag exists in the repository, but GitHub (not the poller) announces it:
    # push it under the hook's nose only after the refused attempts
    body = github_push("v4.0.0", commit)
    changes_before = len(master.get("changes") or [])
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    status, _ = master.post_hook("github", body, headers)                       # unsigned
    assert status == 400
    bad = "sha1=" + hmac.new(b"wrong", body, hashlib.sha1).hexdigest()
    status, _ = master.post_hook("github", body, {**headers, "X-Hub-Signature": bad})
    assert status == 400
    assert len(master.get("changes") or []) == changes_before                   # nothing created
    git("push", "-q", "origin", "refs/tags/v4.0.0", cwd=repo.work)
    good = "sha1=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    status, text = master.post_hook("github", body, {**headers, "X-Hub-Signature": good})
    assert status in (200, 202), text
    gates = wait_gate(master, "v4.0.0", count=1)
    assert result_name(gates[0]) == "success"
