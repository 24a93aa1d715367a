"""Force forms (src/matrixgate/forcing.py): strict checkboxes and the cross-checks that run
before any build request exists, against a real (temporary) git repository."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest
from buildbot.process.properties import Properties
from buildbot.schedulers.forcesched import ValidationError, ValidationErrorCollector
from twisted.internet import defer
from twisted.trial import unittest

from matrixgate import forcing, props

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.invalid", GIT_CONFIG_NOSYSTEM="1",
               HOME=tempfile.gettempdir())


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


# --- StrictBooleanParameter --------------------------------------------------------------

def strict(default=False):
    return forcing.StrictBooleanParameter("skip_plasma", label="Skip plasma legs", default=default)


@pytest.mark.parametrize("values, expected", [([True], True), ([False], False), (None, False), ([], False)])
def test_strict_boolean_accepts_json_booleans(values, expected):
    kwargs = {} if values is None else {"skip_plasma": values}
    assert strict().getFromKwargs(kwargs) is expected


def test_strict_boolean_default():
    assert strict(default=True).getFromKwargs({}) is True


@pytest.mark.parametrize("value", ["yes", "true", "1", "on", "", "false"])
def test_strict_boolean_refuses_strings(value):
    with pytest.raises(ValidationError) as info:
        strict().getFromKwargs({"skip_plasma": [value]})
    assert str(info.value) == f"Skip plasma legs: must be true or false (a JSON boolean), got {value!r}"


def test_strict_boolean_refuses_numbers():
    with pytest.raises(ValidationError):
        strict().getFromKwargs({"skip_plasma": [1]})


def test_gate_form_fields():
    names = [p.name for p in forcing.gate_params()]
    assert names == [props.DRY_RUN, props.SKIP_PLASMA, props.SKIP_REASON, props.PLASMA_E2E, props.RERUN_ALL]
    dry = forcing.gate_params()[0]
    assert isinstance(dry, forcing.StrictBooleanParameter) and dry.default is True   # dry by default


# --- MatrixForceScheduler.cross_check -------------------------------------------------------

class CrossCheckTest(unittest.TestCase):
    """cross_check asks the repository with `git ls-remote`: a real reactor, a real repo."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="matrixgate-forcing-")
        repo = cls.repo = os.path.join(cls.tmp.name, "platform")
        subprocess.run(["git", "init", "-q", "-b", "main", repo], env=GIT_ENV, check=True)
        git(repo, "commit", "-q", "--allow-empty", "-m", "first")
        cls.first = git(repo, "rev-parse", "HEAD")
        git(repo, "tag", "v1.0.0")                                   # lightweight
        git(repo, "commit", "-q", "--allow-empty", "-m", "second")
        cls.second = git(repo, "rev-parse", "HEAD")
        git(repo, "tag", "-a", "-m", "release 1.1", "v1.1.0")        # annotated
        cls.tag_object = git(repo, "rev-parse", "v1.1.0")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def scheduler(self, need_target=True):
        return forcing.MatrixForceScheduler(
            name="force-release-gate", builderNames=["release-gate"], repo_url=self.repo,
            project="platform", need_target=need_target, properties=forcing.gate_params())

    def check(self, source, need_target=True, **properties):
        p = Properties()
        for name, value in properties.items():
            p.setProperty(name, value, "Force Build Form")
        d = self.scheduler(need_target).cross_check(p, source)
        d.addCallback(lambda errors: (errors, p))
        return d

    @defer.inlineCallbacks
    def test_ok_path_resolves_the_tag(self):
        source = {"branch": "v1.0.0", "revision": "", "repository": self.repo}
        errors, p = yield self.check(source, dry_run=False)
        self.assertEqual(errors, {})
        self.assertEqual(source["branch"], "refs/tags/v1.0.0")
        self.assertEqual(source["revision"], self.first)
        self.assertEqual(p.getProperty(props.RELEASE_TAG), "v1.0.0")
        self.assertEqual(p.getProperty(props.GATE_REVISION), self.first)

    @defer.inlineCallbacks
    def test_annotated_tag_is_peeled_to_its_commit(self):
        self.assertNotEqual(self.tag_object, self.second)
        source = {"branch": "refs/tags/v1.1.0", "revision": self.second[:8].upper()}
        errors, p = yield self.check(source)
        self.assertEqual(errors, {})
        self.assertEqual(source, {"branch": "refs/tags/v1.1.0", "revision": self.second})
        self.assertEqual(p.getProperty(props.RELEASE_TAG), "v1.1.0")

    @defer.inlineCallbacks
    def test_skip_plasma_needs_a_reason(self):
        for reason in (None, "", "   "):
            extra = {} if reason is None else {props.SKIP_REASON: reason}
            errors, _ = yield self.check({"branch": "v1.0.0"}, skip_plasma=True, **extra)
            self.assertEqual(errors, {props.SKIP_REASON: "Skipping plasma legs needs a reason: say why, and until when"})
        errors, _ = yield self.check({"branch": "v1.0.0"}, skip_plasma=True, skip_reason="kvm-1 in repair until 12-08")
        self.assertEqual(errors, {})

    @defer.inlineCallbacks
    def test_non_hex_revision(self):
        errors, p = yield self.check({"branch": "", "revision": "HEAD~1; rm -rf /"})
        self.assertEqual(list(errors.values()), [
            "Revision 'head~1; rm -rf /' is not a commit id (7 to 64 hex digits)"])
        self.assertIsNone(p.getProperty(props.GATE_REVISION))
        errors, _ = yield self.check({"revision": "abc12"})                       # too short
        self.assertEqual(len(errors), 1)

    @defer.inlineCallbacks
    def test_missing_tag(self):
        errors, p = yield self.check({"branch": "v9.9.9", "revision": ""})
        self.assertEqual(list(errors.values()), [
            f"Tag 'v9.9.9' does not exist in {self.repo}: push it first, or check its name"])
        self.assertIsNone(p.getProperty(props.RELEASE_TAG))

    @defer.inlineCallbacks
    def test_tag_and_revision_mismatch(self):
        source = {"branch": "v1.0.0", "revision": self.second}
        errors, p = yield self.check(source)
        self.assertEqual(list(errors.values()), [
            f"Tag 'v1.0.0' points at {self.first[:12]}, not at {self.second}: give one of them"])
        self.assertEqual(source["branch"], "v1.0.0")               # untouched
        self.assertIsNone(p.getProperty(props.GATE_REVISION))

    @defer.inlineCallbacks
    def test_invalid_tag_name(self):
        errors, _ = yield self.check({"branch": "v1..0"})
        self.assertEqual(list(errors.values()), ["Tag 'v1..0' is not a valid tag name"])

    @defer.inlineCallbacks
    def test_unreachable_repository(self):
        sched = forcing.MatrixForceScheduler(
            name="f", builderNames=["release-gate"], repo_url=os.path.join(self.tmp.name, "nope"),
            project="platform")
        errors = yield sched.cross_check(Properties(), {"branch": "v1.0.0"})
        [message] = errors.values()
        self.assertTrue(message.startswith("Cannot check tag 'v1.0.0': git ls-remote "), message)

    @defer.inlineCallbacks
    def test_revision_only(self):
        source = {"branch": "", "revision": self.first[:10]}
        errors, p = yield self.check(source)
        self.assertEqual(errors, {})
        self.assertEqual(source, {"branch": None, "revision": self.first[:10]})
        self.assertEqual(p.getProperty(props.GATE_REVISION), self.first[:10])
        self.assertIsNone(p.getProperty(props.RELEASE_TAG))

    @defer.inlineCallbacks
    def test_neither_tag_nor_revision(self):
        errors, _ = yield self.check({"branch": " ", "revision": ""})
        self.assertEqual(list(errors.values()), ["Give a tag (e.g. v1.2.3) or a revision to build"])
        source = {"branch": "", "revision": ""}
        errors, _ = yield self.check(source, need_target=False)     # a leg may run at the latest commit
        self.assertEqual(errors, {})
        self.assertEqual(source, {})

    @defer.inlineCallbacks
    def test_the_whole_form(self):
        """Through ForceScheduler.gatherPropertiesAndChanges, as a force from the UI arrives."""
        sched = self.scheduler()
        yield sched.reconfigServiceWithSibling(sched)
        collector = ValidationErrorCollector()
        properties, _, sourcestamps = yield sched.gatherPropertiesAndChanges(
            collector, branch=["v1.1.0"], revision=[""], dry_run=[False], reason=["release"])
        self.assertEqual(collector.errors, {})
        self.assertEqual(sourcestamps[""]["branch"], "refs/tags/v1.1.0")
        self.assertEqual(sourcestamps[""]["revision"], self.second)
        self.assertEqual(sourcestamps[""]["repository"], self.repo)
        self.assertIs(properties.getProperty(props.DRY_RUN), False)
        self.assertEqual(properties.getProperty(props.RELEASE_TAG), "v1.1.0")
        # A string where a boolean belongs is refused field by field, before any cross-check.
        collector = ValidationErrorCollector()
        yield sched.gatherPropertiesAndChanges(collector, branch=["v1.1.0"], dry_run=["yes"], reason=["r"])
        self.assertEqual(collector.errors, {
            props.DRY_RUN: "Dry run: must be true or false (a JSON boolean), got 'yes'"})

    @defer.inlineCallbacks
    def field_names(self):
        sched = self.scheduler()
        yield sched.reconfigServiceWithSibling(sched)
        names = set()

        def walk(field):
            names.add(field.fullName)
            for child in getattr(field, "fields", None) or ():
                walk(child)
        for field in sched.all_fields:
            walk(field)
        return names

    @defer.inlineCallbacks
    def test_skip_reason_error_names_a_form_field(self):
        names = yield self.field_names()
        errors, _ = yield self.check({"branch": "v1.0.0"}, skip_plasma=True)
        self.assertLessEqual(set(errors), names)

    @defer.inlineCallbacks
    def test_tag_and_revision_errors_name_form_fields(self):
        # The web UI attaches each error to the field of that fullName and throws
        # ("Filed with name ... does not exist") for any other key: the message is lost.
        names = yield self.field_names()
        self.assertIn("branch", names)
        errors, _ = yield self.check({"branch": "v9.9.9", "revision": "zz"})
        self.assertLessEqual(set(errors), names)

