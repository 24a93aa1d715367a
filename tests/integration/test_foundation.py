"""The foundation end to end: a real master, a forced leg, its result and log over REST."""

from __future__ import annotations

import pytest

from harness import result_name

pytestmark = pytest.mark.integration


def test_one_builder_per_enabled_leg_with_tags(master):
    builders = {b["name"]: b for b in master.get("builders")}
    assert set(builders) == {"release-gate", "release-publish", "chainfire-flaredb", "flaredb-plasmavmc",
                             "plasmavmc-creditservice", "creditservice-nightlight", "plasmavmc-e2e"}
    assert "tenant-e2e" not in builders  # enabled: false -> no builder
    assert builders["flaredb-plasmavmc"]["tags"] == ["matrix", "plasma"]
    assert builders["chainfire-flaredb"]["tags"] == ["matrix"]
    assert "Raft+Gossip" in builders["chainfire-flaredb"]["description"]


def test_forced_leg_runs_for_real_and_its_log_downloads(master, repo):
    status, body = master.force_leg("chainfire-flaredb", user="dev", dry_run=False,
                                revision=repo.head(), reason="foundation test")
    assert status == 200, body
    build = master.wait_builds("chainfire-flaredb", 1, timeout=90)[0]
    assert result_name(build) == "success", build["state_string"]
    props = master.build_properties(build["buildid"])
    assert props["got_revision"] == repo.head()
    log = master.stdio(build["buildid"], "raft+gossip write/read with failover")
    assert f"tested revision: {repo.head()}" in log
    assert "test result: ok" in log
    # logEnviron is off: the worker's environment (and any secret in it) is not in the log
    assert "environment:" not in log and "PATH=" not in log
    # the leg's artifacts reached the master
    artifacts = master.dir / "artifacts" / "chainfire-flaredb" / str(build["number"]) / "target/matrix/chainfire-flaredb"
    assert (artifacts / "junit.xml").read_text().startswith("<?xml")
    assert (artifacts / "results.json").is_file()
