"""The signed git hook (src/matrixgate/hooks.py) behind contrib/git/post-receive."""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace
from unittest import mock
from urllib.parse import urlencode

import pytest
from buildbot.process.properties import Secret
from buildbot.test.fake import fakemaster
from buildbot.test.fake.web import FakeRequest
from buildbot.test.reactor import TestReactorMixin
from buildbot.www.change_hook import ChangeHookResource
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial import unittest

from matrixgate import hooks
from matrixgate.hooks import SignedGitHook, signature

SECRET = "hook-secret-0123456789"
SHA = "0123456789abcdef0123456789abcdef01234567"


class Request:
    """Just what getChanges reads from a twisted.web request."""

    def __init__(self, body: bytes, signature_value: str | None = None):
        self.content = BytesIO(body)
        self.headers = {} if signature_value is None else {hooks.SIGNATURE_HEADER: signature_value.encode()}

    def getHeader(self, name):
        return self.headers.get(name)


def body(**fields) -> bytes:
    return urlencode(fields).encode()


def signed(data: bytes, secret: str = SECRET) -> Request:
    return Request(data, signature(secret.encode(), data))


def result_of(d: defer.Deferred):
    """The result of a Deferred that fired synchronously (re-raising its failure)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def changes(request, **options):
    options.setdefault("secret", SECRET)
    handler = SignedGitHook(SimpleNamespace(name="fake master"), options)
    return result_of(handler.getChanges(request))


def test_signature_format():
    assert signature(b"k", b"body") == "sha256=" + __import__("hmac").new(b"k", b"body", "sha256").hexdigest()


def test_valid_signature_tag_push():
    data = body(ref="refs/tags/v1", newrev=SHA.upper(), pusher="alice")
    got, src = changes(signed(data), repository="https://git.example.org/p.git", project="platform")
    assert src == "git"
    assert got == [{
        "revision": SHA, "branch": "refs/tags/v1", "repository": "https://git.example.org/p.git",
        "project": "platform", "author": "alice", "comments": "pushed refs/tags/v1", "category": "tag",
        "files": [],
    }]


def test_branch_push_is_a_push_change():
    data = body(ref="refs/heads/main", newrev=SHA, repository="/srv/git/p.git")
    [change], _ = changes(signed(data))
    assert (change["branch"], change["category"], change["repository"], change["author"]) == (
        "refs/heads/main", "push", "/srv/git/p.git", "post-receive")


@pytest.mark.parametrize("request_", [
    Request(body(ref="refs/tags/v1", newrev=SHA)),                                        # unsigned
    Request(body(ref="refs/tags/v1", newrev=SHA), "sha256=" + "0" * 64),                  # wrong
    signed(body(ref="refs/tags/v1", newrev=SHA), secret="another-secret"),               # wrong key
    Request(body(ref="refs/tags/v1", newrev=SHA),
            signature(SECRET.encode(), body(ref="refs/tags/v2", newrev=SHA))),            # other body
], ids=["missing", "garbage", "wrong-secret", "replayed"])
def test_wrong_or_missing_signature(request_):
    with pytest.raises(ValueError, match="missing or wrong X-Matrixgate-Signature"):
        changes(request_)


def test_non_ascii_signature_is_refused():
    with pytest.raises(ValueError):
        changes(Request(body(ref="refs/tags/v1", newrev=SHA), "sha256=\u00e9"))


def test_no_secret_configured_refuses_everything():
    data = body(ref="refs/tags/v1", newrev=SHA)
    for secret in (None, ""):
        with pytest.raises(ValueError, match="hook secret not configured"):
            changes(signed(data, "x"), secret=secret)


def test_oversized_body():
    data = b"ref=refs/tags/v1&newrev=" + SHA.encode() + b"&pad=" + b"x" * hooks.MAX_BODY
    with pytest.raises(ValueError, match=f"payload larger than {hooks.MAX_BODY} bytes"):
        changes(signed(data))


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe", "malformed payload"),
    (b"no-equals-sign", "malformed payload"),
    (b"&".join([b"a=1"] * 11), "malformed payload"),                  # more than 10 fields
    (body(ref="v1", newrev=SHA), "payload needs ref=refs/..."),
    (body(newrev=SHA), "payload needs ref=refs/..."),
    (body(ref="refs/tags/v1", newrev="not-a-sha"), "payload needs newrev=<commit id>"),
    (body(ref="refs/tags/v1"), "payload needs newrev=<commit id>"),
    (body(ref="refs/tags/v1..2", newrev=SHA), "invalid tag name"),
    (body(ref="refs/tags/$(id)", newrev=SHA), "invalid tag name"),
])
def test_malformed_body(data, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        changes(signed(data))


def test_deleted_ref_creates_no_change():
    data = body(ref="refs/tags/v1", newrev="0" * 40)
    assert changes(signed(data)) == ([], "git")


def test_author_is_truncated():
    [change], _ = changes(signed(body(ref="refs/tags/v1", newrev=SHA, pusher="p" * 500)))
    assert change["author"] == "p" * 100


class ChangeHookResourceTest(TestReactorMixin, unittest.TestCase):
    """Through Buildbot's own change hook resource, with the secret from a secrets provider."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self, wantData=True,
                                                   with_secrets={"git-hook-secret": SECRET})
        self.master.www = mock.Mock()
        self.resource = ChangeHookResource(dialects={"git": {
            "custom_class": SignedGitHook, "secret": Secret("git-hook-secret"),
            "repository": "https://git.example.org/p.git"}}, master=self.master)

    def post(self, data: bytes, sig: str | None):
        request = FakeRequest(content=data)
        request.uri = b"/change_hook/git"
        request.method = b"POST"
        if sig is not None:
            request.received_headers[hooks.SIGNATURE_HEADER] = sig.encode()
        return request

    @defer.inlineCallbacks
    def test_signed_tag_becomes_a_change(self):
        data = body(ref="refs/tags/v1.2.3", newrev=SHA)
        request = self.post(data, signature(SECRET.encode(), data))
        yield request.test_render(self.resource)
        request.setResponseCode.assert_called_with(202)
        added = self.master.data.updates.changesAdded
        self.assertEqual(len(added), 1)
        self.assertEqual((added[0]["branch"], added[0]["category"], added[0]["revision"]),
                         ("refs/tags/v1.2.3", "tag", SHA))
        self.assertEqual(added[0]["repository"], "https://git.example.org/p.git")

    @defer.inlineCallbacks
    def test_bad_signature_is_400_and_no_change(self):
        data = body(ref="refs/tags/v1.2.3", newrev=SHA)
        request = self.post(data, signature(b"guess", data))
        yield request.test_render(self.resource)
        request.setResponseCode.assert_called_with(400, b"missing or wrong X-Matrixgate-Signature")
        self.assertEqual(self.master.data.updates.changesAdded, [])
