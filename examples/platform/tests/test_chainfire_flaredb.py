"""Leg chainfire-flaredb: consensus, membership and failover of chainfire,
and flaredb's table semantics on top of it."""

import random
import unittest

from minicloud import chainfire as cf
from minicloud import flaredb as fdb


def leaders_by_term(cluster, seen):
    """Record which node led each term; a second leader in a term is a bug."""
    for node in cluster.nodes.values():
        if node.alive and node.role == cf.LEADER:
            other = seen.setdefault(node.term, node.id)
            if other != node.id:
                raise AssertionError(f"two leaders in term {node.term}: {other} and {node.id}")


def read(cluster, key):
    """A client read: retried (advancing time) while an election is going on."""
    for _ in range(100):
        try:
            return cluster.get(key)
        except (cf.NoLeader, cf.NotLeader, cf.NoQuorum):
            cluster.tick()
    raise AssertionError(f"cluster never became readable for {key!r}")


class ElectionTests(unittest.TestCase):
    def test_one_leader_per_term_elected_by_majority(self):
        for size in (3, 4, 5):
            for seed in range(40):
                c = cf.Cluster(size, seed=seed)
                seen = {}
                for _ in range(25):
                    c.tick()
                    leaders_by_term(c, seen)
                leader = c.wait_for_leader(0)
                votes = sum(1 for n in c.nodes.values() if n.term == leader.term and n.voted_for == leader.id)
                self.assertGreaterEqual(votes, size // 2 + 1, f"size={size} seed={seed}")

    def test_minority_partition_cannot_elect_a_leader(self):
        for seed in range(10):
            c = cf.Cluster(5, seed=seed)
            old = c.wait_for_leader()
            c.put("before", "1")
            c.settle()
            others = [n for n in c.nodes if n != old.id]
            minority, majority = [old.id, others[0]], others[1:]
            c.partition(minority, majority)
            for t in range(40):
                c.tick()
                for nid in minority:
                    node = c.nodes[nid]
                    if node.role == cf.LEADER and node.term > old.term:
                        self.fail(f"seed {seed} tick {t}: minority node {nid} elected itself "
                                  f"in term {node.term} with only {len(minority)} of 5 nodes")
            new = c.wait_for_leader()
            self.assertIn(new.id, majority)
            for nid in minority:  # a write through the minority side is never acknowledged
                with self.assertRaises((cf.NotLeader, cf.CommitTimeout)):
                    c.nodes[nid].propose(("put", "split", "brain"))
            c.put("after", "2")
            c.heal()  # the minority's inflated terms force a new election
            c.settle(5)
            c.wait_for_leader()
            self.assertEqual(read(c, "before").value, "1")
            self.assertEqual(read(c, "after").value, "2")
            self.assertIsNone(read(c, "split"))

    def test_no_leader_without_quorum_and_writes_refused(self):
        c = cf.Cluster(3, seed=7)
        leader = c.wait_for_leader()
        c.put("a", "1")
        for nid in c.nodes:
            if nid != leader.id:
                c.crash(nid)
        with self.assertRaises(cf.CommitTimeout):
            c.put("b", "2")  # appended locally, no majority to commit it
        with self.assertRaises(cf.NoQuorum):
            c.get("a")  # cannot confirm leadership: a linearizable read is refused
        c.crash(leader.id)
        c.restart(leader.id)
        c.tick(40)
        self.assertIsNone(c.leader(), "a lone node out of 3 must never become leader")


class GossipTests(unittest.TestCase):
    def test_membership_detects_down_and_up(self):
        c = cf.Cluster(5, seed=3)
        c.wait_for_leader()
        c.crash("cf4")
        c.tick(cf.SUSPECT_TICKS + 4)
        for nid in ("cf1", "cf2", "cf3", "cf5"):
            self.assertEqual(c.membership(nid)["cf4"], "down", nid)
            self.assertEqual(list(c.membership(nid).values()).count("up"), 4)
        c.restart("cf4")
        c.tick(cf.SUSPECT_TICKS)
        for nid in c.nodes:
            self.assertEqual(set(c.membership(nid).values()), {"up"}, nid)


class FailoverTests(unittest.TestCase):
    def test_acknowledged_writes_survive_leader_crash(self):
        """Crash the leader right after it acknowledged a write: followers only
        learn the commit index with the next heartbeat, yet the write must survive."""
        for size in (3, 5):
            for seed in range(60):
                c = cf.Cluster(size, seed=seed)
                first = c.wait_for_leader()
                c.put("config/a", "1")
                c.settle()
                rev = c.put("config/b", "2")
                c.crash(first.id)
                second = c.wait_for_leader()
                self.assertNotEqual(second.id, first.id)
                kv = read(c, "config/b")
                self.assertIsNotNone(kv, f"size={size} seed={seed}: acknowledged write lost on failover")
                self.assertEqual((kv.value, kv.mod_rev), ("2", rev))
                self.assertEqual(read(c, "config/a").value, "1")
                c.restart(first.id)
                c.settle(4)
                self.assertEqual(c.nodes[first.id].sm.data["config/b"].value, "2")

    def test_randomized_histories_never_lose_acknowledged_writes(self):
        for seed in range(300):
            self._run_history(seed)

    def _run_history(self, seed):
        rng = random.Random(seed)
        c = cf.Cluster(rng.choice((3, 4, 5)), seed=seed)
        seen = {}
        acked, maybe = {}, {}
        crashed = set()
        c.wait_for_leader()
        for step in range(120):
            action = rng.random()
            key = f"k{rng.randrange(6)}"
            value = f"{seed}-{step}"
            if action < 0.55:
                try:
                    c.put(key, value)
                    acked[key] = value
                    maybe[key] = set()
                except cf.CommitTimeout:
                    maybe.setdefault(key, set()).add(value)
                except cf.NoLeader:
                    pass
            elif action < 0.65:
                leader = c.leader()
                if leader and len(crashed) + 1 <= (len(c.nodes) - 1) // 2:
                    c.crash(leader.id)  # right after acknowledged writes
                    crashed.add(leader.id)
            elif action < 0.72 and crashed:
                nid = rng.choice(sorted(crashed))
                c.restart(nid)
                crashed.discard(nid)
            elif action < 0.76:
                ids = list(c.nodes)
                rng.shuffle(ids)
                cut = rng.randrange(1, len(ids))
                c.partition(ids[:cut], ids[cut:])
            elif action < 0.82:
                c.heal()
            else:
                c.tick(rng.randrange(1, 4))
            leaders_by_term(c, seen)
        c.heal()
        for nid in sorted(crashed):
            c.restart(nid)
        c.wait_for_leader()
        c.settle(6)
        leaders_by_term(c, seen)
        for key, value in acked.items():
            kv = read(c, key)
            got = kv.value if kv else None
            self.assertIn(got, {value} | maybe.get(key, set()),
                          f"seed {seed}: {key} acknowledged as {value!r}, reads {got!r}")
        nodes = list(c.nodes.values())
        for a in nodes:  # state machine safety: committed prefixes never disagree
            for b in nodes:
                m = min(a.commit_index, b.commit_index)
                self.assertEqual(a.log[:m], b.log[:m], f"seed {seed}: {a.id} and {b.id} committed different entries")


class FlareDBTests(unittest.TestCase):
    def setUp(self):
        self.cluster = cf.Cluster(3, seed=11)
        self.db = fdb.FlareDB(self.cluster)

    def test_tables_are_namespaced_and_rows_versioned(self):
        db = self.db
        db.create_table("vm")
        db.create_table("vms")
        with self.assertRaises(fdb.TableExists):
            db.create_table("vm")
        self.assertEqual(db.tables(), ["vm", "vms"])
        db.insert("vm", "a", {"n": 1})
        db.insert("vms", "a", {"n": 100})
        with self.assertRaises(fdb.RowExists):
            db.insert("vm", "a", {"n": 2})
        self.assertEqual(db.update("vm", "a", {"n": 2}).version, 2)
        self.assertEqual(db.update("vm", "a", {"n": 3}, expected_version=2).version, 3)
        with self.assertRaises(fdb.VersionConflict):
            db.update("vm", "a", {"n": 4}, expected_version=2)
        row = db.get("vm", "a")
        self.assertEqual((row.data, row.version), ({"n": 3}, 3))
        self.assertEqual([r.data for r in db.scan("vms")], [{"n": 100}])
        db.delete("vm", "a", expected_version=3)
        self.assertIsNone(db.get("vm", "a"))
        self.assertEqual(db.insert("vm", "a", {"n": 5}).version, 1)
        with self.assertRaises(fdb.NoSuchTable):
            db.scan("nope")

    def test_rows_survive_failover_and_stay_writable(self):
        db = self.db
        db.create_table("accounts")
        for i in range(30):
            db.insert("accounts", f"acct-{i:02d}", {"balance": i})
        for i in range(0, 30, 3):
            db.update("accounts", f"acct-{i:02d}", {"balance": i * 10}, expected_version=1)
        for _ in range(3):
            leader = self.cluster.wait_for_leader()
            self.cluster.crash(leader.id)
            rows = db.scan("accounts")  # waits for the next leader
            self.assertEqual(len(rows), 30)
            for row in rows:
                i = int(row.pk.split("-")[1])
                self.assertEqual(row.data["balance"], i * 10 if i % 3 == 0 else i)
                self.assertEqual(row.version, 2 if i % 3 == 0 else 1)
            db.update("accounts", "acct-01", {"balance": 1}, expected_version=1)
            db.update("accounts", "acct-01", {"balance": 1}, expected_version=2)
            db.delete("accounts", "acct-01")
            db.insert("accounts", "acct-01", {"balance": 1})
            self.cluster.restart(leader.id)
            self.cluster.settle()

    def test_unavailable_without_quorum(self):
        db = fdb.FlareDB(self.cluster, retry_ticks=20)
        db.create_table("t")
        leader = self.cluster.wait_for_leader()
        for nid in self.cluster.nodes:
            if nid != leader.id:
                self.cluster.crash(nid)
        with self.assertRaises(fdb.Unavailable):
            db.get("t", "x")


if __name__ == "__main__":
    unittest.main()
