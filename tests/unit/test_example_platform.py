"""The example platform (examples/platform) and its leg runner, ci/run_leg.py.

Every leg runs as a subprocess with plain ``python3`` on a copy of the
platform in a temporary directory (a git repository, as the master makes it),
and the artifacts it leaves are checked: exit code, junit.xml, results.json.
Legs run two at a time to keep the file fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "examples" / "platform"
PROVISION = REPO / "src" / "matrixgate" / "onworker" / "provision.py"
PYTHON = shutil.which("python3") or sys.executable

LEGS = ["chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight"]
E2E = "plasmavmc-e2e"
FAULTS = {
    "LOSE_UNCOMMITTED_ON_FAILOVER": "chainfire-flaredb",
    "ELECT_WITHOUT_MAJORITY": "chainfire-flaredb",
    "SKIP_METADATA_FSYNC_ON_LEADER_SWITCH": "flaredb-plasmavmc",
    "NON_ATOMIC_CAS": "plasmavmc-creditservice",
    "DROP_BILLING_SAMPLES": "creditservice-nightlight",
}
RESULT_KEYS = {"leg", "revision", "tests", "failures", "errors", "skipped", "passed", "duration_s"}
WORKERS = max(2, min(4, os.cpu_count() or 2))


def base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PLASMA_E2E", "PLASMAVMC_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def git(root: Path, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=matrixgate-test", "-c", "user.email=test@matrixgate.invalid",
                           *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def checkout(dst: Path, with_git: bool = True) -> Path:
    """Copy the platform like the master does (and git init it)."""
    shutil.copytree(PLATFORM, dst, ignore=shutil.ignore_patterns("target", "__pycache__", "*.pyc"))
    if with_git:
        git(dst, "init", "-q")
        git(dst, "add", ".")
        git(dst, "commit", "-q", "-m", "example platform")
    return dst


def flip(root: Path, fault: str) -> str:
    """Turn a fault switch on by editing its line and committing; returns the new HEAD."""
    path = root / "minicloud" / "faults.py"
    text = path.read_text()
    line = f"{fault} = False"
    assert len(re.findall(rf"^{re.escape(line)}$", text, flags=re.M)) == 1, f"{line!r} must be on a line of its own"
    path.write_text(re.sub(rf"^{re.escape(line)}$", f"{fault} = True", text, flags=re.M))
    git(root, "commit", "-q", "-am", f"turn on {fault}")
    return git(root, "rev-parse", "HEAD")


class LegRun:
    def __init__(self, root: Path, leg: str, out: Path, proc: subprocess.CompletedProcess):
        self.root, self.leg, self.out, self.proc = root, leg, out, proc
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
        self.junit = ET.parse(out / "junit.xml").getroot() if (out / "junit.xml").exists() else None

    def __repr__(self):
        return f"<{self.leg} rc={self.rc}>\n{self.stdout[-3000:]}\n{self.proc.stderr[-2000:]}"


def run_leg(root: Path, leg: str, out: Path | None = None, env: dict | None = None, args=()) -> LegRun:
    cmd = [PYTHON, "ci/run_leg.py", leg, *args]
    if out is not None:
        cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, cwd=root, env=env or base_env(), capture_output=True, text=True, timeout=120)
    return LegRun(root, leg, out or root / "target" / "matrix" / leg, proc)


def run_legs(root: Path, legs, env=None) -> dict[str, LegRun]:
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {leg: pool.submit(run_leg, root, leg, root / "out" / leg, env) for leg in legs}
        return {leg: f.result() for leg, f in futures.items()}


def check_artifacts(run: LegRun, revision):
    """junit.xml and results.json exist, agree with each other and with stdout."""
    assert run.results is not None and run.junit is not None, run
    res = run.results
    assert set(res) == RESULT_KEYS
    assert res["leg"] == run.leg
    assert res["revision"] == revision
    assert isinstance(res["duration_s"], (int, float)) and res["duration_s"] >= 0
    assert res["passed"] is (res["failures"] == 0 and res["errors"] == 0)
    suite = run.junit
    assert suite.tag == "testsuite" and suite.get("name") == run.leg
    cases = suite.findall("testcase")
    assert len(cases) == res["tests"] == int(suite.get("tests"))
    for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        assert int(suite.get(key)) == res[key] == sum(1 for c in cases if c.find(tag) is not None), key
    assert all(c.get("classname") and c.get("name") and float(c.get("time")) >= 0 for c in cases)
    lines = run.stdout.splitlines()
    assert sum(1 for line in lines if re.match(r"^test \S+ \.\.\. (ok|FAILED|ignored)", line)) == res["tests"]
    assert lines[-1] == f"tested revision: {revision or 'none (not a git checkout)'}"
    assert run.rc == (0 if res["passed"] else 1), run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = checkout(tmp_path_factory.mktemp("pristine") / "platform")
    return root, git(root, "rev-parse", "HEAD"), run_legs(root, LEGS + [E2E])


@pytest.mark.parametrize("leg", LEGS)
def test_leg_passes_on_pristine_tree(pristine, leg):
    root, sha, runs = pristine
    run = runs[leg]
    assert run.rc == 0, run
    check_artifacts(run, sha)
    assert run.results["passed"] is True
    assert run.results["tests"] >= 5 and run.results["skipped"] == 0
    assert run.junit.find("testcase/failure") is None and run.junit.find("testcase/error") is None
    assert re.search(r"^test result: ok\. \d+ passed; 0 failed; 0 errors; 0 ignored", run.stdout, re.M)


def test_e2e_is_ignored_without_opt_in(pristine):
    root, sha, runs = pristine
    run = runs[E2E]
    assert run.rc == 0, run
    check_artifacts(run, sha)
    assert run.results["tests"] >= 1 and run.results["skipped"] == run.results["tests"]
    assert run.results["passed"] is True
    for case in run.junit.findall("testcase"):
        assert case.find("skipped").get("message") == "ignored: set PLASMA_E2E=1"
    assert "... ignored, ignored: set PLASMA_E2E=1" in run.stdout


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_switch_breaks_exactly_its_leg(tmp_path, fault):
    root = checkout(tmp_path / "platform")
    sha = flip(root, fault)
    runs = run_legs(root, LEGS)
    broken = FAULTS[fault]
    for leg, run in runs.items():
        check_artifacts(run, sha)
        if leg == broken:
            assert run.rc == 1, run
            assert run.results["passed"] is False
            assert run.results["failures"] + run.results["errors"] >= 1
            problems = run.junit.findall("testcase/failure") + run.junit.findall("testcase/error")
            assert problems and all(p.get("message") and p.text for p in problems)
            assert "test result: FAILED." in run.stdout
        else:
            assert run.rc == 0, f"{fault} must only break {broken}, but {leg} failed:\n{run!r}"


def test_unknown_leg_exits_2_and_lists_legs(tmp_path):
    root = checkout(tmp_path / "platform", with_git=False)
    proc = subprocess.run([PYTHON, "ci/run_leg.py", "no-such-leg"], cwd=root, env=base_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2
    for leg in LEGS + [E2E]:
        assert leg in proc.stderr
    listing = subprocess.run([PYTHON, "ci/run_leg.py", "--list"], cwd=root, env=base_env(),
                             capture_output=True, text=True)
    assert listing.returncode == 0 and listing.stdout.split() == LEGS + [E2E]
    assert not (root / "target").exists()


def test_default_out_dir_revision_and_clean_tree(tmp_path):
    root = checkout(tmp_path / "platform")
    sha = git(root, "rev-parse", "HEAD")
    run = run_leg(root, E2E)  # default --out: target/matrix/<leg>
    assert (root / "target" / "matrix" / E2E / "junit.xml").is_file()
    check_artifacts(run, sha)
    assert git(root, "status", "--porcelain") == "", "artifacts and caches must not dirty the checkout"
    # outside a git checkout the revision is null; runs from another cwd too
    plain = checkout(tmp_path / "plain", with_git=False)
    proc = subprocess.run([PYTHON, str(plain / "ci" / "run_leg.py"), E2E, "--out", str(tmp_path / "o")],
                          cwd=tmp_path, env=base_env(), capture_output=True, text=True)
    check_artifacts(LegRun(plain, E2E, tmp_path / "o", proc), None)


FAKE_QEMU = r'''#!/usr/bin/env python3
import sys
args = sys.argv[1:]
debugcon = args[args.index("-debugcon") + 1].split("file:", 1)[1]
with open(debugcon, "w") as fh:
    fh.write("MATRIXGATE-GUEST-OK MGID:%s\n")
sys.exit(%d)
'''

FAKE_QEMU_IMG = r'''#!/usr/bin/env python3
import sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
with open(args["of"], "wb") as fh:
    fh.write(b"\xeb\xfe" + bytes(510) + b"MGID:" + b"%s" + bytes(475))
'''


def fake_tools(tmp_path: Path, printed_id: str, image_id: str, status: int) -> dict:
    qemu, qemu_img, image = tmp_path / "fake-qemu", tmp_path / "fake-qemu-img", tmp_path / "guest.qcow2"
    qemu.write_text(FAKE_QEMU % (printed_id, status))
    qemu_img.write_text(FAKE_QEMU_IMG % image_id)
    image.write_bytes(b"QFI\xfb")
    for p in (qemu, qemu_img):
        p.chmod(0o755)
    return base_env(PLASMA_E2E="1", PLASMAVMC_QEMU_PATH=str(qemu), PLASMAVMC_QEMU_IMG_PATH=str(qemu_img),
                    PLASMAVMC_QCOW2_PATH=str(image), PLASMAVMC_ACCEL="tcg")


def test_e2e_enabled_checks_env_exit_status_and_image_id(tmp_path):
    root = checkout(tmp_path / "platform", with_git=False)
    missing = run_leg(root, E2E, tmp_path / "missing", env=base_env(PLASMA_E2E="1"))
    assert missing.rc == 1 and missing.results["errors"] >= 1, missing
    assert "PLASMAVMC_QEMU_PATH" in missing.junit.find("testcase/error").get("message")

    good, other = "0123456789abcdef" * 2, "f" * 32
    cases = [((good, good, 33), 0, None), ((other, good, 33), 1, "another image id"),
             ((good, good, 0), 1, "status 33")]
    for n, ((printed, stored, status), rc, why) in enumerate(cases):
        work = tmp_path / f"tools{n}"
        work.mkdir()
        run = run_leg(root, E2E, tmp_path / f"out{n}", env=fake_tools(work, printed, stored, status))
        assert run.rc == rc, run
        check_artifacts(run, None)
        if why:
            assert why in run.junit.find("testcase/failure").get("message"), run


@pytest.mark.skipif(not (PROVISION.is_file() and shutil.which("qemu-system-x86_64") and shutil.which("qemu-img")),
                    reason="needs QEMU and Matrix Gate's provision.py")
def test_e2e_boots_a_real_guest(tmp_path):
    prov = subprocess.run([PYTHON, str(PROVISION), "--out-dir", str(tmp_path / "img")], env=base_env(),
                          capture_output=True, text=True, timeout=120)
    assert prov.returncode == 0, prov.stderr
    info = json.loads(prov.stdout.strip().splitlines()[-1])
    root = checkout(tmp_path / "platform", with_git=False)
    env = base_env(PLASMA_E2E="1", PLASMAVMC_QEMU_PATH=shutil.which("qemu-system-x86_64"),
                   PLASMAVMC_QCOW2_PATH=info["qcow2_path"], PLASMAVMC_ACCEL="tcg")
    run = run_leg(root, E2E, tmp_path / "out", env=env)
    assert run.rc == 0, run
    check_artifacts(run, None)
    assert run.results["skipped"] == 0
    assert "MATRIXGATE-GUEST-OK MGID:" in run.junit.find("testcase[@name='test_vm_boots_from_the_provisioned_image']/system-out").text
