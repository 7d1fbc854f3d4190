"""Billing and metering (issue 5): per-tenant ISO 4217 currencies, per-second proration,
immutable invoices with their rate to USD, discounts and credits per currency, multi-currency
cost pools, and the resumable migration of legacy USD-only accounts.

Every amount is a Decimal; expected values are computed independently with Python's decimal
module. Raw SQLite reads and writes go through the standard library's sqlite3 on a file store,
in a child process.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import omnicloud as oc
from tests.conftest import T0
from tests.rawsqlite import RawSQLite

UTC = dt.timezone.utc


def at(
    year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> dt.datetime:
    """An aware UTC instant."""
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def month(year: int, m: int) -> tuple[dt.datetime, dt.datetime]:
    """The calendar month [first instant, first instant of the next month)."""
    return at(year, m), (at(year + 1, 1) if m == 12 else at(year, m + 1))


JAN, FEB, MAR, APR, MAY = (month(2026, m) for m in range(1, 6))
#: When the standard rates below were published.
RATES_AS_OF = at(2026, 1, 1)
#: The standard rates of every test (base, quote, rate).
STANDARD_RATES: list[tuple[str, str, str]] = [
    ("EUR", "USD", "1.10"),
    ("GBP", "USD", "1.25"),
    ("USD", "JPY", "150"),
    ("KWD", "USD", "3.25"),
    ("BHD", "USD", "2.65"),
    ("CLF", "USD", "45.5"),
]

# ISO 4217 List One as published 2026-01-01 (through Amendment 180): the billable codes (every
# code with a minor unit; the 13 "N.A." codes are not billable) and their minor units.
_MINOR_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_MINOR_2 = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO "
    "NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS "
    "SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST "
    "XAD XCD XCG YER ZAR ZMW ZWG"
)
_MINOR_3 = "BHD IQD JOD KWD LYD OMR TND"
_MINOR_4 = "CLF UYW"
BILLABLE_MINOR_UNITS: dict[str, int] = {
    code: minor
    for codes, minor in ((_MINOR_0, 0), (_MINOR_2, 2), (_MINOR_3, 3), (_MINOR_4, 4))
    for code in codes.split()
}
BILLABLE: list[str] = sorted(BILLABLE_MINOR_UNITS)
#: List One codes without a minor unit: metals, bond-market units, SDR, testing, "no currency".
NO_MINOR_UNIT = "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX".split()
#: Codes moved to List Three (withdrawn) that still parse so that old documents can be read.
WITHDRAWN = "ANG BGN CUC HRK SLL ZWL".split()

#: The library's rounding strategies and Python's matching decimal rounding modes.
ROUNDING_MODES: dict[str, str] = {
    "half_away_from_zero": decimal.ROUND_HALF_UP,
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_toward_zero": decimal.ROUND_HALF_DOWN,
    "toward_zero": decimal.ROUND_DOWN,
    "away_from_zero": decimal.ROUND_UP,
    "floor": decimal.ROUND_FLOOR,
    "ceiling": decimal.ROUND_CEILING,
}


def unit(code: str) -> Decimal:
    """One minor unit of a billable currency."""
    return Decimal(1).scaleb(-BILLABLE_MINOR_UNITS[code])


def rounded(amount: Decimal, code: str, mode: str = decimal.ROUND_HALF_UP) -> Decimal:
    """`amount` rounded to the minor units of `code` (Python's decimal, as the reference)."""
    with decimal.localcontext(prec=60):
        return amount.quantize(unit(code), rounding=mode)


def exact_sum(values: Sequence[Decimal]) -> Decimal:
    """The sum without the default context's 28-digit rounding."""
    with decimal.localcontext(prec=80):
        total = Decimal(0)
        for v in values:
            total += v
        return total


def exponent(amount: Decimal) -> int:
    exp = amount.as_tuple().exponent
    assert isinstance(exp, int)
    return exp


def make_rates(store: oc.Store | None = None) -> oc.ExchangeRates:
    rates = oc.ExchangeRates(store)
    for base, quote, rate in STANDARD_RATES:
        rates.set_rate(base, quote, Decimal(rate), RATES_AS_OF)
    return rates


RAW = RawSQLite()


@pytest.fixture(scope="module", autouse=True)
def _raw_sqlite_helper() -> Iterator[None]:
    yield
    RAW.close()


def raw_rows(db: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Rows read with the standard library's sqlite3, bypassing omnicloud."""
    return RAW.rows(db, sql, tuple(params))


def raw_write(db: Path, sql: str) -> None:
    """A write with the standard library's sqlite3, bypassing omnicloud."""
    RAW.rows(db, sql)


def raw_dump(db: Path) -> list[str]:
    """The whole database as SQL text."""
    return [str(line) for line in RAW.call("iterdump", db)]


def line_facts(invoice: oc.Invoice) -> list[tuple[object, ...]]:
    return [(l.kind, l.meter, l.region, l.quantity, l.unit_price, l.amount) for l in invoice.lines]


def quantities(invoice: oc.Invoice) -> dict[tuple[str, str | None], Decimal]:
    return {(line.meter, line.region): line.quantity for line in invoice.lines}


@pytest.fixture
def rates(store: oc.Store) -> oc.ExchangeRates:
    """The standard rates, persisted in the in-memory store."""
    return make_rates(store)


@pytest.fixture
def billing(store: oc.Store, clock: oc.ManualClock, rates: oc.ExchangeRates) -> oc.BillingService:
    """A billing service over the in-memory store at T0 (2026-03-01T12:00Z)."""
    return oc.BillingService(store, clock, rates)


@pytest.fixture
def file_rates(file_store: oc.Store) -> oc.ExchangeRates:
    """The standard rates, persisted in the file store."""
    return make_rates(file_store)


@pytest.fixture
def file_billing(file_store: oc.Store, clock: oc.ManualClock, file_rates: oc.ExchangeRates) -> oc.BillingService:
    """A billing service over a real SQLite file (``db_path``), for raw sqlite3 checks."""
    return oc.BillingService(file_store, clock, file_rates)


# Legacy import helpers -------------------------------------------------------------------------


def legacy_ids(count: int) -> list[str]:
    return [f"leg-{i:02d}" for i in range(count)]


def import_legacy(svc: oc.BillingService, count: int) -> list[str]:
    """`count` legacy accounts, each with a January and a February USD invoice."""
    ids = legacy_ids(count)
    assert svc.import_legacy_accounts(ids) == count
    rows = []
    for i, tenant in enumerate(ids):
        rows.append((f"L-{i:02d}-jan", tenant, f"{100 + i}.5", JAN[0], JAN[1], at(2026, 2, 1, 9)))
        rows.append((f"L-{i:02d}-feb", tenant, f"{i}.990", FEB[0], FEB[1], at(2026, 3, 1, 9)))
    assert svc.import_legacy_invoices(rows) == 2 * count
    return ids


class ProgressLog:
    """A migration progress callback that records every call and can stop the run."""

    def __init__(self, stop_at_call: int | None = None) -> None:
        self.calls: list[tuple[int, int, int, str | None]] = []
        self.stop_at_call = stop_at_call

    def __call__(self, p: oc.MigrationProgress) -> bool:
        self.calls.append((p.processed, p.total, p.batches, p.last_tenant_id))
        return self.stop_at_call is None or len(self.calls) < self.stop_at_call


class _SameTenant(str):
    """A tenant id that is a distinct dict key from an equal string (to list a tenant twice)."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


# =================================================================================================
# 1. Spec acceptance
# =================================================================================================


class TestTenantBillingCurrency:
    """A tenant's billing currency is an ISO 4217 code, and invoices use its minor units."""

    @pytest.mark.parametrize(
        ("code", "minor"),
        [("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
    )
    def test_account_in_an_iso_currency_is_invoiced_in_its_minor_units(
        self, billing: oc.BillingService, code: str, minor: int
    ) -> None:
        account = billing.upsert_tenant("acme", oc.Currency(code))
        assert (account.tenant_id, account.currency.code, account.legacy) == ("acme", code, False)
        assert account.pending_currency is None and account.pending_from is None
        assert billing.currency_at("acme", at(1990, 1, 1)).code == code
        price = Decimal("0.1234567")
        billing.set_price("cpu", oc.Money(price, code))
        billing.record_usage("acme", "cpu", Decimal("777"), "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        inv = billing.generate_invoice("acme", *MAR)
        (line,) = inv.lines
        assert line.quantity == 777 and line.unit_price == oc.Money(price, code) and line.conversion is None
        assert line.amount.amount == rounded(Decimal(777) * price, code)
        for money in (line.amount, inv.subtotal, inv.total, inv.credits_applied):
            assert money.currency.code == code
            assert exponent(money.amount) == -minor
        assert inv.currency.code == code and inv.total == line.amount
        assert exponent(inv.total_usd.amount) == -2 and inv.total_usd.currency.code == "USD"

    def test_invoice_records_the_rate_to_usd_at_issue_time(
        self, billing: oc.BillingService, rates: oc.ExchangeRates
    ) -> None:
        billing.upsert_tenant("acme", "EUR")
        billing.set_price("cpu", oc.Money("2.00", "EUR"))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 2, 3), at(2026, 2, 4))
        rates.set_rate("EUR", "USD", "1.20", at(2026, 2, 15))  # during the period
        rates.set_rate("EUR", "USD", "1.30", at(2026, 3, 1, 6), source="BCE")  # after it, before now
        rates.set_rate("EUR", "USD", "9.99", at(2026, 3, 1, 13))  # after issue
        inv = billing.generate_invoice("acme", *FEB)
        assert (inv.currency.code, inv.total) == ("EUR", oc.Money("20.00", "EUR"))
        assert inv.exchange_rate_to_usd == Decimal("1.30")
        assert (inv.rate_as_of, inv.rate_source) == (at(2026, 3, 1, 6), "BCE")
        assert inv.total_usd == oc.Money("26.00", "USD")
        assert inv.issued_at == T0 and inv.legacy is False

    def test_usd_invoice_has_the_identity_rate(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "USD")
        billing.set_price("cpu", oc.Money("0.015", "USD"))
        billing.record_usage("acme", "cpu", 333, "us-east-1", at(2026, 3, 5), at(2026, 3, 5))
        inv = billing.generate_invoice("acme", *MAR)
        assert inv.total.amount == Decimal("5.00")  # 4.995 rounds half away from zero
        assert (inv.exchange_rate_to_usd, inv.rate_source) == (Decimal(1), "identity")
        assert inv.total_usd == inv.total

    def test_total_usd_of_a_jpy_invoice_uses_the_inverse_rate(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("jp", "JPY")
        billing.set_price("cpu", oc.Money("0.10", "USD"))
        billing.record_usage("jp", "cpu", 7, "ap-northeast-1", at(2026, 3, 5), at(2026, 3, 6))
        inv = billing.generate_invoice("jp", *MAR)
        assert inv.total == oc.Money("105", "JPY") and exponent(inv.total.amount) == 0
        assert abs(inv.exchange_rate_to_usd - Decimal(1) / Decimal(150)) < Decimal("1e-25")
        assert inv.total_usd.amount == rounded(inv.total.amount * inv.exchange_rate_to_usd, "USD")
        assert inv.total_usd == oc.Money("0.70", "USD")

    def test_total_usd_is_rounded_with_the_service_rounding(
        self, store: oc.Store, clock: oc.ManualClock, rates: oc.ExchangeRates
    ) -> None:
        svc = oc.BillingService(store, clock, rates, rounding="half_even")
        svc.upsert_tenant("acme", "EUR")
        svc.set_price("cpu", oc.Money("1", "EUR"))
        svc.record_usage("acme", "cpu", Decimal("0.15"), "eu-west-1", at(2026, 3, 2), at(2026, 3, 2))
        inv = svc.generate_invoice("acme", *MAR)
        assert inv.total == oc.Money("0.15", "EUR")
        # 0.15 * 1.10 = 0.165: every amount of the service, the USD equivalent included, is
        # rounded with its one configured strategy (half even here; the default is half away
        # from zero, which would give 0.17).
        assert inv.total_usd == oc.Money("0.16", "USD")

    def test_stored_invoice_does_not_change_when_rates_change_later(
        self,
        file_billing: oc.BillingService,
        file_rates: oc.ExchangeRates,
        file_store: oc.Store,
        db_path: Path,
        clock: oc.ManualClock,
    ) -> None:
        svc = file_billing
        svc.upsert_tenant("acme", "EUR")
        svc.set_price("cpu", oc.Money("3.00", "EUR"))
        svc.record_usage("acme", "cpu", 4, "eu-west-1", at(2026, 2, 10), at(2026, 2, 11))
        issued = svc.generate_invoice("acme", *FEB)
        columns = "currency, total, exchange_rate_to_usd, rate_as_of, rate_source, total_usd, issued_at"
        row = raw_rows(db_path, f"SELECT {columns} FROM billing_invoices WHERE id = ?", [issued.id])
        assert row[0][:3] == ("EUR", "12.00", "1.10") and row[0][4:6] == ("ECB", "13.20")

        file_rates.set_rate("EUR", "USD", "1.50", at(2026, 3, 2))
        clock.set(at(2026, 3, 10))
        again = oc.BillingService(file_store, clock).invoice(issued.id)
        assert again == issued
        assert (again.exchange_rate_to_usd, again.total_usd, again.rate_as_of) == (
            Decimal("1.10"),
            oc.Money("13.20", "USD"),
            RATES_AS_OF,
        )
        assert raw_rows(db_path, f"SELECT {columns} FROM billing_invoices WHERE id = ?", [issued.id]) == row
        # The new rate is real: a later invoice uses it.
        svc.record_usage("acme", "cpu", 4, "eu-west-1", at(2026, 3, 5), at(2026, 3, 6))
        assert svc.generate_invoice("acme", *MAR).exchange_rate_to_usd == Decimal("1.50")


class TestLegacyInvoices:
    """Legacy USD invoices stay exactly as imported and queryable, before and after migration."""

    def test_legacy_invoices_are_usd_and_queryable_before_migration(self, billing: oc.BillingService) -> None:
        (tenant,) = import_legacy(billing, 1)
        account = billing.account(tenant)
        assert (account.currency.code, account.legacy, account.pending_currency) == ("USD", True, None)
        invoices = billing.invoices(tenant)
        assert [i.id for i in invoices] == ["L-00-jan", "L-00-feb"]
        jan = invoices[0]
        assert (jan.legacy, jan.kind, jan.currency.code, jan.lines) == (True, "invoice", "USD", [])
        assert jan.total.amount.as_tuple() == Decimal("100.5").as_tuple()
        assert (jan.exchange_rate_to_usd, jan.total_usd) == (Decimal(1), jan.total)
        assert (jan.period_start, jan.period_end, jan.issued_at) == (JAN[0], JAN[1], at(2026, 2, 1, 9))
        assert billing.invoice("L-00-feb").total.amount.as_tuple() == Decimal("0.990").as_tuple()
        with pytest.raises(oc.ValidationError, match="already imported"):
            billing.import_legacy_invoices([("L-00-jan", tenant, "1.00", *JAN, JAN[1])])
        assert billing.invoice("L-00-jan").total.amount == Decimal("100.5")

    def test_migration_leaves_legacy_rows_byte_for_byte_unchanged(
        self, file_billing: oc.BillingService, file_store: oc.Store, db_path: Path, clock: oc.ManualClock
    ) -> None:
        ids = import_legacy(file_billing, 5)
        query = (
            "SELECT id, tenant_id, amount_usd, typeof(amount_usd), hex(amount_usd), period_start,"
            " period_end, issued_at, hex(id || tenant_id || period_start || period_end || issued_at)"
            " FROM billing_legacy_invoices ORDER BY id"
        )
        before_rows = raw_rows(db_path, query)
        before = {t: file_billing.invoices(t) for t in ids}
        report = oc.migrate_billing_currency(file_store, batch_size=2, currency_for=lambda t: "EUR", clock=clock)
        assert (report.processed, report.invoices_backfilled) == (5, 10)
        assert raw_rows(db_path, query) == before_rows
        assert [r[2] for r in before_rows[:2]] == ["0.990", "100.5"]
        for t in ids:
            after = file_billing.invoices(t)
            assert after == before[t]
            assert all(i.legacy and i.currency.code == "USD" and i.exchange_rate_to_usd == 1 for i in after)
            assert [i.total.amount.as_tuple() for i in after] == [i.total.amount.as_tuple() for i in before[t]]
        assert file_billing.invoice("L-03-jan").total.amount.as_tuple() == Decimal("103.5").as_tuple()
        backfilled = raw_rows(db_path, "SELECT id, currency, total, legacy FROM billing_invoices ORDER BY id")
        assert backfilled[0] == ("L-00-feb", "USD", "0.990", 1) and len(backfilled) == 10

    def test_legacy_tables_refuse_raw_updates_and_deletes(
        self, file_billing: oc.BillingService, db_path: Path
    ) -> None:
        import_legacy(file_billing, 1)
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            raw_write(db_path, "UPDATE billing_legacy_invoices SET amount_usd = '0' WHERE id = 'L-00-jan'")
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            raw_write(db_path, "DELETE FROM billing_legacy_invoices")
        amounts = raw_rows(db_path, "SELECT amount_usd FROM billing_legacy_invoices ORDER BY id")
        assert amounts == [("0.990",), ("100.5",)]


class TestCurrencyMigration:
    """migrate_billing_currency: batches, checkpoint, resume, dry run, currency choice."""

    def test_batches_and_progress_counts(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        ids = import_legacy(billing, 7)
        log = ProgressLog()
        choice: dict[str, oc.Currency | str] = {"leg-00": "EUR", "leg-01": oc.Currency("JPY")}
        report = oc.migrate_billing_currency(store, batch_size=3, currency_for=choice, progress=log, clock=clock)
        assert log.calls == [(3, 7, 1, "leg-02"), (6, 7, 2, "leg-05"), (7, 7, 3, "leg-06")]
        assert (report.processed, report.resumed_after, report.batches, report.dry_run) == (7, 0, 3, False)
        assert report.batches == -(-7 // 3)
        assert report.currencies == {"EUR": 1, "JPY": 1, "USD": 5}
        assert report.invoices_backfilled == 14
        assert report.effective_from == APR[0]
        eur = billing.account("leg-00")
        assert (eur.currency.code, eur.pending_currency, eur.pending_from) == ("USD", oc.Currency("EUR"), APR[0])
        assert billing.currency_at("leg-01", APR[0]).code == "JPY"
        assert all(billing.account(t).legacy for t in ids)

    def test_checkpoint_row_tracks_progress(
        self, file_billing: oc.BillingService, file_store: oc.Store, db_path: Path, clock: oc.ManualClock
    ) -> None:
        import_legacy(file_billing, 5)
        log = ProgressLog(stop_at_call=2)
        with pytest.raises(oc.MigrationStoppedError) as err:
            oc.migrate_billing_currency(file_store, batch_size=2, progress=log, clock=clock)
        assert err.value.processed == 4 and isinstance(err.value, oc.BillingError)
        cp = "SELECT last_tenant_id, processed, finished_at IS NULL FROM billing_migration_checkpoint"
        assert raw_rows(db_path, cp) == [("leg-03", 4, 1)]
        oc.migrate_billing_currency(file_store, batch_size=2, clock=clock)
        assert raw_rows(db_path, cp) == [("leg-04", 5, 0)]
        migrated = raw_rows(db_path, "SELECT count(*) FROM billing_accounts WHERE migrated_at IS NOT NULL")
        assert migrated == [(5,)]

    def test_stopped_run_resumes_after_the_checkpoint_and_never_reprocesses(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        ids = import_legacy(billing, 7)
        first = ProgressLog(stop_at_call=1)
        with pytest.raises(oc.MigrationStoppedError) as err:
            oc.migrate_billing_currency(
                store, batch_size=3, currency_for=lambda t: "EUR", progress=first, clock=clock
            )
        assert err.value.processed == 3 and first.calls == [(3, 7, 1, "leg-02")]
        second = ProgressLog()
        report = oc.migrate_billing_currency(
            store, batch_size=3, currency_for=lambda t: "GBP", progress=second, clock=clock
        )
        assert (report.resumed_after, report.processed, report.batches) == (3, 4, 2)
        assert second.calls == [(6, 7, 1, "leg-05"), (7, 7, 2, "leg-06")]
        assert report.currencies == {"GBP": 4} and report.invoices_backfilled == 8
        # The first batch kept the currency chosen by the first run: it was not processed again.
        pending = [billing.account(t).pending_currency for t in ids]
        assert pending == [oc.Currency("EUR")] * 3 + [oc.Currency("GBP")] * 4
        assert all(len(billing.invoices(t)) == 2 for t in ids)
        rerun = oc.migrate_billing_currency(store, batch_size=3, currency_for=lambda t: "JPY", clock=clock)
        assert (rerun.processed, rerun.resumed_after, rerun.batches, rerun.invoices_backfilled) == (0, 0, 0, 0)

    def test_an_exception_in_progress_is_reraised_and_the_batch_kept(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 4)

        class Boom(Exception):
            pass

        def explode(p: oc.MigrationProgress) -> None:
            raise Boom(p.last_tenant_id)

        with pytest.raises(Boom, match="leg-01"):
            oc.migrate_billing_currency(
                store, batch_size=2, currency_for=lambda t: "EUR", progress=explode, clock=clock
            )
        assert billing.account("leg-01").pending_currency == oc.Currency("EUR")
        assert billing.account("leg-02").pending_currency is None
        report = oc.migrate_billing_currency(store, batch_size=2, clock=clock)
        assert (report.resumed_after, report.processed) == (2, 2)

    def test_dry_run_writes_nothing(
        self, file_billing: oc.BillingService, file_store: oc.Store, db_path: Path, clock: oc.ManualClock
    ) -> None:
        ids = import_legacy(file_billing, 5)
        before = raw_dump(db_path)
        log = ProgressLog()
        report = oc.migrate_billing_currency(
            file_store, batch_size=2, dry_run=True, currency_for=lambda t: "EUR", progress=log, clock=clock
        )
        assert report.dry_run and (report.processed, report.batches, report.invoices_backfilled) == (5, 3, 10)
        assert report.currencies == {"EUR": 5} and [c[0] for c in log.calls] == [2, 4, 5]
        assert raw_dump(db_path) == before
        assert raw_rows(db_path, "SELECT count(*) FROM billing_migration_checkpoint") == [(0,)]
        assert all(file_billing.account(t).pending_currency is None for t in ids)
        real = oc.migrate_billing_currency(file_store, batch_size=2, clock=clock)
        assert (real.resumed_after, real.processed) == (0, 5)

    def test_currency_for_falls_back_to_the_registry_then_usd(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 3)
        oc.TenantRegistry(store, clock).create(oc.Tenant("leg-01", "Registered", "GBP"))
        chooser = {"leg-00": "KWD"}
        report = oc.migrate_billing_currency(store, currency_for=lambda t: chooser.get(t), clock=clock)
        assert report.currencies == {"KWD": 1, "GBP": 1, "USD": 1}
        assert [billing.currency_at(t, APR[0]).code for t in legacy_ids(3)] == ["KWD", "GBP", "USD"]

    def test_accounts_already_given_a_currency_keep_it(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 3)
        billing.upsert_tenant("leg-01", "GBP")
        report = oc.migrate_billing_currency(store, currency_for=lambda t: "JPY", clock=clock)
        assert report.processed == 3 and report.invoices_backfilled == 6
        assert billing.account("leg-01").pending_currency == oc.Currency("GBP")
        assert billing.account("leg-00").pending_currency == oc.Currency("JPY")
        assert billing.currency_at("leg-01", MAY[0]).code == "GBP"

    def test_report_counts_only_the_currencies_it_set(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 3)
        billing.upsert_tenant("leg-01", "GBP")
        report = oc.migrate_billing_currency(store, currency_for=lambda t: "JPY", clock=clock)
        # MigrationReport.currencies is "accounts given a currency, by currency": leg-01 kept
        # the GBP set by upsert_tenant, so this run gave JPY to two accounts, not three.
        assert report.currencies == {"JPY": 2}

    def test_unusable_currency_choice_stops_before_its_batch_is_written(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 4)
        with pytest.raises(oc.CurrencyNotBillableError) as err:
            oc.migrate_billing_currency(
                store, batch_size=2, currency_for={"leg-00": "EUR", "leg-03": "XAU"}, clock=clock
            )
        assert err.value.code == "XAU"
        assert billing.account("leg-00").pending_currency == oc.Currency("EUR")
        assert billing.account("leg-02").pending_currency is None
        with pytest.raises(oc.UnknownCurrencyError):
            oc.migrate_billing_currency(store, currency_for=lambda t: "ZZZ", clock=clock)
        assert billing.account("leg-03").pending_currency is None
        report = oc.migrate_billing_currency(store, batch_size=2, clock=clock)
        assert (report.resumed_after, report.processed, report.currencies) == (2, 2, {"USD": 2})

    def test_a_finished_pass_is_followed_by_one_for_new_accounts_only(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        import_legacy(billing, 3)
        oc.migrate_billing_currency(store, currency_for=lambda t: "EUR", clock=clock)
        billing.import_legacy_accounts(["leg-10", "leg-11"])
        log = ProgressLog()
        report = oc.migrate_billing_currency(store, currency_for=lambda t: "CLF", progress=log, clock=clock)
        assert (report.processed, report.resumed_after, report.currencies) == (2, 0, {"CLF": 2})
        assert log.calls == [(2, 2, 1, "leg-11")]
        assert billing.account("leg-00").pending_currency == oc.Currency("EUR")

    def test_period_in_progress_finishes_in_usd_after_migration(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        (tenant,) = import_legacy(billing, 1)
        report = oc.migrate_billing_currency(store, currency_for={tenant: "EUR"}, clock=clock)
        assert report.effective_from == APR[0]
        billing.set_price("cpu", oc.Money("1.10", "USD"))
        billing.record_usage(tenant, "cpu", 10, "eu-west-1", at(2026, 3, 31, 23), at(2026, 4, 1, 1))
        march, april = billing.generate_invoice(tenant, *MAR), billing.generate_invoice(tenant, *APR)
        assert (march.currency.code, march.total) == ("USD", oc.Money("5.50", "USD"))
        assert (april.currency.code, april.total) == ("EUR", oc.Money("5.00", "EUR"))
        assert [i.legacy for i in billing.invoices(tenant)] == [True, True, False, False]

    def test_explicit_effective_from_must_not_be_in_the_past(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        (tenant,) = import_legacy(billing, 1)
        report = oc.migrate_billing_currency(store, currency_for={tenant: "GBP"}, clock=clock, effective_from=MAY[0])
        assert report.effective_from == MAY[0]
        account = billing.account(tenant)
        assert (account.pending_currency, account.pending_from) == (oc.Currency("GBP"), MAY[0])
        # As for upsert_tenant, a change effective before now would switch the currency of the
        # period in progress (March, started in USD): it must be refused.
        billing.import_legacy_accounts(["leg-late"])
        with pytest.raises(oc.ValidationError):
            oc.migrate_billing_currency(store, currency_for=lambda t: "EUR", clock=clock, effective_from=JAN[0])
        assert billing.currency_at("leg-late", MAR[0]).code == "USD"
        assert billing.account("leg-late").currency.code == "USD"


class TestCostPools:
    """Shared costs split exactly, converted at the recorded rate and billed per tenant."""

    @pytest.fixture
    def tenants(self, billing: oc.BillingService) -> oc.BillingService:
        for tenant, code in [("p-usd", "USD"), ("p-eur", "EUR"), ("p-jpy", "JPY")]:
            billing.upsert_tenant(tenant, code)
        return billing

    def test_shares_sum_exactly_and_convert_at_the_recorded_rate(self, tenants: oc.BillingService) -> None:
        alloc = tenants.allocate_pool(
            oc.Money("100.00", "USD"), {"p-usd": 1, "p-eur": 1, "p-jpy": 1}, at(2026, 3, 10), pool="shared-db"
        )
        assert (alloc.pool, alloc.total, alloc.at) == ("shared-db", oc.Money("100.00", "USD"), at(2026, 3, 10))
        shares = {s.tenant_id: s for s in alloc.shares}
        assert [s.tenant_id for s in alloc.shares] == ["p-usd", "p-eur", "p-jpy"]
        assert [s.share.amount for s in alloc.shares] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
        assert alloc.recovered_total() == alloc.total
        for s in alloc.shares:
            code = s.charge.currency.code
            assert (s.rate.base.code, s.rate.quote.code) == ("USD", code)
            assert s.charge.amount == rounded(s.share.amount * s.rate.rate, code)
        assert shares["p-eur"].charge == oc.Money("30.30", "EUR")
        assert shares["p-jpy"].charge == oc.Money("5000", "JPY")  # 4999.5 half away from zero
        assert shares["p-jpy"].rate.rate == 150 and shares["p-usd"].charge == oc.Money("33.34", "USD")

    def test_pool_in_another_currency(self, tenants: oc.BillingService) -> None:
        alloc = tenants.allocate_pool(
            oc.Money("1000.00", "EUR"), {"p-usd": Decimal("2"), "p-jpy": "1"}, at(2026, 3, 10)
        )
        usd, jpy = alloc.shares
        assert (usd.share.amount, jpy.share.amount) == (Decimal("666.67"), Decimal("333.33"))
        assert exact_sum([usd.share.amount, jpy.share.amount]) == Decimal("1000.00")
        assert usd.charge == oc.Money("733.34", "USD")  # 733.337
        assert jpy.rate.rate == Decimal("165") and jpy.charge == oc.Money("54999", "JPY")  # 54999.45
        assert alloc.recovered_total() == oc.Money("1000.00", "EUR")

    def test_charges_are_pool_share_lines_on_the_right_invoice(self, tenants: oc.BillingService) -> None:
        alloc = tenants.allocate_pool(
            oc.Money("100.00", "USD"), {"p-eur": 3, "p-jpy": 1}, at(2026, 3, 10), pool="egress"
        )
        charges = {s.tenant_id: s.charge for s in alloc.shares}
        invoices = {i.tenant_id: i for i in tenants.generate_invoices(*MAR)}
        assert sorted(invoices) == ["p-eur", "p-jpy", "p-usd"]
        for tenant in ("p-eur", "p-jpy"):
            (line,) = invoices[tenant].lines
            assert (line.kind, line.meter, line.quantity) == ("pool_share", "egress", Decimal(1))
            assert line.region is None
            assert line.amount == charges[tenant] and invoices[tenant].total == charges[tenant]
            assert line.amount.currency == invoices[tenant].currency
        assert invoices["p-usd"].lines == [] and invoices["p-usd"].total == oc.Money("0.00", "USD")
        assert charges == {"p-eur": oc.Money("68.18", "EUR"), "p-jpy": oc.Money("3750", "JPY")}
        april = tenants.preview_invoice("p-eur", *APR)
        assert april.lines == []

    def test_nothing_is_recorded_when_one_tenant_is_refused(self, tenants: oc.BillingService) -> None:
        tenants.generate_invoice("p-jpy", *MAR)
        with pytest.raises(oc.InvoiceImmutableError):
            tenants.allocate_pool(oc.Money("10.00", "USD"), {"p-eur": 1, "p-jpy": 1}, at(2026, 3, 10))
        with pytest.raises(oc.UnknownTenantError) as err:
            tenants.allocate_pool(oc.Money("10.00", "USD"), {"p-eur": 1, "ghost": 1}, at(2026, 3, 10))
        assert err.value.tenant_id == "ghost"
        assert tenants.preview_invoice("p-eur", *MAR).lines == []


class TestDiscountsAndCredits:
    """Discounts and credits respect the currency of the invoice they would reduce."""

    def test_fixed_eur_discount_waits_for_an_eur_invoice(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "USD")
        billing.upsert_tenant("acme", "EUR")  # from April
        d = billing.add_discount("acme", amount=oc.Money("5.00", "EUR"))
        assert (d.percent, d.amount, d.remaining_invoices) == (None, oc.Money("5.00", "EUR"), 1)
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 3, 10), at(2026, 3, 11))
        march = billing.generate_invoice("acme", *MAR)
        assert (march.currency.code, march.discounts, march.total) == ("USD", [], oc.Money("10.00", "USD"))
        assert [x.id for x in billing.discounts("acme")] == [d.id]
        assert billing.discounts("acme")[0].remaining_invoices == 1
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 4, 10), at(2026, 4, 11))
        april = billing.generate_invoice("acme", *APR)
        assert april.subtotal == oc.Money("9.09", "EUR")
        assert april.discounts == [(d.id, oc.Money("5.00", "EUR"))]
        assert april.total == oc.Money("4.09", "EUR")
        assert billing.discounts("acme") == []

    def test_percent_discount_applies_in_any_currency(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("jp", "JPY")
        d = billing.add_discount("jp", percent=Decimal("10"))
        billing.set_price("cpu", oc.Money("0.10", "USD"))
        billing.record_usage("jp", "cpu", 101, "ap-northeast-1", at(2026, 3, 10), at(2026, 3, 11))
        inv = billing.generate_invoice("jp", *MAR)
        assert inv.subtotal == oc.Money("1515", "JPY")
        assert inv.discounts == [(d.id, oc.Money("152", "JPY"))]  # 151.5 half away from zero
        assert inv.total == oc.Money("1363", "JPY") and exponent(inv.discounts[0][1].amount) == 0

    def test_percent_then_same_currency_fixed_then_credits(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "EUR")
        fixed_eur = billing.add_discount("acme", amount=oc.Money("20.00", "EUR"))
        fixed_usd = billing.add_discount("acme", amount=oc.Money("20.00", "USD"))
        ten = billing.add_discount("acme", percent="10")
        assert billing.add_credit("acme", oc.Money("30.00", "EUR")) == oc.Money("30.00", "EUR")
        billing.set_price("cpu", oc.Money("1.00", "EUR"))
        billing.record_usage("acme", "cpu", 150, "eu-west-1", at(2026, 3, 10), at(2026, 3, 11))
        inv = billing.generate_invoice("acme", *MAR)
        assert inv.subtotal == oc.Money("150.00", "EUR")
        assert inv.discounts == [(ten.id, oc.Money("15.00", "EUR")), (fixed_eur.id, oc.Money("20.00", "EUR"))]
        assert inv.credits_applied == oc.Money("30.00", "EUR") and inv.total == oc.Money("85.00", "EUR")
        assert [x.id for x in billing.discounts("acme")] == [fixed_usd.id]
        assert billing.credit_balance("acme", "EUR") == oc.Money("0.00", "EUR")

    def test_eur_credit_is_not_used_on_a_jpy_invoice(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("jp", "JPY")
        billing.add_credit("jp", oc.Money("50.00", "EUR"))
        billing.add_credit("jp", oc.Money("100", "JPY"))
        billing.set_price("cpu", oc.Money("10", "JPY"))
        billing.record_usage("jp", "cpu", 30, "ap-northeast-1", at(2026, 3, 10), at(2026, 3, 11))
        inv = billing.generate_invoice("jp", *MAR)
        assert inv.credits_applied == oc.Money("100", "JPY") and inv.total == oc.Money("200", "JPY")
        assert billing.credit_balance("jp", "EUR") == oc.Money("50.00", "EUR")
        assert billing.credit_ledger("jp", "EUR") == [oc.Money("50.00", "EUR")]
        assert billing.credit_balance("jp", "JPY") == oc.Money("0", "JPY")

    def test_wallet_reconciles_with_the_credit_ledger(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "EUR")
        billing.add_credit("acme", oc.Money("10.00", "EUR"), reason="goodwill")
        assert billing.add_credit("acme", oc.Money("5.50", "EUR")) == oc.Money("15.50", "EUR")
        billing.set_price("cpu", oc.Money("2.00", "EUR"))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 3, 10), at(2026, 3, 11))
        inv = billing.generate_invoice("acme", *MAR)
        assert (inv.subtotal, inv.credits_applied, inv.total) == (
            oc.Money("20.00", "EUR"), oc.Money("15.50", "EUR"), oc.Money("4.50", "EUR"))
        billing.issue_credit_note(inv.id, oc.Money("2.00", "EUR"))
        ledger = billing.credit_ledger("acme", "EUR")
        assert [m.amount for m in ledger] == [Decimal("10.00"), Decimal("5.50"), Decimal("-15.50"), Decimal("2.00")]
        balance = billing.credit_balance("acme", "EUR").amount
        assert exact_sum([m.amount for m in ledger]) == balance == Decimal("2.00")
        assert billing.credit_ledger("acme", "USD") == []

    def test_fixed_discount_is_capped_and_its_excess_lost(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("jp", "JPY")
        billing.add_discount("jp", amount=oc.Money("1000", "JPY"))
        billing.add_credit("jp", oc.Money("500", "JPY"))
        billing.set_price("cpu", oc.Money("1", "JPY"))
        billing.record_usage("jp", "cpu", 5, "ap-northeast-1", at(2026, 3, 10), at(2026, 3, 11))
        inv = billing.generate_invoice("jp", *MAR)
        assert [m for _, m in inv.discounts] == [oc.Money("5", "JPY")]
        assert inv.credits_applied == oc.Money("0", "JPY") and inv.total == oc.Money("0", "JPY")
        assert billing.discounts("jp") == [] and billing.credit_balance("jp", "JPY") == oc.Money("500", "JPY")

    def test_discount_uses_are_counted_per_invoice(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "USD")
        forever = billing.add_discount("acme", percent=5, invoices=None)
        twice = billing.add_discount("acme", percent=50, invoices=2)
        for period in (JAN, FEB, MAR):
            billing.generate_invoice("acme", *period)
        remaining = {d.id: d.remaining_invoices for d in billing.discounts("acme")}
        # Zero invoices have nothing to discount; a use is consumed only when applied.
        assert remaining == {forever.id: None, twice.id: 2}
        billing.set_price("cpu", oc.Money("10.00", "USD"))
        for m, period in ((4, APR), (5, MAY)):
            billing.record_usage("acme", "cpu", 1, "us-east-1", at(2026, m, 2), at(2026, m, 3))
            inv = billing.generate_invoice("acme", *period)
            assert inv.discounts == [(forever.id, oc.Money("0.50", "USD")), (twice.id, oc.Money("4.75", "USD"))]
        assert [(d.id, d.remaining_invoices) for d in billing.discounts("acme")] == [(forever.id, None)]


# =================================================================================================
# 2. Metering and proration
# =================================================================================================


class TestMeteringAndProration:
    """Usage is spread per second over its interval; each period takes the share inside it."""

    @pytest.fixture
    def svc(self, billing: oc.BillingService) -> oc.BillingService:
        billing.upsert_tenant("acme", "USD")
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        billing.set_price("storage", oc.Money("0.02", "USD"))
        return billing

    def test_record_straddling_two_months_is_split_per_second(self, svc: oc.BillingService) -> None:
        svc.record_usage("acme", "cpu", Decimal("9"), "eu-west-1", at(2026, 3, 31, 23, 59), at(2026, 4, 1, 0, 2))
        march, april = svc.generate_invoice("acme", *MAR), svc.generate_invoice("acme", *APR)
        (m,), (a,) = march.lines, april.lines
        assert (m.quantity, a.quantity) == (Decimal(3), Decimal(6))
        assert exact_sum([m.quantity, a.quantity]) == Decimal(9)
        assert (march.total, april.total) == (oc.Money("3.00", "USD"), oc.Money("6.00", "USD"))

    def test_split_of_an_indivisible_ratio_still_sums_to_the_quantity(self, svc: oc.BillingService) -> None:
        # 10 units over 30 s, 1 s of them in March: 1/3 and 29/3 are not finite decimals, but the
        # two invoices together must bill exactly the 10 units recorded.
        start, end = at(2026, 3, 31, 23, 59, 59), at(2026, 4, 1, 0, 0, 29)
        svc.record_usage("acme", "cpu", Decimal("10"), "eu-west-1", start, end)
        (m,) = svc.generate_invoice("acme", *MAR).lines
        (a,) = svc.generate_invoice("acme", *APR).lines
        # Shares are exact to PRORATION_DP (18) decimal places.
        assert abs(m.quantity - Decimal(10) / 30) < Decimal("1e-18")
        assert exact_sum([m.quantity, a.quantity]) == Decimal(10)

    def test_large_quantities_prorate_without_overflow(self, svc: oc.BillingService) -> None:
        # 10^17 units (bytes, say) over 28 days, 14 in each month: both shares fit easily in
        # 28 significant digits, only quantity * elapsed microseconds would not.
        svc.set_price("bytes", oc.Money("0.000000001", "USD"))
        svc.record_usage("acme", "bytes", Decimal(10) ** 17, "eu-west-1", at(2026, 2, 15), at(2026, 3, 15))
        feb, mar = svc.preview_invoice("acme", *FEB), svc.preview_invoice("acme", *MAR)
        assert quantities(feb) == quantities(mar) == {("bytes", "eu-west-1"): Decimal(5 * 10**16)}
        assert feb.total == oc.Money("50000000.00", "USD")

    def test_usage_spanning_three_periods(self, svc: oc.BillingService) -> None:
        svc.record_usage("acme", "cpu", Decimal("30.0"), "eu-west-1", at(2026, 1, 31), at(2026, 3, 2), "vm-1")
        parts = [svc.generate_invoice("acme", *p).lines[0].quantity for p in (JAN, FEB, MAR)]
        assert parts == [Decimal(1), Decimal(28), Decimal(1)]
        assert exact_sum(parts) == Decimal(30)
        assert svc.preview_invoice("acme", *APR).lines == []

    def test_instantaneous_record_counts_whole_in_the_period_containing_it(self, svc: oc.BillingService) -> None:
        last = at(2026, 3, 31, 23, 59, 59, 999999)
        svc.record_usage("acme", "cpu", 4, "eu-west-1", last, last)
        svc.record_usage("acme", "cpu", 7, "eu-west-1", APR[0], APR[0])
        assert quantities(svc.preview_invoice("acme", *MAR)) == {("cpu", "eu-west-1"): Decimal(4)}
        assert quantities(svc.preview_invoice("acme", *APR)) == {("cpu", "eu-west-1"): Decimal(7)}

    def test_record_ending_at_the_period_start_is_not_in_the_period(self, svc: oc.BillingService) -> None:
        svc.record_usage("acme", "cpu", 5, "eu-west-1", at(2026, 2, 28), MAR[0])
        assert svc.preview_invoice("acme", *MAR).lines == []
        assert quantities(svc.preview_invoice("acme", *FEB)) == {("cpu", "eu-west-1"): Decimal(5)}

    def test_one_line_per_meter_and_region(self, svc: oc.BillingService) -> None:
        count = svc.record_usage_many(
            [
                ("acme", "cpu", Decimal("1.5"), "eu-west-1", at(2026, 3, 2), at(2026, 3, 3)),
                ("acme", "cpu", "2.25", "eu-west-1", at(2026, 3, 4), at(2026, 3, 5), "vm-1"),
                ("acme", "cpu", 3, "us-east-1", at(2026, 3, 4), at(2026, 3, 5), None),
                ("acme", "storage", 1000, "eu-west-1", at(2026, 3, 4), at(2026, 3, 5)),
            ]
        )
        assert count == 4
        inv = svc.generate_invoice("acme", *MAR)
        assert [(l.kind, l.meter, l.region, l.quantity, l.amount.amount) for l in inv.lines] == [
            ("usage", "cpu", "eu-west-1", Decimal("3.75"), Decimal("3.75")),
            ("usage", "cpu", "us-east-1", Decimal("3"), Decimal("3.00")),
            ("usage", "storage", "eu-west-1", Decimal("1000"), Decimal("20.00")),
        ]
        assert inv.subtotal == inv.total == oc.Money("26.75", "USD")

    def test_regional_price_overrides_the_meter_default(self, svc: oc.BillingService) -> None:
        svc.set_price("cpu", oc.Money("1.50", "USD"), region="eu-west-1")
        svc.record_usage("acme", "cpu", 2, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        svc.record_usage("acme", "cpu", 2, "us-east-1", at(2026, 3, 2), at(2026, 3, 3))
        lines = {l.region: l for l in svc.preview_invoice("acme", *MAR).lines}
        assert lines["eu-west-1"].unit_price == oc.Money("1.50", "USD")
        assert lines["us-east-1"].unit_price == oc.Money("1.00", "USD")
        assert lines["eu-west-1"].amount == oc.Money("3.00", "USD")
        assert lines["us-east-1"].amount == oc.Money("2.00", "USD")

    def test_latest_price_applies(self, svc: oc.BillingService, clock: oc.ManualClock) -> None:
        clock.advance(60)
        svc.set_price("cpu", oc.Money("1.25", "USD"))
        svc.record_usage("acme", "cpu", 4, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        (line,) = svc.preview_invoice("acme", *MAR).lines
        assert (line.unit_price, line.amount) == (oc.Money("1.25", "USD"), oc.Money("5.00", "USD"))

    def test_price_in_the_invoice_currency_is_preferred(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("eu", "EUR")
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        billing.set_price("cpu", oc.Money("0.80", "EUR"))
        billing.record_usage("eu", "cpu", 10, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        (line,) = billing.preview_invoice("eu", *MAR).lines
        assert (line.unit_price, line.amount) == (oc.Money("0.80", "EUR"), oc.Money("8.00", "EUR"))
        assert line.conversion is None

    def test_usd_price_is_converted_at_the_end_of_the_period_and_recorded(
        self, billing: oc.BillingService, rates: oc.ExchangeRates
    ) -> None:
        billing.upsert_tenant("eu", "EUR")
        billing.set_price("cpu", oc.Money("0.11", "USD"))
        rates.set_rate("EUR", "USD", "1.25", at(2026, 3, 31, 23, 59, 59, 999999), source="late")
        rates.set_rate("EUR", "USD", "2.00", APR[0])  # after the period: not used
        billing.record_usage("eu", "cpu", 1000, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        (line,) = billing.preview_invoice("eu", *MAR).lines
        last = at(2026, 3, 31, 23, 59, 59, 999999)
        conv = line.conversion
        assert conv is not None
        assert (conv.base.code, conv.quote.code, conv.as_of) == ("USD", "EUR", last)
        assert conv.rate == rates.rate("USD", "EUR", last) and abs(conv.rate - Decimal("0.8")) < Decimal("1e-25")
        assert line.unit_price == rates.convert(oc.Money("0.11", "USD"), "EUR", last)
        assert line.amount == oc.Money("88.00", "EUR")

    def test_eur_price_is_the_fallback_when_there_is_no_usd_price(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("jp", "JPY")
        billing.set_price("gpu", oc.Money("2.00", "EUR"))
        billing.set_price("gpu", oc.Money("1.00", "GBP"))
        billing.record_usage("jp", "gpu", 3, "ap-northeast-1", at(2026, 3, 2), at(2026, 3, 3))
        (line,) = billing.preview_invoice("jp", *MAR).lines
        assert line.conversion is not None and line.conversion.base.code == "EUR"
        assert line.unit_price == oc.Money("330", "JPY") and line.amount == oc.Money("990", "JPY")

    def test_missing_price_is_a_lookup_error_and_nothing_is_issued(self, svc: oc.BillingService) -> None:
        svc.set_price("gpu", oc.Money("3.00", "USD"), region="us-east-1")
        svc.record_usage("acme", "gpu", 1, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        with pytest.raises(oc.PriceNotFoundError) as err:
            svc.generate_invoice("acme", *MAR)
        assert (err.value.meter, err.value.region) == ("gpu", "eu-west-1")
        assert isinstance(err.value, LookupError) and isinstance(err.value, oc.BillingError)
        assert svc.invoices("acme") == []


# =================================================================================================
# 3. Currency change effective next billing period
# =================================================================================================


class TestCurrencyChange:
    """A change of billing currency waits for the next calendar month (UTC)."""

    def test_mid_month_change_is_pending_until_the_first_of_next_month(
        self, billing: oc.BillingService, clock: oc.ManualClock
    ) -> None:
        billing.upsert_tenant("acme", "USD")
        clock.set(at(2026, 3, 15, 10, 30))
        account = billing.upsert_tenant("acme", "EUR")
        assert (account.currency.code, account.pending_currency, account.pending_from) == (
            "USD", oc.Currency("EUR"), APR[0])
        assert billing.currency_at("acme", at(2026, 3, 31, 23, 59, 59)).code == "USD"
        assert billing.currency_at("acme", APR[0]).code == "EUR"

    def test_current_month_is_invoiced_in_the_old_currency_and_next_in_the_new(
        self, billing: oc.BillingService, clock: oc.ManualClock
    ) -> None:
        billing.upsert_tenant("acme", "USD")
        billing.set_price("cpu", oc.Money("2.20", "USD"))
        clock.set(at(2026, 3, 15))
        billing.upsert_tenant("acme", "EUR")
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 3, 20), at(2026, 3, 21))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 4, 20), at(2026, 4, 21))
        clock.set(at(2026, 4, 2))
        march = billing.generate_invoice("acme", *MAR)
        assert (march.currency.code, march.total) == ("USD", oc.Money("22.00", "USD"))
        assert billing.account("acme").currency.code == "EUR"
        clock.set(at(2026, 5, 2))
        april = billing.generate_invoice("acme", *APR)
        assert (april.currency.code, april.total) == ("EUR", oc.Money("20.00", "EUR"))
        assert april.total_usd == oc.Money("22.00", "USD")

    def test_explicit_effective_from(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "USD")
        account = billing.upsert_tenant("acme", "GBP", effective_from=MAY[0])
        assert (account.pending_currency, account.pending_from) == (oc.Currency("GBP"), MAY[0])
        assert billing.currency_at("acme", APR[0]).code == "USD"
        assert billing.generate_invoice("acme", *APR).currency.code == "USD"
        assert billing.generate_invoice("acme", *MAY).currency.code == "GBP"
        billing.upsert_tenant("now", "USD")
        immediate = billing.upsert_tenant("now", "JPY", effective_from=T0)  # >= now is allowed
        assert (immediate.currency.code, immediate.pending_currency) == ("JPY", None)

    def test_past_effective_from_is_refused_and_nothing_changes(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "USD")
        with pytest.raises(oc.ValidationError, match="in the past"):
            billing.upsert_tenant("acme", "EUR", effective_from=at(2026, 3, 1, 11, 59, 59))
        account = billing.account("acme")
        assert (account.currency.code, account.pending_currency, account.pending_from) == ("USD", None, None)

    def test_a_later_change_replaces_the_pending_one_and_reverting_cancels_it(
        self, billing: oc.BillingService
    ) -> None:
        billing.upsert_tenant("acme", "USD")
        billing.upsert_tenant("acme", "EUR", effective_from=MAY[0])
        account = billing.upsert_tenant("acme", "GBP")
        assert (account.pending_currency, account.pending_from) == (oc.Currency("GBP"), APR[0])
        assert billing.currency_at("acme", MAY[0]).code == "GBP"
        reverted = billing.upsert_tenant("acme", "USD")
        assert (reverted.currency.code, reverted.pending_currency, reverted.pending_from) == ("USD", None, None)
        assert billing.currency_at("acme", MAY[0]).code == "USD"

    def test_december_change_takes_effect_in_january(self, billing: oc.BillingService, clock: oc.ManualClock) -> None:
        billing.upsert_tenant("acme", "USD")
        clock.set(at(2026, 12, 31, 23, 59, 59))
        assert billing.upsert_tenant("acme", "BHD").pending_from == at(2027, 1, 1)

    def test_registry_tenant_billing_currency_follows(
        self, billing: oc.BillingService, store: oc.Store, clock: oc.ManualClock
    ) -> None:
        registry = oc.TenantRegistry(store, clock)
        registry.create(oc.Tenant("reg-1", "Registered One", "USD"))
        billing.upsert_tenant("reg-1", "USD")
        billing.upsert_tenant("reg-1", "EUR")
        assert registry.get("reg-1").billing_currency == oc.Currency("EUR")
        assert billing.account("reg-1").currency.code == "USD"  # the account still waits for April
        registry.create(oc.Tenant("reg-2", "Registered Two"))
        billing.upsert_tenant("reg-2", "KWD")
        assert registry.get("reg-2").billing_currency.code == "KWD"


# =================================================================================================
# 4. Invoices: immutability, credit notes, generation
# =================================================================================================


class TestInvoiceImmutability:
    """Issued invoices never change; late usage, pool charges and second invoices are refused."""

    @pytest.fixture
    def march(self, billing: oc.BillingService) -> oc.Invoice:
        billing.upsert_tenant("acme", "EUR")
        billing.set_price("cpu", oc.Money("1.00", "EUR"))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        return billing.generate_invoice("acme", *MAR)

    def test_attributes_cannot_be_set_or_deleted(self, march: oc.Invoice) -> None:
        for name in ["total", "currency", "lines", "exchange_rate_to_usd", "id", "extra"]:
            with pytest.raises(oc.InvoiceImmutableError) as err:
                setattr(march, name, oc.Money("0.00", "EUR"))
            assert err.value.invoice_id == march.id and isinstance(err.value, oc.BillingError)
            with pytest.raises(oc.InvoiceImmutableError):
                delattr(march, name)
        assert march.total == oc.Money("10.00", "EUR") and march.exchange_rate_to_usd == Decimal("1.10")

    def test_a_second_invoice_for_an_overlapping_period_is_refused(
        self, billing: oc.BillingService, march: oc.Invoice
    ) -> None:
        with pytest.raises(oc.InvoiceImmutableError) as err:
            billing.generate_invoice("acme", at(2026, 3, 15), at(2026, 4, 15))
        assert err.value.invoice_id == march.id
        with pytest.raises(oc.InvoiceImmutableError):
            billing.generate_invoice("acme", *MAR)
        assert billing.generate_invoice("acme", *APR).period_start == APR[0]
        assert [i.id for i in billing.invoices("acme")][0] == march.id

    def test_late_usage_into_an_invoiced_period_is_refused(
        self, billing: oc.BillingService, march: oc.Invoice
    ) -> None:
        for start, end in [
            (at(2026, 3, 20), at(2026, 3, 21)),
            (at(2026, 2, 28), at(2026, 3, 1, 0, 0, 1)),  # straddles into March
            (at(2026, 3, 31, 23), at(2026, 4, 1, 1)),  # straddles out of March
            (MAR[0], MAR[0]),  # instantaneous, at the period's first instant
        ]:
            with pytest.raises(oc.InvoiceImmutableError) as err:
                billing.record_usage("acme", "cpu", 1, "eu-west-1", start, end)
            assert err.value.invoice_id == march.id
        billing.record_usage("acme", "cpu", 2, "eu-west-1", at(2026, 2, 28), MAR[0])  # ends where it starts
        billing.record_usage("acme", "cpu", 3, "eu-west-1", APR[0], APR[0])
        assert quantities(billing.preview_invoice("acme", *APR)) == {("cpu", "eu-west-1"): Decimal(3)}
        assert quantities(billing.preview_invoice("acme", *FEB)) == {("cpu", "eu-west-1"): Decimal(2)}
        assert billing.invoice(march.id) == march

    def test_pool_charge_into_an_invoiced_period_is_refused(
        self, billing: oc.BillingService, march: oc.Invoice
    ) -> None:
        with pytest.raises(oc.InvoiceImmutableError) as err:
            billing.allocate_pool(oc.Money("5.00", "EUR"), {"acme": 1}, at(2026, 3, 31, 23, 59, 59))
        assert err.value.invoice_id == march.id
        alloc = billing.allocate_pool(oc.Money("5.00", "EUR"), {"acme": 1}, APR[0])
        assert alloc.shares[0].charge == oc.Money("5.00", "EUR")

    def test_raw_sql_cannot_rewrite_billing_history(self, file_billing: oc.BillingService, db_path: Path) -> None:
        svc = file_billing
        svc.upsert_tenant("acme", "USD")
        svc.set_price("cpu", oc.Money("1.00", "USD"))
        svc.record_usage("acme", "cpu", 10, "us-east-1", at(2026, 3, 2), at(2026, 3, 3))
        svc.add_credit("acme", oc.Money("1.00", "USD"))
        inv = svc.generate_invoice("acme", *MAR)
        for sql in [
            f"UPDATE billing_invoices SET total = '0.00' WHERE id = '{inv.id}'",
            "DELETE FROM billing_invoices",
            "UPDATE billing_usage SET quantity = '0'",
            "DELETE FROM billing_usage",
            "UPDATE billing_credit_ledger SET amount = '1000.00'",
            "DELETE FROM billing_credit_ledger",
        ]:
            with pytest.raises(sqlite3.DatabaseError, match="immutable|append-only"):
                raw_write(db_path, sql)
        assert raw_rows(db_path, "SELECT total FROM billing_invoices") == [("9.00",)]
        assert svc.invoice(inv.id) == inv and inv.total == oc.Money("9.00", "USD")
        assert [m.amount for m in svc.credit_ledger("acme", "USD")] == [Decimal("1.00"), Decimal("-1.00")]


class TestCreditNotes:
    """Corrections are credit notes in the invoice's currency, credited to the wallet."""

    @pytest.fixture
    def invoice(self, billing: oc.BillingService) -> oc.Invoice:
        billing.upsert_tenant("acme", "EUR")
        billing.set_price("cpu", oc.Money("2.00", "EUR"))
        billing.record_usage("acme", "cpu", 10, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        return billing.generate_invoice("acme", *MAR)

    def test_credit_note_credits_the_wallet_in_the_invoice_currency(
        self, billing: oc.BillingService, invoice: oc.Invoice
    ) -> None:
        note = billing.issue_credit_note(invoice.id, oc.Money("5.00", "EUR"), reason="outage")
        assert (note.kind, note.corrects, note.tenant_id, note.memo) == ("credit_note", invoice.id, "acme", "outage")
        assert (note.currency.code, note.total) == ("EUR", oc.Money("5.00", "EUR"))
        assert note.total_usd == oc.Money("5.50", "USD") and note.exchange_rate_to_usd == Decimal("1.10")
        assert billing.credit_balance("acme", "EUR") == oc.Money("5.00", "EUR")
        assert billing.invoice(note.id) == note and billing.invoice(invoice.id) == invoice
        assert [i.kind for i in billing.invoices("acme")] == ["invoice", "credit_note"]

    def test_credit_note_in_another_currency_is_refused(
        self, billing: oc.BillingService, invoice: oc.Invoice
    ) -> None:
        with pytest.raises(oc.CurrencyMismatchError) as err:
            billing.issue_credit_note(invoice.id, oc.Money("5.00", "USD"))
        assert {err.value.left, err.value.right} == {"EUR", "USD"}
        assert billing.credit_balance("acme", "USD") == oc.Money("0", "USD")
        assert len(billing.invoices("acme")) == 1

    def test_credit_notes_cannot_exceed_the_invoice(self, billing: oc.BillingService, invoice: oc.Invoice) -> None:
        with pytest.raises(oc.ValidationError):
            billing.issue_credit_note(invoice.id, oc.Money("20.01", "EUR"))
        billing.issue_credit_note(invoice.id, oc.Money("15.00", "EUR"))
        with pytest.raises(oc.ValidationError, match="left to credit"):
            billing.issue_credit_note(invoice.id, oc.Money("5.01", "EUR"))
        billing.issue_credit_note(invoice.id, oc.Money("5.00", "EUR"))
        with pytest.raises(oc.ValidationError):
            billing.issue_credit_note(invoice.id, oc.Money("0.01", "EUR"))
        assert billing.credit_balance("acme", "EUR") == oc.Money("20.00", "EUR")

    def test_credit_note_amount_must_be_positive_whole_minor_units(
        self, billing: oc.BillingService, invoice: oc.Invoice
    ) -> None:
        for amount in ["0.00", "-1.00", "0.005"]:
            with pytest.raises(oc.ValidationError):
                billing.issue_credit_note(invoice.id, oc.Money(amount, "EUR"))
        note = billing.issue_credit_note(invoice.id, oc.Money("1.00", "EUR"))
        with pytest.raises(oc.ValidationError, match="not an invoice"):
            billing.issue_credit_note(note.id, oc.Money("1.00", "EUR"))
        assert billing.credit_ledger("acme", "EUR") == [oc.Money("1.00", "EUR")]


class TestInvoiceGeneration:
    """Previews, billing runs, zero invoices, missing rates and tenant isolation."""

    def test_preview_neither_stores_nor_consumes(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("acme", "EUR")
        billing.add_discount("acme", percent=10)
        billing.add_credit("acme", oc.Money("3.00", "EUR"))
        billing.set_price("cpu", oc.Money("1.00", "EUR"))
        billing.record_usage("acme", "cpu", 50, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        preview = billing.preview_invoice("acme", *MAR)
        assert (preview.subtotal, preview.credits_applied, preview.total) == (
            oc.Money("50.00", "EUR"), oc.Money("3.00", "EUR"), oc.Money("42.00", "EUR"))
        assert billing.invoices("acme") == [] and billing.credit_balance("acme", "EUR") == oc.Money("3.00", "EUR")
        assert billing.discounts("acme")[0].remaining_invoices == 1
        with pytest.raises(oc.UnknownInvoiceError):
            billing.invoice(preview.id)
        issued = billing.generate_invoice("acme", *MAR)
        assert (issued.total, issued.discounts[0][1]) == (preview.total, preview.discounts[0][1])
        assert line_facts(issued) == line_facts(preview)
        assert billing.credit_balance("acme", "EUR") == oc.Money("0.00", "EUR") and billing.discounts("acme") == []

    def test_billing_run_skips_invoiced_tenants_and_is_rerunnable(self, billing: oc.BillingService) -> None:
        for tenant in ("c", "a", "b"):
            billing.upsert_tenant(tenant, "USD")
        early = billing.generate_invoice("b", *MAR)
        run = billing.generate_invoices(*MAR)
        assert [i.tenant_id for i in run] == ["a", "c"]
        assert billing.generate_invoices(*MAR) == []
        assert [len(billing.invoices(t)) for t in ("a", "b", "c")] == [1, 1, 1]
        assert billing.invoices("b") == [early]
        assert [i.tenant_id for i in billing.generate_invoices(*APR, tenant_ids=["c"])] == ["c"]
        assert billing.invoices("a")[-1].period_start == MAR[0]

    def test_billing_run_for_one_listed_tenant_is_rerunnable(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("a", "USD")
        billing.upsert_tenant("b", "EUR")
        first = billing.generate_invoices(*MAR, tenant_ids=["a"])
        assert [i.tenant_id for i in first] == ["a"]
        assert billing.generate_invoices(*MAR, tenant_ids=["a"]) == []  # skipped, as for any run
        assert [i.tenant_id for i in billing.generate_invoices(*MAR, tenant_ids=["a", "b"])] == ["b"]
        assert billing.invoices("a") == first

    def test_a_tenant_listed_twice_is_invoiced_once(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("a", "USD")
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        billing.record_usage("a", "cpu", 10, "us-east-1", at(2026, 3, 2), at(2026, 3, 3))
        try:
            run = billing.generate_invoices(*MAR, tenant_ids=["a", "a"])
        except oc.ValidationError:
            run = []
        issued = billing.invoices("a")
        assert len(run) <= 1 and len(issued) == len(run), "the same period was invoiced twice"

    @pytest.mark.parametrize(("code", "zero"), [("USD", "0.00"), ("JPY", "0"), ("KWD", "0.000")])
    def test_account_without_usage_gets_a_zero_invoice(
        self, billing: oc.BillingService, code: str, zero: str
    ) -> None:
        billing.upsert_tenant("idle", code)
        inv = billing.generate_invoice("idle", *MAR)
        assert inv.lines == [] and inv.discounts == []
        assert inv.total.amount.as_tuple() == Decimal(zero).as_tuple() and inv.total.currency.code == code
        assert inv.total_usd.amount.as_tuple() == Decimal("0.00").as_tuple()
        assert billing.invoices("idle") == [inv]

    def test_missing_rate_to_usd_raises_and_stores_nothing(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("ch", "CHF")
        billing.upsert_tenant("us", "USD")
        billing.add_credit("ch", oc.Money("1.00", "CHF"))
        billing.set_price("cpu", oc.Money("1.00", "CHF"))
        billing.record_usage("ch", "cpu", 5, "eu-central-1", at(2026, 3, 2), at(2026, 3, 3))
        with pytest.raises(oc.ExchangeRateNotFoundError) as err:
            billing.generate_invoice("ch", *MAR)
        assert (err.value.base, err.value.quote) == ("CHF", "USD")
        with pytest.raises(oc.ExchangeRateNotFoundError):
            billing.generate_invoices(*MAR)
        assert billing.invoices("ch") == [] and billing.invoices("us") == []
        assert billing.credit_balance("ch", "CHF") == oc.Money("1.00", "CHF")

    def test_a_tenant_invoice_contains_only_its_own_usage(self, billing: oc.BillingService) -> None:
        billing.upsert_tenant("alpha", "USD")
        billing.upsert_tenant("beta", "EUR")
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        billing.set_price("cpu", oc.Money("1.00", "EUR"))
        billing.record_usage("alpha", "cpu", 3, "us-east-1", at(2026, 3, 2), at(2026, 3, 3))
        billing.record_usage("beta", "cpu", 5, "eu-west-1", at(2026, 3, 2), at(2026, 3, 3))
        billing.record_usage("beta", "cpu", 7, "us-east-1", at(2026, 3, 2), at(2026, 3, 3))
        billing.allocate_pool(oc.Money("1.00", "USD"), {"beta": 1}, at(2026, 3, 9))
        alpha, beta = billing.generate_invoices(*MAR)
        assert (alpha.tenant_id, quantities(alpha)) == ("alpha", {("cpu", "us-east-1"): Decimal(3)})
        assert alpha.total == oc.Money("3.00", "USD")
        assert beta.tenant_id == "beta" and [l.kind for l in beta.lines] == ["usage", "usage", "pool_share"]
        assert beta.subtotal == oc.Money("12.91", "EUR")  # 5 + 7 + 1.00 USD / 1.10
        assert [i.id for i in billing.invoices("alpha")] == [alpha.id]

    def test_unknown_invoice_id_is_a_lookup_error(self, billing: oc.BillingService) -> None:
        for bad in ["no-such-invoice", "", "x" * 200]:
            with pytest.raises(oc.UnknownInvoiceError) as err:
                billing.invoice(bad)
            assert err.value.invoice_id == bad and isinstance(err.value, LookupError)


# =================================================================================================
# 5. Bad inputs: typed errors, nothing lost
# =================================================================================================


class TestBadInputs:
    """Bad inputs raise typed errors and leave nothing half-written."""

    @pytest.fixture
    def svc(self, billing: oc.BillingService) -> oc.BillingService:
        billing.upsert_tenant("acme", "USD")
        billing.upsert_tenant("beta", "USD")
        billing.set_price("cpu", oc.Money("1.00", "USD"))
        return billing

    def assert_no_usage(self, svc: oc.BillingService) -> None:
        assert svc.preview_invoice("acme", *MAR).lines == []
        assert svc.preview_invoice("beta", *MAR).lines == []

    def test_floats_are_refused_as_quantity_money_and_weights(self, svc: oc.BillingService) -> None:
        s, e = at(2026, 3, 2), at(2026, 3, 3)
        calls: list[Callable[[], object]] = [
            lambda: svc.record_usage("acme", "cpu", 1.5, "r1", s, e),  # type: ignore[arg-type]
            lambda: svc.record_usage_many([("acme", "cpu", 0.5, "r1", s, e)]),  # type: ignore[list-item]
            lambda: svc.set_price("cpu", 0.1),  # type: ignore[arg-type]
            lambda: svc.add_credit("acme", 1.0),  # type: ignore[arg-type]
            lambda: svc.add_discount("acme", percent=10.0),  # type: ignore[arg-type]
            lambda: svc.allocate_pool(
                oc.Money("1.00", "USD"), {"acme": 0.5, "beta": 0.5}, s  # type: ignore[dict-item]
            ),
            lambda: svc.import_legacy_invoices([("L-1", "acme", 1.5, *FEB, FEB[1])]),  # type: ignore[list-item]
        ]
        for call in calls:
            with pytest.raises(TypeError) as err:
                call()
            assert isinstance(err.value, oc.ArgumentTypeError)
        self.assert_no_usage(svc)
        assert svc.discounts("acme") == [] and svc.credit_ledger("acme", "USD") == []

    def test_unknown_currency_codes(self, svc: oc.BillingService) -> None:
        for code in ["XYZ", "usd", "EURO", ""]:
            with pytest.raises(oc.UnknownCurrencyError) as err:
                svc.upsert_tenant("gamma", code)
            assert err.value.code == code and isinstance(err.value, ValueError)
            with pytest.raises(oc.UnknownCurrencyError):
                svc.upsert_tenant("acme", code)
            with pytest.raises(oc.UnknownCurrencyError):
                svc.credit_balance("acme", code)
        with pytest.raises(oc.UnknownTenantError):
            svc.account("gamma")
        assert svc.account("acme").pending_currency is None

    def test_non_billable_currencies(self, svc: oc.BillingService) -> None:
        for code in ["XAU", "XDR", "HRK", "BGN"]:
            with pytest.raises(oc.CurrencyNotBillableError) as err:
                svc.upsert_tenant("gamma", code)
            assert err.value.code == code and isinstance(err.value, ValueError)
            with pytest.raises(oc.CurrencyNotBillableError):
                svc.upsert_tenant("acme", code)
            with pytest.raises(oc.CurrencyNotBillableError):
                svc.add_credit("acme", oc.Money(1, code))
            with pytest.raises(oc.CurrencyNotBillableError):
                svc.add_discount("acme", amount=oc.Money(1, code))
            with pytest.raises(oc.CurrencyNotBillableError):
                svc.set_price("cpu", oc.Money(1, code))
        assert svc.account("acme").pending_currency is None and svc.discounts("acme") == []
        with pytest.raises(oc.UnknownTenantError):
            svc.account("gamma")

    def test_bad_usage_records(self, svc: oc.BillingService) -> None:
        s, e = at(2026, 3, 2), at(2026, 3, 3)
        with pytest.raises(oc.ValidationError, match="negative"):
            svc.record_usage("acme", "cpu", Decimal("-0.001"), "r1", s, e)
        with pytest.raises(oc.ValidationError, match="after"):
            svc.record_usage("acme", "cpu", 1, "r1", e, s)
        with pytest.raises(ValueError, match="timezone-aware"):
            svc.record_usage("acme", "cpu", 1, "r1", dt.datetime(2026, 3, 2), e)
        with pytest.raises(oc.ValidationError):
            svc.record_usage("acme", "cpu", "lots", "r1", s, e)
        self.assert_no_usage(svc)

    @pytest.mark.parametrize("bad", ["has space", "", "x" * 200])
    def test_invalid_ids_are_refused(self, svc: oc.BillingService, bad: str) -> None:
        s, e = at(2026, 3, 2), at(2026, 3, 3)
        with pytest.raises(oc.ValidationError):
            svc.upsert_tenant(bad, "USD")
        with pytest.raises(oc.ValidationError):
            svc.record_usage(bad, "cpu", 1, "r1", s, e)
        with pytest.raises(oc.ValidationError):
            svc.record_usage("acme", bad, 1, "r1", s, e)
        with pytest.raises(oc.ValidationError):
            svc.record_usage("acme", "cpu", 1, bad, s, e)
        with pytest.raises(oc.ValidationError):
            svc.record_usage("acme", "cpu", 1, "r1", s, e, resource_id=bad)
        with pytest.raises(oc.ValidationError):
            svc.set_price(bad, oc.Money("1.00", "USD"))
        self.assert_no_usage(svc)

    def test_longest_valid_id_is_accepted(self, svc: oc.BillingService) -> None:
        longest = "a.b_c:d-" + "x" * 120
        assert len(longest) == 128 and svc.upsert_tenant(longest, "EUR").tenant_id == longest

    def test_unknown_tenants_raise_with_the_tenant_id(self, svc: oc.BillingService) -> None:
        s, e = at(2026, 3, 2), at(2026, 3, 3)
        calls: dict[str, Callable[[], object]] = {
            "record_usage": lambda: svc.record_usage("ghost", "cpu", 1, "r1", s, e),
            "account": lambda: svc.account("ghost"),
            "currency_at": lambda: svc.currency_at("ghost", s),
            "add_credit": lambda: svc.add_credit("ghost", oc.Money("1.00", "USD")),
            "credit_balance": lambda: svc.credit_balance("ghost", "USD"),
            "credit_ledger": lambda: svc.credit_ledger("ghost", "USD"),
            "add_discount": lambda: svc.add_discount("ghost", percent=5),
            "discounts": lambda: svc.discounts("ghost"),
            "generate_invoice": lambda: svc.generate_invoice("ghost", *MAR),
            "preview_invoice": lambda: svc.preview_invoice("ghost", *MAR),
            "generate_invoices": lambda: svc.generate_invoices(*MAR, tenant_ids=["acme", "ghost"]),
            "invoices": lambda: svc.invoices("ghost"),
            "import_legacy_invoices": lambda: svc.import_legacy_invoices([("L-9", "ghost", "1.00", *FEB, FEB[1])]),
            "allocate_pool": lambda: svc.allocate_pool(oc.Money("1.00", "USD"), {"acme": 1, "ghost": 1}, s),
        }
        silent = []
        for name, call in calls.items():
            try:
                call()
            except oc.UnknownTenantError as err:
                assert err.tenant_id == "ghost" and isinstance(err, LookupError)
            else:
                silent.append(name)
        assert silent == [], f"{silent} accepted an unknown tenant instead of raising UnknownTenantError"
        assert svc.invoices("acme") == []  # the run with a ghost issued nothing

    def test_naive_datetimes_are_value_errors(self, svc: oc.BillingService) -> None:
        naive = dt.datetime(2026, 4, 1)
        calls: list[Callable[[], object]] = [
            lambda: svc.upsert_tenant("acme", "EUR", effective_from=naive),
            lambda: svc.currency_at("acme", naive),
            lambda: svc.generate_invoice("acme", naive, dt.datetime(2026, 5, 1)),
            lambda: svc.allocate_pool(oc.Money("1.00", "USD"), {"acme": 1}, naive),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="timezone-aware"):
                call()
        assert svc.invoices("acme") == [] and svc.account("acme").pending_currency is None

    def test_invoice_period_must_not_be_empty(self, svc: oc.BillingService) -> None:
        with pytest.raises(oc.ValidationError):
            svc.generate_invoice("acme", APR[0], APR[0])
        with pytest.raises(oc.ValidationError):
            svc.generate_invoices(APR[0], MAR[0])
        assert svc.invoices("acme") == []

    def test_credits_must_be_positive_whole_minor_units(self, svc: oc.BillingService) -> None:
        for amount, code in [("1.005", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0.00", "USD"), ("-5.00", "EUR")]:
            with pytest.raises(oc.ValidationError):
                svc.add_credit("acme", oc.Money(amount, code))
            assert svc.credit_ledger("acme", code) == [] and svc.credit_balance("acme", code).amount == 0
        assert svc.add_credit("acme", oc.Money("0.001", "KWD")) == oc.Money("0.001", "KWD")

    def test_discount_terms_are_validated(self, svc: oc.BillingService) -> None:
        for kwargs in [
            {"percent": 0},
            {"percent": 101},
            {"percent": "-5"},
            {},
            {"percent": 10, "amount": oc.Money("1.00", "USD")},
            {"amount": oc.Money("0.001", "USD")},
            {"amount": oc.Money("0.00", "USD")},
            {"percent": 10, "invoices": 0},
        ]:
            with pytest.raises(oc.ValidationError):
                svc.add_discount("acme", **kwargs)  # type: ignore[arg-type]
        assert svc.discounts("acme") == []
        assert svc.add_discount("acme", percent=100).percent == 100

    def test_negative_discount_use_count_is_a_validation_error(self, svc: oc.BillingService) -> None:
        with pytest.raises(oc.ValidationError):
            svc.add_discount("acme", percent=10, invoices=-1)
        assert svc.discounts("acme") == []

    def test_pool_weights_are_validated_and_nothing_recorded(self, svc: oc.BillingService) -> None:
        total, when = oc.Money("10.00", "USD"), at(2026, 3, 5)
        dup_a, dup_b = _SameTenant("acme"), _SameTenant("acme")
        for weights in [
            {"acme": -1, "beta": 2},
            {"acme": 0, "beta": 0},
            {},
            {dup_a: 1, dup_b: 1},
        ]:
            with pytest.raises(oc.ValidationError):
                svc.allocate_pool(total, weights, when)  # type: ignore[arg-type]
        with pytest.raises(oc.ValidationError):
            svc.allocate_pool(oc.Money("10.001", "USD"), {"acme": 1}, when)
        with pytest.raises(oc.CurrencyNotBillableError):
            svc.allocate_pool(oc.Money("10", "XAU"), {"acme": 1}, when)
        self.assert_no_usage(svc)

    def test_record_usage_many_is_all_or_nothing(self, svc: oc.BillingService) -> None:
        svc.generate_invoice("beta", *FEB)
        good = [
            ("acme", "cpu", 1, "r1", at(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", 2, "r1", at(2026, 3, 2), at(2026, 3, 3), "vm-1"),
        ]
        bad_tuples: list[tuple[object, ...]] = [
            ("beta", "cpu", -1, "r1", at(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", 1, "r1", at(2026, 3, 3), at(2026, 3, 2)),
            ("ghost", "cpu", 1, "r1", at(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", Decimal("0.5"), "r1", dt.datetime(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", 1, "r 1", at(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", 1.0, "r1", at(2026, 3, 2), at(2026, 3, 3)),
            ("beta", "cpu", 1, "r1", at(2026, 2, 2), at(2026, 2, 3)),  # into an invoiced period
            ("beta", "cpu", 1, "r1"),
        ]
        for bad in bad_tuples:
            with pytest.raises((oc.OmniCloudError, TypeError, ValueError)):
                svc.record_usage_many([*good, bad])  # type: ignore[list-item]
            self.assert_no_usage(svc)
        assert svc.record_usage_many(good) == 2  # type: ignore[arg-type]
        assert quantities(svc.preview_invoice("beta", *MAR)) == {("cpu", "r1"): Decimal(2)}


# =================================================================================================
# 6. Properties
# =================================================================================================


class TestIsoCurrencies:
    """The billable ISO 4217 codes of the 2026-01-01 list and their minor units."""

    def test_every_billable_code_has_its_iso_minor_units(self) -> None:
        assert len(BILLABLE) == 165 and len(BILLABLE) + len(NO_MINOR_UNIT) == 178
        library = {c: oc.Currency(c).minor_units for c in BILLABLE}
        wrong = {c: minor for c, minor in library.items() if minor != BILLABLE_MINOR_UNITS[c]}
        assert wrong == {}
        for code in BILLABLE:
            assert exponent(oc.Money("1", code).rounded().amount) == -BILLABLE_MINOR_UNITS[code]

    def test_codes_without_minor_unit_or_withdrawn_parse_but_are_not_billable(self) -> None:
        svc = oc.BillingService()
        assert [oc.Currency(c).minor_units for c in NO_MINOR_UNIT] == [None] * len(NO_MINOR_UNIT)
        for code in NO_MINOR_UNIT + WITHDRAWN:
            assert oc.Currency(code).code == code
            with pytest.raises(oc.CurrencyNotBillableError) as err:
                oc.Money("1", code).rounded()
            assert err.value.code == code
            with pytest.raises(oc.CurrencyNotBillableError):
                svc.upsert_tenant("acme", code)
        with pytest.raises(oc.UnknownTenantError):
            svc.account("acme")


_amount_units = st.one_of(
    st.integers(-(10**13), 10**13),
    st.integers(-(10**12), 10**12).map(lambda n: n * 10 + 5),  # ties when one digit past the unit
)


class TestProperties:
    """Property-based checks of rounding, allocation, conversion and settlement."""

    @settings(max_examples=200, deadline=None)
    @given(units=_amount_units, extra=st.integers(0, 6), strategy=st.sampled_from(sorted(ROUNDING_MODES)))
    def test_rounded_matches_python_decimal_in_every_billable_currency(
        self, units: int, extra: int, strategy: str
    ) -> None:
        for code in BILLABLE:
            amount = Decimal(units).scaleb(-(BILLABLE_MINOR_UNITS[code] + extra))
            got = oc.Money(amount, code).rounded(strategy).amount
            assert got == rounded(amount, code, ROUNDING_MODES[strategy]), (code, amount, strategy)
            assert exponent(got) == -BILLABLE_MINOR_UNITS[code]

    @settings(max_examples=300, deadline=None)
    @given(
        code=st.sampled_from(BILLABLE),
        units=st.integers(-(10**12), 10**12),
        weights=st.lists(
            st.one_of(st.integers(0, 1000), st.decimals("0", "99.99", places=2)), min_size=1, max_size=8
        ),
    )
    def test_allocate_sums_to_the_total_and_stays_within_a_minor_unit(
        self, code: str, units: int, weights: list[int | Decimal]
    ) -> None:
        assume(sum(Decimal(w) for w in weights) > 0)
        total = oc.Money(Decimal(units) * unit(code), code)
        parts = total.allocate(list(weights))
        assert len(parts) == len(weights)
        assert exact_sum([p.amount for p in parts]) == total.amount
        weight_sum = exact_sum([Decimal(w) for w in weights])
        with decimal.localcontext(prec=80):
            for part, w in zip(parts, weights):
                assert part.currency.code == code
                share = total.amount * Decimal(w) / weight_sum
                assert abs(part.amount - share) < unit(code)
                if Decimal(w) == 0:
                    assert part.amount == 0

    @settings(max_examples=300, deadline=None)
    @given(
        a=st.sampled_from(BILLABLE),
        b=st.sampled_from(BILLABLE),
        units=st.integers(0, 10**9),
        spread=st.integers(1, 10**6),
    )
    def test_conversion_round_trip_returns_within_one_minor_unit(
        self, a: str, b: str, units: int, spread: int
    ) -> None:
        assume(a != b)
        # rate * unit(a) >= unit(b): one minor unit of B is worth at most one minor unit of A, so
        # the two roundings together lose at most one minor unit of A.
        rate = unit(b) / unit(a) * (1 + Decimal(spread) / 1000)
        rates = oc.ExchangeRates()
        rates.set_rate(a, b, rate, RATES_AS_OF)
        original = oc.Money(Decimal(units) * unit(a), a)
        there = rates.convert(original, b, T0).rounded()
        back = rates.convert(there, a, T0).rounded()
        assert back.currency.code == a and there.currency.code == b
        assert abs(back.amount - original.amount) <= unit(a)

    @settings(max_examples=60, deadline=None)
    @given(
        code=st.sampled_from(["USD", "EUR", "JPY", "KWD"]),
        usage=st.lists(st.integers(0, 10**6), max_size=3),
        price_millis=st.integers(0, 10**5),
        percent=st.none() | st.integers(1, 100),
        fixed=st.none() | st.integers(1, 10**6),
        other_fixed=st.booleans(),
        credit=st.none() | st.integers(1, 10**6),
    )
    def test_total_is_subtotal_minus_discounts_minus_credits_never_negative(
        self,
        code: str,
        usage: list[int],
        price_millis: int,
        percent: int | None,
        fixed: int | None,
        other_fixed: bool,
        credit: int | None,
    ) -> None:
        store = oc.Store.memory()
        svc = oc.BillingService(store, oc.ManualClock(T0), make_rates(store))
        svc.upsert_tenant("acme", code)
        price = Decimal(price_millis) / 1000
        svc.set_price("cpu", oc.Money(price, code))
        for i, q in enumerate(usage):
            svc.record_usage("acme", "cpu", q, f"r{i}", at(2026, 3, 2), at(2026, 3, 3))
        if percent is not None:
            svc.add_discount("acme", percent=percent)
        if fixed is not None:
            svc.add_discount("acme", amount=oc.Money(Decimal(fixed) * unit(code), code))
        other = "GBP" if code != "GBP" else "USD"
        if other_fixed:
            svc.add_discount("acme", amount=oc.Money("1.00", other))
        if credit is not None:
            svc.add_credit("acme", oc.Money(Decimal(credit) * unit(code), code))

        inv = svc.generate_invoice("acme", *MAR)
        discounts = [m.amount for _, m in inv.discounts]
        parts = [inv.subtotal.amount, *(-d for d in discounts), -inv.credits_applied.amount]
        assert inv.total.amount == exact_sum(parts)
        assert inv.total.amount >= 0 and all(d >= 0 for d in discounts)
        assert all(m.currency.code == code for _, m in inv.discounts)

        # The same settlement computed independently.
        subtotal = exact_sum([rounded(q * price, code) for q in usage])
        due = subtotal
        if percent is not None:
            due -= rounded(due * percent / 100, code)
        if fixed is not None:
            due -= min(Decimal(fixed) * unit(code), due)
        applied = min(Decimal(credit) * unit(code), due) if credit is not None else Decimal(0)
        assert inv.subtotal.amount == subtotal
        assert (inv.credits_applied.amount, inv.total.amount) == (applied, due - applied)
        for money in (inv.subtotal, inv.credits_applied, inv.total):
            assert exponent(money.amount) == -BILLABLE_MINOR_UNITS[code]
        if other_fixed:  # a fixed discount in another currency waits, untouched
            waiting = [d.amount for d in svc.discounts("acme") if d.amount is not None]
            assert [m.currency.code for m in waiting if m.currency.code != code] == [other]
        if credit is not None:
            balance = svc.credit_balance("acme", code).amount
            assert balance == Decimal(credit) * unit(code) - applied
            assert exact_sum([m.amount for m in svc.credit_ledger("acme", code)]) == balance
