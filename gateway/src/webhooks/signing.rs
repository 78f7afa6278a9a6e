//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">` under the endpoint's `whsec_<base64 key>`
//! secret, space-separated when more than one secret is current (during a rotation the
//! partner can verify with either), so partners verify with the existing libraries.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use std::fmt;
use zeroize::Zeroizing;

/// The prefix of a secret as partners see it.
const PREFIX: &str = "whsec_";
/// Key bytes of a secret the gateway makes (the spec allows 24 to 64).
const KEY_LEN: usize = 32;

/// An endpoint's signing secret. Not `Clone`; `Debug` prints nothing of it; the text is
/// read only through [`WebhookSecret::expose_secret`] (shown once, when made).
pub struct WebhookSecret {
    text: Zeroizing<String>,
    key: ring::hmac::Key,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(HMAC-SHA256, [REDACTED])")
    }
}

/// A secret text that is not `whsec_` and base64 of 24 to 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by base64 of 24 to 64 bytes")]
pub struct MalformedSecret;

impl WebhookSecret {
    /// A fresh random secret.
    pub fn generate() -> WebhookSecret {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let text = Zeroizing::new(format!("{PREFIX}{}", STANDARD.encode(bytes.as_ref())));
        WebhookSecret { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes.as_ref()), text }
    }

    /// Parse `whsec_<base64>` (as stored, once opened).
    pub fn from_text(text: &str) -> Result<WebhookSecret, MalformedSecret> {
        let encoded = text.strip_prefix(PREFIX).ok_or(MalformedSecret)?;
        let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| MalformedSecret)?);
        if !(24..=64).contains(&bytes.len()) {
            return Err(MalformedSecret);
        }
        Ok(WebhookSecret {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
            text: Zeroizing::new(text.to_owned()),
        })
    }

    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(webhook_id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

/// The `webhook-signature` header value: one `v1,…` per current secret, the newest
/// first, separated by spaces.
pub fn signature_header(secrets: &[&WebhookSecret], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(webhook_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The example of the Standard Webhooks reference libraries' tests, whose expected
    /// signature was also recomputed by hand with Python's `hmac` module (an
    /// implementation independent of ring):
    /// `base64(hmac.new(b64decode(secret[6:]), f"{id}.{ts}.{body}".encode(), sha256).digest())`.
    #[test]
    fn signs_the_specs_example() {
        let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_sends_both_signatures() {
        let (new, old) = (WebhookSecret::generate(), WebhookSecret::generate());
        let header = signature_header(&[&new, &old], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]);
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn secrets_are_redacted_and_checked() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose_secret().starts_with("whsec_"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret(HMAC-SHA256, [REDACTED])");
        assert_eq!(
            WebhookSecret::from_text(secret.expose_secret()).unwrap().sign("a", 1, b""),
            secret.sign("a", 1, b"")
        );
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert!(WebhookSecret::from_text(bad).is_err(), "{bad}");
        }
    }
}
