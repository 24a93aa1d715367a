"""What loading the configuration imports: the dashboard's Flask app and the change hooks'
handlers load on their first request, the evidence writer at the first gate's verdict, and
sqlite3 with SQLite's engine, not at ``buildbot checkconfig`` or start-up."""

from __future__ import annotations

import subprocess
import sys

from matrixgate import web

LAZY = ("flask", "werkzeug", "matrixgate.evidence_web", "matrixgate.hooks", "matrixgate.evidence", "sqlite3",
        "buildbot.www.hooks.github", "buildbot.www.hooks.gitlab")


def test_building_the_config_imports_no_dashboard_or_hook_code(tmp_path):
    code = f"""
import sys
from matrixgate import config, settings
cfg = settings.from_env({str(tmp_path)!r}, {{"GATE_REPO_URL": "/srv/git/p.git"}})
c = config.build_config(cfg, *config.load_data(cfg))
assert c["www"]["plugins"]["wsgi_dashboards"] and c["www"]["change_hook_dialects"]["github"]
print(sorted(m for m in {LAZY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_landing_plugin_reads_this_package_entry_point(monkeypatch):
    assert web.landing_plugin() == {"matrixgate_landing": {}}            # installed (pip install -e .)
    monkeypatch.setattr(web, "_has_entry_point", lambda group, name: False)
    assert web.landing_plugin() == {}                                    # a stale install: no redirect


def test_has_entry_point():
    assert web._has_entry_point("buildbot.www", "matrixgate_landing")
    assert not web._has_entry_point("buildbot.www", "no-such-plugin")
    assert web._has_entry_point("console_scripts", "matrixgate")
