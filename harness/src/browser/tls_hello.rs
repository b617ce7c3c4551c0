//! What a TLS server agrees to, asked the way an old or careless client asks: a ClientHello
//! written byte for byte (no TLS library offers TLS 1.0 or CBC suites any more, which is the
//! point), and the server's first answer read back — its ServerHello (the version and suite it
//! chose) or its alert. No handshake is completed; nothing is encrypted.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the server may take to answer a ClientHello.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A protocol version, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersion(pub u16);

impl TlsVersion {
    pub const TLS1_0: Self = Self(0x0301);
    pub const TLS1_1: Self = Self(0x0302);
    pub const TLS1_2: Self = Self(0x0303);

    pub fn name(self) -> String {
        match self.0 {
            0x0300 => "SSL 3.0".into(),
            0x0301 => "TLS 1.0".into(),
            0x0302 => "TLS 1.1".into(),
            0x0303 => "TLS 1.2".into(),
            0x0304 => "TLS 1.3".into(),
            other => format!("version 0x{other:04x}"),
        }
    }
}

/// A cipher suite, as on the wire, with its OpenSSL name where it is one a client offers here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite(pub u16);

/// The suites an up-to-date TLS 1.2 client offers: forward-secret key exchange, AEAD.
pub const AEAD_SUITES: [CipherSuite; 6] = [
    CipherSuite(0xc02b),
    CipherSuite(0xc02f),
    CipherSuite(0xc02c),
    CipherSuite(0xc030),
    CipherSuite(0xcca9),
    CipherSuite(0xcca8),
];

/// CBC-mode suites (MAC-then-encrypt: Lucky13, POODLE-style padding oracles), every key
/// exchange; the only suites TLS 1.0 and 1.1 have.
pub const CBC_SUITES: [CipherSuite; 12] = [
    CipherSuite(0xc009),
    CipherSuite(0xc013),
    CipherSuite(0xc00a),
    CipherSuite(0xc014),
    CipherSuite(0xc023),
    CipherSuite(0xc027),
    CipherSuite(0xc024),
    CipherSuite(0xc028),
    CipherSuite(0x002f),
    CipherSuite(0x0035),
    CipherSuite(0x003c),
    CipherSuite(0x000a),
];

impl CipherSuite {
    pub fn name(self) -> String {
        let name = match self.0 {
            0xc02b => "ECDHE-ECDSA-AES128-GCM-SHA256",
            0xc02f => "ECDHE-RSA-AES128-GCM-SHA256",
            0xc02c => "ECDHE-ECDSA-AES256-GCM-SHA384",
            0xc030 => "ECDHE-RSA-AES256-GCM-SHA384",
            0xcca9 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            0xcca8 => "ECDHE-RSA-CHACHA20-POLY1305",
            0xc009 => "ECDHE-ECDSA-AES128-SHA",
            0xc013 => "ECDHE-RSA-AES128-SHA",
            0xc00a => "ECDHE-ECDSA-AES256-SHA",
            0xc014 => "ECDHE-RSA-AES256-SHA",
            0xc023 => "ECDHE-ECDSA-AES128-SHA256",
            0xc027 => "ECDHE-RSA-AES128-SHA256",
            0xc024 => "ECDHE-ECDSA-AES256-SHA384",
            0xc028 => "ECDHE-RSA-AES256-SHA384",
            0x002f => "AES128-SHA",
            0x0035 => "AES256-SHA",
            0x003c => "AES128-SHA256",
            0x000a => "DES-CBC3-SHA",
            other => return format!("suite 0x{other:04x}"),
        };
        name.to_string()
    }

    pub fn is_cbc(self) -> bool {
        CBC_SUITES.contains(&self)
    }
}

/// What a client offers in its ClientHello.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The highest version the client speaks (no `supported_versions` extension: it offers
    /// this one and everything below, as TLS 1.2 and older clients do).
    pub version: TlsVersion,
    pub suites: Vec<CipherSuite>,
}

/// How the server answered a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloAnswer {
    /// It agreed: this version and this suite.
    ServerHello {
        version: TlsVersion,
        suite: CipherSuite,
    },
    /// It refused with a TLS alert (its description code: 40 handshake_failure, 70
    /// protocol_version, 71 insufficient_security...).
    Alert { description: u8 },
    /// It closed or reset the connection without a word.
    Closed,
    /// Nothing within the time allowed.
    Silent,
    /// Bytes that are no TLS record: the port does not speak TLS.
    NotTls { first_bytes: Vec<u8> },
}

impl HelloAnswer {
    pub fn describe(&self) -> String {
        match self {
            Self::ServerHello { version, suite } => {
                format!("ServerHello: {} with {}", version.name(), suite.name())
            }
            Self::Alert { description } => {
                format!("alert {description} ({})", alert_name(*description))
            }
            Self::Closed => "connection closed without an answer".into(),
            Self::Silent => format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            Self::NotTls { first_bytes } => format!(
                "an answer that is not TLS (first bytes {:02x?})",
                &first_bytes[..first_bytes.len().min(8)]
            ),
        }
    }
}

fn alert_name(description: u8) -> &'static str {
    match description {
        0 => "close_notify",
        10 => "unexpected_message",
        40 => "handshake_failure",
        47 => "illegal_parameter",
        50 => "decode_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        112 => "unrecognized_name",
        _ => "other",
    }
}

/// Sends `offer` to `host:port` (with `server_name` as SNI, if it is a DNS name) and reads
/// the server's first answer. `Err` is a connection that could not be opened at all.
pub async fn ask(
    host: &str,
    port: u16,
    server_name: Option<&str>,
    offer: &Offer,
) -> Result<HelloAnswer, String> {
    let mut stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            format!(
                "connecting to {host}:{port} took over {} s",
                ANSWER_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    if stream
        .write_all(&client_hello(offer, server_name))
        .await
        .is_err()
    {
        return Ok(HelloAnswer::Closed);
    }
    let mut received = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(answer) = parse_answer(&received) {
                return answer;
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return parse_answer(&received).unwrap_or(HelloAnswer::Closed),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    Ok(read.unwrap_or(HelloAnswer::Silent))
}

/// A ClientHello record: `offer`'s version and suites, with the extensions every client of
/// its era sends (groups, point formats, signature algorithms, renegotiation info).
pub fn client_hello(offer: &Offer, server_name: Option<&str>) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = server_name {
        let name = name.as_bytes();
        let mut list = vec![0u8];
        push_u16(&mut list, name.len());
        list.extend_from_slice(name);
        let mut body = Vec::new();
        push_u16(&mut body, list.len());
        body.extend_from_slice(&list);
        push_extension(&mut extensions, 0x0000, &body);
    }
    // supported_groups: x25519, secp256r1, secp384r1.
    push_extension(
        &mut extensions,
        0x000a,
        &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    );
    // ec_point_formats: uncompressed.
    push_extension(&mut extensions, 0x000b, &[1, 0]);
    // signature_algorithms (ignored below TLS 1.2, required by some servers at 1.2).
    let algorithms: [u16; 10] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201, 0x0203,
    ];
    let mut body = Vec::new();
    push_u16(&mut body, algorithms.len() * 2);
    for algorithm in algorithms {
        push_u16(&mut body, algorithm.into());
    }
    push_extension(&mut extensions, 0x000d, &body);
    // extended_master_secret, renegotiation_info (empty).
    push_extension(&mut extensions, 0x0017, &[]);
    push_extension(&mut extensions, 0xff01, &[0]);

    let mut hello = Vec::new();
    push_u16(&mut hello, offer.version.0.into());
    // The client random need not be random: no key is ever derived from this handshake.
    hello.extend_from_slice(&[0x6d; 32]);
    hello.push(0); // no session id
    push_u16(&mut hello, offer.suites.len() * 2);
    for suite in &offer.suites {
        push_u16(&mut hello, suite.0.into());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    push_u16(&mut hello, extensions.len());
    hello.extend_from_slice(&extensions);

    let mut handshake = vec![0x01];
    push_u24(&mut handshake, hello.len());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    push_u16(&mut record, handshake.len());
    record.extend_from_slice(&handshake);
    record
}

/// The server's answer in `bytes`, once enough of it has arrived to say (`None`: read more).
pub fn parse_answer(bytes: &[u8]) -> Option<HelloAnswer> {
    if bytes.len() < 5 {
        return None;
    }
    let (content_type, length) = (
        bytes[0],
        usize::from(u16::from_be_bytes([bytes[3], bytes[4]])),
    );
    if !matches!(content_type, 0x15 | 0x16) || bytes[1] != 0x03 {
        return Some(HelloAnswer::NotTls {
            first_bytes: bytes.to_vec(),
        });
    }
    let fragment = bytes.get(5..5 + length)?;
    match content_type {
        0x15 => Some(HelloAnswer::Alert {
            description: *fragment.get(1)?,
        }),
        _ => {
            // handshake type 2 (ServerHello), 3-byte length, version, 32-byte random,
            // session id, suite.
            if fragment.first() != Some(&0x02) {
                return Some(HelloAnswer::NotTls {
                    first_bytes: bytes.to_vec(),
                });
            }
            let version = u16::from_be_bytes([*fragment.get(4)?, *fragment.get(5)?]);
            let session_id_length = usize::from(*fragment.get(38)?);
            let at = 39 + session_id_length;
            let suite = u16::from_be_bytes([*fragment.get(at)?, *fragment.get(at + 1)?]);
            Some(HelloAnswer::ServerHello {
                version: TlsVersion(version),
                suite: CipherSuite(suite),
            })
        }
    }
}

fn push_u16(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u16).to_be_bytes());
}

fn push_u24(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
}

fn push_extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind.into());
    push_u16(out, body.len());
    out.extend_from_slice(body);
}
