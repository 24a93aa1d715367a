#!/usr/bin/env python3
"""Parallel speed-up: the gate on N workers vs the same legs one after another.

The platform's shell script ran its integration legs in sequence from one checkout
(``git clone`` then a bash loop over the legs' commands).  Here the same 4 legs
(``sleep 2`` each, the command string from the generated matrix) run:

* sequentially: ``bash -c 'git clone -q REPO w && cd w && for c in ...; do bash -c "$c" || exit 1; done'``
  (wall time of the whole script, and of the loop alone);
* through Matrix Gate with N = 1, 2, 4 local workers (one build each): tag push -> gate
  finished, client-side times from Buildbot's websocket; every gate gates a new commit;
* for reference, through a plain Buildbot gate with the same N workers (``--no-plain`` to skip).

For each N, both masters run at once and the script, Matrix Gate and plain Buildbot take
turns rep by rep, so a burst of background load does not land on one of them only.

Prints medians, the speed-up (sequential script / gate) and the ideal (N-fold, capped at
the number of legs); asserts nothing.

    .venv/bin/python bench/parallel_speedup.py [--quick] [--reps 5] [--workers 1,2,4]
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402


def sequential_once(root: Path, repo: bl.BenchRepo, commands: list[str], rep: int) -> tuple[float, float | None]:
    """Wall time of the sequential script (clone + loop), and of the loop alone."""
    loop = "; ".join(f"bash -c {shlex.quote(c)} || exit 1" for c in commands)
    work = root / f"seq-{rep}"
    script = (f"set -e; git clone -q {shlex.quote(repo.url)} {shlex.quote(str(work))}; "
              f"cd {shlex.quote(str(work))}; t=$EPOCHREALTIME; {loop}; echo \"$t $EPOCHREALTIME\"")
    t0 = time.monotonic()
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    whole = time.monotonic() - t0
    subprocess.run(["rm", "-rf", str(work)])
    try:
        start, end = out.stdout.strip().splitlines()[-1].split()
        return whole, float(end) - float(start)
    except (ValueError, IndexError):
        return whole, None


def run_n(root: Path, n_workers: int, legs: list[str], command: str, args, seq_repo) -> dict:
    """Matrix Gate (and plain Buildbot) on ``n_workers`` workers and the sequential script,
    taking turns rep by rep so all of them see the same background load."""
    workers = [f"w{i}" for i in range(1, n_workers + 1)]
    masters = []
    for kind in ["matrix-gate"] + ([] if args.no_plain else ["plain-buildbot"]):
        repo = bl.BenchRepo(root, f"{kind}-{n_workers}")
        if kind == "matrix-gate":
            m = bl.MatrixGate(root / f"mg-{n_workers}", repo, legs, command, workers)
        else:
            # with Matrix Gate's fix for Buildbot 4.3's REST-from-a-thread bug, which otherwise
            # can leave this master accepting no connection (as gate_latency.py does)
            m = bl.PlainMaster(root / f"plain-{n_workers}", repo, legs, command, workers, rest_fix=True)
        m.repo = repo
        masters.append(m)
    for m in masters:
        m.start()
        m.wait_workers_connected(workers)
    ws = {m.kind: bl.WsEvents(m.web_port) for m in masters}
    ids = {m.kind: m.builder_ids() for m in masters}
    out: dict = {m.kind: [] for m in masters}
    out["sequential"], out["loop"] = [], []
    try:
        for m in masters:
            for _ in range(args.warmup):
                bl.run_gate(m, ws[m.kind], m.repo, len(legs), ids[m.kind])
                bl.wait_idle(m)
        for rep in range(args.reps):
            whole, loop = sequential_once(root, seq_repo, [command] * len(legs), rep)
            out["sequential"].append(whole)
            out["loop"].append(loop)
            for m in (masters if rep % 2 == 0 else masters[::-1]):
                run = bl.run_gate(m, ws[m.kind], m.repo, len(legs), ids[m.kind])
                bl.wait_idle(m)
                out[m.kind].append(run.figures())
                time.sleep(0.5)
    finally:
        for m in masters:
            ws[m.kind].close()
            m.stop()
    return out


def main() -> int:
    parser = bl.gate_bench_parser(__doc__, reps=5, quick_reps=2, sleep=2.0)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-Buildbot reference")
    args = bl.parse_gate_bench(parser)
    counts = [int(x) for x in args.workers.split(",")]
    legs = [f"leg-{i}" for i in range(1, args.legs + 1)]
    command = f"sleep {args.sleep:g}"
    print(f"parallel_speedup: {bl.machine()}")
    root = bl.tempdir("bench-speedup-")
    kinds = ["matrix-gate"] + ([] if args.no_plain else ["plain-buildbot"])
    results: dict = {}
    with bl.LoadSampler() as load:
        seq_repo = bl.BenchRepo(root, "sequential")
        for n in counts:
            results[n] = run_n(root, n, legs, command, args, seq_repo)
    seq_all = [x for n in counts for x in results[n]["sequential"]]
    loop_all = [x for n in counts for x in results[n]["loop"]]
    print(f"\n== {len(legs)} legs of `{command}`: medians of {args.reps} runs per worker count ==")
    print(f"sequential script (git clone + bash loop): {bl.median(seq_all):.2f} s "
          f"(min-max {min(seq_all):.2f}-{max(seq_all):.2f}, {len(seq_all)} runs); "
          f"the loop alone {bl.median(loop_all):.2f} s")
    rows = []
    for n in counts:
        ideal = min(n, len(legs))
        seq = bl.median(results[n]["sequential"])
        for kind in kinds:
            figs = results[n][kind]
            fin = [f["gate_finished"] for f in figs]
            med = bl.median(fin)
            rows.append([f"{n}", "Matrix Gate" if kind == "matrix-gate" else "plain Buildbot",
                         f"{med:.2f} s ({min(fin):.2f}-{max(fin):.2f})",
                         f"{bl.median([f['gate_duration'] for f in figs]):.2f} s",
                         f"{seq:.2f} s", f"{seq / med:.2f}x", f"{ideal}x", f"{100 * seq / med / ideal:.0f}%"])
    print(bl.table(["workers", "gate", "push -> gate finished", "gate duration", "script (same reps)",
                    "speed-up vs script", "ideal", "efficiency"], rows))
    print("\n(speed-up = the sequential script's wall time, measured in turn with the gates of that row, / "
          "(push -> gate finished); ideal = min(workers, legs); efficiency = speed-up / ideal)")
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
