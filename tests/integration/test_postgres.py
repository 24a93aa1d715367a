"""Moving a running gate from SQLite to PostgreSQL with ``buildbot copy-db`` (docs/scaling-out.md)."""

from __future__ import annotations

import subprocess

import pytest

from harness import BIN, GateMaster, cleanup, result_name, wait_gate
from test_faults import leg_yaml, matrix_file, published

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]


def test_copy_db_moves_results_and_the_release_ledger_to_postgresql(pg_server, repo, tmp_path):
    matrix = matrix_file(tmp_path, leg_yaml("alpha-beta", "git rev-parse HEAD")
                         + leg_yaml("beta-gamma", "git rev-parse HEAD"))
    master = GateMaster(tmp_path, repo, matrix=matrix)            # SQLite
    try:
        master.start()
        commit = repo.commit("release 6.0.0")
        repo.tag("v6.0.0")
        gate = wait_gate(master, "v6.0.0")[0]
        assert result_name(gate) == "success"
        master.stop(clean=True)

        url = pg_server.create_database("copied", driver="")      # plain postgresql://
        out = subprocess.run([str(BIN / "buildbot"), "copy-db", url, str(master.dir)], env=master.env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "Copy complete" in out.stdout, out.stdout + out.stderr
        master.env["BUILDBOT_DB_URL"] = url
        master.start()

        copied = master.get(f"builds/{gate['buildid']}")[0]
        assert result_name(copied) == "success"
        assert master.build_properties(gate["buildid"])["gate_revision"] == commit
        # a re-run on PostgreSQL reuses the legs that passed on SQLite, and the ledger came
        # along: the tag is not published a second time
        status, body = master.force("force-release-gate", user="rel", dry_run=False, branch="v6.0.0")
        assert status == 200, body
        again = wait_gate(master, "v6.0.0", count=2)[-1]
        assert result_name(again) == "success"
        assert [o["state"] for o in master.build_properties(again["buildid"])["gate_legs"]] == ["reused", "reused"]
        publishes = master.wait_builds("release-publish", 2, timeout=30)
        assert "not publishing twice" in publishes[-1]["state_string"]
        assert published(master) == ["v6.0.0"]
        assert pg_server.psql(url.rsplit("/", 1)[1], "select count(*) from builds") == str(
            len(master.get("builds")))
    finally:
        cleanup(master)
