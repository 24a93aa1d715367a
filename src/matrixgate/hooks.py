"""Change hooks: GitHub and GitLab through Buildbot's dialects, plain git through ours.

Every dialect checks a secret from the secrets provider; a request without the right
one is refused (400) and creates no change.  ``SignedGitHook`` serves the shipped
``contrib/git/post-receive``: an HMAC-SHA256 of the body in ``X-Matrixgate-Signature``.

Buildbot's own GitHub and GitLab handlers read the whole body whatever its size and answer
500 to well-signed JSON of the wrong shape (a ``KeyError`` deep inside); ``LimitedGitHubHandler``
and ``LimitedGitLabHandler`` refuse bodies over ``MAX_JSON_BODY`` and turn a malformed payload
into a 400, so every hostile request is refused with a 4xx and creates no change.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qs

from buildbot.process.properties import Properties
from buildbot.www.hooks.base import BaseHookHandler
from buildbot.www.hooks.github import GitHubHandler
from buildbot.www.hooks.gitlab import GitLabHandler
from twisted.internet import defer

from .tags import HEX_RE, is_valid_tag_name

MAX_BODY = 64 * 1024
#: GitHub caps its webhook payloads at 25 MB, but a tag or branch push is a few KiB: a push
#: of 20 commits (GitHub lists at most 20) stays far below 1 MiB.
MAX_JSON_BODY = 1024 * 1024
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


# --- GitHub and GitLab: Buildbot's handlers, bounded -------------------------------------------

#: What Buildbot's handlers raise on well-formed JSON of the wrong shape (a 500 otherwise).
MALFORMED = (KeyError, TypeError, AttributeError, IndexError)


def check_body_size(request, limit: int) -> None:
    """Refuse (400) a body over ``limit`` bytes before anything reads it into memory.

    Twisted has already spooled the body (to a temporary file when large); this bounds what
    the handler parses.  A proxy in front (``client_max_body_size``) stops it earlier."""
    content = request.content
    if content is None:
        return
    content.seek(0, 2)
    size = content.tell()
    content.seek(0)
    if size > limit:
        raise ValueError(f"payload of {size} bytes is larger than the limit of {limit} bytes")


@defer.inlineCallbacks
def require_secret(master, secret, dialect: str):
    """A missing secret is the master's misconfiguration: refuse clearly (not a 500)."""
    properties = Properties()
    properties.master = master
    try:
        value = yield properties.render(secret)
    except KeyError:
        value = None
    if not value:
        raise ValueError(f"{dialect} webhook secret not configured on the master: refusing the request")


class _Bounded:
    dialect = ""
    max_body = MAX_JSON_BODY

    @defer.inlineCallbacks
    def getChanges(self, request):
        check_body_size(request, self.max_body)
        yield require_secret(self.master, (self.options or {}).get("secret"), self.dialect)
        try:
            result = yield super().getChanges(request)
        except MALFORMED as exc:
            raise ValueError(f"malformed {self.dialect} payload ({type(exc).__name__}: {exc})") from None
        return result


class LimitedGitHubHandler(_Bounded, GitHubHandler):
    """``change_hook_dialects['github']`` with ``custom_class``: Buildbot's handler, bounded."""

    dialect = "github"


class LimitedGitLabHandler(_Bounded, GitLabHandler):
    """``change_hook_dialects['gitlab']`` with ``custom_class``: Buildbot's handler, bounded.

    A tag push is exactly one change, at the tagged commit (``checkout_sha``: annotated
    tags peeled; else ``after``).  Buildbot 4.3 makes one change per commit the event
    lists: none for a tag on a commit GitLab already had (the usual release tag: it made
    no change at all, buildbot/buildbot#2893), several for a tag pushed with new commits
    (several gates of one tag)."""

    dialect = "gitlab"

    def _process_change(self, payload, user, repo, repo_url, event, codebase=None):
        changes = super()._process_change(payload, user, repo, repo_url, event, codebase=codebase)
        ref = payload.get("ref")
        if event != "tag_push" or not isinstance(ref, str) or not ref.startswith("refs/tags/"):
            return changes
        sha = payload.get("checkout_sha") or payload.get("after")
        if not isinstance(sha, str) or not HEX_RE.fullmatch(sha) or ZERO_SHA.fullmatch(sha):
            return []  # a deleted tag
        same = [c for c in changes if c.get("revision") == sha]
        if same:
            return same[-1:]
        tag = ref[len("refs/tags/"):]
        change = {"author": str(user), "files": [], "comments": f"tag {tag} pushed", "revision": sha,
                  "branch": tag, "repository": repo_url, "project": payload["repository"]["name"],
                  "category": event, "properties": {"event": event}}
        if codebase is not None:
            change["codebase"] = codebase
        return [change]
