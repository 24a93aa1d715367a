"""Matrix Gate: a Buildbot master that gates every release on an integration matrix."""

__version__ = "0.1.0"
