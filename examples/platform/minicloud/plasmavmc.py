"""plasmavmc: VM manager whose VM metadata lives in flaredb.

A VM record (id, tenant, state, spec, host) is a row of the flaredb table
``vms``. State changes are optimistic: plasmavmc reads the row, checks the
transition is allowed, and writes the new state conditionally on the version
it read.

Admission: with a creditservice attached, creating a VM reserves its cost in
credits first; if anything afterwards fails (no host has room, the metadata
cannot be written) the reservation is rolled back, otherwise committed.

Leader switches: when flaredb reports that a metadata write was cut off by a
chainfire leader loss (outcome unknown), plasmavmc waits for the new leader,
re-reads the row and re-writes it unless the write already landed, so an
acknowledged VM operation is always durable in the new leader's log.

``launch_vm`` really boots a guest image under QEMU (used by the e2e leg).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from . import faults
from . import flaredb as fdb

TABLE = "vms"
CREATED, RUNNING, STOPPED, DELETED = "created", "running", "stopped", "deleted"
TRANSITIONS = {
    CREATED: {RUNNING, DELETED},
    RUNNING: {STOPPED},
    STOPPED: {RUNNING, DELETED},
    DELETED: set(),
}


class PlasmaError(Exception):
    pass


class VMSpecError(PlasmaError):
    pass


class VMNotFound(PlasmaError):
    pass


class InvalidTransition(PlasmaError):
    pass


class AdmissionDenied(PlasmaError):
    pass


class PlacementFailed(PlasmaError):
    pass


@dataclass(frozen=True)
class VM:
    id: str
    tenant: str
    state: str
    spec: dict
    host: str | None
    version: int

    @classmethod
    def from_row(cls, row: fdb.Row) -> "VM":
        d = row.data
        return cls(row.pk, d["tenant"], d["state"], d["spec"], d.get("host"), row.version)


def validate_spec(spec: dict) -> dict:
    try:
        vcpus = int(spec["vcpus"])
        memory = int(spec["memory_mib"])
        image = str(spec["image"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VMSpecError(f"bad spec {spec!r}: {exc}") from None
    if not 1 <= vcpus <= 32:
        raise VMSpecError(f"vcpus must be 1..32, got {vcpus}")
    if not 64 <= memory <= 65536 or memory % 64:
        raise VMSpecError(f"memory_mib must be a multiple of 64 in 64..65536, got {memory}")
    if not image:
        raise VMSpecError("image must be set")
    return {"vcpus": vcpus, "memory_mib": memory, "image": image}


def vm_cost(spec: dict) -> int:
    """Credits charged to admit a VM."""
    return spec["vcpus"] * 2 + spec["memory_mib"] // 256


def _canonical(data: dict) -> str:
    return json.dumps(data, sort_keys=True)


class PlasmaVMC:
    def __init__(self, db: fdb.FlareDB, credits=None, metrics=None, hosts: dict[str, int] | None = None):
        self.db = db
        self.credits = credits
        self.metrics = metrics
        self.hosts = dict(hosts or {"host-a": 64, "host-b": 64})  # host -> vcpus
        self._used = {h: 0 for h in self.hosts}
        self._place_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.leader_switches_seen = 0
        if TABLE not in db.tables():
            try:
                db.create_table(TABLE)
            except fdb.TableExists:
                pass
        self._reload_placement()

    def _reload_placement(self):
        for vm in self.list_vms():
            if vm.host in self._used and vm.state != DELETED:
                self._used[vm.host] += vm.spec["vcpus"]

    # -- metadata ------------------------------------------------------------
    def _persist(self, vm_id: str, data: dict, expected_version: int) -> int:
        """Durably write VM metadata (version 0 = new record); returns the new version."""
        while True:
            try:
                if expected_version == 0:
                    return self.db.insert(TABLE, vm_id, data).version
                return self.db.update(TABLE, vm_id, data, expected_version=expected_version).version
            except fdb.CommitUnknown:
                self.leader_switches_seen += 1
                if faults.SKIP_METADATA_FSYNC_ON_LEADER_SWITCH:
                    return expected_version + 1  # assume the old leader made it durable
                current = self.db.get(TABLE, vm_id)  # waits for the new leader
                if current is not None and current.version == expected_version + 1 \
                        and _canonical(current.data) == _canonical(data):
                    return current.version  # it did land before the switch
                current_version = current.version if current is not None else 0
                if current_version != expected_version:
                    raise fdb.VersionConflict(TABLE, vm_id, expected_version, current_version)
                # lost with the old leader: write it again

    def get_vm(self, vm_id: str) -> VM:
        row = self.db.get(TABLE, vm_id)
        if row is None:
            raise VMNotFound(vm_id)
        return VM.from_row(row)

    def list_vms(self, tenant: str | None = None) -> list[VM]:
        vms = [VM.from_row(r) for r in self.db.scan(TABLE)]
        return [vm for vm in vms if tenant is None or vm.tenant == tenant]

    # -- placement -----------------------------------------------------------
    def _place(self, vcpus: int) -> str:
        with self._place_lock:
            for host in sorted(self.hosts, key=lambda h: (self._used[h], h)):
                if self._used[host] + vcpus <= self.hosts[host]:
                    self._used[host] += vcpus
                    return host
        raise PlacementFailed(f"no host has {vcpus} free vcpus")

    def _release(self, host: str | None, vcpus: int):
        if host is None:
            return
        with self._place_lock:
            self._used[host] -= vcpus

    def free_vcpus(self) -> dict[str, int]:
        with self._place_lock:
            return {h: self.hosts[h] - self._used[h] for h in self.hosts}

    # -- lifecycle -----------------------------------------------------------
    def create_vm(self, tenant: str, spec: dict, vm_id: str | None = None) -> VM:
        spec = validate_spec(spec)
        vm_id = vm_id or f"vm-{tenant}-{next(self._ids)}"
        reservation = None
        if self.credits is not None:
            from .creditservice import InsufficientCredit

            try:
                reservation = self.credits.reserve(tenant, vm_cost(spec), ref=vm_id)
            except InsufficientCredit as exc:
                self._count("plasmavmc_admissions_total", result="denied")
                raise AdmissionDenied(str(exc)) from exc
        host = None
        try:
            host = self._place(spec["vcpus"])
            data = {"tenant": tenant, "state": CREATED, "spec": spec, "host": host}
            version = self._persist(vm_id, data, 0)
        except BaseException:
            self._release(host, spec["vcpus"])
            if reservation is not None:
                self.credits.rollback(reservation)
            self._count("plasmavmc_admissions_total", result="failed")
            raise
        if reservation is not None:
            self.credits.commit(reservation)
        self._count("plasmavmc_admissions_total", result="admitted")
        return VM(vm_id, tenant, CREATED, spec, host, version)

    def _transition(self, vm_id: str, new_state: str, **extra) -> VM:
        vm = self.get_vm(vm_id)
        if new_state not in TRANSITIONS[vm.state]:
            raise InvalidTransition(f"{vm_id}: {vm.state} -> {new_state}")
        data = {"tenant": vm.tenant, "state": new_state, "spec": vm.spec, "host": vm.host, **extra}
        version = self._persist(vm_id, data, vm.version)
        if new_state == DELETED:
            self._release(vm.host, vm.spec["vcpus"])
        self._count("plasmavmc_transitions_total", to=new_state)
        return VM(vm_id, vm.tenant, new_state, vm.spec, vm.host, version)

    def start_vm(self, vm_id: str) -> VM:
        return self._transition(vm_id, RUNNING)

    def stop_vm(self, vm_id: str, **extra) -> VM:
        return self._transition(vm_id, STOPPED, **extra)

    def delete_vm(self, vm_id: str) -> VM:
        return self._transition(vm_id, DELETED)

    def _count(self, name, **labels):
        if self.metrics is not None:
            self.metrics.inc(name, **labels)


# -- real VM launch (e2e) ----------------------------------------------------

@dataclass(frozen=True)
class LaunchResult:
    exit_status: int | None  # None when QEMU was killed on timeout
    guest_output: str  # what the guest wrote to I/O port 0xE9
    timed_out: bool
    stderr: str
    command: tuple
    duration_s: float


def launch_vm(qemu_path: str, image_path: str, accel: str | None = None, timeout: float = 60.0) -> LaunchResult:
    """Boot ``image_path`` (qcow2) under QEMU and collect what the guest reports.

    The guest talks through isa-debugcon (port 0xE9, captured to a file) and
    powers off through isa-debug-exit (iobase 0xf4): QEMU then exits with
    status (value << 1) | 1. ``-snapshot`` keeps the image unmodified.
    """
    accel = accel or os.environ.get("PLASMAVMC_ACCEL", "kvm")
    with tempfile.TemporaryDirectory(prefix="plasmavmc-") as tmp:
        debug_log = os.path.join(tmp, "debugcon.log")
        cmd = (
            qemu_path, "-accel", accel, "-machine", "pc", "-m", "16",
            "-display", "none", "-nodefaults", "-no-reboot", "-snapshot",
            "-drive", f"file={image_path},format=qcow2,if=ide,index=0",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-debugcon", f"file:{debug_log}",
        )
        started = time.monotonic()
        timed_out = False
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            status, timed_out = None, True
        duration = time.monotonic() - started
        try:
            with open(debug_log, "rb") as fh:
                guest = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            guest = ""
    return LaunchResult(status, guest, timed_out,
                        (err or b"").decode("utf-8", "replace") + (out or b"").decode("utf-8", "replace"),
                        cmd, round(duration, 3))
