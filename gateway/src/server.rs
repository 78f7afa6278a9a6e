//! HTTP: `POST /rpc` (authenticated by the Auth header, then JSON-RPC), `GET /health`,
//! the 3-D Secure browser and ACS endpoints under `/3ds/` ([`crate::three_ds::routes`]),
//! and the payment widget's checkout pages under `/checkout/` and `/widget/`
//! ([`crate::checkout::routes`]);
//! served by the shared accept loop ([`paysys_server`]) over TLS (HTTP/1.1 and HTTP/2 by
//! ALPN) or, on loopback for development, plain HTTP.

use crate::auth::{verify_header, AuthError, AuthHeader};
use crate::payments::{now_ms, Gateway, Merchant};
use crate::rpc;
use crate::secrets::{MerchantSecret, SecretKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// How long an opened merchant secret is kept in memory before it is read (and
/// opened) again, so a merchant changed in the database takes effect within this time.
const MERCHANT_CACHE_TTL: Duration = Duration::from_secs(30);

/// What the HTTP layer needs.
#[derive(Debug)]
pub struct App {
    pub gateway: Arc<Gateway>,
    pub secret_key: SecretKey,
    /// Merchants by service id with their opened secrets: spares every request a
    /// database read and an AES-GCM open.
    pub merchants: MerchantCache,
}

impl App {
    pub fn new(gateway: Arc<Gateway>, secret_key: SecretKey) -> App {
        App { gateway, secret_key, merchants: MerchantCache::default() }
    }
}

/// A merchant with its opened secret, as of `loaded`.
#[derive(Debug, Clone)]
struct CachedMerchant {
    merchant: Merchant,
    secret: Arc<MerchantSecret>,
    loaded: std::time::Instant,
}

/// Known merchants by service id (only those that exist: an unknown service id is
/// looked up every time, so guessing fills nothing).
#[derive(Debug, Default)]
pub struct MerchantCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, CachedMerchant>>,
}

impl MerchantCache {
    fn get(&self, service_id: &str) -> Option<CachedMerchant> {
        let entries = self.entries.read().ok()?;
        entries.get(service_id).filter(|e| e.loaded.elapsed() < MERCHANT_CACHE_TTL).cloned()
    }

    fn put(&self, entry: CachedMerchant) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.loaded.elapsed() < MERCHANT_CACHE_TTL);
            entries.insert(entry.merchant.service_id.clone(), entry);
        }
    }
}

/// The router. `max_body_bytes` bounds every request body.
pub fn router(app: Arc<App>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/rpc", post(rpc_endpoint))
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .merge(crate::three_ds::routes::router())
        .merge(crate::checkout::routes::router())
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "not found"}))) })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(app)
}

async fn rpc_endpoint(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let (merchant, header) = match authenticate(&app, &headers, &body).await {
        Ok(m) => m,
        Err(reason) => {
            tracing::info!(%reason, "request refused: authentication");
            return Json(rpc::unauthorized_response()).into_response();
        }
    };
    let signed = rpc::SignedRequest { digest: header.replay_digest(&body), expires_at: header.replay_expires_at() };
    match rpc::handle_body(&app.gateway, &merchant, &signed, &body).await {
        Some(answer) => Json(answer).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Check the Auth header against the merchant's secret; the merchant and the verified
/// header.
async fn authenticate(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<(Merchant, AuthHeader), AuthError> {
    let value = headers.get("auth").ok_or(AuthError::Missing)?.to_str().map_err(|_| AuthError::Malformed)?;
    let header = AuthHeader::parse(value)?;
    header.check_fresh(now_ms())?;
    if let Some(cached) = app.merchants.get(&header.service_id) {
        verify_header(&header, &cached.secret, body, now_ms())?;
        return Ok((cached.merchant, header));
    }
    let record = app.gateway.store.merchant_by_service_id(&header.service_id).await.map_err(|e| {
        tracing::error!(error = %e, "merchant lookup failed");
        AuthError::UnknownService
    })?;
    let Some(record) = record else {
        // Same work as for a known merchant, so timing tells nothing about service ids.
        let _ = header.verify(&MerchantSecret::generate(), body);
        return Err(AuthError::UnknownService);
    };
    let secret = app.secret_key.open(&record.service_id, &record.secret_sealed).map_err(|e| {
        tracing::error!(error = %e, service_id = %record.service_id, "merchant secret does not open");
        AuthError::BadSignature
    })?;
    let merchant = Merchant {
        merchant_id: record.merchant_id,
        service_id: record.service_id,
        name: record.name,
        three_ds_auto: record.three_ds_auto,
    };
    let secret = Arc::new(secret);
    app.merchants.put(CachedMerchant {
        merchant: merchant.clone(),
        secret: secret.clone(),
        loaded: std::time::Instant::now(),
    });
    verify_header(&header, &secret, body, now_ms())?;
    Ok((merchant, header))
}
