"""Serve written release evidence over HTTP (a Flask blueprint).

Evidence holds logs and artifacts produced by builds, so everything served
here is treated as untrusted content: only regular files inside the evidence
root are served, never as HTML, and nothing outside the root is reachable.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import flask

from matrixgate.evidence import BUNDLE_SUFFIX, DIR_PREFIX, MANIFEST, SUMS

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
TEXT_PLAIN = "text/plain; charset=utf-8"
# Unknown artifacts are offered as downloads so a build-produced .html or .svg
# can never run script in the master's origin.
FALLBACK_TYPE = "application/octet-stream"
CONTENT_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".log": TEXT_PLAIN,
    ".txt": TEXT_PLAIN,
    ".xml": "application/xml",
}
EVIDENCE_NAME_RE = re.compile(
    "^" + re.escape(DIR_PREFIX) + r"(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?$")


def evidence_blueprint(evidence_root: Path) -> flask.Blueprint:
    """Blueprint serving GET /evidence/ (listing) and /evidence/<relpath>."""
    root = Path(os.path.realpath(evidence_root))
    bp = flask.Blueprint("matrixgate_evidence", __name__)

    @bp.get("/evidence/")
    def listing() -> flask.Response:
        limit = _limit(flask.request.args.get("limit"))
        return flask.jsonify([_summary(root, name) for name in _evidence_names(root)[:limit]])

    @bp.get("/evidence/<path:relpath>")
    def serve(relpath: str) -> flask.Response:
        target = _resolve(root, relpath)
        if target is None:
            flask.abort(404)
        return _send(target)

    return bp


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        flask.abort(400, description="limit must be a positive integer")
    return min(int(raw), MAX_LIMIT)


def _evidence_names(root: Path) -> list[str]:
    """Evidence directory names, newest first (-2, -3 … are newer than the
    unsuffixed name of the same second)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = EVIDENCE_NAME_RE.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.append((match["stamp"], int(match["n"] or 1), entry.name))
    return [name for *_, name in sorted(found, reverse=True)]


def _summary(root: Path, name: str) -> dict:
    bundle = name + BUNDLE_SUFFIX
    summary = {
        "name": name,
        "bundle": bundle if (root / bundle).is_file() else None,
        "result": None, "tag": None, "revision": None, "generated_at": None,
    }
    try:
        manifest = json.loads((root / name / MANIFEST).read_bytes())
        summary.update({key: manifest.get(key) for key in
                        ("result", "tag", "revision", "generated_at")})
    except (OSError, ValueError, AttributeError) as exc:
        # A broken directory is still listed: hiding it would hide tampering.
        summary["error"] = f"unreadable {MANIFEST}: {exc.__class__.__name__}"
    return summary


def _resolve(root: Path, relpath: str) -> Path | None:
    """The regular file *relpath* names inside *root*, or None.

    Werkzeug has already percent-decoded the path, so %2e%2e arrives as '..'.
    Hidden components are refused too: they are write_evidence's temporary
    directories, which are not evidence yet.
    """
    parts = relpath.split("/")
    if ("\\" in relpath or "\x00" in relpath
            or any(not p or p.startswith(".") for p in parts)):
        return None
    target = Path(os.path.realpath(root.joinpath(*parts)))
    # realpath resolves symlinks, so a link pointing outside fails here.
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def _send(target: Path) -> flask.Response:
    bundle = target.name.endswith(BUNDLE_SUFFIX)
    response = flask.send_file(target, as_attachment=bundle, download_name=target.name)
    # Set the header directly: Werkzeug would append a charset to
    # application/xml, overriding the encoding the XML declares itself.
    response.headers["Content-Type"] = _content_type(target.name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _content_type(name: str) -> str:
    if name == SUMS:
        return TEXT_PLAIN
    if name.endswith(BUNDLE_SUFFIX):
        return "application/gzip"
    return CONTENT_TYPES.get(Path(name).suffix.lower(), FALLBACK_TYPE)
