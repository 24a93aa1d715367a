"""Fault switches: each plants a REAL bug in minicloud's logic.

All switches are False in a healthy tree. Flipping one (edit the line
``NAME = False`` to ``NAME = True`` and commit) makes exactly one leg of the
integration matrix fail, because that leg's tests exercise the code path the
bug lives in:

LOSE_UNCOMMITTED_ON_FAILOVER          -> leg chainfire-flaredb
    chainfire: a newly elected leader throws away the tail of its log that it
    does not yet *know* to be committed. Followers learn the commit index one
    heartbeat late, so a write that the old leader committed (and acked to the
    client) just before it died is discarded by the new leader.

ELECT_WITHOUT_MAJORITY                -> leg chainfire-flaredb
    chainfire: a candidate counts its votes against the members its gossip view
    believes are alive instead of against the whole cluster configuration, so
    a minority partition elects its own leader (split brain).

SKIP_METADATA_FSYNC_ON_LEADER_SWITCH  -> leg flaredb-plasmavmc
    plasmavmc: when a VM metadata write is cut off by a leader switch (outcome
    unknown), plasmavmc assumes the old leader made it durable and does not
    re-sync the record to the new leader; the acknowledged VM state is lost.

NON_ATOMIC_CAS                        -> leg plasmavmc-creditservice
    creditservice: the balance compare-and-swap checks and writes without
    holding the account lock; under thread contention two admissions can both
    win the same CAS (lost update, credits double-spent).

DROP_BILLING_SAMPLES                  -> leg creditservice-nightlight
    nightlight: the billing pipeline writes usage samples in whole batches;
    a periodic flush discards the partial tail batch instead of carrying it
    over, so billed usage no longer matches the credit ledger.

Keep each switch on its own line, exactly in the form ``NAME = False``.
"""

LOSE_UNCOMMITTED_ON_FAILOVER = False
ELECT_WITHOUT_MAJORITY = False
SKIP_METADATA_FSYNC_ON_LEADER_SWITCH = False
NON_ATOMIC_CAS = False
DROP_BILLING_SAMPLES = False

ALL = (
    "LOSE_UNCOMMITTED_ON_FAILOVER",
    "ELECT_WITHOUT_MAJORITY",
    "SKIP_METADATA_FSYNC_ON_LEADER_SWITCH",
    "NON_ATOMIC_CAS",
    "DROP_BILLING_SAMPLES",
)

# A host can also switch faults on through the environment: MINICLOUD_FAULTS=NAME[,NAME].
# It stands in for a broken *worker* (bad kernel, full disk, flaky network) rather than
# broken code: the same commit passes again once the host is fixed, which is how Matrix
# Gate's tests show a re-run reusing the legs that passed.
for _name in filter(None, (n.strip() for n in __import__("os").environ.get("MINICLOUD_FAULTS", "").split(","))):
    if _name not in ALL:
        raise ValueError(f"MINICLOUD_FAULTS: unknown fault {_name!r} (known: {', '.join(ALL)})")
    globals()[_name] = True


def active():
    """Names of the switches that are currently on."""
    return [name for name in ALL if globals()[name]]
