"""flake.nix: it parses, and `nix flake check` passes offline against a stub nixpkgs.

The stub (tests/nix-stub/flake.nix) provides exactly the attributes flake.nix uses, as
plain derivations; the check evaluates the dev shells without building or downloading
anything.  The store is a throw-away chroot store under tmp_path, so neither /nix nor a
daemon is needed.  Where the nix commands are missing the tests are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLAKE = REPO / "flake.nix"
STUB = REPO / "tests" / "nix-stub" / "flake.nix"
FEATURES = ["--extra-experimental-features", "nix-command flakes"]

needs_instantiate = pytest.mark.skipif(shutil.which("nix-instantiate") is None,
                                       reason="nix-instantiate is not installed (Debian: nix-bin)")
needs_nix = pytest.mark.skipif(shutil.which("nix") is None, reason="nix is not installed (Debian: nix-bin)")


@pytest.fixture
def nixenv(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIX_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), XDG_STATE_HOME=str(home / ".local/state"))
    return env


@pytest.fixture
def flakes(tmp_path):
    """Copies of flake.nix and the stub in git-less directories (a git tree would be copied whole)."""
    flake, stub = tmp_path / "flake", tmp_path / "stub"
    flake.mkdir()
    stub.mkdir()
    shutil.copy(FLAKE, flake / "flake.nix")
    shutil.copy(STUB, stub / "flake.nix")
    return flake, stub


def nix(tmp_path, env, stub, *args, timeout=25):
    command = ["nix", *FEATURES, *args, "--offline", "--no-write-lock-file",
               "--store", str(tmp_path / "store"), "--option", "build-users-group", "",
               "--override-input", "nixpkgs", f"path:{stub}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@needs_instantiate
@pytest.mark.parametrize("path", [FLAKE, STUB], ids=["flake", "stub"])
def test_parses(path, nixenv):
    out = subprocess.run(["nix-instantiate", "--parse", str(path)], env=nixenv,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr


@needs_nix
def test_flake_check_offline(tmp_path, nixenv, flakes):
    flake, stub = flakes
    out = nix(tmp_path, nixenv, stub, "flake", "check", f"path:{flake}")
    assert out.returncode == 0, out.stderr


@needs_nix
def test_flake_check_fails_when_a_package_is_missing(tmp_path, nixenv, flakes):
    """The check is real: a stub without qemu_kvm makes it fail, naming the attribute."""
    flake, stub = flakes
    text = (stub / "flake.nix").read_text()
    assert "qemu_kvm = " in text
    (stub / "flake.nix").write_text(text.replace("qemu_kvm = ", "qemu_kvm_gone = "))
    out = nix(tmp_path, nixenv, stub, "flake", "check", f"path:{flake}")
    assert out.returncode != 0
    assert "qemu_kvm" in out.stderr


@needs_nix
def test_dev_shells(tmp_path, nixenv, flakes):
    flake, stub = flakes
    system = "x86_64-linux"

    def evaluate(attr):
        out = nix(tmp_path, nixenv, stub, "eval", "--json", f"path:{flake}#devShells.{system}.{attr}")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    default = evaluate("default.nativeBuildInputs")
    names = [path.split("-", 1)[1] for path in default]
    assert [n.split("-")[0] for n in names] == ["python3", "git", "qemu"]
    assert names[0].startswith("python3-3.11")
    assert not any("chromium" in n for n in names)
    browser = evaluate("browser.nativeBuildInputs")
    assert browser[:3] == default and "chromium" in browser[3] and "nodejs" in browser[4]
    # tests/browser finds the browser through MATRIXGATE_CHROMIUM (default /usr/bin/chromium): set
    # in the browser shell only, since an empty value would make it launch "." instead of skipping.
    assert evaluate("browser.MATRIXGATE_CHROMIUM").endswith("-chromium-131.0/bin/chromium")
    assert evaluate("browser.PLAYWRIGHT_NODEJS_PATH").endswith("-nodejs-20.18.1/bin/node")
    missing = nix(tmp_path, nixenv, stub, "eval", "--json",
                  f"path:{flake}#devShells.{system}.default.MATRIXGATE_CHROMIUM")
    assert missing.returncode != 0 and "MATRIXGATE_CHROMIUM" in missing.stderr

    hook = evaluate("default.shellHook")
    assert "pip install" in hook and "-e '.[test]'" in hook and ".venv" in hook
    check = subprocess.run(["bash", "-n"], input=hook, capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert evaluate("default.name") == "matrixgate"


@needs_nix
def test_shell_hook_bootstraps_the_venv_once(tmp_path, nixenv, flakes):
    """Runs the evaluated shellHook in a copy of the project with a fake python3/pip."""
    flake, stub = flakes
    out = nix(tmp_path, nixenv, stub, "eval", "--raw", f"path:{flake}#devShells.x86_64-linux.default.shellHook")
    assert out.returncode == 0, out.stderr
    hook = out.stdout
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "python3").write_text(
        '#!/bin/sh\n[ "$1 $2" = "-m venv" ] || exit 1\nmkdir -p "$3/bin"\n'
        'printf \'#!/bin/sh\\necho "$*" >> "$(dirname "$0")/../pip.log"\\n\' > "$3/bin/pip"\n'
        'printf \'#!/bin/sh\\n\' > "$3/bin/python"\nchmod +x "$3/bin/pip" "$3/bin/python"\n')
    (fakebin / "python3").chmod(0o755)
    env = dict(nixenv, PATH=f"{fakebin}:{os.environ['PATH']}", MATRIXGATE_NIX_LD_LIBRARY_PATH="/stub/lib",
               SOURCE_DATE_EPOCH="315532800")
    script = hook + '\necho "VENV=$VIRTUAL_ENV"\necho "LD=$LD_LIBRARY_PATH"\necho "SDE=${SOURCE_DATE_EPOCH-unset}"\n'
    for _ in range(2):
        run = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True,
                             timeout=10)
        assert run.returncode == 0, run.stderr
    assert f"VENV={project}/.venv" in run.stdout
    assert "LD=/stub/lib" in run.stdout and "SDE=unset" in run.stdout
    # pip ran once: the second entry found the stamp for this pyproject.toml.
    assert (project / ".venv" / "pip.log").read_text().splitlines() == [
        "install -q --disable-pip-version-check -e .[test]"]
    stamps = sorted(p.name for p in (project / ".venv").glob(".installed-*"))
    # The same stamps scripts/bootstrap.sh writes and checks, so it finds the venv ready.
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    assert stamps == [f".installed-{digest}", f".installed-{digest}[test]"]
