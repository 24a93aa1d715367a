"""The matrix and its workers as plain, immutable data.

Everything here is already validated (see ``loader``): the rest of Matrix Gate can trust
these objects and never re-checks YAML.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field

#: Capabilities a leg may require and a worker may declare (and the probe may confirm).
CAPABILITIES = ("kvm", "nested_virt", "qemu")
#: Requiring any of these makes a leg a "plasma leg": it needs a VM-capable host.
PLASMA_CAPABILITIES = frozenset({"kvm", "nested_virt", "qemu"})


@dataclass(frozen=True)
class SecretRef:
    """An env value taken from Buildbot's secrets provider, never written in the matrix."""

    name: str


@dataclass(frozen=True)
class Command:
    name: str
    run: str                      # a shell command line, as the maintainers would type it
    timeout: int | None = None    # seconds without output; None = the leg's timeout


@dataclass(frozen=True)
class Leg:
    name: str
    components: tuple[str, str]
    covers: str
    commands: tuple[Command, ...]
    requires: frozenset[str] = frozenset()
    env: dict[str, str | SecretRef] = field(default_factory=dict)
    timeout: int = 1800
    artifacts: tuple[str, ...] = ()
    enabled: bool = True
    #: Runs only when asked for (the ``plasma_e2e`` property) or for tags in ``run_for_tags``.
    on_request: bool = False
    run_for_tags: tuple[str, ...] = ()
    #: Seconds a request may wait for a capable worker before the leg fails with the reason.
    wait_for_worker: float = 1800.0
    #: Builds a request may take when workers are lost mid-leg (Buildbot retries on RETRY).
    max_attempts: int = 2
    #: The VM smoke step may fall back to TCG (software emulation) where KVM is missing.
    allow_tcg: bool = False

    @property
    def is_plasma(self) -> bool:
        return bool(self.requires & PLASMA_CAPABILITIES)

    @property
    def description(self) -> str:
        needs = ", ".join(sorted(self.requires)) or "any worker"
        return f"{self.components[0]} → {self.components[1]}: {self.covers} (needs: {needs})"

    @property
    def fingerprint(self) -> str:
        """A digest of what the leg runs: a passed build is reused only if this is unchanged."""
        what = repr((sorted(self.requires), self.commands, sorted(self.env.items(), key=lambda kv: kv[0]),
                     self.timeout, self.artifacts, self.allow_tcg))
        return hashlib.sha256(what.encode()).hexdigest()[:16]

    def requested_for_tag(self, tag: str | None) -> bool:
        return bool(tag) and any(fnmatch.fnmatchcase(tag, p) for p in self.run_for_tags)


@dataclass(frozen=True)
class Release:
    tags: str = "v*"
    publish: tuple[Command, ...] = ()
    #: May a release go out while plasma legs were skipped (``skip_plasma``)?  Default: never.
    allow_skip_plasma: bool = False

    def matches(self, tag: str) -> bool:
        return fnmatch.fnmatchcase(tag, self.tags)


@dataclass(frozen=True)
class Matrix:
    source: str
    platform: str
    legs: tuple[Leg, ...]
    release: Release

    @property
    def enabled_legs(self) -> tuple[Leg, ...]:
        return tuple(leg for leg in self.legs if leg.enabled)

    def leg(self, name: str) -> Leg:
        for leg in self.legs:
            if leg.name == name:
                return leg
        raise KeyError(name)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    properties: dict[str, object]
    max_builds: int | None = 1
    #: A local worker runs inside the master process (the embedded default).
    local: bool = False
    #: The secret holding this worker's password (secrets directory or environment).
    password_secret: str = ""

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(c for c in CAPABILITIES if self.properties.get(c) is True)

    def declares(self, required: frozenset[str]) -> bool:
        return required <= self.capabilities


@dataclass(frozen=True)
class WorkerSet:
    source: str
    workers: tuple[WorkerSpec, ...]

    def capable_of(self, leg: Leg) -> tuple[WorkerSpec, ...]:
        return tuple(w for w in self.workers if w.declares(leg.requires))
