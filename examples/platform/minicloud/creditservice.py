"""creditservice: per-tenant credit balances and admission control.

An admission is a *reservation*: ``reserve`` takes the amount off the
tenant's balance with a compare-and-swap loop (read balance, check it covers
the amount, CAS old -> old - amount, retry if another thread won), and the
caller then either ``commit``s it (the charge is final: it goes to the ledger
and a usage sample goes to nightlight for billing) or ``rollback``s it (the
amount is CASed back onto the balance). Every reservation ends in exactly
one of the two.

Invariants, under any number of threads:
  * a balance never goes negative;
  * for every tenant: initial + top-ups - committed - held == balance.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

from . import faults

HELD = "held"
COMMITTED = "committed"
ROLLED_BACK = "rolled_back"


class CreditError(Exception):
    pass


class UnknownTenant(CreditError):
    pass


class InsufficientCredit(CreditError):
    def __init__(self, tenant, amount, balance):
        super().__init__(f"{tenant}: {amount} credits requested, {balance} available")
        self.tenant = tenant
        self.amount = amount
        self.balance = balance


class ReservationClosed(CreditError):
    """The reservation was already committed or rolled back."""


@dataclass
class Reservation:
    id: int
    tenant: str
    amount: int
    ref: str | None
    state: str = HELD


@dataclass(frozen=True)
class JournalEntry:
    before: int
    after: int
    reason: str


class Account:
    def __init__(self, tenant: str, balance: int):
        self.tenant = tenant
        self.balance = balance
        self.lock = threading.Lock()
        self.journal: list[JournalEntry] = []  # every balance change, in order
        self.topped_up = 0


class CreditService:
    def __init__(self, metrics=None, clock=time.time):
        self.metrics = metrics
        self.clock = clock
        self._accounts: dict[str, Account] = {}
        self._reservations: dict[int, Reservation] = {}
        self._ledger: list[tuple[str, int, str | None, float]] = []
        self._lock = threading.Lock()  # accounts map, reservations, ledger
        self._ids = itertools.count(1)
        self.cas_retries = 0

    # -- accounts ------------------------------------------------------------
    def open_account(self, tenant: str, balance: int):
        if balance < 0:
            raise ValueError("initial balance must be >= 0")
        with self._lock:
            if tenant in self._accounts:
                raise CreditError(f"account {tenant} exists")
            self._accounts[tenant] = Account(tenant, balance)
        self._publish_balance(tenant)

    def _account(self, tenant: str) -> Account:
        try:
            return self._accounts[tenant]
        except KeyError:
            raise UnknownTenant(tenant) from None

    def balance(self, tenant: str) -> int:
        return self._account(tenant).balance

    def journal(self, tenant: str) -> list[JournalEntry]:
        return list(self._account(tenant).journal)

    def _cas(self, acct: Account, expected: int, new: int, reason: str) -> bool:
        """Compare-and-swap the balance: set it to ``new`` iff it is ``expected``."""
        if faults.NON_ATOMIC_CAS:
            if acct.balance != expected:
                return False
            acct.journal.append(JournalEntry(expected, new, reason))
            acct.balance = new
            return True
        with acct.lock:
            if acct.balance != expected:
                return False
            acct.journal.append(JournalEntry(expected, new, reason))
            acct.balance = new
            return True

    def _adjust(self, acct: Account, delta: int, reason: str) -> int:
        """Add delta to the balance with a CAS loop; refuses to go negative."""
        while True:
            current = acct.balance
            new = current + delta
            if new < 0:
                raise InsufficientCredit(acct.tenant, -delta, current)
            if self._cas(acct, current, new, reason):
                return new
            self.cas_retries += 1

    def top_up(self, tenant: str, amount: int):
        if amount <= 0:
            raise ValueError("top-up must be positive")
        acct = self._account(tenant)
        self._adjust(acct, amount, "top-up")
        with self._lock:
            acct.topped_up += amount
        self._publish_balance(tenant)

    # -- admissions ----------------------------------------------------------
    def reserve(self, tenant: str, amount: int, ref: str | None = None) -> Reservation:
        if amount <= 0:
            raise ValueError("amount must be positive")
        acct = self._account(tenant)
        try:
            self._adjust(acct, -amount, f"reserve {ref}")
        except InsufficientCredit:
            self._emit("inc", "credit_admissions_total", tenant=tenant, result="denied")
            self._publish_balance(tenant)
            raise
        res = Reservation(next(self._ids), tenant, amount, ref)
        with self._lock:
            self._reservations[res.id] = res
        self._emit("inc", "credit_admissions_total", tenant=tenant, result="admitted")
        self._emit("observe", "credit_reservation_amount", amount, tenant=tenant)
        self._publish_balance(tenant)
        return res

    def _close(self, res: Reservation, state: str):
        with self._lock:
            current = self._reservations.get(res.id)
            if current is None or current.state != HELD:
                raise ReservationClosed(f"reservation {res.id} is {current.state if current else 'unknown'}")
            current.state = state
            res.state = state
            if state == COMMITTED:
                self._ledger.append((res.tenant, res.amount, res.ref, self.clock()))
        return current

    def commit(self, res: Reservation):
        """Make the charge final: ledger entry, usage sample for billing."""
        self._close(res, COMMITTED)
        self._emit("inc", "credit_charged_total", res.amount, tenant=res.tenant)
        if self.metrics is not None:
            self.metrics.record_usage(res.tenant, res.amount, self.clock(), "credits")

    def rollback(self, res: Reservation):
        """Give the reserved amount back (the admitted work failed)."""
        self._close(res, ROLLED_BACK)
        self._adjust(self._account(res.tenant), res.amount, f"rollback {res.ref}")
        self._emit("inc", "credit_rollbacks_total", tenant=res.tenant)
        self._publish_balance(res.tenant)

    # -- reporting -----------------------------------------------------------
    def ledger(self, tenant: str | None = None):
        with self._lock:
            return [e for e in self._ledger if tenant is None or e[0] == tenant]

    def charged_total(self, tenant: str) -> int:
        return sum(e[1] for e in self.ledger(tenant))

    def held(self, tenant: str | None = None) -> list[Reservation]:
        with self._lock:
            return [r for r in self._reservations.values()
                    if r.state == HELD and (tenant is None or r.tenant == tenant)]

    def audit(self, tenant: str, initial: int) -> list[str]:
        """Check the account's invariants; returns a list of violations."""
        acct = self._account(tenant)
        problems = []
        held = sum(r.amount for r in self.held(tenant))
        expected = initial + acct.topped_up - self.charged_total(tenant) - held
        if acct.balance != expected:
            problems.append(f"balance {acct.balance} != initial {initial} + top-ups {acct.topped_up}"
                            f" - charged {self.charged_total(tenant)} - held {held} = {expected}")
        if acct.balance < 0:
            problems.append(f"negative balance {acct.balance}")
        previous = initial
        for i, entry in enumerate(acct.journal):
            if entry.before != previous:
                problems.append(f"journal entry {i} starts at {entry.before}, previous balance was {previous}")
                break
            if entry.after < 0:
                problems.append(f"journal entry {i} leaves a negative balance {entry.after}")
            previous = entry.after
        return problems

    # -- metrics -------------------------------------------------------------
    def _publish_balance(self, tenant):
        if self.metrics is not None:
            self.metrics.set_gauge("credit_balance", self._account(tenant).balance, tenant=tenant)

    def _emit(self, kind, name, *args, **labels):
        if self.metrics is not None:
            getattr(self.metrics, kind)(name, *args, **labels)
