"""Leg creditservice-nightlight: the metrics creditservice emits, billing
aggregation of its charges, and the credit alerts."""

import math
import random
import threading
import unittest

from minicloud import creditservice as cs
from minicloud import nightlight as nl


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class MetricsTests(unittest.TestCase):
    def test_admission_metrics_are_emitted(self):
        metrics = nl.Nightlight()
        credits = cs.CreditService(metrics=metrics, clock=FakeClock())
        credits.open_account("acme", 10)
        self.assertEqual(metrics.gauge("credit_balance", tenant="acme"), 10)
        r1 = credits.reserve("acme", 4)
        r2 = credits.reserve("acme", 5)
        with self.assertRaises(cs.InsufficientCredit):
            credits.reserve("acme", 2)
        credits.commit(r1)
        credits.rollback(r2)
        self.assertEqual(metrics.counter("credit_admissions_total", tenant="acme", result="admitted"), 2)
        self.assertEqual(metrics.counter("credit_admissions_total", tenant="acme", result="denied"), 1)
        self.assertEqual(metrics.counter("credit_rollbacks_total", tenant="acme"), 1)
        self.assertEqual(metrics.counter("credit_charged_total", tenant="acme"), 4)
        self.assertEqual(metrics.gauge("credit_balance", tenant="acme"), 6)
        hist = metrics.histogram("credit_reservation_amount", tenant="acme")
        self.assertEqual((hist.count, hist.sum), (2, 9))
        self.assertEqual(metrics.billing_report(), {"acme": 4})

    def test_histogram_quantiles_follow_the_distribution(self):
        rng = random.Random(5)
        hist = nl.Histogram(buckets=[i * 10 for i in range(1, 101)])
        values = [rng.uniform(0, 1000) for _ in range(60_000)]
        for v in values:
            hist.observe(v)
        values.sort()
        for q in (0.1, 0.5, 0.9, 0.99):
            exact = values[int(q * len(values))]
            self.assertLess(abs(hist.quantile(q) - exact), 10, q)  # within one bucket width
        self.assertEqual(hist.cumulative()[-1], (math.inf, 60_000))
        self.assertAlmostEqual(hist.sum / hist.count, sum(values) / len(values), places=6)
        small = nl.Histogram(buckets=[1, 2, 4])
        for v in (0.5, 1.5, 1.5, 3, 100):
            small.observe(v)
        self.assertEqual([c for _, c in small.cumulative()], [1, 3, 4, 5])
        self.assertEqual(small.quantile(0.5), 1.75)  # rank 2.5 in bucket (1, 2] holding 2
        self.assertEqual(small.quantile(1.0), 4)  # +Inf bucket reports the highest bound

    def test_counters_are_consistent_under_concurrent_emitters(self):
        metrics = nl.Nightlight()

        def emit(i):
            for n in range(3_000):
                metrics.inc("requests_total", service="creditservice", worker=str(i % 2))
                metrics.observe("latency_ms", n % 50)

        threads = [threading.Thread(target=emit, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(metrics.counter_sum("requests_total", service="creditservice"), 12_000)
        self.assertEqual(metrics.histogram("latency_ms").count, 12_000)


class BillingTests(unittest.TestCase):
    def test_billing_matches_credit_ledger(self):
        """Thousands of charges over a few hours, with periodic pipeline flushes:
        every committed credit is billed exactly once, in the right hour."""
        for seed in range(24):
            rng = random.Random(seed)
            clock = FakeClock()
            metrics = nl.Nightlight(batch_size=rng.choice((8, 16, 32)), flush_interval=rng.choice((120, 300, 600)))
            credits = cs.CreditService(metrics=metrics, clock=clock)
            tenants = [f"tenant-{i}" for i in range(6)]
            for t in tenants:
                credits.open_account(t, 1_000_000)
            hourly = {}
            for _ in range(3_000):
                clock.advance(rng.expovariate(1 / 5))
                tenant = rng.choice(tenants)
                res = credits.reserve(tenant, rng.randint(1, 40))
                if rng.random() < 0.2:
                    credits.rollback(res)
                    continue
                credits.commit(res)
                key = (tenant, int(clock.now // 3600))
                hourly[key] = hourly.get(key, 0) + res.amount
            report = metrics.billing_report()
            for t in tenants:
                self.assertEqual(report.get(t, 0), credits.charged_total(t),
                                 f"seed {seed}: {t} billed {report.get(t, 0)}, ledger says "
                                 f"{credits.charged_total(t)} ({metrics.samples_received} samples received, "
                                 f"{len(metrics.stored_samples())} stored)")
            self.assertEqual(metrics.billing_windows(3600), hourly)

    def test_billing_report_window_bounds(self):
        metrics = nl.Nightlight(batch_size=4, flush_interval=10)
        for ts in range(0, 100, 5):
            metrics.record_usage("a", 1, float(ts))
            metrics.record_usage("b", 2, float(ts) + 0.5)
        self.assertEqual(metrics.billing_report(0, 50), {"a": 10, "b": 20})
        self.assertEqual(metrics.billing_report(50, 100), {"a": 10, "b": 20})
        self.assertEqual(metrics.billing_report(), {"a": 20, "b": 40})
        self.assertEqual(len(metrics.stored_samples()), 40)


class AlertTests(unittest.TestCase):
    def test_credit_exhaustion_alert_fires_and_resolves(self):
        metrics = nl.Nightlight()
        metrics.add_rule(nl.credit_exhaustion_rule(threshold=5, for_evaluations=2))
        credits = cs.CreditService(metrics=metrics, clock=FakeClock())
        credits.open_account("acme", 12)
        credits.open_account("globex", 100)
        self.assertEqual(metrics.evaluate(now=0), [])
        credits.commit(credits.reserve("acme", 9))  # balance 3 < 5
        self.assertEqual(metrics.evaluate(now=60), [], "must hold for 2 evaluations before firing")
        alerts = metrics.evaluate(now=120)
        self.assertEqual([(a.rule, dict(a.labels), a.value, a.since) for a in alerts],
                         [("CreditExhausted", {"tenant": "acme"}, 3, 60)])
        self.assertIsNone(metrics.firing_for("CreditExhausted", tenant="globex"))
        credits.top_up("acme", 50)
        self.assertEqual(metrics.evaluate(now=180), [], "alert must resolve after a top-up")

    def test_denied_admissions_alert(self):
        metrics = nl.Nightlight()
        metrics.add_rule(nl.admission_denied_rule())
        credits = cs.CreditService(metrics=metrics, clock=FakeClock())
        credits.open_account("acme", 3)
        credits.reserve("acme", 2)
        self.assertEqual(metrics.evaluate(now=0), [])
        for _ in range(3):
            with self.assertRaises(cs.InsufficientCredit):
                credits.reserve("acme", 2)
        alert = metrics.firing_for("AdmissionsDenied", tenant="acme") or metrics.evaluate(now=60)[0]
        self.assertEqual((alert.rule, alert.value), ("AdmissionsDenied", 3))
        self.assertEqual(metrics.evaluate(now=120), [], "no new denials: the alert resolves")


if __name__ == "__main__":
    unittest.main()
