"""Tests for provision.py and vmsmoke.py against the real QEMU of this machine.

The scripts run as the master runs them on a worker: `python3 <file>` in a
subprocess.  Tests skip (with the reason) when QEMU is not installed; the KVM
boot skips when the probe says KVM is not usable here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ONWORKER = REPO / "src" / "matrixgate" / "onworker"
try:
    from matrixgate.onworker import probe, provision
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from matrixgate.onworker import probe, provision

QEMU = shutil.which("qemu-system-x86_64")
QEMU_IMG = shutil.which("qemu-img")
pytestmark = pytest.mark.skipif(not (QEMU and QEMU_IMG),
                                reason="qemu-system-x86_64/qemu-img not installed (Debian: qemu-system-x86 qemu-utils)")


def clean_env(**extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLASMAVMC_")}
    env.update(extra)
    return env


def run_script(name, *args, env=None, timeout=60):
    cmd = [sys.executable, str(ONWORKER / name), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or clean_env(), timeout=timeout)


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sha256(path):
    return provision.sha256_of(str(path))


@pytest.fixture(scope="module")
def kvm_reason():
    """None if KVM is usable here, else why not."""
    report = probe.probe()
    return None if report["kvm"]["ok"] else report["kvm"]["detail"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("provision")
    proc = run_script("provision.py", "--out-dir", out, "--json-out", out / "provision.json")
    assert proc.returncode == 0, proc.stderr
    return {"proc": proc, "out": out, "result": last_json(proc)}


@pytest.fixture(scope="module")
def plain_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("explicit") / "real.qcow2"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def read_sectors(path, fmt="qcow2"):
    raw = Path(str(path) + ".head")
    subprocess.run([QEMU_IMG, "dd", "-f", fmt, "-O", "raw", f"if={path}", f"of={raw}", "bs=512", "count=2"],
                   check=True, capture_output=True)
    return raw.read_bytes()


def write_qcow2(path, sectors):
    raw = Path(str(path) + ".raw")
    raw.write_bytes(sectors)
    subprocess.run([QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    return path


# --- provision ---------------------------------------------------------------

def test_boot_sector_is_a_boot_sector():
    sector = provision.boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
    assert b"MATRIXGATE-GUEST-OK \x00" in sector and b"MATRIXGATE-GUEST-DISKERR\n\x00" in sector


def test_provision_creates_bootable_qcow2(image):
    result, out = image["result"], image["out"]
    qcow2 = out / "plasmavmc.qcow2"
    assert result["qcow2_path"] == str(qcow2) and result["provisioned"] is True
    assert result["qemu_path"] == QEMU and result["qemu_img_path"] == QEMU_IMG
    assert result["qemu_version"].count(".") == 2
    assert result["check"] == "No errors were found on the image."
    assert result["qcow2_sha256"] == sha256(qcow2)
    assert json.loads((out / "provision.json").read_text()) == result
    assert sorted(p.name for p in out.iterdir()) == ["plasmavmc.qcow2", "provision.json"]  # no temp files left
    info = json.loads(subprocess.run([QEMU_IMG, "info", "--output=json", str(qcow2)],
                                     capture_output=True, text=True, check=True).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * 1024 * 1024)
    head = read_sectors(qcow2)
    assert head[:512] == provision.boot_sector()
    assert head[512:549] == b"MGID:" + result["image_id"].encode()
    lines = image["proc"].stdout.splitlines()
    assert f"PLASMAVMC_QEMU_PATH={QEMU}" in lines and f"PLASMAVMC_QCOW2_PATH={qcow2}" in lines


def test_provision_uses_explicit_image(tmp_path, plain_image):
    proc = run_script("provision.py", "--out-dir", tmp_path, env=clean_env(PLASMAVMC_QCOW2_PATH=str(plain_image)))
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc)
    assert (result["qcow2_path"], result["provisioned"], result["image_id"]) == (str(plain_image), False, None)
    assert result["check"] == "No errors were found on the image."
    assert list(tmp_path.iterdir()) == []


def test_provision_fails_on_missing_explicit_image(tmp_path):
    proc = run_script("provision.py", "--out-dir", tmp_path, env=clean_env(PLASMAVMC_QCOW2_PATH="/nonexistent.qcow2"))
    assert proc.returncode == 1 and "PLASMAVMC_QCOW2_PATH=/nonexistent.qcow2 does not exist" in proc.stderr


def test_provision_rejects_explicit_image_that_fails_check(tmp_path):
    not_qcow2 = tmp_path / "disk.img"
    not_qcow2.write_bytes(b"\x00" * 4096)
    proc = run_script("provision.py", "--out-dir", tmp_path / "out", env=clean_env(PLASMAVMC_QCOW2_PATH=str(not_qcow2)))
    assert proc.returncode == 1
    assert "qemu-img check" in proc.stderr and "not in qcow2 format" in proc.stderr


@pytest.fixture
def broken_qemu(tmp_path):
    script = tmp_path / "qemu-system-x86_64"
    script.write_text("#!/bin/sh\necho 'qemu-system-x86_64: broken on purpose' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("qemu_path,message", [
    ("/nonexistent/qemu-system-x86_64", "PLASMAVMC_QEMU_PATH=/nonexistent/qemu-system-x86_64 does not exist"),
    (None, "qemu-system-x86_64: broken on purpose"),
])
def test_provision_fails_with_broken_qemu(tmp_path, broken_qemu, qemu_path, message):
    env = clean_env(PLASMAVMC_QEMU_PATH=qemu_path or str(broken_qemu))
    proc = run_script("provision.py", "--out-dir", tmp_path / "out", env=env)
    assert proc.returncode == 1 and message in proc.stderr
    assert message in last_json(proc)["error"]


# --- vmsmoke -----------------------------------------------------------------

def smoke(image_path, *args, qemu=QEMU, timeout=60):
    return run_script("vmsmoke.py", "--qemu", qemu, "--image", image_path, *args, timeout=timeout)


def assert_booted(proc, image, accel):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = last_json(proc)
    image_id = image["result"]["image_id"]
    assert (result["ok"], result["mode"], result["accel"]) == (True, "boot", accel)
    assert result["qemu_exit_status"] == 33
    assert result["image_id"] == image_id
    assert result["marker"] == f"MATRIXGATE-GUEST-OK MGID:{image_id}"
    assert proc.stdout.splitlines()[0] == (f"VM smoke OK under {accel}: guest booted from plasmavmc.qcow2 "
                                           f"and reported MGID:{image_id}")
    # -snapshot: booting must not change the image.
    assert sha256(image["result"]["qcow2_path"]) == image["result"]["qcow2_sha256"]


def test_smoke_boots_under_kvm(image, kvm_reason, tmp_path):
    if kvm_reason:
        pytest.skip(f"KVM not usable here: {kvm_reason}")
    json_out = tmp_path / "smoke.json"
    proc = smoke(image["result"]["qcow2_path"], "--json-out", json_out)
    assert_booted(proc, image, "kvm")
    assert json.loads(json_out.read_text()) == last_json(proc)


def test_smoke_boots_under_tcg_when_allowed(image):
    assert_booted(smoke(image["result"]["qcow2_path"], "--accel", "tcg", "--allow-tcg"), image, "tcg")


def test_tcg_refused_without_allow(image):
    proc = smoke(image["result"]["qcow2_path"], "--accel", "tcg")
    assert proc.returncode == 2
    assert "does not allow TCG" in proc.stdout and last_json(proc)["ok"] is False


def test_smoke_falls_back_to_qmp_for_explicit_image(plain_image, kvm_reason):
    args = ("--accel", "tcg", "--allow-tcg") if kvm_reason else ()
    before = sha256(plain_image)
    proc = smoke(plain_image, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = last_json(proc)
    assert (result["ok"], result["mode"], result["marker"], result["image_id"]) == (True, "qmp", None, None)
    assert "guest was not booted" in result["detail"] and result["qemu_exit_status"] == 0
    assert sha256(plain_image) == before


@pytest.mark.parametrize("explicit", [False, True], ids=["boot", "qmp"])
def test_smoke_fails_with_qemus_message(image, plain_image, broken_qemu, explicit):
    path = plain_image if explicit else image["result"]["qcow2_path"]
    proc = smoke(path, "--accel", "tcg", "--allow-tcg", qemu=broken_qemu)
    assert proc.returncode == 1
    assert "qemu-system-x86_64: broken on purpose" in last_json(proc)["detail"]
    assert proc.stdout.startswith("VM smoke FAILED under tcg")


def test_smoke_fails_with_nonexistent_qemu(image):
    proc = smoke(image["result"]["qcow2_path"], qemu="/nonexistent/qemu")
    assert proc.returncode == 1 and "No such file or directory" in last_json(proc)["detail"]


def test_smoke_reports_real_qemu_startup_error(image, tmp_path):
    # Real QEMU refusing to start (here: an unknown option) must be quoted.
    wrapper = tmp_path / "qemu"
    wrapper.write_text(f'#!/bin/sh\nexec {QEMU} -no-such-option "$@"\n')
    wrapper.chmod(0o755)
    proc = smoke(image["result"]["qcow2_path"], "--accel", "tcg", "--allow-tcg", qemu=wrapper)
    assert proc.returncode == 1 and "-no-such-option" in last_json(proc)["detail"]


def test_smoke_kills_a_hanging_guest(tmp_path):
    hang = b"\xeb\xfe".ljust(510, b"\x00") + b"\x55\xaa"  # jmp $
    path = write_qcow2(tmp_path / "hang.qcow2", hang + provision.id_sector("ab" * 16))
    proc = smoke(path, "--accel", "tcg", "--allow-tcg", "--timeout", "1")
    result = last_json(proc)
    assert proc.returncode == 1 and result["qemu_exit_status"] == -9
    assert "did not finish within 1s" in result["detail"]


def test_guest_reports_disk_error(tmp_path):
    # A one-sector disk has no sector 1, so the guest's int 13h read fails.
    disk = tmp_path / "one.raw"
    disk.write_bytes(provision.boot_sector())
    log = tmp_path / "debugcon.log"
    proc = subprocess.run([QEMU, "-accel", "tcg", "-machine", "pc", "-m", "16", "-display", "none",
                           "-nodefaults", "-no-reboot", "-drive", f"file={disk},format=raw,if=ide,index=0",
                           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-debugcon", f"file:{log}"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 35
    assert log.read_text() == "MATRIXGATE-GUEST-DISKERR\n"
