"""The gate's verdict and what it says (src/matrixgate/tally.py).

Buildbot's own ``worst_status`` ranks SKIPPED above SUCCESS; the gate must not: only a
SUCCESS that has a build behind it is green.
"""

from __future__ import annotations

import pytest
from buildbot.process.results import (
    CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS, worst_status,
)

from matrixgate import tally
from matrixgate.tally import LegOutcome, Tally


def done(leg, results=SUCCESS, buildid=1, **kw) -> LegOutcome:
    kw.setdefault("number", buildid)
    return LegOutcome(leg=leg, state="done", results=results, buildid=buildid, **kw)


def test_buildbot_itself_would_pass_a_skipped_leg():
    """Why tally exists: Buildbot's worst_status(SUCCESS, SKIPPED) is SUCCESS."""
    assert worst_status(SUCCESS, SKIPPED) == SUCCESS


def test_only_success_with_a_build_is_green():
    assert done("a").green
    assert LegOutcome("a", state="reused", results=SUCCESS, buildid=3).green
    assert not done("a", buildid=None).green                      # SUCCESS without a build
    assert not LegOutcome("a", state="running", results=SUCCESS, buildid=3).green
    assert not LegOutcome("a", state="pending").green


@pytest.mark.parametrize("results", [WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED, None])
def test_anything_but_success_blocks(results):
    t = Tally([done("a"), done("b", results, buildid=2)])
    assert not t.get("b").green
    assert t.verdict() == tally.BLOCKED
    assert t.results() == FAILURE
    assert [o.leg for o in t.blocking] == ["b"]


def test_a_leg_that_never_ran_blocks():
    t = Tally([done("a"), done("b", SKIPPED, buildid=None, number=None, reason="never ran (request ended skipped)")])
    assert t.verdict() == tally.BLOCKED
    assert t.get("b").result_name == "not-run"
    assert tally.summary(t, "v1") == "release v1 BLOCKED by b (never ran (request ended skipped))"


def test_all_green():
    t = Tally([done("a"), done("b", buildid=2), LegOutcome("e2e", state="not-requested")])
    assert t.verdict() == tally.GREEN
    assert t.results() == SUCCESS
    assert tally.summary(t, "v1.2.3") == "release v1.2.3 GREEN: 2/2 legs passed"


def test_not_requested_does_not_count():
    t = Tally([done("a"), LegOutcome("e2e", state="not-requested", reason="not requested")])
    assert not t.get("e2e").counts
    assert t.verdict() == tally.GREEN and t.blocking == []


def test_skipped_plasma_is_green_with_skips():
    t = Tally([done("a"), LegOutcome("vm", state="skipped", reason="skip_plasma: kvm host down until friday")])
    assert t.verdict() == tally.GREEN_WITH_SKIPS
    assert t.results() == WARNINGS
    assert tally.summary(t, "v1") == (
        "release v1 passed WITH SKIPPED plasma legs (vm): skip_plasma: kvm host down until friday")


def test_skips_do_not_hide_a_failure():
    t = Tally([done("a", FAILURE), LegOutcome("vm", state="skipped", reason="skip_plasma: x")])
    assert t.verdict() == tally.BLOCKED and t.results() == FAILURE


def test_nothing_counted_is_blocked():
    t = Tally([LegOutcome("vm", state="skipped", reason="skip_plasma: x"),
               LegOutcome("e2e", state="not-requested")])
    assert t.verdict() == tally.BLOCKED
    assert Tally([]).verdict() == tally.BLOCKED


def test_nothing_counted_says_why():
    t = Tally([LegOutcome("vm", state="skipped", reason="skip_plasma: x")])
    assert not tally.summary(t, "v1").endswith("BLOCKED by ")


def test_dry_run_verdicts():
    t = Tally([done("a"), done("b", buildid=2)], dry_run=True)
    assert t.verdict() == tally.DRY_RUN and t.results() == SUCCESS
    assert tally.summary(t, "v1") == "dry run of release v1: 2 legs planned, no test ran, nothing published"
    t = Tally([done("a"), done("b", EXCEPTION, buildid=2, reason="worker lost")], dry_run=True)
    assert t.verdict() == tally.DRY_RUN_BLOCKED and t.results() == FAILURE
    assert tally.summary(t, None) == "dry run of gate BLOCKED by b (worker lost)"


def test_summary_names_the_blocking_leg_while_others_run():
    t = Tally([done("a", FAILURE, reason="FAILURE in step 'make': failed (2)"),
               LegOutcome("b", state="running"), LegOutcome("c", state="pending")])
    assert not t.finished
    assert tally.summary(t, "v1") == (
        "release v1 BLOCKED by a (FAILURE in step 'make': failed (2)); other legs still running")


def test_summary_while_running_without_failures():
    t = Tally([done("a"), LegOutcome("b", state="running"), LegOutcome("e2e", state="not-requested")])
    assert tally.summary(t, "v1") == "release v1: 1/2 legs done, none failed yet"


def test_blocked_text_falls_back_to_the_result_name():
    assert tally.blocked_text(done("a", CANCELLED)) == "a (cancelled)"
    assert tally.summary(Tally([done("a", CANCELLED)]), "v1") == "release v1 BLOCKED by a (cancelled)"


def test_result_names():
    assert done("a").result_name == "success"
    assert done("a", RETRY).result_name == "retry"
    assert LegOutcome("a", state="reused", results=SUCCESS, buildid=1).result_name == "success (reused)"
    assert done("a", None).result_name == "unknown"
    for state in ("skipped", "not-requested", "pending", "running"):
        assert LegOutcome("a", state=state).result_name == state


def test_duration_and_as_dict():
    o = done("a", started_at=100.0, complete_at=112.5, worker="kvm-1")
    assert o.duration == 12.5
    assert LegOutcome("a", started_at=100.0).duration is None
    data = o.as_dict()
    assert data["result"] == "success" and data["worker"] == "kvm-1" and data["leg"] == "a"


def test_get_unknown_leg():
    with pytest.raises(KeyError):
        Tally([done("a")]).get("b")


def test_final_table_columns():
    t = Tally([
        done("chainfire-flaredb", worker="local-basic", started_at=10.0, complete_at=22.25,
             url="http://gate/#/builders/3/builds/1"),
        done("flaredb-plasmavmc", FAILURE, buildid=2, worker="local-kvm", started_at=10.0, complete_at=11.0,
             url="http://gate/#/builders/4/builds/2", reason="FAILURE in step 'vm'"),
        LegOutcome("plasmavmc-e2e", state="not-requested", reason="not requested"),
    ])
    lines = tally.table(t).splitlines()
    assert lines[0].split() == ["leg", "result", "worker", "duration", "build"]
    assert lines[1].split() == ["chainfire-flaredb", "success", "local-basic", "12.2s",
                                "http://gate/#/builders/3/builds/1"]
    assert lines[2].split() == ["flaredb-plasmavmc", "failure:", "FAILURE", "in", "step", "'vm'",
                                "local-kvm", "1.0s", "http://gate/#/builders/4/builds/2"]
    assert lines[3].split() == ["plasmavmc-e2e", "not-requested:", "not", "requested", "-", "-", "-"]
    # Columns line up: every row's worker starts at the same offset as the header's.
    offset = lines[0].index("worker")
    assert lines[1][offset:].startswith("local-basic") and lines[2][offset:].startswith("local-kvm")
    assert tally.table(t).endswith("\n")
