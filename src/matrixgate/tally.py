"""The gate's verdict: which legs count, which block, and the summary people read.

Buildbot ranks SKIPPED above SUCCESS and a collapsed request ends SKIPPED, so its
``worst_status`` could pass a gate whose leg never ran.  Here only SUCCESS is green;
everything else, including "never ran", blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from buildbot.process.results import FAILURE, SUCCESS, WARNINGS, Results

GREEN = "green"
GREEN_WITH_SKIPS = "green-with-skips"
BLOCKED = "blocked"
DRY_RUN = "dry-run"
DRY_RUN_BLOCKED = "dry-run-blocked"


@dataclass
class LegOutcome:
    leg: str
    state: str = "pending"          # pending | running | done | reused | skipped | not-requested
    results: int | None = None      # Buildbot result of the leg's request
    worker: str | None = None
    buildid: int | None = None
    number: int | None = None
    builderid: int | None = None
    url: str | None = None
    started_at: float | None = None
    complete_at: float | None = None
    reason: str = ""                # why skipped / not run / failed without a build

    @property
    def counts(self) -> bool:
        """Does this leg take part in the verdict?"""
        return self.state not in ("skipped", "not-requested")

    @property
    def green(self) -> bool:
        return self.state in ("done", "reused") and self.results == SUCCESS and self.buildid is not None

    @property
    def result_name(self) -> str:
        if self.state in ("skipped", "not-requested", "pending", "running"):
            return self.state
        if self.state == "reused":
            return "success (reused)"
        if self.buildid is None:
            return "not-run"
        return Results[self.results] if self.results is not None else "unknown"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.complete_at:
            return self.complete_at - self.started_at
        return None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["result"] = self.result_name
        return data


@dataclass
class Tally:
    outcomes: list[LegOutcome] = field(default_factory=list)
    dry_run: bool = False

    def get(self, leg: str) -> LegOutcome:
        for outcome in self.outcomes:
            if outcome.leg == leg:
                return outcome
        raise KeyError(leg)

    @property
    def blocking(self) -> list[LegOutcome]:
        return [o for o in self.outcomes if o.counts and o.state in ("done",) and not o.green]

    @property
    def skipped(self) -> list[LegOutcome]:
        return [o for o in self.outcomes if o.state == "skipped"]

    @property
    def finished(self) -> bool:
        return all(o.state not in ("pending", "running") for o in self.outcomes)

    def verdict(self) -> str:
        counted = [o for o in self.outcomes if o.counts]
        if not counted or any(not o.green for o in counted):
            return DRY_RUN_BLOCKED if self.dry_run else BLOCKED
        if self.dry_run:
            return DRY_RUN
        return GREEN_WITH_SKIPS if self.skipped else GREEN

    def results(self) -> int:
        return {GREEN: SUCCESS, DRY_RUN: SUCCESS, GREEN_WITH_SKIPS: WARNINGS}.get(self.verdict(), FAILURE)


def blocked_text(outcome: LegOutcome) -> str:
    why = outcome.reason or outcome.result_name
    return f"{outcome.leg} ({why})"


def summary(tally: Tally, tag: str | None) -> str:
    """One line for the gate build: what blocks the release, as early as it is known."""
    subject = f"release {tag}" if tag else "gate"
    blocking = tally.blocking
    if blocking and not tally.finished:
        return f"{subject} BLOCKED by {', '.join(blocked_text(o) for o in blocking)}; other legs still running"
    if not tally.finished:
        done = sum(1 for o in tally.outcomes if o.counts and o.state in ("done", "reused"))
        total = sum(1 for o in tally.outcomes if o.counts)
        return f"{subject}: {done}/{total} legs done, none failed yet"
    verdict = tally.verdict()
    passed = sum(1 for o in tally.outcomes if o.green)
    total = sum(1 for o in tally.outcomes if o.counts)
    if verdict == GREEN:
        return f"{subject} GREEN: {passed}/{total} legs passed"
    if verdict == DRY_RUN:
        return f"dry run of {subject}: {total} legs planned, no test ran, nothing published"
    if verdict == GREEN_WITH_SKIPS:
        skipped = ", ".join(o.leg for o in tally.skipped)
        return (f"{subject} passed WITH SKIPPED plasma legs ({skipped}): "
                f"{tally.skipped[0].reason}")
    blockers = [o for o in tally.outcomes if o.counts and not o.green]
    if not blockers:
        return f"{subject} BLOCKED: no leg took part (all skipped or not requested)"
    prefix = "dry run of " if tally.dry_run else ""
    return f"{prefix}{subject} BLOCKED by {', '.join(blocked_text(o) for o in blockers)}"


def table(tally: Tally) -> str:
    """The final table of legs: result, worker, duration, link."""
    rows = [("leg", "result", "worker", "duration", "build")]
    for o in tally.outcomes:
        duration = f"{o.duration:.1f}s" if o.duration is not None else "-"
        result = o.result_name + (f": {o.reason}" if o.reason and not o.green else "")
        rows.append((o.leg, result, o.worker or "-", duration, o.url or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    return "\n".join(lines) + "\n"
