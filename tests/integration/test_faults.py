"""Faults, with real processes: a worker killed mid-leg, the master restarted mid-gate, a burst
of tags, hostile webhook payloads, and the database going away under a running master.

Each test uses a small test-local matrix (commands that sleep or print the commit) so the
fault, not the example platform's tests, decides the time taken.  Figures (retry time,
burst timing) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from harness import (GITHUB_SECRET, HOOK_SECRET, GateMaster, cleanup, gate_builds_for, git,
                     leg_builds_of_gate, result_name, wait_gate)
from matrixgate.hooks import MAX_BODY, MAX_JSON_BODY, signature
from postgres import PrivatePostgres, unavailable_reason

pytestmark = pytest.mark.integration

GITLAB_SECRET = "test-gitlab-secret-0123456789"
PUBLISH = """
release:
  tags: "v*"
  publish:
    - name: publish
      run: echo "$RELEASE_TAG $RELEASE_REVISION" >> "$EXAMPLE_RELEASES_FILE"
"""


def matrix_file(root: Path, legs: str) -> Path:
    path = root / "fault-matrix.yaml"
    path.write_text("version: 1\nplatform: fault-platform\n"
                    "defaults: {timeout: 300, wait_for_worker: 5m, max_attempts: 2}\nlegs:\n" + legs + PUBLISH)
    return path


def leg_yaml(name: str, run: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    components: [{name.split('-')[0]}, {name.split('-')[1]}]\n"
            f"    covers: {name} under faults\n    commands:\n      - name: leg test\n        run: '{run}'\n"
            + extra)


def published(master) -> list[str]:
    path = master.root / "published.txt"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def worker_name(master, build: dict) -> str:
    return master.get(f"workers/{build['workerid']}")[0]["name"]


def running_command(master, builder: str, step_name: str = "leg test") -> dict | None:
    """The build of ``builder`` whose ``step_name`` step is running right now, or None."""
    for build in master.builds(builder):
        if build["complete"]:
            continue
        for step in master.build_steps(build["buildid"]):
            if step["name"] == step_name and step["started_at"] and not step["complete"]:
                return build
    return None


def figure(text: str) -> None:
    print(f"\n[fault figures] {text}")


# --- a worker killed in the middle of a leg ----------------------------------------------------

KILL_WORKERS = """
version: 1
workers:
  - name: w1
    max_builds: 2
    password_secret: worker-w1
    properties: {kvm: false, qemu: false}
  - name: w2
    max_builds: 2
    password_secret: worker-w2
    properties: {kvm: false, qemu: false}
"""


def test_worker_killed_mid_leg_is_retried_elsewhere_until_max_attempts(make_master, repo, tmp_path):
    # LEG_SLEEP comes from each worker's own environment: w1 is slow (so it can be killed while
    # the command runs), w2 is quick.  retried-leg may take 2 attempts, one-shot-leg only 1.
    command = 'sleep "${LEG_SLEEP:-0}"; git rev-parse HEAD'
    matrix = matrix_file(tmp_path, leg_yaml("retried-leg", command)
                         + leg_yaml("oneshot-leg", command, "    max_attempts: 1\n"))
    master = make_master(matrix=matrix, workers_yaml=KILL_WORKERS,
                         env={"GATE_SECRET_WORKER_W1": "w1-password", "GATE_SECRET_WORKER_W2": "w2-password"})
    master.start_worker("w1", "w1-password", env={"LEG_SLEEP": "300"})
    commit = repo.commit("release 1.0.0")
    repo.tag("v1.0.0")
    first = {leg: master.wait_for(lambda leg=leg: running_command(master, leg), 120, f"{leg} running on w1")
             for leg in ("retried-leg", "oneshot-leg")}
    assert {worker_name(master, b) for b in first.values()} == {"w1"}
    master.start_worker("w2", "w2-password", env={"LEG_SLEEP": "0"})

    killed_at = time.monotonic()
    master.stop_worker("w1", kill=True)                              # SIGKILL: no goodbye
    retry = master.wait_for(lambda: (lambda b: b if len(b) >= 2 and b[1]["started_at"] else None)(
        master.builds("retried-leg")), 60, "the retry of retried-leg")
    retry_started = time.monotonic() - killed_at
    gate = wait_gate(master, "v1.0.0", timeout=120)[0]
    gate_done = time.monotonic() - killed_at
    figure(f"worker killed -> retry build started on w2 after {retry_started:.1f}s; "
           f"gate finished {gate_done:.1f}s after the kill")

    # retried-leg: attempt 1 lost with w1 (RETRY), attempt 2 passed on w2, and the gate used it
    builds = master.builds("retried-leg")
    assert [result_name(b) for b in builds] == ["retry", "success"], [b["state_string"] for b in builds]
    assert [worker_name(master, b) for b in builds] == ["w1", "w2"]
    assert builds[0]["buildrequestid"] == builds[1]["buildrequestid"]     # the same request, requeued
    assert master.build_properties(builds[1]["buildid"])["got_revision"] == commit
    outcomes = {o["leg"]: o for o in master.build_properties(gate["buildid"])["gate_legs"]}
    retried = outcomes["retried-leg"]
    assert retried["results"] == 0 and retried["worker"] == "w2" and retried["buildid"] == builds[1]["buildid"]
    assert "attempt 2" in retried["reason"]
    assert gate["complete_at"] >= builds[1]["complete_at"]              # it waited for the final result

    # oneshot-leg: the requeued attempt is refused by the attempt limit: FAILURE, "gave up"
    builds = master.builds("oneshot-leg")
    assert [result_name(b) for b in builds] == ["retry", "failure"]
    assert "gave up" in builds[1]["state_string"], builds[1]["state_string"]
    assert outcomes["oneshot-leg"]["results"] == 2
    # ... so the gate is blocked by it, never green, and nothing is published
    assert result_name(gate) == "failure" and "BLOCKED by oneshot-leg" in gate["state_string"]
    assert master.build_properties(gate["buildid"])["gate_verdict"] == "blocked"
    time.sleep(2)
    assert published(master) == []


# --- the master restarted (cleanly) while a gate runs -------------------------------------------

def test_clean_restart_mid_gate_keeps_the_result_and_a_rerun_reuses_the_legs(make_master, repo, tmp_path):
    command = "sleep 4; git rev-parse HEAD"
    matrix = matrix_file(tmp_path, leg_yaml("alpha-beta", command) + leg_yaml("beta-gamma", command))
    master = make_master(matrix=matrix)                   # the embedded local workers
    commit = repo.commit("release 2.0.0")
    repo.tag("v2.0.0")
    for leg in ("alpha-beta", "beta-gamma"):
        master.wait_for(lambda leg=leg: running_command(master, leg), 90, f"{leg} running")
    assert not gate_builds_for(master, "v2.0.0")[0]["complete"]
    started = time.monotonic()
    master.restart(clean=True)                          # waits for the running gate, then restarts
    figure(f"buildbot restart --clean in the middle of a gate took {time.monotonic() - started:.1f}s")

    gate = wait_gate(master, "v2.0.0", timeout=60)[0]
    assert result_name(gate) == "success", gate["state_string"]
    props = master.build_properties(gate["buildid"])
    assert props["gate_revision"] == commit and props["gate_verdict"] == "green"
    legs = leg_builds_of_gate(master, gate["buildid"])
    assert set(legs) == {"alpha-beta", "beta-gamma"}
    for build in legs.values():
        assert result_name(build) == "success"
        assert master.build_properties(build["buildid"])["got_revision"] == commit
    assert master.wait_for(lambda: published(master) == ["v2.0.0"], 30, "publish of v2.0.0")
    time.sleep(3)                                       # the new master's poller must not gate it again
    assert len(gate_builds_for(master, "v2.0.0")) == 1

    status, body = master.force("force-release-gate", user="rel", dry_run=False, branch="v2.0.0",
                                reason="re-run after the restart")
    assert status == 200, body
    again = wait_gate(master, "v2.0.0", count=2, timeout=90)[-1]
    assert result_name(again) == "success", again["state_string"]
    outcomes = {o["leg"]: o for o in master.build_properties(again["buildid"])["gate_legs"]}
    assert {leg: o["state"] for leg, o in outcomes.items()} == {"alpha-beta": "reused", "beta-gamma": "reused"}
    assert {leg: o["buildid"] for leg, o in outcomes.items()} == {leg: b["buildid"] for leg, b in legs.items()}
    assert all(len(master.builds(leg)) == 1 for leg in legs)   # nothing ran again
    publishes = master.wait_builds("release-publish", 2, timeout=30)
    assert "not publishing twice" in publishes[-1]["state_string"]
    assert published(master) == ["v2.0.0"]


# --- a burst of tags ----------------------------------------------------------------------------

def tag_new_commits(repo, tags: list[str]) -> dict[str, str]:
    """Each tag on a new (empty) commit of its own, not pushed yet: tag -> commit."""
    commits = {}
    for tag in tags:
        git("commit", "-q", "--allow-empty", "-m", f"release {tag}", cwd=repo.work)
        git("tag", tag, cwd=repo.work)
        commits[tag] = git("rev-parse", "HEAD", cwd=repo.work)
    return commits


BURST = 20


def test_burst_of_tags_gets_one_gate_per_tag_at_its_own_revision(make_master, repo, tmp_path):
    command = "git rev-parse HEAD"
    matrix = matrix_file(tmp_path, leg_yaml("alpha-beta", command) + leg_yaml("beta-gamma", command))
    master = make_master(matrix=matrix)
    commits = tag_new_commits(repo, [f"v3.{i}.0" for i in range(1, BURST + 1)])
    pushed = time.monotonic()
    # one push of the 20 tags alone: their commits reach the repository with them, on no
    # branch (the case where Buildbot's own GitPoller made one gate per new commit)
    git("push", "-q", "origin", *[f"refs/tags/{t}" for t in commits], cwd=repo.work)
    push_took = time.monotonic() - pushed

    def all_done():
        gates = master.builds("release-gate")
        return gates if len([g for g in gates if g["complete"]]) >= BURST else None
    master.wait_for(all_done, 300, f"{BURST} gates", interval=1)
    elapsed = time.monotonic() - pushed
    time.sleep(3)                                          # and no late duplicates
    gates = master.builds("release-gate")
    by_tag: dict[str, list] = {}
    for gate in gates:
        props = master.build_properties(gate["buildid"])
        by_tag.setdefault(props.get("release_tag"), []).append((gate, props))
    assert sorted(by_tag) == sorted(commits), sorted(by_tag)
    assert all(len(found) == 1 for found in by_tag.values()), {t: len(f) for t, f in by_tag.items()}
    for tag, [(gate, props)] in by_tag.items():
        assert result_name(gate) == "success", (tag, gate["state_string"])
        assert props["gate_revision"] == commits[tag]
        legs = leg_builds_of_gate(master, gate["buildid"])
        assert set(legs) == {"alpha-beta", "beta-gamma"}
        for build in legs.values():
            assert result_name(build) == "success"
            assert master.build_properties(build["buildid"])["got_revision"] == commits[tag]
    for leg in ("alpha-beta", "beta-gamma"):                # no request collapsed or skipped
        builds = master.builds(leg)
        assert len(builds) == BURST and all(result_name(b) == "success" for b in builds)
    assert len(gates) == BURST
    tag_changes = [c for c in master.get("changes") if (c["branch"] or "").startswith("refs/tags/")]
    assert sorted((c["branch"], c["revision"]) for c in tag_changes) == sorted(
        (f"refs/tags/{t}", sha) for t, sha in commits.items())          # one change per tag, at its commit
    started = sorted(g["started_at"] for g in gates)
    legs_done = max(b["complete_at"] for leg in ("alpha-beta", "beta-gamma") for b in master.builds(leg))
    # each tag published once (the gates start their publish builds without waiting for them)
    publishes = master.wait_builds("release-publish", BURST, timeout=120)
    assert len(publishes) == BURST and all(result_name(p) == "success" for p in publishes)
    assert sorted(published(master)) == sorted(commits)
    figure(f"{BURST} tags in one push ({push_took:.2f}s): all {BURST} gates done {elapsed:.1f}s after the push; "
           f"gate starts spread over {started[-1] - started[0]}s, last leg done {legs_done - started[0]}s and "
           f"last publish done {max(p['complete_at'] for p in publishes) - started[0]}s after the first gate "
           f"started; {len(publishes)} publishes, one at a time")


# --- gates side by side: the extra gate workers attach only while gates overlap --------------

def gate_workers_connected(master) -> dict[str, bool]:
    return {w["name"]: bool(w["connected_to"]) for w in master.get("workers") if w["name"].startswith("gate")}


def push_tags(repo, tags: list[str]) -> None:
    """Tags on new commits, pushed together (the poller sees them in one poll)."""
    tag_new_commits(repo, tags)
    git("push", "-q", "origin", *[f"refs/tags/{t}" for t in tags], cwd=repo.work)


def gates_done(master, tags: list[str]) -> list[dict]:
    gates = [wait_gate(master, tag, timeout=120)[0] for tag in tags]
    assert [result_name(g) for g in gates] == ["success"] * len(tags), [g["state_string"] for g in gates]
    return gates


def test_extra_gate_workers_attach_only_while_gates_overlap(make_master, repo, tmp_path):
    matrix = matrix_file(tmp_path, leg_yaml("alpha-beta", "sleep 2"))
    master = make_master(matrix=matrix, env={"GATE_PARALLEL_GATES": "3", "GATE_SLOT_IDLE": "2"})
    # started: only `gate` is attached; gate_2 and gate_3 are configured and wait for work
    assert gate_workers_connected(master) == {"gate": True, "gate_2": False, "gate_3": False}
    configured = {w["name"] for w in master.get(f"builders/{master.builder_id('release-gate')}/workers")}
    assert configured == {"gate", "gate_2", "gate_3"}

    push_tags(repo, ["v5.1.0", "v5.2.0", "v5.3.0"])
    gates = gates_done(master, ["v5.1.0", "v5.2.0", "v5.3.0"])
    assert sorted(worker_name(master, g) for g in gates) == ["gate", "gate_2", "gate_3"]
    assert max(g["started_at"] for g in gates) < min(g["complete_at"] for g in gates)   # side by side
    # idle for GATE_SLOT_IDLE: the slots detach again, `gate` stays
    master.wait_for(lambda: gate_workers_connected(master) == {"gate": True, "gate_2": False, "gate_3": False},
                    30, "the extra gate workers to detach")

    # one gate at a time runs on `gate`: it never waits for a slot to attach
    push_tags(repo, ["v5.4.0"])
    [gate] = gates_done(master, ["v5.4.0"])
    assert worker_name(master, gate) == "gate"
    assert gate_workers_connected(master)["gate_2"] is False

    # and when gates overlap again, the lowest slot attaches again
    push_tags(repo, ["v5.5.0", "v5.6.0"])
    gates = gates_done(master, ["v5.5.0", "v5.6.0"])
    assert sorted(worker_name(master, g) for g in gates) == ["gate", "gate_2"]
    for leg in master.builds("alpha-beta"):
        assert result_name(leg) == "success"
    assert len(master.builds("alpha-beta")) == 6


# --- hostile webhook payloads -------------------------------------------------------------------

def github_headers(body: bytes, secret: str = GITHUB_SECRET) -> dict:
    return {"Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def gitlab_headers(secret: str = GITLAB_SECRET) -> dict:
    return {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}


def git_headers(body: bytes) -> dict:
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Matrixgate-Signature": signature(HOOK_SECRET.encode(), body)}


def github_branch_push(sha: str) -> bytes:
    return json.dumps({
        "ref": "refs/heads/main", "before": "0" * 40, "after": sha, "created": False, "deleted": False,
        "repository": {"name": "platform", "full_name": "example/platform", "html_url": "https://example.invalid/p",
                       "clone_url": "https://example.invalid/p.git", "owner": {"login": "example", "name": "example"}},
        "pusher": {"name": "dev", "email": "dev@example.invalid"}, "sender": {"login": "dev"},
        "head_commit": {"id": sha, "message": "work", "timestamp": "2026-12-04T10:00:00+00:00",
                        "url": "https://example.invalid/c", "author": {"name": "dev", "email": "dev@example.invalid"},
                        "committer": {"name": "dev", "email": "dev@example.invalid"},
                        "added": [], "removed": [], "modified": []},
        "commits": [{"id": sha, "message": "work", "timestamp": "2026-12-04T10:00:00+00:00",
                     "url": "https://example.invalid/c", "author": {"name": "dev", "email": "dev@example.invalid"},
                     "committer": {"name": "dev", "email": "dev@example.invalid"},
                     "added": [], "removed": [], "modified": ["README"]}],
    }).encode()


def gitlab_branch_push(sha: str) -> bytes:
    return json.dumps({
        "object_kind": "push", "before": "0" * 40, "after": sha, "ref": "refs/heads/main",
        "user_name": "dev", "user_email": "dev@example.invalid", "user_username": "dev",
        "project": {"name": "platform", "path_with_namespace": "example/platform"},
        "repository": {"name": "platform", "url": "https://example.invalid/p.git",
                       "homepage": "https://example.invalid/p", "git_http_url": "https://example.invalid/p.git"},
        "commits": [{"id": sha, "message": "work", "timestamp": "2026-12-04T10:00:00+00:00",
                     "url": "https://example.invalid/c", "author": {"name": "dev", "email": "dev@example.invalid"},
                     "added": [], "modified": ["README"], "removed": []}],
        "total_commits_count": 1,
    }).encode()


def raw_truncated_post(master, dialect: str, body: bytes, headers: dict, send: int) -> bytes:
    """Announce ``len(body)`` bytes, send only ``send`` of them and hang up (a client that died)."""
    host, port = "127.0.0.1", master.web_port
    head = [f"POST /change_hook/{dialect} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
            "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:send])
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        try:
            return sock.recv(4096)
        except (socket.timeout, ConnectionError):
            return b""


RUDE_CLIENTS = 2000      # without the fix, 400 to 1200 of them broke the master here


def request_and_hang_up(port: int, path: str, pause: float) -> None:
    """Send a REST request and reset the connection while the answer is being written."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        time.sleep(pause)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST, not FIN


def test_clients_that_hang_up_mid_answer_do_not_stop_the_master_accepting_connections(make_master, repo):
    """Buildbot 4.3 writes REST answers from a thread; a client hanging up meanwhile left the
    reactor unable to accept any connection (web or worker) until a restart (bbfixes)."""
    master = make_master()
    path = "/api/v2/forceschedulers"                      # a few kB of JSON: written in many chunks
    pending: list[threading.Thread] = []
    for i in range(RUDE_CLIENTS):
        client = threading.Thread(target=request_and_hang_up, args=(master.web_port, path, (i % 20) * 0.0005))
        client.start()
        pending.append(client)
        if len(pending) == 8:
            for client in pending:
                client.join()
            pending = []
    for client in pending:
        client.join()
    # still serving: the REST API answers, and a tag still gets its gate (poller, workers, builds)
    assert [b["name"] for b in master.get("builders")]
    log = (master.dir / "twistd.log").read_text(errors="replace")
    assert "FileNotFoundError" not in log and "has no attribute 'write'" not in log
    repo.tag("v6.0.0")
    [gate] = wait_gate(master, "v6.0.0", timeout=180)
    assert result_name(gate) == "success", gate["state_string"]


def test_malformed_truncated_and_oversized_webhooks_are_refused(make_master, repo):
    master = make_master(env={"GATE_SECRET_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET})
    sha = repo.head()

    def changes() -> int:
        return len(master.get("changes") or [])
    before = changes()
    refused: list[tuple[str, int, bytes]] = []

    def refuse(dialect: str, body: bytes, headers: dict, what: str) -> None:
        status, text = master.post_hook(dialect, body, headers)
        refused.append((f"{dialect}: {what}", status, text[:100]))
        assert 400 <= status < 500, (dialect, what, status, text[:300])

    # GitHub (strict, signed): every body below is correctly signed, so only its content is judged
    good = github_branch_push(sha)
    for what, body in [
        ("not JSON", b"this is not json {"),
        ("truncated JSON", good[: len(good) // 2]),
        ("JSON list", b"[1, 2, 3]"),
        ("JSON without repository", json.dumps({"ref": "refs/heads/main"}).encode()),
        ("JSON with wrong types", json.dumps({"ref": 5, "repository": "x", "commits": "y"}).encode()),
        ("invalid UTF-8", b'{"ref": "\xff\xfe"}'),
        ("empty body", b""),
        ("oversized", b'{"pad": "' + b"x" * MAX_JSON_BODY + b'"}'),
    ]:
        refuse("github", body, github_headers(body), what)
    refuse("github", good[:-10], github_headers(good), "truncated in transit (signature of the whole)")
    refuse("github", good, {**github_headers(good), "Content-Type": "text/plain"}, "unknown content type")
    refuse("github", good, {**github_headers(good), "X-GitHub-Event": "no_such_event"}, "unknown event")

    # GitLab (token checked first, then the body)
    glgood = gitlab_branch_push(sha)
    refuse("gitlab", glgood, gitlab_headers("wrong-token"), "wrong token")
    for what, body in [
        ("not JSON", b"<xml/>"),
        ("truncated JSON", glgood[: len(glgood) // 2]),
        ("JSON list", b"[]"),
        ("push without repository", json.dumps({"object_kind": "push", "user_name": "x"}).encode()),
        ("push with wrong types", json.dumps({"object_kind": "push", "user_name": "x", "ref": 1,
                                              "repository": {"name": "p", "url": "u"}, "commits": 7}).encode()),
        ("invalid UTF-8", b"\xff" * 20),
        ("oversized", b'{"pad": "' + b"x" * MAX_JSON_BODY + b'"}'),
    ]:
        refuse("gitlab", body, gitlab_headers(), what)

    # the signed git hook
    gitgood = f"ref=refs/heads/main&newrev={sha}".encode()
    for what, body in [
        ("not form data", b"\x00\x01\x02garbage"),
        ("truncated", gitgood[:25]),                     # "ref=refs/heads/main&newre"
        ("no ref", f"newrev={sha}".encode()),
        ("oversized", b"ref=refs/heads/main&pad=" + b"x" * MAX_BODY),
    ]:
        refuse("git", body, git_headers(body), what)
    refuse("git", gitgood[:-5], git_headers(gitgood), "truncated in transit (signature of the whole)")

    # a client that announces a body and dies half-way through it gets no change either
    for dialect, body, headers in (("github", good, github_headers(good)),
                                   ("gitlab", glgood, gitlab_headers()),
                                   ("git", gitgood, git_headers(gitgood))):
        answer = raw_truncated_post(master, dialect, body, headers, send=len(body) // 2)
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]

    assert changes() == before, master.get("changes")
    log = (master.dir / "twistd.log").read_text(errors="replace")
    assert "Error processing changes" not in log and "Unhandled Error" not in log
    figure("refused: " + "; ".join(f"{w} -> {s}" for w, s, _ in refused))

    # ... and the master still serves: a valid request of each dialect creates its change
    for dialect, body, headers in (("github", good, github_headers(good)),
                                   ("gitlab", glgood, gitlab_headers()),
                                   ("git", gitgood, git_headers(gitgood))):
        status, text = master.post_hook(dialect, body, headers)
        assert status in (200, 202), (dialect, status, text)
    assert changes() == before + 3
    assert master.get("builders") and master.raw("api/v2/workers")


# --- the database unreachable for a while -------------------------------------------------------

@pytest.fixture
def outage_pg():
    """A PostgreSQL server of this test's own: stopping it disturbs no other master."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = PrivatePostgres("matrixgate-outage")
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def outage_master(outage_pg, repo, tmp_path):
    """A master on ``outage_pg`` (stopped before the server is)."""
    slow = tmp_path / "legs-are-slow"                 # touch it to make the legs take 4 s
    command = f"if [ -e {slow} ]; then sleep 4; fi; git rev-parse HEAD"
    matrix = matrix_file(tmp_path, leg_yaml("alpha-beta", command) + leg_yaml("beta-gamma", command))
    # the plain URL form here (the gate tests use postgresql+psycopg://): both reach psycopg 3
    master = GateMaster(tmp_path, repo, matrix=matrix, db_url=outage_pg.create_database("outage", driver=""))
    try:
        master.start()
        yield master, slow
    finally:
        cleanup(master)


@pytest.mark.postgresql
def test_database_outage_loses_no_finished_result_and_the_master_recovers(outage_pg, outage_master, repo):
    master, slow = outage_master
    database = master.db_url.rsplit("/", 1)[1]
    first_commit = repo.commit("release 4.0.0")
    repo.tag("v4.0.0")
    first = wait_gate(master, "v4.0.0", timeout=90)[0]
    assert result_name(first) == "success"

    # 1. between two gates: PostgreSQL killed (no clean shutdown), back 4 s later
    outage_pg.stop(mode="immediate")
    assert not outage_pg.is_running()
    time.sleep(4)                                     # the poller and the wait watcher hit the dead DB
    down_answer = master.get("builds")                # REST meanwhile: an error, not a hang
    outage_pg.start()
    after = master.wait_for(lambda: master.get(f"builds/{first['buildid']}"), 30, "REST after the outage")[0]
    assert result_name(after) == "success" and after["complete"]           # the finished result survived
    assert master.build_properties(first["buildid"])["gate_revision"] == first_commit
    second_commit = repo.commit("release 4.0.1")
    repo.tag("v4.0.1")
    second = wait_gate(master, "v4.0.1", timeout=120)[0]                  # and the master works
    assert result_name(second) == "success", second["state_string"]
    assert master.build_properties(second["buildid"])["gate_revision"] == second_commit

    # 2. during a gate, across the end of its legs: Buildbot 4.3 never retries a failed DB
    # connect, so a build whose step transition hits the outage can wedge (seen here every
    # time: legs and gate stay "building", `buildbot stop` cannot stop the master).  The
    # recovery is a hard restart; Buildbot then marks the wedged builds RETRY and runs the gate
    # again.  Either way the tag must end with one green gate and one publish.
    slow.touch()
    third_commit = repo.commit("release 4.0.2")
    repo.tag("v4.0.2")
    for leg in ("alpha-beta", "beta-gamma"):
        master.wait_for(lambda leg=leg: running_command(master, leg), 90, f"{leg} running")
    outage_pg.stop(mode="immediate")
    time.sleep(8)
    outage_pg.start()
    slow.unlink()
    try:
        wait_gate(master, "v4.0.2", timeout=30)
        path = "the gate finished by itself"
    except AssertionError:
        path = "the gate wedged; hard restart"
        started = time.monotonic()
        master.stop()                                 # buildbot stop, then SIGKILL (harness)
        master.start()
        path += f" took {time.monotonic() - started:.1f}s"
    green = master.wait_for(lambda: [g for g in gate_builds_for(master, "v4.0.2") if g["results"] == 0],
                            120, "a green gate of v4.0.2")
    assert master.build_properties(green[0]["buildid"])["gate_revision"] == third_commit
    figure(f"REST while PostgreSQL was down: {'an error' if down_answer is None else 'answered'}; "
           f"outage across the legs' end: {path}; gates of v4.0.2: "
           f"{[result_name(g) for g in gate_builds_for(master, 'v4.0.2')]}")

    # nothing finished before either outage changed, nothing was published twice
    for gate, commit in ((first, first_commit), (second, second_commit)):
        again = master.get(f"builds/{gate['buildid']}")[0]
        assert result_name(again) == "success" and master.build_properties(gate["buildid"])["gate_revision"] == commit
    assert master.wait_for(lambda: published(master) == ["v4.0.0", "v4.0.1", "v4.0.2"], 30, "three publishes")
    assert outage_pg.psql(database, "select count(*) from builds where results = 0") != "0"
