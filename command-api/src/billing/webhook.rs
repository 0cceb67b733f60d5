//! The signature of a payment provider's webhook: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<raw body>">` under the shared secret, as Stripe-style providers sign. The timestamp is
//! inside the signed text and must be within [`TOLERANCE_SECONDS`] of now, so a captured notice
//! cannot be replayed later; the MAC is compared in constant time.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How old (or how far in the future) a signed notice may be.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Checks `header` over `body`; the reason when it does not hold.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("The x-aihub-signature header has no valid t=.")?;
    if signatures.is_empty() {
        return Err("The x-aihub-signature header has no valid v1= signature.");
    }
    if (now.timestamp() - timestamp).abs() > TOLERANCE_SECONDS {
        return Err("The signature's timestamp is too far from now.");
    }
    for signature in signatures {
        if mac(secret, timestamp, body)?
            .verify_slice(&signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err("The signature does not match the body.")
}

/// The header a provider sends for `body` at `timestamp` (what tests and the docs' example use).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> Result<String, &'static str> {
    Ok(format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body)?.finalize().into_bytes())
    ))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, &'static str> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "The webhook secret cannot key an HMAC.")?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let now = Utc::now();
        let t = now.timestamp();
        let body = br#"{"invoice_id":"x","amount_cents":100,"reference":"ch_1"}"#;
        let header = sign("whsec", t, body).expect("signs");
        assert_eq!(verify("whsec", &header, body, now), Ok(()));
        assert!(
            verify("other", &header, body, now).is_err(),
            "another secret"
        );
        assert!(
            verify("whsec", &header, b"{}", now).is_err(),
            "another body"
        );
        let replayed = now + chrono::Duration::seconds(TOLERANCE_SECONDS + 1);
        assert!(verify("whsec", &header, body, replayed).is_err(), "too old");
        let moved = header.replace(&format!("t={t}"), &format!("t={}", t + 1));
        assert!(
            verify("whsec", &moved, body, now).is_err(),
            "the time is signed"
        );
        assert!(verify("whsec", "", body, now).is_err());
        assert!(verify("whsec", &format!("t={t},v1=zz"), body, now).is_err());
    }
}
