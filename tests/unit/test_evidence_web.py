"""Tests for the evidence file server (src/matrixgate/evidence_web.py)."""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import flask
import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    from matrixgate import evidence as ev
    from matrixgate.evidence_web import evidence_blueprint
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from matrixgate import evidence as ev
    from matrixgate.evidence_web import evidence_blueprint

SECRET = b"root:secret-outside-the-evidence-root\n"
NOW = datetime(2026, 12, 4, 16, 30, 12, tzinfo=timezone.utc)
NAME = "integration-matrix-20261204T163012Z"


def gate(result, tag):
    leg = ev.LegEvidence(
        name="chainfire-flaredb", result=result, worker="w1", capabilities={"kvm": True},
        started_at=1.0, complete_at=2.0, build_url="http://bb/1",
        files={"stdio/01-run-tests.log": b"ran 12 tests\n", "artifacts/junit.xml": b"<testsuite/>\n",
               "artifacts/report.html": b"<script>alert(1)</script>", "notes.txt": b"txt\n"})
    return ev.GateEvidence(tag=tag, revision="abc", repository="repo", gate_url=None, result=result,
                           started_at=1.0, complete_at=2.0, legs=[leg], skipped={},
                           blocking=[] if result == "success" else ["chainfire-flaredb"])


@pytest.fixture
def root(tmp_path):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "evidence"
    ev.write_evidence(root, gate("success", "v1.0.0"), now=NOW)
    ev.write_evidence(root, gate("failure", "v1.0.1"), now=NOW)  # -> NAME-2, the newest
    ev.write_evidence(root, gate("success", "v0.9.0"), now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    (root / NAME / "escape.log").symlink_to(tmp_path / "secret.txt")
    (root / "outside-link").symlink_to(tmp_path)
    (root / ".integration-matrix-20261204T170000Z.abc.tmp").mkdir()
    (root / ".integration-matrix-20261204T170000Z.abc.tmp" / "half.log").write_text("half")
    return root


@pytest.fixture
def client(root):
    app = flask.Flask(__name__)
    app.register_blueprint(evidence_blueprint(root))
    return app.test_client()


@pytest.mark.parametrize("rel, content_type", [
    ("manifest.json", "application/json"),
    ("release-notes.md", "text/markdown; charset=utf-8"),
    ("SHA256SUMS", "text/plain; charset=utf-8"),
    ("chainfire-flaredb/stdio/01-run-tests.log", "text/plain; charset=utf-8"),
    ("chainfire-flaredb/notes.txt", "text/plain; charset=utf-8"),
    ("chainfire-flaredb/artifacts/junit.xml", "application/xml"),
    ("chainfire-flaredb/artifacts/report.html", "application/octet-stream"),
])
def test_serves_files_with_content_type(client, root, rel, content_type):
    response = client.get(f"/evidence/{NAME}/{rel}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data == (root / NAME / rel).read_bytes()


def test_serves_bundle_as_gzip_attachment(client, root):
    response = client.get(f"/evidence/{NAME}.tar.gz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/gzip"
    assert response.headers["Content-Disposition"] == f"attachment; filename={NAME}.tar.gz"
    assert response.data == (root / f"{NAME}.tar.gz").read_bytes()


@pytest.mark.parametrize("url", [
    "/evidence/../secret.txt",
    "/evidence/%2e%2e/secret.txt",
    "/evidence/%2E%2E/secret.txt",
    "/evidence/..%2fsecret.txt",
    "/evidence/%2e%2e%2fsecret.txt",
    f"/evidence/{NAME}/../../secret.txt",
    f"/evidence/{NAME}/%2e%2e/%2e%2e/secret.txt",
    "/evidence/..%5csecret.txt",
    "/evidence/%252e%252e/secret.txt",
    "/evidence//etc/passwd",
    "/evidence/%2fetc/passwd",
    f"/evidence/{NAME}/escape.log",
    "/evidence/outside-link/secret.txt",
    "/evidence/.integration-matrix-20261204T170000Z.abc.tmp/half.log",
    "/evidence/secret.txt%00.log",
])
def test_traversal_is_refused(client, url):
    # Werkzeug answers '//' with a redirect to the merged path; follow it.
    response = client.get(url, follow_redirects=True)
    assert response.status_code in (403, 404)
    assert b"secret-outside" not in response.data and b"root:" not in response.data


@pytest.mark.parametrize("rel", [f"{NAME}/nope.log", "nope", NAME, f"{NAME}/chainfire-flaredb"])
def test_missing_files_and_directories_are_404(client, rel):
    assert client.get(f"/evidence/{rel}").status_code == 404


def test_listing_newest_first(client):
    response = client.get("/evidence/")
    assert response.status_code == 200
    listing = response.get_json()
    assert [e["name"] for e in listing] == [f"{NAME}-2", NAME, "integration-matrix-20260101T000000Z"]
    assert listing[0] == {"name": f"{NAME}-2", "bundle": f"{NAME}-2.tar.gz", "result": "failure",
                          "tag": "v1.0.1", "revision": "abc", "generated_at": "2026-12-04T16:30:12Z"}


def test_listing_limit(client):
    assert [e["name"] for e in client.get("/evidence/?limit=1").get_json()] == [f"{NAME}-2"]
    for bad in ("0", "-1", "x"):
        assert client.get(f"/evidence/?limit={bad}").status_code == 400


def test_listing_reports_broken_manifest(client, root):
    (root / NAME / "manifest.json").write_text("[1, 2")
    entry = next(e for e in client.get("/evidence/").get_json() if e["name"] == NAME)
    assert entry["result"] is None and entry["error"].startswith("unreadable manifest.json")


def test_listing_of_missing_root_is_empty(tmp_path):
    app = flask.Flask(__name__)
    app.register_blueprint(evidence_blueprint(tmp_path / "not-yet"))
    assert json.loads(app.test_client().get("/evidence/").data) == []
