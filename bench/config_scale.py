#!/usr/bin/env python3
"""Configuration scale: checkconfig, start-up and idle memory for 5, 50 and 500 legs.

For each size, a generated matrix (legs ``leg-001``..., command ``true``) on 2 local
workers, side by side:

* Matrix Gate: this repository's ``master.cfg`` with the generated matrix and workers YAML
  (its defaults otherwise: the local-worker probe, the dashboard, 8 gate slots);
* plain Buildbot: a minimal ``master.cfg`` with the same number of leg builders (checkout +
  command), one Triggerable per leg, a gate builder whose ``Trigger`` step names them all,
  and the same web UI plugins (waterfall, console, grid).

Both poll the repository every ``--poll`` seconds (default 60, Matrix Gate's default),
polling at launch: Matrix Gate with its ``TagPoller``, plain Buildbot with its
``GitPoller`` set up the same way.  ``--poll 0``: neither polls (hooks only).

Figures per kind and size, each the median of ``--reps`` runs:

* ``buildbot checkconfig`` wall time;
* ``buildbot start`` until the REST API answers (the first start of a new master, which
  also registers every builder in the database, is printed apart);
* the master's RSS (``VmRSS`` from ``/proc/<pid>/status``) after start, idle ``--idle`` s.

Matrix Gate's bytecode is compiled first (``compileall``), as pip compiled Buildbot's when it
installed it: otherwise, where PYTHONDONTWRITEBYTECODE=1 is set, every Matrix Gate module is
compiled from source at each start and checkconfig.  ``--no-compile`` measures without.

Prints tables with the ratio Matrix Gate / plain; asserts nothing.

    /tmp/venv/bin/python bench/config_scale.py [--quick] [--reps 3] [--sizes 5,50,500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402


def start_once(master: bl.MasterBase, idle: float) -> tuple[float, float | None]:
    secs = master.start()
    time.sleep(idle)
    pid = master.pid()
    mem = bl.rss_mb(pid) if pid else None
    master.stop()
    return secs, mem


def measure(masters: list, reps: int, idle: float) -> dict:
    """Both kinds take turns, rep by rep, so background load hits them alike."""
    out = {m.kind: {"checkconfig": [], "start": [], "rss": []} for m in masters}
    for m in masters:                    # the first (cold) start of each new master
        out[m.kind]["first_start"], out[m.kind]["first_rss"] = start_once(m, idle)
    for rep in range(reps):
        for m in (masters if rep % 2 == 0 else masters[::-1]):
            secs, mem = start_once(m, idle)
            out[m.kind]["start"].append(secs)
            out[m.kind]["rss"].append(mem)
    for rep in range(reps):
        for m in (masters if rep % 2 == 0 else masters[::-1]):
            secs, ok = m.checkconfig()
            if not ok:
                raise RuntimeError(f"{m.kind}: checkconfig failed")
            out[m.kind]["checkconfig"].append(secs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 runs of each figure")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default="5,50,500")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading RSS")
    parser.add_argument("--plain-force", action="store_true",
                        help="also plain Buildbot with one ForceScheduler per leg, as Matrix Gate had before force-leg")
    parser.add_argument("--no-compile", action="store_true",
                        help="do not byte-compile Matrix Gate's package first (see above)")
    parser.add_argument("--poll", type=int, default=60,
                        help="both masters poll the repository every N s, at launch too (0: neither)")
    parser.add_argument("--trace", action="store_true",
                        help="also start Matrix Gate once per size with bench/_trace.py: config-time breakdown")
    args = parser.parse_args()
    if args.quick:
        args.reps = 2
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"config_scale: {bl.machine()}")
    print(f"repository polled every {args.poll} s by both masters" if args.poll else "no poller (hooks only)")
    bytecode = "not compiled first (--no-compile)" if args.no_compile else "compiled first (compileall)"
    print(f"Matrix Gate's bytecode: {bytecode}; PYTHONDONTWRITEBYTECODE="
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    root = bl.tempdir("bench-scale-")
    results = {}
    traces = {}
    workers = ["w1", "w2"]
    with bl.LoadSampler() as load:
        for size in sizes:
            legs = [f"leg-{i:03d}" for i in range(1, size + 1)]
            repo = bl.BenchRepo(root, f"repo-{size}")
            masters = [
                bl.MatrixGate(root / f"mg-{size}", repo, legs, "true", workers, max_builds=1,
                              env={"GATE_POLL_INTERVAL": str(args.poll)}, compile=not args.no_compile),
                bl.PlainMaster(root / f"plain-{size}", repo, legs, "true", workers, poll_interval=args.poll),
            ]
            if args.plain_force:
                masters.append(bl.PlainMaster(root / f"plainf-{size}", repo, legs, "true", workers,
                                              force_per_leg=True, poll_interval=args.poll))
            for kind, figures in measure(masters, args.reps, args.idle).items():
                results[(kind, size)] = figures
            if args.trace:
                tm = bl.MatrixGate(root / f"mg-trace-{size}", repo, legs, "true", workers,
                                   env={"GATE_POLL_INTERVAL": str(args.poll)}, trace=True)
                tm.start()
                tm.stop()
                traces[size] = tm.trace()
    print(f"\n== medians of {args.reps} runs (first start of a new master apart) ==")
    for key, title, unit in (("checkconfig", "buildbot checkconfig", "s"),
                             ("start", "buildbot start -> REST answers", "s"),
                             ("rss", f"master RSS, idle {args.idle:g} s after start", "MB")):
        rows = []
        for size in sizes:
            a = results[("matrix-gate", size)][key]
            b = results[("plain-buildbot", size)][key]
            ma, mb = bl.median(a), bl.median(b)
            digits = 0 if unit == "MB" else 2
            rows.append([size, f"{ma:.{digits}f} {unit} ({min(a):.{digits}f}-{max(a):.{digits}f})",
                         f"{mb:.{digits}f} {unit} ({min(b):.{digits}f}-{max(b):.{digits}f})",
                         f"{ma / mb:.2f}x", f"{ma - mb:+.{digits}f} {unit}"])
        print(f"\n{title}")
        print(bl.table(["legs", "Matrix Gate", "plain Buildbot", "ratio MG/plain", "MG - plain"], rows))
        if args.plain_force:
            extra = []
            for size in sizes:
                c = results[("plain-buildbot+force", size)][key]
                mc, mb = bl.median(c), bl.median(results[("plain-buildbot", size)][key])
                digits = 0 if unit == "MB" else 2
                extra.append([size, f"{mc:.{digits}f} {unit}", f"{mc - mb:+.{digits}f} {unit}"])
            print("  plain Buildbot + one ForceScheduler per leg (as Matrix Gate had before force-leg):")
            print("  " + bl.table(["legs", "plain+force", "vs plain"], extra).replace("\n", "\n  "))
    rows = []
    for size in sizes:
        a, b = results[("matrix-gate", size)], results[("plain-buildbot", size)]
        rows.append([size, f"{a['first_start']:.2f} s", f"{b['first_start']:.2f} s",
                     f"{a['first_start'] / b['first_start']:.2f}x",
                     f"{a['first_rss']:.0f} MB", f"{b['first_rss']:.0f} MB"])
    print("\nfirst start of a new master (registers every builder and scheduler in the database)")
    print(bl.table(["legs", "Matrix Gate", "plain Buildbot", "ratio", "MG RSS", "plain RSS"], rows))
    if traces:
        print("\nMatrix Gate's config-time functions, wall time per start (--trace):")
        for size, trace in traces.items():
            parts = ", ".join(f"{t['what']} {t['secs'] * 1000:.0f} ms" for t in trace)
            print(f"  {size:4d} legs: {parts}")
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
