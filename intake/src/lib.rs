//! The PaySys card intake: the only public TLS listener in the card-data environment.
//! A buyer's browser loads the card frame from it and posts the card to it under a
//! one-time grant the gateway signed; the intake checks the grant and tokenizes the card
//! at the vault over mTLS as `spiffe://paysys/intake`, bound to the grant's checkout.
//!
//! It holds no keys (only the gateway's public grant keys), writes nothing to disk,
//! logs no card data (bodies are never logged; parser messages are card-safe), and keeps
//! a card in zeroizing wrappers for the one request it is in. It links neither the
//! vault's nor the gateway's crates (`tests/tests/trust_boundary.rs`).
//!
//! # Layout
//!
//! * `main.rs` — the `paysys-intake` binary: parses flags and calls [`cli::main`].
//! * [`cli`] — `serve` and its flags; the listening line.
//! * [`router`] (here) — the routes: `GET /v1/frame` (the card frame with its CSP),
//!   `GET /v1/frame.js` and `/v1/frame.css` (from the widget's inventory),
//!   `POST /v1/cards`, `GET /health`; security headers on every answer.
//! * [`cards`] — `POST /v1/cards`: origin, body, grant, framing origin, address limit,
//!   card number, then the vault.
//! * [`vault`] — `POST /v1/tokens` at the vault over mTLS, pooled connections.
//! * [`rate_limit`] — a token bucket per client address.
//! * [`error`] — the error type, its stable codes, and the one place it becomes a
//!   response.
//! * [`run`] (here) — serve the router on a bound listener with the shared accept loop
//!   ([`paysys_server`]) until shutdown.

#![forbid(unsafe_code)]

pub mod cards;
pub mod cli;
pub mod error;
pub mod rate_limit;
pub mod vault;

use crate::error::IntakeError;
use crate::rate_limit::AddressRateLimiter;
use crate::vault::VaultTokens;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paysys_widget::grant::GrantVerifier;
use paysys_widget::pages::{self, FrameView, Lang};
use std::future::Future;
use std::sync::Arc;

/// Where the frame's script and style are served (the frame's `asset_base`).
pub const ASSET_BASE: &str = "/v1/";
/// The assets the intake serves: the card frame's own, nothing of the checkout page.
pub const FRAME_ASSETS: [&str; 2] = ["frame.js", "frame.css"];

/// Everything a request needs.
#[derive(Debug)]
pub struct Intake {
    /// The intake's own web origin (`--public-url`), e.g. `https://127.0.0.1:8444`:
    /// the only `Origin` a card may be posted from.
    pub public_origin: String,
    /// The gateway's public grant keys.
    pub grants: GrantVerifier,
    /// The vault's token API.
    pub vault: VaultTokens,
    /// Cards per client address.
    pub address_limit: AddressRateLimiter,
}

/// The routes, each answer with the security headers; bodies over `max_body_bytes` are
/// refused (`body_too_large`).
pub fn router(intake: Arc<Intake>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/frame", get(frame))
        .route("/v1/{asset}", get(frame_asset))
        .route("/v1/cards", post(cards::post_card))
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .fallback(|| async { IntakeError::NotFound })
        .method_not_allowed_fallback(|| async { IntakeError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(intake)
}

/// On every answer: no sniffing, no referrer, no caching unless the answer says
/// otherwise (the assets), and never framed except where the frame's own CSP says.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    headers.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    response
}

/// `GET /v1/frame` query: the page allowed to frame the form, and the buyer's language.
#[derive(Debug, serde::Deserialize)]
struct FrameQuery {
    origin: Option<String>,
    lang: Option<String>,
}

/// The card frame, frameable by `origin` only (`frame-ancestors`), in `lang`. The grant
/// is not here: it stays in the URL fragment, which never reaches a server.
async fn frame(query: Result<Query<FrameQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(query)) = query else { return IntakeError::FrameOriginInvalid.into_response() };
    let Some(parent_origin) = query.origin.as_deref().and_then(paysys_widget::origin::parse_origin) else {
        return IntakeError::FrameOriginInvalid.into_response();
    };
    let lang = match query.lang.as_deref() {
        None => Lang::default(),
        Some(text) => match Lang::parse(text) {
            Some(lang) => lang,
            None => return IntakeError::FrameLangInvalid.into_response(),
        },
    };
    let page = pages::frame_page(&FrameView { parent_origin, lang, asset_base: ASSET_BASE });
    let Ok(csp) = HeaderValue::from_str(&page.csp) else {
        // parse_origin admits no character a header cannot carry; a page that still
        // makes one is not served without its policy.
        tracing::error!("the frame's CSP is not a valid header value");
        return IntakeError::FrameOriginInvalid.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        page.html,
    )
        .into_response()
}

/// `GET /v1/frame.js`, `/v1/frame.css`: the frame's script and style from the widget's
/// inventory (the page pins them by Subresource Integrity). Anything else is not found.
async fn frame_asset(Path(name): Path<String>) -> Response {
    let Some(asset) = FRAME_ASSETS.contains(&name.as_str()).then(|| pages::asset(&name)).flatten() else {
        return IntakeError::NotFound.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin")),
        ],
        asset.body,
    )
        .into_response()
}

/// Serve the intake on a bound `listener` over TLS until `shutdown` completes, bodies
/// up to `max_body_bytes`, connections under `limits`.
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    intake: Arc<Intake>,
    max_body_bytes: usize,
    limits: paysys_server::TransportLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = paysys_server::ServeOptions { limits, client_certificates: None };
    let app = router(intake, max_body_bytes);
    paysys_server::serve_with(listener, Some(tls), app, paysys_server::admit_all, options, shutdown).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rate_limit::AddressLimit;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        paysys_server::tls_files::install_crypto_provider();
        let dir = std::env::temp_dir();
        // The vault is never called by these tests; a CA file is needed to build the client.
        // One file per call: the tests run in parallel and each removes its own.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ca = dir.join(format!("paysys-intake-unit-ca-{}-{call}.pem", std::process::id()));
        std::fs::write(&ca, "").unwrap();
        let tls = paysys_vault_client::ClientTls::new(&ca, None, paysys_vault_client::HttpVersion::Http1).unwrap();
        let _ = std::fs::remove_file(&ca);
        let intake = Intake {
            public_origin: "https://127.0.0.1:8444".into(),
            grants: GrantVerifier::new(),
            vault: VaultTokens::new(tls, "https://127.0.0.1:1"),
            address_limit: AddressRateLimiter::new(AddressLimit { per_second: 1.0, burst: 10 }),
        };
        router(Arc::new(intake), 8192)
    }

    async fn get(uri: &str) -> (u16, axum::http::HeaderMap, String) {
        let response = app().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_frame_may_be_framed_by_its_origin_only_and_is_never_cached() {
        let (status, headers, html) = get("/v1/frame?origin=https%3A%2F%2Fshop.example&lang=ru").await;
        assert_eq!(status, 200);
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors https://shop.example;"), "{csp}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(html.contains("lang=\"ru\"") && html.contains("/v1/frame.js"), "{html}");
        for bad in
            ["", "?origin=https://shop.example/", "?origin=*", "?origin=https%3A%2F%2Fa.example%20https%3A%2F%2Fb"]
        {
            let (status, headers, body) = get(&format!("/v1/frame{bad}")).await;
            assert_eq!(status, 400, "{bad}");
            assert!(body.contains("origin_invalid"), "{body}");
            assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
        }
        let (status, _, body) = get("/v1/frame?origin=https%3A%2F%2Fshop.example&lang=de").await;
        assert_eq!((status, body.contains("lang_invalid")), (400, true));
    }

    #[tokio::test]
    async fn only_the_frames_own_assets_are_served() {
        for name in FRAME_ASSETS {
            let (status, headers, body) = get(&format!("/v1/{name}")).await;
            assert_eq!(status, 200, "{name}");
            assert_eq!(body, pages::asset(name).unwrap().body);
            assert_eq!(headers[header::CONTENT_TYPE], pages::asset(name).unwrap().content_type);
        }
        for name in ["checkout.js", "paysys.js", "..%2Fsecret", "frame.html"] {
            assert_eq!(get(&format!("/v1/{name}")).await.0, 404, "{name}");
        }
        let (status, _, body) = get("/v1/cards").await;
        assert_eq!((status, body.contains("method_not_allowed")), (405, true));
    }
}
