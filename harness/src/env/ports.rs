//! Loopback ports for the local stack: free ones chosen by the kernel, or fixed ones that are
//! checked to be free so a clash is a clear error instead of a confusing start-up failure.

use std::net::{Ipv4Addr, TcpListener};

use super::EnvError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub gateway_https: u16,
    pub gateway_http: u16,
    pub gateway_admin: u16,
    pub oauth2_proxy: u16,
    pub httpbin: u16,
    pub keycloak: u16,
    pub keycloak_management: u16,
    /// httpbin's sidecar: the inbound listener callers use, and its admin port.
    pub sidecar: u16,
    pub sidecar_admin: u16,
}

impl Ports {
    /// Kernel-chosen free ports, all distinct.
    pub fn free() -> Result<Self, EnvError> {
        // Holding every listener until all are chosen keeps the ports distinct.
        let listeners: Vec<TcpListener> = (0..9)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<Result<_, _>>()
            .map_err(|source| EnvError::Io {
                what: "bind a free port on",
                path: "127.0.0.1".into(),
                source,
            })?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port()).unwrap_or(0);
        Ok(Self {
            gateway_https: port(0),
            gateway_http: port(1),
            gateway_admin: port(2),
            oauth2_proxy: port(3),
            httpbin: port(4),
            keycloak: port(5),
            keycloak_management: port(6),
            sidecar: port(7),
            sidecar_admin: port(8),
        })
    }

    /// Fails with [`EnvError::PortInUse`] if a fixed gateway port is taken.
    pub fn check_free(port: u16, purpose: &str) -> Result<(), EnvError> {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map(drop)
            .map_err(|_| EnvError::PortInUse {
                port,
                purpose: purpose.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_a_taken_port_is_reported() {
        let ports = Ports::free().unwrap();
        let mut all = vec![
            ports.gateway_https,
            ports.gateway_http,
            ports.gateway_admin,
            ports.oauth2_proxy,
            ports.httpbin,
            ports.keycloak,
            ports.keycloak_management,
        ];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 7);
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = Ports::check_free(port, "gateway HTTPS")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("port {port}")) && error.contains("gateway HTTPS"),
            "{error}"
        );
    }
}
