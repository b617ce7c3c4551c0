//! Attack tokens. Two families: *forgeries* made from a real token and the IdP's public JWKS
//! alone (what any client can do), and *minted* tokens signed with a test key the IdP
//! publishes, so a refusal can only be for the claim that was made wrong (expiry, issuer,
//! audience), never for the signature. A minted token with unchanged claims is the control:
//! it must be accepted, or the minted negatives prove nothing.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::OidcError;
use crate::redact::Secret;

/// A key the IdP publishes in its JWKS and whose private half the harness holds (the local
/// environment imports one into the realm; an existing one may name a test key).
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// PKCS#8 PEM of an RSA key.
    pub private_key_pem: Secret,
    /// SubjectPublicKeyInfo DER of its public half, to find its `kid` in the JWKS.
    pub public_key_der: Vec<u8>,
}

/// Tokens made from a real one without any private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256, keyed with the PEM of the IdP's RSA public key (algorithm confusion).
    Hs256WithPublicKey,
    /// The signature kept, the header's `kid` naming no key.
    UnknownKid,
    /// `header.claims.` with the signature removed.
    StrippedSignature,
    /// `sub` and `preferred_username` changed, the original signature kept.
    TamperedClaims,
}

/// Tokens signed with the published test key, from a real token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted {
    /// The claims unchanged: the control, must be accepted.
    Resigned,
    /// `exp` ten minutes ago.
    Expired,
    /// `nbf` (and `iat`) ten minutes ahead.
    NotYetValid,
    /// `iss` of another realm on the same IdP.
    OtherIssuer,
    /// `aud` and `azp` of another client.
    WrongAudience,
}

const TEN_MINUTES: i64 = 600;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn split(token: &str) -> Result<(&str, &str, &str), OidcError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => Ok((h, c, s)),
        _ => Err(OidcError::Malformed(
            "expected 3 dot-separated segments".into(),
        )),
    }
}

fn decode_json(segment: &str) -> Result<Map<String, Value>, OidcError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|e| OidcError::Malformed(format!("segment is not base64url: {e}")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(OidcError::Malformed("segment is not a JSON object".into())),
    }
}

fn encode_json(map: &Map<String, Value>) -> String {
    b64(Value::Object(map.clone()).to_string().as_bytes())
}

/// Makes `forgery` of `token`; `jwks` is the IdP's published key set.
pub fn forge(token: &str, forgery: Forgery, jwks: &JwkSet) -> Result<String, OidcError> {
    let (header_b64, claims_b64, signature) = split(token)?;
    let mut header = decode_json(header_b64)?;
    Ok(match forgery {
        Forgery::AlgNone => {
            header.insert("alg".into(), json!("none"));
            format!("{}.{claims_b64}.", encode_json(&header))
        }
        Forgery::StrippedSignature => format!("{header_b64}.{claims_b64}."),
        Forgery::UnknownKid => {
            header.insert("kid".into(), json!("meshauth-no-such-key"));
            format!("{}.{claims_b64}.{signature}", encode_json(&header))
        }
        Forgery::TamperedClaims => {
            let mut claims = decode_json(claims_b64)?;
            claims.insert("sub".into(), json!("00000000-0000-0000-0000-00000000beef"));
            claims.insert("preferred_username".into(), json!("mallory"));
            format!("{header_b64}.{}.{signature}", encode_json(&claims))
        }
        Forgery::Hs256WithPublicKey => {
            let kid = header.get("kid").and_then(Value::as_str);
            let pem = rsa_public_key_pem(jwks, kid)?;
            let claims = Value::Object(decode_json(claims_b64)?);
            let mut hs = Header::new(Algorithm::HS256);
            hs.kid = kid.map(str::to_string);
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(pem.as_bytes()))
                .map_err(|e| OidcError::Malformed(format!("HS256 signing failed: {e}")))?
        }
    })
}

/// Signs `template`'s claims, changed as `minted` says, with the published test key.
pub fn mint(
    template: &str,
    minted: Minted,
    key: &SigningKey,
    jwks: &JwkSet,
    now: i64,
) -> Result<String, OidcError> {
    let (_, claims_b64, _) = split(template)?;
    let mut claims = decode_json(claims_b64)?;
    match minted {
        Minted::Resigned => {}
        Minted::Expired => {
            claims.insert("iat".into(), json!(now - 2 * TEN_MINUTES));
            claims.insert("exp".into(), json!(now - TEN_MINUTES));
        }
        Minted::NotYetValid => {
            claims.insert("iat".into(), json!(now + TEN_MINUTES));
            claims.insert("nbf".into(), json!(now + TEN_MINUTES));
            claims.insert("exp".into(), json!(now + 3 * TEN_MINUTES));
        }
        Minted::OtherIssuer => {
            let issuer = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let other = match issuer.rsplit_once("/realms/") {
                Some((base, _)) => format!("{base}/realms/meshauth-other-realm"),
                None => format!("{}-other", issuer.trim_end_matches('/')),
            };
            claims.insert("iss".into(), json!(other));
        }
        Minted::WrongAudience => {
            claims.insert("aud".into(), json!("meshauth-other-client"));
            claims.insert("azp".into(), json!("meshauth-other-client"));
        }
    }
    if minted != Minted::Expired && minted != Minted::NotYetValid {
        // The template may be minutes old: keep the control and the other variants fresh so
        // only the changed claim can be the reason for a refusal.
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + TEN_MINUTES));
    }
    let kid = published_kid(jwks, &key.public_key_der).ok_or_else(|| {
        OidcError::Malformed(
            "the IdP's JWKS does not publish the harness's test signing key, so tokens signed \
             with it prove nothing (is the key imported into the realm?)"
                .into(),
        )
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    let encoding = EncodingKey::from_rsa_pem(key.private_key_pem.expose().as_bytes())
        .map_err(|e| OidcError::Malformed(format!("the test signing key is unusable: {e}")))?;
    jsonwebtoken::encode(&header, &Value::Object(claims), &encoding)
        .map_err(|e| OidcError::Malformed(format!("RS256 signing failed: {e}")))
}

/// The `kid` under which `jwks` publishes the RSA public key `spki_der`.
pub fn published_kid(jwks: &JwkSet, spki_der: &[u8]) -> Option<String> {
    jwks.keys.iter().find_map(|jwk| {
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return None;
        };
        let der = rsa_spki_der(&rsa.n, &rsa.e).ok()?;
        (der == spki_der)
            .then(|| jwk.common.key_id.clone())
            .flatten()
    })
}

/// PEM of the RSA key `kid` names in `jwks` (else its first RSA key), as an attacker who
/// fetched the JWKS would write it.
fn rsa_public_key_pem(jwks: &JwkSet, kid: Option<&str>) -> Result<String, OidcError> {
    let rsa_keys = jwks.keys.iter().filter_map(|jwk| match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => Some((jwk.common.key_id.as_deref(), rsa)),
        _ => None,
    });
    let mut first = None;
    for (key_id, rsa) in rsa_keys {
        if key_id == kid {
            first = Some(rsa);
            break;
        }
        first.get_or_insert(rsa);
    }
    let rsa = first.ok_or_else(|| OidcError::Malformed("the JWKS has no RSA key".into()))?;
    let der = rsa_spki_der(&rsa.n, &rsa.e)?;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    Ok(format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    ))
}

/// SubjectPublicKeyInfo DER of an RSA key given as a JWK's base64url `n` and `e`.
pub fn rsa_spki_der(n: &str, e: &str) -> Result<Vec<u8>, OidcError> {
    let decode = |v: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|e| OidcError::Malformed(format!("JWK number is not base64url: {e}")))
    };
    let rsa_public_key = der(
        0x30,
        &[der_integer(&decode(n)?), der_integer(&decode(e)?)].concat(),
    );
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bit_string = der(0x03, &[&[0u8][..], &rsa_public_key].concat());
    Ok(der(0x30, &[&RSA_ENCRYPTION[..], &bit_string].concat()))
}

fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let start = magnitude
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(magnitude.len().saturating_sub(1));
        &magnitude[start..]
    };
    let mut body = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(trimmed);
    der(0x02, &body)
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        Ok(Self {
            private_key_pem: Secret::new(pair.serialize_pem()),
            public_key_der: rcgen::PublicKeyData::subject_public_key_info(&pair),
        })
    }

    /// From a PKCS#8 PEM file's text.
    pub fn from_pem(pem: &str) -> Result<Self, rcgen::Error> {
        let pair = rcgen::KeyPair::from_pem(pem)?;
        Ok(Self {
            private_key_pem: Secret::new(pair.serialize_pem()),
            public_key_der: rcgen::PublicKeyData::subject_public_key_info(&pair),
        })
    }

    /// The public key as a JWK (`n`, `e`), for tests that stand in for the IdP's JWKS.
    pub fn jwk(&self, kid: &str) -> Result<Value, OidcError> {
        let (n, e) = spki_modulus_exponent(&self.public_key_der)
            .ok_or_else(|| OidcError::Malformed("not an RSA SubjectPublicKeyInfo".into()))?;
        Ok(
            json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": b64(&e)}),
        )
    }
}

/// Reads `n` and `e` back out of an RSA SubjectPublicKeyInfo DER.
fn spki_modulus_exponent(der_bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *input.first()?;
        let first = *input.get(1)? as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let count = first & 0x7f;
            let bytes = input.get(2..2 + count)?;
            (
                bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize),
                2 + count,
            )
        };
        let body = input.get(header..header + len)?;
        Some((tag, body, &input[header + len..]))
    }
    let (_, spki, _) = read(der_bytes)?;
    let (_, _algorithm, rest) = read(spki)?;
    let (_, bit_string, _) = read(rest)?;
    let (_, rsa_key, _) = read(bit_string.get(1..)?)?;
    let (_, n, rest) = read(rsa_key)?;
    let (_, e, _) = read(rest)?;
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    Some((strip(n), strip(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn key_and_jwks() -> (SigningKey, JwkSet) {
        let key = SigningKey::generate().unwrap();
        let jwks: JwkSet =
            serde_json::from_value(json!({"keys": [key.jwk("idp-key").unwrap()]})).unwrap();
        (key, jwks)
    }

    fn claims(token: &str) -> Map<String, Value> {
        decode_json(token.split('.').nth(1).unwrap()).unwrap()
    }

    fn header(token: &str) -> Map<String, Value> {
        decode_json(token.split('.').next().unwrap()).unwrap()
    }

    fn real_token(key: &SigningKey, jwks: &JwkSet) -> String {
        let template = format!(
            "e30.{}.c2ln",
            encode_json(
                json!({"iss": "https://idp.test/realms/r", "sub": "alice-id", "aud": "app", "exp": 1, "iat": 0})
                    .as_object()
                    .unwrap()
            )
        );
        mint(&template, Minted::Resigned, key, jwks, 1_000).unwrap()
    }

    #[test]
    fn the_public_key_round_trips_through_the_jwk_and_is_found_by_kid() {
        let (key, jwks) = key_and_jwks();
        assert_eq!(
            published_kid(&jwks, &key.public_key_der).as_deref(),
            Some("idp-key")
        );
        let other = SigningKey::generate().unwrap();
        assert_eq!(published_kid(&jwks, &other.public_key_der), None);
    }

    #[test]
    fn minted_tokens_verify_with_the_published_key_and_change_only_their_claim() {
        let (key, jwks) = key_and_jwks();
        let token = real_token(&key, &jwks);
        let decoding = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(header(&token)["kid"], "idp-key");

        let expired = mint(&token, Minted::Expired, &key, &jwks, 1_000).unwrap();
        assert_eq!(claims(&expired)["exp"], 400);
        let early = mint(&token, Minted::NotYetValid, &key, &jwks, 1_000).unwrap();
        assert_eq!(claims(&early)["nbf"], 1_600);
        let issuer = mint(&token, Minted::OtherIssuer, &key, &jwks, 1_000).unwrap();
        assert_eq!(
            claims(&issuer)["iss"],
            "https://idp.test/realms/meshauth-other-realm"
        );
        let audience = mint(&token, Minted::WrongAudience, &key, &jwks, 1_000).unwrap();
        assert_eq!(claims(&audience)["aud"], "meshauth-other-client");
        for token in [&expired, &early, &issuer, &audience] {
            jsonwebtoken::decode::<Value>(token, &decoding, &{
                let mut v = Validation::new(Algorithm::RS256);
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                v
            })
            .unwrap();
            assert_eq!(claims(token)["sub"], "alice-id");
        }
    }

    #[test]
    fn minting_refuses_a_key_the_idp_does_not_publish() {
        let (key, jwks) = key_and_jwks();
        let token = real_token(&key, &jwks);
        let stranger = SigningKey::generate().unwrap();
        let error = mint(&token, Minted::Resigned, &stranger, &jwks, 0).unwrap_err();
        assert!(error.to_string().contains("does not publish"), "{error}");
    }

    #[test]
    fn forgeries_keep_the_claims_and_break_exactly_one_thing() {
        let (key, jwks) = key_and_jwks();
        let token = real_token(&key, &jwks);
        let signature = token.rsplit('.').next().unwrap();

        let none = forge(&token, Forgery::AlgNone, &jwks).unwrap();
        assert_eq!(header(&none)["alg"], "none");
        assert!(none.ends_with('.'));

        let stripped = forge(&token, Forgery::StrippedSignature, &jwks).unwrap();
        assert_eq!(stripped, format!("{}.", token.rsplit_once('.').unwrap().0));

        let kid = forge(&token, Forgery::UnknownKid, &jwks).unwrap();
        assert_eq!(header(&kid)["kid"], "meshauth-no-such-key");
        assert!(kid.ends_with(signature));

        let tampered = forge(&token, Forgery::TamperedClaims, &jwks).unwrap();
        assert_eq!(claims(&tampered)["preferred_username"], "mallory");
        assert!(tampered.ends_with(signature));

        let hs = forge(&token, Forgery::Hs256WithPublicKey, &jwks).unwrap();
        assert_eq!(header(&hs)["alg"], "HS256");
        let pem = rsa_public_key_pem(&jwks, Some("idp-key")).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjAN"),
            "{pem}"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(&hs, &DecodingKey::from_secret(pem.as_bytes()), &validation)
            .expect("keyed with the public key's PEM, as a confused verifier would check it");
        assert_eq!(claims(&hs)["sub"], "alice-id");
    }
}
