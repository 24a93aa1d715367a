"""Leg plasmavmc-creditservice: VM admission control with credit
reservations, rollback on failure, and consistency under thread contention."""

import random
import sys
import threading
import unittest

from minicloud import chainfire as cf
from minicloud import creditservice as cs
from minicloud import flaredb as fdb
from minicloud import nightlight as nl
from minicloud import plasmavmc as pv

SMALL = {"vcpus": 1, "memory_mib": 256, "image": "img"}  # costs 3 credits
THREADS = 8
PER_THREAD = 200


def new_stack(balance=100, hosts=None, seed=0, metrics=None):
    cluster = cf.Cluster(3, seed=seed)
    db = fdb.FlareDB(cluster)
    credits = cs.CreditService(metrics=metrics)
    credits.open_account("acme", balance)
    vmc = pv.PlasmaVMC(db, credits=credits, metrics=metrics, hosts=hosts or {"h1": 10_000})
    return cluster, db, credits, vmc


class ContendedTestCase(unittest.TestCase):
    """Switch threads as often as the interpreter allows, so that races in
    check-then-act code actually interleave."""

    def setUp(self):
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)

    def tearDown(self):
        sys.setswitchinterval(self._interval)

    def run_threads(self, target):
        errors = []

        def wrapped(i):
            try:
                target(i)
            except BaseException as exc:  # surface worker crashes in the test
                errors.append(exc)

        threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]


class AdmissionTests(unittest.TestCase):
    def test_admission_charges_cost_and_denies_when_exhausted(self):
        _, db, credits, vmc = new_stack(balance=20)
        big = {"vcpus": 2, "memory_mib": 1024, "image": "img"}  # 4 + 4 = 8 credits
        self.assertEqual(pv.vm_cost(pv.validate_spec(big)), 8)
        vmc.create_vm("acme", big, vm_id="vm-1")
        vmc.create_vm("acme", big, vm_id="vm-2")
        self.assertEqual(credits.balance("acme"), 4)
        with self.assertRaises(pv.AdmissionDenied):
            vmc.create_vm("acme", big, vm_id="vm-3")
        self.assertIsNone(db.get(pv.TABLE, "vm-3"), "denied VM must not be recorded")
        vmc.create_vm("acme", {"vcpus": 1, "memory_mib": 512, "image": "img"}, vm_id="vm-4")  # 4 credits
        self.assertEqual(credits.balance("acme"), 0)
        self.assertEqual([e[2] for e in credits.ledger("acme")], ["vm-1", "vm-2", "vm-4"])
        self.assertEqual(credits.audit("acme", 20), [])

    def test_failed_placement_rolls_back_reservation(self):
        _, db, credits, vmc = new_stack(balance=50, hosts={"h1": 2})
        vmc.create_vm("acme", {"vcpus": 2, "memory_mib": 256, "image": "i"}, vm_id="vm-1")  # 5
        with self.assertRaises(pv.PlacementFailed):
            vmc.create_vm("acme", SMALL, vm_id="vm-2")
        self.assertEqual(credits.balance("acme"), 45)
        self.assertEqual(credits.held(), [])
        self.assertEqual(len(credits.ledger("acme")), 1)
        self.assertEqual(credits.audit("acme", 50), [])

    def test_metadata_store_outage_rolls_back_reservation(self):
        cluster, db, credits, vmc = new_stack(balance=30)
        db.retry_ticks = 15
        vmc.create_vm("acme", SMALL, vm_id="vm-1")
        leader = cluster.wait_for_leader()
        for nid in cluster.nodes:
            if nid != leader.id:
                cluster.crash(nid)
        with self.assertRaises((fdb.Unavailable, fdb.CommitUnknown)):
            vmc.create_vm("acme", SMALL, vm_id="vm-2")
        self.assertEqual(credits.balance("acme"), 27)
        self.assertEqual(credits.held(), [])
        self.assertEqual(vmc.free_vcpus(), {"h1": 9_999})
        self.assertEqual(credits.audit("acme", 30), [])

    def test_reservation_ends_exactly_once(self):
        credits = cs.CreditService()
        credits.open_account("t", 10)
        r = credits.reserve("t", 4, ref="a")
        credits.commit(r)
        with self.assertRaises(cs.ReservationClosed):
            credits.rollback(r)
        with self.assertRaises(cs.ReservationClosed):
            credits.commit(r)
        r2 = credits.reserve("t", 6, ref="b")
        with self.assertRaises(cs.InsufficientCredit):
            credits.reserve("t", 1)
        credits.rollback(r2)
        with self.assertRaises(cs.ReservationClosed):
            credits.commit(r2)
        self.assertEqual(credits.balance("t"), 6)
        credits.top_up("t", 4)
        self.assertEqual(credits.audit("t", 10), [])
        with self.assertRaises(cs.UnknownTenant):
            credits.reserve("nobody", 1)


class ContentionTests(ContendedTestCase):
    def test_concurrent_reservations_never_double_spend(self):
        for round_ in range(12):
            credits = cs.CreditService()
            initial = 2_000  # less than the ~4800 requested: many admissions are denied
            credits.open_account("acme", initial)
            admitted = [0] * THREADS
            lowest = [initial]
            stop = threading.Event()

            def monitor():
                while not stop.is_set():
                    lowest[0] = min(lowest[0], credits.balance("acme"))

            def worker(i):
                rng = random.Random(round_ * 1000 + i)
                for _ in range(PER_THREAD):
                    amount = rng.randint(1, 5)
                    try:
                        res = credits.reserve("acme", amount, ref=f"w{i}")
                    except cs.InsufficientCredit:
                        continue
                    if rng.random() < 0.25:
                        credits.rollback(res)  # the admitted work failed
                    else:
                        credits.commit(res)
                        admitted[i] += amount

            watcher = threading.Thread(target=monitor)
            watcher.start()
            try:
                self.run_threads(worker)
            finally:
                stop.set()
                watcher.join()
            final = credits.balance("acme")
            self.assertGreaterEqual(lowest[0], 0, "balance went negative")
            self.assertEqual(sum(admitted), initial - final,
                             f"round {round_}: admitted {sum(admitted)} credits but the balance only "
                             f"dropped by {initial - final} (lost update in the CAS)")
            self.assertEqual(credits.audit("acme", initial), [])

    def test_concurrent_vm_admissions_match_credits_and_metadata(self):
        for round_ in range(6):
            self._vm_admission_round(round_)

    def _vm_admission_round(self, round_):
        metrics = nl.Nightlight()
        hosts = {f"h{i:02d}": 24 for i in range(100)}
        initial = 3_000
        cluster, db, credits, vmc = new_stack(balance=initial, hosts=hosts, metrics=metrics, seed=round_)
        outcome = {"admitted": [0] * THREADS, "denied": [0] * THREADS, "failed": [0] * THREADS}

        def worker(i):
            rng = random.Random(round_ * 1000 + i)
            for n in range(PER_THREAD):
                spec = dict(SMALL, vcpus=rng.choice((1, 1, 2, 32)))  # 32 vcpus never fits a host
                try:
                    vmc.create_vm("acme", spec, vm_id=f"vm-{i}-{n}")
                    outcome["admitted"][i] += 1
                except pv.AdmissionDenied:
                    outcome["denied"][i] += 1
                except pv.PlacementFailed:
                    outcome["failed"][i] += 1

        self.run_threads(worker)
        vms = vmc.list_vms("acme")
        charged = sum(pv.vm_cost(vm.spec) for vm in vms)
        final = credits.balance("acme")
        self.assertEqual(len(vms), sum(outcome["admitted"]))
        self.assertGreater(sum(outcome["failed"]), 0)
        self.assertGreater(sum(outcome["denied"]), 0, "the workload should exhaust the credits")
        self.assertGreaterEqual(final, 0)
        self.assertEqual(charged, initial - final,
                         f"round {round_}: VMs worth {charged} credits exist but the balance "
                         f"dropped by {initial - final}")
        self.assertEqual(credits.charged_total("acme"), charged)
        self.assertEqual(credits.held(), [])
        self.assertEqual(credits.audit("acme", initial), [])
        self.assertEqual(metrics.counter("plasmavmc_admissions_total", result="admitted"), len(vms))
        self.assertEqual(sum(vmc.free_vcpus().values()), 2_400 - sum(vm.spec["vcpus"] for vm in vms))

if __name__ == "__main__":
    unittest.main()
