"""Leg plasmavmc-e2e: boot a real VM under QEMU.

Like the platform's #[ignore] e2e tests these are ignored unless
PLASMA_E2E=1. When enabled they need:

  PLASMAVMC_QEMU_PATH      qemu-system-x86_64 binary
  PLASMAVMC_QCOW2_PATH     bootable guest image provisioned by Matrix Gate
                           (sector 0: boot sector, sector 1: "MGID:" + 32 hex)
  PLASMAVMC_ACCEL          optional, QEMU accelerator (default kvm; tcg works anywhere)
  PLASMAVMC_QEMU_IMG_PATH  optional, qemu-img binary (default: from PATH)
  PLASMAVMC_BOOT_TIMEOUT   optional, seconds (default 60)
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from minicloud import chainfire as cf
from minicloud import flaredb as fdb
from minicloud import plasmavmc as pv

ENABLED = os.environ.get("PLASMA_E2E") == "1"
IGNORED = "ignored: set PLASMA_E2E=1"
MARKER = re.compile(r"MATRIXGATE-GUEST-OK MGID:([0-9a-f]{32})\n")


def required_env(name, what):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"PLASMA_E2E=1 needs {name} ({what}), but it is not set")
    if not os.path.exists(value):
        raise RuntimeError(f"{name}={value}: no such file ({what})")
    return value


def image_id(image_path):
    """Read sector 1 of the qcow2 image and return the 32 hex digits of its MGID."""
    qemu_img = os.environ.get("PLASMAVMC_QEMU_IMG_PATH") or shutil.which("qemu-img")
    if not qemu_img:
        raise RuntimeError("qemu-img not found: set PLASMAVMC_QEMU_IMG_PATH or put it on PATH")
    with tempfile.TemporaryDirectory(prefix="plasmavmc-e2e-") as tmp:
        raw = os.path.join(tmp, "head.raw")
        proc = subprocess.run([qemu_img, "dd", "-f", "qcow2", "-O", "raw", f"if={image_path}",
                               f"of={raw}", "bs=512", "count=2"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"qemu-img dd failed ({proc.returncode}): {proc.stderr.strip()}")
        with open(raw, "rb") as fh:
            head = fh.read(1024)
    ident = head[512:549]
    if not ident.startswith(b"MGID:") or not re.fullmatch(rb"[0-9a-f]{32}", ident[5:]):
        raise AssertionError(f"sector 1 of {image_path} holds no MGID: {ident!r}")
    return ident[5:].decode()


@unittest.skipUnless(ENABLED, IGNORED)
class VMBootTests(unittest.TestCase):
    def setUp(self):
        self.qemu = required_env("PLASMAVMC_QEMU_PATH", "path to qemu-system-x86_64")
        self.image = required_env("PLASMAVMC_QCOW2_PATH", "bootable qcow2 image provisioned by Matrix Gate")
        self.accel = os.environ.get("PLASMAVMC_ACCEL", "kvm")
        self.timeout = float(os.environ.get("PLASMAVMC_BOOT_TIMEOUT", "60"))

    def test_vm_boots_from_the_provisioned_image(self):
        cluster = cf.Cluster(3, seed=1)
        vmc = pv.PlasmaVMC(fdb.FlareDB(cluster))
        vm = vmc.create_vm("e2e", {"vcpus": 1, "memory_mib": 64, "image": self.image}, vm_id="vm-e2e")
        expected_id = image_id(self.image)
        vmc.start_vm(vm.id)
        self.assertEqual(vmc.get_vm(vm.id).state, pv.RUNNING)

        result = pv.launch_vm(self.qemu, self.image, accel=self.accel, timeout=self.timeout)
        print(f"qemu: {' '.join(result.command)}")
        print(f"exit status {result.exit_status} after {result.duration_s}s; guest wrote {result.guest_output!r}")

        self.assertFalse(result.timed_out, f"guest did not power off within {self.timeout}s; "
                                           f"qemu stderr: {result.stderr.strip()[-500:]}")
        self.assertEqual(result.exit_status, 33,
                         f"expected isa-debug-exit status 33; qemu stderr: {result.stderr.strip()[-500:]}")
        match = MARKER.search(result.guest_output)
        self.assertIsNotNone(match, f"guest marker missing from debugcon output {result.guest_output!r}")
        self.assertEqual(match.group(1), expected_id,
                         "the guest reported another image id than sector 1 of the image holds")

        stopped = vmc.stop_vm(vm.id, exit_status=result.exit_status, guest_id=match.group(1))
        self.assertEqual(stopped.state, pv.STOPPED)
        row = vmc.db.get(pv.TABLE, vm.id)
        self.assertEqual((row.data["state"], row.data["guest_id"], row.version), (pv.STOPPED, expected_id, 3))

    def test_launch_reports_a_missing_qemu_binary(self):
        with self.assertRaises(FileNotFoundError):
            pv.launch_vm(os.path.join(tempfile.gettempdir(), "no-such-qemu"), self.image, timeout=5)


if __name__ == "__main__":
    unittest.main()
