"""Billing isolation under concurrency: no cross-currency contamination between tenants.

Forty tenants billed in sixteen currencies share one SQLite file. Python threads (the binding
releases the GIL) record usage, grant credits in the tenant's own and in foreign currencies,
add discounts, split shared cost pools and issue invoices for several periods at the same time;
other tests race several services, several processes, currency changes, late usage and the
legacy currency migration against invoicing. Every expectation is computed independently here,
with exact ``Decimal``/``Fraction`` arithmetic, from what the test asked for.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omnicloud as oc
from tests.rawsqlite import RawSQLite

UTC = dt.timezone.utc

#: The clock of every service: all periods below are in the past, so currency changes made
#: "from the next period" never reach them unless a test moves the clock.
NOW = dt.datetime(2026, 4, 20, 12, 0, 0, tzinfo=UTC)
RATES_AS_OF = dt.datetime(2025, 1, 1, tzinfo=UTC)


def at(month: int, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


Period = tuple[dt.datetime, dt.datetime]
JAN: Period = (at(1), at(2))
FEB: Period = (at(2), at(3))
MAR: Period = (at(3), at(4))
PERIODS: tuple[Period, ...] = (JAN, FEB, MAR)

#: ISO 4217 minor units, written down independently of the library's table.
MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3, "CHF": 2, "BHD": 3, "ISK": 0,
    "KRW": 0, "CLP": 0, "TND": 3, "CLF": 4, "SEK": 2, "CAD": 2, "OMR": 3, "INR": 2,
}  # fmt: skip
#: One unit of the currency in USD (the rates set in every store below).
TO_USD: dict[str, Decimal] = {
    "USD": Decimal(1), "EUR": Decimal("1.08"), "GBP": Decimal("1.27"), "JPY": Decimal("0.0067"),
    "KWD": Decimal("3.25"), "CHF": Decimal("1.13"), "BHD": Decimal("2.65"),
    "ISK": Decimal("0.0072"), "KRW": Decimal("0.00072"), "CLP": Decimal("0.00105"),
    "TND": Decimal("0.32"), "CLF": Decimal("41.5"), "SEK": Decimal("0.095"),
    "CAD": Decimal("0.73"), "OMR": Decimal("2.6"), "INR": Decimal("0.012"),
}  # fmt: skip
CURRENCIES: tuple[str, ...] = tuple(MINOR_UNITS)

#: Shared meters: (meter, region or None for the default, unit price, currency).
SHARED_PRICES: tuple[tuple[str, str | None, str, str], ...] = (
    ("cpu", None, "0.0475", "USD"),
    ("cpu", "eu-west-1", "0.041", "EUR"),
    ("egress", None, "0.02", "EUR"),
    ("storage", None, "3.5", "JPY"),
)
SHARED_METERS = ("cpu", "egress", "storage")
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")

CTX = Context(prec=90, rounding=ROUND_HALF_UP)
JOIN_TIMEOUT = 120.0


# ----- exact arithmetic -------------------------------------------------------------------


def quantum(minor: int) -> Decimal:
    return Decimal(1).scaleb(-minor)


def round_half_away(value: Decimal, minor: int) -> Decimal:
    """Rounds to `minor` decimals, half away from zero (Python's ROUND_HALF_UP)."""
    return value.quantize(quantum(minor), rounding=ROUND_HALF_UP, context=CTX)


def round_down(value: Decimal, minor: int) -> Decimal:
    return value.quantize(quantum(minor), rounding=ROUND_DOWN, context=CTX)


def mul(a: Decimal, b: Decimal) -> Decimal:
    return CTX.multiply(a, b)


def is_rounded(actual: Decimal, exact: Decimal, minor: int) -> bool:
    """Whether `actual` is `exact` rounded half away from zero to `minor` decimals. Rates carry
    28 significant digits, so a product within 1e-24 (relative) of a half unit may be rounded
    either way: the library multiplies at 28 digits, this test exactly."""
    if actual == round_half_away(exact, minor):
        return True
    down = round_down(exact, minor)
    half = down + quantum(minor) / 2 if exact >= 0 else down - quantum(minor) / 2
    return abs(exact - half) <= abs(exact) * Decimal("1e-24") and actual in (down, half + (half - down))


def exact(value: Fraction) -> Decimal:
    """The Decimal equal to a fraction with a terminating expansion."""
    out = CTX.divide(Decimal(value.numerator), Decimal(value.denominator))
    assert Fraction(out) == value, f"{value} has no exact decimal form"
    return out


def close(a: Decimal, b: Decimal, rel: str = "1e-20") -> bool:
    return abs(a - b) <= abs(b) * Decimal(rel)


def decimals_of(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent


def micros(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def rate_to(base: str, quote: str) -> Decimal:
    """The rate base -> quote implied by the USD rates (exact)."""
    return CTX.divide(TO_USD[base], TO_USD[quote])


def own_price(currency: str) -> Decimal:
    """A tenant's private meter price in its own currency (about 0.90 USD)."""
    return round_half_away(CTX.divide(Decimal("0.9"), TO_USD[currency]), MINOR_UNITS[currency] + 2)


def in_currency(usd: Decimal, currency: str) -> Decimal:
    """Roughly `usd` worth of `currency`, as a positive whole number of minor units."""
    minor = MINOR_UNITS[currency]
    return max(round_half_away(CTX.divide(usd, TO_USD[currency]), minor), quantum(minor))


# ----- usage ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Usage:
    tenant: str
    meter: str
    quantity: Decimal
    region: str
    start: dt.datetime
    end: dt.datetime

    def as_tuple(self) -> tuple[str, str, Decimal, str, dt.datetime, dt.datetime]:
        return (self.tenant, self.meter, self.quantity, self.region, self.start, self.end)

    def share_in(self, period: Period) -> Fraction | None:
        """The part of the quantity billed in `period` (None: not in it at all)."""
        ps, pe = micros(period[0]), micros(period[1])
        s, e = micros(self.start), micros(self.end)
        if s == e:
            return Fraction(self.quantity) if ps <= s < pe else None
        overlap = min(e, pe) - max(s, ps)
        if overlap <= 0:
            return None
        return Fraction(self.quantity) * overlap / (e - s)


def expected_quantities(records: Iterable[Usage], tenant: str, period: Period) -> dict[tuple[str, str], Decimal]:
    sums: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for r in records:
        if r.tenant != tenant:
            continue
        part = r.share_in(period)
        if part is not None:
            sums[(r.meter, r.region)] += part
    return {k: exact(v) for k, v in sums.items()}


def usage_lines(invoice: oc.Invoice) -> dict[tuple[str, str], Decimal]:
    out: dict[tuple[str, str], Decimal] = {}
    for line in invoice.lines:
        if line.kind == "usage":
            assert line.region is not None
            key = (line.meter, line.region)
            assert key not in out, f"two lines for {key} on {invoice.id}"
            out[key] = line.quantity
    return out


def expected_unit_price(meter: str, region: str, currency: str, tenant_currencies: dict[str, str]) -> tuple[Decimal, str]:
    """The price the spec says applies: regional before default; the invoice currency, else
    USD, else EUR, else the only other one."""
    if meter.startswith("own-"):
        owner_currency = tenant_currencies[meter[len("own-"):]]
        return own_price(owner_currency), owner_currency
    regional = {c: Decimal(p) for m, r, p, c in SHARED_PRICES if m == meter and r == region}
    default = {c: Decimal(p) for m, r, p, c in SHARED_PRICES if m == meter and r is None}
    prices = regional or default
    for choice in (currency, "USD", "EUR"):
        if choice in prices:
            return prices[choice], choice
    assert len(prices) == 1
    ((c, p),) = prices.items()
    return p, c


# ----- services and threads ---------------------------------------------------------------


def set_rates(store: oc.Store) -> oc.ExchangeRates:
    rates = oc.ExchangeRates(store)
    for code, rate in TO_USD.items():
        if code != "USD":
            rates.set_rate(code, "USD", rate, RATES_AS_OF)
    return rates


def set_prices(svc: oc.BillingService, tenants: dict[str, str]) -> None:
    for meter, region, price, currency in SHARED_PRICES:
        svc.set_price(meter, oc.Money(price, currency), region=region)
    for tenant, currency in tenants.items():
        svc.set_price(f"own-{tenant}", oc.Money(own_price(currency), currency))


def new_service(store: oc.Store, clock: oc.ManualClock | None = None) -> oc.BillingService:
    return oc.BillingService(store, clock or oc.ManualClock(NOW), oc.ExchangeRates(store))


def run_concurrently(jobs: Sequence[Callable[[], object]]) -> list[BaseException]:
    """Starts every job at once on its own thread; returns what the jobs raised. A job still
    running after JOIN_TIMEOUT fails the test (a deadlock)."""
    barrier = threading.Barrier(len(jobs))
    raised: list[BaseException] = []
    lock = threading.Lock()

    def wrap(job: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            job()
        except BaseException as exc:  # collected and asserted on by the caller
            with lock:
                raised.append(exc)

    threads = [threading.Thread(target=wrap, args=(job,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {JOIN_TIMEOUT}s (deadlock?): {stuck}"
    return raised


def describe(errors: Iterable[BaseException]) -> list[str]:
    return [f"{type(e).__name__}: {e}" for e in errors]


RAW = RawSQLite()


@pytest.fixture(scope="module", autouse=True)
def _raw_sqlite_helper() -> Iterator[None]:
    yield
    RAW.close()


def table_rows(path: Path, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Rows read from the file by the standard library's sqlite3, bypassing omnicloud."""
    return RAW.rows(path, sql, tuple(args))


# ----- the shared-file storm --------------------------------------------------------------

TENANTS: tuple[str, ...] = tuple(f"tenant-{i:02d}" for i in range(40))
TENANT_CURRENCY: dict[str, str] = {t: CURRENCIES[i % len(CURRENCIES)] for i, t in enumerate(TENANTS)}
#: Splits of a record across a period boundary with exact decimal shares (hours before, after).
BOUNDARY_SPLITS = ((1, 1), (1, 3), (3, 1), (2, 3), (3, 5), (1, 7), (7, 13), (4, 6))


def foreign_currency(tenant_index: int) -> str:
    return CURRENCIES[(tenant_index + 5) % len(CURRENCIES)]


@dataclasses.dataclass(frozen=True)
class DiscountTerms:
    tenant: str
    percent: Decimal | None
    amount: Decimal | None
    currency: str | None
    invoices: int | None


@dataclasses.dataclass
class World:
    path: Path
    svc: oc.BillingService
    usage: list[Usage] = dataclasses.field(default_factory=list)
    late_usage: list[Usage] = dataclasses.field(default_factory=list)
    late_results: list[tuple[Usage, BaseException | None]] = dataclasses.field(default_factory=list)
    grants: dict[tuple[str, str], list[Decimal]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    discounts: dict[str, DiscountTerms] = dataclasses.field(default_factory=dict)
    pools: list[oc.PoolAllocation] = dataclasses.field(default_factory=list)
    issued: list[tuple[int, oc.Invoice]] = dataclasses.field(default_factory=list)
    refused: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)
    notes: list[oc.Invoice] = dataclasses.field(default_factory=list)
    note_attempts: dict[str, tuple[Decimal, int]] = dataclasses.field(default_factory=dict)
    note_refusals: list[tuple[str, BaseException]] = dataclasses.field(default_factory=list)
    mismatch_refusals: list[BaseException] = dataclasses.field(default_factory=list)
    unexpected: list[BaseException] = dataclasses.field(default_factory=list)
    # The final state, read once after the storm.
    invoices: dict[str, list[oc.Invoice]] = dataclasses.field(default_factory=dict)
    final_discounts: dict[str, list[oc.Discount]] = dataclasses.field(default_factory=dict)

    def invoice_of(self, tenant: str, period: Period) -> oc.Invoice:
        found = [
            i for i in self.invoices[tenant]
            if i.kind == "invoice" and (i.period_start, i.period_end) == period
        ]  # fmt: skip
        assert len(found) == 1, f"{tenant} has {len(found)} invoices for {period}"
        return found[0]

    def regular_invoices(self) -> list[oc.Invoice]:
        return [i for t in TENANTS for i in self.invoices[t] if i.kind == "invoice"]


def plan_usage(rng: random.Random, index: int, tenant: str) -> tuple[list[Usage], list[Usage], list[Usage]]:
    """(phase-2 single records, phase-2 batch records, phase-3 records strictly inside March)."""
    meters = (*SHARED_METERS, f"own-{tenant}")

    def qty() -> Decimal:
        return Decimal(rng.randint(1, 99_999)) / 1000

    def inside(month: int) -> Usage:
        start = at(month, rng.randint(1, 20), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
        seconds = rng.choice([0, 1, 60, 3600, 86_400, 7 * 86_400])
        return Usage(tenant, rng.choice(meters), qty(), rng.choice(REGIONS), start, start + dt.timedelta(seconds=seconds))

    single: list[Usage] = []
    batch: list[Usage] = []
    later: list[Usage] = []
    for month in (1, 2):
        single += [inside(month) for _ in range(6)]
        batch.append(inside(month))
    single.append(inside(3))
    later += [inside(3) for _ in range(2)]
    for boundary in (at(2), at(3), at(4)):
        before, after = BOUNDARY_SPLITS[(index + boundary.month) % len(BOUNDARY_SPLITS)]
        single.append(
            Usage(
                tenant, rng.choice(meters), qty(), rng.choice(REGIONS),
                boundary - dt.timedelta(hours=before), boundary + dt.timedelta(hours=after),
            )
        )  # fmt: skip
    return single, batch, later


def build_world(path: Path) -> World:
    rng = random.Random(20260420)
    store = oc.Store.open(path)
    set_rates(store)
    svc = new_service(store)
    world = World(path=path, svc=svc)
    lock = threading.Lock()

    def guarded(op: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                op()
            except Exception as exc:
                with lock:
                    world.unexpected.append(exc)

        return run

    # Phase 1: accounts opened from eight threads at once, then prices.
    chunks = [TENANTS[i::8] for i in range(8)]

    def open_accounts(chunk: Sequence[str]) -> Callable[[], None]:
        def run() -> None:
            for t in chunk:
                account = svc.upsert_tenant(t, TENANT_CURRENCY[t])
                assert account.currency.code == TENANT_CURRENCY[t] and account.pending_currency is None

        return guarded(run)

    world.unexpected += run_concurrently([open_accounts(c) for c in chunks])
    set_prices(svc, TENANT_CURRENCY)

    # Phase 2: usage, credits, discounts and pools from eight threads, shuffled.
    ops: list[Callable[[], None]] = []
    batches: list[Usage] = []
    march_later: list[Usage] = []

    def record(u: Usage) -> Callable[[], None]:
        def run() -> None:
            svc.record_usage(*u.as_tuple())

        return run

    def record_many(rows: list[Usage]) -> Callable[[], None]:
        def run() -> None:
            assert svc.record_usage_many([r.as_tuple() for r in rows]) == len(rows)

        return run

    def grant(tenant: str, amount: Decimal, currency: str) -> Callable[[], None]:
        def run() -> None:
            svc.add_credit(tenant, oc.Money(amount, currency), reason="storm grant")
            with lock:
                world.grants[(tenant, currency)].append(amount)

        return run

    def discount(terms: DiscountTerms) -> Callable[[], None]:
        def run() -> None:
            if terms.percent is not None:
                d = svc.add_discount(terms.tenant, percent=terms.percent, invoices=terms.invoices)
            else:
                assert terms.amount is not None and terms.currency is not None
                d = svc.add_discount(terms.tenant, amount=oc.Money(terms.amount, terms.currency), invoices=terms.invoices)
            assert d.tenant_id == terms.tenant
            with lock:
                world.discounts[d.id] = terms

        return run

    for i, t in enumerate(TENANTS):
        c = TENANT_CURRENCY[t]
        single, batch, later = plan_usage(rng, i, t)
        world.usage += single + batch + later
        batches += batch
        march_later += later
        ops += [record(u) for u in single]
        for _ in range(rng.randint(1, 3)):
            usd = Decimal(2000) if i % 7 == 0 else Decimal(rng.randint(100, 6000)) / 100
            ops.append(grant(t, in_currency(usd, c), c))
        ops.append(grant(t, in_currency(Decimal(rng.randint(100, 9000)) / 100, foreign_currency(i)), foreign_currency(i)))
        ops.append(discount(DiscountTerms(t, Decimal(rng.choice(["5", "10", "12.5", "20", "30"])), None, None, 1)))
        if i % 4 == 0:
            ops.append(discount(DiscountTerms(t, Decimal(3), None, None, None)))
        if i % 3 == 0:
            ops.append(discount(DiscountTerms(t, None, in_currency(Decimal(2), c), c, 1)))
        if i % 5 == 0:
            other = "EUR" if c != "EUR" else "USD"
            ops.append(discount(DiscountTerms(t, None, in_currency(Decimal(5), other), other, 1)))
    # Usage batches mix three tenants each: all or nothing, never cross-attributed.
    batches.sort(key=lambda u: (u.start, u.tenant))
    ops += [record_many(batches[k : k + 3]) for k in range(0, len(batches), 3)]

    def allocate(total: oc.Money, weights: dict[str, Decimal | int | str], when: dt.datetime, pool: str) -> Callable[[], None]:
        def run() -> None:
            allocation = svc.allocate_pool(total, weights, when, pool=pool)
            with lock:
                world.pools.append(allocation)

        return run

    for n in range(8):
        members = rng.sample(TENANTS, rng.randint(3, 7))
        choices: list[Decimal | int | str] = [1, 2, 3, 5, "1.5", "0.25", Decimal("7")]
        weights: dict[str, Decimal | int | str] = {m: rng.choice(choices) for m in members}
        currency = rng.choice(["USD", "EUR", "JPY", "KWD", "CLF"])
        total = oc.Money(in_currency(Decimal(rng.randint(1000, 500_000)) / 100, currency), currency)
        when = at(1 + n % 2, rng.randint(1, 27), rng.randint(0, 23), rng.randint(0, 59))
        ops.append(allocate(total, weights, when, f"pool-{n}"))
    rng.shuffle(ops)
    world.unexpected += run_concurrently([guarded(_chain(ops[k::8])) for k in range(8)])

    # Phase 3: January and February invoiced at the same time, per tenant from several threads
    # (racing each other) and in bulk, while March usage and more credits arrive.
    def issue_each(period_index: int, order: list[str]) -> Callable[[], None]:
        def run() -> None:
            for t in order:
                try:
                    inv = svc.generate_invoice(t, *PERIODS[period_index])
                except oc.InvoiceImmutableError as exc:
                    with lock:
                        world.refused.append((t, period_index, exc.invoice_id))
                else:
                    with lock:
                        world.issued.append((period_index, inv))

        return guarded(run)

    def issue_all(period_index: int, tenants: list[str] | None = None) -> Callable[[], None]:
        def run() -> None:
            got = svc.generate_invoices(*PERIODS[period_index], tenant_ids=tenants)
            with lock:
                world.issued.extend((period_index, inv) for inv in got)

        return guarded(run)

    def shuffled(seq: Sequence[str]) -> list[str]:
        out = list(seq)
        rng.shuffle(out)
        return out

    phase3: list[Callable[[], None]] = [
        issue_each(0, shuffled(TENANTS)),
        issue_each(0, shuffled(TENANTS)),
        issue_all(0),
        issue_each(1, shuffled(TENANTS)),
        issue_all(1, shuffled(TENANTS[::2])),
        issue_each(1, shuffled(TENANTS)),
        guarded(_chain([record(u) for u in march_later])),
        guarded(_chain([grant(t, in_currency(Decimal(15), TENANT_CURRENCY[t]), TENANT_CURRENCY[t]) for t in TENANTS[::2]])),
    ]
    world.unexpected += run_concurrently(phase3)

    # Phase 4: credit-note races on January invoices, foreign-currency credit notes, late
    # usage into the invoiced months and more credits, while March is invoiced twice in bulk
    # and once per tenant.
    january = {inv.tenant_id: inv for p, inv in world.issued if p == 0}

    def note_racer(order: list[str]) -> Callable[[], None]:
        def run() -> None:
            for t in order:
                inv = january[t]
                amount, _ = world.note_attempts[t]
                try:
                    note = svc.issue_credit_note(inv.id, oc.Money(amount, inv.currency.code), "storm correction")
                except oc.ValidationError as exc:
                    with lock:
                        world.note_refusals.append((t, exc))
                else:
                    with lock:
                        world.notes.append(note)

        return guarded(run)

    racers = [t for i, t in enumerate(TENANTS) if i % 2 == 0 and t in january and january[t].total.amount > 0]
    for t in racers:
        due = january[t].total.amount
        minor = MINOR_UNITS[TENANT_CURRENCY[t]]
        amount = max(round_down(due * Decimal("0.4"), minor), quantum(minor))
        world.note_attempts[t] = (amount, min(3, int(due // amount)))

    def foreign_notes() -> None:
        for i, t in enumerate(TENANTS):
            if t not in january or i % 3:
                continue
            other = foreign_currency(i)
            try:
                svc.issue_credit_note(january[t].id, oc.Money(quantum(MINOR_UNITS[other]), other), "wrong currency")
            except oc.CurrencyMismatchError as exc:
                with lock:
                    world.mismatch_refusals.append(exc)

    for i, t in enumerate(TENANTS):
        for period in (JAN, FEB):
            start = period[0] + dt.timedelta(days=3 + i % 20, hours=i % 24)
            world.late_usage.append(Usage(t, "cpu", Decimal("1.5"), "us-east-1", start, start + dt.timedelta(hours=2)))

    def late() -> None:
        for u in world.late_usage:
            try:
                svc.record_usage(*u.as_tuple())
            except oc.InvoiceImmutableError as exc:
                outcome: BaseException | None = exc
            else:
                outcome = None
            with lock:
                world.late_results.append((u, outcome))

    phase4: list[Callable[[], None]] = [
        note_racer(shuffled(racers)),
        note_racer(shuffled(racers)),
        note_racer(shuffled(racers)),
        guarded(foreign_notes),
        guarded(late),
        issue_all(2),
        issue_all(2),
        issue_each(2, shuffled(TENANTS)),
        guarded(_chain([grant(t, in_currency(Decimal(9), TENANT_CURRENCY[t]), TENANT_CURRENCY[t]) for t in TENANTS[1::2]])),
    ]
    world.unexpected += run_concurrently(phase4)

    for t in TENANTS:
        world.invoices[t] = svc.invoices(t)
        world.final_discounts[t] = svc.discounts(t)
    return world


def _recorder(svc: oc.BillingService, u: Usage) -> Callable[[], None]:
    def run() -> None:
        svc.record_usage(*u.as_tuple())

    return run


def _chain(ops: Sequence[Callable[[], None]]) -> Callable[[], None]:
    def run() -> None:
        for op in ops:
            op()

    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("storm") / "billing.db")


def test_the_storm_raised_nothing_unexpected(world: World) -> None:
    """No StoreError (SQLITE_BUSY), InternalError, lost exception or failed assertion in any
    thread: every usage record, credit, discount and pool call of the storm succeeded."""
    assert describe(world.unexpected) == []
    assert len(world.pools) == 8
    assert len(world.discounts) == sum(
        1 + (i % 4 == 0) + (i % 3 == 0) + (i % 5 == 0) for i in range(len(TENANTS))
    )


def test_exactly_one_invoice_per_tenant_and_period(world: World) -> None:
    for p, period in enumerate(PERIODS):
        issued = [inv for q, inv in world.issued if q == p]
        per_tenant = Counter(inv.tenant_id for inv in issued)
        assert per_tenant == Counter(TENANTS), f"period {p}: issued twice or never: {per_tenant}"
        for t in TENANTS:
            assert world.invoice_of(t, period).id in {inv.id for inv in issued if inv.tenant_id == t}
    rows = table_rows(
        world.path,
        "SELECT tenant_id, period_start, count(*) FROM billing_invoices"
        " WHERE kind = 'invoice' GROUP BY tenant_id, period_start",
    )
    assert len(rows) == len(TENANTS) * len(PERIODS)
    assert all(n == 1 for _, _, n in rows)
    ids = [inv.id for inv in world.regular_invoices()]
    assert len(ids) == len(set(ids)) == len(TENANTS) * len(PERIODS)
    # A per-tenant generate_invoice that lost a race was refused with the id of the invoice
    # that won, never with another tenant's or another period's.
    assert world.refused, "the racing threads never collided"
    for tenant, p, invoice_id in world.refused:
        assert invoice_id == world.invoice_of(tenant, PERIODS[p]).id


def test_invoices_lists_only_the_tenants_own_documents(world: World) -> None:
    notes_by_tenant = defaultdict(set)
    for note in world.notes:
        notes_by_tenant[note.tenant_id].add(note.id)
    for t in TENANTS:
        listed = world.invoices[t]
        assert {i.tenant_id for i in listed} == {t}
        expected = {world.invoice_of(t, p).id for p in PERIODS} | notes_by_tenant[t]
        assert [i.id for i in listed if not i.legacy] and {i.id for i in listed} == expected
        for inv in listed:
            again = world.svc.invoice(inv.id)
            assert again == inv and again.tenant_id == t
    assert sum(len(v) for v in world.invoices.values()) == len(TENANTS) * 3 + len(world.notes)


def test_every_invoice_holds_exactly_its_own_usage(world: World) -> None:
    for t in TENANTS:
        for period in PERIODS:
            inv = world.invoice_of(t, period)
            expected = expected_quantities(world.usage, t, period)
            got = usage_lines(inv)
            assert set(got) == set(expected), f"{t} {period[0]:%b}: lines {sorted(got)} != {sorted(expected)}"
            for key, quantity in expected.items():
                assert got[key] == quantity, f"{t} {period[0]:%b} {key}: {got[key]} != {quantity}"
            foreign = [m for m, _ in got if m.startswith("own-") and m != f"own-{t}"]
            assert foreign == [], f"{t} was billed another tenant's private meter"


def test_every_amount_is_in_the_tenants_currency_with_its_minor_units(world: World) -> None:
    for t in TENANTS:
        code = TENANT_CURRENCY[t]
        minor = MINOR_UNITS[code]
        assert oc.Currency(code).minor_units == minor
        for inv in world.invoices[t]:
            assert inv.currency.code == code
            moneys = [inv.subtotal, inv.total, *(m for _, m in inv.discounts)]
            moneys += [line.amount for line in inv.lines]
            if inv.kind == "invoice":  # credit notes: test_credit_notes_state_amounts_in_minor_units
                moneys.append(inv.credits_applied)
            for m in moneys:
                assert m.currency.code == code, f"{inv.id}: {m} on a {code} invoice"
                assert decimals_of(m.amount) == minor, f"{inv.id}: {m!r} is not in {code} minor units"
            for line in inv.lines:
                assert line.unit_price.currency.code == code
            assert inv.total_usd.currency.code == "USD" and decimals_of(inv.total_usd.amount) == 2
        assert world.svc.account(t).currency.code == code
        assert world.svc.currency_at(t, JAN[0]).code == code


def test_line_amounts_and_unit_prices_are_exact(world: World) -> None:
    for inv in world.regular_invoices():
        code = inv.currency.code
        for line in inv.lines:
            assert is_rounded(line.amount.amount, mul(line.quantity, line.unit_price.amount), MINOR_UNITS[code]), (inv.id, line.meter)
            if line.kind != "usage":
                continue
            assert line.region is not None
            price, price_currency = expected_unit_price(line.meter, line.region, code, TENANT_CURRENCY)
            if price_currency == code:
                assert line.conversion is None and line.unit_price.amount == price, (inv.id, line.meter)
            else:
                conv = line.conversion
                assert conv is not None, (inv.id, line.meter, line.region)
                assert (conv.base.code, conv.quote.code) == (price_currency, code)
                assert close(conv.rate, rate_to(price_currency, code), "1e-18"), (conv, price_currency, code)
                assert close(line.unit_price.amount, mul(price, conv.rate), "1e-24")


def test_settlement_applies_discounts_then_same_currency_credits(world: World) -> None:
    for inv in world.regular_invoices():
        code, minor = inv.currency.code, MINOR_UNITS[inv.currency.code]
        assert inv.subtotal.amount == sum((line.amount.amount for line in inv.lines), Decimal(0))
        left = inv.subtotal.amount
        fixed_seen = False
        for discount_id, taken in inv.discounts:
            terms = world.discounts[discount_id]
            assert terms.tenant == inv.tenant_id, f"{inv.id} used {terms.tenant}'s discount"
            if terms.percent is not None:
                assert not fixed_seen, "percentages come before fixed amounts"
                assert taken.amount == round_half_away(left * terms.percent / 100, minor)
            else:
                fixed_seen = True
                assert terms.currency == code and terms.amount is not None
                assert taken.amount == min(terms.amount, left)
            left -= taken.amount
        assert Decimal(0) <= inv.credits_applied.amount <= left
        assert inv.total.amount == left - inv.credits_applied.amount >= 0


def test_discounts_are_used_by_their_own_tenant_and_currency_only(world: World) -> None:
    uses: Counter[str] = Counter()
    for inv in world.regular_invoices():
        uses.update(discount_id for discount_id, _ in inv.discounts)
    for discount_id, terms in world.discounts.items():
        tenant_invoices = [world.invoice_of(terms.tenant, p) for p in PERIODS]
        own_uses = sum(1 for inv in tenant_invoices for d, _ in inv.discounts if d == discount_id)
        assert own_uses == uses[discount_id], f"{discount_id} was applied to another tenant's invoice"
        remaining = {d.id: d for d in world.final_discounts[terms.tenant]}
        if terms.currency is not None and terms.currency != TENANT_CURRENCY[terms.tenant]:
            assert uses[discount_id] == 0, "a fixed discount paid an invoice in another currency"
            kept = remaining[discount_id]
            assert kept.remaining_invoices == 1 and kept.amount is not None
            assert (kept.amount.amount, kept.amount.currency.code) == (terms.amount, terms.currency)
        elif terms.invoices is None:
            assert uses[discount_id] == 3 and remaining[discount_id].remaining_invoices is None
        else:
            assert uses[discount_id] == 1, f"single-use discount {discount_id} used {uses[discount_id]} times"
            assert discount_id not in remaining
    for t in TENANTS:
        assert {d.tenant_id for d in world.final_discounts[t]} <= {t}


def _ledger_rows(world: World, tenant: str, currency: str) -> list[tuple[Decimal, str | None]]:
    rows = table_rows(
        world.path,
        "SELECT amount, invoice_id FROM billing_credit_ledger WHERE tenant_id = ? AND currency = ? ORDER BY id",
        (tenant, currency),
    )
    return [(Decimal(a), i) for a, i in rows]


def test_wallets_reconcile_exactly(world: World) -> None:
    """balance == grants - applied + credit notes, and the ledger sums to the balance."""
    for t in TENANTS:
        code = TENANT_CURRENCY[t]
        grants = sum(world.grants[(t, code)], Decimal(0))
        applied = sum((i.credits_applied.amount for i in world.invoices[t] if i.kind == "invoice"), Decimal(0))
        notes = sum((n.total.amount for n in world.notes if n.tenant_id == t), Decimal(0))
        balance = world.svc.credit_balance(t, code)
        assert balance.currency.code == code
        assert balance.amount == grants - applied + notes, t
        ledger = world.svc.credit_ledger(t, code)
        assert all(m.currency.code == code for m in ledger)
        assert sum((m.amount for m in ledger), Decimal(0)) == balance.amount
        positives = sorted(m.amount for m in ledger if m.amount > 0)
        expected_positives = sorted([*world.grants[(t, code)], *(n.total.amount for n in world.notes if n.tenant_id == t)])
        assert positives == expected_positives
        negatives = sorted(-m.amount for m in ledger if m.amount < 0)
        assert negatives == sorted(i.credits_applied.amount for i in world.invoices[t] if i.credits_applied.amount > 0)


def test_credits_applied_never_exceed_the_wallet(world: World) -> None:
    """Replaying the ledger in order: the wallet never goes negative, each application names an
    invoice of the same tenant and currency, and an invoice left with something to pay
    emptied the wallet."""
    exhausted = 0
    for t in TENANTS:
        code = TENANT_CURRENCY[t]
        by_id = {i.id: i for i in world.invoices[t]}
        running = Decimal(0)
        seen: set[str] = set()
        for amount, invoice_id in _ledger_rows(world, t, code):
            running += amount
            assert running >= 0, f"{t}'s {code} wallet went negative"
            if amount < 0:
                assert invoice_id in by_id, f"{t}'s credits paid an invoice that is not {t}'s"
                inv = by_id[invoice_id]
                assert invoice_id not in seen and inv.currency.code == code
                seen.add(invoice_id)
                assert inv.credits_applied.amount == -amount
                if inv.total.amount > 0:
                    assert running == 0, f"{inv.id} left {inv.total} to pay with {running} {code} unused"
                    exhausted += 1
        assert seen == {i.id for i in world.invoices[t] if i.credits_applied.amount > 0}
    assert exhausted > 0, "no invoice ever used up a wallet: the scenario lost its point"


def test_foreign_currency_credits_are_never_touched(world: World) -> None:
    foreign_wallets = 0
    for (t, currency), grants in world.grants.items():
        if currency == TENANT_CURRENCY[t]:
            continue
        foreign_wallets += 1
        assert world.svc.credit_balance(t, currency).amount == sum(grants, Decimal(0))
        assert sorted(m.amount for m in world.svc.credit_ledger(t, currency)) == sorted(grants)
        assert all(invoice_id is None for _, invoice_id in _ledger_rows(world, t, currency))
    assert foreign_wallets == len(TENANTS)
    for t in TENANTS:
        for inv in world.invoices[t]:
            assert inv.credits_applied.currency.code == TENANT_CURRENCY[t]


def test_pool_shares_sum_exactly_and_charge_each_tenant_in_its_currency(world: World) -> None:
    for pool in world.pools:
        code = pool.total.currency.code
        minor = MINOR_UNITS[code]
        assert sum((s.share.amount for s in pool.shares), Decimal(0)) == pool.total.amount
        assert pool.recovered_total() == pool.total
        weight_sum = sum((s.weight for s in pool.shares), Decimal(0))
        for s in pool.shares:
            assert s.share.currency.code == code and decimals_of(s.share.amount) == minor
            ideal = CTX.divide(mul(pool.total.amount, s.weight), weight_sum)
            assert round_down(ideal, minor) <= s.share.amount <= round_down(ideal, minor) + quantum(minor)
            tenant_code = TENANT_CURRENCY[s.tenant_id]
            assert s.charge.currency.code == tenant_code
            assert decimals_of(s.charge.amount) == MINOR_UNITS[tenant_code]
            assert (s.rate.base.code, s.rate.quote.code) == (code, tenant_code)
            if code == tenant_code:
                assert s.rate.rate == 1 and s.charge.amount == s.share.amount
            else:
                assert close(s.rate.rate, rate_to(code, tenant_code), "1e-18")
                assert is_rounded(s.charge.amount, mul(s.share.amount, s.rate.rate), MINOR_UNITS[tenant_code])


def test_pool_charges_are_billed_once_in_the_right_invoice(world: World) -> None:
    expected: dict[tuple[str, int], Counter[tuple[str, Decimal]]] = defaultdict(Counter)
    for pool in world.pools:
        p = next(k for k, (s, e) in enumerate(PERIODS) if s <= pool.at < e)
        for share in pool.shares:
            expected[(share.tenant_id, p)][(pool.pool, share.charge.amount)] += 1
    billed = 0
    for t in TENANTS:
        for p, period in enumerate(PERIODS):
            inv = world.invoice_of(t, period)
            got = Counter((line.meter, line.amount.amount) for line in inv.lines if line.kind == "pool_share")
            assert got == expected[(t, p)], f"{t} {period[0]:%b}: {got} != {expected[(t, p)]}"
            billed += sum(got.values())
    assert billed == sum(len(pool.shares) for pool in world.pools)


def test_usd_figures_use_the_tenants_rate_at_issue(world: World) -> None:
    for inv in world.regular_invoices() + world.notes:
        code = inv.currency.code
        if code == "USD":
            assert inv.exchange_rate_to_usd == 1 and inv.rate_source == "identity"
        else:
            assert inv.exchange_rate_to_usd == TO_USD[code] and inv.rate_as_of == RATES_AS_OF
        assert inv.total_usd.amount == round_half_away(mul(inv.total.amount, inv.exchange_rate_to_usd), 2)
        assert inv.issued_at == NOW and not inv.legacy


def test_credit_note_races_never_over_credit(world: World) -> None:
    assert world.note_attempts, "no January invoice had anything to credit"
    notes = Counter(n.corrects for n in world.notes)
    refusals = Counter(t for t, _ in world.note_refusals)
    for t, (amount, fits) in world.note_attempts.items():
        inv = world.invoice_of(t, JAN)
        assert notes[inv.id] == fits, f"{t}: {notes[inv.id]} notes of {amount}, {fits} fit in {inv.total}"
        assert refusals[t] == 3 - fits
        for note in world.notes:
            if note.corrects == inv.id:
                assert note.kind == "credit_note" and note.tenant_id == t
                assert (note.total.amount, note.currency.code) == (amount, inv.currency.code)
                assert (note.period_start, note.period_end) == JAN
    assert len(world.mismatch_refusals) == len([i for i in range(len(TENANTS)) if i % 3 == 0])


def test_credit_notes_state_amounts_in_minor_units(world: World) -> None:
    """A credit note is listed among the tenant's invoices; its amounts are written like an
    invoice's (a GBP note says 0.00 GBP of credits applied, as a GBP invoice does)."""
    assert world.notes
    for note in world.notes:
        minor = MINOR_UNITS[note.currency.code]
        for m in (note.subtotal, note.total, note.credits_applied, *(line.amount for line in note.lines)):
            assert m.currency == note.currency
            assert decimals_of(m.amount) == minor, f"credit note {note.id}: {m!r} is not in {note.currency.code} minor units"


def test_late_usage_into_invoiced_months_was_refused_and_not_billed(world: World) -> None:
    assert len(world.late_results) == len(world.late_usage)
    for u, outcome in world.late_results:
        assert isinstance(outcome, oc.InvoiceImmutableError), f"late usage {u} was accepted"
        period = JAN if u.start < FEB[0] else FEB
        assert outcome.invoice_id == world.invoice_of(u.tenant, period).id
    rows = table_rows(world.path, "SELECT count(*) FROM billing_usage")
    assert rows == [(len(world.usage),)], "usage rows lost or duplicated"


def integrity_ok(path: Path) -> None:
    """PRAGMA integrity_check through the library's SQLite (raises StoreCorruptError), and
    through Python's unless it is one of the SQLite releases (3.40.0 to 3.41.0) that report
    false "NULL value in" findings on WITHOUT ROWID tables."""
    oc.Store.open(path).integrity_check()
    if not (3, 40, 0) <= sqlite3.sqlite_version_info <= (3, 41, 0):
        assert table_rows(path, "PRAGMA integrity_check") == [("ok",)]


def test_the_store_is_intact_after_the_storm(world: World) -> None:
    integrity_ok(world.path)
    again = new_service(oc.Store.open(world.path))
    for t in TENANTS[::7]:
        assert again.invoices(t) == world.invoices[t]


# ----- several services, several processes -----------------------------------------------


def open_tenants(svc: oc.BillingService, tenants: dict[str, str]) -> None:
    for t, c in tenants.items():
        svc.upsert_tenant(t, c)
    set_prices(svc, tenants)


def test_several_services_over_one_file_share_nothing_but_the_data(tmp_path: Path) -> None:
    """Four services on their own connections plus two sharing one connection, used from
    twelve threads: usage recorded through one service is billed by whichever invoices it."""
    path = tmp_path / "billing.db"
    first = oc.Store.open(path)
    set_rates(first)
    tenants = {f"svc-{i:02d}": CURRENCIES[(3 * i) % len(CURRENCIES)] for i in range(24)}
    open_tenants(new_service(first), tenants)
    shared = oc.Store.open(path)
    services = [new_service(oc.Store.open(path)) for _ in range(4)] + [new_service(shared), new_service(shared)]
    rng = random.Random(7)
    records: list[Usage] = []
    plan: list[list[Usage]] = [[] for _ in range(12)]
    for k, t in enumerate(sorted(tenants)):
        for n in range(12):
            start = at(1 + n % 2, 1 + n, n % 24)
            u = Usage(t, rng.choice((*SHARED_METERS, f"own-{t}")), Decimal(rng.randint(1, 10_000)) / 100, REGIONS[n % 3], start, start + dt.timedelta(hours=1 + n))
            records.append(u)
            plan[(k + n) % 12].append(u)
    jobs: list[Callable[[], None]] = []
    for n, rows in enumerate(plan):
        svc = services[n % len(services)]
        jobs.append(_chain([_recorder(svc, u) for u in rows]))
    assert describe(run_concurrently(jobs)) == []

    issued: list[tuple[int, oc.Invoice]] = []
    refused: list[str] = []
    lock = threading.Lock()

    def invoice_all(svc: oc.BillingService, p: int, order: list[str]) -> Callable[[], None]:
        def run() -> None:
            for t in order:
                try:
                    inv = svc.generate_invoice(t, *PERIODS[p])
                except oc.InvoiceImmutableError as exc:
                    with lock:
                        refused.append(exc.invoice_id)
                else:
                    with lock:
                        issued.append((p, inv))

        return run

    jobs = []
    for n, svc in enumerate(services):
        for p in (0, 1):
            order = sorted(tenants)
            random.Random(n * 10 + p).shuffle(order)
            jobs.append(invoice_all(svc, p, order))
    assert describe(run_concurrently(jobs)) == []
    assert len(issued) == 2 * len(tenants) and len(refused) == (len(services) - 1) * 2 * len(tenants)
    assert Counter((inv.tenant_id, p) for p, inv in issued) == Counter((t, p) for t in tenants for p in (0, 1))
    ids = {inv.id for _, inv in issued}
    assert set(refused) <= ids
    for p, inv in issued:
        assert inv.currency.code == tenants[inv.tenant_id]
        assert usage_lines(inv) == expected_quantities(records, inv.tenant_id, PERIODS[p])
    for svc in services:
        for t in list(tenants)[::5]:
            assert {i.id for i in svc.invoices(t)} == {inv.id for _, inv in issued if inv.tenant_id == t}


def test_a_rate_recorded_on_one_connection_reaches_every_service(tmp_path: Path) -> None:
    """The invoice's exchange_rate_to_usd is the rate in effect at issue time in the store's
    persisted history, whichever connection (or process) recorded it: a service opened
    before the rate was recorded must not bill with the older rate."""
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    early = new_service(store)
    open_tenants(early, {"eur-co": "EUR", "jpy-co": "JPY"})
    for t in ("eur-co", "jpy-co"):
        early.record_usage(t, f"own-{t}", "40", "us-east-1", at(1, 8), at(1, 9))
    feed = oc.ExchangeRates(oc.Store.open(path))  # the daily rate feed, on its own connection
    feed.set_rate("EUR", "USD", "1.1111", at(4, 1))
    feed.set_rate("USD", "JPY", "151.5", at(4, 1), source="BOJ")
    late = new_service(oc.Store.open(path))
    eur = {s: s.preview_invoice("eur-co", *JAN) for s in (early, late)}
    jpy = {s: s.preview_invoice("jpy-co", *JAN) for s in (early, late)}
    assert late.preview_invoice("eur-co", *JAN).exchange_rate_to_usd == Decimal("1.1111")
    assert eur[early].exchange_rate_to_usd == eur[late].exchange_rate_to_usd == Decimal("1.1111")
    assert jpy[early].rate_source == jpy[late].rate_source == "BOJ inverse"
    assert invoice_view(eur[early]) == invoice_view(eur[late])
    issued = early.generate_invoice("eur-co", *JAN)
    assert issued.exchange_rate_to_usd == Decimal("1.1111") and issued.rate_as_of == at(4, 1)


CHILD = textwrap.dedent(
    """
    import datetime as dt, json, sys
    from decimal import Decimal
    import omnicloud as oc

    path, job = sys.argv[1], json.loads(sys.argv[2])
    utc = dt.timezone.utc
    svc = oc.BillingService(oc.Store.open(path), oc.ManualClock(dt.datetime.fromisoformat(job["now"])))
    print("ready", flush=True)
    sys.stdin.readline()  # all children start together
    if job["kind"] == "usage":
        for t, meter, qty, region, start, end in job["rows"]:
            svc.record_usage(t, meter, Decimal(qty), region, dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end))
        for t, amount, currency in job["credits"]:
            svc.add_credit(t, oc.Money(amount, currency))
        print("recorded", len(job["rows"]), flush=True)
    else:
        start, end = (dt.datetime.fromisoformat(x) for x in job["period"])
        issued = svc.generate_invoices(start, end, tenant_ids=job["tenants"])
        print(json.dumps([[i.tenant_id, i.id] for i in issued]), flush=True)
    """
)


def run_children(path: Path, jobs: list[dict[str, Any]]) -> list[str]:
    """Starts one `python -c` child per job, releases them together, returns each one's last
    output line."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), json.dumps(job)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for job in jobs
    ]  # fmt: skip
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        outputs = []
        for p in procs:
            out, err = p.communicate("go\n", timeout=60)
            assert p.returncode == 0, err
            outputs.append(out.strip().splitlines()[-1])
        return outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_processes_record_disjoint_tenants_and_the_parent_bills_them(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    svc = new_service(store)
    tenants = {f"proc-{i:02d}": CURRENCIES[(5 * i) % len(CURRENCIES)] for i in range(12)}
    open_tenants(svc, tenants)
    rng = random.Random(99)
    names = sorted(tenants)
    records: list[Usage] = []
    credits: dict[str, Decimal] = defaultdict(Decimal)
    jobs: list[dict[str, Any]] = []
    for k in range(3):
        rows, grants = [], []
        for t in names[k::3]:
            for n in range(40):
                start = at(1 + n % 2, 1 + n % 27, n % 24, n)
                u = Usage(t, rng.choice((*SHARED_METERS, f"own-{t}")), Decimal(rng.randint(1, 99_999)) / 1000, REGIONS[n % 3], start, start + dt.timedelta(minutes=n))
                records.append(u)
                rows.append([u.tenant, u.meter, str(u.quantity), u.region, u.start.isoformat(), u.end.isoformat()])
            amount = in_currency(Decimal(rng.randint(1, 50)), tenants[t])
            credits[t] += amount
            grants.append([t, str(amount), tenants[t]])
        jobs.append({"kind": "usage", "now": NOW.isoformat(), "rows": rows, "credits": grants})
    assert run_children(path, jobs) == ["recorded 160"] * 3

    # January: each child bills its own tenants while a fourth bills everyone.
    invoice_jobs: list[dict[str, Any]] = [
        {"kind": "invoice", "now": NOW.isoformat(), "period": [JAN[0].isoformat(), JAN[1].isoformat()], "tenants": names[k::3]}
        for k in range(3)
    ]
    invoice_jobs.append({"kind": "invoice", "now": NOW.isoformat(), "period": [JAN[0].isoformat(), JAN[1].isoformat()], "tenants": None})
    issued = [(str(t), str(i)) for out in run_children(path, invoice_jobs) for t, i in json.loads(out)]
    assert Counter(t for t, _ in issued) == Counter(names), "a tenant was invoiced twice or never"
    # February: the parent, through a service that never saw the usage being written.
    parent = new_service(oc.Store.open(path))
    feb = parent.generate_invoices(*FEB)
    for t in names:
        jan = parent.invoice(dict(issued)[t])
        for p, inv in ((JAN, jan), (FEB, next(i for i in feb if i.tenant_id == t))):
            assert inv.tenant_id == t and inv.currency.code == tenants[t]
            assert usage_lines(inv) == expected_quantities(records, t, p)
        assert parent.credit_balance(t, tenants[t]).amount == credits[t] - jan.credits_applied.amount - next(i for i in feb if i.tenant_id == t).credits_applied.amount
    assert table_rows(path, "SELECT count(*) FROM billing_usage") == [(len(records),)]


# ----- unknown tenants --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[oc.BillingService, Path]:
    path = tmp_path_factory.mktemp("small") / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    svc = new_service(store)
    open_tenants(svc, {"known-a": "EUR", "known-b": "JPY"})
    svc.record_usage("known-a", "cpu", 5, "us-east-1", at(1, 5), at(1, 6))
    return svc, path


_BILLING_TABLES = (
    "billing_accounts", "billing_usage", "billing_invoices", "billing_credit_ledger",
    "billing_wallets", "billing_discounts", "billing_pool_charges", "billing_currency_changes",
)  # fmt: skip
UNKNOWN_IDS = ("nobody", "KNOWN-A", "known-a.", "known")

UNKNOWN_QUERIES: dict[str, Callable[[oc.BillingService, str], object]] = {
    "account": lambda s, t: s.account(t),
    "currency_at": lambda s, t: s.currency_at(t, JAN[0]),
    "credit_balance": lambda s, t: s.credit_balance(t, "EUR"),
    "credit_ledger": lambda s, t: s.credit_ledger(t, "EUR"),
    "discounts": lambda s, t: s.discounts(t),
    "invoices": lambda s, t: s.invoices(t),
}


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {t: table_rows(path, f"SELECT * FROM {t} ORDER BY 1, 2") for t in _BILLING_TABLES}


@pytest.mark.parametrize("name", list(UNKNOWN_QUERIES))
def test_per_tenant_queries_for_unknown_tenants_raise(small: tuple[oc.BillingService, Path], name: str) -> None:
    """Like credit_balance and invoices, every per-tenant query refuses a tenant that has no
    account (ids are case-sensitive and never prefix-matched) instead of answering for it."""
    svc, _ = small
    for unknown in UNKNOWN_IDS:
        with pytest.raises(oc.UnknownTenantError) as err:
            UNKNOWN_QUERIES[name](svc, unknown)
        assert err.value.tenant_id == unknown
        assert isinstance(err.value, LookupError)
    assert svc.account("known-a").currency.code == "EUR"


def test_writes_naming_an_unknown_tenant_raise_and_record_nothing(small: tuple[oc.BillingService, Path]) -> None:
    svc, path = small
    before = snapshot(path)
    single: list[Callable[[str], object]] = [
        lambda t: svc.preview_invoice(t, *JAN),
        lambda t: svc.generate_invoice(t, *FEB),
        lambda t: svc.record_usage(t, "cpu", 1, "us-east-1", at(1, 2), at(1, 3)),
        lambda t: svc.add_credit(t, oc.Money("1.00", "EUR")),
        lambda t: svc.add_discount(t, percent=10),
        # Several tenants in one call: all or nothing, the known ones included.
        lambda t: svc.allocate_pool(oc.Money("10.00", "USD"), {"known-a": 1, t: 1, "known-b": 2}, at(1, 9)),
        lambda t: svc.record_usage_many(
            [("known-a", "cpu", 1, "eu-west-1", at(1, 2), at(1, 3)), (t, "cpu", 1, "eu-west-1", at(1, 2), at(1, 3))]
        ),
        lambda t: svc.generate_invoices(*JAN, tenant_ids=["known-a", t, "known-b"]),
    ]
    for call in single:
        for unknown in UNKNOWN_IDS:
            with pytest.raises(oc.UnknownTenantError) as err:
                call(unknown)
            assert err.value.tenant_id == unknown
    assert snapshot(path) == before


# ----- currency changes -------------------------------------------------------------------


def invoice_view(inv: oc.Invoice) -> tuple[object, ...]:
    """Everything of an invoice but its random id."""
    return (
        inv.tenant_id, inv.kind, inv.period_start, inv.period_end, inv.currency.code, inv.subtotal, inv.total,
        [(line.kind, line.meter, line.region, line.quantity, line.unit_price, line.amount) for line in inv.lines],
        [m for _, m in inv.discounts], inv.credits_applied, inv.exchange_rate_to_usd, inv.total_usd, inv.issued_at,
    )  # fmt: skip


def test_one_tenants_currency_change_never_changes_anothers_invoices(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    clock = oc.ManualClock(at(1, 15, 9))
    svc = new_service(store, clock)
    tenants = {"alpha": "EUR", "beta": "EUR", "gamma": "JPY", "delta": "KWD"}
    registry = oc.TenantRegistry(store, clock)
    for t, c in tenants.items():
        registry.create(oc.Tenant(t, t.title(), c))
    open_tenants(svc, tenants)
    for t in tenants:
        for month in (1, 2, 3):
            svc.record_usage(t, "cpu", "12.5", "eu-west-1", at(month, 3), at(month, 4))
            svc.record_usage(t, "egress", "100", "us-east-1", at(month, 5), at(month, 5))
    jan = {t: svc.generate_invoice(t, *JAN) for t in tenants}
    feb_before = {t: invoice_view(svc.preview_invoice(t, *FEB)) for t in tenants}

    changed = svc.upsert_tenant("alpha", "GBP")
    assert (changed.currency.code, changed.pending_currency, changed.pending_from) == ("EUR", oc.Currency("GBP"), at(2))
    svc.upsert_tenant("gamma", "CHF", effective_from=at(3))
    assert registry.get("alpha").billing_currency.code == "GBP"
    assert {t: registry.get(t).billing_currency.code for t in ("beta", "gamma", "delta")} == {"beta": "EUR", "gamma": "CHF", "delta": "KWD"}

    for t in tenants:
        assert svc.invoice(jan[t].id) == jan[t], "an issued invoice changed"
        assert [i for i in svc.invoices(t)] == [jan[t]]
    for t in ("beta", "delta"):
        assert invoice_view(svc.preview_invoice(t, *FEB)) == feb_before[t]
        assert svc.account(t).pending_currency is None
    assert invoice_view(svc.preview_invoice("gamma", *FEB)) == feb_before["gamma"], "gamma changes in March"
    clock.set(NOW)
    feb = {t: svc.generate_invoice(t, *FEB) for t in tenants}
    mar = {t: svc.generate_invoice(t, *MAR) for t in tenants}
    assert {t: i.currency.code for t, i in feb.items()} == {"alpha": "GBP", "beta": "EUR", "gamma": "JPY", "delta": "KWD"}
    assert {t: i.currency.code for t, i in mar.items()} == {"alpha": "GBP", "beta": "EUR", "gamma": "CHF", "delta": "KWD"}
    assert invoice_view(feb["beta"])[:12] == feb_before["beta"][:12]
    for t, inv in [*feb.items(), *mar.items()]:
        assert all(m.currency == inv.currency for m in (inv.subtotal, inv.total, *(line.amount for line in inv.lines)))
    # Same usage, same instant: alpha (now GBP) and beta (EUR) bill identical quantities.
    assert usage_lines(feb["alpha"]) == usage_lines(feb["beta"]) == usage_lines(jan["beta"])


def test_concurrent_currency_changes_never_leak_into_other_tenants(tmp_path: Path) -> None:
    """Odd tenants flip their currency over and over (with explicit effective dates) while the
    even tenants' invoices are previewed and issued from other threads."""
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    clock = oc.ManualClock(at(1, 20))
    svc = new_service(store, clock)
    tenants = {f"flip-{i:02d}": CURRENCIES[i % len(CURRENCIES)] for i in range(16)}
    open_tenants(svc, tenants)
    for t in tenants:
        svc.record_usage(t, f"own-{t}", "10", "us-east-1", at(2, 2), at(2, 3))
        svc.record_usage(t, "storage", "7.25", "ap-south-1", at(2, 4), at(2, 6))
    steady = sorted(tenants)[::2]
    flipping = sorted(tenants)[1::2]
    baseline = {t: invoice_view(svc.preview_invoice(t, *FEB)) for t in steady}
    other = new_service(oc.Store.open(path), clock)
    mismatches: list[str] = []

    def flip(k: int) -> Callable[[], None]:
        def run() -> None:
            for n in range(30):
                t = flipping[(k + n) % len(flipping)]
                code = CURRENCIES[(k * 7 + n) % len(CURRENCIES)]
                acct = other.upsert_tenant(t, code, effective_from=at(2) if n % 2 else None)
                assert acct.tenant_id == t

        return run

    def watch(s: oc.BillingService) -> Callable[[], None]:
        def run() -> None:
            for _ in range(15):
                for t in steady:
                    view = invoice_view(s.preview_invoice(t, *FEB))
                    if view != baseline[t]:
                        mismatches.append(t)

        return run

    assert describe(run_concurrently([flip(0), flip(1), watch(svc), watch(other)])) == []
    assert mismatches == []
    issued = svc.generate_invoices(*FEB, tenant_ids=steady)
    assert [invoice_view(i) for i in issued] == [baseline[t] for t in steady]
    for t in flipping:
        # A later change replaces a pending one: at most the opening row and one change.
        assert table_rows(path, "SELECT count(*) FROM billing_currency_changes WHERE tenant_id = ?", (t,))[0][0] <= 2
    for t in steady:
        assert svc.account(t).currency.code == tenants[t] and svc.account(t).pending_currency is None
        assert table_rows(path, "SELECT count(*) FROM billing_currency_changes WHERE tenant_id = ?", (t,)) == [(1,)]


# ----- invoicing races --------------------------------------------------------------------


def test_late_usage_racing_bulk_invoicing_lands_in_one_invoice_or_raises(tmp_path: Path) -> None:
    """While generate_invoices bills January for everyone, four threads keep recording January
    usage. Each call either raised InvoiceImmutableError naming the tenant's January invoice, or
    its quantity is on that invoice (its own region makes it its own line). None is lost."""
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    tenants = {f"race-{i:02d}": CURRENCIES[i % len(CURRENCIES)] for i in range(20)}
    svc = new_service(store)
    open_tenants(svc, tenants)
    for t in tenants:
        svc.record_usage(t, "cpu", "1", "base", at(1, 1), at(1, 31))
    outcomes: list[tuple[str, str, BaseException | None]] = []
    lock = threading.Lock()
    go = threading.Event()
    invoiced: list[oc.Invoice] = []
    names = sorted(tenants)

    def writer(k: int) -> Callable[[], None]:
        s = svc if k % 2 else new_service(oc.Store.open(path))

        def run() -> None:
            n = 0
            while n < 5000:
                t = names[(k * 5 + n) % len(names)]
                region = f"late-{k}-{n}"
                try:
                    s.record_usage(t, "cpu", "2.5", region, at(1, 10 + k, n % 24), at(1, 10 + k, n % 24, 30))
                except oc.InvoiceImmutableError as exc:
                    with lock:
                        outcomes.append((t, region, exc))
                    if go.is_set() and n > 40:
                        return
                else:
                    with lock:
                        outcomes.append((t, region, None))
                n += 1
                if n == 20:
                    go.set()

        return run

    def bill() -> None:
        go.wait(JOIN_TIMEOUT)
        invoiced.extend(svc.generate_invoices(*JAN))

    assert describe(run_concurrently([writer(0), writer(1), writer(2), writer(3), bill])) == []
    by_tenant = {i.tenant_id: i for i in invoiced}
    assert sorted(by_tenant) == names and len(invoiced) == len(names)
    accepted = refused = 0
    for t, region, outcome in outcomes:
        lines = usage_lines(by_tenant[t])
        if outcome is None:
            accepted += 1
            assert lines.get(("cpu", region)) == Decimal("2.5"), f"usage {region} of {t} accepted but not billed"
        else:
            refused += 1
            assert isinstance(outcome, oc.InvoiceImmutableError) and outcome.invoice_id == by_tenant[t].id
            assert ("cpu", region) not in lines, f"usage {region} of {t} was refused but billed"
    assert accepted > 0 and refused > 0
    all_regions = {r for inv in invoiced for _, r in usage_lines(inv)}
    assert all_regions == {"base"} | {r for _, r, o in outcomes if o is None}
    assert table_rows(path, "SELECT count(*) FROM billing_usage") == [(len(names) + accepted,)]


def test_one_tenant_bulk_runs_are_rerunnable_like_any_other(tmp_path: Path) -> None:
    """Billing workers sharded down to one tenant race each other: generate_invoices skips a
    tenant already invoiced for the period, whether its tenant list has one name or several."""
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    svc = new_service(store)
    tenants = {f"shard-{i}": CURRENCIES[i] for i in range(8)}
    open_tenants(svc, tenants)
    names = sorted(tenants)
    issued: list[oc.Invoice] = []
    lock = threading.Lock()

    def worker(k: int) -> Callable[[], None]:
        s = new_service(oc.Store.open(path)) if k % 2 else svc

        def run() -> None:
            for n in range(len(names)):
                shard = [names[(n + k) % len(names)]] if k < 3 else names[n : n + 2]
                got = s.generate_invoices(*FEB, tenant_ids=shard)
                with lock:
                    issued.extend(got)

        return run

    raised = run_concurrently([worker(k) for k in range(5)])
    assert describe(raised) == [], "a re-run of a one-tenant billing shard raised"
    assert sorted(i.tenant_id for i in issued) == names
    assert svc.generate_invoices(*FEB, tenant_ids=[names[0]]) == []


def test_pool_allocations_racing_invoicing_are_all_or_nothing(tmp_path: Path) -> None:
    """Pools spanning several tenants are allocated into January while those tenants are being
    invoiced one by one: an allocation either reached every member's invoice or was refused
    whole (nothing recorded for anyone)."""
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    tenants = {f"pool-{i:02d}": CURRENCIES[(2 * i + 1) % len(CURRENCIES)] for i in range(12)}
    svc = new_service(store)
    open_tenants(svc, tenants)
    names = sorted(tenants)
    allocations: list[oc.PoolAllocation] = []
    refused: list[str] = []
    issued: dict[str, oc.Invoice] = {}
    lock = threading.Lock()

    billed = threading.Event()

    def allocator(k: int) -> Callable[[], None]:
        def run() -> None:
            n = 0
            while (n < 25 or not billed.is_set()) and n < 5000:
                n += 1
                members = [names[(k + n + j * 5) % len(names)] for j in range(3)]
                pool = f"p{k}-{n}"
                try:
                    a = svc.allocate_pool(oc.Money("100.00", "EUR"), {m: j + 1 for j, m in enumerate(members)}, at(1, 20, n % 24), pool=pool)
                except oc.InvoiceImmutableError:
                    with lock:
                        refused.append(pool)
                else:
                    with lock:
                        allocations.append(a)

        return run

    def biller() -> None:
        try:
            for t in names:
                inv = svc.generate_invoice(t, *JAN)
                with lock:
                    issued[t] = inv
        finally:
            billed.set()

    assert describe(run_concurrently([allocator(0), allocator(1), biller])) == []
    for a in allocations:
        for share in a.shares:
            pool_lines = [line for line in issued[share.tenant_id].lines if line.meter == a.pool]
            assert [line.amount for line in pool_lines] == [share.charge], f"{a.pool} not billed to {share.tenant_id}"
    recorded = {p for (p,) in table_rows(path, "SELECT DISTINCT pool FROM billing_pool_charges")}
    assert recorded == {a.pool for a in allocations}
    assert not recorded & set(refused)
    on_invoices = {line.meter for inv in issued.values() for line in inv.lines if line.kind == "pool_share"}
    assert on_invoices == recorded
    assert refused, "no allocation ever met an issued invoice"


def test_many_credit_grants_on_many_connections_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    svc = new_service(oc.Store.open(path))
    svc.upsert_tenant("wallet", "KWD")
    svc.upsert_tenant("other", "KWD")
    services = [new_service(oc.Store.open(path)) for _ in range(6)]

    def grant(s: oc.BillingService, k: int) -> Callable[[], None]:
        def run() -> None:
            for n in range(40):
                s.add_credit("wallet" if n % 4 else "other", oc.Money(f"0.{k + 1:01d}{n % 10:02d}", "KWD"))

        return run

    assert describe(run_concurrently([grant(s, k) for k, s in enumerate(services)])) == []
    expected = {"wallet": Decimal(0), "other": Decimal(0)}
    for k in range(6):
        for n in range(40):
            expected["wallet" if n % 4 else "other"] += Decimal(f"0.{k + 1:01d}{n % 10:02d}")
    for t, total in expected.items():
        assert svc.credit_balance(t, "KWD").amount == total
        assert len(svc.credit_ledger(t, "KWD")) == (180 if t == "wallet" else 60)
        assert svc.credit_balance(t, "USD").amount == 0


# ----- the currency migration next to live billing ----------------------------------------


@pytest.mark.parametrize("connection", ["shared", "separate"])
def test_migration_runs_safely_while_invoices_are_generated(tmp_path: Path, connection: str) -> None:
    path = tmp_path / "billing.db"
    store = oc.Store.open(path)
    set_rates(store)
    svc = new_service(store)
    legacy = [f"legacy-{i:04d}" for i in range(400)]
    svc.import_legacy_accounts(legacy)
    legacy_invoices: dict[str, list[str]] = defaultdict(list)
    rows = []
    for i, t in enumerate(legacy):
        for k in range(1 + i % 2):
            invoice_id = f"L{i:04d}-{k}"
            legacy_invoices[t].append(invoice_id)
            rows.append((invoice_id, t, f"{i}.{k}5", dt.datetime(2025, 1 + k, 1, tzinfo=UTC), dt.datetime(2025, 2 + k, 1, tzinfo=UTC), dt.datetime(2025, 2 + k, 2, tzinfo=UTC)))
    svc.import_legacy_invoices(rows)
    target = {t: CURRENCIES[i % len(CURRENCIES)] for i, t in enumerate(legacy)}
    fresh = {f"new-{i:02d}": CURRENCIES[(i + 3) % len(CURRENCIES)] for i in range(16)}
    open_tenants(svc, fresh)
    records = []
    for i, t in enumerate(sorted(fresh)):
        for month in (1, 2, 3):
            u = Usage(t, f"own-{t}", Decimal(i + month) / 8, REGIONS[month - 1], at(month, 2 + i), at(month, 3 + i))
            svc.record_usage(*u.as_tuple())
            records.append(u)
    mig_store = store if connection == "shared" else oc.Store.open(path)
    reports: list[oc.MigrationReport] = []
    seen_progress: list[int] = []
    issued: list[tuple[int, oc.Invoice]] = []
    lock = threading.Lock()
    done = threading.Event()
    reader = svc if connection == "shared" else new_service(oc.Store.open(path))

    def migrate() -> None:
        try:
            reports.append(
                oc.migrate_billing_currency(
                    mig_store, batch_size=7, currency_for=target.get, clock=oc.ManualClock(NOW),
                    progress=lambda p: seen_progress.append(p.processed),
                )
            )  # fmt: skip
        finally:
            done.set()

    def per_tenant(p: int) -> Callable[[], None]:
        def run() -> None:
            for t in sorted(fresh):
                inv = svc.generate_invoice(t, *PERIODS[p])
                with lock:
                    issued.append((p, inv))

        return run

    def bulk() -> None:
        got = svc.generate_invoices(*FEB, tenant_ids=sorted(fresh))
        with lock:
            issued.extend((1, inv) for inv in got)

    def read_back() -> None:
        n = 0
        while not done.is_set() and n < 10_000:
            t = sorted(fresh)[n % len(fresh)]
            assert reader.account(t).currency.code == fresh[t]
            n += 1

    assert describe(run_concurrently([migrate, per_tenant(0), bulk, per_tenant(2), read_back])) == []
    (report,) = reports
    assert (report.processed, report.resumed_after, report.invoices_backfilled) == (len(legacy), 0, len(rows))
    assert report.currencies == dict(Counter(target.values()))
    assert seen_progress == sorted(seen_progress) and seen_progress[-1] == len(legacy)
    assert Counter((inv.tenant_id, p) for p, inv in issued) == Counter((t, p) for t in fresh for p in range(3))
    for p, inv in issued:
        assert inv.currency.code == fresh[inv.tenant_id] and not inv.legacy
        assert usage_lines(inv) == expected_quantities(records, inv.tenant_id, PERIODS[p])
    changes = Counter(t for (t,) in table_rows(path, "SELECT tenant_id FROM billing_currency_changes"))
    assert all(changes[t] == 1 for t in [*legacy, *fresh])
    assert table_rows(path, "SELECT tenant_id FROM billing_accounts WHERE migrated_at IS NOT NULL ORDER BY tenant_id") == [(t,) for t in legacy]
    for t in [*legacy[::37], *fresh]:
        acct = svc.account(t)
        if t in fresh:
            assert (acct.currency.code, acct.pending_currency, acct.legacy) == (fresh[t], None, False)
            assert {i.id for i in svc.invoices(t)} == {inv.id for _, inv in issued if inv.tenant_id == t}
        else:
            assert acct.legacy and acct.pending_currency == oc.Currency(target[t]) and acct.pending_from == at(5)
            listed = svc.invoices(t)
            assert sorted(i.id for i in listed) == sorted(legacy_invoices[t])
            assert all(i.legacy and i.currency.code == "USD" and i.exchange_rate_to_usd == 1 for i in listed)
    assert table_rows(path, "SELECT count(*), count(DISTINCT id) FROM billing_invoices WHERE legacy = 1") == [(len(rows), len(rows))]
    integrity_ok(path)


def test_invoices_never_hide_legacy_invoices_while_the_migration_copies_them(tmp_path: Path) -> None:
    """invoices(tenant) returns a legacy invoice before and after its copy into the invoice
    table, so also at the moment it is copied: readers on their own connections list the
    tenants at the migration's front while it commits one account per batch."""
    path = tmp_path / "billing.db"
    svc = new_service(oc.Store.open(path))
    legacy = [f"legacy-{i:05d}" for i in range(1500)]
    svc.import_legacy_accounts(legacy)
    svc.import_legacy_invoices(
        [(f"L{i:05d}", t, "19.99", dt.datetime(2025, 5, 1, tzinfo=UTC), dt.datetime(2025, 6, 1, tzinfo=UTC), dt.datetime(2025, 6, 2, tzinfo=UTC)) for i, t in enumerate(legacy)]
    )
    front = [0]
    done = threading.Event()
    wrong: list[str] = []
    readers = [new_service(oc.Store.open(path)) for _ in range(2)]

    def reader(k: int) -> Callable[[], None]:
        def run() -> None:
            while not done.is_set():
                i = min(front[0] + k + 1, len(legacy) - 1)
                listed = readers[k].invoices(legacy[i])
                if [inv.id for inv in listed] != [f"L{i:05d}"]:
                    wrong.append(f"{legacy[i]}: {[inv.id for inv in listed]}")
                assert readers[k].invoice(f"L{i:05d}").total.amount == Decimal("19.99")

        return run

    def migrate() -> None:
        def progress(p: oc.MigrationProgress) -> None:
            front[0] = p.processed

        try:
            report = oc.migrate_billing_currency(oc.Store.open(path), batch_size=1, clock=oc.ManualClock(NOW), progress=progress)
            assert report.processed == len(legacy)
        finally:
            done.set()

    assert describe(run_concurrently([migrate, reader(0), reader(1)])) == []
    assert wrong == [], f"{len(wrong)} listings hid a legacy invoice mid-migration, e.g. {wrong[:3]}"


# ----- randomized tenant and currency mixes -----------------------------------------------

currency_codes = st.sampled_from(CURRENCIES)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    currencies=st.lists(currency_codes, min_size=2, max_size=7),
    quantities=st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=4),
    credit_usd=st.integers(min_value=0, max_value=300),
)
def test_random_tenant_currency_mixes_stay_isolated(currencies: list[str], quantities: list[int], credit_usd: int) -> None:
    """Tenants with the same usage in random currencies, invoiced from two threads at once
    (one in bulk, one per tenant): each invoice is in its tenant's currency, with its own
    quantities, amounts in its minor units, and credits only from its own wallet."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "billing.db"
        store = oc.Store.open(path)
        set_rates(store)
        svc = new_service(store)
        tenants = {f"mix-{i}": c for i, c in enumerate(currencies)}
        open_tenants(svc, tenants)
        records = []
        for i, t in enumerate(tenants):
            for n, q in enumerate(quantities):
                u = Usage(t, "egress" if n % 2 else f"own-{t}", Decimal(q * (i + 1)) / 1000, "us-east-1", at(1, 2 + n), at(1, 2 + n, 6))
                records.append(u)
            if credit_usd:
                svc.add_credit(t, oc.Money(in_currency(Decimal(credit_usd), tenants[t]), tenants[t]))
            svc.add_credit(t, oc.Money(in_currency(Decimal(1000), "USD" if tenants[t] != "USD" else "EUR"), "USD" if tenants[t] != "USD" else "EUR"))
        svc.record_usage_many([u.as_tuple() for u in records])
        issued: list[oc.Invoice] = []
        lock = threading.Lock()

        def bulk() -> None:
            got = svc.generate_invoices(*JAN)
            with lock:
                issued.extend(got)

        def each() -> None:
            for t in reversed(list(tenants)):
                try:
                    inv = svc.generate_invoice(t, *JAN)
                except oc.InvoiceImmutableError:
                    continue
                with lock:
                    issued.append(inv)

        assert describe(run_concurrently([bulk, each])) == []
        assert sorted(i.tenant_id for i in issued) == sorted(tenants)
        for inv in issued:
            code = tenants[inv.tenant_id]
            assert inv.currency.code == code
            assert usage_lines(inv) == expected_quantities(records, inv.tenant_id, JAN)
            for m in (inv.subtotal, inv.total, inv.credits_applied, *(line.amount for line in inv.lines)):
                assert m.currency.code == code and decimals_of(m.amount) == MINOR_UNITS[code]
            wallet = in_currency(Decimal(credit_usd), code) if credit_usd else Decimal(0)
            assert inv.credits_applied.amount == min(wallet, inv.subtotal.amount)
            assert svc.credit_balance(inv.tenant_id, code).amount == wallet - inv.credits_applied.amount
            assert inv.total_usd.amount == round_half_away(mul(inv.total.amount, TO_USD[code]), 2)


@settings(max_examples=100, deadline=None)
@given(
    pool_currency=currency_codes,
    total_minor=st.integers(min_value=1, max_value=10**9),
    members=st.lists(
        st.tuples(currency_codes, st.decimals(min_value=0, max_value=1000, places=2)), min_size=1, max_size=8
    ).filter(lambda ms: any(w > 0 for _, w in ms)),
)
def test_random_pool_splits_recover_the_total_exactly(pool_currency: str, total_minor: int, members: list[tuple[str, Decimal]]) -> None:
    store = oc.Store.memory()
    set_rates(store)
    svc = new_service(store)
    weights: dict[str, Decimal | int | str] = {}
    for i, (code, weight) in enumerate(members):
        svc.upsert_tenant(f"share-{i}", code)
        weights[f"share-{i}"] = weight
    minor = MINOR_UNITS[pool_currency]
    total = oc.Money(Decimal(total_minor).scaleb(-minor), pool_currency)
    allocation = svc.allocate_pool(total, weights, at(2, 14, 12))
    assert [s.tenant_id for s in allocation.shares] == list(weights)
    assert sum((s.share.amount for s in allocation.shares), Decimal(0)) == total.amount
    weight_sum = sum((w for _, w in members), Decimal(0))
    for s, (code, weight) in zip(allocation.shares, members, strict=True):
        assert s.weight == weight and s.share.currency.code == pool_currency
        ideal = CTX.divide(mul(total.amount, weight), weight_sum)
        assert round_down(ideal, minor) <= s.share.amount <= round_down(ideal, minor) + quantum(minor)
        if weight == 0:
            assert s.share.amount == 0
        assert s.charge.currency.code == code and decimals_of(s.charge.amount) == MINOR_UNITS[code]
        assert is_rounded(s.charge.amount, mul(s.share.amount, s.rate.rate), MINOR_UNITS[code]), (s, s.rate)
