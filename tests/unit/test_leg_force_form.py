"""The one force form for every leg (``force-leg``, src/matrixgate/forcing.py): a force runs
exactly the leg it names, as the web UI's builder page names it (its builderid); a force
that names no leg, another builder or several legs is refused before any request exists."""

from __future__ import annotations

import pytest
from buildbot.schedulers.forcesched import CollectedValidationError
from buildbot.test import fakedb
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.scheduler import SchedulerMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import forcing, props

LEGS = ["chainfire-flaredb", "flaredb-plasmavmc", "creditservice-nightlight"]
GATE_ID, OTHER_ID = 300 + len(LEGS), 300 + len(LEGS) + 1    # leg builders are 300, 301, ...


class LegForceFormTest(SchedulerMixin, TestReactorMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setUpScheduler()
        self.sched = forcing.leg_force_scheduler(LEGS, "/nonexistent/platform.git", "platform")
        yield self.attachScheduler(self.sched, objectid=19, schedulerid=20, overrideBuildsetMethods=True,
                                   createBuilderDB=True)
        yield self.sched.reconfigServiceWithSibling(self.sched)      # as the master's reconfig does
        yield self.master.db.insert_test_data([fakedb.Builder(id=GATE_ID, name="release-gate"),
                                               fakedb.Builder(id=OTHER_ID, name="retired-leg")])

    def forced(self):
        """(builderNames, properties) of every buildset the form created."""
        return [(call[1]["builderNames"], call[1]["properties"]) for call in self.addBuildsetCalls]

    @defer.inlineCallbacks
    def refused(self, **kwargs) -> str:
        with self.assertRaises(CollectedValidationError) as info:
            yield self.sched.force("dev", reason="r", **kwargs)
        self.assertEqual(self.addBuildsetCalls, [])                # nothing was created
        return info.exception.errors

    def test_one_form_for_every_leg(self):
        self.assertEqual(self.sched.name, "force-leg")
        self.assertEqual(self.sched.builderNames, LEGS)
        self.assertEqual(self.sched.buttonName, "Run leg")
        dry = [p for p in self.sched.forcedProperties if getattr(p, "name", None) == props.DRY_RUN]
        self.assertEqual(len(dry), 1)
        self.assertIsInstance(dry[0], forcing.StrictBooleanParameter)
        self.assertIs(dry[0].default, True)

    @defer.inlineCallbacks
    def test_the_builder_page_forces_its_own_leg_only(self):
        # Buildbot's UI sends {"builderid": "<id>"} (a string) from the builder's page.
        yield self.sched.force("dev", builderid="301", reason="try it")
        [(names, properties)] = self.forced()
        self.assertEqual(names, ["flaredb-plasmavmc"])
        self.assertEqual(properties[props.DRY_RUN], (True, "Force Build Form"))   # dry by default
        self.assertEqual(properties["reason"], ("try it", "Force Build Form"))

    @defer.inlineCallbacks
    def test_a_real_run_by_builder_id_or_name(self):
        yield self.sched.force("dev", builderid=300, dry_run=False, reason="r")
        yield self.sched.force("dev", builderNames=["creditservice-nightlight"], dry_run=False, reason="r")
        self.assertEqual([names for names, _ in self.forced()], [["chainfire-flaredb"], ["creditservice-nightlight"]])
        self.assertTrue(all(p[props.DRY_RUN][0] is False for _, p in self.forced()))

    @defer.inlineCallbacks
    def test_a_force_without_a_leg_is_refused(self):
        errors = yield self.refused()
        self.assertEqual(list(errors), ["builderid"])
        self.assertIn("Name the leg to run", errors["builderid"])
        self.assertIn("force-release-gate", errors["builderid"])       # where "every leg" belongs

    @defer.inlineCallbacks
    def test_only_enabled_legs(self):
        for kwargs in ({"builderid": GATE_ID}, {"builderid": str(OTHER_ID)}, {"builderid": 999},
                       {"builderid": "abc"}, {"builderid": True}, {"builderNames": ["release-gate"]},
                       {"builderNames": []}):
            errors = yield self.refused(**kwargs)
            self.assertTrue(errors["builderid"].startswith("Not an enabled leg: "), (kwargs, errors))

    @defer.inlineCallbacks
    def test_one_leg_per_force(self):
        errors = yield self.refused(builderNames=LEGS[:2])
        self.assertEqual(errors["builderid"], "One leg per force, got 2 (chainfire-flaredb, flaredb-plasmavmc): "
                                              "force each leg on its own, or force the gate "
                                              "(force-release-gate) to run every leg.")

    @defer.inlineCallbacks
    def test_validation_is_unchanged(self):
        errors = yield self.refused(builderid=300, dry_run="yes")
        self.assertEqual(errors, {props.DRY_RUN: "Dry run: must be true or false (a JSON boolean), got 'yes'"})
        errors = yield self.refused(builderid=300, revision="HEAD~1; rm -rf /")
        self.assertEqual(errors, {"revision": "Revision 'head~1; rm -rf /' is not a commit id (7 to 64 hex digits)"})

    @defer.inlineCallbacks
    def test_a_revision_is_passed_on(self):
        yield self.sched.force("dev", builderid=300, revision="ABCDEF1234", reason="r")
        [(names, properties)] = self.forced()
        self.assertEqual(properties[props.GATE_REVISION][0], "abcdef1234")
        [source] = self.addBuildsetCalls[0][1]["sourcestamps"]
        self.assertEqual((source["revision"], source["branch"]), ("abcdef1234", None))


class GateFormTest(SchedulerMixin, TestReactorMixin, unittest.TestCase):
    """Buildbot takes a force's builderid at its word; Matrix Gate's forms build only their own."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        yield self.setUpScheduler()
        self.sched = forcing.MatrixForceScheduler(
            name="force-release-gate", builderNames=["release-gate"], repo_url="/nonexistent/platform.git",
            project="platform", need_target=True, properties=forcing.gate_params())
        yield self.attachScheduler(self.sched, objectid=19, schedulerid=20, overrideBuildsetMethods=True,
                                   createBuilderDB=True)
        yield self.sched.reconfigServiceWithSibling(self.sched)      # as the master's reconfig does
        yield self.master.db.insert_test_data([fakedb.Builder(id=400, name=LEGS[0])])

    @defer.inlineCallbacks
    def test_another_builders_id_is_refused(self):
        with self.assertRaises(CollectedValidationError) as info:
            yield self.sched.force("rel", builderid=400, revision="abcdef1", reason="r")
        self.assertEqual(info.exception.errors, {
            "builderid": "force-release-gate does not build builderid 400: it builds release-gate"})
        self.assertEqual(self.addBuildsetCalls, [])

    @defer.inlineCallbacks
    def test_its_own_builder(self):
        yield self.sched.force("rel", revision="abcdef1", reason="r")            # no builder: the gate
        yield self.sched.force("rel", builderid="300", revision="abcdef1", reason="r")
        self.assertEqual([c[1]["builderNames"] for c in self.addBuildsetCalls], [["release-gate"]] * 2)


@pytest.mark.parametrize("names, builderid", [(None, None), (["a"], None)])
def test_compute_builder_names_needs_no_master_without_an_id(names, builderid):
    """The authz matcher asks which builders a force names; without an id no lookup happens."""
    sched = forcing.leg_force_scheduler(["a", "b"], "/r.git", "p")
    out = []
    sched.computeBuilderNames(names, builderid).addBoth(out.append)
    assert out == [["a", "b"] if names is None else ["a"]]
