//! The merchant's JSON-RPC client for the gateway: `POST /rpc` with the `Auth` header
//!
//! ```text
//! Auth: {service_id}-{hex HMAC-SHA256(secret, ts + "." + raw_body)}-{ts}     (ts in ms)
//! ```
//!
//! written the way a merchant writes it, with `ring` and not with the gateway's own
//! code: the gateway's tests check that its verifier accepts these headers
//! (`gateway/tests/auth_signing.rs`), so the two cannot drift apart.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `Auth` header for `body` sent at `timestamp_ms` (Unix milliseconds) by the
/// merchant service `service_id` with API secret `secret`.
pub fn auth_header(service_id: &str, secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp_ms}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    format!("{service_id}-{}-{timestamp_ms}", hex::encode(tag.as_ref()))
}

/// Now, in Unix milliseconds (the `Auth` header's clock).
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

/// A merchant's client for a gateway served over plain HTTP (`http://127.0.0.1:PORT`).
/// Every call opens a fresh HTTP/1.1 connection.
#[derive(Debug, Clone)]
pub struct RpcClient {
    /// `http://HOST:PORT`.
    pub url: String,
    pub service_id: String,
    /// The merchant's API secret, as `merchant create` printed it.
    pub secret: String,
}

impl RpcClient {
    pub fn new(url: &str, service_id: &str, secret: &str) -> RpcClient {
        RpcClient { url: url.to_owned(), service_id: service_id.to_owned(), secret: secret.to_owned() }
    }

    /// The `Auth` header for `body` at `timestamp_ms`.
    pub fn sign_at(&self, body: &[u8], timestamp_ms: i64) -> String {
        auth_header(&self.service_id, &self.secret, timestamp_ms, body)
    }

    /// The `Auth` header for `body`, now.
    pub fn sign(&self, body: &[u8]) -> String {
        self.sign_at(body, now_ms())
    }

    /// POST raw `body` to `/rpc` with `auth` as the `Auth` header (if any): the status
    /// and the JSON body (`null` when empty).
    pub async fn post(&self, body: &[u8], auth: Option<String>) -> (u16, Value) {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(auth) = auth {
            headers.push(("auth", auth));
        }
        let (status, _, bytes) = self.send("POST", "/rpc", &headers, body).await;
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, value)
    }

    /// Any request without the `Auth` header (the browser and ACS facing endpoints):
    /// status, `Location` header, body text.
    pub async fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
        let (status, location, bytes) =
            self.send(method, path, &[("content-type", content_type.to_owned())], body).await;
        (status, location, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A signed single call; the whole response object.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.call_with_id(method, params, 1).await
    }

    /// A signed single call with its own request `id`: requests sent at the same moment
    /// must differ in something, or the gateway's replay guard takes them for one.
    pub async fn call_with_id(&self, method: &str, params: Value, id: u64) -> Value {
        let body =
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).unwrap();
        let (status, v) = self.post(&body, Some(self.sign(&body))).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The result of a call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// The error object of a call that must fail.
    pub async fn err(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_some(), "{method}: expected an error, got {v}");
        v["error"].clone()
    }

    /// One request on a fresh connection: status, `Location` header, body bytes.
    async fn send(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String, Bytes) {
        let addr = self.url.strip_prefix("http://").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", addr);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(body.to_vec()))).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, location, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::auth_header;

    #[test]
    fn the_auth_header_matches_an_independent_hmac() {
        // The launcher's reference vector (`launcher/src/rpc.rs`):
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"sec_1", b"1700000000000.{}", hashlib.sha256).hexdigest())'
        let header = auth_header("svc_1", "sec_1", 1_700_000_000_000, b"{}");
        assert_eq!(header, "svc_1-1a6fee3ecfa01a20db7bf413998308ec5344decf1d5b5e25bd4be3ea14dadece-1700000000000");
    }
}
