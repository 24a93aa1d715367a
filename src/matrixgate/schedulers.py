"""Schedulers and change sources: how a tag push, a trigger or a force becomes a build.

* ``release-tags``: one gate per pushed tag matching ``release.tags`` (never collapsed);
* ``leg-<name>``: a Triggerable per leg, so the gate picks exactly the legs it runs;
* ``publish``: the Triggerable only a green gate fires;
* ``force-release-gate``, ``force-release-publish`` and ``force-leg`` (one form for every
  leg, each force runs the leg it names): force forms with validated properties (see
  ``forcing``).
"""

from __future__ import annotations

from buildbot.changes.filter import ChangeFilter
from buildbot.changes.gitpoller import GitPoller
from buildbot.schedulers.basic import AnyBranchScheduler
from buildbot.schedulers.forcesched import StringParameter
from buildbot.schedulers.triggerable import Triggerable

from .forcing import MatrixForceScheduler, gate_params, leg_force_scheduler
from .gate import GATE_BUILDER, PUBLISH_SCHEDULER, leg_scheduler_name
from .model import Matrix
from .publish import PUBLISH_BUILDER
from .settings import Settings
from .tags import tag_of

GITPOLLER_WORKDIR = "gitpoller-work"


class TagPoller(GitPoller):
    """Buildbot's GitPoller, except that a pushed tag is one change, at the tagged commit.

    The stock poller makes one change per commit it had not seen, on the ref that brought
    it in.  A tag pushed with commits no polled branch holds yet (a release branch not
    pushed, or tags sorting before the branch in the same poll) became one change -- so
    one gate -- per commit: pushing 12 tags on 12 new commits gave ``v3.10.0`` 9 gates.

    For a tag ref this counts every ancestor of the tagged commit as seen (``^<tag>^``),
    so ``git log`` lists the tagged commit alone, or nothing when a branch already brought
    it in (``buildPushesWithNoCommits`` then names it anyway).  A root commit has no
    parent: ``--ignore-missing`` drops that bound.
    """

    _BOUND = "matrixgate-tag-bound:"

    def _process_changes(self, newRev, branch):
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
