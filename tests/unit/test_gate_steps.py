"""The release gate's own pieces (src/matrixgate/gate.py): which legs run, when publishing is
allowed, and resolving the tag (with Buildbot's step harness)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from buildbot.process.buildstep import create_step_from_step_or_factory
from buildbot.process.properties import Properties
from buildbot.process.results import EXCEPTION, FAILURE, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import gate, gitops, loader, props, tally
from matrixgate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MATRIX = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
SETTINGS = Settings(basedir=Path("/tmp/matrixgate-master"), repo_url="/srv/git/platform.git")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def select(tag="v1.2.3", dry=False, skip_plasma=False, reason="", plasma_e2e=False, matrix=MATRIX):
    fan_out = gate.GateFanOut(matrix, SETTINGS)
    run = fan_out.select(tag, dry, skip_plasma, reason, plasma_e2e)
    return run, {o.leg: (o.state, o.reason) for o in fan_out.tally.outcomes}


def test_select_runs_every_enabled_leg_but_the_on_request_one():
    run, states = select("v1.2.3")
    assert run == ["chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight"]
    assert states["plasmavmc-e2e"] == (
        "not-requested", "not requested (set plasma_e2e, or tag matching v*.0)")
    assert "tenant-e2e" not in states                                   # disabled: not in the tally at all


@pytest.mark.parametrize("tag, plasma_e2e", [("v1.3.0", False), ("v1.2.3", True)])
def test_select_on_request_leg(tag, plasma_e2e):
    run, _ = select(tag, plasma_e2e=plasma_e2e)
    assert "plasmavmc-e2e" in run


def test_select_skip_plasma():
    run, states = select("v1.2.3", skip_plasma=True, reason="kvm-1 in repair", plasma_e2e=True)
    assert run == ["chainfire-flaredb", "creditservice-nightlight"]
    for leg in ("flaredb-plasmavmc", "plasmavmc-creditservice", "plasmavmc-e2e"):
        assert states[leg] == ("skipped", "skip_plasma: kvm-1 in repair")


def step_with(dry=None, tag="v1.2.3", verdict=tally.GREEN):
    build = Properties()
    if dry is not None:
        build.setProperty(props.DRY_RUN, dry, "test")
    values = {props.GATE_VERDICT: verdict, props.RELEASE_TAG: tag}
    return SimpleNamespace(build=build, getProperty=lambda name, default=None: values.get(name, default))


def test_publish_only_after_a_green_real_gate_of_a_tag():
    def allowed(step):
        return gate.publish_allowed(MATRIX, step)
    assert allowed(step_with())
    assert not allowed(step_with(dry=True))                              # a dry run never publishes
    assert allowed(step_with(dry=False))
    assert not allowed(step_with(tag=""))                                # a revision, not a tag
    for verdict in (tally.BLOCKED, tally.DRY_RUN, tally.DRY_RUN_BLOCKED, tally.GREEN_WITH_SKIPS, None):
        assert not allowed(step_with(verdict=verdict)), verdict


def test_green_with_skips_publishes_only_where_the_matrix_allows_it(tmp_path):
    text = (REPO / "matrix" / "matrix.yaml").read_text().replace("allow_skip_plasma: false", "allow_skip_plasma: true")
    (tmp_path / "m.yaml").write_text(text)
    lenient = loader.load_matrix(tmp_path / "m.yaml")
    assert lenient.release.allow_skip_plasma is True
    assert gate.publish_allowed(lenient, step_with(verdict=tally.GREEN_WITH_SKIPS))
    assert not gate.publish_allowed(MATRIX, step_with(verdict=tally.GREEN_WITH_SKIPS))


def test_gate_builder():
    builder = gate.gate_builder(MATRIX, SETTINGS)
    assert (builder.name, builder.workernames, builder.tags, builder.collapseRequests) == (
        "release-gate", ["gate"] + [f"gate_{i}" for i in range(2, SETTINGS.parallel_gates + 1)], ["gate"], False)
    # one step: resolving, the legs, the evidence and starting publish are all the fan-out's
    assert [s.step_class for s in builder.factory.steps] == [gate.GateFanOut]
    assert gate.leg_scheduler_name("a-leg") == "leg-a-leg"


class ResolveTargetTest(unittest.TestCase):
    """Which tag, which commit a gate build gates (the first thing its fan-out step does)."""

    def resolve(self, branch, revision, answer, category=None):
        self.asked = []

        def resolve_tag(repo_url, tag):
            self.asked.append((repo_url, tag))
            return defer.fail(answer) if isinstance(answer, Exception) else defer.succeed(answer)
        self.patch(gitops, "resolve_tag", resolve_tag)
        build = Properties()
        if category:
            build.setProperty("category", category, "change")
        build.getSourceStamp = lambda codebase: SimpleNamespace(branch=branch, revision=revision)
        result = []
        gate.resolve_target(build, "/srv/git/platform.git").addCallback(result.append)
        return result[0]

    def test_tag_resolved_to_its_commit(self):
        target = self.resolve("refs/tags/v1.2.3", None, COMMIT)
        assert (target.refused, target.tag, target.commit) == (None, "v1.2.3", COMMIT)
        assert target.lines[-1] == f"gating commit: {COMMIT}" and target.refusal == ""
        assert self.asked == [("/srv/git/platform.git", "v1.2.3")]

    def test_github_style_tag_and_annotated_tag_object(self):
        # GitHub: branch 'v1.2.3' + category 'tag'; the change names the tag object, not the commit.
        target = self.resolve("v1.2.3", "f" * 40, COMMIT, category="tag")
        assert target.commit == COMMIT
        assert f"note: the change named {'f' * 40}, the tag's commit is {COMMIT}" in "\n".join(target.lines)

    def test_missing_tag_fails(self):
        target = self.resolve("refs/tags/v9", None, None)
        assert (target.refused, target.refusal) == (FAILURE, "tag v9 does not exist in /srv/git/platform.git")

    def test_unreachable_repository_is_an_exception(self):
        target = self.resolve("refs/tags/v1", None, gitops.GitError("exit 128"))
        assert (target.refused, target.refusal) == (EXCEPTION, "cannot resolve tag v1: exit 128")

    def test_branch_push_without_revision_gates_nothing(self):
        target = self.resolve("refs/heads/main", None, COMMIT)
        assert target.refused == FAILURE and target.commit is None
        assert self.asked == []

    def test_revision_only(self):
        target = self.resolve(None, COMMIT, None)
        assert (target.refused, target.tag, target.commit) == (None, None, COMMIT)
        assert self.asked == []


# --- finishing a leg: what the gate counts ----------------------------------------------------

class FakeData:
    def __init__(self, answers):
        self.answers = answers

    def get(self, path, **kw):
        return defer.succeed(self.answers.get(path))


def finish(request_results, builds, steps=(), configured_workers=True):
    answers = {("buildrequests", 5, "builds"): builds, ("workers", 400): {"name": "old-kvm"}}
    for build in builds:
        answers[("builds", build["buildid"], "steps")] = list(steps)
    workers = {"kvm-1": SimpleNamespace(workerid=400, workername="kvm-1")} if configured_workers else {}
    # A step as a build runs it (a configured step refuses attribute changes).
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS))
    fan_out.master = SimpleNamespace(data=FakeData(answers), config=SimpleNamespace(buildbotURL="http://gate/"),
                                     workers=SimpleNamespace(workers=workers))
    fan_out.updateSummary = lambda: None
    urls = []
    fan_out.addURL = lambda name, url: urls.append((name, url)) or defer.succeed(None)
    fan_out.select("v1.2.3", False, False, "", False)
    d = fan_out.finish_leg("chainfire-flaredb", [5], request_results)
    failures = []
    d.addErrback(failures.append)
    assert not failures, failures
    return fan_out.tally.get("chainfire-flaredb"), urls


def build(number, results, buildid=None):
    return {"buildid": buildid or 90 + number, "number": number, "builderid": 3, "workerid": 400,
            "results": results, "started_at": 100, "complete_at": 130}


def test_finish_leg_green():
    outcome, urls = finish(SUCCESS, [build(1, SUCCESS)])
    assert outcome.green and outcome.state == "done"
    assert (outcome.worker, outcome.number, outcome.url) == ("kvm-1", 1, "http://gate/#/builders/3/builds/1")
    assert outcome.duration == 30 and urls == []


def test_finish_leg_names_a_worker_no_longer_configured():
    outcome, _ = finish(SUCCESS, [build(1, SUCCESS)], configured_workers=False)
    assert outcome.green and outcome.worker == "old-kvm"                  # asked of the database


def test_finish_leg_without_a_result_is_an_exception():
    outcome, _ = finish(None, [build(1, SUCCESS)])
    assert not outcome.green and outcome.results == EXCEPTION


def test_finish_leg_success_without_a_build_never_passes():
    """A collapsed or otherwise completed request with no build behind it must block."""
    outcome, _ = finish(SUCCESS, [])
    assert not outcome.green
    assert outcome.results == FAILURE
    assert outcome.reason == "never ran (request ended success)"


def test_finish_leg_skipped_request_blocks():
    from buildbot.process.results import SKIPPED
    outcome, _ = finish(SKIPPED, [])
    assert not outcome.green and outcome.reason == "never ran (request ended skipped)"


def test_finish_leg_failure_names_the_failing_step():
    steps = [{"results": SUCCESS, "name": "checkout", "state_string": "update"},
             {"results": 3, "name": "dry-run-plan", "state_string": "skipped"},
             {"results": FAILURE, "name": "raft tests", "state_string": "'cargo nextest ...' (failure)"}]
    outcome, urls = finish(FAILURE, [build(4, FAILURE)], steps)
    assert not outcome.green
    assert outcome.reason == "failure in step 'raft tests': 'cargo nextest ...' (failure)"
    assert urls == [("BLOCKING: chainfire-flaredb #4", "http://gate/#/builders/3/builds/4")]


def test_finish_leg_counts_the_last_attempt():
    outcome, _ = finish(SUCCESS, [build(1, 5), build(2, SUCCESS)])      # 5 = RETRY (worker lost)
    assert outcome.green and outcome.number == 2
    assert outcome.reason == "attempt 2 (earlier attempts lost their worker)"


# --- after the verdict: evidence, then publish ------------------------------------------------

class FakeEvidence:
    def __init__(self, error=None):
        self.error = error
        self.written = []

    def leg_finished(self, step, leg, buildid, number, worker):
        self.read_early = getattr(self, "read_early", []) + [(leg, buildid, number, worker)]

    def write(self, step, tally_, revision):
        self.written.append(revision)
        return defer.fail(self.error) if self.error else defer.succeed("record")


class FakePublishScheduler:
    def __init__(self):
        self.calls = []

    def trigger(self, **kwargs):
        self.calls.append(kwargs)
        return defer.succeed((77, {"release-publish": 501})), defer.Deferred()


def after_verdict(verdict_green=True, dry=False, evidence=None, tag="v1.2.3"):
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS, evidence=evidence))
    publisher = FakePublishScheduler()
    fan_out.master = SimpleNamespace(config=SimpleNamespace(buildbotURL="http://gate/"),
                                     scheduler_manager=SimpleNamespace(namedServices={"publish": publisher}))
    build_props = Properties()
    build_props.setProperty(props.DRY_RUN, dry, "force")
    build_props.setProperty(props.RELEASE_TAG, tag, "gate")
    build_props.setProperty("gate_url", "http://gate/#/builders/1/builds/3", "gate")
    fan_out.build = SimpleNamespace(buildid=42, number=3, getProperty=build_props.getProperty,
                                    getProperties=lambda: build_props, hasProperty=build_props.hasProperty)
    fan_out.getProperty = build_props.getProperty
    fan_out.tag = tag
    fan_out.tally.dry_run = dry
    fan_out.select(tag, dry, False, "", False)
    for outcome in fan_out.tally.outcomes:
        if outcome.counts:
            outcome.state, outcome.results, outcome.buildid = "done", SUCCESS if verdict_green else FAILURE, 9
    build_props.setProperty(props.GATE_VERDICT, fan_out.tally.verdict(), "gate")
    urls, logs = [], []
    fan_out.addURL = lambda name, url: urls.append((name, url)) or defer.succeed(None)
    fan_out.addCompleteLog = lambda name, text: logs.append((name, text)) or defer.succeed(None)
    result = []
    fan_out.after_verdict(dry, COMMIT).addCallback(result.append)
    return result[0], publisher.calls, urls, logs, fan_out


def test_a_green_gate_writes_its_evidence_then_starts_publish_without_waiting():
    evidence = FakeEvidence()
    result, calls, urls, _, fan_out = after_verdict(evidence=evidence)
    assert result == SUCCESS and evidence.written == [COMMIT]
    [call] = calls
    assert call["waited_for"] is False and call["parent_buildid"] == 42
    assert call["sourcestamps"][0]["branch"] == "refs/tags/v1.2.3" and call["sourcestamps"][0]["revision"] == COMMIT
    handed = call["set_props"]
    # publish refuses a release without a green gate's id (Buildbot has no 'buildid' property)
    assert handed.getProperty(props.GATE_BUILDID) == 42 and handed.getProperty(props.GATE_VERDICT) == "green"
    assert handed.getProperty(props.RELEASE_TAG) == "v1.2.3" and handed.getProperty(props.GATE_REVISION) == COMMIT
    assert urls == [("publish #501", "http://gate/#/buildrequests/501")]
    assert fan_out.getProperty(props.GATE_VERDICT) == "green"          # recorded with the legs table


def test_a_red_gate_writes_evidence_and_does_not_publish():
    evidence = FakeEvidence()
    result, calls, _, _, _ = after_verdict(verdict_green=False, evidence=evidence)
    assert result == FAILURE and evidence.written == [COMMIT] and calls == []


def test_a_dry_run_writes_no_evidence_and_never_publishes():
    evidence = FakeEvidence()
    result, calls, _, _, _ = after_verdict(dry=True, evidence=evidence)
    assert result == SUCCESS and evidence.written == [] and calls == []


def test_a_green_gate_whose_evidence_failed_is_not_published():
    result, calls, _, logs, fan_out = after_verdict(evidence=FakeEvidence(OSError("disk full")))
    assert result == EXCEPTION and calls == []
    assert [name for name, _ in logs] == ["legs", "evidence error"]
    assert dict(logs)["evidence error"] == "OSError: disk full\n"
    assert fan_out.getResultSummary()["build"].endswith("; evidence not written (disk full): not published")


def test_build_events_give_the_final_build_without_a_query_and_start_the_evidence_read():
    evidence = FakeEvidence()
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS, evidence=evidence))
    fan_out.addURL = lambda name, url: defer.succeed(None)
    fan_out.master = SimpleNamespace(config=SimpleNamespace(buildbotURL="http://gate/"), workers=SimpleNamespace(
        workers={"kvm-1": SimpleNamespace(workerid=400, workername="kvm-1")}))
    fan_out.brids = {5: "chainfire-flaredb"}
    lost = dict(build(1, None), buildrequestid=5, complete=False)
    fan_out.on_build_new(None, lost)
    assert fan_out.builds_seen(5) is None                     # still running: ask the database
    fan_out.on_build_finished(None, dict(lost, complete=True, results=5))      # RETRY: worker lost
    assert fan_out.builds_seen(5) is None                     # a retry follows: not final
    assert not hasattr(evidence, "read_early")                # a lost attempt is no evidence
    final = dict(build(2, SUCCESS), buildrequestid=5, complete=True)
    fan_out.on_build_new(None, dict(final, complete=False))
    fan_out.on_build_finished(None, final)
    assert sorted(b["number"] for b in fan_out.builds_seen(5)) == [1, 2]
    assert evidence.read_early == [("chainfire-flaredb", 92, 2, "kvm-1")]
    fan_out.on_build_finished(None, dict(build(7, SUCCESS), buildrequestid=99, complete=True))  # not ours
    assert 99 not in fan_out.leg_builds and len(evidence.read_early) == 1
