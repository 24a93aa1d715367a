"""BuildmasterConfig assembly (src/matrixgate/config.py), directly and through Buildbot's own
config loader (``FileLoader``) with the repository's master.cfg."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from buildbot.config.errors import ConfigErrors
from buildbot.config.master import FileLoader
from buildbot.process.properties import Properties
from buildbot.schedulers.basic import AnyBranchScheduler
from buildbot.schedulers.triggerable import Triggerable
from buildbot.test.util.config import ConfigErrorsMixin

from matrixgate import config, loader, routing, settings
from matrixgate.forcing import LegForceScheduler, MatrixForceScheduler

REPO = Path(__file__).resolve().parents[2]
MASTER_CFG = REPO / "master.cfg"
ENABLED = ["chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice", "creditservice-nightlight",
           "plasmavmc-e2e"]
PLASMA = {"flaredb-plasmavmc", "plasmavmc-creditservice", "plasmavmc-e2e"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    basedir = tmp_path_factory.mktemp("master")
    cfg = settings.from_env(basedir, {"GATE_REPO_URL": str(basedir / "platform.git")})
    matrix = loader.load_matrix(cfg.matrix_path)
    workers = loader.load_workers(cfg.workers_path)
    return SimpleNamespace(cfg=cfg, matrix=matrix, c=config.build_config(cfg, matrix, workers))


def builders(c):
    return {b.name: b for b in c["builders"]}


def test_a_builder_per_enabled_leg(built):
    names = [b.name for b in built.c["builders"]]
    assert names == ["release-gate", "release-publish", *ENABLED]
    assert "tenant-e2e" not in names


def test_builder_tags(built):
    by_name = builders(built.c)
    assert by_name["release-gate"].tags == ["gate"]
    assert by_name["release-publish"].tags == ["gate", "publish"]
    for name in ENABLED:
        assert by_name[name].tags == (["matrix", "plasma"] if name in PLASMA else ["matrix"]), name


def test_descriptions_come_from_the_matrix(built):
    by_name = builders(built.c)
    for name in ENABLED:
        assert by_name[name].description == built.matrix.leg(name).description
    assert by_name["flaredb-plasmavmc"].description == (
        "flaredb → plasmavmc: VM metadata durability across a flaredb leader switch (needs: kvm, qemu)")
    assert by_name["release-gate"].description.startswith("Release gate for tags matching v*: every leg (")
    assert ", ".join(ENABLED) in by_name["release-gate"].description


def test_requests_are_never_collapsed(built):
    assert built.c["collapseRequests"] is False
    assert all(b.collapseRequests is False for b in built.c["builders"])


def test_plasma_builders_list_only_kvm_qemu_workers(built):
    by_name = builders(built.c)
    for name in ENABLED:
        expected = ["local-kvm", "gate"] if name in PLASMA else ["local-kvm", "local-basic", "gate"]
        assert by_name[name].workernames == expected, name
    # gates run side by side on in-master workers (Buildbot: one build per builder and worker)
    assert by_name["release-gate"].workernames == ["gate"] + [f"gate_{i}" for i in range(2, 9)]
    assert by_name["release-publish"].workernames == ["gate"]
    assert {w.name for w in built.c["workers"]} >= {"gate", "gate_2", "gate_8"}


def test_gate_worker_on_leg_builders_takes_dry_runs_only(built):
    can_start = builders(built.c)["chainfire-flaredb"].canStartBuild
    gate = SimpleNamespace(worker=SimpleNamespace(name=routing.GATE_WORKER))
    real, dry = Properties(), Properties()
    dry.setProperty("dry_run", True, "test")
    assert can_start(None, gate, SimpleNamespace(properties=real)) is False
    assert can_start(None, gate, SimpleNamespace(properties=dry)) is True
    assert builders(built.c)["chainfire-flaredb"].nextWorker is routing.next_worker


def test_production_workers(tmp_path):
    cfg = settings.from_env(tmp_path, {"GATE_REPO_URL": "/srv/git/p.git",
                                       "GATE_WORKERS": "workers/production.example.yaml"})
    matrix, workers = config.load_data(cfg)
    by_name = builders(config.build_config(cfg, matrix, workers))
    assert by_name["plasmavmc-e2e"].workernames == ["kvm-1", "kvm-2", "gate"]
    assert by_name["chainfire-flaredb"].workernames == ["kvm-1", "kvm-2", "build-1", "gate"]
    built_workers = {w.workername: w for w in config.build_config(cfg, matrix, workers)["workers"]}
    assert sorted(n for n in built_workers if not routing.is_gate_slot(n)) == ["build-1", "gate", "kvm-1", "kvm-2"]


def test_global_settings(built):
    c = built.c
    assert c["buildbotNetUsageData"] is None
    assert c["protocols"] == {"pb": {"port": "tcp:9989:interface=127.0.0.1"}}
    assert c["www"]["port"] == "tcp:8010:interface=127.0.0.1"
    assert c["db"]["db_url"] == "sqlite:///state.sqlite"
    assert c["buildbotURL"] == c["titleURL"] == "http://localhost:8010/"
    assert [w.workername for w in c["workers"] if not routing.is_gate_slot(w.workername)] == [
        "gate", "local-kvm", "local-basic"]


def test_configured_ports(tmp_path):
    cfg = settings.from_env(tmp_path, {"GATE_REPO_URL": "/srv/git/p.git", "BUILDBOT_WEB_PORT": "8111",
                                       "BUILDBOT_WORKER_PORT": "9111",
                                       "BUILDBOT_DB_URL": "postgresql+psycopg://bb:pw@db/bb"})
    c = config.build_config(cfg, *config.load_data(cfg))
    assert c["www"]["port"] == "tcp:8111:interface=127.0.0.1"
    assert c["protocols"]["pb"]["port"] == "tcp:9111:interface=127.0.0.1"
    assert c["db"]["db_url"] == "postgresql+psycopg://bb:pw@db/bb"
    assert c["buildbotURL"] == "http://localhost:8111/"


def test_schedulers(built):
    scheds = {s.name: s for s in built.c["schedulers"]}
    expected = {"release-tags", "publish", "force-release-gate", "force-release-publish", "force-leg"}
    expected |= {f"leg-{leg}" for leg in ENABLED}
    assert set(scheds) == expected
    assert len(built.c["schedulers"]) == len(expected)
    assert isinstance(scheds["release-tags"], AnyBranchScheduler)
    assert scheds["release-tags"].builderNames == ["release-gate"]
    assert isinstance(scheds["publish"], Triggerable) and scheds["publish"].builderNames == ["release-publish"]
    for leg in ENABLED:
        assert isinstance(scheds[f"leg-{leg}"], Triggerable)
        assert scheds[f"leg-{leg}"].builderNames == [leg]
    # one force form for every enabled leg, in matrix order (a force runs the one it names)
    assert isinstance(scheds["force-leg"], LegForceScheduler)
    assert scheds["force-leg"].builderNames == ENABLED
    assert isinstance(scheds["force-release-gate"], MatrixForceScheduler)
    assert scheds["force-release-gate"].need_target is True
    assert "leg-tenant-e2e" not in scheds


def test_load_requires_a_repository(tmp_path):
    with pytest.raises(ConfigErrors) as info:
        config.load(tmp_path, {})
    assert info.value.errors == [
        "GATE_REPO_URL is not set: the gate needs the repository it gates (the demo launcher "
        "`matrixgate demo` sets it to the example platform)"]


# --- through Buildbot's own config loading --------------------------------------------------------

@pytest.fixture(scope="module")
def gated_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("platform")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


@pytest.fixture
def master_env(tmp_path, monkeypatch, gated_repo):
    for name in ("BUILDBOT_WEB_PORT", "BUILDBOT_WORKER_PORT", "BUILDBOT_DB_URL", "BUILDBOT_WEB_URL",
                 "GATE_MATRIX", "GATE_WORKERS", "GATE_SECRETS_DIR", "GATE_EVIDENCE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATE_REPO_URL", str(gated_repo))
    monkeypatch.setenv("MATRIXGATE_SKIP_LOCAL_PROBE", "1")
    monkeypatch.chdir(tmp_path)
    basedir = tmp_path / "master"
    basedir.mkdir()
    return basedir


def load_master(basedir):
    return FileLoader(str(basedir), str(MASTER_CFG)).loadConfig()


def test_master_cfg_loads(master_env):
    master = load_master(master_env)
    assert sorted(b.name for b in master.builders) == sorted(["release-gate", "release-publish", *ENABLED])
    assert master.collapseRequests is False
    assert master.buildbotNetUsageData is None
    assert master.www["port"] == "tcp:8010:interface=127.0.0.1"
    assert master.db.db_url == "sqlite:///state.sqlite"
    assert master.protocols == {"pb": {"port": "tcp:9989:interface=127.0.0.1"}}
    assert len(master.schedulers) == 5 + len(ENABLED)      # 3 forms, 2 more schedulers, a Triggerable per leg
    assert (master_env / "secrets").is_dir() and (master_env / "evidence").is_dir()
    # No probe ran (MATRIXGATE_SKIP_LOCAL_PROBE): no worker info was written.
    assert not (master_env / "workers").exists()


def test_master_cfg_in_the_master_dir(master_env):
    """`buildbot create-master` copies master.cfg next to the state: the same file loads there."""
    (master_env / "master.cfg").write_text(MASTER_CFG.read_text())
    master = FileLoader(str(master_env), "master.cfg").loadConfig()
    assert len(master.builders) == 2 + len(ENABLED)


class TestBrokenFiles(ConfigErrorsMixin):
    """Every problem of both files reaches `buildbot checkconfig` at once."""

    def test_every_problem_is_listed(self, master_env, monkeypatch):
        matrix = master_env.parent / "broken-matrix.yaml"
        matrix.write_text(textwrap.dedent("""\
            version: 1
            legs:
              - name: Broken_Leg
                components: [a, b]
                covers: x
                commands: []
              - name: vm
                components: [a, b]
                covers: x
                requires: [kvm, gpu]
                commands: [make]
                wait_for_worker: 30x
            """))
        workers = master_env.parent / "broken-workers.yaml"
        workers.write_text("version: 1\nworkers:\n  - name: gate\n    properties: {kvmm: true}\n    max_builds: 0\n")
        monkeypatch.setenv("GATE_MATRIX", str(matrix))
        monkeypatch.setenv("GATE_WORKERS", str(workers))
        with pytest.raises(ConfigErrors) as info:
            load_master(master_env)
        unsafe = ("is not a safe name: use lowercase letters, digits and '-', starting with a letter or "
                  "digit, at most 50 characters")
        assert info.value.errors == [
            f"broken-matrix.yaml:3: legs[0].name: 'Broken_Leg' {unsafe}",
            "broken-matrix.yaml:6: legs[0].commands: must list at least one command",
            "broken-matrix.yaml:10: legs[1].requires[1]: unknown capability 'gpu' (known: kvm, nested_virt, qemu)",
            "broken-matrix.yaml:12: legs[1].wait_for_worker: must be a duration (seconds, or like 90s, 30m, 2h), "
            "got '30x'",
            "broken-workers.yaml:3: workers[0].name: 'gate' is reserved for the master's own orchestration worker",
            "broken-workers.yaml:4: workers[0].properties.kvmm: unknown key 'kvmm' "
            "(allowed: kvm, nested_virt, qemu, arch, os, location, notes)",
            "broken-workers.yaml:5: workers[0].max_builds: must be at least 1, got 0",
        ]

    def test_one_problem(self, master_env, monkeypatch):
        matrix = master_env.parent / "m.yaml"
        matrix.write_text("version: 1\nlegs: []\n")
        monkeypatch.setenv("GATE_MATRIX", str(matrix))
        with self.assertRaisesConfigError("m.yaml:2: legs: must declare at least one leg"):
            load_master(master_env)

    def test_bad_setting(self, master_env, monkeypatch):
        monkeypatch.setenv("BUILDBOT_WEB_PORT", "eighty")
        with self.assertRaisesConfigError("BUILDBOT_WEB_PORT='eighty': not a port number"):
            load_master(master_env)

    def test_missing_repository(self, master_env, monkeypatch):
        monkeypatch.delenv("GATE_REPO_URL")
        with self.assertRaisesConfigError("GATE_REPO_URL is not set"):
            load_master(master_env)

    def test_long_command_name_is_a_schema_error(self, master_env, monkeypatch):
        matrix = master_env.parent / "long.yaml"
        matrix.write_text("version: 1\nlegs:\n  - name: a\n    components: [a, b]\n    covers: x\n"
                          f"    commands:\n      - name: {'n' * 51}\n        run: make\n")
        monkeypatch.setenv("GATE_MATRIX", str(matrix))
        with pytest.raises(ConfigErrors) as info:
            load_master(master_env)
        assert info.value.errors[0].startswith("long.yaml:7: legs[0].commands[0].name: ")


class TestCheckconfigCommand:
    """The real ``buildbot checkconfig`` command, as an operator runs it after editing a file."""

    @staticmethod
    def checkconfig(basedir: Path, env: dict) -> subprocess.CompletedProcess:
        run_env = {k: v for k, v in os.environ.items() if k != "MATRIXGATE_SKIP_LOCAL_PROBE"}
        run_env.update(env)
        return subprocess.run([str(Path(sys.executable).parent / "buildbot"), "checkconfig", str(MASTER_CFG)],
                              cwd=basedir, env=run_env, capture_output=True, text=True, timeout=120)

    def test_good_files(self, master_env, monkeypatch):
        monkeypatch.delenv("MATRIXGATE_SKIP_LOCAL_PROBE")
        out = self.checkconfig(master_env, {})
        assert out.returncode == 0, out.stderr
        assert "Config file is good!" in out.stdout
        # checkconfig starts nothing, so it does not probe the host for the local workers
        # (the master does, at start: tests/unit/test_workers.py, tests/integration)
        assert not (master_env / "workers").exists()

    def test_broken_file_names_file_line_key_and_problem(self, master_env, monkeypatch):
        matrix = master_env / "broken.yaml"
        matrix.write_text("version: 1\nlegs:\n  - name: a\n    components: [a, b]\n    covers: x\n"
                          "    commands: [make]\n    timeout: soon\n")
        out = self.checkconfig(master_env, {"GATE_MATRIX": str(matrix)})
        assert out.returncode == 1
        assert out.stderr.splitlines() == [
            "Configuration Errors:", "  broken.yaml:7: legs[0].timeout: must be an integer, got a string"]

    def test_yaml_syntax_error(self, master_env, monkeypatch):
        matrix = master_env / "syntax.yaml"
        matrix.write_text("version: 1\nlegs:\n  - name: a\n    components: [a, b\n    covers: x\n")
        out = self.checkconfig(master_env, {"GATE_MATRIX": str(matrix)})
        assert out.returncode == 1
        [header, message] = out.stderr.splitlines()
        assert message.startswith("  syntax.yaml:5: YAML syntax error: ")


def test_load_pauses_the_garbage_collector_and_restores_it(master_env, monkeypatch):
    import gc
    seen = []
    real_build = config.build_config
    monkeypatch.setattr(config, "build_config", lambda *a: seen.append(gc.isenabled()) or real_build(*a))
    assert gc.isenabled()
    config.load(master_env)
    assert seen == [False] and gc.isenabled()
    monkeypatch.setenv("BUILDBOT_WEB_PORT", "eighty")          # an error on the way out, too
    with pytest.raises(ConfigErrors):
        config.load(master_env)
    assert gc.isenabled()
    gc.disable()                                              # and a collector that was off stays off
    try:
        monkeypatch.delenv("BUILDBOT_WEB_PORT")
        config.load(master_env)
        assert not gc.isenabled()
    finally:
        gc.enable()
