"""chainfire: a miniature replicated key-value cluster.

Everything runs in one process, but the protocol is the real thing in
miniature:

* Raft-style consensus: terms, randomized election timeouts, votes granted
  only to candidates whose log is at least as up to date as the voter's, a
  leader per term elected by a majority of the *configured* cluster,
  AppendEntries with log matching / conflict truncation, entries committed
  once a majority stores them (and only entries of the leader's own term are
  counted directly, earlier ones commit with them), a no-op entry appended by
  every new leader, and ReadIndex-style reads (the leader confirms with a
  majority before it answers).
* Gossip membership: every tick each live node bumps its heartbeat counter
  and exchanges its membership table with a few random peers; a member whose
  heartbeat has not advanced for ``SUSPECT_TICKS`` ticks is reported down.
* Failures: nodes crash (volatile state lost, term/vote/log kept like a disk)
  and restart, the network can be partitioned, and named failpoints can cut a
  leader off in the middle of a write.

Time is simulated: ``Cluster.tick()`` advances every node by one tick
(gossip round, leader heartbeats, election timers). Clients that wait for a
leader advance time by ticking. All public methods of ``Cluster`` are
serialized with one lock, so the cluster can be shared between threads.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from . import faults

FOLLOWER = "follower"
CANDIDATE = "candidate"
LEADER = "leader"

ELECTION_TIMEOUT_MIN = 4  # ticks without hearing a leader before campaigning
ELECTION_TIMEOUT_MAX = 8
SUSPECT_TICKS = 4  # gossip: heartbeat silent this long -> member is down
GOSSIP_FANOUT = 2


class ChainfireError(Exception):
    """Base class of chainfire errors."""


class NoLeader(ChainfireError):
    """No live node currently acts as leader."""


class NotLeader(ChainfireError):
    """The node asked is not the leader (``leader_hint`` may name one)."""

    def __init__(self, node_id, leader_hint=None):
        super().__init__(f"{node_id} is not the leader (hint: {leader_hint})")
        self.leader_hint = leader_hint


class NoQuorum(ChainfireError):
    """The leader could not confirm its leadership with a majority."""


class CommitTimeout(ChainfireError):
    """A proposal was appended by the leader but not acknowledged by a majority.

    The outcome is unknown: the entry may still be committed later by this
    leader or be discarded by the next one.
    """

    def __init__(self, index, term, reason):
        super().__init__(f"entry {index} (term {term}) not committed: {reason}")
        self.index = index
        self.term = term


class NodeDown(ChainfireError):
    """The node is crashed."""


class SafetyViolation(AssertionError):
    """Consensus safety broke: a committed entry was about to be overwritten.

    Never raised by a correct implementation; a node refuses instead of
    silently diverging (a real node would panic here).
    """


@dataclass(frozen=True)
class Entry:
    term: int
    op: tuple  # ("noop",) | ("put", key, value) | ("cas", key, expected_rev, value)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_rev: int  # log index that created the key
    mod_rev: int  # log index of the last modification
    version: int  # number of modifications since creation (1 = just created)


class StateMachine:
    """The replicated KV map; entries are applied in log order."""

    def __init__(self):
        self.data: dict[str, KeyValue] = {}
        self.applied_index = 0

    def apply(self, index: int, entry: Entry):
        assert index == self.applied_index + 1, (index, self.applied_index)
        self.applied_index = index
        op = entry.op
        kind = op[0]
        if kind == "noop":
            return None
        if kind == "put":
            _, key, value = op
            return self._write(index, key, value)
        if kind == "cas":
            _, key, expected_rev, value = op
            current = self.data.get(key)
            current_rev = current.mod_rev if current else 0
            if current_rev != expected_rev:
                return (False, current_rev)
            return (True, self._write(index, key, value))
        raise ValueError(f"unknown op {kind!r}")

    def _write(self, index, key, value):
        if value is None:  # delete
            self.data.pop(key, None)
            return index
        old = self.data.get(key)
        if old is None:
            self.data[key] = KeyValue(key, value, index, index, 1)
        else:
            self.data[key] = KeyValue(key, value, old.create_rev, index, old.version + 1)
        return index


class Node:
    """One chainfire member. Its RPC handlers are plain methods."""

    def __init__(self, cluster: "Cluster", node_id: str, config: list[str]):
        self.cluster = cluster
        self.id = node_id
        self.config = list(config)  # every member, including self
        self.alive = True
        # --- persistent state (survives crash/restart, like a disk) ---
        self.term = 0
        self.voted_for: str | None = None
        self.log: list[Entry] = []
        self.incarnation = 0
        # --- gossip state ---
        self.clock = 0
        self.heartbeat = (0, 0)
        self.members: dict[str, list] = {nid: [(0, 0), 0] for nid in self.config}
        self._reset_volatile()

    def __repr__(self):
        state = self.role if self.alive else "down"
        return f"<Node {self.id} {state} term={self.term} log={len(self.log)} commit={self.commit_index}>"

    # -- helpers -------------------------------------------------------------
    def _reset_volatile(self):
        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = 0
        self.sm = StateMachine()
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.results: dict[int, object] = {}
        self.idle_ticks = 0
        self.unacked_ticks = 0
        self.election_timeout = self._new_timeout()

    def _new_timeout(self):
        return self.cluster.rng.randint(ELECTION_TIMEOUT_MIN, ELECTION_TIMEOUT_MAX)

    @property
    def peers(self):
        return [nid for nid in self.config if nid != self.id]

    def majority(self):
        return len(self.config) // 2 + 1

    def last_log_index(self):
        return len(self.log)

    def last_log_term(self):
        return self.log[-1].term if self.log else 0

    def _term_at(self, index):
        return self.log[index - 1].term if index > 0 else 0

    def _call(self, peer_id, method, *args):
        """Send an RPC; None when the peer cannot be reached."""
        if not self.cluster.network.reachable(self.id, peer_id):
            return None
        return getattr(self.cluster.nodes[peer_id], method)(*args)

    def _observe_term(self, term):
        """A higher term means we are out of date: step down. The election
        timer keeps running (only a current leader or a granted vote reset it),
        otherwise stale candidates could keep up-to-date nodes from campaigning."""
        if term > self.term:
            self.term = term
            self.voted_for = None
            self.leader_id = None
            if self.role != FOLLOWER:
                self.role = FOLLOWER
                self.election_timeout = self._new_timeout()

    def _become_follower(self, leader_id):
        if self.role != FOLLOWER:
            self.election_timeout = self._new_timeout()
        self.role = FOLLOWER
        self.leader_id = leader_id
        self.idle_ticks = 0

    # -- gossip --------------------------------------------------------------
    def gossip_tick(self):
        self.clock += 1
        self.heartbeat = (self.incarnation, self.heartbeat[1] + 1)
        self.members[self.id] = [self.heartbeat, self.clock]

    def merge_members(self, remote: dict):
        for nid, (hb, _) in remote.items():
            mine = self.members.get(nid)
            if mine is None or hb > mine[0]:
                self.members[nid] = [hb, self.clock]

    def handle_gossip(self, remote: dict):
        self.merge_members(remote)
        return {nid: list(v) for nid, v in self.members.items()}

    def gossip_with(self, peer_id):
        reply = self._call(peer_id, "handle_gossip", {n: list(v) for n, v in self.members.items()})
        if reply is not None:
            self.merge_members(reply)

    def member_is_up(self, nid):
        if nid == self.id:
            return self.alive
        return self.clock - self.members[nid][1] <= SUSPECT_TICKS

    def view(self):
        return {nid: ("up" if self.member_is_up(nid) else "down") for nid in self.config}

    # -- elections -----------------------------------------------------------
    def election_tick(self):
        if self.role == LEADER:
            return
        self.idle_ticks += 1
        if self.idle_ticks >= self.election_timeout:
            self.start_election()

    def start_election(self):
        self.term += 1
        self.role = CANDIDATE
        self.voted_for = self.id
        self.leader_id = None
        self.idle_ticks = 0
        self.election_timeout = self._new_timeout()
        votes = 1
        for peer in self.peers:
            reply = self._call(peer, "handle_request_vote", self.term, self.id,
                               self.last_log_index(), self.last_log_term())
            if reply is None:
                continue
            term, granted = reply
            if term > self.term:
                self._observe_term(term)
                return False
            if granted:
                votes += 1
        if faults.ELECT_WITHOUT_MAJORITY:
            # count against the members gossip believes are alive
            needed = sum(1 for n in self.config if self.member_is_up(n)) // 2 + 1
        else:
            needed = self.majority()
        if self.role == CANDIDATE and votes >= needed:
            self._become_leader()
            return True
        return False

    def handle_request_vote(self, term, candidate_id, last_index, last_term):
        self._observe_term(term)
        if term < self.term:
            return (self.term, False)
        up_to_date = (last_term, last_index) >= (self.last_log_term(), self.last_log_index())
        if self.voted_for in (None, candidate_id) and up_to_date:
            self.voted_for = candidate_id
            self.idle_ticks = 0
            return (self.term, True)
        return (self.term, False)

    def _become_leader(self):
        self.role = LEADER
        self.leader_id = self.id
        self.unacked_ticks = 0
        if faults.LOSE_UNCOMMITTED_ON_FAILOVER:
            # "clean up" entries this node has not seen committed yet
            del self.log[self.commit_index:]
        self.next_index = {p: self.last_log_index() + 1 for p in self.peers}
        self.match_index = {p: 0 for p in self.peers}
        # A no-op of the new term lets earlier entries commit (Raft 5.4.2)
        # and lets the leader serve linearizable reads.
        self.log.append(Entry(self.term, ("noop",)))
        self.replicate()

    # -- replication ---------------------------------------------------------
    def handle_append_entries(self, term, leader_id, prev_index, prev_term, entries, leader_commit):
        self._observe_term(term)
        if term < self.term:
            return (self.term, False, 0)
        self._become_follower(leader_id)
        if prev_index > self.last_log_index():
            return (self.term, False, self.last_log_index())
        if self._term_at(prev_index) != prev_term:
            return (self.term, False, prev_index - 1)
        index = prev_index
        for entry in entries:
            index += 1
            if index <= self.last_log_index():
                if self.log[index - 1].term == entry.term:
                    continue
                if index <= self.commit_index:
                    raise SafetyViolation(
                        f"{self.id}: leader {leader_id} (term {term}) would overwrite committed "
                        f"entry {index} (term {self.log[index - 1].term}) with one of term {entry.term}")
                del self.log[index - 1:]
            self.log.append(entry)
        last_new = prev_index + len(entries)
        if leader_commit > self.commit_index:
            self._commit_to(min(leader_commit, last_new))
        return (self.term, True, last_new)

    def _send_append(self, peer):
        """Bring one follower up to date. True if it acknowledged."""
        while self.role == LEADER:
            prev = self.next_index[peer] - 1
            reply = self._call(peer, "handle_append_entries", self.term, self.id, prev,
                               self._term_at(prev), self.log[prev:], self.commit_index)
            if reply is None:
                return False
            term, ok, hint = reply
            if term > self.term:
                self._observe_term(term)
                return False
            if ok:
                self.match_index[peer] = hint
                self.next_index[peer] = hint + 1
                return True
            self.next_index[peer] = max(1, min(prev, hint + 1))
        return False

    def replicate(self):
        """One AppendEntries round to every peer; returns the number of acks (incl. self)."""
        acks = 1
        for peer in self.peers:
            if self.role != LEADER:
                return 0
            if self._send_append(peer):
                acks += 1
        if self.role == LEADER:
            self._advance_commit()
        return acks

    def _advance_commit(self):
        for n in range(self.last_log_index(), self.commit_index, -1):
            if self.log[n - 1].term != self.term:
                break  # only entries of the current term are counted directly
            stored = 1 + sum(1 for p in self.peers if self.match_index[p] >= n)
            if stored >= self.majority():
                self._commit_to(n)
                break

    def _commit_to(self, index):
        self.commit_index = max(self.commit_index, index)
        while self.sm.applied_index < self.commit_index:
            i = self.sm.applied_index + 1
            entry = self.log[i - 1]
            result = self.sm.apply(i, entry)
            if self.role == LEADER and entry.op[0] != "noop":
                self.results[i] = result

    def heartbeat_tick(self):
        if self.role != LEADER:
            return
        acks = self.replicate()
        if self.role != LEADER:
            return
        if acks >= self.majority():
            self.unacked_ticks = 0
        else:
            self.unacked_ticks += 1
            if self.unacked_ticks >= ELECTION_TIMEOUT_MAX:
                self._become_follower(None)  # check-quorum: lost the majority

    # -- client operations (leader only) -------------------------------------
    def _require_leader(self):
        if not self.alive:
            raise NodeDown(self.id)
        if self.role != LEADER:
            raise NotLeader(self.id, self.leader_id)

    def propose(self, op: tuple):
        self._require_leader()
        self.log.append(Entry(self.term, op))
        index, term = self.last_log_index(), self.term
        if self.cluster.failpoints.take("leader_crash_before_replicate"):
            self.cluster.crash(self.id)
            raise CommitTimeout(index, term, "leader crashed before replicating")
        self.replicate()
        if self.role == LEADER and self.commit_index >= index:
            return self.results.pop(index)
        raise CommitTimeout(index, term, "no majority acknowledged")

    def read_barrier(self):
        """ReadIndex: confirm leadership with a majority before serving a read."""
        self._require_leader()
        acks = self.replicate()
        if self.role != LEADER:
            raise NotLeader(self.id, self.leader_id)
        if acks < self.majority() or self._term_at(self.commit_index) != self.term:
            raise NoQuorum(f"{self.id} cannot confirm leadership (acks={acks})")

    # -- crash / restart -----------------------------------------------------
    def crash(self):
        self.alive = False
        self._reset_volatile()

    def restart(self):
        self.alive = True
        self.incarnation += 1
        self._reset_volatile()
        self.heartbeat = (self.incarnation, 0)
        # the membership table is volatile: start by trusting everyone
        self.members = {nid: [(0, 0), self.clock] for nid in self.config}


class Network:
    """Who can talk to whom: live nodes in the same partition group."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.groups: list[set] | None = None

    def reachable(self, a, b):
        nodes = self.cluster.nodes
        if not (nodes[a].alive and nodes[b].alive):
            return False
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)


class Failpoints:
    """Named one-shot failure injection points (like fail-rs / gofail)."""

    def __init__(self):
        self._armed: dict[str, int] = {}

    def arm(self, name, times=1):
        self._armed[name] = self._armed.get(name, 0) + times

    def take(self, name):
        left = self._armed.get(name, 0)
        if left <= 0:
            return False
        self._armed[name] = left - 1
        return True


class Cluster:
    """A chainfire cluster of 3-5 nodes with a client API."""

    def __init__(self, size: int = 3, seed: int = 0):
        if not 3 <= size <= 5:
            raise ValueError("chainfire clusters have 3 to 5 nodes")
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.network = Network(self)
        self.failpoints = Failpoints()
        ids = [f"cf{i}" for i in range(1, size + 1)]
        self.nodes: dict[str, Node] = {}
        for nid in ids:
            self.nodes[nid] = Node(self, nid, ids)
        self.ticks = 0

    # -- time ----------------------------------------------------------------
    def tick(self, n: int = 1):
        with self.lock:
            for _ in range(n):
                self.ticks += 1
                live = [node for node in self.nodes.values() if node.alive]
                for node in live:
                    node.gossip_tick()
                order = list(live)
                self.rng.shuffle(order)
                for node in order:
                    peers = self.rng.sample(node.peers, min(GOSSIP_FANOUT, len(node.peers)))
                    for peer in peers:
                        node.gossip_with(peer)
                for node in live:
                    node.heartbeat_tick()
                for node in order:
                    if node.alive:
                        node.election_tick()

    def leader(self) -> Node | None:
        """The live node that leads the highest term, if any."""
        with self.lock:
            leaders = [n for n in self.nodes.values() if n.alive and n.role == LEADER]
            return max(leaders, key=lambda n: n.term) if leaders else None

    def wait_for_leader(self, max_ticks: int = 60) -> Node:
        """Advance time until a leader that can commit exists."""
        with self.lock:
            for _ in range(max_ticks + 1):
                node = self.leader()
                if node is not None and node._term_at(node.commit_index) == node.term:
                    return node
                self.tick()
            raise NoLeader(f"no leader after {max_ticks} ticks")

    def settle(self, ticks: int = 3):
        """Let heartbeats propagate the commit index to every reachable follower."""
        self.tick(ticks)

    # -- faults --------------------------------------------------------------
    def crash(self, node_id: str):
        with self.lock:
            self.nodes[node_id].crash()

    def restart(self, node_id: str):
        with self.lock:
            self.nodes[node_id].restart()

    def partition(self, *groups):
        with self.lock:
            self.network.groups = [set(g) for g in groups]

    def heal(self):
        with self.lock:
            self.network.groups = None

    def membership(self, observer: str) -> dict[str, str]:
        """Observer's gossip view: node id -> "up" / "down"."""
        with self.lock:
            return self.nodes[observer].view()

    # -- client API (served by the current leader) ---------------------------
    def _leader_or_raise(self) -> Node:
        node = self.leader()
        if node is None:
            raise NoLeader("no leader")
        return node

    def put(self, key: str, value: str) -> int:
        with self.lock:
            return self._leader_or_raise().propose(("put", key, value))

    def delete(self, key: str) -> int:
        with self.lock:
            return self._leader_or_raise().propose(("put", key, None))

    def cas(self, key: str, expected_rev: int, value: str | None):
        """Write (or delete, value None) only if key's mod_rev == expected_rev
        (0 = key must not exist). Returns (ok, new_rev or current_rev)."""
        with self.lock:
            return self._leader_or_raise().propose(("cas", key, expected_rev, value))

    def get(self, key: str) -> KeyValue | None:
        with self.lock:
            node = self._leader_or_raise()
            node.read_barrier()
            return node.sm.data.get(key)

    def range(self, prefix: str) -> list[KeyValue]:
        with self.lock:
            node = self._leader_or_raise()
            node.read_barrier()
            return [node.sm.data[k] for k in sorted(node.sm.data) if k.startswith(prefix)]
