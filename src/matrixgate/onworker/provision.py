#!/usr/bin/env python3
"""Provision QEMU and a qcow2 image for a plasma leg.

Run on a worker as ``python3 provision.py --out-dir DIR [--json-out FILE]``.
This file is downloaded on its own, so it uses only the standard library.

QEMU is taken from PLASMAVMC_QEMU_PATH or PATH (qemu-system-x86_64),
qemu-img from PLASMAVMC_QEMU_IMG_PATH or PATH.  If PLASMAVMC_QCOW2_PATH is
set, that image is checked and used as is.  Otherwise DIR/plasmavmc.qcow2 is
created: a 64M qcow2 whose sector 0 is a tiny boot sector and whose sector 1
holds an image id ("MGID:" + 32 hex digits).  Booted by SeaBIOS, the guest
prints "MATRIXGATE-GUEST-OK MGID:<hex>" to the isa-debugcon port 0xE9 and
makes QEMU exit with status 33 through isa-debug-exit at port 0xF4, which
proves that a VM really ran from this very image (see vmsmoke.py).

stdout: the human lines PLASMAVMC_QEMU_PATH=... and PLASMAVMC_QCOW2_PATH=...,
then the result as one JSON line (also written to --json-out).  Exit status 0
on success; 1 on failure, with the message (including the failing tool's own
stderr) on stderr and as {"error": "..."} in place of the result.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid

SECTOR = 512
IMAGE_NAME = "plasmavmc.qcow2"
VIRTUAL_SIZE = "64M"
ID_PREFIX = b"MGID:"
TOOL_TIMEOUT = 60  # seconds; qemu-img on a tiny image takes well under one
MISSING_HINT = "install the Debian packages qemu-system-x86 and qemu-utils"

# The BIOS loads sector 0 to 0000:7C00 and jumps there with DL = boot drive.
ORIGIN = 0x7C00
ID_BUFFER = 0x7E00  # sector 1 is read just past the boot sector

# Hand-assembled 16-bit real-mode boot sector.  Each entry is a label
# ("name:") or (assembly, *parts); a part is raw machine code or a label
# reference ("rel8"/"rel16": jump displacement, "abs16": address).  A
# reference is always the last part of its instruction, so displacements
# are taken from the end of the instruction as the CPU does.
BOOT_PROGRAM = [
    ("cli", b"\xfa"),
    ("xor ax, ax", b"\x31\xc0"),
    ("mov ds, ax", b"\x8e\xd8"),
    ("mov es, ax", b"\x8e\xc0"),
    ("mov ss, ax", b"\x8e\xd0"),
    ("mov sp, 0x7c00", b"\xbc\x00\x7c"),  # stack grows down below the code
    ("sti", b"\xfb"),
    ("cld", b"\xfc"),  # lodsb/outsb walk forwards
    # int 13h AH=02h: read AL sectors at CHS (CH, DH, CL) of drive DL to ES:BX.
    ("mov ax, 0x0201", b"\xb8\x01\x02"),  # AH=02h read, AL=1 sector
    ("mov cx, 0x0002", b"\xb9\x02\x00"),  # cylinder 0, sector 2 (CHS counts from 1)
    ("xor dh, dh", b"\x30\xf6"),  # head 0; DL is still the BIOS boot drive
    ("mov bx, 0x7e00", b"\xbb\x00\x7e"),
    ("int 0x13", b"\xcd\x13"),
    ("jc disk_error", b"\x72", ("rel8", "disk_error")),  # CF=1: read failed
    ("mov si, msg_ok", b"\xbe", ("abs16", "msg_ok")),
    ("call puts", b"\xe8", ("rel16", "puts")),  # leaves DX = 0xE9
    ("mov si, 0x7e00", b"\xbe\x00\x7e"),
    ("mov cx, 37", b"\xb9\x25\x00"),  # "MGID:" + 32 hex digits
    ("rep outsb", b"\xf3\x6e"),  # CX bytes from DS:SI to port DX
    ("mov al, 0x0a", b"\xb0\x0a"),
    ("out dx, al", b"\xee"),
    ("mov al, 0x10", b"\xb0\x10"),  # QEMU exit status (0x10 << 1) | 1 = 33
    ("jmp exit", b"\xeb", ("rel8", "exit")),
    "disk_error:",
    ("mov si, msg_err", b"\xbe", ("abs16", "msg_err")),
    ("call puts", b"\xe8", ("rel16", "puts")),
    ("mov al, 0x11", b"\xb0\x11"),  # QEMU exit status (0x11 << 1) | 1 = 35
    "exit:",
    ("mov dx, 0x00f4", b"\xba\xf4\x00"),  # isa-debug-exit
    ("out dx, al", b"\xee"),
    "halt:",  # only reached if there is no isa-debug-exit device
    ("cli", b"\xfa"),
    ("hlt", b"\xf4"),
    ("jmp halt", b"\xeb", ("rel8", "halt")),
    "puts:",  # write the NUL-terminated string at DS:SI to port 0xE9
    ("mov dx, 0x00e9", b"\xba\xe9\x00"),  # isa-debugcon
    "puts_loop:",
    ("lodsb", b"\xac"),
    ("test al, al", b"\x84\xc0"),
    ("jz puts_done", b"\x74", ("rel8", "puts_done")),
    ("out dx, al", b"\xee"),
    ("jmp puts_loop", b"\xeb", ("rel8", "puts_loop")),
    "puts_done:",
    ("ret", b"\xc3"),
    "msg_ok:",
    ('db "MATRIXGATE-GUEST-OK ", 0', b"MATRIXGATE-GUEST-OK \x00"),
    "msg_err:",
    ('db "MATRIXGATE-GUEST-DISKERR", 10, 0', b"MATRIXGATE-GUEST-DISKERR\n\x00"),
]

_REF_SIZE = {"rel8": 1, "rel16": 2, "abs16": 2}


class ProvisionError(Exception):
    """A failure with a message meant for the person reading the build log."""


def _part_size(part):
    return len(part) if isinstance(part, bytes) else _REF_SIZE[part[0]]


def assemble(program=BOOT_PROGRAM, origin=ORIGIN):
    """Resolve the label references of `program` and return its machine code."""
    labels, addr = {}, origin
    for item in program:
        if isinstance(item, str):
            labels[item.rstrip(":")] = addr
        else:
            addr += sum(_part_size(part) for part in item[1:])
    code = bytearray()
    for item in program:
        if isinstance(item, str):
            continue
        for part in item[1:]:
            if isinstance(part, bytes):
                code += part
                continue
            kind, label = part
            size = _REF_SIZE[kind]
            value = labels[label]
            if kind != "abs16":
                value -= origin + len(code) + size
            # to_bytes raises OverflowError if a short jump is out of range.
            code += value.to_bytes(size, "little", signed=kind != "abs16")
    return bytes(code)


def boot_sector():
    code = assemble()
    if len(code) > SECTOR - 2:
        raise ProvisionError(f"boot code is {len(code)} bytes, more than fits in a sector")
    return code.ljust(SECTOR - 2, b"\x00") + b"\x55\xaa"


def id_sector(image_id):
    return (ID_PREFIX + image_id.encode("ascii")).ljust(SECTOR, b"\x00")


def find_tool(env_var, name, environ):
    """Path of a QEMU tool: from `env_var` if set, else from PATH."""
    path = environ.get(env_var)
    if path:
        if not os.path.isfile(path):
            raise ProvisionError(f"{env_var}={path} does not exist; {MISSING_HINT}")
        return path
    found = shutil.which(name, path=environ.get("PATH"))
    if not found:
        raise ProvisionError(f"{name} not found on PATH and {env_var} is not set; {MISSING_HINT}")
    return found


def run(cmd, what, ok_status=(0,)):
    """Run a tool; on failure raise with its own stderr so the log shows why."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"{what} failed: {exc}") from exc
    if proc.returncode not in ok_status:
        output = proc.stderr.strip() or proc.stdout.strip() or "(no output)"
        raise ProvisionError(f"{what} failed (exit status {proc.returncode}): {output}")
    return proc


def first_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def tool_version(path):
    line = first_line(run([path, "--version"], f"{path} --version").stdout)
    match = re.search(r"version (\d+\.\d+(?:\.\d+)?)", line)
    if not match:
        raise ProvisionError(f"{path} --version did not report a version: {line!r}")
    return match.group(1)


def check_image(qemu_img, path):
    """`qemu-img check` the image and return its summary line."""
    # Exit status 3 means leaked clusters only: wasted space, not corruption.
    proc = run([qemu_img, "check", "-f", "qcow2", path], f"qemu-img check {path}", ok_status=(0, 3))
    return first_line(proc.stdout)


def create_image(qemu_img, out_dir):
    """Create and check out_dir/plasmavmc.qcow2 with a fresh id; return (path, image_id, check)."""
    image_id = uuid.uuid4().hex
    final = os.path.join(out_dir, IMAGE_NAME)
    raw = final + ".raw.tmp"
    staging = final + ".tmp"
    try:
        with open(raw, "wb") as f:
            f.write(boot_sector() + id_sector(image_id))
        run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", raw, staging], "qemu-img convert")
        run([qemu_img, "resize", "-f", "qcow2", staging, VIRTUAL_SIZE], "qemu-img resize")
        check = check_image(qemu_img, staging)
        # Rename last so a half-made or failed image never sits under the final name.
        os.replace(staging, final)
    finally:
        for leftover in (raw, staging):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return final, image_id, check


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provision(out_dir, environ=None):
    environ = os.environ if environ is None else environ
    qemu = find_tool("PLASMAVMC_QEMU_PATH", "qemu-system-x86_64", environ)
    qemu_img = find_tool("PLASMAVMC_QEMU_IMG_PATH", "qemu-img", environ)
    qemu_version = tool_version(qemu)
    explicit = environ.get("PLASMAVMC_QCOW2_PATH")
    if explicit:
        if not os.path.isfile(explicit):
            raise ProvisionError(f"PLASMAVMC_QCOW2_PATH={explicit} does not exist")
        image, image_id = os.path.abspath(explicit), None
        check = check_image(qemu_img, image)
    else:
        os.makedirs(out_dir, exist_ok=True)
        image, image_id, check = create_image(qemu_img, os.path.abspath(out_dir))
    return {
        "qemu_path": qemu,
        "qemu_version": qemu_version,
        "qemu_img_path": qemu_img,
        "qcow2_path": image,
        "qcow2_sha256": sha256_of(image),
        "image_id": image_id,
        "provisioned": not explicit,
        "check": check,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Provision QEMU and a qcow2 image for a plasma leg.")
    parser.add_argument("--out-dir", required=True, help="where plasmavmc.qcow2 is created")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    return parser.parse_args(argv)


def emit(result, json_out):
    line = json.dumps(result, sort_keys=True)
    if json_out:
        with open(json_out, "w") as f:
            f.write(line + "\n")
    print(line)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = provision(args.out_dir)
    except ProvisionError as exc:
        print(f"provision: error: {exc}", file=sys.stderr)
        # The master reads the JSON, so the reason must be there too.
        emit({"error": str(exc)}, args.json_out)
        return 1
    print(f"PLASMAVMC_QEMU_PATH={result['qemu_path']}")
    print(f"PLASMAVMC_QCOW2_PATH={result['qcow2_path']}")
    emit(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
