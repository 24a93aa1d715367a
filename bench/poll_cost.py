#!/usr/bin/env python3
"""Polling cost: what one poll of the gated repository costs as its tags accumulate.

A release repository gains a tag per release, and the master polls it all day (every
60 s by default).  For each tag count, side by side in one run:

* Matrix Gate: this repository's ``master.cfg`` (its ``TagPoller``);
* plain Buildbot: the benchmarks' minimal ``master.cfg`` with Buildbot's own ``GitPoller``
  set up the same way (tags and branches, ``buildPushesWithNoCommits``, poll at launch).

Both poll every ``--interval`` s; after the first poll has recorded every ref, nothing is
pushed, so every poll measured is the idle poll a master makes all day.  Figures per poll:
CPU seconds of the master and the git processes it ran (``/proc/<pid>/stat``: utime,
stime, cutime, cstime), and the polls counted from the masters' own log lines.

Prints a table; asserts nothing.

    /tmp/venv/bin/python bench/poll_cost.py [--quick] [--tags 10,300,1000] [--window 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402

POLL_LINE = "gitpoller: processing changes from"


def cpu_seconds(pid: int) -> float:
    """The process's CPU time plus that of its children it has waited for (git)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def polls_logged(master: bl.MasterBase) -> int:
    log = master.dir / "twistd.log"
    return log.read_text(errors="replace").count(POLL_LINE) if log.exists() else 0


def add_tags(repo: bl.BenchRepo, count: int) -> None:
    """``count`` tags on one commit each (a release's tag), pushed at once."""
    for i in range(count):
        bl.git("commit", "-q", "--allow-empty", "-m", f"release {i}", cwd=repo.work)
        bl.git("tag", f"v0.{i}.0", cwd=repo.work)
    bl.git("push", "-q", "origin", "HEAD:main", "--tags", cwd=repo.work)


def measure(masters: list, window: float, interval: int) -> dict:
    for m in masters:
        m.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(polls_logged(m) < 2 for m in masters):
        time.sleep(0.2)            # the first poll records every ref; from the second on, idle polls
    start = {m.kind: (cpu_seconds(m.pid()), polls_logged(m)) for m in masters}
    time.sleep(window)
    out = {}
    for m in masters:
        cpu0, polls0 = start[m.kind]
        polls = polls_logged(m) - polls0
        out[m.kind] = {"cpu": cpu_seconds(m.pid()) - cpu0, "polls": polls}
        m.stop()
    return out


def per_poll(figures: dict, window: float) -> str:
    cpu, polls = figures["cpu"], figures["polls"]
    if not polls:   # slower than the window: what it burnt meanwhile
        return f"> {window:g} s: no poll finished ({cpu:.1f} s CPU)"
    return f"{cpu / polls * 1000:.0f} ms ({polls} polls)"


def ratio(got: dict) -> str:
    mg, plain = got["matrix-gate"], got["plain-buildbot"]
    if not mg["polls"] or not mg["cpu"]:
        return "?"
    if not plain["polls"]:
        return f"> {plain['cpu'] / (mg['cpu'] / mg['polls']):.0f}x"
    return f"{(plain['cpu'] / plain['polls']) / (mg['cpu'] / mg['polls']):.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 and 300 tags, 12 s windows")
    parser.add_argument("--tags", default="10,300,1000")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of idle polling measured")
    parser.add_argument("--interval", type=int, default=2, help="poll interval, seconds")
    args = parser.parse_args()
    if args.quick:
        args.tags, args.window = "10,300", 12.0
    print(f"poll_cost: {bl.machine()}")
    root = bl.tempdir("bench-poll-")
    rows = []
    with bl.LoadSampler() as load:
        for count in [int(x) for x in args.tags.split(",")]:
            repo = bl.BenchRepo(root, f"repo-{count}")
            add_tags(repo, count)
            masters = [
                bl.MatrixGate(root / f"mg-{count}", repo, ["leg-001"], "true", ["w1"],
                              env={"GATE_POLL_INTERVAL": str(args.interval)}),
                bl.PlainMaster(root / f"plain-{count}", repo, ["leg-001"], "true", ["w1"],
                               poll_interval=args.interval),
            ]
            got = measure(masters, args.window, args.interval)
            rows.append([count + 1, per_poll(got["matrix-gate"], args.window),
                         per_poll(got["plain-buildbot"], args.window), ratio(got)])
    print(f"\nCPU per idle poll (master + its git processes), polling every {args.interval} s, "
          f"{args.window:g} s measured")
    print(bl.table(["refs", "Matrix Gate", "plain Buildbot GitPoller", "plain / MG"], rows))
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
