"""Who may force what (src/matrixgate/auth.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.www.authz import Forbidden
from buildbot.www.authz.endpointmatchers import Match
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial import unittest

from matrixgate import auth, users
from matrixgate.gate import GATE_BUILDER
from matrixgate.publish import PUBLISH_BUILDER

LEG = "chainfire-flaredb"


def result_of(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


class FakeSched:
    def __init__(self, builder_names):
        self.builderNames = builder_names

    def computeBuilderNames(self, builderNames=None, builderid=None):
        if builderNames is None:
            return defer.succeed(list(self.builderNames))
        return defer.succeed(sorted(set(builderNames) & set(self.builderNames)))


class FakeForceEndpoint:
    def __init__(self, **scheds):
        self.scheds = scheds

    def findForceScheduler(self, name):
        return defer.succeed(self.scheds.get(name))


ENDPOINT = FakeForceEndpoint(**{
    "force-release-gate": FakeSched([GATE_BUILDER]),
    "force-release-publish": FakeSched([PUBLISH_BUILDER]),
    "force-leg": FakeSched([LEG, "flaredb-plasmavmc"]),
})


def matches(schedulername, **options) -> bool:
    matcher = auth.RealReleaseForceMatcher(role="releasers")
    matcher.master = SimpleNamespace(name="master")
    got = result_of(matcher.match_ForceSchedulerEndpoint_force(ENDPOINT, {"schedulername": schedulername}, options))
    assert got is None or isinstance(got, Match)
    return got is not None


def test_real_gate_force_needs_releasers():
    assert matches("force-release-gate", dry_run=False)
    assert matches("force-release-gate", dry_run="yes")       # anything but a real True counts as real
    assert matches("force-release-gate", dry_run=[True])      # a list is not the JSON boolean true


def test_dry_gate_force_is_not_matched():
    assert not matches("force-release-gate", dry_run=True)
    assert not matches("force-release-gate")                  # the form's default is a dry run


def test_any_publish_force_needs_releasers():
    assert matches("force-release-publish")
    assert matches("force-release-publish", dry_run=True)
    assert matches("force-release-publish", dry_run=False)


def test_leg_forces_are_not_matched():
    assert not matches("force-leg", dry_run=False, builderNames=[LEG])
    assert not matches("force-leg", dry_run=True, builderNames=[LEG])
    assert not matches("force-leg", dry_run=False)                     # no leg named: refused by the form
    assert not matches("force-leg", dry_run=False, builderNames=[GATE_BUILDER])   # not a leg: no builder
    assert not matches("no-such-scheduler", dry_run=False)


def test_builder_names_narrow_the_match():
    assert not matches("force-release-gate", dry_run=False, builderNames=[LEG])


def test_users_file_auth(tmp_path, monkeypatch):
    monkeypatch.setattr(users.hash_password, "__defaults__", (None, 1000))
    path = tmp_path / "users"
    users.set_user(path, "rel", "rel-password", ("releasers",))
    login = auth.build_auth(tmp_path)
    assert login.check_credentials(b"rel", b"rel-password")
    assert not login.check_credentials(b"rel", b"wrong")
    assert not login.check_credentials(b"nobody", b"rel-password")
    info = result_of(login.userInfoProvider.getUserInfo("rel"))
    assert info == {"email": "rel", "full_name": "rel", "groups": ["users", "releasers"]}
    assert result_of(login.userInfoProvider.getUserInfo("x"))["groups"] == ["users"]
    path.write_text("broken line\n")
    assert not login.check_credentials(b"rel", b"rel-password")      # a broken file lets nobody in


class AuthzTest(TestReactorMixin, unittest.TestCase):
    """The whole rule list, as Buildbot's www applies it, against real force schedulers."""

    @defer.inlineCallbacks
    def setUp(self):
        from matrixgate import loader, schedulers, settings
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self, wantData=True)
        cfg = settings.from_env(self.mktemp(), {"GATE_REPO_URL": "/nonexistent/repo.git"})
        matrix = loader.load_matrix(cfg.matrix_path)
        scheds = schedulers.build_schedulers(matrix, cfg)
        for sched in scheds:
            yield sched.reconfigServiceWithSibling(sched)
        self.master.allSchedulers = lambda: scheds
        self.authz = auth.build_authz()
        self.authz.setMaster(self.master)

    def allowed(self, schedulername, groups, **options):
        d = self.authz.assertUserAllowed(("forceschedulers", schedulername), "force", options,
                                         {"groups": groups})
        d.addCallbacks(lambda _: True, lambda f: f.trap(Forbidden) and False)
        return d

    @defer.inlineCallbacks
    def test_rules(self):
        cases = [
            ("force-release-gate", [], {"dry_run": True}, False),              # anonymous: nothing
            ("force-release-gate", ["users"], {"dry_run": True}, True),
            ("force-release-gate", ["users"], {"dry_run": False}, False),
            ("force-release-gate", ["users", "releasers"], {"dry_run": False}, True),
            ("force-release-publish", ["users"], {}, False),
            ("force-release-publish", ["users", "releasers"], {}, True),
            ("force-leg", ["users"], {"dry_run": False, "builderNames": [LEG]}, True),
            ("force-leg", [], {"dry_run": True, "builderNames": [LEG]}, False),
            ("force-leg", [], {"dry_run": True}, False),
        ]
        for schedulername, groups, options, expected in cases:
            got = yield self.allowed(schedulername, groups, **options)
            self.assertEqual(got, expected, (schedulername, groups, options))
