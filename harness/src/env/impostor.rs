//! An impostor at a workload's in-mesh address: it holds a certificate for the workload's own
//! SPIFFE identity from a CA the mesh does not trust, finishes any TLS handshake (it asks for
//! no client certificate), and answers every request with 200 and [`IMPOSTOR_BODY`]. An
//! in-mesh client that verifies its peer (Istio's ISTIO_MUTUAL) never gets that answer.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::redact::Secret;

/// What the impostor answers: a client that shows it was fooled.
pub const IMPOSTOR_BODY: &str = "meshauth impostor: this client did not verify its peer";

/// A running impostor; dropping it stops it and frees its address.
pub struct Impostor {
    task: tokio::task::JoinHandle<()>,
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
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
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
        Ok(Self { task })
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
