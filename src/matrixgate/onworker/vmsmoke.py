#!/usr/bin/env python3
"""Prove that QEMU can start a VM with a plasma leg's image.

Run on a worker as
``python3 vmsmoke.py --qemu PATH --image PATH [--accel kvm|tcg] [--allow-tcg]
[--timeout 60] [--json-out FILE] [--qemu-img PATH]``.
This file is downloaded on its own, so it uses only the standard library.

An image made by provision.py carries an id ("MGID:" + 32 hex digits) in
sector 1 and a boot sector that prints it.  Such an image is booted (mode
"boot"): the smoke passes only if QEMU exits with status 33 (isa-debug-exit)
and the guest printed "MATRIXGATE-GUEST-OK MGID:<id>" with the image's own
id, so a stale or foreign image cannot pass.  Any other image (a real one
given through PLASMAVMC_QCOW2_PATH) is only attached to a paused VM and
checked through QMP (mode "qmp"): the guest is not booted.  Both modes use
-snapshot, so the image is never modified.

stdout: a human summary line, then the result as one JSON line.  Exit status
0 on success, 1 on failure (with QEMU's own stderr), 2 on a usage error or
when TCG is asked for without --allow-tcg.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SECTOR = 512
ID_RE = re.compile(rb"MGID:([0-9a-f]{32})")
MARKER = "MATRIXGATE-GUEST-OK"
DISK_ERROR = "MATRIXGATE-GUEST-DISKERR"
BOOT_OK_STATUS = 33  # guest wrote 0x10 to isa-debug-exit: (0x10 << 1) | 1
DISK_ERROR_STATUS = 35  # guest wrote 0x11: its int 13h read failed
TOOL_TIMEOUT = 60


class SmokeError(Exception):
    """The smoke failed; the message is meant for the build log."""


def qemu_img_for(args):
    """qemu-img from --qemu-img, PLASMAVMC_QEMU_IMG_PATH, beside --qemu, or PATH."""
    if args.qemu_img:
        return args.qemu_img
    if os.environ.get("PLASMAVMC_QEMU_IMG_PATH"):
        return os.environ["PLASMAVMC_QEMU_IMG_PATH"]
    beside = os.path.join(os.path.dirname(os.path.abspath(args.qemu)), "qemu-img")
    if os.path.isfile(beside):
        return beside
    found = shutil.which("qemu-img")
    if not found:
        raise SmokeError("qemu-img not found (needed to read the image id); install the Debian package qemu-utils")
    return found


def read_image_id(qemu_img, image):
    """Return the hex id in sector 1 of the qcow2 image, or None if it has none."""
    with tempfile.TemporaryDirectory(prefix="vmsmoke-") as tmp:
        head = os.path.join(tmp, "head.raw")
        cmd = [qemu_img, "dd", "-f", "qcow2", "-O", "raw", f"if={image}", f"of={head}",
               f"bs={SECTOR}", "count=2"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SmokeError(f"cannot read {image} with qemu-img: {exc}") from exc
        if proc.returncode != 0:
            raise SmokeError(f"cannot read {image} with qemu-img dd: {proc.stderr.strip()}")
        with open(head, "rb") as f:
            data = f.read()
    match = ID_RE.match(data[SECTOR:])
    return match.group(1).decode() if match else None


def qemu_cmd(qemu, accel, image):
    """The common QEMU command line: a minimal PC booting only from `image`."""
    drive_file = image.replace(",", ",,")  # commas separate -drive options
    return [
        qemu, "-accel", accel, "-machine", "pc", "-m", "16",
        "-display", "none", "-nodefaults", "-no-reboot",
        "-snapshot",  # writes go to a temporary overlay, never to the image
        "-drive", f"file={drive_file},format=qcow2,if=ide,index=0",
    ]


def start_qemu(cmd):
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise SmokeError(f"cannot start QEMU {cmd[0]}: {exc}") from exc


def stop_qemu(proc):
    """Kill QEMU if it still runs and return its stderr."""
    if proc.poll() is None:
        proc.kill()
    _, stderr = proc.communicate()
    return stderr.strip()


def read_text(path):
    """Contents of the debugcon log; empty if the guest (or QEMU) never wrote it."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def boot_smoke(qemu, image, accel, timeout, image_id):
    """Boot the image and require the guest to report the image's own id."""
    with tempfile.TemporaryDirectory(prefix="vmsmoke-") as tmp:
        log = os.path.join(tmp, "debugcon.log")
        cmd = qemu_cmd(qemu, accel, image) + [
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-debugcon", f"file:{log}",
        ]
        started = time.monotonic()
        proc = start_qemu(cmd)
        try:
            _, stderr = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stderr, timed_out = stop_qemu(proc), True
        seconds = time.monotonic() - started
        output = read_text(log)
    marker = next((line for line in output.splitlines() if line.startswith(MARKER)), None)
    expected = f"{MARKER} MGID:{image_id}"
    result = {"ok": False, "mode": "boot", "accel": accel, "marker": marker, "image_id": image_id,
              "qemu_exit_status": proc.returncode, "seconds": round(seconds, 2)}
    name = os.path.basename(image)
    if timed_out:
        result["detail"] = f"guest did not finish within {timeout:g}s; QEMU killed. stderr: {stderr.strip() or '(none)'}"
    elif proc.returncode == BOOT_OK_STATUS and marker == expected:
        result.update(ok=True, detail=f"guest booted from {name} and reported MGID:{image_id}")
    elif proc.returncode == DISK_ERROR_STATUS or DISK_ERROR in output:
        result["detail"] = f"guest booted from {name} but could not read its id sector (int 13h failed)"
    elif marker is not None and marker != expected:
        result["detail"] = f"guest reported {marker!r}, expected {expected!r}: not the image given"
    else:
        result["detail"] = (f"QEMU exited with status {proc.returncode} (expected {BOOT_OK_STATUS}) "
                            f"without the guest marker. stderr: {stderr.strip() or '(none)'}")
    return result


class QMP:
    """Just enough of a QMP client for qmp_capabilities, query-block and quit."""

    def __init__(self, path, deadline):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(max(0.1, deadline - time.monotonic()))  # a hung QEMU must not hang us
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rw", encoding="utf-8")
        self.greeting = self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise EOFError("QEMU closed the QMP connection")
        return json.loads(line)

    def execute(self, command):
        self.file.write(json.dumps({"execute": command}) + "\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:  # asynchronous; not an answer to us
                continue
            if "error" in reply:
                raise SmokeError(f"QMP {command} failed: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def close(self):
        self.file.close()
        self.sock.close()


def connect_qmp(proc, path, deadline):
    """Connect once QEMU has created the socket; fail early if QEMU died."""
    while True:
        if proc.poll() is not None:
            raise EOFError("QEMU exited before QMP was ready")
        try:
            return QMP(path, deadline)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise TimeoutError("QMP socket did not appear") from None
            time.sleep(0.05)


def block_files(device):
    """All file names QEMU reports for a block device, overlay and backing chain."""
    inserted = device.get("inserted") or {}
    names = [inserted.get("file"), inserted.get("backing_file")]
    image = inserted.get("image")
    while image:
        names.append(image.get("filename"))
        image = image.get("backing-image")
    return [name for name in names if name]


def image_attached(devices, image):
    """True if some block device's file (or, under -snapshot, backing file) is `image`."""
    want = os.path.realpath(image)
    return any(os.path.realpath(name) == want
               for device in devices for name in block_files(device)
               if not name.startswith("json:"))


def qmp_check(proc, sock_path, image, deadline):
    """Ask the paused QEMU which images it has attached, then make it quit."""
    qmp = connect_qmp(proc, sock_path, deadline)
    try:
        qmp.execute("qmp_capabilities")
        attached = image_attached(qmp.execute("query-block") or [], image)
        qmp.execute("quit")
    finally:
        qmp.close()
    proc.wait(timeout=max(1, deadline - time.monotonic()))
    return attached


def qmp_smoke(qemu, image, accel, timeout):
    """Start QEMU paused with the image attached and check it through QMP."""
    result = {"ok": False, "mode": "qmp", "accel": accel, "marker": None, "image_id": None}
    with tempfile.TemporaryDirectory(prefix="vmsmoke-") as tmp:
        sock_path = os.path.join(tmp, "qmp.sock")
        cmd = qemu_cmd(qemu, accel, image) + ["-S", "-qmp", f"unix:{sock_path},server=on,wait=off"]
        started = time.monotonic()
        proc = start_qemu(cmd)
        try:
            attached, error = qmp_check(proc, sock_path, image, started + timeout), None
        except (OSError, EOFError, ValueError, subprocess.TimeoutExpired, SmokeError) as exc:
            attached, error = False, exc
        stderr = stop_qemu(proc)
    result.update(qemu_exit_status=proc.returncode, seconds=round(time.monotonic() - started, 2))
    name = os.path.basename(image)
    if error is not None:
        result["detail"] = f"QMP check failed: {error}. QEMU stderr: {stderr or '(none)'}"
    elif not attached:
        result["detail"] = f"QEMU started but query-block does not show {image} attached"
    elif proc.returncode != 0:
        result["detail"] = f"QEMU exited with status {proc.returncode} after quit. stderr: {stderr or '(none)'}"
    else:
        result.update(ok=True, detail=f"QEMU started a paused VM with {name} attached "
                                      "(QMP-only check: the guest was not booted, the image has no MGID)")
    return result


def summary_line(result, image):
    if result["ok"]:
        return f"VM smoke OK under {result['accel']}: {result['detail']}"
    return f"VM smoke FAILED under {result['accel']} for {image}: {result['detail']}"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Prove QEMU can start a VM with an image.")
    parser.add_argument("--qemu", required=True, help="qemu-system-x86_64 to run")
    parser.add_argument("--image", required=True, help="qcow2 image to boot or attach")
    parser.add_argument("--accel", choices=("kvm", "tcg"), default="kvm")
    parser.add_argument("--allow-tcg", action="store_true", help="the leg accepts software emulation")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before QEMU is killed")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    parser.add_argument("--qemu-img", help="qemu-img used to read the image id")
    return parser.parse_args(argv)


def run_smoke(args):
    if not os.path.isfile(args.image):
        raise SmokeError(f"image {args.image} does not exist")
    image_id = read_image_id(qemu_img_for(args), args.image)
    if image_id:
        return boot_smoke(args.qemu, args.image, args.accel, args.timeout, image_id)
    return qmp_smoke(args.qemu, args.image, args.accel, args.timeout)


def emit(result, args):
    line = json.dumps(result, sort_keys=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    print(summary_line(result, args.image))
    print(line)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    failed = {"ok": False, "mode": None, "accel": args.accel, "marker": None, "image_id": None,
              "qemu_exit_status": None, "seconds": 0.0}
    if args.accel == "tcg" and not args.allow_tcg:
        # A leg that needs KVM must not pass on slow emulation by accident.
        emit(dict(failed, detail="refusing --accel tcg: this leg does not allow TCG (no --allow-tcg)"), args)
        return 2
    try:
        result = run_smoke(args)
    except SmokeError as exc:
        result = dict(failed, detail=str(exc))
    emit(result, args)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
