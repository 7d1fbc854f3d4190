//! ISO 4217 currencies: code, numeric code and minor units.
//!
//! # Source of truth
//!
//! The table below is ISO 4217 List One ("Current Currency & Funds", formerly table A.1) as
//! published by the maintenance agency (SIX) with `Pblshd="2026-01-01"`, that is after every
//! amendment up to and including **Amendment 180**. It has 178 distinct alphabetic codes:
//! 17 with minor unit 0, 139 with 2, 7 with 3, 2 with 4, and 13 with `N.A.` (no minor unit).
//! Names are List One's English currency names (`CcyNm`), trimmed.
//!
//! The table is self-contained: it no longer delegates to the `iso_currency` crate (0.7.1,
//! whose data is scraped from Wikipedia). Auditing that crate against the list found:
//!
//! * **Missing current codes: none.** 0.7.1 already carries the recent additions, and they are
//!   kept here with ISO's values: SLE 925 (Amendment 171, 2022), VED 926 (Amendment 170,
//!   2021-10-01; VES 928 stays current alongside it, although `iso_currency` flags VES as
//!   superseded), ZWG 924 (Amendment 177, 2024-06-25), XCG 532 (Amendment 176, effective
//!   2025-03-31; it reuses ANG's numeric code) and XAD 396 with 2 minor units (Amendment 179,
//!   effective 2025-05-12).
//! * **Withdrawn codes it still accepted**, now parseable but not billable (see
//!   [`Currency::is_withdrawn`]):
//!   - HRK 191: Croatia joined the euro on 2023-01-01 (Amendment 174).
//!   - SLL 694: the old leone was moved to List Three when the redenomination to SLE ended,
//!     after the transition periods of Amendments 171, 172, 173 and 175 (the last ran to
//!     2023-12-31).
//!   - ZWL 932: moved to List Three from 2024-09-01 (Amendment 177).
//!   - CUC 931: moved to List Three "with immediate effect" by Amendment 178 (February 2025),
//!     with withdrawal date 2021-06.
//!   - BGN 975: Amendment 180 (September 2025) replaces it with EUR for Bulgaria and moves
//!     it to List Three from 2026-01-01. The list published on 2026-01-01 therefore no longer
//!     has BGN, even though lev cash still circulated alongside the euro until 2026-01-31.
//! * **ANG 532** (Netherlands Antillean guilder), which `iso_currency` 0.7.1 had already
//!   dropped, is accepted again as a withdrawn code, so invoices issued before the XCG switch
//!   still parse. Amendment 176 replaced it with XCG from 2025-03-31. ANG stopped being legal
//!   tender on 2025-07-01, and List Three gives 2025-03 as its withdrawal date.
//! * **Minor units: no differences.** All 178 current codes agree with ISO, including
//!   ISK/CLP/UGX/VND/KRW/PYG/XOF/XAF 0, IQD/LYD/TND 3, CLF/UYW 4, MGA/MRU/VES/IDR/HUF/TWD/COP 2,
//!   and `N.A.` for XAU, XAG, XPT, XPD, XDR, XBA, XBB, XBC, XBD, XSU, XUA, XTS and XXX. The
//!   tests pin every one of those values.
//! * **Names** now follow ISO rather than Wikipedia (for example `Caribbean Guilder`, where
//!   `iso_currency` has the misspelling `Caribean guilder`).
//!
//! When a new amendment is published, edit [`CURRENT`] or [`WITHDRAWN`]. Compile-time checks
//! verify that both tables are sorted and disjoint.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::error::MoneyError;

/// One row of the ISO 4217 tables.
#[derive(Debug)]
struct Entry {
    code: &'static str,
    /// The code's three bytes packed big-endian, so that sorting by key sorts by code.
    key: u32,
    numeric: u16,
    minor_units: Option<u8>,
    name: &'static str,
    withdrawn: bool,
}

impl Entry {
    /// A List One entry with a minor unit.
    const fn current(code: &'static str, numeric: u16, minor: u8, name: &'static str) -> Self {
        Self::row(code, numeric, Some(minor), name, false)
    }

    /// A List One entry whose minor unit is `N.A.` (metals, bond-market units, SDR, testing).
    const fn none(code: &'static str, numeric: u16, name: &'static str) -> Self {
        Self::row(code, numeric, None, name, false)
    }

    /// A code withdrawn to List Three, kept so that old documents still parse. It has the minor
    /// unit ISO last gave it.
    const fn withdrawn(code: &'static str, numeric: u16, minor: u8, name: &'static str) -> Self {
        Self::row(code, numeric, Some(minor), name, true)
    }

    const fn row(
        code: &'static str,
        numeric: u16,
        minor_units: Option<u8>,
        name: &'static str,
        withdrawn: bool,
    ) -> Self {
        let b = code.as_bytes();
        assert!(
            b.len() == 3
                && b[0].is_ascii_uppercase()
                && b[1].is_ascii_uppercase()
                && b[2].is_ascii_uppercase(),
            "an ISO 4217 alphabetic code is three upper-case ASCII letters"
        );
        assert!(
            numeric >= 1 && numeric <= 999,
            "numeric codes have three digits"
        );
        Self {
            code,
            key: pack(b[0], b[1], b[2]),
            numeric,
            minor_units,
            name,
            withdrawn,
        }
    }
}

const fn pack(a: u8, b: u8, c: u8) -> u32 {
    ((a as u32) << 16) | ((b as u32) << 8) | (c as u32)
}

/// The lookup key of a candidate code, or `None` when it cannot be a code (not three bytes).
fn key_of(code: &str) -> Option<u32> {
    match *code.as_bytes() {
        [a, b, c] => Some(pack(a, b, c)),
        _ => None,
    }
}

/// ISO 4217 List One as published 2026-01-01 (through Amendment 180), sorted by code.
static CURRENT: [Entry; 178] = [
    Entry::current("AED", 784, 2, "UAE Dirham"),
    Entry::current("AFN", 971, 2, "Afghani"),
    Entry::current("ALL", 8, 2, "Lek"),
    Entry::current("AMD", 51, 2, "Armenian Dram"),
    Entry::current("AOA", 973, 2, "Kwanza"),
    Entry::current("ARS", 32, 2, "Argentine Peso"),
    Entry::current("AUD", 36, 2, "Australian Dollar"),
    Entry::current("AWG", 533, 2, "Aruban Florin"),
    Entry::current("AZN", 944, 2, "Azerbaijan Manat"),
    Entry::current("BAM", 977, 2, "Convertible Mark"),
    Entry::current("BBD", 52, 2, "Barbados Dollar"),
    Entry::current("BDT", 50, 2, "Taka"),
    Entry::current("BHD", 48, 3, "Bahraini Dinar"),
    Entry::current("BIF", 108, 0, "Burundi Franc"),
    Entry::current("BMD", 60, 2, "Bermudian Dollar"),
    Entry::current("BND", 96, 2, "Brunei Dollar"),
    Entry::current("BOB", 68, 2, "Boliviano"),
    Entry::current("BOV", 984, 2, "Mvdol"),
    Entry::current("BRL", 986, 2, "Brazilian Real"),
    Entry::current("BSD", 44, 2, "Bahamian Dollar"),
    Entry::current("BTN", 64, 2, "Ngultrum"),
    Entry::current("BWP", 72, 2, "Pula"),
    Entry::current("BYN", 933, 2, "Belarusian Ruble"),
    Entry::current("BZD", 84, 2, "Belize Dollar"),
    Entry::current("CAD", 124, 2, "Canadian Dollar"),
    Entry::current("CDF", 976, 2, "Congolese Franc"),
    Entry::current("CHE", 947, 2, "WIR Euro"),
    Entry::current("CHF", 756, 2, "Swiss Franc"),
    Entry::current("CHW", 948, 2, "WIR Franc"),
    Entry::current("CLF", 990, 4, "Unidad de Fomento"),
    Entry::current("CLP", 152, 0, "Chilean Peso"),
    Entry::current("CNY", 156, 2, "Yuan Renminbi"),
    Entry::current("COP", 170, 2, "Colombian Peso"),
    Entry::current("COU", 970, 2, "Unidad de Valor Real"),
    Entry::current("CRC", 188, 2, "Costa Rican Colon"),
    Entry::current("CUP", 192, 2, "Cuban Peso"),
    Entry::current("CVE", 132, 2, "Cabo Verde Escudo"),
    Entry::current("CZK", 203, 2, "Czech Koruna"),
    Entry::current("DJF", 262, 0, "Djibouti Franc"),
    Entry::current("DKK", 208, 2, "Danish Krone"),
    Entry::current("DOP", 214, 2, "Dominican Peso"),
    Entry::current("DZD", 12, 2, "Algerian Dinar"),
    Entry::current("EGP", 818, 2, "Egyptian Pound"),
    Entry::current("ERN", 232, 2, "Nakfa"),
    Entry::current("ETB", 230, 2, "Ethiopian Birr"),
    Entry::current("EUR", 978, 2, "Euro"),
    Entry::current("FJD", 242, 2, "Fiji Dollar"),
    Entry::current("FKP", 238, 2, "Falkland Islands Pound"),
    Entry::current("GBP", 826, 2, "Pound Sterling"),
    Entry::current("GEL", 981, 2, "Lari"),
    Entry::current("GHS", 936, 2, "Ghana Cedi"),
    Entry::current("GIP", 292, 2, "Gibraltar Pound"),
    Entry::current("GMD", 270, 2, "Dalasi"),
    Entry::current("GNF", 324, 0, "Guinean Franc"),
    Entry::current("GTQ", 320, 2, "Quetzal"),
    Entry::current("GYD", 328, 2, "Guyana Dollar"),
    Entry::current("HKD", 344, 2, "Hong Kong Dollar"),
    Entry::current("HNL", 340, 2, "Lempira"),
    Entry::current("HTG", 332, 2, "Gourde"),
    Entry::current("HUF", 348, 2, "Forint"),
    Entry::current("IDR", 360, 2, "Rupiah"),
    Entry::current("ILS", 376, 2, "New Israeli Sheqel"),
    Entry::current("INR", 356, 2, "Indian Rupee"),
    Entry::current("IQD", 368, 3, "Iraqi Dinar"),
    Entry::current("IRR", 364, 2, "Iranian Rial"),
    Entry::current("ISK", 352, 0, "Iceland Krona"),
    Entry::current("JMD", 388, 2, "Jamaican Dollar"),
    Entry::current("JOD", 400, 3, "Jordanian Dinar"),
    Entry::current("JPY", 392, 0, "Yen"),
    Entry::current("KES", 404, 2, "Kenyan Shilling"),
    Entry::current("KGS", 417, 2, "Som"),
    Entry::current("KHR", 116, 2, "Riel"),
    Entry::current("KMF", 174, 0, "Comorian Franc"),
    Entry::current("KPW", 408, 2, "North Korean Won"),
    Entry::current("KRW", 410, 0, "Won"),
    Entry::current("KWD", 414, 3, "Kuwaiti Dinar"),
    Entry::current("KYD", 136, 2, "Cayman Islands Dollar"),
    Entry::current("KZT", 398, 2, "Tenge"),
    Entry::current("LAK", 418, 2, "Lao Kip"),
    Entry::current("LBP", 422, 2, "Lebanese Pound"),
    Entry::current("LKR", 144, 2, "Sri Lanka Rupee"),
    Entry::current("LRD", 430, 2, "Liberian Dollar"),
    Entry::current("LSL", 426, 2, "Loti"),
    Entry::current("LYD", 434, 3, "Libyan Dinar"),
    Entry::current("MAD", 504, 2, "Moroccan Dirham"),
    Entry::current("MDL", 498, 2, "Moldovan Leu"),
    Entry::current("MGA", 969, 2, "Malagasy Ariary"),
    Entry::current("MKD", 807, 2, "Denar"),
    Entry::current("MMK", 104, 2, "Kyat"),
    Entry::current("MNT", 496, 2, "Tugrik"),
    Entry::current("MOP", 446, 2, "Pataca"),
    Entry::current("MRU", 929, 2, "Ouguiya"),
    Entry::current("MUR", 480, 2, "Mauritius Rupee"),
    Entry::current("MVR", 462, 2, "Rufiyaa"),
    Entry::current("MWK", 454, 2, "Malawi Kwacha"),
    Entry::current("MXN", 484, 2, "Mexican Peso"),
    Entry::current("MXV", 979, 2, "Mexican Unidad de Inversion (UDI)"),
    Entry::current("MYR", 458, 2, "Malaysian Ringgit"),
    Entry::current("MZN", 943, 2, "Mozambique Metical"),
    Entry::current("NAD", 516, 2, "Namibia Dollar"),
    Entry::current("NGN", 566, 2, "Naira"),
    Entry::current("NIO", 558, 2, "Cordoba Oro"),
    Entry::current("NOK", 578, 2, "Norwegian Krone"),
    Entry::current("NPR", 524, 2, "Nepalese Rupee"),
    Entry::current("NZD", 554, 2, "New Zealand Dollar"),
    Entry::current("OMR", 512, 3, "Rial Omani"),
    Entry::current("PAB", 590, 2, "Balboa"),
    Entry::current("PEN", 604, 2, "Sol"),
    Entry::current("PGK", 598, 2, "Kina"),
    Entry::current("PHP", 608, 2, "Philippine Peso"),
    Entry::current("PKR", 586, 2, "Pakistan Rupee"),
    Entry::current("PLN", 985, 2, "Zloty"),
    Entry::current("PYG", 600, 0, "Guarani"),
    Entry::current("QAR", 634, 2, "Qatari Rial"),
    Entry::current("RON", 946, 2, "Romanian Leu"),
    Entry::current("RSD", 941, 2, "Serbian Dinar"),
    Entry::current("RUB", 643, 2, "Russian Ruble"),
    Entry::current("RWF", 646, 0, "Rwanda Franc"),
    Entry::current("SAR", 682, 2, "Saudi Riyal"),
    Entry::current("SBD", 90, 2, "Solomon Islands Dollar"),
    Entry::current("SCR", 690, 2, "Seychelles Rupee"),
    Entry::current("SDG", 938, 2, "Sudanese Pound"),
    Entry::current("SEK", 752, 2, "Swedish Krona"),
    Entry::current("SGD", 702, 2, "Singapore Dollar"),
    Entry::current("SHP", 654, 2, "Saint Helena Pound"),
    Entry::current("SLE", 925, 2, "Leone"),
    Entry::current("SOS", 706, 2, "Somali Shilling"),
    Entry::current("SRD", 968, 2, "Surinam Dollar"),
    Entry::current("SSP", 728, 2, "South Sudanese Pound"),
    Entry::current("STN", 930, 2, "Dobra"),
    Entry::current("SVC", 222, 2, "El Salvador Colon"),
    Entry::current("SYP", 760, 2, "Syrian Pound"),
    Entry::current("SZL", 748, 2, "Lilangeni"),
    Entry::current("THB", 764, 2, "Baht"),
    Entry::current("TJS", 972, 2, "Somoni"),
    Entry::current("TMT", 934, 2, "Turkmenistan New Manat"),
    Entry::current("TND", 788, 3, "Tunisian Dinar"),
    Entry::current("TOP", 776, 2, "Pa’anga"),
    Entry::current("TRY", 949, 2, "Turkish Lira"),
    Entry::current("TTD", 780, 2, "Trinidad and Tobago Dollar"),
    Entry::current("TWD", 901, 2, "New Taiwan Dollar"),
    Entry::current("TZS", 834, 2, "Tanzanian Shilling"),
    Entry::current("UAH", 980, 2, "Hryvnia"),
    Entry::current("UGX", 800, 0, "Uganda Shilling"),
    Entry::current("USD", 840, 2, "US Dollar"),
    Entry::current("USN", 997, 2, "US Dollar (Next day)"),
    Entry::current("UYI", 940, 0, "Uruguay Peso en Unidades Indexadas (UI)"),
    Entry::current("UYU", 858, 2, "Peso Uruguayo"),
    Entry::current("UYW", 927, 4, "Unidad Previsional"),
    Entry::current("UZS", 860, 2, "Uzbekistan Sum"),
    Entry::current("VED", 926, 2, "Bolívar Soberano"),
    Entry::current("VES", 928, 2, "Bolívar Soberano"),
    Entry::current("VND", 704, 0, "Dong"),
    Entry::current("VUV", 548, 0, "Vatu"),
    Entry::current("WST", 882, 2, "Tala"),
    Entry::current("XAD", 396, 2, "Arab Accounting Dinar"),
    Entry::current("XAF", 950, 0, "CFA Franc BEAC"),
    Entry::none("XAG", 961, "Silver"),
    Entry::none("XAU", 959, "Gold"),
    Entry::none(
        "XBA",
        955,
        "Bond Markets Unit European Composite Unit (EURCO)",
    ),
    Entry::none(
        "XBB",
        956,
        "Bond Markets Unit European Monetary Unit (E.M.U.-6)",
    ),
    Entry::none(
        "XBC",
        957,
        "Bond Markets Unit European Unit of Account 9 (E.U.A.-9)",
    ),
    Entry::none(
        "XBD",
        958,
        "Bond Markets Unit European Unit of Account 17 (E.U.A.-17)",
    ),
    Entry::current("XCD", 951, 2, "East Caribbean Dollar"),
    Entry::current("XCG", 532, 2, "Caribbean Guilder"),
    Entry::none("XDR", 960, "SDR (Special Drawing Right)"),
    Entry::current("XOF", 952, 0, "CFA Franc BCEAO"),
    Entry::none("XPD", 964, "Palladium"),
    Entry::current("XPF", 953, 0, "CFP Franc"),
    Entry::none("XPT", 962, "Platinum"),
    Entry::none("XSU", 994, "Sucre"),
    Entry::none(
        "XTS",
        963,
        "Codes specifically reserved for testing purposes",
    ),
    Entry::none("XUA", 965, "ADB Unit of Account"),
    Entry::none(
        "XXX",
        999,
        "The codes assigned for transactions where no currency is involved",
    ),
    Entry::current("YER", 886, 2, "Yemeni Rial"),
    Entry::current("ZAR", 710, 2, "Rand"),
    Entry::current("ZMW", 967, 2, "Zambian Kwacha"),
    Entry::current("ZWG", 924, 2, "Zimbabwe Gold"),
];

/// Codes withdrawn to List Three that old invoices may still carry, sorted by code. They parse,
/// but are not billable.
static WITHDRAWN: [Entry; 6] = [
    // Amendment 176: replaced by XCG (same numeric code) from 2025-03-31.
    Entry::withdrawn("ANG", 532, 2, "Netherlands Antillean Guilder"),
    // Amendment 180: Bulgaria adopts EUR; BGN moves to List Three from 2026-01-01.
    Entry::withdrawn("BGN", 975, 2, "Bulgarian Lev"),
    // Amendment 178: moved to List Three with immediate effect (withdrawn 2021-06).
    Entry::withdrawn("CUC", 931, 2, "Peso Convertible"),
    // Amendment 174: Croatia adopts EUR from 2023-01-01.
    Entry::withdrawn("HRK", 191, 2, "Kuna"),
    // Amendments 171-173 and 175: redenominated to SLE; withdrawn after 2023-12-31.
    Entry::withdrawn("SLL", 694, 2, "Leone"),
    // Amendment 177: replaced by ZWG; moved to List Three from 2024-09-01.
    Entry::withdrawn("ZWL", 932, 2, "Zimbabwe Dollar"),
];

/// Both tables are strictly sorted (so binary search works and codes are unique), and no code
/// appears in both.
const _: () = {
    const fn strictly_sorted(t: &[Entry]) -> bool {
        let mut i = 1;
        while i < t.len() {
            if t[i - 1].key >= t[i].key {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(
        strictly_sorted(&CURRENT),
        "CURRENT must be sorted by code, without duplicates"
    );
    assert!(
        strictly_sorted(&WITHDRAWN),
        "WITHDRAWN must be sorted by code, without duplicates"
    );
    let mut i = 0;
    while i < WITHDRAWN.len() {
        assert!(
            WITHDRAWN[i].withdrawn,
            "WITHDRAWN rows are built with Entry::withdrawn"
        );
        let mut j = 0;
        while j < CURRENT.len() {
            assert!(
                CURRENT[j].key != WITHDRAWN[i].key,
                "a code is current or withdrawn, not both"
            );
            assert!(!CURRENT[j].withdrawn, "CURRENT rows are not withdrawn");
            j += 1;
        }
        i += 1;
    }
};

/// Index of a code in [`CURRENT`], computed at compile time (fails the build if absent).
const fn current_index(code: &str) -> usize {
    let b = code.as_bytes();
    let key = pack(b[0], b[1], b[2]);
    let mut i = 0;
    while i < CURRENT.len() {
        if CURRENT[i].key == key {
            return i;
        }
        i += 1;
    }
    panic!("code not in CURRENT")
}

const USD: usize = current_index("USD");

fn find(table: &'static [Entry], key: u32) -> Option<&'static Entry> {
    table
        .binary_search_by_key(&key, |e| e.key)
        .ok()
        .and_then(|i| table.get(i))
}

/// An ISO 4217 currency, by its alphabetic code.
///
/// Its data is ISO 4217 List One as published on 2026-01-01 (see the module documentation for
/// the amendments applied). Minor units are ISO's: 2 for USD and EUR, 0 for JPY, KRW, ISK and
/// CLP, 3 for BHD and KWD, 4 for CLF and UYW, and none for gold, SDR and the other codes without
/// a minor unit. Codes without a minor unit are not billable.
///
/// A few recently withdrawn codes (ANG, BGN, CUC, HRK, SLL, ZWL) still parse so that old
/// invoices can be read, but they are not billable either (see [`Currency::is_withdrawn`]).
///
/// Two currencies are equal when their codes are, and they order by code. A currency
/// serializes as its code string.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(&'static Entry);

impl Currency {
    /// Looks a code up (case-sensitive upper-case, as ISO writes them).
    ///
    /// Accepts every code current in ISO 4217 on 2026-01-01 and the withdrawn codes listed in the
    /// type's documentation. Anything else is [`MoneyError::UnknownCurrency`]. The lookup is a
    /// binary search over a static table and does not allocate on success.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        key_of(code)
            .and_then(|key| find(&CURRENT, key).or_else(|| find(&WITHDRAWN, key)))
            .map(Self)
            .ok_or_else(|| MoneyError::UnknownCurrency {
                code: code.to_owned(),
            })
    }

    /// The US dollar, the reference currency of legacy invoices.
    pub fn usd() -> Self {
        Self(&CURRENT[USD])
    }

    /// Every currency and fund code current in ISO 4217 on 2026-01-01 (178 codes), sorted by
    /// code. Withdrawn codes are not included.
    pub fn all() -> impl ExactSizeIterator<Item = Currency> + DoubleEndedIterator + Clone {
        CURRENT.iter().map(Self)
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// The three-digit numeric code.
    ///
    /// Withdrawn codes keep their old numeric code. ANG's is 532, which XCG now uses.
    pub fn numeric(&self) -> u16 {
        self.0.numeric
    }

    /// The English name, as ISO 4217 gives it (for example `US Dollar`, `Yen`).
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// Decimal places of the minor unit, or `None` where ISO 4217 defines none.
    ///
    /// A withdrawn code reports the minor unit it had, so that old amounts can still be
    /// read. Use [`Currency::billable_minor_units`] when billing.
    pub fn minor_units(&self) -> Option<u32> {
        self.0.minor_units.map(u32::from)
    }

    /// Whether ISO 4217 withdrew this code (moved it to List Three) by 2026-01-01, for example
    /// HRK or BGN after the switch to the euro. Withdrawn codes parse, so old invoices stay
    /// readable, but they are not billable.
    pub fn is_withdrawn(&self) -> bool {
        self.0.withdrawn
    }

    /// The minor units, or [`MoneyError::NotBillable`] for currencies without one and for
    /// withdrawn currencies.
    pub fn billable_minor_units(&self) -> Result<u32, MoneyError> {
        match self.minor_units() {
            Some(minor) if !self.is_withdrawn() => Ok(minor),
            _ => Err(MoneyError::NotBillable {
                code: self.code().to_owned(),
            }),
        }
    }
}

impl PartialEq for Currency {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Currency {}

impl Hash for Currency {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Currency {
    fn cmp(&self, other: &Self) -> Ordering {
        // The key packs the code big-endian, so this is the order of the codes.
        self.0.key.cmp(&other.0.key)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    fn c(code: &str) -> Currency {
        Currency::new(code).expect(code)
    }

    /// The codes of every current currency with the given minor units.
    fn codes_with(minor: Option<u32>) -> Vec<&'static str> {
        Currency::all()
            .filter(|c| c.minor_units() == minor)
            .map(|c| c.code())
            .collect()
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        let cases = [
            ("USD", Some(2)),
            ("EUR", Some(2)),
            ("JPY", Some(0)),
            ("KRW", Some(0)),
            ("ISK", Some(0)),
            ("CLP", Some(0)),
            ("UGX", Some(0)),
            ("VND", Some(0)),
            ("PYG", Some(0)),
            ("XOF", Some(0)),
            ("XAF", Some(0)),
            ("BHD", Some(3)),
            ("KWD", Some(3)),
            ("IQD", Some(3)),
            ("LYD", Some(3)),
            ("TND", Some(3)),
            ("CLF", Some(4)),
            ("UYW", Some(4)),
            ("MGA", Some(2)),
            ("MRU", Some(2)),
            ("VES", Some(2)),
            ("IDR", Some(2)),
            ("HUF", Some(2)),
            ("TWD", Some(2)),
            ("COP", Some(2)),
            ("XAU", None),
            ("XDR", None),
        ];
        for (code, minor) in cases {
            let cur = c(code);
            assert_eq!(cur.minor_units(), minor, "{code}");
            assert_eq!(cur.code(), code);
        }
        assert_eq!(c("EUR").numeric(), 978);
    }

    /// The complete sets for each minor unit in List One of 2026-01-01: every current code
    /// not named here has 2.
    #[test]
    fn every_minor_unit_matches_list_one() {
        assert_eq!(
            codes_with(Some(0)),
            [
                "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                "VND", "VUV", "XAF", "XOF", "XPF"
            ]
        );
        assert_eq!(
            codes_with(Some(3)),
            ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
        );
        assert_eq!(codes_with(Some(4)), ["CLF", "UYW"]);
        // ISO's "N.A.", XSU and XUA included.
        assert_eq!(
            codes_with(None),
            [
                "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA",
                "XXX"
            ]
        );
        assert_eq!(codes_with(Some(2)).len(), 139);
        for code in codes_with(None) {
            assert_eq!(
                c(code).billable_minor_units(),
                Err(MoneyError::NotBillable { code: code.into() })
            );
        }
    }

    #[test]
    fn all_lists_the_178_current_codes_sorted_and_unique() {
        let all: Vec<Currency> = Currency::all().collect();
        assert_eq!(all.len(), 178);
        assert_eq!(Currency::all().len(), 178);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "strictly sorted");
        assert!(
            all.windows(2).all(|w| w[0].code() < w[1].code()),
            "sorted by code"
        );
        let codes: HashSet<&str> = all.iter().map(Currency::code).collect();
        assert_eq!(codes.len(), 178);
        let numerics: HashSet<u16> = all.iter().map(Currency::numeric).collect();
        assert_eq!(
            numerics.len(),
            178,
            "numeric codes of current currencies are unique"
        );
        for cur in &all {
            assert!(!cur.is_withdrawn(), "{cur:?}");
            assert_eq!(Currency::new(cur.code()), Ok(*cur));
            assert!((1..=999).contains(&cur.numeric()), "{cur:?}");
            assert!(!cur.name().is_empty() && cur.name().trim() == cur.name());
            assert_eq!(
                cur.billable_minor_units().ok(),
                cur.minor_units(),
                "{cur:?}"
            );
        }
        assert!(all.contains(&Currency::usd()));
    }

    #[test]
    fn recent_additions_are_current_with_iso_values() {
        let cases = [
            // (code, numeric, minor units, ISO name, amendment)
            ("XCG", 532, 2, "Caribbean Guilder"), // 176
            ("ZWG", 924, 2, "Zimbabwe Gold"),     // 177
            ("SLE", 925, 2, "Leone"),             // 171
            ("VED", 926, 2, "Bolívar Soberano"),  // 170
            ("VES", 928, 2, "Bolívar Soberano"),  // still current beside VED
            ("UYW", 927, 4, "Unidad Previsional"),
            ("MRU", 929, 2, "Ouguiya"),
            ("STN", 930, 2, "Dobra"),
            ("XAD", 396, 2, "Arab Accounting Dinar"), // 179
        ];
        for (code, numeric, minor, name) in cases {
            let cur = c(code);
            assert_eq!(
                (cur.numeric(), cur.minor_units(), cur.name()),
                (numeric, Some(minor), name),
                "{code}"
            );
            assert!(!cur.is_withdrawn(), "{code}");
            assert_eq!(cur.billable_minor_units(), Ok(minor), "{code}");
            assert!(Currency::all().any(|a| a == cur), "{code}");
        }
        assert_eq!(c("USD").name(), "US Dollar");
        assert_eq!(c("XSU").numeric(), 994);
        assert_eq!(c("XUA").numeric(), 965);
    }

    #[test]
    fn withdrawn_codes_parse_but_are_not_billable() {
        let cases = [
            ("ANG", 532), // Amendment 176, replaced by XCG
            ("BGN", 975), // Amendment 180, Bulgaria joined the euro on 2026-01-01
            ("CUC", 931), // Amendment 178
            ("HRK", 191), // Amendment 174, Croatia joined the euro on 2023-01-01
            ("SLL", 694), // Amendments 171-175, redenominated to SLE
            ("ZWL", 932), // Amendment 177, replaced by ZWG
        ];
        let current: BTreeSet<Currency> = Currency::all().collect();
        for (code, numeric) in cases {
            let cur = c(code);
            assert!(cur.is_withdrawn(), "{code}");
            assert_eq!(cur.code(), code);
            assert_eq!(cur.numeric(), numeric);
            assert_eq!(cur.minor_units(), Some(2), "the minor unit it had");
            assert_eq!(
                cur.billable_minor_units(),
                Err(MoneyError::NotBillable { code: code.into() })
            );
            assert!(!current.contains(&cur), "{code} is not in all()");
            // Old invoices still round-trip through serde.
            let json = serde_json::to_string(&cur).expect("ser");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<Currency>(&json).expect("de"), cur);
        }
        assert_eq!(WITHDRAWN.len(), cases.len());
        // ANG shares its numeric code with its successor, but they are different currencies.
        assert_ne!(c("ANG"), c("XCG"));
        assert_eq!(c("ANG").numeric(), c("XCG").numeric());
    }

    #[test]
    fn unknown_and_non_billable_codes_are_typed_errors() {
        for bad in [
            "", "usd", "XYZ", "US", "USDD", "€", "Usd", "VEF", "MRO", "BYR", " US",
        ] {
            assert_eq!(
                Currency::new(bad),
                Err(MoneyError::UnknownCurrency { code: bad.into() })
            );
        }
        let gold = c("XAU");
        assert_eq!(
            gold.billable_minor_units(),
            Err(MoneyError::NotBillable { code: "XAU".into() })
        );
        assert_eq!(Currency::usd().billable_minor_units(), Ok(2));
    }

    #[test]
    fn traits_work_by_code() {
        let usd = Currency::usd();
        assert_eq!(usd, c("USD"));
        assert_eq!(format!("{usd:?}"), "Currency(USD)");
        assert_eq!(usd.to_string(), "USD");
        assert_eq!("EUR".parse::<Currency>(), Ok(c("EUR")));
        assert_eq!(Currency::try_from(String::from("JPY")), Ok(c("JPY")));
        assert_eq!(String::from(c("GBP")), "GBP");
        assert!(c("AED") < c("BGN") && c("BGN") < c("USD") && c("USD") < c("ZWG"));
        let set: HashSet<Currency> = ["EUR", "EUR", "USD", "HRK"].into_iter().map(c).collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn serde_uses_the_code() {
        let json = serde_json::to_string(&Currency::usd()).expect("ser");
        assert_eq!(json, "\"USD\"");
        assert_eq!(
            serde_json::from_str::<Currency>("\"XCG\"").expect("de"),
            c("XCG")
        );
        assert!(serde_json::from_str::<Currency>("\"ABC\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
    }
}
