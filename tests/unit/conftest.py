"""Unit-test set-up shared by the files in tests/unit.

Several tests use Buildbot's own test helpers (``buildbot.test``: fakes, the step harness).
Importing that package installs the warning policy of Buildbot's *own* suite: every warning
becomes an error, for the rest of the process.  Buildbot 4.3 itself trips it on this stack
(``buildbot.util.ssl`` imports a name Twisted 26 deprecates; the fake master's alembic set-up
warns), so whether a test module collects or a fake-master test passes would depend on which
module happened to import ``buildbot.test`` first, or on ``-p no:warnings``.

Importing it here, once and before any test module, inside ``catch_warnings`` keeps its patches
(``monkeypatches.patch_all(for_tests=True)``) and drops the filter change: warnings stay
pytest's business.
"""

import warnings

with warnings.catch_warnings():
    import buildbot.test  # noqa: F401
