#!/usr/bin/env python3
"""Evidence: time to write and to verify the evidence of 5 legs with 10 MB of logs each.

Synthetic, log-like text (test lines with ids, timings and hex, about as compressible as
build logs) is written to files once; then, ``--reps`` times:

* ``matrixgate.evidence.write_evidence`` with each leg's log given as a file (``Path``)
  and, as the gate's evidence step does it, as ``bytes`` already in memory: directory,
  SHA256SUMS, manifest, release notes and the ``.tar.gz`` bundle (fsync included);
* ``matrixgate.evidence.verify`` of the directory and of the bundle (must find no problem);
* for scale, a shell reference doing the same bulk work: ``cp`` the logs, ``sha256sum``
  them, ``tar`` piped to ``gzip -1``.

Prints medians (and throughput); asserts nothing.

    /tmp/venv/bin/python bench/evidence_write.py [--quick] [--reps 5] [--legs 5] [--mb 10]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402
from matrixgate import evidence  # noqa: E402


def synthetic_log(path: Path, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    words = ["raft", "gossip", "leader", "follower", "commit", "append", "vote", "snapshot", "tenant",
             "admission", "billing", "reservation", "rollback", "vm", "placement", "metadata"]
    out = bytearray()
    n = 0
    while len(out) < size:
        n += 1
        kind = rnd.random()
        if kind < 0.7:
            line = (f"test {rnd.choice(words)}::{rnd.choice(words)}_{rnd.randrange(10000)} ... ok "
                    f"({rnd.random() * 3:.3f}s)\n")
        elif kind < 0.95:
            line = (f"[{n:08d}] INFO {rnd.choice(words)} term={rnd.randrange(100)} index={rnd.randrange(10**6)} "
                    f"id={rnd.getrandbits(64):016x}\n")
        else:
            line = f"  at {rnd.choice(words)}.rs:{rnd.randrange(2000)}  sha={rnd.getrandbits(160):040x}\n"
        out += line.encode()
    path.write_bytes(bytes(out[:size]))


def gate(logs: list[Path], as_bytes: bool) -> evidence.GateEvidence:
    legs = []
    for i, log in enumerate(logs):
        content = log.read_bytes() if as_bytes else log
        legs.append(evidence.LegEvidence(
            name=f"leg-{i + 1}", result="success", worker="w1", capabilities={"capabilities": []},
            started_at=1_800_000_000.0, complete_at=1_800_000_100.0, build_url=None,
            files={"logs/04-run-stdio.log": content}))
    return evidence.GateEvidence(
        tag="v1.0.0", revision="0" * 40, repository="/srv/platform.git", gate_url=None, result="success",
        started_at=1_800_000_000.0, complete_at=1_800_000_200.0, legs=legs, skipped={}, blocking=[])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--legs", type=int, default=5)
    parser.add_argument("--mb", type=float, default=10.0, help="MB of log per leg")
    args = parser.parse_args()
    if args.quick:
        args.reps = 2
    print(f"evidence_write: {bl.machine()}")
    root = bl.tempdir("bench-evidence-")
    size = int(args.mb * 1024 * 1024)
    logs = []
    for i in range(args.legs):
        path = root / "logs" / f"leg-{i + 1}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_log(path, size, seed=i)
        logs.append(path)
    total_mb = size * args.legs / 1024 / 1024
    times = {"write (files)": [], "write (bytes)": [], "verify directory": [], "verify bundle": [],
             "shell reference": []}
    bundle_mb = None
    problems = []
    with bl.LoadSampler() as load:
        for rep in range(args.reps):
            out = root / f"out-{rep}"
            t0 = time.monotonic()
            record = evidence.write_evidence(out, gate(logs, as_bytes=False))
            times["write (files)"].append(time.monotonic() - t0)
            bundle_mb = record.bundle.stat().st_size / 1024 / 1024
            t0 = time.monotonic()
            problems += evidence.verify(record.directory)
            times["verify directory"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            problems += evidence.verify(record.bundle)
            times["verify bundle"].append(time.monotonic() - t0)
            shutil.rmtree(out)

            g = gate(logs, as_bytes=True)          # reading the logs is not timed: the step has them
            t0 = time.monotonic()
            record = evidence.write_evidence(out, g)
            times["write (bytes)"].append(time.monotonic() - t0)
            del g
            shutil.rmtree(out)

            ref = root / f"ref-{rep}"
            ref.mkdir()
            t0 = time.monotonic()
            subprocess.run(["bash", "-c", f"set -e; cp -r {root / 'logs'} {ref}/d; cd {ref}/d; "
                            "sha256sum *.log > SHA256SUMS; sync -f .; cd ..; tar -cf - d | gzip -1 > d.tar.gz; "
                            "sync -f ."], check=True)
            times["shell reference"].append(time.monotonic() - t0)
            shutil.rmtree(ref)
    print(f"\n== {args.legs} legs x {args.mb:g} MB of log ({total_mb:.0f} MB), medians of {args.reps} ==")
    rows = []
    for what, secs in times.items():
        med = bl.median(secs)
        rows.append([what, f"{med:.3f} s", f"{min(secs):.3f}-{max(secs):.3f} s", f"{total_mb / med:.0f} MB/s"])
    print(bl.table(["operation", "median", "min-max", "throughput"], rows))
    print(f"bundle: {bundle_mb:.1f} MB (gzip level {evidence.BUNDLE_COMPRESSLEVEL}, "
          f"{total_mb / bundle_mb:.1f}x); verification problems found: {len(problems)}"
          + (f" {problems[:3]}" if problems else ""))
    print("(write = directory + SHA256SUMS + manifest + notes + .tar.gz bundle, fsynced; "
          "shell reference = cp + sha256sum + tar | gzip -1)")
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
