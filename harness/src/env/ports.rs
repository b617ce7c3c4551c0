//! Loopback ports for the local stack.
//!
//! Ports are chosen outside the kernel's ephemeral range (`ip_local_port_range`): a port the
//! kernel hands out for `bind(0)` comes from the same range every outbound connection takes its
//! local port from, so between choosing it and the component binding it (up to Keycloak's
//! start-up later) any connection could take it. Outside that range only another explicit
//! `bind` can, and a component that still meets "address already in use" is given new ports by
//! the stack ([`Ports::reassign`]).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;

use super::EnvError;

/// Ports handed out in this process and not yet released, so two stacks started side by side
/// (tests) never get the same one.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Below this, ports belong to services people run by hand (8080, 9090, 5432, …).
const LOWEST: u16 = 10_000;
/// Linux's default `ip_local_port_range`, for systems without `/proc`.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32_768..=60_999;

/// The local stack's components, in start order; each owns the ports it binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Keycloak,
    Httpbin,
    EchoApp,
    IstioXds,
    Sidecar,
    SleepSidecar,
    Gateway,
    Redis,
    OidcIdp,
    OAuth2Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub gateway_https: u16,
    pub gateway_http: u16,
    pub gateway_admin: u16,
    /// The gateway's plain-HTTP server for the app, when the stack serves it so (seed 001).
    pub gateway_app_http: u16,
    pub oauth2_proxy: u16,
    pub httpbin: u16,
    /// The second app behind the gateway (another go-httpbin, under `/echo`).
    pub echo_app: u16,
    pub keycloak: u16,
    pub keycloak_management: u16,
    /// httpbin's sidecar: the inbound listener callers use, and its admin port.
    pub sidecar: u16,
    pub sidecar_admin: u16,
    /// Istio's config generator: ADS (istiod's role), SDS (istio-agent's) and readiness.
    pub xds: u16,
    pub sds: u16,
    pub xds_health: u16,
    /// sleep's sidecar's admin port.
    pub sleep_admin: u16,
    /// oauth2-proxy's session store.
    pub redis: u16,
    /// The second OpenID Provider.
    pub oidc_idp: u16,
}

impl Ports {
    /// Free ports outside the ephemeral range, all distinct and reserved in this process until
    /// [`Ports::release`].
    pub fn allocate() -> Result<Self, EnvError> {
        let mut ports = Self {
            gateway_https: 0,
            gateway_http: 0,
            gateway_admin: 0,
            gateway_app_http: 0,
            oauth2_proxy: 0,
            httpbin: 0,
            echo_app: 0,
            keycloak: 0,
            keycloak_management: 0,
            sidecar: 0,
            sidecar_admin: 0,
            xds: 0,
            sds: 0,
            xds_health: 0,
            sleep_admin: 0,
            redis: 0,
            oidc_idp: 0,
        };
        for owner in Component::START_ORDER {
            for slot in ports.owned_mut(owner) {
                *slot = reserve_one()?;
            }
        }
        Ok(ports)
    }

    /// New ports for `owner` (after it met "address already in use"); the old ones stay
    /// reserved, since something else holds them.
    pub fn reassign(&mut self, owner: Component) -> Result<(), EnvError> {
        for slot in self.owned_mut(owner) {
            *slot = reserve_one()?;
        }
        Ok(())
    }

    /// The ports `owner` binds.
    pub fn owned(&self, owner: Component) -> Vec<u16> {
        let mut copy = *self;
        copy.owned_mut(owner).into_iter().map(|p| *p).collect()
    }

    /// Gives this stack's ports back to the process-wide pool.
    pub fn release(&self) {
        if let Ok(mut reserved) = RESERVED.lock() {
            for owner in Component::START_ORDER {
                for port in self.owned(owner) {
                    reserved.remove(&port);
                }
            }
        }
    }

    fn owned_mut(&mut self, owner: Component) -> Vec<&mut u16> {
        match owner {
            Component::Gateway => vec![
                &mut self.gateway_https,
                &mut self.gateway_http,
                &mut self.gateway_admin,
                &mut self.gateway_app_http,
            ],
            Component::OAuth2Proxy => vec![&mut self.oauth2_proxy],
            Component::Httpbin => vec![&mut self.httpbin],
            Component::EchoApp => vec![&mut self.echo_app],
            Component::Keycloak => vec![&mut self.keycloak, &mut self.keycloak_management],
            Component::Sidecar => vec![&mut self.sidecar, &mut self.sidecar_admin],
            Component::IstioXds => vec![&mut self.xds, &mut self.sds, &mut self.xds_health],
            Component::SleepSidecar => vec![&mut self.sleep_admin],
            Component::Redis => vec![&mut self.redis],
            Component::OidcIdp => vec![&mut self.oidc_idp],
        }
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

impl Component {
    pub const START_ORDER: [Component; 10] = [
        Self::Keycloak,
        Self::Httpbin,
        Self::EchoApp,
        Self::IstioXds,
        Self::Sidecar,
        Self::SleepSidecar,
        Self::Gateway,
        Self::Redis,
        Self::OidcIdp,
        Self::OAuth2Proxy,
    ];
}

/// One free port from the non-ephemeral range, reserved in this process.
fn reserve_one() -> Result<u16, EnvError> {
    let range = stable_range(&ephemeral_range());
    let mut reserved = RESERVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1_000 {
        let port = rand::random_range(range.clone());
        if reserved.contains(&port) || TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        reserved.insert(port);
        return Ok(port);
    }
    Err(EnvError::Io {
        what: "find a free loopback port outside the ephemeral range on",
        path: "127.0.0.1".into(),
        source: std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "1000 random ports in {}-{} were taken",
                range.start(),
                range.end()
            ),
        ),
    })
}

/// The kernel's ephemeral port range, from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_port_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

fn parse_port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (low, high) = (numbers.next()??, numbers.next()??);
    (low <= high).then_some(low..=high)
}

/// The wider of the two stretches of `LOWEST..=65535` the ephemeral range leaves free.
fn stable_range(ephemeral: &RangeInclusive<u16>) -> RangeInclusive<u16> {
    let below = (LOWEST, ephemeral.start().saturating_sub(1));
    let above = (ephemeral.end().saturating_add(1).max(LOWEST), u16::MAX);
    let width = |(low, high): (u16, u16)| high.saturating_sub(low);
    let (low, high) = if width(below) >= width(above) {
        below
    } else {
        above
    };
    if high > low + 100 {
        low..=high
    } else {
        // The ephemeral range covers nearly everything: nothing better than the whole space.
        LOWEST..=u16::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(ports: &Ports) -> Vec<u16> {
        Component::START_ORDER
            .iter()
            .flat_map(|owner| ports.owned(*owner))
            .collect()
    }

    #[test]
    fn ports_are_distinct_across_stacks_and_outside_the_ephemeral_range() {
        let ephemeral = ephemeral_range();
        let first = Ports::allocate().unwrap();
        let second = Ports::allocate().unwrap();
        let mut ports: Vec<u16> = all(&first).into_iter().chain(all(&second)).collect();
        assert_eq!(ports.len(), 34);
        assert!(
            ports.iter().all(|p| !ephemeral.contains(p) && *p >= LOWEST),
            "{ports:?}"
        );
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 34, "two stacks in one process share no port");
        first.release();
        second.release();
    }

    #[test]
    fn reassigning_changes_only_the_owner_s_ports() {
        let mut ports = Ports::allocate().unwrap();
        let before = ports;
        ports.reassign(Component::Keycloak).unwrap();
        assert_ne!(ports.keycloak, before.keycloak);
        assert_ne!(ports.keycloak_management, before.keycloak_management);
        assert_eq!(
            ports.owned(Component::Gateway),
            before.owned(Component::Gateway)
        );
        ports.release();
        before.release();
    }

    #[test]
    fn the_stable_range_avoids_the_ephemeral_one() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_port_range("garbage"), None);
        assert_eq!(stable_range(&(32768..=60999)), 10_000..=32_767);
        assert_eq!(stable_range(&(1024..=40000)), 40_001..=65_535);
        assert_eq!(stable_range(&(1024..=65535)), 10_000..=65_535);
    }

    #[test]
    fn a_taken_port_is_reported() {
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
