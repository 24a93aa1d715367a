"""The release-gate dashboard: a Flask app under Buildbot's WSGI dashboards plugin.

Served at ``/plugins/wsgi_dashboards/gate/``; it also serves the evidence files
(``evidence/<path>``) from ``GATE_EVIDENCE_DIR`` and nothing outside it.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from .evidence_web import evidence_blueprint

DASHBOARD_NAME = "gate"


def create_app(evidence_root: Path) -> Flask:
    app = Flask("matrixgate_dashboard")
    app.register_blueprint(evidence_blueprint(evidence_root))

    @app.route("/index.html")
    def index():
        return "<h2>Release gate</h2><p>Dashboard coming up.</p>"

    return app


def plugin_config(evidence_root: Path) -> dict:
    return {"wsgi_dashboards": [{
        "name": DASHBOARD_NAME, "caption": "Release gate", "app": create_app(evidence_root),
        "order": 5, "icon": "shield-check",
    }]}
