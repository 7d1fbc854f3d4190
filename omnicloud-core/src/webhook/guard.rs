//! The SSRF guard of webhook deliveries: which URLs and addresses a delivery may go to.
//!
//! Tenants choose where their webhooks go. Without a guard a tenant could make the server
//! call its own loopback services, the private network behind it or a cloud metadata
//! endpoint (`169.254.169.254`) and read the answers in the delivery log. This module owns
//! the rules that prevent it:
//!
//! - [`WebhookUrl`]: a strict parser of http and https URLs. It refuses every form that URL
//!   parsers disagree on (credentials, fragments, backslashes, percent-encoded or
//!   non-ASCII hosts, decimal/octal/hexadecimal IPv4 hosts such as `2130706433` or
//!   `0x7f.0.0.1`), so the host checked here is the host the HTTP client connects to.
//! - [`classify`]: the class of an IPv4 or IPv6 address (public, loopback, private,
//!   link-local, ...). IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
//!   (`2002::/16`) addresses are classified by the IPv4 address they embed.
//! - [`IpNetwork`] and [`UrlGuard`]: the server's allow-list, and the two checks.
//!
//! The guard runs twice. At registration, [`UrlGuard::check_url`] refuses malformed and
//! ambiguous URLs, IP-literal hosts that are neither public nor allow-listed, and host names
//! that name internal hosts (`localhost`, `*.internal`, single-label names, ...). A host name
//! that passes may still resolve to anything, and to something else at delivery time (DNS
//! rebinding), so at connect time the runtime resolves the name itself, calls
//! [`UrlGuard::check_addr`] on every resolved address, refuses the delivery if any address
//! is refused, and connects only to the addresses it checked. IP-literal hosts are checked
//! again at connect time the same way (the allow-list may have changed since registration).
//! Every connection goes through the guard: redirects are not followed unchecked.
//!
//! This module never performs network I/O, never resolves names and reads no
//! configuration: the allow-list is given to [`UrlGuard::new`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::WebhookError;

/// The longest webhook URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// How many characters of an over-long URL an error message shows.
const SHOWN_CHARS: usize = 100;

/// The scheme of a webhook URL: deliveries are made over HTTP or HTTPS only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http` (default port 80).
    Http,
    /// `https` (default port 443).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The port used when the URL names none: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lowercased ASCII (internationalised names must be given in their
    /// punycode `xn--` form). It is checked against the allow-list only after the runtime
    /// resolves it.
    Domain(String),
    /// An IPv4 address in canonical dotted-quad form, or an IPv6 literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// The host as written in a URL: IPv6 literals in square brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(addr)) => write!(f, "{addr}"),
            Self::Ip(IpAddr::V6(addr)) => write!(f, "[{addr}]"),
        }
    }
}

/// A parsed, normalised webhook URL.
///
/// Its [`Display`](fmt::Display) is the normalised URL: lowercase scheme and host, IPv6 in
/// its compressed form, the port only when it is not the scheme's default, a path of at
/// least `/`, and the characters URL parsers percent-encode percent-encoded (in the path:
/// double quote, `<`, `>`, `^`, backquote, `{`, `}`; in the query: double quote, `<`, `>`,
/// `'`). Parsing the normalised URL gives the same value. Dot segments (`/a/../b`) are kept
/// as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    scheme: Scheme,
    host: Host,
    port: u16,
    path_and_query: String,
}

impl WebhookUrl {
    /// Parses a webhook URL.
    ///
    /// Accepted: `http://` or `https://` (any case), a host (a DNS name, a canonical
    /// dotted-quad IPv4 address, or an IPv6 literal in square brackets), an optional port
    /// from 1 to 65535, then an optional path and query. At most [`MAX_URL_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidUrl`], naming the URL and the reason, if the URL is empty, too
    /// long, contains whitespace, control characters or a backslash, has another scheme,
    /// credentials (`user:pass@`), a fragment (`#...`), no host, a percent-encoded or
    /// non-ASCII host, a numeric host that is not a canonical dotted quad (`2130706433`,
    /// `0x7f.0.0.1`, `127.1`, `0177.0.0.1`), an unbracketed or invalid IPv6 literal, an IPv6
    /// zone, a malformed host name, an empty port or a port outside 1 to 65535, or a
    /// non-ASCII character in the path or query (percent-encode it).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        parse_url(text).map_err(|reason| WebhookError::InvalidUrl {
            url: shown(text),
            reason,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host: a lowercase DNS name or an IP address.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port: the one written, or the scheme's default (80 or 443).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query, starting with `/` (the request target of the HTTP request).
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path_and_query)
    }
}

impl FromStr for WebhookUrl {
    type Err = WebhookError;

    /// Same as [`WebhookUrl::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The URL as an error shows it: whole, or cut short (with its length) when over the limit.
fn shown(text: &str) -> String {
    if text.len() <= MAX_URL_LEN {
        return text.to_owned();
    }
    let head: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{head}... ({} bytes)", text.len())
}

fn parse_url(text: &str) -> Result<WebhookUrl, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!(
            "it is {} bytes long, more than the {MAX_URL_LEN} allowed",
            text.len()
        ));
    }
    if text.is_empty() {
        return Err("the URL is empty".to_owned());
    }
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "it contains whitespace or a control character (U+{:04X}) at byte {at}; \
             percent-encode it",
            u32::from(c)
        ));
    }
    let (scheme_text, rest) = text
        .split_once("://")
        .filter(|(scheme, _)| is_scheme_syntax(scheme))
        .ok_or_else(|| "it does not start with http:// or https://".to_owned())?;
    let scheme = if scheme_text.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme_text.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(format!(
            "the scheme {scheme_text:?} is not allowed: webhooks are delivered over http or \
             https only"
        ));
    };
    if rest.contains('#') {
        return Err(
            "it has a fragment (#...): fragments are never sent to the server, so \
                    webhook URLs must not have one"
                .to_owned(),
        );
    }
    if rest.contains('\\') {
        return Err(
            "it contains a backslash, which URL parsers read differently (some as \
                    '/'); percent-encode it as %5C"
                .to_owned(),
        );
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(
            "it has credentials (user:password@host): credentials must not be in \
                    webhook URLs"
                .to_owned(),
        );
    }
    let (host_text, port_text) = split_authority(authority)?;
    let host = parse_host(host_text)?;
    let port = match port_text {
        None => scheme.default_port(),
        Some(port) => parse_port(port)?,
    };
    let path_and_query = normalise_target(tail)?;
    Ok(WebhookUrl {
        scheme,
        host,
        port,
        path_and_query,
    })
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme_syntax(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The host as written: inside square brackets (an IPv6 literal) or not.
#[derive(Clone, Copy)]
enum HostText<'a> {
    Bracketed(&'a str),
    Plain(&'a str),
}

fn split_authority(authority: &str) -> Result<(HostText<'_>, Option<&str>), String> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (literal, after) = inner
            .split_once(']')
            .ok_or_else(|| "the IPv6 literal has no closing ']'".to_owned())?;
        let port = if after.is_empty() {
            None
        } else if let Some(port) = after.strip_prefix(':') {
            Some(port)
        } else {
            return Err(format!(
                "unexpected {after:?} after the IPv6 literal (expected ':port' or nothing)"
            ));
        };
        return Ok((HostText::Bracketed(literal), port));
    }
    if authority.contains(['[', ']']) {
        return Err("square brackets are only allowed around an IPv6 literal host".to_owned());
    }
    match authority.split_once(':') {
        None => Ok((HostText::Plain(authority), None)),
        Some((_, port)) if port.contains(':') => Err(
            "the host has several ':': IPv6 literals must be in square brackets, as in \
             http://[2001:db8::1]/"
                .to_owned(),
        ),
        Some((host, port)) => Ok((HostText::Plain(host), Some(port))),
    }
}

fn parse_host(host: HostText<'_>) -> Result<Host, String> {
    match host {
        HostText::Bracketed(literal) => {
            if literal.is_empty() {
                return Err("the IPv6 literal [] is empty".to_owned());
            }
            if literal.contains('%') {
                return Err(format!(
                    "the IPv6 literal [{literal}] has a zone identifier or percent-encoding; \
                     neither is allowed"
                ));
            }
            literal
                .parse::<Ipv6Addr>()
                .map(|addr| Host::Ip(IpAddr::V6(addr)))
                .map_err(|_| format!("[{literal}] is not a valid IPv6 address"))
        }
        HostText::Plain(name) => parse_plain_host(name),
    }
}

fn parse_plain_host(name: &str) -> Result<Host, String> {
    if name.is_empty() {
        return Err("it has no host".to_owned());
    }
    if !name.is_ascii() {
        return Err(format!(
            "the host {name:?} has non-ASCII characters: internationalised host names are not \
             supported; give the ASCII (punycode, xn--) form"
        ));
    }
    if name.contains('%') {
        return Err(format!(
            "the host {name:?} is percent-encoded: percent-encoded hosts are refused, write \
             the host in plain"
        ));
    }
    let name = name.to_ascii_lowercase();
    if ends_in_number(&name) {
        return canonical_ipv4(&name)
            .map(|addr| Host::Ip(IpAddr::V4(addr)))
            .ok_or_else(|| {
                format!(
                    "the host {name:?} is an ambiguous numeric host: only the canonical \
                     dotted-quad form of an IPv4 address (such as 192.0.2.1) is accepted, not \
                     decimal, octal, hexadecimal or shortened forms"
                )
            });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the host {name:?} contains {c:?}, which is not allowed in a host name"
        ));
    }
    if name.ends_with('.') {
        return Err(format!(
            "the host {name:?} ends with '.': write the name without the trailing dot"
        ));
    }
    if name.len() > 253 {
        return Err(format!(
            "the host name is {} characters long, more than the 253 DNS allows",
            name.len()
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("the host {name:?} has an empty label"));
    }
    if let Some(label) = name.split('.').find(|label| label.len() > 63) {
        return Err(format!(
            "the label {label:?} of the host is longer than the 63 characters DNS allows"
        ));
    }
    Ok(Host::Domain(name))
}

/// Whether a (lowercase) host ends in a number, so that WHATWG URL parsers (browsers, curl,
/// the `url` crate) read it as an IPv4 address: its last label (a trailing dot aside) is
/// all decimal digits, or `0x` followed by hexadecimal digits.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    if let Some(hex) = last.strip_prefix("0x") {
        return hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    !last.is_empty() && last.chars().all(|c| c.is_ascii_digit())
}

/// `a.b.c.d`, four decimal numbers from 0 to 255 without leading zeros; nothing else.
fn canonical_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = host.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        let canonical = !part.is_empty()
            && part.len() <= 3
            && part.chars().all(|c| c.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !canonical {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port after ':' is empty".to_owned());
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("the port {port:?} is not a decimal number"));
    }
    port.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("the port {port} is out of range: it must be from 1 to 65535"))
}

/// The characters WHATWG URL parsers percent-encode in a path (besides controls and space).
const PATH_ENCODED: &[u8] = b"\"<>^`{}";
/// The characters WHATWG URL parsers percent-encode in the query of an http(s) URL.
const QUERY_ENCODED: &[u8] = b"\"<>'";

fn normalise_target(tail: &str) -> Result<String, String> {
    if let Some(c) = tail.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "the path or query has the non-ASCII character {c:?}: percent-encode it"
        ));
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut target = String::with_capacity(tail.len() + 1);
    if path.is_empty() {
        target.push('/');
    }
    percent_encode_into(&mut target, path, PATH_ENCODED);
    if let Some(query) = query {
        target.push('?');
        percent_encode_into(&mut target, query, QUERY_ENCODED);
    }
    Ok(target)
}

fn percent_encode_into(out: &mut String, text: &str, set: &[u8]) {
    for c in text.chars() {
        match u8::try_from(c) {
            Ok(byte) if set.contains(&byte) => {
                out.push('%');
                out.push_str(&format!("{byte:02X}"));
            }
            _ => out.push(c),
        }
    }
}

/// What kind of address an IP address is, for the SSRF guard: only [`AddressClass::Public`]
/// addresses are reachable without an allow-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// A globally routable unicast address.
    Public,
    /// This machine: `127.0.0.0/8`, `::1`.
    Loopback,
    /// A private network (RFC 1918): `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// Link-local: `169.254.0.0/16` (where cloud metadata endpoints such as
    /// `169.254.169.254` live), `fe80::/10`.
    LinkLocal,
    /// "This host" / "this network": `0.0.0.0/8`, `::` (connecting to `0.0.0.0` reaches the
    /// local machine on common systems).
    Unspecified,
    /// Multicast: `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// The limited broadcast address `255.255.255.255`.
    Broadcast,
    /// Reserved for documentation and examples: `192.0.2.0/24`, `198.51.100.0/24`,
    /// `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Shared address space of carrier-grade NAT: `100.64.0.0/10`.
    SharedCgnat,
    /// Reserved or special-purpose, not globally routable: `240.0.0.0/4`, `192.0.0.0/24`,
    /// `198.18.0.0/15` (benchmarking), `192.88.99.0/24`, IPv6 outside `2000::/3`,
    /// `2001::/23` (IETF protocol assignments, Teredo), `100::/64`, `64:ff9b:1::/48`,
    /// `fec0::/10` (deprecated site-local).
    Reserved,
    /// IPv6 unique local addresses (private IPv6): `fc00::/7`.
    UniqueLocal,
}

impl AddressClass {
    /// The class's name: `public`, `loopback`, `private`, `link_local`, `unspecified`,
    /// `multicast`, `broadcast`, `documentation`, `shared_cgnat`, `reserved`,
    /// `unique_local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::SharedCgnat => "shared_cgnat",
            Self::Reserved => "reserved",
            Self::UniqueLocal => "unique_local",
        }
    }

    /// Whether the class is [`AddressClass::Public`].
    pub fn is_public(self) -> bool {
        self == Self::Public
    }

    /// The class in words, after "is".
    fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Loopback => "a loopback address (this machine)",
            Self::Private => "a private-network address",
            Self::LinkLocal => {
                "a link-local address (where cloud metadata endpoints such as 169.254.169.254 \
                 live)"
            }
            Self::Unspecified => "an unspecified ('this host') address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address (reserved for examples)",
            Self::SharedCgnat => "a shared carrier-grade NAT address",
            Self::Reserved => "a reserved, special-purpose address",
            Self::UniqueLocal => "a unique local (private IPv6) address",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IPv4 special-purpose ranges, first match wins (so the broadcast address comes before
/// `240.0.0.0/4`); anything else is public.
const V4_RANGES: &[([u8; 4], u8, AddressClass)] = &[
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::SharedCgnat),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 0, 0, 0], 24, AddressClass::Reserved),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([198, 18, 0, 0], 15, AddressClass::Reserved),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
];

/// IPv6 special-purpose ranges, after `::`, `::1` and the embedded-IPv4 forms; anything
/// else inside `2000::/3` is public, anything outside reserved.
const V6_RANGES: &[(u128, u8, AddressClass)] = &[
    (0, 8, AddressClass::Reserved),
    (0x0064_ff9b_0001 << 80, 48, AddressClass::Reserved),
    (0x0100 << 112, 64, AddressClass::Reserved),
    (0x2001_0db8 << 96, 32, AddressClass::Documentation),
    (0x2001 << 112, 23, AddressClass::Reserved),
    (0x3fff << 112, 20, AddressClass::Documentation),
    (0xfc00 << 112, 7, AddressClass::UniqueLocal),
    (0xfe80 << 112, 10, AddressClass::LinkLocal),
    (0xfec0 << 112, 10, AddressClass::Reserved),
    (0xff00 << 112, 8, AddressClass::Multicast),
];

/// The class of an address.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), NAT64 addresses (`64:ff9b::/96`) and 6to4
/// addresses (`2002::/16`) have the class of the IPv4 address they embed: each reaches, or
/// is translated to, that IPv4 host.
pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(addr) => classify_v4(addr),
        IpAddr::V6(addr) => classify_v6(addr),
    }
}

fn classify_v4(addr: Ipv4Addr) -> AddressClass {
    let bits = u32::from(addr);
    V4_RANGES
        .iter()
        .find(|(base, prefix, _)| v4_prefix_eq(u32::from_be_bytes(*base), bits, *prefix))
        .map_or(AddressClass::Public, |(_, _, class)| *class)
}

fn classify_v6(addr: Ipv6Addr) -> AddressClass {
    if addr.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if addr.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(addr) {
        return classify_v4(v4);
    }
    let bits = u128::from(addr);
    if let Some((_, _, class)) = V6_RANGES
        .iter()
        .find(|(base, prefix, _)| v6_prefix_eq(*base, bits, *prefix))
    {
        return *class;
    }
    if v6_prefix_eq(0x2000 << 112, bits, 3) {
        AddressClass::Public
    } else {
        AddressClass::Reserved
    }
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped `::ffff:0:0/96`, NAT64
/// `64:ff9b::/96` (RFC 6052) or 6to4 `2002::/16` (RFC 3056, bits 16 to 47).
fn embedded_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(addr);
    if let Some(v4) = addr.to_ipv4_mapped() {
        return Some(v4);
    }
    let low32 = || Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if v6_prefix_eq(0x0064_ff9b << 96, bits, 96) {
        return Some(low32());
    }
    if v6_prefix_eq(0x2002 << 112, bits, 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn v4_prefix_eq(base: u32, addr: u32, prefix: u8) -> bool {
    (base ^ addr) & v4_mask(prefix) == 0
}

fn v6_prefix_eq(base: u128, addr: u128, prefix: u8) -> bool {
    (base ^ addr) & v6_mask(prefix) == 0
}

/// An IPv4 or IPv6 network in CIDR form (`10.0.0.0/8`, `::1/128`): an allow-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr` with a `prefix`-bit mask.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidAllowList`] if `prefix` is over 32 (IPv4) or 128 (IPv6), or if
    /// `addr` has bits set beyond the prefix (`10.0.0.1/8`: the error names `10.0.0.0/8`).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, WebhookError> {
        let invalid = |reason: String| WebhookError::InvalidAllowList {
            entry: format!("{addr}/{prefix}"),
            reason,
        };
        let base = match addr {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return Err(invalid(format!(
                        "the prefix /{prefix} is longer than the 32 bits of an IPv4 address"
                    )));
                }
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(prefix)))
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(invalid(format!(
                        "the prefix /{prefix} is longer than the 128 bits of an IPv6 address"
                    )));
                }
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(prefix)))
            }
        };
        if base != addr {
            return Err(invalid(format!(
                "the address has bits set beyond the /{prefix} prefix; the network is \
                 {base}/{prefix}"
            )));
        }
        Ok(Self { addr, prefix })
    }

    /// Parses `address/prefix` (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`,
    /// `::1`: a /32 or /128 network). Surrounding whitespace is ignored; the address must be
    /// a canonical dotted quad or a valid IPv6 address, the prefix a decimal number.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidAllowList`] naming the entry if it is empty, the address or
    /// prefix is malformed, the prefix is too long for the address family, or the address
    /// has host bits set (see [`IpNetwork::new`]).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let entry = text.trim();
        let invalid = |reason: String| WebhookError::InvalidAllowList {
            entry: entry.to_owned(),
            reason,
        };
        if entry.is_empty() {
            return Err(invalid("the entry is empty".to_owned()));
        }
        let (addr_text, prefix_text) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            invalid(format!(
                "{addr_text:?} is not an IPv4 address (dotted quad) or an IPv6 address"
            ))
        })?;
        let prefix = match prefix_text {
            None => match addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(prefix) => {
                let digits = !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_digit());
                if !digits {
                    return Err(invalid(format!(
                        "the prefix {prefix:?} is not a decimal number of bits"
                    )));
                }
                prefix
                    .parse::<u8>()
                    .map_err(|_| invalid(format!("the prefix /{prefix} is longer than 128 bits")))?
            }
        };
        Self::new(addr, prefix).map_err(|error| match error {
            WebhookError::InvalidAllowList { reason, .. } => invalid(reason),
            other => other,
        })
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in the network.
    ///
    /// An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) are the same host,
    /// so each is in a network that contains the other; other embeddings (NAT64, 6to4) are
    /// different hosts and are not.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                v4_prefix_eq(u32::from(net), u32::from(addr), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                v6_prefix_eq(u128::from(net), u128::from(addr), self.prefix)
            }
            (IpAddr::V4(net), IpAddr::V6(addr)) => addr
                .to_ipv4_mapped()
                .is_some_and(|v4| v4_prefix_eq(u32::from(net), u32::from(v4), self.prefix)),
            (IpAddr::V6(net), IpAddr::V4(addr)) => v6_prefix_eq(
                u128::from(net),
                u128::from(addr.to_ipv6_mapped()),
                self.prefix,
            ),
        }
    }
}

impl fmt::Display for IpNetwork {
    /// `address/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNetwork {
    type Err = WebhookError;

    /// Same as [`IpNetwork::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Host names refused outright, by their last label: names of the local machine and of
/// private networks, which resolve to internal addresses by design (`metadata.google.internal`,
/// `*.cluster.local`, `router.home`, ...). `.arpa` names reverse-lookup zones, not hosts.
const INTERNAL_TLDS: &[&str] = &[
    "localhost",
    "localdomain",
    "local",
    "internal",
    "intranet",
    "lan",
    "home",
    "corp",
    "private",
    "arpa",
];

/// The SSRF guard: which webhook URLs and addresses deliveries may go to.
///
/// Public addresses are always allowed; any other address (loopback, private, link-local,
/// ...) only if a network of the allow-list contains it. The default guard allows nothing
/// but public addresses. Host names cannot be allow-listed: an internal name is refused
/// whatever the list, and other names are judged by the addresses they resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlGuard {
    allow: Vec<IpNetwork>,
}

impl UrlGuard {
    /// A guard that also allows the addresses of `allow` (the server's configuration; tests
    /// pass `127.0.0.1/32`).
    pub fn new(allow: Vec<IpNetwork>) -> Self {
        Self { allow }
    }

    /// The allow-listed networks.
    pub fn allow_list(&self) -> &[IpNetwork] {
        &self.allow
    }

    /// Whether a delivery may connect to `addr`: it is public or allow-listed.
    pub fn is_allowed(&self, addr: IpAddr) -> bool {
        self.refusal(addr).is_none()
    }

    /// Checks a webhook URL at registration, and returns it parsed.
    ///
    /// An IP-literal host is checked as [`UrlGuard::check_addr`] does. A host name is
    /// refused if it names the local machine or an internal network (`localhost`,
    /// `*.localhost`, `*.local`, `*.localdomain`, `*.internal` such as
    /// `metadata.google.internal`, `*.intranet`, `*.lan`, `*.home`, `*.corp`, `*.private`,
    /// `*.arpa`) or has a single label (`metadata`, `redis`: completed from the server's DNS
    /// search domains). Other names pass: the runtime checks the addresses they resolve to
    /// with [`UrlGuard::check_addr`] at connect time.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidUrl`] if the URL does not parse (see [`WebhookUrl::parse`]);
    /// [`WebhookError::UnsafeUrl`] naming the URL (and the address and its class, for an IP
    /// literal) if the destination is refused.
    pub fn check_url(&self, text: &str) -> Result<WebhookUrl, WebhookError> {
        let url = WebhookUrl::parse(text)?;
        match url.host() {
            Host::Ip(addr) => {
                if let Some((class, reason)) = self.refusal(*addr) {
                    return Err(WebhookError::UnsafeUrl {
                        url: Some(text.to_owned()),
                        address: Some(*addr),
                        class: Some(class),
                        reason,
                    });
                }
            }
            Host::Domain(name) => {
                if let Some(reason) = internal_name(name) {
                    return Err(WebhookError::UnsafeUrl {
                        url: Some(text.to_owned()),
                        address: None,
                        class: None,
                        reason,
                    });
                }
            }
        }
        Ok(url)
    }

    /// Checks an address a delivery is about to connect to (each address a host name
    /// resolved to, or an IP-literal host), at connect time.
    ///
    /// # Errors
    ///
    /// [`WebhookError::UnsafeUrl`] (with no URL) naming the address and its class, if the
    /// address is not public and no network of the allow-list contains it.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), WebhookError> {
        match self.refusal(addr) {
            None => Ok(()),
            Some((class, reason)) => Err(WebhookError::UnsafeUrl {
                url: None,
                address: Some(addr),
                class: Some(class),
                reason,
            }),
        }
    }

    /// Why `addr` is refused, if it is.
    fn refusal(&self, addr: IpAddr) -> Option<(AddressClass, String)> {
        let class = classify(addr);
        if class.is_public() || self.allow.iter().any(|net| net.contains(addr)) {
            return None;
        }
        let embedded = match addr {
            IpAddr::V6(v6) => embedded_v4(v6)
                .map(|v4| format!(" (it stands for the IPv4 address {v4})"))
                .unwrap_or_default(),
            IpAddr::V4(_) => String::new(),
        };
        Some((
            class,
            format!(
                "{addr} is {}{embedded}, and the server's webhook allow-list does not contain \
                 it: only public addresses are allowed",
                class.describe()
            ),
        ))
    }
}

/// Why a host name is refused outright, if it is.
fn internal_name(name: &str) -> Option<String> {
    let last = name.rsplit('.').next().unwrap_or(name);
    if last == "localhost" {
        return Some(format!(
            "the host {name:?} names this machine; host names cannot be allow-listed (put an \
             allow-listed address in the URL instead)"
        ));
    }
    if INTERNAL_TLDS.contains(&last) {
        return Some(format!(
            "the host {name:?} is under .{last}, which names internal hosts; host names \
             cannot be allow-listed (put an allow-listed address in the URL instead)"
        ));
    }
    if !name.contains('.') {
        return Some(format!(
            "the host {name:?} is a single label, which the server's DNS search domains would \
             complete to an internal name; use a fully qualified host name"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn net(text: &str) -> IpNetwork {
        IpNetwork::parse(text).expect("test network")
    }

    fn loopback_guard() -> UrlGuard {
        UrlGuard::new(vec![net("127.0.0.1/32")])
    }

    /// What a URL check is expected to give.
    #[derive(Debug)]
    enum Expect<'a> {
        /// Accepted, with this normalised form.
        Ok(&'a str),
        /// `InvalidUrl` whose reason contains this text.
        Invalid(&'static str),
        /// `UnsafeUrl` for an address of this class.
        UnsafeAddr(AddressClass),
        /// `UnsafeUrl` for a host name, the reason containing this text.
        UnsafeName(&'static str),
    }

    fn check(guard: &UrlGuard, url: &str, expect: &Expect<'_>) {
        let got = guard.check_url(url);
        match (expect, &got) {
            (Expect::Ok(normal), Ok(parsed)) => {
                assert_eq!(parsed.to_string(), *normal, "{url}");
                // Normalising is idempotent.
                assert_eq!(
                    WebhookUrl::parse(&parsed.to_string()).as_ref(),
                    Ok(parsed),
                    "{url}"
                );
            }
            (Expect::Invalid(part), Err(WebhookError::InvalidUrl { reason, .. })) => {
                assert!(reason.contains(part), "{url}: {reason}");
            }
            (
                Expect::UnsafeAddr(class),
                Err(WebhookError::UnsafeUrl {
                    url: Some(named),
                    address: Some(_),
                    class: Some(got_class),
                    ..
                }),
            ) => {
                assert_eq!(got_class, class, "{url}");
                assert_eq!(named, url);
            }
            (
                Expect::UnsafeName(part),
                Err(WebhookError::UnsafeUrl {
                    url: Some(_),
                    address: None,
                    class: None,
                    reason,
                }),
            ) => assert!(reason.contains(part), "{url}: {reason}"),
            _ => panic!("{url}: expected {expect:?}, got {got:?}"),
        }
    }

    #[test]
    fn url_table() {
        use AddressClass as C;
        use Expect::{Invalid, Ok as Accept, UnsafeAddr, UnsafeName};
        let long = format!("https://example.com/{}", "a".repeat(3000));
        let max = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        let cases: Vec<(&str, Expect<'_>)> = vec![
            // Accepted, normalised.
            ("http://example.com/hook", Accept("http://example.com/hook")),
            ("http://example.com", Accept("http://example.com/")),
            (
                "HTTPS://Example.COM:443/A?b=C",
                Accept("https://example.com/A?b=C"),
            ),
            (
                "https://example.com:8443",
                Accept("https://example.com:8443/"),
            ),
            ("http://example.com:080/", Accept("http://example.com/")),
            ("http://example.com?x=1", Accept("http://example.com/?x=1")),
            (
                "http://example.com/p?q=@127.0.0.1",
                Accept("http://example.com/p?q=@127.0.0.1"),
            ),
            (
                "https://hooks.xn--bcher-kva.example/x",
                Accept("https://hooks.xn--bcher-kva.example/x"),
            ),
            (
                "https://_dmarc.example.com/",
                Accept("https://_dmarc.example.com/"),
            ),
            ("http://8.8.8.8/", Accept("http://8.8.8.8/")),
            (
                "http://[2606:4700:4700::1111]:8080/",
                Accept("http://[2606:4700:4700::1111]:8080/"),
            ),
            (
                "http://[2606:4700:4700:0:0:0:0:1111]/",
                Accept("http://[2606:4700:4700::1111]/"),
            ),
            (
                "http://[::ffff:8.8.8.8]/",
                Accept("http://[::ffff:8.8.8.8]/"),
            ),
            (
                "http://example.com/a\"b<c>?d'e\"",
                Accept("http://example.com/a%22b%3Cc%3E?d%27e%22"),
            ),
            (
                "http://example.com/{x}^`",
                Accept("http://example.com/%7Bx%7D%5E%60"),
            ),
            (
                "http://127.0.0.1.nip.io/",
                Accept("http://127.0.0.1.nip.io/"),
            ),
            (
                "http://0x7f.example.com/",
                Accept("http://0x7f.example.com/"),
            ),
            (max.as_str(), Accept(max.as_str())),
            // Refused addresses.
            ("https://[2001:db8::1]/", UnsafeAddr(C::Documentation)),
            (
                "http://169.254.169.254/latest/meta-data",
                UnsafeAddr(C::LinkLocal),
            ),
            ("http://127.0.0.2:8080/x", UnsafeAddr(C::Loopback)),
            ("http://[::ffff:127.0.0.1]/", UnsafeAddr(C::Loopback)),
            ("http://[::ffff:7f00:1]/", UnsafeAddr(C::Loopback)),
            ("http://[64:ff9b::a9fe:a9fe]/", UnsafeAddr(C::LinkLocal)),
            ("http://[2002:c0a8:0101::1]/", UnsafeAddr(C::Private)),
            ("http://[::1]/", UnsafeAddr(C::Loopback)),
            ("http://[::]/", UnsafeAddr(C::Unspecified)),
            ("http://[fe80::1]/", UnsafeAddr(C::LinkLocal)),
            ("http://[fd00::1]/", UnsafeAddr(C::UniqueLocal)),
            ("http://0.0.0.0/", UnsafeAddr(C::Unspecified)),
            ("http://10.1.2.3/", UnsafeAddr(C::Private)),
            ("http://172.31.255.255/", UnsafeAddr(C::Private)),
            ("http://192.168.1.1/", UnsafeAddr(C::Private)),
            ("http://100.100.100.200/", UnsafeAddr(C::SharedCgnat)),
            ("http://224.0.0.1/", UnsafeAddr(C::Multicast)),
            ("http://255.255.255.255/", UnsafeAddr(C::Broadcast)),
            ("http://240.0.0.1/", UnsafeAddr(C::Reserved)),
            ("http://203.0.113.9/", UnsafeAddr(C::Documentation)),
            // Refused names.
            ("http://localhost:8080/", UnsafeName("names this machine")),
            ("http://LOCALHOST/", UnsafeName("names this machine")),
            ("http://api.localhost/", UnsafeName("names this machine")),
            ("http://printer.local/", UnsafeName(".local")),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                UnsafeName(".internal"),
            ),
            (
                "http://kubernetes.default.svc.cluster.local/",
                UnsafeName(".local"),
            ),
            ("http://metadata/", UnsafeName("single label")),
            ("http://1.0.0.127.in-addr.arpa/", UnsafeName(".arpa")),
            // Ambiguous numeric hosts.
            ("http://0x7f.0.0.1/", Invalid("ambiguous numeric host")),
            ("http://2130706433/", Invalid("ambiguous numeric host")),
            ("http://0x7f000001/", Invalid("ambiguous numeric host")),
            ("http://0177.0.0.1/", Invalid("ambiguous numeric host")),
            ("http://127.1/", Invalid("ambiguous numeric host")),
            ("http://127.0.0.1./", Invalid("ambiguous numeric host")),
            ("http://127.0.0.1.2/", Invalid("ambiguous numeric host")),
            ("http://256.0.0.1/", Invalid("ambiguous numeric host")),
            ("http://example.0x/", Invalid("ambiguous numeric host")),
            ("http://example.42/", Invalid("ambiguous numeric host")),
            // Malformed or refused forms.
            ("http://user:pw@example.com/", Invalid("credentials")),
            ("http://user@example.com/", Invalid("credentials")),
            ("http://example.com@127.0.0.1/", Invalid("credentials")),
            ("ftp://x/", Invalid("scheme \"ftp\"")),
            ("file:///etc/passwd", Invalid("scheme \"file\"")),
            ("gopher://example.com/", Invalid("scheme")),
            ("example.com/hook", Invalid("does not start with http")),
            ("http:example.com", Invalid("does not start with http")),
            ("http:/example.com", Invalid("does not start with http")),
            ("//example.com/", Invalid("does not start with http")),
            ("", Invalid("empty")),
            ("http://", Invalid("no host")),
            ("http:///path", Invalid("no host")),
            ("http://:80/", Invalid("no host")),
            ("http://?x", Invalid("no host")),
            ("http://example.com:0/", Invalid("out of range")),
            ("http://example.com:65536/", Invalid("out of range")),
            (
                "http://example.com:99999999999999999999/",
                Invalid("out of range"),
            ),
            ("http://example.com:/", Invalid("port after ':' is empty")),
            ("http://example.com:+80/", Invalid("not a decimal number")),
            ("http://example.com:8o/", Invalid("not a decimal number")),
            ("http://exa mple.com/", Invalid("whitespace")),
            (" http://example.com/", Invalid("whitespace")),
            ("http://example.com/ ", Invalid("whitespace")),
            (
                "http://example.com/\t",
                Invalid("control character (U+0009)"),
            ),
            ("http://example.com/\u{0}", Invalid("control character")),
            ("http://example.com/\u{a0}", Invalid("whitespace")),
            (
                long.as_str(),
                Invalid("3020 bytes long, more than the 2048 allowed"),
            ),
            ("http://example.com/#frag", Invalid("fragment")),
            ("http://example.com#", Invalid("fragment")),
            ("http://example.com\\@127.0.0.1/", Invalid("backslash")),
            ("http://example.com/a\\b", Invalid("backslash")),
            ("http://%31%32%37.0.0.1/", Invalid("percent-encoded")),
            ("http://exa%6dple.com/", Invalid("percent-encoded")),
            ("http://bücher.example/", Invalid("non-ASCII")),
            ("http://１２７.０.０.１/", Invalid("non-ASCII")),
            ("http://example.com/é", Invalid("non-ASCII character")),
            ("http://2001:db8::1/", Invalid("square brackets")),
            ("http://[2001:db8::1/", Invalid("no closing ']'")),
            ("http://[2001:db8::1]x/", Invalid("after the IPv6 literal")),
            ("http://[]/", Invalid("is empty")),
            ("http://[fe80::1%25eth0]/", Invalid("zone identifier")),
            ("http://[127.0.0.1]/", Invalid("not a valid IPv6 address")),
            ("http://[::1]:0/", Invalid("out of range")),
            ("http://exam]ple.com/", Invalid("square brackets")),
            ("http://example.com./", Invalid("trailing dot")),
            ("http://example..com/", Invalid("empty label")),
            ("http://.example.com/", Invalid("empty label")),
            ("http://ex!ample.com/", Invalid("'!'")),
            ("http://ex,ample.com/", Invalid("','")),
        ];
        let guard = UrlGuard::default();
        for (url, expect) in &cases {
            check(&guard, url, expect);
        }
    }

    #[test]
    fn long_labels_and_names_are_refused() {
        let label = "a".repeat(64);
        let name = format!("{}.com", "a.".repeat(125));
        let guard = UrlGuard::default();
        check(
            &guard,
            &format!("http://{label}.com/"),
            &Expect::Invalid("63 characters"),
        );
        check(&guard, &format!("http://{name}/"), &Expect::Invalid("253"));
        let ok = format!("http://{}.com/", "a".repeat(63));
        check(&guard, &ok, &Expect::Ok(&ok));
    }

    #[test]
    fn loopback_is_refused_unless_allow_listed() {
        let url = "http://127.0.0.1:8080/x";
        check(
            &UrlGuard::default(),
            url,
            &Expect::UnsafeAddr(AddressClass::Loopback),
        );
        let guard = loopback_guard();
        check(&guard, url, &Expect::Ok("http://127.0.0.1:8080/x"));
        // Only the listed address: the rest of 127/8 and ::1 stay refused.
        check(
            &guard,
            "http://127.0.0.2/",
            &Expect::UnsafeAddr(AddressClass::Loopback),
        );
        check(
            &guard,
            "http://[::1]/",
            &Expect::UnsafeAddr(AddressClass::Loopback),
        );
        // The IPv4-mapped form of an allowed address is the same host.
        check(
            &guard,
            "http://[::ffff:127.0.0.1]/",
            &Expect::Ok("http://[::ffff:127.0.0.1]/"),
        );
        // Names are never allow-listed.
        check(
            &guard,
            "http://localhost:8080/",
            &Expect::UnsafeName("names this machine"),
        );
        assert_eq!(guard.check_addr(ip("127.0.0.1")), Ok(()));
        assert!(guard.is_allowed(ip("127.0.0.1")));
        assert!(!guard.is_allowed(ip("10.0.0.1")));
        assert_eq!(guard.allow_list(), &[net("127.0.0.1/32")]);
    }

    #[test]
    fn check_addr_names_the_address_and_its_class() {
        let guard = UrlGuard::default();
        assert_eq!(guard.check_addr(ip("93.184.216.34")), Ok(()));
        assert_eq!(guard.check_addr(ip("2606:4700::1111")), Ok(()));
        let error = guard
            .check_addr(ip("169.254.169.254"))
            .expect_err("metadata address");
        match &error {
            WebhookError::UnsafeUrl {
                url: None,
                address: Some(address),
                class: Some(AddressClass::LinkLocal),
                reason,
            } => {
                assert_eq!(*address, ip("169.254.169.254"));
                assert!(
                    reason.contains("169.254.169.254 is a link-local address"),
                    "{reason}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("refusing webhook destination: 169.254.169.254 is"),
            "{error}"
        );
        let error = guard.check_addr(ip("::ffff:10.0.0.1")).expect_err("mapped");
        assert!(
            error
                .to_string()
                .contains("stands for the IPv4 address 10.0.0.1"),
            "{error}"
        );
        let error = guard
            .check_url("http://[::1]:9/x")
            .expect_err("loopback literal");
        assert!(
            error
                .to_string()
                .starts_with("refusing webhook URL \"http://[::1]:9/x\": ::1 is a loopback"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_url() {
        let error = WebhookUrl::parse("ftp://x/").expect_err("ftp");
        assert_eq!(
            error.to_string(),
            "invalid webhook URL \"ftp://x/\": the scheme \"ftp\" is not allowed: webhooks \
             are delivered over http or https only"
        );
        let long = format!("https://example.com/{}", "é".repeat(1500));
        match WebhookUrl::parse(&long) {
            Err(WebhookError::InvalidUrl { url, reason }) => {
                assert!(url.ends_with("... (3020 bytes)"), "{url}");
                assert_eq!(url.chars().count(), SHOWN_CHARS + "... (3020 bytes)".len());
                assert!(reason.contains("3020 bytes long"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn getters() {
        let url = WebhookUrl::parse("HTTPS://[2606:4700::1]:8443?a=b").expect("url");
        assert_eq!(url.scheme(), Scheme::Https);
        assert_eq!(url.host(), &Host::Ip(ip("2606:4700::1")));
        assert_eq!(url.host().to_string(), "[2606:4700::1]");
        assert_eq!(url.port(), 8443);
        assert_eq!(url.path_and_query(), "/?a=b");
        let url: WebhookUrl = "http://Hooks.Example.com/x".parse().expect("url");
        assert_eq!(url.scheme(), Scheme::Http);
        assert_eq!(url.scheme().to_string(), "http");
        assert_eq!(url.host(), &Host::Domain("hooks.example.com".to_owned()));
        assert_eq!(url.port(), 80);
        assert_eq!(url.path_and_query(), "/x");
        assert_eq!(Scheme::Https.default_port(), 443);
    }

    #[test]
    fn classify_every_class() {
        use AddressClass as C;
        let cases = [
            ("8.8.8.8", C::Public),
            ("1.1.1.1", C::Public),
            ("93.184.216.34", C::Public),
            ("172.15.255.255", C::Public),
            ("172.32.0.0", C::Public),
            ("100.63.255.255", C::Public),
            ("100.128.0.0", C::Public),
            ("169.253.255.255", C::Public),
            ("192.0.1.255", C::Public),
            ("223.255.255.255", C::Public),
            ("0.0.0.0", C::Unspecified),
            ("0.1.2.3", C::Unspecified),
            ("127.0.0.1", C::Loopback),
            ("127.255.255.254", C::Loopback),
            ("10.0.0.0", C::Private),
            ("10.255.255.255", C::Private),
            ("172.16.0.1", C::Private),
            ("172.31.0.1", C::Private),
            ("192.168.0.1", C::Private),
            ("169.254.0.1", C::LinkLocal),
            ("169.254.169.254", C::LinkLocal),
            ("100.64.0.1", C::SharedCgnat),
            ("100.127.255.255", C::SharedCgnat),
            ("192.0.2.1", C::Documentation),
            ("198.51.100.1", C::Documentation),
            ("203.0.113.1", C::Documentation),
            ("224.0.0.1", C::Multicast),
            ("239.255.255.250", C::Multicast),
            ("255.255.255.255", C::Broadcast),
            ("240.0.0.1", C::Reserved),
            ("255.255.255.254", C::Reserved),
            ("192.0.0.8", C::Reserved),
            ("192.88.99.1", C::Reserved),
            ("198.18.0.1", C::Reserved),
            ("198.19.255.255", C::Reserved),
            // IPv6.
            ("2606:4700:4700::1111", C::Public),
            ("2001:4860:4860::8888", C::Public),
            ("2001:200::1", C::Public),
            ("::", C::Unspecified),
            ("::1", C::Loopback),
            ("fe80::1", C::LinkLocal),
            ("febf:ffff::1", C::LinkLocal),
            ("fc00::1", C::UniqueLocal),
            ("fdff:ffff::1", C::UniqueLocal),
            ("ff02::1", C::Multicast),
            ("2001:db8::1", C::Documentation),
            ("3fff::1", C::Documentation),
            ("2001::1", C::Reserved),
            ("2001:1ff::1", C::Reserved),
            ("100::1", C::Reserved),
            ("64:ff9b:1::1", C::Reserved),
            ("fec0::1", C::Reserved),
            ("::2", C::Reserved),
            ("::127.0.0.1", C::Reserved),
            ("4000::1", C::Reserved),
            ("5f00::1", C::Reserved),
            ("::ffff:0:0", C::Unspecified),
            ("::ffff:127.0.0.1", C::Loopback),
            ("::ffff:10.0.0.1", C::Private),
            ("::ffff:169.254.169.254", C::LinkLocal),
            ("::ffff:8.8.8.8", C::Public),
            ("64:ff9b::7f00:1", C::Loopback),
            ("64:ff9b::a00:1", C::Private),
            ("64:ff9b::808:808", C::Public),
            ("2002:7f00:1::1", C::Loopback),
            ("2002:a9fe:a9fe::", C::LinkLocal),
            ("2002:808:808::1", C::Public),
        ];
        for (text, class) in cases {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
        assert_eq!(AddressClass::SharedCgnat.to_string(), "shared_cgnat");
        assert_eq!(AddressClass::LinkLocal.as_str(), "link_local");
        assert!(AddressClass::Public.is_public());
        assert!(!AddressClass::Private.is_public());
    }

    #[test]
    fn network_parsing() {
        let cases = [
            ("127.0.0.1/32", "127.0.0.1/32"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            (" 192.168.0.0/16 ", "192.168.0.0/16"),
            ("::1/128", "::1/128"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("FD00:0::/8", "fd00::/8"),
            ("::/0", "::/0"),
            ("10.0.0.0/08", "10.0.0.0/8"),
        ];
        for (text, shown) in cases {
            let parsed = IpNetwork::parse(text).expect(text);
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(shown.parse::<IpNetwork>(), Ok(parsed));
        }
        let network = net("10.0.0.0/8");
        assert_eq!(network.addr(), ip("10.0.0.0"));
        assert_eq!(network.prefix(), 8);
        let refused = [
            ("", "empty"),
            ("   ", "empty"),
            ("10.0.0.0/33", "longer than the 32 bits"),
            ("::/129", "longer than the 128 bits"),
            ("::/256", "longer than 128 bits"),
            ("10.0.0.0/", "not a decimal number"),
            ("10.0.0.0/-1", "not a decimal number"),
            ("10.0.0.0/+8", "not a decimal number"),
            ("10.0.0.0/8/8", "not a decimal number"),
            ("10.0.0.0/ 8", "not a decimal number"),
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("fd00::1/8", "the network is fd00::/8"),
            ("10.0.0/8", "not an IPv4 address"),
            ("010.0.0.0/8", "not an IPv4 address"),
            ("127.1", "not an IPv4 address"),
            ("2130706433", "not an IPv4 address"),
            ("localhost", "not an IPv4 address"),
            ("[::1]/128", "not an IPv4 address"),
            ("fe80::1%eth0/128", "not an IPv4 address"),
        ];
        for (text, part) in refused {
            match IpNetwork::parse(text) {
                Err(WebhookError::InvalidAllowList { entry, reason }) => {
                    assert_eq!(entry, text.trim());
                    assert!(reason.contains(part), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: unexpected {other:?}"),
            }
        }
        assert!(IpNetwork::new(ip("10.0.0.0"), 33).is_err());
        assert_eq!(
            IpNetwork::new(ip("10.0.0.0"), 8).map(|n| n.to_string()),
            Ok("10.0.0.0/8".to_owned())
        );
    }

    #[test]
    fn network_containment() {
        let v4 = net("10.0.0.0/8");
        assert!(v4.contains(ip("10.0.0.0")));
        assert!(v4.contains(ip("10.255.255.255")));
        assert!(!v4.contains(ip("11.0.0.0")));
        assert!(!v4.contains(ip("9.255.255.255")));
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
        assert!(!v4.contains(ip("64:ff9b::a01:203")));
        assert!(!v4.contains(ip("::10.1.2.3")));
        let host = net("127.0.0.1");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert!(!host.contains(ip("::1")));
        let all_v4 = net("0.0.0.0/0");
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("fe80::1")));
        let odd = net("172.16.0.0/12");
        assert!(odd.contains(ip("172.31.255.255")));
        assert!(!odd.contains(ip("172.32.0.0")));
        let v6 = net("fd00::/8");
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fc00::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let mapped = net("::ffff:127.0.0.1/128");
        assert!(mapped.contains(ip("127.0.0.1")));
        let v6_host = net("::1/128");
        assert!(v6_host.contains(ip("::1")));
        assert!(!v6_host.contains(ip("::2")));
        assert!(!v6_host.contains(ip("127.0.0.1")));
        let all_v6 = net("::/0");
        assert!(all_v6.contains(ip("2001:db8::1")));
        let odd_v6 = net("2001:db8:8000::/33");
        assert!(odd_v6.contains(ip("2001:db8:ffff::1")));
        assert!(!odd_v6.contains(ip("2001:db8:7fff::1")));
    }

    /// An address inside a network, from the network and random host bits.
    fn inside(network: IpNetwork, host_bits: u128) -> IpAddr {
        match network.addr() {
            IpAddr::V4(base) => {
                let host = (host_bits as u32) & !v4_mask(network.prefix());
                IpAddr::V4(Ipv4Addr::from(u32::from(base) | host))
            }
            IpAddr::V6(base) => IpAddr::V6(Ipv6Addr::from(
                u128::from(base) | (host_bits & !v6_mask(network.prefix())),
            )),
        }
    }

    fn any_network() -> impl Strategy<Value = IpNetwork> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| {
                IpNetwork::new(IpAddr::V4(Ipv4Addr::from(bits & v4_mask(prefix))), prefix)
                    .expect("masked v4 network")
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(bits, prefix)| {
                IpNetwork::new(IpAddr::V6(Ipv6Addr::from(bits & v6_mask(prefix))), prefix)
                    .expect("masked v6 network")
            }),
        ]
    }

    /// A private address: RFC 1918 or IPv6 unique local.
    fn private_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (b & 0x00ff_ffff)))),
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(0xac10_0000 | (b & 0x000f_ffff)))),
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | (b & 0x0000_ffff)))),
            any::<u128>()
                .prop_map(|b| IpAddr::V6(Ipv6Addr::from((0xfc00 << 112) | (b & !v6_mask(7))))),
        ]
    }

    proptest! {
        #[test]
        fn allowed_networks_pass(
            networks in proptest::collection::vec(any_network(), 1..4),
            pick in any::<prop::sample::Index>(),
            host_bits in any::<u128>(),
        ) {
            let chosen = networks[pick.index(networks.len())];
            let addr = inside(chosen, host_bits);
            prop_assert!(chosen.contains(addr));
            let guard = UrlGuard::new(networks);
            prop_assert_eq!(guard.check_addr(addr), Ok(()));
        }

        #[test]
        fn private_addresses_outside_the_list_fail(
            networks in proptest::collection::vec(any_network(), 0..4),
            addr in private_addr(),
        ) {
            prop_assume!(networks.iter().all(|n| !n.contains(addr)));
            let expected = if addr.is_ipv4() { AddressClass::Private } else { AddressClass::UniqueLocal };
            let guard = UrlGuard::new(networks);
            match guard.check_addr(addr) {
                Err(WebhookError::UnsafeUrl { url: None, address: Some(got), class: Some(class), .. }) => {
                    prop_assert_eq!(got, addr);
                    prop_assert_eq!(class, expected);
                }
                other => prop_assert!(false, "{addr}: unexpected {other:?}"),
            }
        }

        #[test]
        fn ip_literal_urls_agree_with_classify(v4 in any::<u32>(), v6 in any::<u128>(), port in 1u16..=u16::MAX) {
            let guard = UrlGuard::default();
            for addr in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
                let host = Host::Ip(addr);
                let text = format!("https://{host}:{port}/p");
                let result = guard.check_url(&text);
                prop_assert_eq!(result.is_ok(), classify(addr).is_public(), "{}", text);
                let parsed = WebhookUrl::parse(&text).expect("literal URL");
                prop_assert_eq!(parsed.host(), &host);
                prop_assert_eq!(parsed.port(), port);
                prop_assert_eq!(guard.check_addr(addr).is_ok(), classify(addr).is_public());
            }
        }

        #[test]
        fn parsing_never_panics_and_normalising_is_idempotent(
            text in prop_oneof![
                "(https?|HTTP|ftp)?(:|://)?[a-zA-Z0-9.:@\\[\\]%/?#\\\\ _~'\"<>{}^-]{0,40}",
                "(https?|HTTPS?)://[a-zA-Z0-9_-]{1,12}(\\.[a-zA-Z0-9-]{1,8}){0,3}(:[0-9]{1,6})?([/?][!-~]{0,30})?",
                "https?://\\[[0-9a-fA-F:.]{2,30}\\](:[0-9]{1,5})?(/[!-~]{0,10})?",
            ],
        ) {
            if let Ok(url) = WebhookUrl::parse(&text) {
                let normal = url.to_string();
                prop_assert_eq!(WebhookUrl::parse(&normal), Ok(url));
                prop_assert_eq!(WebhookUrl::parse(&normal).map(|u| u.to_string()), Ok(normal));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = UrlGuard::default().check_url(&text);
            let _ = IpNetwork::parse(&text);
        }
    }
}
