//! Requests sent byte for byte as written: the request target is not parsed or normalised
//! (`//`, `/./`, `%2e%2e`, `;`, `\`, upper case survive), the Host header is whatever the attack
//! needs (upper case, trailing dot, no port, an unknown host) while TLS still names the real
//! server, and header names keep their spelling (`X_Auth_Request_User`). A general HTTP client
//! cannot do this: it normalises the very things a gateway must get right.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

/// Responses larger than this are cut (the checks need the status, headers and an excerpt).
const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub method: String,
    /// Sent verbatim as the request target.
    pub target: String,
    /// The Host header's value.
    pub host: String,
    /// In order, names as spelled.
    pub headers: Vec<(String, String)>,
    /// Sent over HTTP/2 (TLS with ALPN `h2`): the target becomes `:path` as written, the Host
    /// `:authority`; header names go lower case, as HTTP/2 requires, and the connection-specific
    /// ones HTTP/2 forbids (`Connection`, `Upgrade`, …) are left out.
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawRequest {
    /// The request's wire form, `Connection: close` so the response ends with the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.target, self.host
        );
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("User-Agent: meshauth-probe\r\nConnection: close\r\n\r\n");
        text.into_bytes()
    }

    /// One line for reports: method, target (after `origin` when `with_origin`, for a request
    /// sent elsewhere than where the report's reader expects) and the Host header when it is
    /// not the origin's.
    pub fn describe(&self, origin: &Url, with_origin: bool) -> String {
        let sent_to = if with_origin {
            format!("{}://{}", origin.scheme(), authority(origin))
        } else {
            String::new()
        };
        let mut text = format!("{} {sent_to}{}", self.method, self.target);
        if self.http2 {
            text.push_str(" over HTTP/2");
        }
        if self.host != authority(origin) {
            text.push_str(&format!(" (Host: {})", self.host));
        }
        for (name, value) in &self.headers {
            text.push_str(&format!(" [{name}: {value}]"));
        }
        text
    }
}

/// Where to connect for `url`: its host (IPv6 without brackets) and port.
pub fn host_and_port(url: &Url) -> Result<(String, u16), String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    Ok((host, port))
}

/// `host[:port]` of `url`, as a browser sends it in the Host header.
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The start of the error for an exchange the server did not finish within the timeout.
pub const NO_COMPLETE_RESPONSE: &str = "no complete response within";

/// Sends raw requests to one origin (TLS to `https` origins, trusting the platform's roots
/// and the environment's CA).
#[derive(Clone)]
pub struct RawClient {
    tls: TlsConnector,
    /// The same trust, offering only `h2` in ALPN.
    tls_h2: TlsConnector,
    timeout: Duration,
}

impl RawClient {
    pub fn new(extra_ca_pem: Option<&str>, timeout: Duration) -> Result<Self, String> {
        let mut h2 = tls_client_config(extra_ca_pem)?;
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls_client_config(extra_ca_pem)?)),
            tls_h2: TlsConnector::from(Arc::new(h2)),
            timeout,
        })
    }

    /// Connects to `origin` and exchanges `request`; the whole exchange is bounded by the
    /// client's timeout.
    pub async fn send(&self, origin: &Url, request: &RawRequest) -> Result<RawResponse, String> {
        tokio::time::timeout(self.timeout, self.exchange(origin, request))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{NO_COMPLETE_RESPONSE} {}s",
                    self.timeout.as_secs()
                ))
            })
    }

    async fn exchange(&self, origin: &Url, request: &RawRequest) -> Result<RawResponse, String> {
        let (host, port) = host_and_port(origin)?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        match origin.scheme() {
            "https" => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
                let connector = if request.http2 {
                    &self.tls_h2
                } else {
                    &self.tls
                };
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
                if !request.http2 {
                    return exchange_on(tls, request).await;
                }
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(format!(
                        "{host}:{port} did not take HTTP/2: no h2 in its ALPN answer"
                    ));
                }
                exchange_h2(tls, request).await
            }
            "http" if request.http2 => Err(format!(
                "{origin}: HTTP/2 probes go over TLS (ALPN h2); this origin is plain HTTP"
            )),
            "http" => exchange_on(tcp, request).await,
            other => Err(format!("{origin}: scheme {other} is not http or https")),
        }
    }
}

/// Headers HTTP/2 forbids (RFC 9113 8.2.2): a request carrying them is malformed there.
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "http2-settings",
];

/// The request as one HTTP/2 stream on `stream` (a TLS connection that negotiated `h2`).
async fn exchange_h2<S>(stream: S, request: &RawRequest) -> Result<RawResponse, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let uri: hyper::Uri = format!("https://{}{}", request.host, request.target)
        .parse()
        .map_err(|e| {
            format!(
                "{} with :authority {} cannot be sent over HTTP/2: {e}",
                request.target, request.host
            )
        })?;
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(uri)
        .header("user-agent", "meshauth-probe");
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if CONNECTION_SPECIFIC.contains(&name.as_str()) || name == "host" {
            continue;
        }
        builder = builder.header(name, value);
    }
    let outgoing = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("building the HTTP/2 request: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(outgoing)
            .await
            .map_err(|e| format!("sending the HTTP/2 request: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            response.into_body(),
            MAX_RESPONSE,
        ))
        .await
        .map_err(|e| format!("reading the HTTP/2 response: {e}"))?
        .to_bytes();
        Ok(RawResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
    .await;
    driver.abort();
    result
}

async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &RawRequest,
) -> Result<RawResponse, String> {
    stream
        .write_all(&request.to_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let bodiless = request.method.eq_ignore_ascii_case("HEAD");
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                // A server may hold the connection after a whole response despite
                // `Connection: close` (Envoy waits up to its delayed_close_timeout, a second,
                // for the client to close after an error): stop at the response's end.
                if buffer.len() >= MAX_RESPONSE || response_complete(&buffer, bodiless) {
                    break;
                }
            }
            // A TLS peer that closes without close_notify still sent a whole response.
            Err(error) if !buffer.is_empty() => {
                tracing::debug!(%error, "connection ended uncleanly after the response");
                break;
            }
            Err(error) => return Err(format!("reading the response: {error}")),
        }
    }
    parse_response(&buffer)
}

/// Whether `bytes` hold a whole response: its head, and the body its framing announces (none
/// for HEAD, 204 and 304; `Content-Length` bytes; chunks up to the last). A response framed by
/// the connection's end alone is never complete before it.
fn response_complete(bytes: &[u8], bodiless: bool) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(bytes) else {
        return false;
    };
    let status = response.code.unwrap_or_default();
    if (100..200).contains(&status) {
        // An interim response; the final one follows.
        return false;
    }
    if bodiless || status == 204 || status == 304 {
        return true;
    }
    let body = &bytes[head_len..];
    let header = |wanted: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(wanted))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return dechunk(body).1;
    }
    match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => body.len() >= length,
        None => false,
    }
}

/// Parses an HTTP/1.1 response read to the end of the connection.
pub fn parse_response(bytes: &[u8]) -> Result<RawResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err(format!(
                "the connection closed after {} bytes, before the response headers ended",
                bytes.len()
            ));
        }
        Err(error) => return Err(format!("not an HTTP/1.1 response: {error}")),
    };
    let status = response.code.unwrap_or_default();
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let raw_body = &bytes[head_len..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body).0
    } else {
        raw_body.to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body decoded as far as it has arrived, and whether it ended: its last (zero-size)
/// chunk and the blank line after it (after any trailers) were received.
fn dechunk(mut bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (out, false);
        };
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            let ended = bytes.starts_with(b"\r\n") || bytes.windows(4).any(|w| w == b"\r\n\r\n");
            return (out, ended);
        }
        out.extend_from_slice(&bytes[..size.min(bytes.len())]);
        match bytes.get(size + 2..) {
            Some(rest) => bytes = rest,
            None => return (out, false),
        }
    }
    (out, false)
}

/// TLS for the harness's own clients: the platform's roots plus the environment's CA.
pub fn tls_client_config(extra_ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let extra: Vec<CertificateDer<'static>> = match extra_ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the CA certificate is not valid PEM: {e}"))?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))
            .map_err(|e| format!("could not load the platform's trust roots: {e}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous() // not dangerous: this is the platform verifier, with extra roots
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_bytes() {
        let request = RawRequest {
            method: "GET".into(),
            target: "/anything/%2e%2e//./x;y".into(),
            host: "APP.EXAMPLE.:443".into(),
            headers: vec![("X_Auth_Request_User".into(), "mallory".into())],
            http2: false,
        };
        let wire = String::from_utf8(request.to_bytes()).unwrap();
        assert!(
            wire.starts_with("GET /anything/%2e%2e//./x;y HTTP/1.1\r\nHost: APP.EXAMPLE.:443\r\n")
        );
        assert!(wire.contains("\r\nX_Auth_Request_User: mallory\r\n"));
        assert!(wire.ends_with("Connection: close\r\n\r\n"));
        let origin = Url::parse("https://app.example/").unwrap();
        assert_eq!(
            request.describe(&origin, false),
            "GET /anything/%2e%2e//./x;y (Host: APP.EXAMPLE.:443) [X_Auth_Request_User: mallory]"
        );
        let elsewhere = Url::parse("http://idp.example:8080/").unwrap();
        assert_eq!(
            request.describe(&elsewhere, true),
            "GET http://idp.example:8080/anything/%2e%2e//./x;y (Host: APP.EXAMPLE.:443) \
             [X_Auth_Request_User: mallory]"
        );
        let h2 = RawRequest {
            http2: true,
            ..request.clone()
        };
        assert!(
            h2.describe(&origin, false)
                .starts_with("GET /anything/%2e%2e//./x;y over HTTP/2 (Host: "),
            "{}",
            h2.describe(&origin, false)
        );
    }

    #[test]
    fn a_response_is_complete_at_the_end_its_framing_announces() {
        let head = "HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\nconnection: close\r\n\r\n";
        assert!(!response_complete(head.as_bytes(), false));
        assert!(!response_complete(format!("{head}Bad").as_bytes(), false));
        assert!(response_complete(
            format!("{head}Bad Request").as_bytes(),
            false
        ));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\nContent-Le", false));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
            false
        ));
        let head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4012\r\n\r\n";
        assert!(response_complete(head_answer, true));
        assert!(!response_complete(head_answer, false));
        assert!(response_complete(
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            false
        ));
        assert!(!response_complete(b"HTTP/1.1 100 Continue\r\n\r\n", false));
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!response_complete(
            format!("{chunked}5\r\nhello\r\n").as_bytes(),
            false
        ));
        assert!(!response_complete(
            format!("{chunked}5\r\nhello\r\n0\r\n").as_bytes(),
            false
        ));
        assert!(response_complete(
            format!("{chunked}5\r\nhello\r\n0\r\n\r\n").as_bytes(),
            false
        ));
        assert!(response_complete(
            format!("{chunked}5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n").as_bytes(),
            false
        ));
        // A body that only looks like a last chunk does not end the response early.
        assert!(!response_complete(
            format!("{chunked}7\r\n0\r\n\r\nab\r\n").as_bytes(),
            false
        ));
    }

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let plain =
            parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (403, "nope!"));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nUser\r\n7;x=y\r\n-agent:\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, "User-agent:");
        assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
        let cut = parse_response(b"HTTP/1.1 200 OK\r\nContent-").unwrap_err();
        assert!(cut.contains("before the response headers ended"), "{cut}");
        assert!(parse_response(b"garbage").is_err());
    }
}
