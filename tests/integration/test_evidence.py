"""Release evidence from a real gate: downloaded over HTTP, unpacked, verified, compared.

A secret lives in the master's (and so the local workers') environment for the whole
module: it must not appear in any log or evidence file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

import pytest

from harness import GateMaster, PlatformRepo, cleanup, result_name, wait_gate

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-token-9f8e7d6c5b4a"
EVIDENCE = "plugins/wsgi_dashboards/gate/evidence/"


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    repo = PlatformRepo(root)
    master = GateMaster(root, repo, env={"PLATFORM_API_TOKEN": SECRET, "GATE_SECRET_DEPLOY_KEY": SECRET})
    master.start()
    repo.tag("v1.0.0")
    green = wait_gate(master, "v1.0.0")[0]
    repo.set_fault("DROP_BILLING_SAMPLES")
    repo.tag("v1.0.1")
    red = wait_gate(master, "v1.0.1")[0]
    yield master, green, red, root
    cleanup(master)


def fetch(master, path: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(f"{master.url}/{path}", timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def unpack(master, gate, tmp_path):
    evidence = master.build_properties(gate["buildid"])["evidence"]
    status, headers, body = fetch(master, EVIDENCE + evidence["bundle"])
    assert status == 200 and headers["Content-Type"] == "application/gzip"
    bundle = tmp_path / evidence["bundle"]
    bundle.write_bytes(body)
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    return bundle, tmp_path / evidence["name"]


def test_green_gate_bundle_verifies_and_matches_the_rest_logs(gated, tmp_path):
    master, green, _, _ = gated
    assert result_name(green) == "success"
    bundle, directory = unpack(master, green, tmp_path)
    cli = [sys.executable, "-m", "matrixgate.cli", "evidence", "verify"]
    for target in (directory, bundle):
        out = subprocess.run([*cli, str(target)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=directory).returncode == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["tag"] == "v1.0.0" and manifest["result"] == "success"
    assert manifest["revision"] == master.build_properties(green["buildid"])["gate_revision"]
    legs = {leg["name"]: leg for leg in manifest["legs"]}
    assert set(legs) == {"chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight"}
    outcomes = {o["leg"]: o for o in master.build_properties(green["buildid"])["gate_legs"]}
    for name, leg in legs.items():
        assert leg["result"] == "success" and leg["worker"] == outcomes[name]["worker"]
        assert leg["capabilities"] and "capabilities" in leg["capabilities"]
        files = {f["path"]: f for f in leg["files"]}
        assert f"{name}/artifacts/target/matrix/{name}/junit.xml" in files
        # every stdio log in the evidence equals the REST API's raw download
        compared = 0
        for path in files:
            if not path.endswith("-stdio.log"):
                continue
            number = int(path.split("/")[-1].split("-")[0])
            raw = master.raw(f"api/v2/builds/{outcomes[name]['buildid']}/steps/{number}/logs/stdio/raw")
            assert (directory / path).read_bytes() == raw, path
            compared += 1
        assert compared >= 2, files
    notes = (directory / "release-notes.md").read_text()
    assert f"docs/evidence/{directory.name}/" in notes and "passed" in notes
    # the gate build links the bundle, the manifest and the notes
    urls = {u["name"] for s in master.build_steps(green["buildid"]) for u in s["urls"]}
    assert {"evidence bundle", "manifest.json", "release notes"} <= urls


def test_tampering_is_named_by_verify(gated, tmp_path):
    master, green, _, _ = gated
    _, directory = unpack(master, green, tmp_path)
    victim = next(directory.glob("chainfire-flaredb/logs/*-stdio.log"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    out = subprocess.run([sys.executable, "-m", "matrixgate.cli", "evidence", "verify", str(directory)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert str(victim.relative_to(directory)) in out.stdout


def test_red_gate_keeps_evidence_marked_failed(gated, tmp_path):
    master, _, red, _ = gated
    assert result_name(red) == "failure"
    _, directory = unpack(master, red, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["result"] == "failure" and manifest["blocking"] == ["creditservice-nightlight"]
    assert "FAILED" in (directory / "release-notes.md").read_text()


@pytest.mark.parametrize("path", ["../secrets/users", "..%2F..%2Fsecrets%2Fusers", "%2e%2e/%2e%2e/master.cfg",
                                  "/etc/passwd", "..%5c..%5csecrets"])
def test_paths_leaving_the_evidence_directory_are_refused(gated, path):
    master, _, _, _ = gated
    status, _, body = fetch(master, EVIDENCE + path)
    assert status in (400, 403, 404)
    assert b"pbkdf2" not in body and b"root:" not in body


def test_no_secret_in_any_log_or_evidence_file(gated):
    master, green, red, root = gated
    evidence_root = master.dir / "evidence"
    files = [p for p in evidence_root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        if path.suffix == ".gz":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        assert SECRET.encode() not in tar.extractfile(member).read(), member.name
        else:
            assert SECRET.encode() not in path.read_bytes(), path
    for build in master.get("builds") or []:
        for step in master.build_steps(build["buildid"]):
            for log in master.get(f"steps/{step['stepid']}/logs") or []:
                raw = master.raw(f"api/v2/logs/{log['logid']}/raw")
                assert SECRET.encode() not in raw, (build["buildid"], step["name"], log["slug"])
