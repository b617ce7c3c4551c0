//! An impostor at a workload's in-mesh address: it holds a certificate for the workload's own
//! SPIFFE identity from a CA the mesh does not trust, finishes any TLS handshake (it asks for
//! no client certificate), and answers every request with 200 and [`IMPOSTOR_BODY`]. An
//! in-mesh client that verifies its peer (Istio's ISTIO_MUTUAL) never gets that answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::control::Handshake;
use crate::redact::Secret;

/// What the impostor answers: a client that shows it was fooled.
pub const IMPOSTOR_BODY: &str = "meshauth impostor: this client did not verify its peer";

/// A running impostor; dropping it stops it and frees its address.
pub struct Impostor {
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Log>>,
}

/// The connections the impostor took: those whose outcome is known, and how many are not yet.
#[derive(Default)]
struct Log {
    ended: Vec<Handshake>,
    open: usize,
}

impl Impostor {
    /// Listens on `address` with `cert_pem`/`key_pem`.
    pub async fn start(
        address: SocketAddr,
        cert_pem: &str,
        key_pem: &Secret,
    ) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the impostor's certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
            .map_err(|e| format!("the impostor's key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the impostor's TLS configuration: {e}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("the impostor cannot listen on {address}: {e}"))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = Arc::clone(&log);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let log = Arc::clone(&shared);
                log.lock().unwrap_or_else(|p| p.into_inner()).open += 1;
                // Called once per connection, on each way it can end.
                let record = move |handshake: Handshake| {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.ended.push(handshake);
                    log.open -= 1;
                };
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(error) => return record(handshake_failure(&error)),
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => {
                                return record(Handshake::Completed { request: false });
                            }
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    record(Handshake::Completed { request: true });
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{IMPOSTOR_BODY}",
                        IMPOSTOR_BODY.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(Self { task, log })
    }

    /// Every connection so far, in the order each ended (or got its request). A caller may
    /// have its answer before the impostor has read the caller's alert: connections still
    /// open are waited for, up to `within`, then reported unfinished.
    pub async fn seen(&self, within: std::time::Duration) -> Vec<Handshake> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (ended, open) = {
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                (log.ended.clone(), log.open)
            };
            if open == 0 || tokio::time::Instant::now() >= deadline {
                let unfinished = Handshake::Failed(format!(
                    "still open after {} ms, its handshake unfinished",
                    within.as_millis()
                ));
                return ended
                    .into_iter()
                    .chain(std::iter::repeat_n(unfinished, open))
                    .collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops listening and waits until the address is free again.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A failed handshake as the impostor saw it: rustls reports the caller's alert as its error.
fn handshake_failure(error: &std::io::Error) -> Handshake {
    use rustls::AlertDescription as Alert;
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(
            alert @ (Alert::UnknownCA
            | Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown),
        )) => Handshake::CertificateRefused(format!("{alert:?}")),
        Some(rustls::Error::AlertReceived(alert)) => {
            Handshake::Failed(format!("the caller's alert {alert:?}"))
        }
        _ => Handshake::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(description: rustls::AlertDescription) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(description),
        )
    }

    #[test]
    fn only_a_certificate_alert_counts_as_the_caller_refusing_the_certificate() {
        assert_eq!(
            handshake_failure(&alert(rustls::AlertDescription::UnknownCA)),
            Handshake::CertificateRefused("UnknownCA".into())
        );
        // A caller that could not agree on a version or cipher never looked at the certificate.
        assert_eq!(
            handshake_failure(&alert(rustls::AlertDescription::HandshakeFailure)),
            Handshake::Failed("the caller's alert HandshakeFailure".into())
        );
        let closed = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            handshake_failure(&closed),
            Handshake::Failed("tls handshake eof".into())
        );
    }

    #[tokio::test]
    async fn a_caller_that_verifies_its_peer_is_seen_refusing_the_certificate() {
        let pki = crate::env::pki::MeshPki::generate().unwrap();
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let impostor = Impostor::start(
            address,
            &pki.impostor_httpbin.cert_pem,
            &pki.impostor_httpbin.key_pem,
        )
        .await
        .unwrap();

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mesh_caller = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("httpbin.foo.svc.cluster.local")
            .unwrap()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(mesh_caller.connect(name, stream).await.is_err());
        // Leaving without a word refuses nothing, and neither does staying silent.
        drop(tokio::net::TcpStream::connect(address).await.unwrap());
        let silent = tokio::net::TcpStream::connect(address).await.unwrap();

        let seen = impostor.seen(std::time::Duration::from_millis(300)).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        for handshake in [
            Handshake::CertificateRefused("UnknownCA".into()),
            Handshake::Failed("tls handshake eof".into()),
            Handshake::Failed("still open after 300 ms, its handshake unfinished".into()),
        ] {
            assert!(seen.contains(&handshake), "{handshake:?} not in {seen:?}");
        }
        drop(silent);
        impostor.stop().await;
    }
}
