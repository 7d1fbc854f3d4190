//! `Rfc2136Dns`: the real [`DnsProvider`], sending TSIG-signed RFC 2136 dynamic updates to the
//! zone's primary server over UDP (hickory-net), and reading records back with plain queries.
//!
//! A switch is one UPDATE message that deletes the record's RRset and adds the new value with
//! the record's TTL, which the server applies atomically, so a resolver never sees the name
//! without an answer. Setting the value a record already has is a no-op for the server, which
//! makes the switch idempotent as the trait requires. The update is signed here (hickory-proto's
//! TSIG signer) and sent over hickory-net's UDP client; the server's answer must carry its valid
//! TSIG signature and the NOERROR code. A server that rejects our signature answers NOTAUTH
//! with a TSIG error (BADSIG, BADKEY, BADTIME) and an empty MAC, which is reported as such;
//! anything else is an error naming the server, the record and the code.

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, OpCode, Query, ResponseCode, UpdateMessage,
};
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::rdata::{A, AAAA, CNAME};
use hickory_net::proto::rr::{
    DNSClass, Name, RData, Record, RecordType as WireType, TSigVerifier, TSigner,
};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use omnicloud_core::failover::{DnsProvider, DnsRecord, RecordType};

/// How far the server's clock may be from ours, in seconds (RFC 8945 recommends 300).
const TSIG_FUDGE_S: u16 = 300;

/// Why an `Rfc2136Dns` could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum DnsConfigError {
    /// A setting is malformed.
    #[error("invalid RFC 2136 setting {field}: {reason}")]
    Invalid {
        /// The setting (`server`, `zone`, `key_name`, `key_secret`, `algorithm`, `timeout`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A DNS provider that updates an authoritative server with TSIG-signed RFC 2136 messages.
pub struct Rfc2136Dns {
    server: SocketAddr,
    zone: Name,
    signer: TSigner,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Rfc2136Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Rfc2136Dns")
            .field("server", &self.server)
            .field("zone", &self.zone.to_string())
            .field("key_name", &self.signer.signer_name().to_string())
            .finish_non_exhaustive()
    }
}

impl Rfc2136Dns {
    /// A client for `zone` on `server:port`, signing with the TSIG key `key_name` whose secret
    /// is `key_secret` (base64, as in a `knot` or BIND key file) under `algorithm`
    /// (`hmac-sha256`, `hmac-sha384` or `hmac-sha512`). Each exchange waits at most `timeout`.
    pub fn new(
        server: &str,
        port: u16,
        zone: &str,
        key_name: &str,
        key_secret: &str,
        algorithm: &str,
        timeout: Duration,
    ) -> Result<Self, DnsConfigError> {
        let invalid = |field, reason: String| DnsConfigError::Invalid { field, reason };
        let server = (server, port)
            .to_socket_addrs()
            .map_err(|e| invalid("server", format!("{server}:{port}: {e}")))?
            .next()
            .ok_or_else(|| invalid("server", format!("{server}:{port} resolves to nothing")))?;
        if port == 0 {
            return Err(invalid("server", "port must be 1–65535, not 0".to_owned()));
        }
        let zone = absolute_name(zone).map_err(|e| invalid("zone", e))?;
        let key = absolute_name(key_name).map_err(|e| invalid("key_name", e))?;
        let secret = decode_base64(key_secret.trim())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("key_secret", "must be non-empty base64".to_owned()))?;
        let algorithm = match algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(invalid(
                    "algorithm",
                    format!("{other:?} is not one of hmac-sha256, hmac-sha384, hmac-sha512"),
                ));
            }
        };
        let signer = TSigner::new(secret, algorithm, key, TSIG_FUDGE_S)
            .map_err(|e| invalid("algorithm", e.to_string()))?;
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(invalid(
                "timeout",
                format!("{timeout:?} is outside (0 s, 60 s]"),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| invalid("server", format!("cannot start the I/O runtime: {e}")))?;
        Ok(Self {
            server,
            zone,
            signer,
            timeout,
            runtime,
        })
    }

    /// The zone this client updates.
    pub fn zone(&self) -> String {
        self.zone.to_string()
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Asks the server what `name` answers for `rtype`: each value with its TTL (empty if the
    /// name or the type does not exist). A plain query, not signed.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<(String, u32)>, String> {
        let name = absolute_name(name)?;
        let mut query = Query::query(name, wire_type(rtype));
        query.set_query_class(DNSClass::IN);
        let request = DnsRequest::from_query(query, DnsRequestOptions::default());
        let response = match self.exchange(request, None) {
            Err(Refusal::Code(ResponseCode::NXDomain)) => return Ok(Vec::new()),
            other => other.map_err(|r| r.to_string())?,
        };
        Ok(response
            .answers
            .iter()
            .filter_map(|r| rdata_text(&r.data).map(|v| (v, r.ttl)))
            .collect())
    }

    /// Signs `message` with the TSIG key, sends it, and checks the answer's signature and code.
    fn exchange_signed(&self, mut message: Message) -> Result<Message, Refusal> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| Refusal::Other(format!("cannot sign the update: {e}")))?;
        self.exchange(DnsRequest::from(message), verifier)
    }

    /// Sends `request` and waits for the first answer. With a `verifier` (a signed request)
    /// the answer must carry the server's valid signature; a server that refused our signature
    /// (TSIG error BADSIG, BADKEY, BADTIME) says so. The answer's code must be NOERROR.
    fn exchange(
        &self,
        request: DnsRequest,
        verifier: Option<TSigVerifier>,
    ) -> Result<Message, Refusal> {
        let server = self.server;
        let timeout = self.timeout;
        let (message, buffer) = self.runtime.block_on(async move {
            let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
                .with_timeout(Some(timeout))
                .build();
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            let background = tokio::spawn(background);
            let answer = tokio::time::timeout(timeout, client.send(request).first_answer()).await;
            background.abort();
            answer
                .map_err(|_| Refusal::Other(format!("no answer from {server} within {timeout:?}")))?
                .map(|r| r.into_parts())
                .map_err(|e| Refusal::Other(format!("DNS exchange with {server} failed: {e}")))
        })?;
        let code = message.response_code;
        if let Some(mut verifier) = verifier {
            match message.signature() {
                Some(tsig) if tsig.data.error.is_some() || tsig.data.mac.is_empty() => {
                    return Err(Refusal::Other(format!(
                        "{server} refused our TSIG signature ({:?}, answer {code}): check the key name, secret and algorithm",
                        tsig.data.error
                    )));
                }
                Some(_) => {
                    verifier.verify(&buffer).map_err(|e| {
                        Refusal::Other(format!("{server}'s answer failed TSIG verification: {e}"))
                    })?;
                }
                None if code == ResponseCode::NoError => {
                    return Err(Refusal::Other(format!(
                        "{server} answered a signed update without a signature"
                    )));
                }
                None => {}
            }
        }
        if code != ResponseCode::NoError {
            return Err(Refusal::Code(code));
        }
        Ok(message)
    }
}

/// Why an exchange did not succeed.
enum Refusal {
    /// The server answered with this code.
    Code(ResponseCode),
    /// Anything else (no answer, a bad signature, a transport error).
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "the server answered {code} ({})", u16::from(*code)),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl DnsProvider for Rfc2136Dns {
    fn set(&self, record: &DnsRecord, value: &str) -> Result<(), String> {
        let name = absolute_name(&record.name)?;
        if !self.zone.zone_of(&name) {
            return Err(format!(
                "record {} is not in zone {} that this client updates",
                record.name, self.zone
            ));
        }
        let rdata = match record.rtype {
            RecordType::A => RData::A(A(std::net::Ipv4Addr::from_str(value)
                .map_err(|e| format!("{value:?} is not an IPv4 address: {e}"))?)),
            RecordType::Aaaa => RData::AAAA(AAAA(
                std::net::Ipv6Addr::from_str(value)
                    .map_err(|e| format!("{value:?} is not an IPv6 address: {e}"))?,
            )),
            RecordType::Cname => RData::CNAME(CNAME(absolute_name(value)?)),
        };
        let rtype = wire_type(record.rtype);
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(WireType::SOA);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(zone);
        // RFC 2136 §2.5.2: delete the RRset (class ANY, TTL 0, empty data) ...
        let mut delete = Record::update0(name.clone(), 0, rtype);
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete.into_record_of_rdata());
        // ... §2.5.1: then add the new value, in the same message (applied atomically).
        let mut add = Record::from_rdata(name, record.ttl, rdata);
        add.dns_class = DNSClass::IN;
        message.add_update(add);
        message
            .edns
            .get_or_insert_with(Edns::new)
            .set_max_payload(1232)
            .set_version(0);
        self.exchange_signed(message).map(drop).map_err(|e| {
            format!(
                "updating {} {} on {}: {e}",
                record.name,
                record.rtype.as_str(),
                self.server
            )
        })
    }
}

fn wire_type(rtype: RecordType) -> WireType {
    match rtype {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Cname => WireType::CNAME,
    }
}

fn rdata_text(data: &RData) -> Option<String> {
    match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::CNAME(c) => Some(c.0.to_string()),
        _ => None,
    }
}

/// A fully qualified name (a trailing dot is added if missing), lower case.
fn absolute_name(text: &str) -> Result<Name, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a DNS name must not be empty".to_owned());
    }
    let mut name =
        Name::from_ascii(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Standard base64 (with or without padding); `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const KEY_FILE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    KEY_FILE.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_key_files_secrets() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("a$b"), None);
    }

    #[test]
    fn bad_settings_are_named() {
        let make = |zone: &str, secret: &str, algorithm: &str| {
            Rfc2136Dns::new(
                "127.0.0.1",
                53,
                zone,
                "k.",
                secret,
                algorithm,
                Duration::from_secs(1),
            )
        };
        let field = |r: Result<Rfc2136Dns, DnsConfigError>| match r {
            Err(DnsConfigError::Invalid { field, .. }) => field,
            Ok(_) => "ok",
        };
        assert_eq!(field(make("", "aGVsbG8=", "hmac-sha256")), "zone");
        assert_eq!(
            field(make("z.test", "not base64!", "hmac-sha256")),
            "key_secret"
        );
        assert_eq!(field(make("z.test", "aGVsbG8=", "hmac-md5")), "algorithm");
        assert_eq!(field(make("z.test", "aGVsbG8=", "HMAC-SHA512")), "ok");
    }
}
