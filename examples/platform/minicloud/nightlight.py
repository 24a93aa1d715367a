"""nightlight: metrics, billing aggregation and alerting.

* Counters, gauges and histograms keyed by name and labels (thread-safe).
  Histograms use cumulative buckets and estimate quantiles the way
  Prometheus' ``histogram_quantile`` does.
* The billing pipeline: services record usage samples (tenant, amount,
  timestamp). Samples are buffered and written to the usage store in whole
  batches of ``batch_size``; a periodic flush (every ``flush_interval``
  seconds of sample time) writes the whole batches and carries the partial
  tail over to the next flush; a final flush (before reporting) writes
  everything. Reports aggregate the store per tenant and per time window.
* Alert rules evaluated against the metrics: a rule fires once its condition
  held for ``for_evaluations`` consecutive evaluations and resolves when it
  stops holding.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field

from . import faults

DEFAULT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _labels_key(labels: dict) -> tuple:
    return tuple(sorted(labels.items()))


class Histogram:
    def __init__(self, buckets=DEFAULT_BUCKETS):
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float):
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        out, running = [], 0
        for bound, n in zip(self.bounds + (math.inf,), self.counts):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket holding the q-th observation."""
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return math.nan
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0
        for bound, cum in self.cumulative():
            if cum >= rank:
                if bound == math.inf:
                    return self.bounds[-1]
                in_bucket = cum - lower_count
                if in_bucket == 0:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
            lower_bound, lower_count = bound, cum
        return self.bounds[-1]


@dataclass(frozen=True)
class UsageSample:
    tenant: str
    amount: float
    ts: float
    source: str = "credits"


@dataclass
class AlertRule:
    """``kind`` "gauge": the gauge value compared with threshold;
    ``kind`` "increase": how much the counter grew since the previous evaluation."""

    name: str
    metric: str
    op: str  # "<", "<=", ">", ">="
    threshold: float
    kind: str = "gauge"
    for_evaluations: int = 1
    match: dict = field(default_factory=dict)  # label filters

    def holds(self, value: float) -> bool:
        return {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
        }[self.op]


@dataclass(frozen=True)
class Alert:
    rule: str
    labels: tuple
    value: float
    since: float


def credit_exhaustion_rule(threshold: float = 1.0, for_evaluations: int = 2) -> AlertRule:
    """Fires when a tenant's credit balance stays below ``threshold``."""
    return AlertRule("CreditExhausted", "credit_balance", "<", threshold, "gauge", for_evaluations)


def admission_denied_rule() -> AlertRule:
    """Fires when admissions were denied for lack of credit since the last evaluation."""
    return AlertRule("AdmissionsDenied", "credit_admissions_total", ">", 0, "increase", 1,
                     {"result": "denied"})


class Nightlight:
    def __init__(self, batch_size: int = 32, flush_interval: float = 60.0):
        self._lock = threading.RLock()
        self.counters: dict[tuple, float] = {}
        self.gauges: dict[tuple, float] = {}
        self.histograms: dict[tuple, Histogram] = {}
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._pending: list[UsageSample] = []
        self._batches: list[tuple[UsageSample, ...]] = []
        self._last_flush_ts: float | None = None
        self.samples_received = 0
        self.rules: list[AlertRule] = []
        self._streak: dict[tuple, int] = {}
        self._since: dict[tuple, float] = {}
        self._last_counter: dict[tuple, float] = {}
        self.firing: dict[tuple, Alert] = {}

    # -- metrics -------------------------------------------------------------
    def inc(self, name: str, value: float = 1.0, **labels):
        if value < 0:
            raise ValueError("counters only go up")
        key = (name, _labels_key(labels))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + value

    def set_gauge(self, name: str, value: float, **labels):
        with self._lock:
            self.gauges[(name, _labels_key(labels))] = value

    def observe(self, name: str, value: float, buckets=DEFAULT_BUCKETS, **labels):
        key = (name, _labels_key(labels))
        with self._lock:
            hist = self.histograms.get(key)
            if hist is None:
                hist = self.histograms[key] = Histogram(buckets)
            hist.observe(value)

    def counter(self, name: str, **labels) -> float:
        with self._lock:
            return self.counters.get((name, _labels_key(labels)), 0.0)

    def counter_sum(self, name: str, **match) -> float:
        """Sum of all series of a counter whose labels include ``match``."""
        with self._lock:
            return sum(v for (n, lk), v in self.counters.items()
                       if n == name and set(match.items()) <= set(lk))

    def gauge(self, name: str, **labels) -> float | None:
        with self._lock:
            return self.gauges.get((name, _labels_key(labels)))

    def histogram(self, name: str, **labels) -> Histogram | None:
        with self._lock:
            return self.histograms.get((name, _labels_key(labels)))

    # -- billing pipeline ----------------------------------------------------
    def record_usage(self, tenant: str, amount: float, ts: float, source: str = "credits"):
        with self._lock:
            self.samples_received += 1
            self._pending.append(UsageSample(tenant, amount, ts, source))
            if self._last_flush_ts is None:
                self._last_flush_ts = ts
            if ts - self._last_flush_ts >= self.flush_interval:
                self.flush(final=False)
                self._last_flush_ts = ts

    def flush(self, final: bool = True):
        """Write buffered samples to the usage store in batches."""
        with self._lock:
            whole = len(self._pending) - len(self._pending) % self.batch_size
            for i in range(0, whole, self.batch_size):
                self._batches.append(tuple(self._pending[i:i + self.batch_size]))
            tail = self._pending[whole:]
            if final and tail:
                self._batches.append(tuple(tail))
                tail = []
            if faults.DROP_BILLING_SAMPLES:
                tail = []  # "already handled by the next batch"
            self._pending = tail

    def stored_samples(self) -> list[UsageSample]:
        with self._lock:
            return [s for batch in self._batches for s in batch]

    def billing_report(self, start: float | None = None, end: float | None = None) -> dict[str, float]:
        """Total usage per tenant for samples with start <= ts < end."""
        self.flush(final=True)
        totals: dict[str, float] = {}
        for s in self.stored_samples():
            if (start is None or s.ts >= start) and (end is None or s.ts < end):
                totals[s.tenant] = totals.get(s.tenant, 0.0) + s.amount
        return totals

    def billing_windows(self, window: float = 3600.0) -> dict[tuple[str, int], float]:
        """Usage per (tenant, window number) where window number = ts // window."""
        self.flush(final=True)
        out: dict[tuple[str, int], float] = {}
        for s in self.stored_samples():
            key = (s.tenant, int(s.ts // window))
            out[key] = out.get(key, 0.0) + s.amount
        return out

    # -- alerting ------------------------------------------------------------
    def add_rule(self, rule: AlertRule):
        with self._lock:
            self.rules.append(rule)

    def _series(self, rule: AlertRule):
        source = self.gauges if rule.kind == "gauge" else self.counters
        for (name, lk), value in source.items():
            if name == rule.metric and set(rule.match.items()) <= set(lk):
                yield lk, value

    def evaluate(self, now: float) -> list[Alert]:
        """Evaluate every rule once; returns the alerts firing afterwards."""
        with self._lock:
            for rule in self.rules:
                for lk, value in list(self._series(rule)):
                    key = (rule.name, lk)
                    if rule.kind == "increase":
                        previous = self._last_counter.get(key, 0.0)
                        self._last_counter[key] = value
                        value = value - previous
                    if rule.holds(value):
                        if self._streak.get(key, 0) == 0:
                            self._since[key] = now
                        self._streak[key] = self._streak.get(key, 0) + 1
                        if self._streak[key] >= rule.for_evaluations:
                            self.firing[key] = Alert(rule.name, lk, value, self._since[key])
                    else:
                        self._streak[key] = 0
                        self.firing.pop(key, None)
            return sorted(self.firing.values(), key=lambda a: (a.rule, a.labels))

    def firing_for(self, rule_name: str, **labels) -> Alert | None:
        with self._lock:
            for (name, lk), alert in self.firing.items():
                if name == rule_name and set(labels.items()) <= set(lk):
                    return alert
            return None
