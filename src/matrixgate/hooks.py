"""Change hooks: GitHub and GitLab through Buildbot's dialects, plain git through ours.

Every dialect checks a secret from the secrets provider; a request without the right
one is refused (400) and creates no change.  ``SignedGitHook`` serves the shipped
``contrib/git/post-receive``: an HMAC-SHA256 of the body in ``X-Matrixgate-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qs

from buildbot.process.properties import Properties
from buildbot.www.hooks.base import BaseHookHandler
from twisted.internet import defer

from .tags import HEX_RE, is_valid_tag_name

MAX_BODY = 64 * 1024
ZERO_SHA = re.compile(r"^0+$")
SIGNATURE_HEADER = b"X-Matrixgate-Signature"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class SignedGitHook(BaseHookHandler):
    """Form fields ``ref``, ``newrev`` (and optional ``repository``), one push per request."""

    def __init__(self, master, options):
        super().__init__(master, options)
        self.options = options or {}

    @defer.inlineCallbacks
    def getChanges(self, request):
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise ValueError(f"payload larger than {MAX_BODY} bytes")
        properties = Properties()
        properties.master = self.master
        secret = yield properties.render(self.options.get("secret"))
        if not secret:
            raise ValueError("hook secret not configured on the master: refusing unsigned pushes")
        given = request.getHeader(SIGNATURE_HEADER) or b""
        given = given if isinstance(given, bytes) else given.encode("utf-8", "replace")
        if not hmac.compare_digest(given, signature(secret.encode(), body).encode()):
            raise ValueError("missing or wrong X-Matrixgate-Signature")
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"malformed payload: {exc}") from None
        ref = (fields.get("ref") or [""])[0]
        newrev = (fields.get("newrev") or [""])[0].lower()
        if not ref.startswith("refs/"):
            raise ValueError("payload needs ref=refs/...")
        if not HEX_RE.fullmatch(newrev):
            raise ValueError("payload needs newrev=<commit id>")
        if ZERO_SHA.fullmatch(newrev):
            return [], "git"  # a deleted ref: nothing to gate
        if ref.startswith("refs/tags/") and not is_valid_tag_name(ref[len("refs/tags/"):]):
            raise ValueError("invalid tag name")
        change = {
            "revision": newrev,
            "branch": ref,
            "repository": (fields.get("repository") or [self.options.get("repository", "")])[0],
            "project": self.options.get("project", ""),
            "author": (fields.get("pusher") or ["post-receive"])[0][:100],
            "comments": f"pushed {ref}",
            "category": "tag" if ref.startswith("refs/tags/") else "push",
            "files": [],
        }
        return [change], "git"
