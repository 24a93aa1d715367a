"""The bounded GitHub and GitLab dialects (hooks.LimitedGitHubHandler / LimitedGitLabHandler).

Each case runs through Buildbot's own change hook resource twice: with Buildbot's plain
handler (what a stock master answers) and with Matrix Gate's ``custom_class``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from types import SimpleNamespace
from unittest import mock

from buildbot.process.properties import Secret
from buildbot.test.fake import fakemaster
from buildbot.test.fake.web import FakeRequest
from buildbot.test.reactor import TestReactorMixin
from buildbot.www.change_hook import ChangeHookResource
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import web
from matrixgate.hooks import MAX_JSON_BODY, LimitedGitHubHandler, LimitedGitLabHandler, SignedGitHook
from matrixgate.settings import Settings

GITHUB = "github-secret-0123"
GITLAB = "gitlab-secret-0123"
SHA = "0123456789abcdef0123456789abcdef01234567"


def github_push(**overrides) -> bytes:
    payload = {"ref": "refs/tags/v1.0.0", "before": "0" * 40, "after": SHA, "created": True, "deleted": False,
               "repository": {"name": "p", "full_name": "e/p", "html_url": "https://example.invalid/p"},
               "head_commit": {"id": SHA, "message": "m", "timestamp": "2026-12-04T10:00:00+00:00",
                               "url": "u", "author": {"name": "a", "email": "a@x"},
                               "committer": {"name": "a", "email": "a@x"}, "added": [], "removed": [],
                               "modified": []},
               "commits": []}
    payload.update(overrides)
    return json.dumps(payload).encode()


def gitlab_push(**overrides) -> bytes:
    payload = {"object_kind": "tag_push", "before": "0" * 40, "after": SHA, "ref": "refs/tags/v1.0.0",
               "user_name": "dev", "project": {"path_with_namespace": "e/p"},
               "repository": {"name": "p", "url": "https://example.invalid/p.git", "homepage": "h"},
               "commits": []}
    payload.update(overrides)
    return json.dumps(payload).encode()


class BoundedDialectsTest(TestReactorMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(
            self, wantData=True, with_secrets={"github-webhook-secret": GITHUB, "gitlab-webhook-secret": GITLAB})
        self.master.www = mock.Mock()

    def resource(self, bounded: bool, **extra):
        github = {"secret": Secret("github-webhook-secret"), "strict": True}
        gitlab = {"secret": Secret("gitlab-webhook-secret")}
        if bounded:
            github["custom_class"] = LimitedGitHubHandler
            gitlab["custom_class"] = LimitedGitLabHandler
        dialects = {"github": github, "gitlab": gitlab}
        for name, options in extra.items():
            dialects[name].update(options)
        return ChangeHookResource(dialects=dialects, master=self.master)

    @defer.inlineCallbacks
    def post(self, resource, dialect: str, data: bytes, secret: str | None = None):
        request = FakeRequest(content=data)
        request.uri = f"/change_hook/{dialect}".encode()
        request.method = b"POST"
        request.received_headers[b"Content-Type"] = b"application/json"
        if dialect == "github":
            request.received_headers[b"X-GitHub-Event"] = b"push"
            mac = hmac.new((secret or GITHUB).encode(), data, hashlib.sha1).hexdigest()
            request.received_headers[b"X-Hub-Signature"] = f"sha1={mac}".encode()
        else:
            request.received_headers[b"X-Gitlab-Event"] = b"Tag Push Hook"
            request.received_headers[b"X-Gitlab-Token"] = (secret or GITLAB).encode()
        yield request.test_render(resource)
        return request.setResponseCode.call_args[0]

    @defer.inlineCallbacks
    def test_valid_pushes_still_become_changes(self):
        resource = self.resource(bounded=True)
        self.assertEqual((yield self.post(resource, "github", github_push()))[0], 202)
        self.assertEqual((yield self.post(resource, "gitlab", gitlab_push()))[0], 202)
        branches = [(c["branch"], c["category"], c["revision"]) for c in self.master.data.updates.changesAdded]
        self.assertEqual(branches, [("v1.0.0", "tag", SHA), ("v1.0.0", "tag_push", SHA)])

    @defer.inlineCallbacks
    def test_gitlab_tag_push_without_commits_is_a_change_here_and_nothing_upstream(self):
        # GitLab lists no commits when the tagged commit was pushed before (the usual case)
        data = gitlab_push(after="f" * 40, checkout_sha=SHA)
        self.assertEqual((yield self.post(self.resource(bounded=False), "gitlab", data))[0], 202)
        self.assertEqual(self.master.data.updates.changesAdded, [])          # Buildbot 4.3: no change
        self.assertEqual((yield self.post(self.resource(bounded=True), "gitlab", data))[0], 202)
        [change] = self.master.data.updates.changesAdded
        self.assertEqual((change["branch"], change["category"], change["revision"]), ("v1.0.0", "tag_push", SHA))
        # a tag pushed with new commits is still one change, at the tagged commit
        commit = {"timestamp": "2026-12-04T10:00:00+00:00", "author": {"name": "a", "email": "a@x"},
                  "message": "m", "url": "u"}
        data = gitlab_push(after=SHA, checkout_sha=SHA,
                           commits=[dict(commit, id="e" * 40), dict(commit, id=SHA)])
        self.assertEqual((yield self.post(self.resource(bounded=False), "gitlab", data))[0], 202)
        self.assertEqual(len(self.master.data.updates.changesAdded), 3)       # Buildbot 4.3: one per commit
        self.assertEqual((yield self.post(self.resource(bounded=True), "gitlab", data))[0], 202)
        self.assertEqual([c["revision"] for c in self.master.data.updates.changesAdded[3:]], [SHA])
        del self.master.data.updates.changesAdded[1:]
        # a deleted tag still makes none
        deleted = gitlab_push(after="0" * 40, checkout_sha=None)
        self.assertEqual((yield self.post(self.resource(bounded=True), "gitlab", deleted))[0], 202)
        self.assertEqual(len(self.master.data.updates.changesAdded), 1)

    @defer.inlineCallbacks
    def test_wrong_shape_is_500_upstream_and_400_here(self):
        cases = [("github", json.dumps({"ref": "refs/tags/v1"}).encode()),      # no repository
                 ("github", b"[1, 2]"),
                 ("github", github_push(repository="not a mapping")),
                 ("gitlab", json.dumps({"object_kind": "push"}).encode()),      # no user_name
                 ("gitlab", b"[]"),
                 ("gitlab", gitlab_push(commits=7))]
        for dialect, data in cases:
            stock = yield self.post(self.resource(bounded=False), dialect, data)
            self.assertEqual(stock[0], 500, (dialect, data))           # Buildbot 4.3 as shipped
            ours = yield self.post(self.resource(bounded=True), dialect, data)
            self.assertEqual(ours[0], 400, (dialect, data))
            self.assertIn(f"malformed {dialect} payload".encode(), ours[1])
        self.assertEqual(self.master.data.updates.changesAdded, [])
        self.flushLoggedErrors(KeyError, TypeError, AttributeError)   # the stock handler's 500s

    @defer.inlineCallbacks
    def test_oversized_bodies_are_refused_before_parsing(self):
        big_github = github_push(padding="x" * MAX_JSON_BODY)
        big_gitlab = gitlab_push(padding="x" * MAX_JSON_BODY)
        # a stock master parses them whole (and accepts them)
        self.assertEqual((yield self.post(self.resource(bounded=False), "github", big_github))[0], 202)
        stock_changes = len(self.master.data.updates.changesAdded)
        for dialect, data in (("github", big_github), ("gitlab", big_gitlab)):
            code, message = yield self.post(self.resource(bounded=True), dialect, data)
            self.assertEqual(code, 400)
            self.assertIn(b"larger than the limit", message)
        self.assertEqual(len(self.master.data.updates.changesAdded), stock_changes)
        # just under the limit still passes
        fits = github_push(padding="x" * (MAX_JSON_BODY - len(github_push(padding="")) - 10))
        self.assertEqual((yield self.post(self.resource(bounded=True), "github", fits))[0], 202)

    @defer.inlineCallbacks
    def test_missing_secret_is_a_clear_400(self):
        resource = self.resource(bounded=True, gitlab={"secret": Secret("no-such-secret")})
        code, message = yield self.post(resource, "gitlab", gitlab_push())
        self.assertEqual(code, 400)
        self.assertIn(b"gitlab webhook secret not configured", message)

    @defer.inlineCallbacks
    def test_wrong_secret_is_still_refused(self):
        for dialect in ("github", "gitlab"):
            code, _ = yield self.post(self.resource(bounded=True), dialect,
                                      github_push() if dialect == "github" else gitlab_push(), secret="wrong")
            self.assertEqual(code, 400)
        self.assertEqual(self.master.data.updates.changesAdded, [])


def test_web_config_uses_the_bounded_classes(tmp_path):
    """The config names functions that import the handlers on the first hook (not at start-up);
    what Buildbot's change hook resource gets from ``custom_class(master, options)``:"""
    dialects = web.change_hook_dialects(Settings(basedir=tmp_path, repo_url="/srv/p.git"))
    master = SimpleNamespace(name="fake master")
    github = dialects["github"]["custom_class"](master, dialects["github"])
    assert type(github) is LimitedGitHubHandler and dialects["github"]["strict"] is True
    assert github.master is master
    assert type(dialects["gitlab"]["custom_class"](master, dialects["gitlab"])) is LimitedGitLabHandler
    git = dialects["git"]["custom_class"](master, dialects["git"])
    assert type(git) is SignedGitHook and git.options["repository"] == "/srv/p.git"
