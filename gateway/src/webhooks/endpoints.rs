//! The JSON-RPC methods of webhooks — `webhook.endpoint.create|list|update|delete|
//! rotate_secret`, `webhook.list`, `webhook.resend` — and their OpenRPC entries. Every
//! method works on the calling merchant's own endpoints and deliveries only.

use super::destination::{self, Refusal};
use super::signing::WebhookSecret;
use super::EventType;
use crate::error::RpcError;
use crate::payments::{now_ms, rfc3339, Gateway, Merchant};
use crate::rpc::redact_digit_runs;
use crate::secrets::SecretKey;
use crate::store::{
    DeliveryFilter, DeliveryStatus, EndpointStatus, WebhookAttemptRecord, WebhookDeliveryRecord, WebhookEndpointRecord,
};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The AAD label endpoint secrets are sealed under (with the endpoint id).
pub(crate) const SECRET_LABEL: &[u8] = b"paysys-gateway/webhook-secret/v1/";
/// Most endpoints per merchant.
pub const MAX_ENDPOINTS: usize = 16;
/// Most deliveries `webhook.list` returns at once.
pub const MAX_LIST_COUNT: i64 = 50;
/// Longest overlap of a rotated secret.
pub const MAX_ROTATION_OVERLAP_SEC: i64 = 7 * 24 * 3600;

/// Open an endpoint's sealed secret; `None` (logged) when it does not open.
pub(crate) fn open_secret(key: &SecretKey, endpoint_id: &str, sealed: &str) -> Option<WebhookSecret> {
    let opened =
        key.open_labeled(SECRET_LABEL, endpoint_id, sealed).ok().and_then(|t| WebhookSecret::from_text(&t).ok());
    if opened.is_none() {
        tracing::error!(%endpoint_id, "a webhook secret does not open under the gateway's key");
    }
    opened
}

fn new_endpoint_id() -> String {
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let tail: String = (0..24).map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())])).collect();
    format!("we_{tail}")
}

/// Run a `webhook.*` method.
pub async fn dispatch(
    gateway: &Gateway,
    merchant: &Merchant,
    method: &str,
    params: Map<String, Value>,
) -> Result<Value, RpcError> {
    match method {
        "webhook.endpoint.create" => create(gateway, merchant, parse(params)?).await,
        "webhook.endpoint.list" => {
            let _: NoParams = parse(params)?;
            let endpoints = gateway.store.webhook_endpoints(&merchant.merchant_id).await?;
            Ok(json!({ "endpoints": endpoints.iter().map(endpoint_view).collect::<Vec<_>>() }))
        }
        "webhook.endpoint.update" => update(gateway, merchant, parse(params)?).await,
        "webhook.endpoint.delete" => {
            let p: EndpointParams = parse(params)?;
            if !gateway.store.delete_webhook_endpoint(&merchant.merchant_id, &p.endpoint_id).await? {
                return Err(RpcError::NotFound);
            }
            Ok(json!({ "endpoint_id": p.endpoint_id, "deleted": true }))
        }
        "webhook.endpoint.rotate_secret" => rotate(gateway, merchant, parse(params)?).await,
        "webhook.list" => list(gateway, merchant, parse(params)?).await,
        "webhook.resend" => {
            let p: ResendParams = parse(params)?;
            let n = gateway
                .store
                .resend_webhook(&merchant.merchant_id, &p.webhook_id, p.endpoint_id.as_deref(), now_ms())
                .await?;
            if n == 0 {
                return Err(RpcError::NotFound);
            }
            Ok(json!({ "webhook_id": p.webhook_id, "resent": n }))
        }
        other => Err(RpcError::MethodNotFound(redact_digit_runs(&other.chars().take(64).collect::<String>()))),
    }
}

fn parse<T: DeserializeOwned>(params: Map<String, Value>) -> Result<T, RpcError> {
    serde_json::from_value(Value::Object(params))
        .map_err(|e| RpcError::InvalidParams(redact_digit_runs(&e.to_string())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    url: String,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateParams {
    endpoint_id: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointParams {
    endpoint_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateParams {
    endpoint_id: String,
    /// How long the old secret keeps signing beside the new one.
    #[serde(default)]
    overlap_sec: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    endpoint_id: Option<String>,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendParams {
    webhook_id: String,
    #[serde(default)]
    endpoint_id: Option<String>,
}

/// `None` (every event) for an absent list or `["*"]`; otherwise the named types.
fn checked_events(events: Option<Vec<String>>) -> Result<Option<Vec<EventType>>, RpcError> {
    let Some(names) = events else { return Ok(None) };
    if names.iter().any(|n| n == "*") {
        return Ok(None);
    }
    if names.is_empty() {
        return Err(RpcError::InvalidParams("events must name at least one event type (or \"*\")".into()));
    }
    let mut list = Vec::new();
    for name in &names {
        let t = EventType::parse(name).ok_or_else(|| {
            RpcError::InvalidParams(format!(
                "events: unknown event type {:?}",
                redact_digit_runs(&name.chars().take(40).collect::<String>())
            ))
        })?;
        if !list.contains(&t) {
            list.push(t);
        }
    }
    Ok(Some(list))
}

fn checked_description(d: Option<String>) -> Result<Option<String>, RpcError> {
    match d {
        Some(s) if s.chars().count() > 255 || s.chars().any(char::is_control) => {
            Err(RpcError::InvalidParams("description must be at most 255 printable characters".into()))
        }
        Some(s) if paysys_cardnum::contains_card_number(&s) => {
            Err(RpcError::InvalidParams("description must not contain a card number".into()))
        }
        other => Ok(other),
    }
}

/// The URL screened as at every delivery; a refusal is −32602 with the stable reason.
async fn checked_url(gateway: &Gateway, url: &str) -> Result<String, RpcError> {
    if paysys_cardnum::contains_card_number(url) {
        return Err(RpcError::InvalidParams("url must not contain a card number".into()));
    }
    let webhooks = &gateway.webhooks;
    match destination::screen(url, webhooks.config.policy, webhooks.resolver.as_ref()).await {
        Ok(checked) => Ok(checked.url.to_string()),
        Err(refusal) => Err(refused(&refusal)),
    }
}

fn refused(refusal: &Refusal) -> RpcError {
    RpcError::InvalidParams(format!("url refused ({}): {refusal}", refusal.reason()))
}

async fn owned_endpoint(
    gateway: &Gateway,
    merchant: &Merchant,
    endpoint_id: &str,
) -> Result<WebhookEndpointRecord, RpcError> {
    gateway
        .store
        .webhook_endpoint(endpoint_id)
        .await?
        .filter(|e| e.merchant_id == merchant.merchant_id)
        .ok_or(RpcError::NotFound)
}

async fn create(gateway: &Gateway, merchant: &Merchant, p: CreateParams) -> Result<Value, RpcError> {
    let events = checked_events(p.events)?;
    let description = checked_description(p.description)?;
    let url = checked_url(gateway, &p.url).await?;
    if gateway.store.webhook_endpoints(&merchant.merchant_id).await?.len() >= MAX_ENDPOINTS {
        return Err(RpcError::InvalidParams(format!("a merchant has at most {MAX_ENDPOINTS} webhook endpoints")));
    }
    let endpoint_id = new_endpoint_id();
    let secret = WebhookSecret::generate();
    let secret_sealed = gateway
        .webhooks
        .key
        .seal_labeled(SECRET_LABEL, &endpoint_id, secret.expose_secret())
        .map_err(|e| RpcError::Internal(e.to_string()))?;
    let now = now_ms();
    let record = WebhookEndpointRecord {
        endpoint_id,
        merchant_id: merchant.merchant_id.clone(),
        url,
        events,
        description,
        secret_sealed,
        previous_secret_sealed: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    gateway.store.insert_webhook_endpoint(&record).await?;
    tracing::info!(merchant_id = %merchant.merchant_id, endpoint_id = %record.endpoint_id, "webhook endpoint created");
    let mut view = endpoint_view(&record);
    if let Some(obj) = view.as_object_mut() {
        // Shown this once; the gateway keeps it sealed.
        obj.insert("secret".into(), Value::from(secret.expose_secret()));
    }
    Ok(view)
}

async fn update(gateway: &Gateway, merchant: &Merchant, p: UpdateParams) -> Result<Value, RpcError> {
    let mut record = owned_endpoint(gateway, merchant, &p.endpoint_id).await?;
    if let Some(url) = &p.url {
        record.url = checked_url(gateway, url).await?;
    }
    if p.events.is_some() {
        record.events = checked_events(p.events)?;
    }
    if p.description.is_some() {
        record.description = checked_description(p.description)?;
    }
    match p.enabled {
        Some(true) => {
            record.status = EndpointStatus::Enabled;
            record.disabled_reason = None;
            record.failing_since = None;
        }
        Some(false) => {
            record.status = EndpointStatus::Disabled;
            record.disabled_reason = Some("by_partner".into());
        }
        None => {}
    }
    record.updated_at = now_ms();
    if !gateway.store.update_webhook_endpoint(&record).await? {
        return Err(RpcError::NotFound);
    }
    Ok(endpoint_view(&record))
}

async fn rotate(gateway: &Gateway, merchant: &Merchant, p: RotateParams) -> Result<Value, RpcError> {
    let default_overlap = i64::try_from(gateway.webhooks.config.rotation_overlap.as_secs()).unwrap_or(86_400);
    let overlap = p.overlap_sec.unwrap_or(default_overlap);
    if !(0..=MAX_ROTATION_OVERLAP_SEC).contains(&overlap) {
        return Err(RpcError::InvalidParams(format!("overlap_sec must be 0 to {MAX_ROTATION_OVERLAP_SEC}")));
    }
    let mut record = owned_endpoint(gateway, merchant, &p.endpoint_id).await?;
    let secret = WebhookSecret::generate();
    let sealed = gateway
        .webhooks
        .key
        .seal_labeled(SECRET_LABEL, &record.endpoint_id, secret.expose_secret())
        .map_err(|e| RpcError::Internal(e.to_string()))?;
    let now = now_ms();
    record.previous_secret_sealed = Some(std::mem::replace(&mut record.secret_sealed, sealed));
    record.previous_secret_expires_at = Some(now + overlap * 1000);
    record.updated_at = now;
    if !gateway.store.update_webhook_endpoint(&record).await? {
        return Err(RpcError::NotFound);
    }
    let mut view = endpoint_view(&record);
    if let Some(obj) = view.as_object_mut() {
        obj.insert("secret".into(), Value::from(secret.expose_secret()));
    }
    Ok(view)
}

async fn list(gateway: &Gateway, merchant: &Merchant, p: ListParams) -> Result<Value, RpcError> {
    let event_type = p
        .event_type
        .as_deref()
        .map(|t| EventType::parse(t).ok_or_else(|| RpcError::InvalidParams("event_type: unknown event type".into())))
        .transpose()?;
    let status = p
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| RpcError::InvalidParams("status must be pending, delivered or failed".into()))
        })
        .transpose()?;
    let limit = p.count.unwrap_or(20);
    if !(1..=MAX_LIST_COUNT).contains(&limit) {
        return Err(RpcError::InvalidParams(format!("count must be 1 to {MAX_LIST_COUNT}")));
    }
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(RpcError::InvalidParams("offset must not be negative".into()));
    }
    let filter = DeliveryFilter {
        merchant_id: merchant.merchant_id.clone(),
        event_type,
        status,
        endpoint_id: p.endpoint_id,
        object_id: p.object_id,
        limit,
        offset,
    };
    let deliveries = gateway.store.webhook_deliveries(&filter).await?;
    let mut items = Vec::with_capacity(deliveries.len());
    for d in &deliveries {
        let attempts = gateway.store.webhook_attempts(&d.event_id, &d.endpoint_id).await?;
        items.push(delivery_view(d, &attempts));
    }
    Ok(json!({ "webhooks": items, "count": items.len(), "offset": offset }))
}

/// An endpoint as the API shows it (never its secret).
pub fn endpoint_view(e: &WebhookEndpointRecord) -> Value {
    let events: Vec<&str> = match &e.events {
        None => vec!["*"],
        Some(list) => list.iter().map(|t| t.as_str()).collect(),
    };
    let mut v = json!({
        "endpoint_id": e.endpoint_id,
        "url": e.url,
        "events": events,
        "status": e.status.as_str(),
        "created_at": rfc3339(e.created_at),
        "updated_at": rfc3339(e.updated_at),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(d) = &e.description {
            obj.insert("description".into(), Value::from(d.clone()));
        }
        if let Some(reason) = &e.disabled_reason {
            obj.insert("disabled_reason".into(), Value::from(reason.clone()));
        }
        if let Some(since) = e.failing_since {
            obj.insert("failing_since".into(), Value::from(rfc3339(since)));
        }
        if let Some(until) = e.previous_secret_expires_at.filter(|t| *t > now_ms()) {
            obj.insert("previous_secret_expires_at".into(), Value::from(rfc3339(until)));
        }
    }
    v
}

/// A delivery with its attempts, as `webhook.list` shows it.
pub fn delivery_view(d: &WebhookDeliveryRecord, attempts: &[WebhookAttemptRecord]) -> Value {
    let payload: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
    let mut v = json!({
        "webhook_id": d.event_id,
        "endpoint_id": d.endpoint_id,
        "type": d.event_type.as_str(),
        "object_id": d.object_id,
        "status": d.status.as_str(),
        "attempt_count": d.attempts,
        "created_at": rfc3339(d.created_at),
        "payload": payload,
        "attempts": attempts.iter().map(|a| {
            let mut v = json!({ "attempt": a.attempt, "at": rfc3339(a.at), "latency_ms": a.latency_ms });
            if let Some(obj) = v.as_object_mut() {
                if let Some(code) = a.status_code { obj.insert("status_code".into(), Value::from(code)); }
                if let Some(e) = &a.error { obj.insert("error".into(), Value::from(e.clone())); }
                if let Some(x) = &a.response_excerpt { obj.insert("response_excerpt".into(), Value::from(x.clone())); }
            }
            v
        }).collect::<Vec<_>>(),
    });
    if let Some(obj) = v.as_object_mut() {
        if d.status == DeliveryStatus::Pending {
            obj.insert("next_attempt_at".into(), Value::from(rfc3339(d.next_attempt_at)));
        }
        if let Some(at) = d.delivered_at {
            obj.insert("delivered_at".into(), Value::from(rfc3339(at)));
        }
    }
    v
}

/// The OpenRPC entries of the methods above.
pub fn openrpc_methods() -> Vec<Value> {
    let s = || json!({ "type": "string" });
    let p = |name: &str, required: bool, schema: Value, description: &str| json!({ "name": name, "required": required, "schema": schema, "description": description });
    let events_schema = json!({ "type": "array", "items": { "enum": EventType::ALL.iter().map(|e| e.as_str()).chain(["*"]).collect::<Vec<_>>() } });
    let m = |name: &str, summary: &str, params: Vec<Value>, result: &str, codes: &[i64]| {
        json!({
            "name": name, "summary": summary, "paramStructure": "by-name", "params": params,
            "result": { "name": "result", "schema": { "$ref": format!("#/components/schemas/{result}") } },
            "errors": codes.iter().map(|c| json!({ "code": c, "message": if *c == -31003 { "not found" } else { "invalid params (url refused: data in message)" } })).collect::<Vec<_>>(),
        })
    };
    let id = || p("endpoint_id", true, s(), "the endpoint (we_…)");
    vec![
        m(
            "webhook.endpoint.create",
            "Register a webhook endpoint. The URL must be https and must not be or \
           resolve to a private, loopback, link-local, CGNAT, metadata or IPv4-embedding address (checked now and \
           before every delivery). Answers the whsec_ secret once.",
            vec![
                p("url", true, s(), "https URL, at most 2048 characters"),
                p("events", false, events_schema.clone(), "the event types it receives; default every event"),
                p("description", false, s(), "free text, at most 255 characters"),
            ],
            "WebhookEndpointWithSecret",
            &[-32602],
        ),
        m(
            "webhook.endpoint.list",
            "The merchant's webhook endpoints (never their secrets).",
            vec![],
            "WebhookEndpointList",
            &[],
        ),
        m(
            "webhook.endpoint.update",
            "Change an endpoint's URL, events, description, or enable/disable it \
           (enabling also clears a disabling by the gateway after failures).",
            vec![
                id(),
                p("url", false, s(), "a new https URL (screened as at creation)"),
                p("events", false, events_schema, "the event types it receives"),
                p("description", false, s(), "free text"),
                p("enabled", false, json!({"type": "boolean"}), "false stops deliveries; true resumes them"),
            ],
            "WebhookEndpoint",
            &[-31003, -32602],
        ),
        m(
            "webhook.endpoint.delete",
            "Delete an endpoint with its deliveries.",
            vec![id()],
            "WebhookEndpointDeleted",
            &[-31003],
        ),
        m(
            "webhook.endpoint.rotate_secret",
            "A new whsec_ secret (answered once); the previous one keeps signing \
           beside it (two signatures in webhook-signature) for overlap_sec.",
            vec![
                id(),
                p(
                    "overlap_sec",
                    false,
                    json!({"type": "integer", "minimum": 0, "maximum": MAX_ROTATION_OVERLAP_SEC,
              "default": 86_400}),
                    "how long the previous secret still signs",
                ),
            ],
            "WebhookEndpointWithSecret",
            &[-31003, -32602],
        ),
        m(
            "webhook.list",
            "Deliveries, newest first, each with its attempts (status code, latency, response \
           excerpt).",
            vec![
                p("event_type", false, s(), "only this event type"),
                p("status", false, json!({"enum": ["pending", "delivered", "failed"]}), "only this status"),
                p("endpoint_id", false, s(), "only this endpoint"),
                p("object_id", false, s(), "only this payment (transaction_id) or refund (refund_id)"),
                p(
                    "count",
                    false,
                    json!({"type": "integer", "minimum": 1, "maximum": MAX_LIST_COUNT, "default": 20}),
                    "page size",
                ),
                p("offset", false, json!({"type": "integer", "minimum": 0, "default": 0}), "skip this many"),
            ],
            "WebhookList",
            &[-32602],
        ),
        m(
            "webhook.resend",
            "Send a webhook again now (same webhook-id), to one endpoint or to all that had it.",
            vec![p("webhook_id", true, s(), "msg_…"), p("endpoint_id", false, s(), "only to this endpoint")],
            "WebhookResent",
            &[-31003],
        ),
    ]
}

/// The OpenRPC schemas the methods above refer to.
pub fn openrpc_schemas() -> Map<String, Value> {
    let s = || json!({ "type": "string" });
    let endpoint = json!({ "type": "object", "properties": {
        "endpoint_id": s(), "url": s(), "events": { "type": "array", "items": s() }, "description": s(),
        "status": { "enum": ["enabled", "disabled"] }, "disabled_reason": { "enum": ["by_partner", "failing"] },
        "failing_since": s(), "previous_secret_expires_at": s(), "created_at": s(), "updated_at": s()
    }});
    let mut with_secret = endpoint.clone();
    if let Some(props) = with_secret.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("secret".into(), json!({ "type": "string", "pattern": "^whsec_" }));
    }
    let mut schemas = Map::new();
    schemas.insert("WebhookEndpoint".into(), endpoint);
    schemas.insert("WebhookEndpointWithSecret".into(), with_secret);
    schemas.insert(
        "WebhookEndpointList".into(),
        json!({ "type": "object", "properties": {
        "endpoints": { "type": "array", "items": { "$ref": "#/components/schemas/WebhookEndpoint" } } } }),
    );
    schemas.insert(
        "WebhookEndpointDeleted".into(),
        json!({ "type": "object", "properties": {
        "endpoint_id": s(), "deleted": { "type": "boolean" } } }),
    );
    schemas.insert(
        "WebhookList".into(),
        json!({ "type": "object", "properties": {
        "webhooks": { "type": "array", "items": { "type": "object", "properties": {
            "webhook_id": s(), "endpoint_id": s(), "type": s(), "object_id": s(),
            "status": { "enum": ["pending", "delivered", "failed"] }, "attempt_count": { "type": "integer" },
            "next_attempt_at": s(), "delivered_at": s(), "created_at": s(),
            "payload": { "type": "object", "description": "the body as sent: {type, timestamp, data}" },
            "attempts": { "type": "array", "items": { "type": "object", "properties": {
                "attempt": { "type": "integer" }, "at": s(), "status_code": { "type": "integer" },
                "latency_ms": { "type": "integer" }, "error": s(), "response_excerpt": s() } } } } } },
        "count": { "type": "integer" }, "offset": { "type": "integer" } } }),
    );
    schemas.insert(
        "WebhookResent".into(),
        json!({ "type": "object", "properties": {
        "webhook_id": s(), "resent": { "type": "integer" } } }),
    );
    schemas
}
