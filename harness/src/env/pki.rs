//! Per-run certificate authorities: the gateway's serving certificate (as an Istio
//! `credentialName` secret would provide) and the mesh CA with its workload certificates (as
//! istiod's CA issues them: the SPIFFE identity in the URI SAN). Nothing is reused between runs.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::policy;
use crate::redact::Secret;

#[derive(Debug, thiserror::Error)]
#[error("could not generate the per-run certificates: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// PEM-encoded material for one run.
pub struct RunPki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for RunPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPki").finish_non_exhaustive()
    }
}

/// A workload's certificate from the mesh CA; the key is secret.
pub struct WorkloadCert {
    pub spiffe_id: String,
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// The mesh CA (istiod's role) and the certificates of the three workloads the matrix involves.
pub struct MeshPki {
    pub ca_cert_pem: String,
    /// The CA's key (PKCS#8), for the SDS server that issues the proxies' certificates.
    pub ca_key_pem: Secret,
    /// httpbin's sidecar (service account `httpbin`).
    pub httpbin: WorkloadCert,
    /// The in-mesh caller (service account `sleep`), played by the harness.
    pub sleep: WorkloadCert,
    /// The ingress gateway's mesh identity, for ISTIO_MUTUAL to the sidecar.
    pub gateway: WorkloadCert,
    /// Callers a sidecar must refuse at the handshake: `sleep`'s identity from a CA the mesh
    /// does not trust, `sleep`'s certificate from the mesh CA but expired, and one from the
    /// mesh CA for another trust domain.
    pub untrusted: WorkloadCert,
    pub expired: WorkloadCert,
    pub foreign_trust_domain: WorkloadCert,
    /// A server in-mesh clients must refuse: httpbin's identity from that untrusted CA.
    pub impostor_httpbin: WorkloadCert,
}

impl std::fmt::Debug for MeshPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshPki").finish_non_exhaustive()
    }
}

impl MeshPki {
    pub fn generate() -> Result<Self, PkiError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("meshauth per-run mesh CA (istiod)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = Secret::new(ca_key.serialize_pem());
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
        // Istio workload certificates carry only the URI SAN. The loopback IP is added to
        // httpbin's so that the harness's caller (which verifies by address, not by SPIFFE id)
        // can check the server chain; Envoy callers verify the URI SAN.
        let sleep_id = policy::spiffe_id(policy::NAMESPACE, "sleep");
        let httpbin = workload(&ca, policy::NAMESPACE, "httpbin", true)?;
        let httpbin_id = httpbin.spiffe_id.clone();
        let sleep = workload(&ca, policy::NAMESPACE, "sleep", false)?;
        let gateway = workload(&ca, "istio-system", "istio-ingressgateway", false)?;
        let mut other_ca_params = CertificateParams::new(Vec::<String>::new())?;
        other_ca_params.distinguished_name = name("another mesh's CA (not trusted here)");
        other_ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        other_ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let other_ca = CertifiedIssuer::self_signed(other_ca_params, KeyPair::generate()?)?;
        let day = time::Duration::days(1);
        let now = time::OffsetDateTime::now_utc();
        Ok(Self {
            ca_cert_pem: ca.pem(),
            ca_key_pem,
            httpbin,
            sleep,
            gateway,
            untrusted: certificate(&other_ca, &sleep_id, false, None)?,
            impostor_httpbin: certificate(&other_ca, &httpbin_id, true, None)?,
            expired: certificate(&ca, &sleep_id, false, Some((now - 3 * day, now - day)))?,
            foreign_trust_domain: certificate(
                &ca,
                &format!("spiffe://evil.example/ns/{}/sa/sleep", policy::NAMESPACE),
                false,
                None,
            )?,
        })
    }
}

fn workload(
    ca: &CertifiedIssuer<'_, KeyPair>,
    namespace: &str,
    service_account: &str,
    loopback_ip: bool,
) -> Result<WorkloadCert, PkiError> {
    let spiffe_id = policy::spiffe_id(namespace, service_account);
    certificate(ca, &spiffe_id, loopback_ip, None)
}

/// A workload certificate for `spiffe_id` from `ca`, valid now unless `validity` says else.
fn certificate(
    ca: &CertifiedIssuer<'_, KeyPair>,
    spiffe_id: &str,
    loopback_ip: bool,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> Result<WorkloadCert, PkiError> {
    let spiffe_id = spiffe_id.to_string();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.as_str().try_into()?)];
    if loopback_ip {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if let Some((not_before, not_after)) = validity {
        params.not_before = not_before;
        params.not_after = not_after;
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(WorkloadCert {
        spiffe_id,
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

impl RunPki {
    /// A CA and a server certificate valid for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, PkiError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("meshauth per-run CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params = CertificateParams::new(vec!["localhost".to_string()])?;
        server_params.distinguished_name = name("meshauth gateway");
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        Ok(Self {
            ca_cert_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "meshauth");
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_certificates_carry_their_spiffe_identity() {
        let mesh = MeshPki::generate().unwrap();
        assert_eq!(
            mesh.sleep.spiffe_id,
            "spiffe://cluster.local/ns/foo/sa/sleep"
        );
        assert_eq!(
            mesh.gateway.spiffe_id,
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
        );
        assert!(
            mesh.httpbin
                .cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            format!("{:?}", mesh.sleep.key_pem)
                .find("PRIVATE")
                .is_none()
        );
    }
}
