"""Force builds from the web UI and the REST API, with properties validated up front.

Three forms: ``force-release-gate``, ``force-release-publish`` and ``force-leg`` (one form
for every leg; a force runs the one leg it names, see :class:`LegForceScheduler`).
Every check runs inside the force call, before any build request exists: a refused
force creates nothing.  Values typed by a user are only ever stored as properties and
shown in summaries; none is pasted into a shell command.
"""

from __future__ import annotations

from buildbot.schedulers.forcesched import (
    BooleanParameter, CodebaseParameter, CollectedValidationError, FixedParameter, ForceScheduler,
    StringParameter, ValidationError,
)
from twisted.internet import defer

from . import gitops, props
from .tags import HEX_RE, is_valid_tag_name, tag_of


class StrictBooleanParameter(BooleanParameter):
    """A checkbox that refuses anything but a JSON boolean (Buildbot reads "yes" as false)."""

    def getFromKwargs(self, kwargs):
        values = kwargs.get(self.fullName)
        if not values:
            return bool(self.default)
        if len(values) == 1 and type(values[0]) is bool:
            return values[0]
        raise ValidationError(f"{self.label}: must be true or false (a JSON boolean), got {values[0]!r}")


def dry_run_param() -> BooleanParameter:
    return StrictBooleanParameter(
        props.DRY_RUN, label="Dry run", default=True,
        tooltip="Print what would run (commands, env, timeouts, capabilities) and run no test. "
                "Untick for a real run: a real gate may publish and needs the releasers role.")


def gate_params() -> list:
    return [
        dry_run_param(),
        StrictBooleanParameter(
            props.SKIP_PLASMA, label="Skip plasma legs", default=False,
            tooltip="Temporary measure only: leave out the legs that need KVM and QEMU. The gate "
                    "then ends WARNINGS, never SUCCESS, and records the reason below."),
        StringParameter(
            props.SKIP_REASON, label="Reason for skipping plasma legs", default="", size=60, maxsize=500,
            tooltip="Required with 'Skip plasma legs'; shown verbatim in the gate's summary and evidence."),
        StrictBooleanParameter(
            props.PLASMA_E2E, label="Run the QEMU e2e leg", default=False,
            tooltip="Include plasmavmc-e2e (a VM started under KVM); otherwise it runs only for the "
                    "tags the matrix names."),
        StrictBooleanParameter(
            props.RERUN_ALL, label="Re-run every leg", default=False,
            tooltip="By default a gate reuses legs that already passed at the same revision."),
    ]


def codebase_param(repo_url: str, project: str, tag_required: bool = False) -> CodebaseParameter:
    return CodebaseParameter(
        "", label="What to build",
        branch=StringParameter(
            "branch", label="Tag", default="", size=30, maxsize=100, required=tag_required,
            tooltip="A tag of the gated repository, e.g. v1.2.3 (it must exist there)."),
        revision=StringParameter(
            "revision", label="Revision", default="", size=45, maxsize=64,
            tooltip="A full or abbreviated commit id (hex). With a tag, it must be the tag's commit."),
        repository=FixedParameter("repository", default=repo_url),
        project=FixedParameter("project", default=project),
    )


class MatrixForceScheduler(ForceScheduler):
    """A ForceScheduler that checks the tag/revision against the repository and the
    properties against each other (Buildbot validates only field by field)."""

    def __init__(self, name, builderNames, repo_url, project, need_target=False,
                 tag_required=False, properties=(), **kwargs):
        self.repo_url = repo_url
        self.need_target = need_target
        super().__init__(
            name=name, builderNames=builderNames,
            codebases=[codebase_param(repo_url, project, tag_required)],
            properties=list(properties), **kwargs)

    @defer.inlineCallbacks
    def computeBuilderNames(self, builderNames=None, builderid=None):
        """The builders a force names, only ever among this form's own.

        Buildbot's takes any ``builderid`` at its word: forcing ``force-release-gate`` with the
        id of a leg (or of publish) would build that builder with the gate's form.  An id that
        is not a number, or names no builder, gives none (the force is then refused)."""
        if builderNames is None and builderid is not None:
            number = str(builderid) if type(builderid) is int else builderid
            if isinstance(number, str) and number.isascii() and number.isdigit():
                builder = yield self.master.data.get(("builders", str(int(number))))
            else:
                builder = None
            builderNames = [builder["name"]] if builder else []
        names = yield super().computeBuilderNames(builderNames, None)
        return [name for name in names if name in self.builderNames]

    @defer.inlineCallbacks
    def force(self, owner, builderNames=None, builderid=None, **kwargs):
        """Buildbot's force, for exactly one of this form's builders (else refused, 400)."""
        names = yield self.computeBuilderNames(builderNames, builderid)
        if len(names) != 1:
            raise CollectedValidationError({"builderid": self.refusal(builderNames, builderid, names)})
        return (yield super().force(owner, builderNames=names, **kwargs))

    def refusal(self, builderNames, builderid, names) -> str:
        given = builderNames if builderNames is not None else f"builderid {builderid!r}"
        if not names:
            return f"{self.name} does not build {given}: it builds {', '.join(self.builderNames)}"
        return f"{self.name} builds one builder per force, got {len(names)}: {', '.join(names)}"

    @defer.inlineCallbacks
    def gatherPropertiesAndChanges(self, collector, **kwargs):
        properties, changeids, sourcestamps = yield super().gatherPropertiesAndChanges(collector, **kwargs)
        if collector.errors:
            return properties, changeids, sourcestamps
        errors = yield self.cross_check(properties, sourcestamps.get("", {}))
        collector.errors.update(errors)
        return properties, changeids, sourcestamps

    @defer.inlineCallbacks
    def cross_check(self, properties, source: dict):
        errors: dict[str, str] = {}
        if properties.getProperty(props.SKIP_PLASMA) and not (properties.getProperty(props.SKIP_REASON) or "").strip():
            errors[props.SKIP_REASON] = "Skipping plasma legs needs a reason: say why, and until when"
        tag = (source.get("branch") or "").strip()
        tag = tag_of(tag) or tag            # accept refs/tags/v1.2.3 as well as v1.2.3
        revision = (source.get("revision") or "").strip().lower()
        if revision and not HEX_RE.fullmatch(revision):
            errors["revision"] = f"Revision {revision!r} is not a commit id (7 to 64 hex digits)"
        if not tag and not revision:
            if self.need_target:
                errors["branch"] = "Give a tag (e.g. v1.2.3) or a revision to build"
            source.pop("branch", None)
            source.pop("revision", None)
            return errors
        if tag and not is_valid_tag_name(tag):
            errors["branch"] = f"Tag {tag!r} is not a valid tag name"
        if errors or not tag:
            if not errors:
                source["branch"] = None
                source["revision"] = revision
                properties.setProperty(props.GATE_REVISION, revision, "Force Build Form")
            return errors
        try:
            commit = yield gitops.resolve_tag(self.repo_url, tag)
        except gitops.GitError as exc:
            errors["branch"] = f"Cannot check tag {tag!r}: {exc}"
            return errors
        if commit is None:
            errors["branch"] = f"Tag {tag!r} does not exist in {self.repo_url}: push it first, or check its name"
        elif revision and not commit.startswith(revision):
            errors["revision"] = f"Tag {tag!r} points at {commit[:12]}, not at {revision}: give one of them"
        else:
            source["branch"] = f"refs/tags/{tag}"
            source["revision"] = commit
            properties.setProperty(props.RELEASE_TAG, tag, "Force Build Form")
            properties.setProperty(props.GATE_REVISION, commit, "Force Build Form")
        return errors


LEG_FORCE_SCHEDULER = "force-leg"


def leg_force_scheduler(leg_names: list[str], repo_url: str, project: str) -> "LegForceScheduler":
    return LegForceScheduler(
        name=LEG_FORCE_SCHEDULER, builderNames=list(leg_names), repo_url=repo_url, project=project,
        properties=[dry_run_param()], buttonName="Run leg", label="Run this leg",
        reason=StringParameter(name="reason", label="Reason", default="forced leg", size=40))


class LegForceScheduler(MatrixForceScheduler):
    """One force form for every leg; each force runs exactly one of them.

    A form per leg cost the master about 2.2 s of start-up at 500 legs.  Buildbot's web UI
    forces from a builder's page and sends that builder's id, so the form on a leg's page
    runs that leg only.  A force that names no leg would run every leg at once (Buildbot's
    default for a form without a builder): that is the gate's job, so it is refused, like a
    force that names a builder that is not an enabled leg, or several legs."""

    def refusal(self, builderNames, builderid, names) -> str:
        if builderNames is None and builderid is None:
            return (f"Name the leg to run: force from the leg's builder page, or give its builderid "
                    f"(or builderNames: [\"<leg>\"]). {self.name} runs one leg per force; to run "
                    "every leg, force the gate (force-release-gate).")
        if not names:
            given = builderNames if builderNames is not None else f"builderid {builderid!r}"
            return f"Not an enabled leg: {given}. {self.name} runs one enabled leg per force."
        return (f"One leg per force, got {len(names)} ({', '.join(names)}): force each leg on its own, "
                "or force the gate (force-release-gate) to run every leg.")
