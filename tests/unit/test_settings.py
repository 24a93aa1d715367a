"""Settings from the environment (src/matrixgate/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrixgate import settings
from matrixgate.settings import Settings, SettingsError, from_env

REPO = Path(__file__).resolve().parents[2]


def test_project_root_is_the_repository():
    assert settings.PROJECT_ROOT == REPO
    assert (settings.PROJECT_ROOT / "master.cfg").is_file()


def test_defaults(tmp_path):
    cfg = from_env(tmp_path, {})
    assert cfg.basedir == tmp_path.resolve()
    assert (cfg.web_port, cfg.worker_port) == (8010, 9989)
    assert (cfg.web_host, cfg.worker_host) == ("127.0.0.1", "127.0.0.1")
    assert cfg.db_url == "sqlite:///state.sqlite"
    assert cfg.web_url == "http://localhost:8010/"
    assert cfg.repo_url == ""
    assert cfg.matrix_path == REPO / "matrix" / "matrix.yaml"
    assert cfg.workers_path == REPO / "workers" / "workers.yaml"
    assert cfg.secrets_dir == tmp_path.resolve() / "secrets"
    assert cfg.evidence_dir == tmp_path.resolve() / "evidence"
    assert (cfg.poll_interval, cfg.wait_for_worker_override, cfg.wait_check_interval) == (60.0, 0.0, 15.0)
    assert cfg.sqlite_synchronous == "normal"


def test_reads_os_environ_when_no_mapping_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDBOT_WEB_PORT", "8123")
    assert from_env(tmp_path).web_port == 8123


def test_overrides(tmp_path):
    env = {
        "BUILDBOT_WEB_PORT": " 9000 ",
        "BUILDBOT_WEB_HOST": "0.0.0.0",
        "BUILDBOT_WORKER_PORT": "9999",
        "BUILDBOT_WORKER_HOST": "10.0.0.1",
        "BUILDBOT_DB_URL": "postgresql+psycopg://bb:pw@db/bb",
        "BUILDBOT_WEB_URL": "https://gate.example.org",
        "GATE_REPO_URL": "https://git.example.org/platform.git",
        "GATE_MATRIX": "matrix/example-platform.yaml",          # relative: to the repository
        "GATE_WORKERS": str(tmp_path / "w.yaml"),
        "GATE_SECRETS_DIR": "s",                                 # relative: to the master dir
        "GATE_EVIDENCE_DIR": str(tmp_path / "ev"),
        "GATE_POLL_INTERVAL": "0",
        "GATE_WAIT_FOR_WORKER": "2.5",
        "GATE_WAIT_CHECK_INTERVAL": "0.5",
        "GATE_SQLITE_SYNCHRONOUS": "FULL",
    }
    cfg = from_env(tmp_path, env)
    assert cfg.web_port == 9000 and cfg.web_host == "0.0.0.0"
    assert cfg.worker_port == 9999 and cfg.worker_host == "10.0.0.1"
    assert cfg.db_url == "postgresql+psycopg://bb:pw@db/bb"
    assert cfg.web_url == "https://gate.example.org/"          # a trailing slash is added
    assert cfg.repo_url == "https://git.example.org/platform.git"
    assert cfg.matrix_path == REPO / "matrix" / "example-platform.yaml"
    assert cfg.workers_path == tmp_path / "w.yaml"
    assert cfg.secrets_dir == tmp_path.resolve() / "s"
    assert cfg.evidence_dir == tmp_path / "ev"
    assert (cfg.poll_interval, cfg.wait_for_worker_override, cfg.wait_check_interval) == (0.0, 2.5, 0.5)
    assert cfg.sqlite_synchronous == "full"


def test_web_url_follows_the_port(tmp_path):
    assert from_env(tmp_path, {"BUILDBOT_WEB_PORT": "8011"}).web_url == "http://localhost:8011/"


def test_blank_values_mean_default(tmp_path):
    cfg = from_env(tmp_path, {"BUILDBOT_WEB_PORT": "  ", "BUILDBOT_DB_URL": "", "GATE_MATRIX": " "})
    assert cfg.web_port == 8010 and cfg.db_url == "sqlite:///state.sqlite"
    assert cfg.matrix_path == REPO / "matrix" / "matrix.yaml"


@pytest.mark.parametrize("name, value, message", [
    ("BUILDBOT_WEB_PORT", "http", "BUILDBOT_WEB_PORT='http': not a port number"),
    ("BUILDBOT_WEB_PORT", "0", "BUILDBOT_WEB_PORT='0': port out of range 1-65535"),
    ("BUILDBOT_WEB_PORT", "65536", "BUILDBOT_WEB_PORT='65536': port out of range 1-65535"),
    ("BUILDBOT_WORKER_PORT", "-1", "BUILDBOT_WORKER_PORT='-1': port out of range 1-65535"),
    ("BUILDBOT_WORKER_PORT", "99.5", "BUILDBOT_WORKER_PORT='99.5': not a port number"),
    ("GATE_POLL_INTERVAL", "1m", "GATE_POLL_INTERVAL='1m': not a number of seconds"),
    ("GATE_SLOT_IDLE", "-1", "GATE_SLOT_IDLE='-1': must be 0 or more seconds"),
    ("GATE_WAIT_FOR_WORKER", "nan", "GATE_WAIT_FOR_WORKER='nan': must be 0 or more seconds"),
    ("GATE_SQLITE_SYNCHRONOUS", "off", "GATE_SQLITE_SYNCHRONOUS='off': expected one of normal, full"),
])
def test_bad_values(tmp_path, name, value, message):
    with pytest.raises(SettingsError) as info:
        from_env(tmp_path, {name: value})
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://buildbot:s3cret@db.example:5432/bb", "postgresql+psycopg://buildbot:***@db.example:5432/bb"),
    ("postgresql://u:p@ss:w@rd@host/db", "postgresql://u:***@host/db"),   # '@' inside the password
    ("postgresql://justuser@host/db", "postgresql://justuser:***@host/db"),
    ("sqlite:///state.sqlite", "sqlite:///state.sqlite"),
])
def test_db_display_masks_passwords(tmp_path, url, shown):
    cfg = Settings(basedir=tmp_path, db_url=url)
    assert cfg.db_display == shown
    assert "s3cret" not in cfg.db_display and "p@ss" not in cfg.db_display


def test_settings_are_frozen(tmp_path):
    cfg = from_env(tmp_path, {})
    with pytest.raises(AttributeError):
        cfg.web_port = 1
