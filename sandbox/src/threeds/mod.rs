//! 3-D Secure 2: the directory server (DS) and the issuer's access control server (ACS),
//! per `/work/notes/3ds-contract.md` (summarised in `sandbox/README.md`). The gateway is
//! the 3DS Server; the AReq reaches the DS through the vault's relay (it carries the
//! card number), everything else comes from the gateway or the cardholder's browser.
//!
//! # Layout
//!
//! * [`messages`] — the EMV messages sent (PRes, ARes, Erro, RReq, CRes, results),
//!   status and error codes, base64url.
//! * [`validation`] — reading what arrives: PReq and AReq (with `Erro` codes), CReq and
//!   3DS Method data.
//! * [`outcome`] — the decisions: enrolled ranges, the test-card table, ECI by scheme,
//!   how a challenge ends.
//! * [`ds`] — DS routes: `POST /3ds/v2/preq`, `POST /3ds/v2/areq`,
//!   `GET /3ds/v2/results/{threeDSServerTransID}`.
//! * [`acs`] — ACS routes (browser, HTML): `POST /acs/v2/method`,
//!   `POST /acs/v2/challenge`, `POST /acs/v2/challenge/submit`; the RReq; the expiry of
//!   challenges nobody finished.
//! * [`pages`] — the HTML pages, escaping, headers (CSP, `no-store`).
//! * [`outbound`] — the HTTP(S) client that posts the RReq.
//!
//! State lives in the database (`store::three_ds`); the CAVV the issuer checks at
//! authorization is the one stored here.

pub mod acs;
pub mod ds;
pub mod messages;
pub mod outbound;
pub mod outcome;
pub mod pages;
pub mod validation;

use crate::api::Network;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use messages::Erro;
use paysys_server::clock::now_ms;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default of `--challenge-ttl-ms`: ten minutes.
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// How the DS and ACS are set up (`paysys-sandbox serve` flags).
#[derive(Debug, Clone)]
pub struct ThreeDsConfig {
    /// The sandbox's externally reachable base URL (no trailing slash), used in
    /// `acsURL` and `threeDSMethodURL`.
    pub public_url: String,
    /// An open challenge ends `N` reason `14` after this long.
    pub challenge_ttl: Duration,
    /// CA bundle for `https://` threeDSServerURLs (the RReq).
    pub rreq_ca: Option<PathBuf>,
}

impl ThreeDsConfig {
    /// Defaults for a sandbox listening on `port`: `https://localhost:{port}`, ten
    /// minutes per challenge, no RReq CA.
    pub fn for_port(port: u16) -> ThreeDsConfig {
        ThreeDsConfig {
            public_url: format!("https://localhost:{port}"),
            challenge_ttl: DEFAULT_CHALLENGE_TTL,
            rreq_ca: None,
        }
    }
}

/// What the 3-D Secure handlers share.
#[derive(Debug)]
pub struct ThreeDs {
    pub network: Arc<Network>,
    /// No trailing slash.
    pub public_url: String,
    pub challenge_ttl: Duration,
    rreq: outbound::OutboundClient,
}

impl ThreeDs {
    pub fn new(network: Arc<Network>, config: &ThreeDsConfig) -> anyhow::Result<Arc<ThreeDs>> {
        anyhow::ensure!(
            validation::is_http_url(&config.public_url) && !config.public_url.contains(['?', '#']),
            "--public-url must be an http:// or https:// URL without query or fragment"
        );
        Ok(Arc::new(ThreeDs {
            network,
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            challenge_ttl: config.challenge_ttl,
            rreq: outbound::OutboundClient::new(config.rreq_ca.as_deref())?,
        }))
    }
}

/// The DS and ACS routes.
pub fn router(three_ds: Arc<ThreeDs>) -> Router {
    Router::new()
        .route("/3ds/v2/preq", post(ds::preq))
        .route("/3ds/v2/areq", post(ds::areq))
        .route("/3ds/v2/results/{three_ds_server_trans_id}", get(ds::results))
        .route("/acs/v2/method", post(acs::method))
        .route("/acs/v2/challenge", post(acs::challenge))
        .route("/acs/v2/challenge/submit", post(acs::submit))
        .with_state(three_ds)
}

/// Why a DS request (JSON) failed; turned into a response in one place.
#[derive(Debug)]
#[non_exhaustive]
pub enum DsError {
    /// The message is refused: `400` with this EMV `Erro`.
    Erro(Box<Erro>),
    /// `GET /3ds/v2/results/{id}` for an id the DS never saw: `404 not_found`.
    UnknownTransaction,
    /// The body is larger than `--max-body-bytes`.
    BodyTooLarge,
    /// Anything else: `500 internal_error`, the detail logged.
    Internal(String),
}

impl From<StoreError> for DsError {
    fn from(e: StoreError) -> Self {
        DsError::Internal(e.to_string())
    }
}

impl IntoResponse for DsError {
    fn into_response(self) -> Response {
        match self {
            DsError::Erro(erro) => {
                tracing::info!(error_code = erro.error_code, detail = %erro.error_detail, "3DS message refused");
                (StatusCode::BAD_REQUEST, Json(erro)).into_response()
            }
            DsError::UnknownTransaction => {
                let body = serde_json::json!({ "error": {
                    "code": "not_found",
                    "message": "no 3-D Secure transaction with this threeDSServerTransID",
                }});
                (StatusCode::NOT_FOUND, Json(body)).into_response()
            }
            DsError::BodyTooLarge => crate::error::ApiError::BodyTooLarge.into_response(),
            DsError::Internal(detail) => crate::error::ApiError::Internal(detail).into_response(),
        }
    }
}

/// Why an ACS request (browser, HTML) failed; turned into a page in one place.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcsError {
    /// A `400` page with this message (never card data).
    BadRequest(String),
    /// A `500` page; the detail is logged.
    Internal(String),
}

impl From<StoreError> for AcsError {
    fn from(e: StoreError) -> Self {
        AcsError::Internal(e.to_string())
    }
}

impl IntoResponse for AcsError {
    fn into_response(self) -> Response {
        match self {
            AcsError::BadRequest(message) => {
                tracing::info!(%message, "ACS request refused");
                pages::error_page(&message)
            }
            AcsError::Internal(detail) => {
                tracing::error!(detail = %detail, "ACS request failed");
                pages::internal_error_page()
            }
        }
    }
}
