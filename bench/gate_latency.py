#!/usr/bin/env python3
"""Gate latency: Matrix Gate vs a plain Buildbot gate, side by side in one run.

For each gate: a new commit and tag are pushed to the gated (bare) repository, then the tag
is announced through the change hook (Matrix Gate: its signed ``/change_hook/git``; plain
Buildbot: the ``base`` hook), and the script follows the builds on Buildbot's websocket:

* push -> gate started      (the gate build's "new" event)
* push -> all legs started  (the last leg build's "new" event)
* push -> gate finished
* gate overhead = gate duration - its slowest leg's duration

All times are client-side ``time.monotonic()`` at the event's arrival (REST timestamps are
whole seconds).  Both masters run at once, idle while the other is measured, and their gates
alternate, so both see the same background load.  Every gate gates a new commit: Matrix
Gate's reuse never skips a leg here.

Legs: N legs running ``sleep 1`` (after the checkout both kinds of leg do), on N local
workers with one build each; with ``--real-workers`` also on real ``buildbot-worker``
processes on loopback.  Prints medians, min-max and the ratio; asserts nothing.

The plain master carries one fix of Matrix Gate's (``bbfixes``: Buildbot 4.3 writes REST
answers from a thread, which in about half the starts with real workers left its master
accepting no connection).  It changes which thread writes, not what is done;
``--plain-unfixed`` leaves it out.

    .venv/bin/python bench/gate_latency.py [--quick] [--reps 7] [--real-workers] [--plain-unfixed]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402

FIGURES = [("gate_started", "push -> gate started"), ("legs_started", "push -> all legs started"),
           ("gate_finished", "push -> gate finished"), ("gate_duration", "gate duration"),
           ("slowest_leg", "slowest leg duration"), ("overhead", "gate overhead (duration - slowest leg)")]
BREAKDOWN = [("verdict", "push -> verdict (fan-out step finished)"),
             ("overhead_verdict", "overhead up to the verdict"),
             ("fanout", "fan-out step started -> all legs started"),
             ("tally", "last leg finished -> fan-out step finished")]


def run_variant(label: str, root: Path, args) -> dict:
    legs = [f"leg-{i}" for i in range(1, args.legs + 1)]
    workers = [f"w{i}" for i in range(1, args.legs + 1)]
    local = label == "local"
    command = f"sleep {args.sleep:g}"
    repo_mg, repo_plain = bl.BenchRepo(root, "mg-platform"), bl.BenchRepo(root, "plain-platform")
    masters = [bl.MatrixGate(root / "mg", repo_mg, legs, command, workers, local=local, trace=args.trace,
                             count_db=args.count_db),
               bl.PlainMaster(root / "plain", repo_plain, legs, command, workers, local=local,
                              checkout=not args.no_checkout, count_db=args.count_db,
                              rest_fix=not args.plain_unfixed)]
    repos = {masters[0].kind: repo_mg, masters[1].kind: repo_plain}
    for m in masters:
        m.start()
        if not local:
            for w in workers:
                m.start_real_worker(w, f"pw-{w}", root)
        m.wait_workers_connected(workers + ["gate"] if local else workers)
    ws = {m.kind: bl.WsEvents(m.web_port) for m in masters}
    ids = {m.kind: m.builder_ids() for m in masters}
    runs: dict[str, list] = {m.kind: [] for m in masters}
    # warm-up: the first gate of a master clones the repository into every worker directory
    for m in masters:
        for _ in range(args.warmup):
            bl.run_gate(m, ws[m.kind], repos[m.kind], len(legs), ids[m.kind])
            bl.wait_idle(m)
    for rep in range(args.reps):
        order = masters if rep % 2 == 0 else masters[::-1]
        for m in order:
            run = bl.run_gate(m, ws[m.kind], repos[m.kind], len(legs), ids[m.kind])
            bl.wait_idle(m)
            runs[m.kind].append(run)
            if args.verbose:
                f = run.figures()
                starts = sorted(leg["new"] - run.push for leg in run.legs.values())
                print(f"  [{label}] rep {rep + 1} {m.kind:15s} " + "  ".join(
                    f"{k}={f[k]:.3f}" for k, _ in FIGURES if f[k] is not None) + f"  results={f['results']}"
                    + "  leg starts=" + ",".join(f"{x:.2f}" for x in starts))
            time.sleep(args.pause)
    for m in masters:
        ws[m.kind].close()
        m.stop()
    runs["trace"] = masters[0].trace()
    if args.count_db:
        for m in masters:
            calls = [t for t in m.trace() if t["what"].startswith("db.")]
            for run in runs[m.kind]:
                verdict = run.figures()["verdict"]
                split = run.push_wall + verdict if verdict is not None else run.done_wall
                run.db = {}
                for part, lo, hi in (("to verdict", run.push_wall, split), ("after", split, run.done_wall)):
                    mine = [t for t in calls if lo <= t["start"] < hi]
                    run.db[part] = (sum(1 for t in mine if t["what"] == "db.do"),
                                    sum(1 for t in mine if t["what"] == "db.tx"))
    return runs


def report(label: str, runs: dict, args):
    mg, plain = runs["matrix-gate"], runs["plain-buildbot"]
    fm = [r.figures() for r in mg]
    fp = [r.figures() for r in plain]
    print(f"\n== {args.legs} legs of `sleep {args.sleep:g}`, {label} workers: medians of {len(mg)} gates "
          f"(min-max) ==")
    rows = []
    for key, title in FIGURES + BREAKDOWN:
        a = [f[key] for f in fm]
        b = [f[key] for f in fp]
        ma, mb = bl.median(a), bl.median(b)
        (a0, a1), (b0, b1) = bl.spread(a), bl.spread(b)
        ratio = ma / mb if mb else float("nan")
        rows.append([title, f"{ma:.3f} s ({a0:.2f}-{a1:.2f})", f"{mb:.3f} s ({b0:.2f}-{b1:.2f})",
                     f"{ratio:.2f}x", f"{ma - mb:+.3f} s"])
    print(bl.table(["figure", "Matrix Gate", "plain Buildbot", "ratio MG/plain", "MG - plain"], rows))
    bad = [f["results"] for f in fm + fp if f["results"] != 0]
    if bad:
        print(f"  note: {len(bad)} gate(s) did not end SUCCESS: results {bad}")
    print("\n  where the time goes, client-side medians (step started -> finished):")
    for kind, rs in (("Matrix Gate", mg), ("plain Buildbot", plain)):
        names: dict[str, list] = {}
        for r in rs:
            for name, secs in r.gate_steps():
                names.setdefault(name, []).append(secs)
        legsteps: dict[str, list] = {}
        for r in rs:
            for name, secs in r.leg_steps().items():
                legsteps.setdefault(name, []).extend(secs)
        gate_txt = ", ".join(f"{n} {bl.median(v):.3f}" for n, v in names.items())
        leg_txt = ", ".join(f"{n} {bl.median(v):.3f}" for n, v in legsteps.items())
        print(f"  {kind:15s} gate steps: {gate_txt}")
        print(f"  {'':15s} leg steps:  {leg_txt}")
    # the part of the overhead that is not in the gate's own steps' bodies
    others = [b for r in mg for b in r.other_builds.values() if b.get("done")]
    if others:
        by: dict[str, list] = {}
        for b in others:
            by.setdefault(b["builder"], []).append(b["done"] - b["new"])
        print("  Matrix Gate's other builds per gate: " + ", ".join(
            f"{k} {bl.median(v):.3f} s" for k, v in by.items()))
        steps: dict[str, list] = {}
        for r in mg:
            for step in r.steps.values():
                if step["buildid"] in r.other_builds and step.get("started") and step.get("done"):
                    steps.setdefault(step["name"], []).append(step["done"] - step["started"])
        if steps:
            print(f"  {'':15s} their steps: " + ", ".join(f"{n} {bl.median(v):.3f}" for n, v in steps.items()))
    if getattr(mg[0], "db", None):
        print("  database round trips per gate (medians; --count-db): pool.do / pool.do_with_transaction")
        for kind, rs in (("Matrix Gate", mg), ("plain Buildbot", plain)):
            parts = []
            for part in ("to verdict", "after"):
                parts.append(f"push -> verdict {bl.median([r.db[part][0] for r in rs]):5.0f} / "
                             f"{bl.median([r.db[part][1] for r in rs]):4.0f}" if part == "to verdict" else
                             f"verdict -> gate finished {bl.median([r.db[part][0] for r in rs]):5.0f} / "
                             f"{bl.median([r.db[part][1] for r in rs]):4.0f}")
            print(f"    {kind:15s} " + "    ".join(parts))
    trace = [t for t in (runs.get("trace") or []) if not t["what"].startswith("db.")]
    if trace:
        by = {}
        for t in trace:
            by.setdefault(t["what"], []).append(t["secs"])
        print("  Matrix Gate's own code, wall time per call (median, max, calls; --trace):")
        for what, secs in by.items():
            print(f"    {what:36s} {bl.median(secs) * 1000:8.1f} ms  {max(secs) * 1000:8.1f} ms  {len(secs):4d}")
        runs_ = [t for t in trace if t["what"] == "GateFanOut.run"]
        triggers = [t for t in trace if t["what"] == "GateFanOut.trigger_leg"]
        firsts = []
        for r in runs_:
            mine = [t["start"] for t in triggers if r["start"] <= t["start"] <= r["start"] + r["secs"]]
            if mine:
                firsts.append(min(mine) - r["start"])
        if firsts:
            print(f"    fan-out step body start -> first leg triggered: median {bl.median(firsts) * 1000:.1f} ms")


def main() -> int:
    parser = bl.gate_bench_parser(__doc__, reps=7, quick_reps=3, sleep=1.0)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between gates")
    parser.add_argument("--real-workers", action="store_true",
                        help="also run the variant with buildbot-worker processes on loopback")
    parser.add_argument("--only-real", action="store_true", help="only the real-worker variant")
    parser.add_argument("--plain-unfixed", action="store_true",
                        help="plain Buildbot without Matrix Gate's fix for Buildbot 4.3's REST-from-a-thread bug "
                             "(src/matrixgate/bbfixes.py), which often stops its master accepting connections")
    parser.add_argument("--no-checkout", action="store_true",
                        help="plain legs skip the git checkout (Matrix Gate's legs always check out)")
    parser.add_argument("--trace", action="store_true",
                        help="trace Matrix Gate's own functions (wall time per call) through bench/_trace.py")
    parser.add_argument("--count-db", action="store_true",
                        help="count both masters' database round trips per gate (bench/_trace.py)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every gate's figures")
    args = bl.parse_gate_bench(parser)
    variants = (["real"] if args.only_real else ["local"] + (["real"] if args.real_workers else []))
    print(f"gate_latency: {bl.machine()}")
    results = {}
    with bl.LoadSampler() as load:
        for label in variants:
            root = bl.tempdir(f"bench-latency-{label}-")
            try:
                results[label] = run_variant(label, root, args)
            except RuntimeError as exc:   # e.g. real workers that never connected: report the rest
                print(f"\nvariant {label} failed: {exc}", file=sys.stderr)
    for label in variants:
        if label in results:
            report(label, results[label], args)
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
