#!/usr/bin/env python3
"""Publishes a release of the example platform: the stand-in for the real publish script.

The real platform uploads artifacts and creates the release; here we only append one line
"<tag> <revision>" to EXAMPLE_RELEASES_FILE (default target/published.txt), so tests can
count how many times each tag was published.
"""

import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(argv):
        print("usage: publish.py <tag> <revision>", file=sys.stderr)
        return 2
    tag, revision = argv
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head and head != revision:
        print(f"refusing: checkout is at {head}, asked to publish {revision}", file=sys.stderr)
        return 1
    ledger = Path(os.environ.get("EXAMPLE_RELEASES_FILE", "target/published.txt"))
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("a", encoding="utf-8") as out:
        out.write(f"{tag} {revision}\n")
    print(f"published {tag} at {revision} (recorded in {ledger})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
