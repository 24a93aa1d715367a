#!/usr/bin/env python3
"""Probe a worker (or VM host) for what Matrix Gate's VM legs need.

Run as ``python3 probe.py [--json] [--write-info DIR] [--kvm-device PATH]
[--sysfs-root PATH] [--cpuinfo PATH]``; the environment variables
MATRIXGATE_KVM_DEVICE, MATRIXGATE_SYSFS_ROOT and MATRIXGATE_CPUINFO set the
same paths when the options are not given.  This file is downloaded to
workers on its own, so it uses only the standard library.  It can also be
imported: ``from matrixgate.onworker import probe``.

Capabilities:
  kvm          /dev/kvm opens read-write, reports API version 12 and creates
               a VM.  This functional test is authoritative: module
               parameters and permission bits only explain a failure.
  nested_virt  this host is itself a VM (hypervisor cpu flag) and KVM works.
  qemu         qemu-system-x86_64 and qemu-img run and report a version.

``--write-info DIR`` also writes DIR/matrixgate-capabilities, the JSON on one
line: DIR is the Buildbot worker's info/ directory, whose files the master
reads as worker info (key "matrixgate-capabilities").

Exit status: 0 usable (kvm and qemu), 1 not usable, 2 the probe itself failed.
"""

import argparse
import errno
import fcntl
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import traceback

SCHEMA = 1
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12  # stable since Linux 2.6.22; anything else is not our KVM
VERSION_TIMEOUT = 15
INFO_FILE = "matrixgate-capabilities"
NESTED_MODULES = ("kvm_intel", "kvm_amd")
DEFAULTS = {"kvm_device": "/dev/kvm", "sysfs_root": "/sys", "cpuinfo": "/proc/cpuinfo"}
ENV_OVERRIDES = {"kvm_device": "MATRIXGATE_KVM_DEVICE", "sysfs_root": "MATRIXGATE_SYSFS_ROOT",
                 "cpuinfo": "MATRIXGATE_CPUINFO"}


def current_user():
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # e.g. a container uid without a passwd entry
        return str(uid)


# --- kvm ---------------------------------------------------------------------

def _kvm(ok, detail, error=None, api_version=None):
    # "error" names the failure for programs; "detail" explains it to people.
    return {"ok": ok, "detail": detail, "api_version": api_version, "error": error}


def _errno_text(exc):
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{name}: {exc.strerror or exc}"


def _permission_detail(device):
    user = current_user()
    return (f"permission denied opening {device} read-write as user {user}. Fix: add the user to "
            f"the kvm group (`usermod -aG kvm {user}`), log in again (or restart the worker "
            f"service) so the group applies, and check `ls -l {device}` shows group kvm with rw "
            f"access (crw-rw----)")


def check_kvm(device, opener=os.open, ioctl=fcntl.ioctl):
    """Open the KVM device, ask its API version and create (and drop) a VM."""
    try:
        is_char = stat.S_ISCHR(os.stat(device).st_mode)
    except FileNotFoundError:
        return _kvm(False, f"{device} does not exist: the kvm module is not loaded, or "
                           "virtualisation is off in firmware or not passed to this VM", "missing")
    try:
        fd = opener(device, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        return _kvm(False, _permission_detail(device), "permission")
    except OSError as exc:
        return _kvm(False, f"cannot open {device}: {_errno_text(exc)}", "open")
    try:
        return _kvm_ioctls(device, fd, is_char, ioctl)
    finally:
        os.close(fd)


def _kvm_ioctls(device, fd, is_char, ioctl):
    try:
        version = ioctl(fd, KVM_GET_API_VERSION, 0)
    except OSError as exc:
        if exc.errno == errno.ENOTTY:
            kind = "a character device but not KVM" if is_char else "not a character device"
            return _kvm(False, f"{device} is {kind} (KVM_GET_API_VERSION: ENOTTY)", "not_kvm")
        return _kvm(False, f"KVM_GET_API_VERSION on {device} failed: {_errno_text(exc)}", "api_version")
    if version != KVM_API_VERSION:
        return _kvm(False, f"{device} reports KVM API version {version}, expected {KVM_API_VERSION}",
                    "api_version", version)
    try:
        os.close(ioctl(fd, KVM_CREATE_VM, 0))
    except OSError as exc:
        return _kvm(False, f"{device} answers API version {version} but KVM_CREATE_VM failed: "
                           f"{_errno_text(exc)}", "create_vm", version)
    return _kvm(True, f"{device}: API version {version}, KVM_CREATE_VM works", None, version)


# --- nested virtualisation ---------------------------------------------------

def read_cpuinfo(path):
    """Return (flags, vendor_id) of the first CPU; (None, None) if unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, None
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    return (set(flags.group(1).split()) if flags else set()), (vendor.group(1) if vendor else None)


def read_nested_param(sysfs_root):
    """Return (module, value) of the first kvm_intel/kvm_amd nested parameter found."""
    for module in NESTED_MODULES:
        path = os.path.join(sysfs_root, "module", module, "parameters", "nested")
        try:
            with open(path) as f:
                return module, f.read().strip()
        except OSError:
            continue
    return None, None


def nixos_fix(module):
    option = module.replace("_", "-")
    return (f'NixOS: boot.extraModprobeConfig = "options {option} nested=1"; then nixos-rebuild '
            f"switch and reboot (or reload the module with no VM running: "
            f"modprobe -r {module} && modprobe {module})")


def _vendor_module(vendor):
    return "kvm_amd" if vendor == "AuthenticAMD" else "kvm_intel"


def check_nested(kvm, sysfs_root, cpuinfo):
    flags, vendor = read_cpuinfo(cpuinfo)
    hypervisor = bool(flags) and "hypervisor" in flags
    module, value = read_nested_param(sysfs_root)
    param_off = value is not None and value.upper() in ("N", "0")
    if hypervisor and kvm["ok"]:
        situation = "this host is a VM (hypervisor flag) and KVM works inside it: nested virtualisation works"
    elif hypervisor:
        situation = "this host is a VM (hypervisor flag) but KVM does not work inside it (see kvm)"
    elif kvm["ok"]:
        situation = "bare metal (no hypervisor flag): KVM works directly, nested virtualisation is not in play"
    elif flags is None:
        situation = f"cannot read {cpuinfo}, and KVM does not work"
    else:
        situation = "no hypervisor flag and KVM does not work"
    if module is None:
        param = ("no kvm_intel/kvm_amd nested parameter (paravirtualised KVM such as kvm_pvm has "
                 "none); the functional KVM test decides")
    else:
        param = f"{module} nested={value}"
    fix = None
    if param_off:
        fix = f"nested virtualisation is off on this host; {nixos_fix(module)}"
    elif hypervisor and kvm.get("error") == "missing":
        # No /dev/kvm inside a VM: the VM's host does not pass virtualisation on.
        fix = f"enable nested virtualisation on the host running this VM; {nixos_fix(_vendor_module(vendor))}"
    return {"ok": hypervisor and kvm["ok"], "hypervisor": hypervisor, "nested_param": value,
            "detail": f"{situation}; {param}", "fix": fix}


# --- qemu --------------------------------------------------------------------

def check_tool(env_var, name, package, environ):
    """Find a QEMU tool (env var first, then PATH) and read its version."""
    result = {"ok": False, "path": None, "version": None, "detail": ""}
    install = f"install the Debian package {package} (apt-get install {package})"
    path = environ.get(env_var)
    if path and not os.path.isfile(path):
        result["detail"] = f"{name} missing: {env_var}={path} does not exist; {install} or fix {env_var}"
        return result
    path = path or shutil.which(name, path=environ.get("PATH"))
    if not path:
        result["detail"] = f"{name} not found on PATH and {env_var} is not set; {install}"
        return result
    result["path"] = path
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["detail"] = f"{path} --version failed: {exc}"
        return result
    lines = proc.stdout.strip().splitlines()
    first = lines[0] if lines else ""
    match = re.search(r"version (\d+\.\d+(?:\.\d+)?)", first)
    if proc.returncode != 0 or not match:
        output = proc.stderr.strip() or first or "(no output)"
        result["detail"] = f"{path} --version failed (exit status {proc.returncode}): {output}"
        return result
    result.update(ok=True, version=match.group(1), detail=f"{path}: {first}")
    return result


# --- report ------------------------------------------------------------------

def probe(kvm_device=None, sysfs_root=None, cpuinfo=None, environ=None,
          opener=os.open, ioctl=fcntl.ioctl):
    """Probe this host; paths not given come from MATRIXGATE_* variables, then defaults."""
    environ = os.environ if environ is None else environ
    given = {"kvm_device": kvm_device, "sysfs_root": sysfs_root, "cpuinfo": cpuinfo}
    paths = {key: value or environ.get(ENV_OVERRIDES[key]) or DEFAULTS[key] for key, value in given.items()}
    kvm = check_kvm(paths["kvm_device"], opener, ioctl)
    nested = check_nested(kvm, paths["sysfs_root"], paths["cpuinfo"])
    qemu = check_tool("PLASMAVMC_QEMU_PATH", "qemu-system-x86_64", "qemu-system-x86", environ)
    qemu_img = check_tool("PLASMAVMC_QEMU_IMG_PATH", "qemu-img", "qemu-utils", environ)
    qemu_ok = qemu["ok"] and qemu_img["ok"]
    oks = {"kvm": kvm["ok"], "nested_virt": nested["ok"], "qemu": qemu_ok}
    return {
        "schema": SCHEMA,
        "host": socket.gethostname(),
        "user": current_user(),
        "kvm": kvm,
        "nested_virt": nested,
        "qemu": qemu,
        "qemu_img": qemu_img,
        "capabilities": [name for name, ok in oks.items() if ok],
        "usable": kvm["ok"] and qemu_ok,
    }


def write_info(info_dir, report):
    """Write the report where the Buildbot worker publishes it to the master."""
    os.makedirs(info_dir, exist_ok=True)
    path = os.path.join(info_dir, INFO_FILE)
    staging = path + ".tmp"
    with open(staging, "w") as f:
        f.write(json.dumps(report) + "\n")
    os.replace(staging, path)  # the worker never reads a half-written file
    return path


def _marks():
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
        return "✓", "✗"
    except (UnicodeEncodeError, LookupError):
        return "OK", "NO"


def human_summary(report):
    yes, no = _marks()
    lines = [f"Matrix Gate capability probe on {report['host']} (user {report['user']})"]
    for key in ("kvm", "nested_virt", "qemu", "qemu_img"):
        item = report[key]
        lines.append(f"{yes if item['ok'] else no} {key}: {item['detail']}")
        if item.get("fix"):
            lines.append(f"    fix: {item['fix']}")
    verdict = "usable" if report["usable"] else "NOT usable (needs kvm and qemu)"
    lines.append(f"{verdict}; capabilities: {', '.join(report['capabilities']) or 'none'}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Probe this host for KVM, nested virtualisation and QEMU.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--write-info", metavar="DIR", help=f"also write DIR/{INFO_FILE} (worker info dir)")
    parser.add_argument("--kvm-device", metavar="PATH", help="default $MATRIXGATE_KVM_DEVICE or /dev/kvm")
    parser.add_argument("--sysfs-root", metavar="PATH", help="default $MATRIXGATE_SYSFS_ROOT or /sys")
    parser.add_argument("--cpuinfo", metavar="PATH", help="default $MATRIXGATE_CPUINFO or /proc/cpuinfo")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = probe(args.kvm_device, args.sysfs_root, args.cpuinfo)
        if args.write_info:
            write_info(args.write_info, report)
    except Exception as exc:  # report any bug in the probe as such, not as "not usable"
        traceback.print_exc()
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else human_summary(report))
    return 0 if report["usable"] else 1


if __name__ == "__main__":
    sys.exit(main())
