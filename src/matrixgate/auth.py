"""Who may do what, with Buildbot's own Authz.

* anyone who reaches the UI may view builds, logs and evidence;
* forcing, stopping and rebuilding need a login (users file, hashed passwords);
* a real (not dry) force of the gate or of publish needs the ``releasers`` role;
* everything else that changes state needs ``admins``.
"""

from __future__ import annotations

from pathlib import Path

from buildbot.www.auth import CustomAuth, UserInfoProviderBase
from buildbot.www.authz.authz import Authz
from buildbot.www.authz.endpointmatchers import (
    AnyControlEndpointMatcher, ForceBuildEndpointMatcher, RebuildBuildEndpointMatcher, StopBuildEndpointMatcher,
)
from buildbot.www.authz.roles import RolesFromGroups
from twisted.internet import defer

from . import users
from .gate import GATE_BUILDER
from .publish import PUBLISH_BUILDER


class UsersFileAuth(CustomAuth):
    """Login against the users file (re-read at each login)."""

    def __init__(self, path: Path, **kwargs):
        self.path = Path(path)
        super().__init__(userInfoProvider=UsersFileInfo(self.path), **kwargs)

    def check_credentials(self, username, password) -> bool:
        name = username.decode() if isinstance(username, bytes) else username
        secret = password.decode() if isinstance(password, bytes) else password
        try:
            user = users.load(self.path).get(name)
        except ValueError:
            return False
        return user is not None and users.check_password(secret, user.password_hash)


class UsersFileInfo(UserInfoProviderBase):
    name = "matrixgate-users"

    def __init__(self, path: Path):
        self.path = path

    def getUserInfo(self, username):
        user = users.load(self.path).get(username)
        groups = ["users", *(user.roles if user else ())]
        return defer.succeed({"email": username, "full_name": username, "groups": groups})


class RealReleaseForceMatcher(ForceBuildEndpointMatcher):
    """Matches forces of the gate or publish that are not dry runs."""

    def __init__(self, **kwargs):
        super().__init__(builder=None, **kwargs)

    @defer.inlineCallbacks
    def match_ForceSchedulerEndpoint_force(self, epobject, epdict, options):
        sched = yield epobject.findForceScheduler(epdict["schedulername"])
        if sched is None:
            return None
        names = yield sched.computeBuilderNames(options.get("builderNames"), options.get("builderid"))
        if not set(names) & {GATE_BUILDER, PUBLISH_BUILDER}:
            return None
        dry = options.get("dry_run", True if PUBLISH_BUILDER not in names else False)
        if PUBLISH_BUILDER in names or dry is not True:
            return (yield super().match_ForceSchedulerEndpoint_force(epobject, epdict, options))
        return None


def build_auth(secrets_dir: Path) -> UsersFileAuth:
    return UsersFileAuth(secrets_dir / users.FILE_NAME)


def build_authz() -> Authz:
    return Authz(
        allowRules=[
            RealReleaseForceMatcher(role="releasers"),
            ForceBuildEndpointMatcher(role="users"),
            # A rebuild of a gate replays its properties: a real one may publish.
            RebuildBuildEndpointMatcher(builder=GATE_BUILDER, role="releasers"),
            RebuildBuildEndpointMatcher(builder=PUBLISH_BUILDER, role="releasers"),
            StopBuildEndpointMatcher(role="users"),
            RebuildBuildEndpointMatcher(role="users"),
            AnyControlEndpointMatcher(role="admins"),
        ],
        roleMatchers=[RolesFromGroups(groupPrefix="")],
    )
