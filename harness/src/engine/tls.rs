//! What the gateway's TLS listener agrees to: a current browser's offer must be taken (the
//! control), and a legacy client's — TLS 1.0 or 1.1, or only CBC suites — refused. A refusal
//! counts only as a TLS alert, or as a closed connection while the control on the same
//! listener was taken; silence proves nothing.

use url::Url;

use super::{Engine, StepOutput};
use crate::browser::tls_hello::{AEAD_SUITES, CBC_SUITES, HelloAnswer, Offer, TlsVersion, ask};
use crate::check::{CheckResult, Severity};
use crate::scenario::TlsOfferKind;

impl Engine {
    pub(super) async fn tls_offers(
        &self,
        url: &str,
        offers: &[TlsOfferKind],
    ) -> Result<StepOutput, String> {
        let url = self.url(url)?;
        if url.scheme() != "https" {
            return Ok(StepOutput {
                checks: vec![
                    CheckResult::new(
                        "TLS listener",
                        false,
                        "the app served over HTTPS",
                        format!(
                            "{} is plain HTTP: sessions, tokens and passwords cross the network \
                             readable; serve it over HTTPS (an HTTPS server on the Gateway)",
                            url.as_str()
                        ),
                    )
                    .with_severity(Severity::High),
                ],
                jwt: None,
            });
        }
        let (host, port, server_name) = target(&url)?;
        let mut answers = Vec::new();
        // The control first, so that every refusal after it is judged against it.
        let mut ordered: Vec<TlsOfferKind> = offers.to_vec();
        ordered.sort_by_key(|kind| *kind != TlsOfferKind::Current);
        for kind in ordered {
            let answer = ask(&host, port, server_name.as_deref(), &offer(kind)).await;
            answers.push((kind, answer));
        }
        Ok(StepOutput {
            checks: judge_offers(&answers),
            jwt: None,
        })
    }
}

/// The host to connect to, its port, and the SNI a browser sends (none for an IP address).
fn target(url: &Url) -> Result<(String, u16, Option<String>), String> {
    let host = url.host().ok_or_else(|| format!("{url} has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    Ok(match host {
        url::Host::Domain(name) => (name.to_string(), port, Some(name.to_string())),
        url::Host::Ipv4(ip) => (ip.to_string(), port, None),
        url::Host::Ipv6(ip) => (ip.to_string(), port, None),
    })
}

pub(super) fn offer(kind: TlsOfferKind) -> Offer {
    let (version, suites) = match kind {
        TlsOfferKind::Current => (TlsVersion::TLS1_2, AEAD_SUITES.to_vec()),
        TlsOfferKind::Tls1_0 => (TlsVersion::TLS1_0, CBC_SUITES.to_vec()),
        TlsOfferKind::Tls1_1 => (TlsVersion::TLS1_1, CBC_SUITES.to_vec()),
        TlsOfferKind::Tls1_2Cbc => (TlsVersion::TLS1_2, CBC_SUITES.to_vec()),
    };
    Offer { version, suites }
}

fn offer_name(kind: TlsOfferKind) -> &'static str {
    match kind {
        TlsOfferKind::Current => "TLS 1.2 with forward-secret AEAD suites (the control)",
        TlsOfferKind::Tls1_0 => "a TLS 1.0 client",
        TlsOfferKind::Tls1_1 => "a TLS 1.1 client",
        TlsOfferKind::Tls1_2Cbc => "a TLS 1.2 client offering only CBC suites",
    }
}

/// One check per offer, in the order asked.
pub(super) fn judge_offers(
    answers: &[(TlsOfferKind, Result<HelloAnswer, String>)],
) -> Vec<CheckResult> {
    let control_taken = answers.iter().any(|(kind, answer)| {
        *kind == TlsOfferKind::Current && matches!(answer, Ok(HelloAnswer::ServerHello { .. }))
    });
    answers
        .iter()
        .map(|(kind, answer)| {
            let name = format!("tls offer: {}", offer_name(*kind));
            let actual = match answer {
                Ok(answer) => answer.describe(),
                Err(error) => error.clone(),
            };
            if *kind == TlsOfferKind::Current {
                let taken = matches!(
                    answer,
                    Ok(HelloAnswer::ServerHello { version, suite })
                        if *version == TlsVersion::TLS1_2 && !suite.is_cbc()
                );
                return CheckResult::new(
                    name,
                    taken,
                    "a ServerHello with TLS 1.2 and an AEAD suite",
                    if taken {
                        actual
                    } else {
                        format!(
                            "{actual}: a current browser cannot connect, and the legacy offers' \
                             refusals prove nothing"
                        )
                    },
                );
            }
            let expected = "refused: a TLS alert, or the connection closed while the control \
                            was taken";
            let (passed, actual) = match answer {
                Ok(HelloAnswer::ServerHello { version, suite }) => (
                    false,
                    format!(
                        "{actual}: the listener {}; set the Gateway server's \
                         tls.minProtocolVersion to TLSV1_2 and its tls.cipherSuites to \
                         ECDHE AEAD suites only",
                        if version.0 < TlsVersion::TLS1_2.0 {
                            format!("speaks {}", version.name())
                        } else {
                            format!("takes the CBC suite {}", suite.name())
                        }
                    ),
                ),
                Ok(HelloAnswer::Alert { .. }) => (true, actual),
                Ok(HelloAnswer::Closed) if control_taken => (true, actual),
                Ok(HelloAnswer::Closed) => (
                    false,
                    format!("{actual}, and the control was not taken either: inconclusive"),
                ),
                Ok(HelloAnswer::Silent | HelloAnswer::NotTls { .. }) | Err(_) => (
                    false,
                    format!("{actual}: neither an answer nor a refusal, inconclusive"),
                ),
            };
            CheckResult::new(name, passed, expected, actual).with_severity(Severity::Medium)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::tls_hello::{CipherSuite, client_hello, parse_answer};

    fn hello(version: u16, suite: u16) -> HelloAnswer {
        HelloAnswer::ServerHello {
            version: TlsVersion(version),
            suite: CipherSuite(suite),
        }
    }

    #[test]
    fn legacy_offers_taken_are_findings_refusals_pass_only_beside_a_taken_control() {
        let checks = judge_offers(&[
            (TlsOfferKind::Current, Ok(hello(0x0303, 0xc02f))),
            (
                TlsOfferKind::Tls1_0,
                Ok(HelloAnswer::Alert { description: 70 }),
            ),
            (TlsOfferKind::Tls1_1, Ok(hello(0x0302, 0xc013))),
            (TlsOfferKind::Tls1_2Cbc, Ok(HelloAnswer::Closed)),
        ]);
        let verdicts: Vec<bool> = checks.iter().map(|c| c.passed).collect();
        assert_eq!(verdicts, [true, true, false, true]);
        assert!(
            checks[2].actual.contains("speaks TLS 1.1"),
            "{}",
            checks[2].actual
        );

        let without_control = judge_offers(&[
            (TlsOfferKind::Current, Ok(HelloAnswer::Silent)),
            (TlsOfferKind::Tls1_2Cbc, Ok(HelloAnswer::Closed)),
            (TlsOfferKind::Tls1_0, Err("connecting: refused".into())),
        ]);
        assert!(without_control.iter().all(|c| !c.passed));
        assert!(without_control[1].actual.contains("inconclusive"));
        assert!(without_control[2].actual.contains("inconclusive"));
    }

    #[test]
    fn a_cbc_suite_at_tls_1_2_is_a_finding() {
        let checks = judge_offers(&[
            (TlsOfferKind::Current, Ok(hello(0x0303, 0xc02b))),
            (TlsOfferKind::Tls1_2Cbc, Ok(hello(0x0303, 0xc027))),
        ]);
        assert!(!checks[1].passed);
        assert!(checks[1].actual.contains("ECDHE-RSA-AES128-SHA256"));
    }

    #[test]
    fn the_client_hello_is_well_formed_and_answers_parse() {
        let record = client_hello(&offer(TlsOfferKind::Tls1_1), Some("app.example"));
        assert_eq!(&record[..3], &[0x16, 0x03, 0x01]);
        let length = usize::from(u16::from_be_bytes([record[3], record[4]]));
        assert_eq!(record.len(), 5 + length);
        assert_eq!(record[5], 0x01);
        assert_eq!(&record[9..11], &[0x03, 0x02]);

        // A fatal protocol_version alert, as BoringSSL sends one.
        assert_eq!(
            parse_answer(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]),
            Some(HelloAnswer::Alert { description: 70 })
        );
        // A partial record waits for more bytes; an HTTP answer is not TLS.
        assert_eq!(parse_answer(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02]), None);
        assert!(matches!(
            parse_answer(b"HTTP/1.1 400 Bad Request\r\n"),
            Some(HelloAnswer::NotTls { .. })
        ));
        let mut server_hello = vec![
            0x16, 0x03, 0x03, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x03,
        ];
        server_hello.extend_from_slice(&[7; 32]);
        server_hello.extend_from_slice(&[0x00, 0xc0, 0x2f, 0x00]);
        assert_eq!(parse_answer(&server_hello), Some(hello(0x0303, 0xc02f)));
    }
}
