"""Schedulers and change sources: how a tag push, a trigger or a force becomes a build.

* ``release-tags``: one gate per pushed tag matching ``release.tags`` (never collapsed);
* ``leg-<name>``: a Triggerable per leg, so the gate picks exactly the legs it runs;
* ``publish``: the Triggerable only a green gate fires;
* ``force-release-gate``, ``force-release-publish`` and ``force-leg`` (one form for every
  leg, each force runs the leg it names): force forms with validated properties (see
  ``forcing``).
"""

from __future__ import annotations

import os

from buildbot.changes.filter import ChangeFilter
from buildbot.changes.gitpoller import GitPoller
from buildbot.schedulers.basic import AnyBranchScheduler
from buildbot.schedulers.forcesched import StringParameter
from buildbot.schedulers.triggerable import Triggerable
from buildbot.util.twisted import async_to_deferred
from twisted.internet import defer

from .forcing import MatrixForceScheduler, gate_params, leg_force_scheduler
from .gate import GATE_BUILDER, PUBLISH_SCHEDULER, leg_scheduler_name
from .model import Matrix
from .publish import PUBLISH_BUILDER
from .settings import Settings
from .tags import tag_of

GITPOLLER_WORKDIR = "gitpoller-work"


class TagPoller(GitPoller):
    """Buildbot's GitPoller, except that a pushed tag is one change, at the tagged commit,
    and that a poll costs a few git processes however many tags the repository has.

    The stock poller makes one change per commit it had not seen, on the ref that brought
    it in.  A tag pushed with commits no polled branch holds yet (a release branch not
    pushed, or tags sorting before the branch in the same poll) became one change -- so
    one gate -- per commit: pushing 12 tags on 12 new commits gave ``v3.10.0`` 9 gates.

    For a tag ref this counts every ancestor of the tagged commit as seen (``^<tag>^``),
    so ``git log`` lists the tagged commit alone, or nothing when a branch already brought
    it in (``buildPushesWithNoCommits`` then names it anyway).  A root commit has no
    parent: ``--ignore-missing`` drops that bound.

    The stock poll runs ``git --version``, ``git init``, ``ls-remote`` and ``fetch`` every
    time, then ``rev-parse`` and ``log`` for every ref: a release repository gains a tag per
    release, so its polls grow without bound (``bench/poll_cost.py``).  Here the version is
    checked once per process and ``init`` only makes a repository that is not there; the
    fetch is skipped when ``ls-remote`` shows every ref where this process last fetched it
    (the fetch would bring nothing), and one ``for-each-ref`` after a fetch reads every ref;
    ``log`` runs only for refs that moved (for one that did not, it lists nothing and no
    change is made: the same outcome).  An idle poll is one ``ls-remote``.
    """

    _BOUND = "matrixgate-tag-bound:"
    _git_checked = False
    _tracked: dict[str, str] | None = None   # tracking ref -> object, as this process last fetched
    _remote: dict[str, str] = {}              # ref -> object, from this poll's ls-remote (replaced, never changed)

    def poll(self):
        self._remote = {}
        return super().poll()

    def _checkGitFeatures(self):
        if self._git_checked:
            return defer.succeed(None)

        def checked(result):
            self._git_checked = True
            return result
        return super()._checkGitFeatures().addCallback(checked)

    @async_to_deferred
    async def _dovccmd(self, command, args, path=None, auth_files_path=None, initial_stdin=None):
        if command == "init":
            if os.path.isfile(os.path.join(self.workdir, "HEAD")):
                return ""
            self._tracked = None                  # a new repository tracks nothing yet
        if command == "rev-parse" and self._tracked is not None and len(args) == 1 and args[0] in self._tracked:
            return self._tracked[args[0]]
        if command == "fetch" and self._nothing_to_fetch(args):
            return ""
        out = await super()._dovccmd(command, args, path, auth_files_path, initial_stdin)
        if command == "ls-remote" and "--refs" in args:
            self._remote = dict(reversed(row.split("\t", 1)) for row in out.splitlines() if "\t" in row)
        elif command == "fetch":
            listed = await super()._dovccmd(
                "for-each-ref", ["--format=%(refname) %(objectname)", "refs/buildbot/"], path=self.workdir)
            self._tracked = dict(line.rsplit(" ", 1) for line in listed.splitlines() if " " in line)
        return out

    def _nothing_to_fetch(self, args) -> bool:
        """Every ``+<ref>:<tracking ref>`` of this fetch already points where ls-remote
        says the ref is."""
        if self._tracked is None:
            return False
        for spec in args:
            if spec.startswith("+"):
                ref, tracking = spec[1:].split(":", 1)
                if ref not in self._remote or self._tracked.get(tracking) != self._remote[ref]:
                    return False
        return True

    def _process_changes(self, newRev, branch):
        if self.lastRev and self.lastRev.get(branch) == newRev:
            return defer.succeed(None)   # did not move
        if not branch.startswith("refs/tags/") or not self.lastRev:
            return super()._process_changes(newRev, branch)
        bound = self._BOUND + branch
        self.lastRev[bound] = f"{newRev}^"

        def drop_bound(result):
            if self.lastRev is not None:
                self.lastRev.pop(bound, None)
            return result
        return super()._process_changes(newRev, branch).addBoth(drop_bound)


def release_tag_filter(matrix: Matrix) -> ChangeFilter:
    def is_release_tag(change) -> bool:
        tag = tag_of(change.branch, change.category)
        return tag is not None and matrix.release.matches(tag)
    return ChangeFilter(filter_fn=is_release_tag)


def build_schedulers(matrix: Matrix, settings: Settings) -> list:
    legs = matrix.enabled_legs
    built = [
        AnyBranchScheduler(
            name="release-tags", builderNames=[GATE_BUILDER], treeStableTimer=None,
            change_filter=release_tag_filter(matrix)),
        Triggerable(name=PUBLISH_SCHEDULER, builderNames=[PUBLISH_BUILDER]),
        MatrixForceScheduler(
            name="force-release-gate", builderNames=[GATE_BUILDER], repo_url=settings.repo_url,
            project=matrix.platform, need_target=True, properties=gate_params(),
            buttonName="Start gate", label="Run the release gate",
            reason=StringParameter(name="reason", label="Reason", default="forced gate", size=40)),
        MatrixForceScheduler(
            name="force-release-publish", builderNames=[PUBLISH_BUILDER], repo_url=settings.repo_url,
            project=matrix.platform, need_target=True, tag_required=True,
            buttonName="Publish", label="Publish a tag (releasers only; once per tag)",
            reason=StringParameter(name="reason", label="Reason", default="forced publish", size=40)),
    ]
    built += [Triggerable(name=leg_scheduler_name(leg.name), builderNames=[leg.name]) for leg in legs]
    if legs:  # one form for every leg (a form per leg cost ~2.2 s of start-up at 500 legs)
        built.append(leg_force_scheduler([leg.name for leg in legs], settings.repo_url, matrix.platform))
    return built


def build_change_sources(settings: Settings) -> list:
    """A GitPoller on the gated repository, watching tags *and* branches.

    Watching branches too is deliberate: a poller that watches only tags records nothing
    while a repository has no tag, and then ignores the first tag pushed (its state is
    empty, so every poll counts as the initial one).  Branch pushes are filtered out by
    the release-tags scheduler.
    """
    if not settings.repo_url or settings.poll_interval <= 0:
        return []
    return [TagPoller(
        repourl=settings.repo_url,
        branches=lambda ref: ref.startswith(("refs/heads/", "refs/tags/")),
        buildPushesWithNoCommits=True,
        pollInterval=settings.poll_interval,
        pollAtLaunch=True,
        workdir=GITPOLLER_WORKDIR,
        project="",
    )]
