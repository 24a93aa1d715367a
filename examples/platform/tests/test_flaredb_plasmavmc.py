"""Leg flaredb-plasmavmc: VM metadata kept by plasmavmc in flaredb, across
chainfire leader switches."""

import random
import unittest

from minicloud import chainfire as cf
from minicloud import flaredb as fdb
from minicloud import plasmavmc as pv

SMALL = {"vcpus": 1, "memory_mib": 256, "image": "debian-12.qcow2"}


def new_stack(seed=0, size=3):
    cluster = cf.Cluster(size, seed=seed)
    db = fdb.FlareDB(cluster)
    return cluster, db, pv.PlasmaVMC(db)


class LifecycleTests(unittest.TestCase):
    def test_lifecycle_transitions_and_versions(self):
        _, db, vmc = new_stack()
        vm = vmc.create_vm("acme", {"vcpus": 2, "memory_mib": 512, "image": "img"}, vm_id="vm-1")
        self.assertEqual((vm.state, vm.version, vm.spec["vcpus"]), (pv.CREATED, 1, 2))
        self.assertEqual(vmc.start_vm("vm-1").state, pv.RUNNING)
        with self.assertRaises(pv.InvalidTransition):
            vmc.delete_vm("vm-1")  # must be stopped first
        self.assertEqual(vmc.stop_vm("vm-1").version, 3)
        self.assertEqual(vmc.start_vm("vm-1").version, 4)
        vmc.stop_vm("vm-1")
        deleted = vmc.delete_vm("vm-1")
        self.assertEqual((deleted.state, deleted.version), (pv.DELETED, 6))
        with self.assertRaises(pv.InvalidTransition):
            vmc.start_vm("vm-1")
        row = db.get(pv.TABLE, "vm-1")
        self.assertEqual((row.data["state"], row.version), (pv.DELETED, 6))
        with self.assertRaises(pv.VMNotFound):
            vmc.get_vm("vm-404")
        with self.assertRaises(pv.VMSpecError):
            vmc.create_vm("acme", {"vcpus": 0, "memory_mib": 256, "image": "x"})
        with self.assertRaises(pv.VMSpecError):
            vmc.create_vm("acme", {"vcpus": 1, "memory_mib": 100, "image": "x"})

    def test_placement_respects_host_capacity_and_is_rebuilt_from_metadata(self):
        cluster, db, _ = new_stack(seed=2)
        vmc = pv.PlasmaVMC(db, hosts={"h1": 4, "h2": 4})
        for i in range(4):
            vmc.create_vm("t", {"vcpus": 2, "memory_mib": 256, "image": "i"}, vm_id=f"vm-{i}")
        with self.assertRaises(pv.PlacementFailed):
            vmc.create_vm("t", SMALL, vm_id="vm-x")
        self.assertIsNone(db.get(pv.TABLE, "vm-x"), "failed placement must leave no record")
        vmc.start_vm("vm-0")
        vmc.stop_vm("vm-0")
        vmc.delete_vm("vm-0")
        # a restarted manager rebuilds its placement from flaredb
        again = pv.PlasmaVMC(db, hosts={"h1": 4, "h2": 4})
        self.assertEqual(sum(again.free_vcpus().values()), 2)
        again.create_vm("t", {"vcpus": 2, "memory_mib": 256, "image": "i"}, vm_id="vm-4")
        with self.assertRaises(pv.PlacementFailed):
            again.create_vm("t", SMALL)

    def test_stale_writer_gets_version_conflict(self):
        _, db, vmc = new_stack(seed=3)
        vmc.create_vm("t", SMALL, vm_id="vm-1")
        seen = vmc.get_vm("vm-1")
        vmc.start_vm("vm-1")  # another manager moved it on
        with self.assertRaises(fdb.VersionConflict):
            db.update(pv.TABLE, "vm-1", {**db.get(pv.TABLE, "vm-1").data, "state": pv.DELETED},
                      expected_version=seen.version)
        self.assertEqual(vmc.get_vm("vm-1").state, pv.RUNNING)


class LeaderSwitchTests(unittest.TestCase):
    def test_vm_records_survive_leader_switches(self):
        for seed in range(30):
            cluster, db, vmc = new_stack(seed=seed)
            for i in range(12):
                vmc.create_vm("acme", SMALL, vm_id=f"vm-{i}")
                if i % 2:
                    vmc.start_vm(f"vm-{i}")
            cluster.settle()
            for round_ in range(3):
                old = cluster.wait_for_leader()
                cluster.crash(old.id)
                fresh = pv.PlasmaVMC(db)  # e.g. plasmavmc restarted elsewhere
                vms = {vm.id: vm for vm in fresh.list_vms()}
                self.assertEqual(len(vms), 12 + round_)
                for i in range(12):
                    self.assertEqual(vms[f"vm-{i}"].state, pv.RUNNING if i % 2 else pv.CREATED)
                self.assertNotEqual(cluster.leader().id, old.id)
                fresh.create_vm("acme", SMALL, vm_id=f"vm-new-{round_}")
                cluster.restart(old.id)
                cluster.settle()

    def test_metadata_write_cut_off_by_leader_switch_is_resynced(self):
        """The leader appends a VM's metadata and crashes before replicating it:
        the write's outcome is unknown to plasmavmc, which must make it durable
        on the new leader before acknowledging the operation."""
        for seed in range(40):
            cluster, db, vmc = new_stack(seed=seed)
            vmc.create_vm("acme", SMALL, vm_id="vm-a")
            cluster.settle()
            old = cluster.wait_for_leader()
            cluster.failpoints.arm("leader_crash_before_replicate")
            started = vmc.start_vm("vm-a")
            self.assertEqual(started.state, pv.RUNNING)
            self.assertFalse(cluster.nodes[old.id].alive)
            self.assertNotEqual(cluster.wait_for_leader().id, old.id)
            self.assertEqual(vmc.leader_switches_seen, 1)
            stored = pv.PlasmaVMC(db).get_vm("vm-a")
            self.assertEqual((stored.state, stored.version), (pv.RUNNING, started.version),
                             f"seed {seed}: acknowledged start of vm-a lost with the old leader")
            # the same for a brand-new record
            cluster.restart(old.id)
            cluster.settle()
            cluster.failpoints.arm("leader_crash_before_replicate")
            created = vmc.create_vm("acme", SMALL, vm_id="vm-b")
            self.assertEqual(pv.PlasmaVMC(db).get_vm("vm-b").version, created.version,
                             f"seed {seed}: acknowledged creation of vm-b lost with the old leader")

    def test_randomized_vm_workload_with_leader_switches(self):
        for seed in range(200):
            self._workload(seed)

    def _workload(self, seed):
        rng = random.Random(seed)
        cluster, db, vmc = new_stack(seed=seed)
        model = {}  # vm id -> (state, version) as acknowledged to the caller
        crashed = None
        for step in range(100):
            r = rng.random()
            if r < 0.3 or not model:
                vm = vmc.create_vm(f"t{rng.randrange(3)}", SMALL, vm_id=f"vm-{step}")
                model[vm.id] = (vm.state, vm.version)
            elif r < 0.8:
                vm_id = rng.choice(sorted(model))
                state = model[vm_id][0]
                if not pv.TRANSITIONS[state]:
                    continue
                target = rng.choice(sorted(pv.TRANSITIONS[state]))
                if rng.random() < 0.15 and crashed is None:
                    cluster.failpoints.arm("leader_crash_before_replicate")
                vm = vmc._transition(vm_id, target)
                model[vm_id] = (vm.state, vm.version)
            elif r < 0.9 and crashed is None:
                cluster.settle(1)
                crashed = cluster.wait_for_leader().id
                cluster.crash(crashed)
            else:
                cluster.settle(1)
            for node in cluster.nodes.values():  # failpoint crashes count too
                if not node.alive and crashed is None:
                    crashed = node.id
            if crashed is not None and rng.random() < 0.3:
                cluster.wait_for_leader()  # fail over first, then bring the node back
                cluster.settle(1)
                cluster.restart(crashed)
                crashed = None
        cluster.settle(2)
        stored = {vm.id: (vm.state, vm.version) for vm in pv.PlasmaVMC(db).list_vms()}
        self.assertEqual(stored, model, f"seed {seed}: flaredb disagrees with acknowledged VM states")


if __name__ == "__main__":
    unittest.main()
