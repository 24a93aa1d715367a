#!/usr/bin/env python3
"""A/B of two versions of Matrix Gate as history grows: the reuse lookup and the fan-out.

Before triggering its legs, the gate looks for a passing build of each leg at the same
revision among the leg's last 50 passing builds.  That lookup's cost grows with history,
which a fresh master in ``gate_latency.py`` never has.  This script exports two git
revisions of ``src/matrixgate`` (default: the commit before the single-query lookup, and
HEAD), starts one master per version (4 local workers, 4 legs of ``true``, every gate a new
commit so nothing is reused), runs gates on them in turn, and prints per block of gates:

* lookup: the fan-out step's start -> its first leg triggered (wall time, bench/_trace.py);
* the evidence step's wall time;
* fan-out step started -> all legs started, push -> all legs started (websocket, client times).

    /tmp/venv/bin/python bench/gate_history.py [--quick] [--gates 55] [--a REV] [--b REV]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402

BEFORE = "50bc8e0~1"   # the parent of "Gate reuse lookup: ... one query per leg"


def export(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    if rev == "WORKTREE":
        subprocess.run(["cp", "-r", str(bl.ROOT / "src" / "matrixgate"), str(dest)], check=True)
    else:
        archive = subprocess.run(["git", "-C", str(bl.ROOT), "archive", rev, "src/matrixgate"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(dest)], input=archive, check=True)
    return dest


def phases(master: bl.MatrixGate):
    trace = master.trace()
    runs = [t for t in trace if t["what"] == "GateFanOut.run"]
    triggers = [t for t in trace if t["what"] == "GateFanOut.trigger_leg"]
    evidence = [t for t in trace if t["what"] == "WriteEvidence.run"]
    last = runs[-1]
    first = min((t["start"] for t in triggers if t["start"] >= last["start"]), default=None)
    return (first - last["start"] if first else None), (evidence[-1]["secs"] if evidence else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="25 gates each")
    parser.add_argument("--gates", type=int, default=55, help="gates per version (history reaches this)")
    parser.add_argument("--block", type=int, default=10, help="gates per printed line")
    parser.add_argument("--a", default=BEFORE, help="git revision A (or WORKTREE)")
    parser.add_argument("--b", default="HEAD", help="git revision B (or WORKTREE)")
    args = parser.parse_args()
    if args.quick:
        args.gates = 25
    print(f"gate_history: {bl.machine()}")
    root = bl.tempdir("bench-history-")
    legs = [f"leg-{i}" for i in range(1, 5)]
    workers = [f"w{i}" for i in range(1, 5)]
    masters, repos = {}, {}
    for label, rev in (("A " + args.a, args.a), ("B " + args.b, args.b)):
        package = export(rev, root / "pkg" / label.split()[0])
        repos[label] = bl.BenchRepo(root, label.split()[0])
        masters[label] = bl.MatrixGate(root / label.split()[0], repos[label], legs, "true", workers,
                                       package_dir=str(package))
    for m in masters.values():
        m.start()
        m.wait_workers_connected(workers)
    for label, m in masters.items():
        print(f"  {label}: runs {m.trace()[0].get('file')}")
    ws = {k: bl.WsEvents(m.web_port) for k, m in masters.items()}
    ids = {k: m.builder_ids() for k, m in masters.items()}
    rows: dict[str, list] = {k: [] for k in masters}
    labels = list(masters)
    print(f"\n{'gates':>7}  {'version':18s} {'lookup':>9} {'evidence':>9} {'fan-out':>8} {'legs started':>13}")
    with bl.LoadSampler() as load:
        for i in range(args.gates):
            for k in (labels if i % 2 == 0 else labels[::-1]):
                run = bl.run_gate(masters[k], ws[k], repos[k], len(legs), ids[k])
                bl.wait_idle(masters[k])
                f = run.figures()
                lookup, evidence = phases(masters[k])
                rows[k].append((lookup, evidence, f["fanout"], f["legs_started"], f["results"]))
            if (i + 1) % args.block == 0 or i == args.gates - 1:
                for k in labels:
                    block = rows[k][-(((i) % args.block) + 1):]
                    med = [bl.median([r[j] for r in block]) for j in range(4)]
                    bad = sum(1 for r in block if r[4] != 0)
                    print(f"{i + 2 - len(block):3d}-{i + 1:<3d}  {k:18s} {med[0] * 1000:6.1f} ms {med[1] * 1000:6.1f} ms "
                          f"{med[2]:6.3f} s {med[3]:11.3f} s" + (f"  ({bad} not SUCCESS)" if bad else ""), flush=True)
    print("\n(lookup = fan-out step start -> first leg triggered; history = passing builds per leg so far,"
          " a lookup before commit 50bc8e0 read at most the last 50)")
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
