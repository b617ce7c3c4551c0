//! Session-cookie tampering, as an attacker holding a copy of the cookie could do it. The
//! auth proxy must refuse every variant: a refused tampered cookie proves the signature is
//! checked; one accepted means anyone can edit their session.

use base64::Engine as _;

use crate::scenario::Tampering;

/// `value` of cookie `name` changed as `how` says (`Removed` empties it: the caller deletes
/// the cookie). oauth2-proxy's signed cookies are
/// `payload|timestamp|signature`, the signature HMAC-SHA256 over name, payload and timestamp.
pub fn tamper(name: &str, value: &str, how: Tampering) -> String {
    let parts: Vec<&str> = value.split('|').collect();
    match (how, parts.as_slice()) {
        (Tampering::Removed, _) => String::new(),
        (Tampering::Value, [payload, timestamp, signature]) => {
            format!("{}|{timestamp}|{signature}", flip_middle(payload))
        }
        (Tampering::OtherSecret, [payload, timestamp, _]) => {
            let other_secret: [u8; 32] = rand::random();
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &other_secret);
            let mut context = aws_lc_rs::hmac::Context::with_key(&key);
            context.update(name.as_bytes());
            context.update(payload.as_bytes());
            context.update(timestamp.as_bytes());
            let signature =
                base64::engine::general_purpose::URL_SAFE.encode(context.sign().as_ref());
            format!("{payload}|{timestamp}|{signature}")
        }
        (Tampering::Unsigned, [payload, timestamp, _]) => format!("{payload}|{timestamp}|"),
        // Another proxy's format: change what can be changed without knowing it.
        (Tampering::Value, _) => flip_middle(value),
        (Tampering::OtherSecret, _) => flip_end(value),
        (Tampering::Unsigned, _) => value
            .rsplit_once('.')
            .map(|(head, _)| format!("{head}."))
            .unwrap_or_else(|| flip_end(value)),
    }
}

/// One character in the middle replaced by another of the same alphabet.
fn flip_middle(text: &str) -> String {
    flip_at(text, text.len() / 2)
}

fn flip_end(text: &str) -> String {
    flip_at(text, text.len().saturating_sub(2))
}

fn flip_at(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    if let Some(byte) = bytes.get_mut(index) {
        *byte = match *byte {
            b'A' => b'B',
            b'a' => b'b',
            b'0' => b'1',
            b'x' => b'y',
            _ if byte.is_ascii_alphanumeric() => b'A',
            _ => b'x',
        };
    }
    String::from_utf8(bytes).unwrap_or_else(|_| format!("{text}x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: &str = "cGF5bG9hZC1ieXRlcw|1795975376|c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn each_tampering_changes_exactly_its_part() {
        let value = tamper("_oauth2_proxy", COOKIE, Tampering::Value);
        let [payload, time, signature] = value.split('|').collect::<Vec<_>>()[..] else {
            panic!("{value}")
        };
        assert_ne!(payload, "cGF5bG9hZC1ieXRlcw");
        assert_eq!(payload.len(), "cGF5bG9hZC1ieXRlcw".len());
        assert_eq!((time, signature), ("1795975376", "c2lnbmF0dXJlLWJ5dGVz"));

        let resigned = tamper("_oauth2_proxy", COOKIE, Tampering::OtherSecret);
        let parts: Vec<&str> = resigned.split('|').collect();
        assert_eq!(parts[..2], ["cGF5bG9hZC1ieXRlcw", "1795975376"]);
        // An HMAC-SHA256 in base64url with padding, as oauth2-proxy writes it.
        assert_eq!(parts[2].len(), 44, "{resigned}");
        assert_ne!(parts[2], "c2lnbmF0dXJlLWJ5dGVz");

        assert_eq!(
            tamper("_oauth2_proxy", COOKIE, Tampering::Unsigned),
            "cGF5bG9hZC1ieXRlcw|1795975376|"
        );
    }

    #[test]
    fn other_formats_are_still_changed() {
        for how in [
            Tampering::Value,
            Tampering::OtherSecret,
            Tampering::Unsigned,
        ] {
            assert_ne!(tamper("session", "eyJhIjoxfQ.sig", how), "eyJhIjoxfQ.sig");
        }
    }
}
