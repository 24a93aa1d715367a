"""minicloud: a miniature, in-process stand-in for the platform.

Services (each a small but real implementation):

* chainfire     - replicated KV: Raft-style leader election and majority
                  commit, gossip membership, failover.
* flaredb       - table store on top of chainfire (namespaced, versioned rows).
* plasmavmc     - VM manager keeping VM metadata in flaredb.
* creditservice - per-tenant credits with compare-and-swap reservations.
* nightlight    - metrics, billing aggregation and alert rules.

``faults`` holds switches that plant real bugs for the matrix demo.
"""
