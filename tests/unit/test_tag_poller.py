"""The tag poller's git commands (src/matrixgate/schedulers.py ``TagPoller``), with Buildbot's
own change-source helpers: every git command a poll runs is expected, in order, and nothing
else may run.  A poll's cost must not grow with the number of tags that did not move."""

from __future__ import annotations

import os
import shutil
import tempfile

from buildbot.test.reactor import TestReactorMixin
from buildbot.test.runprocess import ExpectMasterShell, MasterRunProcessMixin
from buildbot.test.util import changesource
from buildbot.test.util.state import StateTestMixin
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate.schedulers import TagPoller

REPO = "/srv/git/platform.git"
TRACK = "refs/buildbot/%2Fsrv%2Fgit%2Fplatform.git/"     # Buildbot's tracking refs for REPO
MAIN, V1, V2, V3 = "a" * 40, "b" * 40, "c" * 40, "d" * 40
REFS = {"refs/heads/main": MAIN, "refs/tags/v1.0.0": V1, "refs/tags/v1.1.0": V2}


def ls_remote(refs: dict) -> bytes:
    return "".join(f"{rev}\t{ref}\n" for ref, rev in refs.items()).encode()


def for_each_ref(refs: dict) -> bytes:
    return "".join(f"{TRACK}{ref[len('refs/'):]} {rev}\n" for ref, rev in refs.items()).encode()


class TagPollerCommandsTest(MasterRunProcessMixin, changesource.ChangeSourceMixin, TestReactorMixin,
                            StateTestMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.setup_master_run_process()
        yield self.setUpChangeSource()
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        scratch = tempfile.mkdtemp(prefix="tagpoller-")        # not trial's mktemp: that writes under the cwd
        self.addCleanup(shutil.rmtree, scratch, True)
        self.workdir = os.path.join(scratch, "gitpoller-work")
        self.poller = yield self.attachChangeSource(TagPoller(
            repourl=REPO, branches=lambda ref: ref.startswith(("refs/heads/", "refs/tags/")),
            buildPushesWithNoCommits=True, workdir=self.workdir))
        self.poller.doPoll.running = True

    def ls_remote(self, refs: dict):
        return ExpectMasterShell(["git", "ls-remote", "--refs", REPO]).stdout(ls_remote(refs))

    def fetch(self, refs: dict):
        return [
            self.ls_remote(refs),
            ExpectMasterShell(["git", "fetch", "--progress", REPO,
                               *[f"+{ref}:{TRACK}{ref[len('refs/'):]}" for ref in refs], "--"])
            .workdir(self.workdir),
            ExpectMasterShell(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/buildbot/"])
            .workdir(self.workdir).stdout(for_each_ref(refs)),
        ]

    def commit_details(self, rev: str, person: bytes, files: bytes, subject: bytes):
        """What Buildbot's poller reads of each new commit, in its order."""
        return [ExpectMasterShell(["git", "log", *opts, rev, "--"]).workdir(self.workdir).stdout(out)
                for opts, out in ((["--no-walk", "--format=%ct"], b"1764806400\n"),
                                  (["--no-walk", "--format=%aN <%aE>"], person + b"\n"),
                                  (["--no-walk", "--format=%cN <%cE>"], person + b"\n"),
                                  (["--name-only", "--no-walk", "--format=%n", "-m", "--first-parent"],
                                   b"\n" + files + b"\n"),
                                  (["--no-walk", "--format=%s%n%b"], subject + b"\n"))]

    def first_parent_log(self, tip: str, excluded: list[str], out: bytes):
        """The poller's listing of the new commits on a moved or new ref."""
        return (ExpectMasterShell(["git", "log", "--ignore-missing", "--first-parent", "--format=%H", tip,
                                   *sorted(f"^{rev}" for rev in excluded), "--"])
                .workdir(self.workdir).stdout(out))

    def polled_before(self, refs: dict):
        """A master restarted on a poller that had seen ``refs``: its state and repository
        are there, git is known; this process has not fetched yet."""
        self.poller._git_checked = True
        self.repository_exists()
        return self.poller.setState("lastRev", refs)

    def repository_exists(self):
        os.makedirs(self.workdir, exist_ok=True)
        open(os.path.join(self.workdir, "HEAD"), "w").close()       # what `git init --bare` makes

    @defer.inlineCallbacks
    def poll(self, *commands):
        self.expect_commands(*commands)
        yield self.poller.poll()
        self.assert_all_commands_ran()

    @defer.inlineCallbacks
    def test_first_poll_checks_git_and_makes_the_repository_once(self):
        yield self.poll(
            ExpectMasterShell(["git", "--version"]).stdout(b"git version 2.39.5\n"),
            ExpectMasterShell(["git", "init", "--bare", self.workdir]),
            *self.fetch(REFS))
        # the first poll of a repository only records where every ref is (no rev-parse per ref)
        self.assertEqual((yield self.poller.getState("lastRev")), REFS)
        self.assertEqual(self.master.data.updates.changesAdded, [])
        self.repository_exists()
        yield self.poll(self.ls_remote(REFS))      # no --version, no init, nothing to fetch

    @defer.inlineCallbacks
    def test_an_idle_poll_is_one_ls_remote_however_many_tags(self):
        many = dict(REFS, **{f"refs/tags/v0.{i}.0": f"{i:040x}" for i in range(200)})
        yield self.polled_before(many)
        # a new process does not know what its repository holds: one fetch and listing
        yield self.poll(*self.fetch(many))
        # from then on, with nothing pushed: 1 command for 203 refs (Buildbot's poller: 410)
        yield self.poll(self.ls_remote(many))
        yield self.poll(self.ls_remote(many))
        self.assertEqual(self.master.data.updates.changesAdded, [])
        self.assertEqual((yield self.poller.getState("lastRev")), many)

    @defer.inlineCallbacks
    def test_a_new_tag_is_fetched_and_is_one_change_at_its_commit(self):
        yield self.polled_before(REFS)
        yield self.poll(*self.fetch(REFS))
        now = dict(REFS, **{"refs/tags/v1.2.0": V3})
        yield self.poll(
            *self.fetch(now),
            # only the new tag is looked at; its parent bounds the log to the tagged commit
            self.first_parent_log(V3, [MAIN, V1, V2, f"{V3}^"], f"{V3}\n".encode()),
            *self.commit_details(V3, b"Rel Eng <rel@example.com>", b"CHANGELOG", b"release 1.2.0"))
        [change] = self.master.data.updates.changesAdded
        self.assertEqual((change["branch"], change["revision"]), ("refs/tags/v1.2.0", V3))
        self.assertEqual((yield self.poller.getState("lastRev")), now)

    @defer.inlineCallbacks
    def test_a_moved_ref_is_fetched(self):
        """A branch that moved (or a tag moved by force): ls-remote differs, so it is fetched."""
        yield self.polled_before(REFS)
        yield self.poll(*self.fetch(REFS))
        moved = dict(REFS, **{"refs/heads/main": V3})
        yield self.poll(
            *self.fetch(moved),
            self.first_parent_log(V3, [MAIN, V1, V2], b""),
            *self.commit_details(V3, b"Dev <dev@example.com>", b"", b"work"))
        [change] = self.master.data.updates.changesAdded
        self.assertEqual((change["branch"], change["revision"]), ("main", V3))          # Buildbot names a branch without refs/heads/

    @defer.inlineCallbacks
    def test_a_repository_that_went_away_is_made_and_fetched_again(self):
        yield self.polled_before(REFS)
        yield self.poll(*self.fetch(REFS))
        os.remove(os.path.join(self.workdir, "HEAD"))
        yield self.poll(ExpectMasterShell(["git", "init", "--bare", self.workdir]), *self.fetch(REFS))

    @defer.inlineCallbacks
    def test_a_ref_the_listing_lacks_is_read_as_before(self):
        """If for-each-ref does not list a fetched ref, the stock rev-parse still reads it."""
        yield self.polled_before(REFS)
        ls, fetch, listing = self.fetch(REFS)
        listing.stdout(for_each_ref({"refs/heads/main": MAIN, "refs/tags/v1.0.0": V1}))
        yield self.poll(
            ls, fetch, listing,
            ExpectMasterShell(["git", "rev-parse", f"{TRACK}tags/v1.1.0"]).workdir(self.workdir)
            .stdout(f"{V2}\n".encode()))
        self.assertEqual(self.master.data.updates.changesAdded, [])
