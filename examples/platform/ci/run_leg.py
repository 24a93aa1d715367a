#!/usr/bin/env python3
"""Run one leg of the integration matrix (the stand-in for `cargo test`).

    python3 ci/run_leg.py <leg> [--out DIR]
    python3 ci/run_leg.py --list

Runs the leg's unittest module, prints every test as
``test <id> ... ok|FAILED|ignored`` (failure details and a summary follow, as
cargo does), and writes ``<out>/junit.xml`` and ``<out>/results.json``. The
default out dir is ``target/matrix/<leg>`` under the checkout root. The last
line printed is ``tested revision: <git sha>``.

Exit status: 0 when every test passed (skipped/ignored tests do not fail the
run), 1 when a test failed or errored, 2 for an unknown leg or bad usage.

Standard library only; works from any checkout location.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
import unittest
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

sys.dont_write_bytecode = True  # keep checkouts clean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEGS = {
    "chainfire-flaredb": "test_chainfire_flaredb",
    "flaredb-plasmavmc": "test_flaredb_plasmavmc",
    "plasmavmc-creditservice": "test_plasmavmc_creditservice",
    "creditservice-nightlight": "test_creditservice_nightlight",
    "plasmavmc-e2e": "test_plasmavmc_e2e",
}


def git_revision(root: str) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and sha else None


class Case:
    def __init__(self, test_id: str, classname: str, name: str):
        self.id = test_id
        self.classname = classname
        self.name = name
        self.outcome = "passed"  # passed | failed | error | skipped
        self.message = ""
        self.kind = ""
        self.details = ""
        self.output = ""
        self.duration = 0.0


def _split_id(test) -> tuple[str, str, str]:
    """(id, classname, name) of a test, or of a class/module fixture error."""
    test_id = test.id()
    fixture = re.fullmatch(r"(\w+) \((.+)\)", test_id)  # e.g. "setUpClass (module.Class)"
    if isinstance(test, unittest.suite._ErrorHolder) and fixture:
        return test_id, fixture.group(2), fixture.group(1)
    head, _, name = test_id.rpartition(".")
    return test_id, head, name


class LegResult(unittest.TestResult):
    """Collects per-test outcomes and prints cargo-style progress lines."""

    def __init__(self, stream):
        super().__init__()
        self.buffer = True  # capture each test's stdout/stderr like cargo does
        self.stream = stream
        self.cases: list[Case] = []
        self._current: dict[str, Case] = {}
        self._started: dict[str, float] = {}

    def _case(self, test) -> Case:
        test_id, classname, name = _split_id(test)
        case = self._current.get(test_id)
        if case is None:
            case = self._current[test_id] = Case(test_id, classname, name)
            self.cases.append(case)
        return case

    def _captured(self) -> str:
        parts = []
        for buf in (getattr(self, "_stdout_buffer", None), getattr(self, "_stderr_buffer", None)):
            if buf is not None:
                parts.append(buf.getvalue())
        return "".join(parts)

    def startTest(self, test):
        super().startTest(test)
        self._started[test.id()] = time.monotonic()
        self._case(test)

    def stopTest(self, test):
        case = self._case(test)
        case.output = self._captured()
        case.duration = time.monotonic() - self._started.get(test.id(), time.monotonic())
        self._mirrorOutput = False  # captured output goes to the report, not to stdout
        super().stopTest(test)
        word = {"passed": "ok", "failed": "FAILED", "error": "FAILED",
                "skipped": f"ignored, {case.message}"}[case.outcome]
        print(f"test {case.id} ... {word}", file=self.stream, flush=True)

    def _record(self, test, outcome, err):
        case = self._case(test)
        case.outcome = outcome
        exc_type, exc, _ = err
        case.kind = exc_type.__name__
        case.message = f"{exc_type.__name__}: {exc}".strip()
        case.details = self._exc_info_to_string(err, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.suite._ErrorHolder):  # setUpClass/module errors
            case = self._case(test)
            self._record(test, "error", err)
            print(f"test {case.id} ... FAILED", file=self.stream, flush=True)
            return
        self._record(test, "error", err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = "failed" if issubclass(err[0], test.failureException) else "error"
            case = self._case(test)
            if case.outcome == "passed":
                self._record(test, outcome, err)
            else:
                case.details += "\n" + self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        case = self._case(test)
        case.outcome = "skipped"
        case.message = reason

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        case = self._case(test)
        case.outcome = "failed"
        case.kind = "UnexpectedSuccess"
        case.message = "test marked expectedFailure passed"


def run(leg: str, out_dir: str) -> int:
    module = LEGS[leg]
    for path in (os.path.join(ROOT, "tests"), ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.makedirs(out_dir, exist_ok=True)
    revision = git_revision(ROOT)
    started_at = datetime.now(timezone.utc)

    result = LegResult(sys.stdout)
    t0 = time.monotonic()
    try:
        suite = unittest.TestLoader().loadTestsFromName(module)
    except Exception:  # the module (or the code it imports) does not even load
        print(f"running 1 tests (leg {leg}, module tests/{module}.py)", flush=True)
        case = Case(f"{module}.import", module, "import")
        exc_type, exc, _ = sys.exc_info()
        case.outcome, case.kind = "error", exc_type.__name__
        case.message = f"{exc_type.__name__}: {exc}"
        case.details = traceback.format_exc()
        result.cases.append(case)
        print(f"test {case.id} ... FAILED", flush=True)
    else:
        print(f"running {suite.countTestCases()} tests (leg {leg}, module tests/{module}.py)", flush=True)
        suite(result)
    duration = time.monotonic() - t0

    cases = result.cases
    failures = sum(1 for c in cases if c.outcome == "failed")
    errors = sum(1 for c in cases if c.outcome == "error")
    skipped = sum(1 for c in cases if c.outcome == "skipped")
    passed_count = sum(1 for c in cases if c.outcome == "passed")
    ok = failures == 0 and errors == 0

    broken = [c for c in cases if c.outcome in ("failed", "error")]
    if broken:
        print("\nfailures:\n")
        for c in broken:
            print(f"---- {c.id} ----")
            if c.output.strip():
                print("captured output:")
                print(c.output.rstrip())
            print(c.details.rstrip())
            print()
        print("failures:")
        for c in broken:
            print(f"    {c.id}")
    print()
    print(f"test result: {'ok' if ok else 'FAILED'}. {passed_count} passed; {failures} failed; "
          f"{errors} errors; {skipped} ignored; finished in {duration:.2f}s")

    write_junit(os.path.join(out_dir, "junit.xml"), leg, cases, duration, started_at, revision)
    results = {
        "leg": leg,
        "revision": revision,
        "tests": len(cases),
        "failures": failures,
        "errors": errors,
        "skipped": skipped,
        "passed": ok,
        "duration_s": round(duration, 3),
    }
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")
    print(f"artifacts: {os.path.join(out_dir, 'junit.xml')} {os.path.join(out_dir, 'results.json')}")
    print(f"release tag: {os.environ.get('RELEASE_TAG') or 'none'}", flush=True)   # what the gate passed
    print(f"tested revision: {revision or 'none (not a git checkout)'}", flush=True)
    return 0 if ok else 1


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot carry."""
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20 and ord(ch) not in (0xFFFE, 0xFFFF))


def write_junit(path, leg, cases, duration, started_at, revision):
    suite = ET.Element("testsuite", {
        "name": leg,
        "tests": str(len(cases)),
        "failures": str(sum(1 for c in cases if c.outcome == "failed")),
        "errors": str(sum(1 for c in cases if c.outcome == "error")),
        "skipped": str(sum(1 for c in cases if c.outcome == "skipped")),
        "time": f"{duration:.3f}",
        "timestamp": started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": socket.gethostname(),
    })
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "revision", "value": revision or ""})
    ET.SubElement(props, "property", {"name": "python", "value": platform.python_version()})
    for c in cases:
        tc = ET.SubElement(suite, "testcase", {"classname": c.classname, "name": c.name,
                                               "time": f"{c.duration:.3f}"})
        if c.outcome in ("failed", "error"):
            el = ET.SubElement(tc, "failure" if c.outcome == "failed" else "error",
                               {"message": _clean(c.message[:2000]), "type": c.kind})
            el.text = _clean(c.details)
        elif c.outcome == "skipped":
            ET.SubElement(tc, "skipped", {"message": _clean(c.message)})
        if c.output:
            ET.SubElement(tc, "system-out").text = _clean(c.output)
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    tmp = path + ".tmp"
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run one leg of the integration matrix.")
    parser.add_argument("leg", nargs="?", help="leg name (see --list)")
    parser.add_argument("--out", help="artifact directory (default: <checkout>/target/matrix/<leg>)")
    parser.add_argument("--list", action="store_true", help="print the leg names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(LEGS))
        return 0
    if args.leg not in LEGS:
        what = f"unknown leg {args.leg!r}" if args.leg else "no leg given"
        print(f"error: {what}; legs are: {', '.join(LEGS)}", file=sys.stderr)
        print("\n".join(LEGS))
        return 2
    out_dir = os.path.abspath(args.out) if args.out else os.path.join(ROOT, "target", "matrix", args.leg)
    return run(args.leg, out_dir)


if __name__ == "__main__":
    sys.exit(main())
