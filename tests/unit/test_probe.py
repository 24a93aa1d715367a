"""Tests for the worker capability probe (src/matrixgate/onworker/probe.py)."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    from matrixgate.onworker import probe as probe_mod
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from matrixgate.onworker import probe as probe_mod

CPU_VM = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme sse2 vmx hypervisor\n"
CPU_METAL = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme sse2 svm\n"
KVM_OK = {"ok": True, "detail": "works", "api_version": 12, "error": None}
KVM_MISSING = {"ok": False, "detail": "missing", "api_version": None, "error": "missing"}


@pytest.fixture
def cpuinfo(tmp_path):
    def make(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return str(path)
    return make


@pytest.fixture
def sysfs(tmp_path):
    def make(module=None, value=None):
        root = tmp_path / "sys"
        (root / "module" / "kvm" / "parameters").mkdir(parents=True, exist_ok=True)
        if module:
            params = root / "module" / module / "parameters"
            params.mkdir(parents=True)
            (params / "nested").write_text(value + "\n")
        return str(root)
    return make


@pytest.fixture
def fake_qemu(tmp_path, monkeypatch):
    """Stand-in qemu-system-x86_64 and qemu-img that only answer --version."""
    def script(name, line):
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\necho '{line}'\n")
        path.chmod(0o755)
        return str(path)
    env = {
        "PLASMAVMC_QEMU_PATH": script("qemu-system-x86_64", "QEMU emulator version 7.2.22 (Debian)"),
        "PLASMAVMC_QEMU_IMG_PATH": script("qemu-img", "qemu-img version 7.2.22 (Debian)"),
        "PATH": "/nonexistent",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def fake_ioctl(api_version=12, create_errno=None):
    """An ioctl that answers like KVM without touching the real device."""
    def ioctl(fd, request, arg):
        if request == probe_mod.KVM_GET_API_VERSION:
            return api_version
        if create_errno:
            raise OSError(create_errno, os.strerror(create_errno))
        return os.open(os.devnull, os.O_RDONLY)  # stands in for the VM fd the probe closes
    return ioctl


# --- kvm ---------------------------------------------------------------------

def test_missing_device(tmp_path):
    result = probe_mod.check_kvm(str(tmp_path / "kvm"))
    assert result["ok"] is False
    assert result["error"] == "missing"
    assert "does not exist" in result["detail"]


def test_regular_file_is_not_kvm(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")
    result = probe_mod.check_kvm(str(device))
    assert (result["ok"], result["error"]) == (False, "not_kvm")
    assert "not a character device" in result["detail"] and "ENOTTY" in result["detail"]


def test_permission_denied_names_user_and_kvm_group(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")

    def denied(path, flags):  # root ignores chmod, so simulate EACCES
        raise PermissionError(errno.EACCES, "Permission denied", path)

    result = probe_mod.check_kvm(str(device), opener=denied)
    user = probe_mod.current_user()
    assert (result["ok"], result["error"]) == (False, "permission")
    assert f"as user {user}" in result["detail"]
    assert f"usermod -aG kvm {user}" in result["detail"]
    assert "kvm group" in result["detail"] and "log in again" in result["detail"]
    assert f"ls -l {device}" in result["detail"]


def test_wrong_api_version(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")
    result = probe_mod.check_kvm(str(device), ioctl=fake_ioctl(api_version=11))
    assert (result["ok"], result["error"], result["api_version"]) == (False, "api_version", 11)
    assert "expected 12" in result["detail"]


def test_create_vm_failure_reports_errno(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")
    result = probe_mod.check_kvm(str(device), ioctl=fake_ioctl(create_errno=errno.EBUSY))
    assert (result["ok"], result["error"], result["api_version"]) == (False, "create_vm", 12)
    assert "KVM_CREATE_VM failed: EBUSY" in result["detail"]


def test_working_kvm_with_fake_ioctl(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")
    result = probe_mod.check_kvm(str(device), ioctl=fake_ioctl())
    assert result == {"ok": True, "api_version": 12, "error": None, "detail": result["detail"]}


# --- nested virtualisation ---------------------------------------------------

@pytest.mark.parametrize("module,value,on", [
    ("kvm_intel", "Y", True), ("kvm_intel", "N", False), ("kvm_amd", "1", True), ("kvm_amd", "0", False),
])
def test_nested_param(cpuinfo, sysfs, module, value, on):
    result = probe_mod.check_nested(KVM_OK, sysfs(module, value), cpuinfo(CPU_VM))
    assert result["nested_param"] == value
    assert f"{module} nested={value}" in result["detail"]
    assert result["ok"] is True  # the functional test decides, not the parameter
    if on:
        assert result["fix"] is None
    else:
        option = module.replace("_", "-")
        assert f'boot.extraModprobeConfig = "options {option} nested=1";' in result["fix"]
        assert "reboot" in result["fix"]


def test_no_nested_param_means_paravirtualised(cpuinfo, sysfs):
    result = probe_mod.check_nested(KVM_OK, sysfs(), cpuinfo(CPU_VM))
    assert (result["ok"], result["hypervisor"], result["nested_param"], result["fix"]) == (True, True, None, None)
    assert "kvm_pvm" in result["detail"] and "functional KVM test decides" in result["detail"]


def test_bare_metal_has_kvm_but_no_nested(cpuinfo, sysfs):
    result = probe_mod.check_nested(KVM_OK, sysfs("kvm_amd", "1"), cpuinfo(CPU_METAL))
    assert (result["ok"], result["hypervisor"]) == (False, False)
    assert "bare metal" in result["detail"]


def test_vm_without_kvm_points_at_the_vm_host(cpuinfo, sysfs):
    result = probe_mod.check_nested(KVM_MISSING, sysfs(), cpuinfo(CPU_VM))
    assert (result["ok"], result["hypervisor"]) == (False, True)
    assert "host running this VM" in result["fix"] and "options kvm-intel nested=1" in result["fix"]


def test_unreadable_cpuinfo(tmp_path, sysfs):
    result = probe_mod.check_nested(KVM_MISSING, sysfs(), str(tmp_path / "nope"))
    assert (result["ok"], result["hypervisor"]) == (False, False)
    assert "cannot read" in result["detail"]


def test_probe_reports_nested_through_paths(tmp_path, cpuinfo, sysfs, fake_qemu):
    device = tmp_path / "kvm"
    device.write_text("")
    report = probe_mod.probe(str(device), sysfs("kvm_intel", "Y"), cpuinfo(CPU_VM), ioctl=fake_ioctl())
    assert report["capabilities"] == ["kvm", "nested_virt", "qemu"]
    assert report["usable"] is True


def test_env_overrides_paths(tmp_path, monkeypatch, fake_qemu):
    monkeypatch.setenv("MATRIXGATE_KVM_DEVICE", str(tmp_path / "envkvm"))
    monkeypatch.setenv("MATRIXGATE_CPUINFO", str(tmp_path / "nocpuinfo"))
    report = probe_mod.probe()
    assert str(tmp_path / "envkvm") in report["kvm"]["detail"]
    assert "cannot read" in report["nested_virt"]["detail"]


# --- qemu --------------------------------------------------------------------

def test_qemu_found_and_versioned(tmp_path, fake_qemu):
    report = probe_mod.probe(str(tmp_path / "nokvm"))
    assert report["qemu"]["ok"] and report["qemu_img"]["ok"]
    assert (report["qemu"]["version"], report["qemu_img"]["version"]) == ("7.2.22", "7.2.22")
    assert report["qemu"]["path"] == fake_qemu["PLASMAVMC_QEMU_PATH"]
    assert report["capabilities"] == ["qemu"] and report["usable"] is False


def test_qemu_missing_via_env(tmp_path, monkeypatch, fake_qemu):
    monkeypatch.setenv("PLASMAVMC_QEMU_PATH", "/nonexistent/qemu-system-x86_64")
    report = probe_mod.probe(str(tmp_path / "nokvm"))
    assert report["qemu"]["ok"] is False
    assert "PLASMAVMC_QEMU_PATH=/nonexistent/qemu-system-x86_64 does not exist" in report["qemu"]["detail"]
    assert "qemu-system-x86" in report["qemu"]["detail"]
    assert "qemu" not in report["capabilities"]


def test_qemu_img_missing_from_path(tmp_path, monkeypatch, fake_qemu):
    monkeypatch.delenv("PLASMAVMC_QEMU_IMG_PATH")
    report = probe_mod.probe(str(tmp_path / "nokvm"))
    assert report["qemu"]["ok"] is True and report["qemu_img"]["ok"] is False
    assert "qemu-utils" in report["qemu_img"]["detail"]
    assert "qemu" not in report["capabilities"]  # needs both tools


def test_broken_qemu_reports_its_stderr(tmp_path, monkeypatch, fake_qemu):
    broken = tmp_path / "broken-qemu"
    broken.write_text("#!/bin/sh\necho 'cannot load libfoo.so' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PLASMAVMC_QEMU_PATH", str(broken))
    report = probe_mod.probe(str(tmp_path / "nokvm"))
    assert report["qemu"]["ok"] is False and "cannot load libfoo.so" in report["qemu"]["detail"]


# --- main, output and exit codes ---------------------------------------------

def run_main(capsys, *argv):
    code = probe_mod.main(list(argv))
    return code, capsys.readouterr()


def test_main_json_shape_and_not_usable(tmp_path, capsys, fake_qemu):
    code, out = run_main(capsys, "--json", "--kvm-device", str(tmp_path / "kvm"))
    report = json.loads(out.out)
    assert code == 1
    assert set(report) == {"schema", "host", "user", "kvm", "nested_virt", "qemu", "qemu_img",
                           "capabilities", "usable"}
    assert report["schema"] == 1 and report["usable"] is False
    assert {"ok", "detail", "api_version"} <= set(report["kvm"])
    assert set(report["nested_virt"]) == {"ok", "hypervisor", "nested_param", "detail", "fix"}
    assert set(report["qemu"]) == set(report["qemu_img"]) == {"ok", "path", "version", "detail"}


def test_main_usable_exits_zero(tmp_path, capsys, monkeypatch, fake_qemu):
    monkeypatch.setattr(probe_mod, "check_kvm", lambda *args: dict(KVM_OK))
    code, out = run_main(capsys, "--json", "--cpuinfo", str(tmp_path / "nocpuinfo"))
    assert code == 0 and json.loads(out.out)["capabilities"] == ["kvm", "qemu"]


def test_main_probe_error_exits_two(capsys, monkeypatch):
    def explode(*args):
        raise RuntimeError("probe bug")
    monkeypatch.setattr(probe_mod, "check_kvm", explode)
    code, out = run_main(capsys, "--json")
    assert code == 2 and "probe bug" in out.err and out.out == ""


def test_human_summary(tmp_path, capsys, cpuinfo, sysfs, fake_qemu):
    code, out = run_main(capsys, "--kvm-device", str(tmp_path / "kvm"),
                         "--sysfs-root", sysfs("kvm_intel", "N"), "--cpuinfo", cpuinfo(CPU_VM))
    lines = out.out.splitlines()
    assert code == 1
    assert any(line.endswith("does not exist: the kvm module is not loaded, or virtualisation is off "
                             "in firmware or not passed to this VM") and "kvm:" in line for line in lines)
    assert any("qemu:" in line and "7.2.22" in line for line in lines)
    assert any(line.strip().startswith("fix:") and "options kvm-intel nested=1" in line for line in lines)
    assert "NOT usable" in lines[-1]


def test_write_info(tmp_path, capsys, fake_qemu):
    info = tmp_path / "worker" / "info"
    code, out = run_main(capsys, "--json", "--write-info", str(info), "--kvm-device", str(tmp_path / "kvm"))
    content = (info / "matrixgate-capabilities").read_text()
    assert code == 1
    assert content.count("\n") == 1 and content.endswith("\n")
    assert json.loads(content) == json.loads(out.out)
    assert os.listdir(info) == ["matrixgate-capabilities"]


def test_nested_kvm_check_wrapper(tmp_path, fake_qemu):
    proc = subprocess.run([str(REPO / "bin" / "nested-kvm-check"), "--json", "--kvm-device", str(tmp_path / "kvm")],
                          capture_output=True, text=True, env=dict(os.environ, PATH="/usr/bin:/bin:" + os.path.dirname(sys.executable)))
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["kvm"]["error"] == "missing"


def test_real_dev_kvm():
    report = probe_mod.probe(kvm_device="/dev/kvm")
    if not report["kvm"]["ok"]:
        pytest.skip(f"KVM not usable here: {report['kvm']['detail']}")
    assert report["kvm"]["api_version"] == 12
    assert "kvm" in report["capabilities"]
