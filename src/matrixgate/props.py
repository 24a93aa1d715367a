"""Names of the build properties Matrix Gate reads and sets, and how to read them.

Properties come from force forms, triggers and change hooks; reading them in one place
keeps a string "false" from ever counting as true.
"""

from __future__ import annotations

DRY_RUN = "dry_run"
SKIP_PLASMA = "skip_plasma"
SKIP_REASON = "skip_reason"
PLASMA_E2E = "plasma_e2e"
RERUN_ALL = "rerun_all"
RELEASE_TAG = "release_tag"            # the tag under gate, e.g. v1.2.3
GATE_REVISION = "gate_revision"        # the commit the tag resolves to
GATE_BUILDID = "gate_buildid"          # the gate build that triggered a leg
GATE_VERDICT = "gate_verdict"          # green | green-with-skips | blocked | dry-run
PROBED_CAPABILITIES = "probed_capabilities"
INFO_KEY = "matrixgate-capabilities"   # worker info/ file written by the probe


def flag(props, name: str) -> bool:
    """A boolean property: only a real True counts (a force form's "yes" string does not)."""
    value = props.getProperty(name, False)
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)


def is_dry_run(props) -> bool:
    return flag(props, DRY_RUN)


def hide_skipped(results, step) -> bool:
    from buildbot.process.results import SKIPPED
    return results == SKIPPED
