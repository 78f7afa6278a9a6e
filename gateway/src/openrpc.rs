//! The OpenRPC 1.2 document `rpc.discover` returns: every method with its named params,
//! result and errors.

use serde_json::{json, Value};

fn param(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({ "name": name, "required": required, "schema": schema, "description": description })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn integer() -> Value {
    json!({ "type": "integer", "minimum": 1 })
}

fn errors(codes: &[i64]) -> Value {
    let text = |code: i64| match code {
        -31001 => "amount or currency not accepted",
        -31002 => "processing unavailable",
        -31003 => "not found",
        -31007 => "not cancellable (captured; refund instead)",
        -31008 => "wrong state for this operation",
        -31010 => "idempotency key reused with different params",
        -31011 => "request with this key (or on this payment) in progress",
        -31020 => "3-D Secure: not authenticated (transStatus N)",
        -31021 => "3-D Secure: rejected by the issuer (transStatus R)",
        -31022 => "3-D Secure: unavailable, timed out or not completed in time (data.reason)",
        -31031 => "capture exceeds the capturable amount",
        -31032 => "refund exceeds captured minus refunded",
        -31033 => "hold expired",
        -31040 => "issuer decline (data.decline_code)",
        -31300 => "invalid card token",
        -31303 => "insufficient funds",
        -31400 => "unknown card token (or a checkout-bound token not saved for a customer)",
        -31050 => "the payment widget is not available on this gateway (data.reason widget_unavailable)",
        _ => "error",
    };
    Value::Array(codes.iter().map(|c| json!({ "code": c, "message": text(*c) })).collect())
}

fn method(name: &str, summary: &str, params: Vec<Value>, result: &str, codes: &[i64]) -> Value {
    json!({
        "name": name,
        "summary": summary,
        "paramStructure": "by-name",
        "params": params,
        "result": { "name": "result", "schema": { "$ref": format!("#/components/schemas/{result}") } },
        "errors": errors(codes),
    })
}

/// The document: the payment methods below and the webhook methods
/// ([`crate::webhooks::endpoints::openrpc_methods`]).
pub fn document() -> Value {
    let mut doc = payment_document();
    if let Some(methods) = doc.get_mut("methods").and_then(Value::as_array_mut) {
        methods.extend(crate::webhooks::endpoints::openrpc_methods());
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        schemas.extend(crate::webhooks::endpoints::openrpc_schemas());
    }
    doc
}

fn payment_document() -> Value {
    let tx = || param("transaction_id", true, string(), "the gateway's transaction id");
    let statuses = json!([
        "created",
        "requires_3ds",
        "authorizing",
        "processing",
        "authorized",
        "partially_captured",
        "captured",
        "voided",
        "expired",
        "failed"
    ]);
    let checkout_statuses = json!(["open", "processing", "completed", "expired", "cancelled"]);
    json!({
        "openrpc": "1.2.6",
        "info": {
            "title": "PaySys Host-to-Host API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON-RPC 2.0 at POST /rpc, named params only, batches allowed. Every request carries \
                `Auth: {service_id}-{hex HMAC-SHA256(secret, ts + \".\" + raw_body)}-{ts}` (ts in Unix ms, \
                ±300 s). Amounts are integers in ISO 4217 minor units. Errors: -32700 parse, -32600 invalid \
                request, -32601 method not found, -32602 invalid params, -32603 internal, -32504 auth."
        },
        "methods": [
            method("payment.create", "Pay with a card token (authorize through the vault relay; capture at once \
                    or hold). Idempotent on partner_trans_id.", vec![
                param("card_token", true, string(), "a vault token of this merchant"),
                param("amount", true, integer(), "minor units, within the currency's limits"),
                param("currency", true, json!({"type": "string", "pattern": "^[A-Z]{3}$"}), "ISO 4217"),
                param("partner_trans_id", true, string(), "the merchant's idempotency key, 1-64 characters"),
                param("capture_method", false, json!({"enum": ["auto", "manual"], "default": "auto"}), "manual holds"),
                param("hold_ttl_sec", false, json!({"type": "integer", "minimum": 1, "maximum": 2_592_000,
                      "default": 604_800}), "how long a manual hold lasts"),
                param("after_expired", false, json!({"enum": ["capture", "void"], "default": "void"}),
                      "what happens to a hold when it expires"),
                param("description", false, string(), "free text, at most 255 characters"),
                param("client_ip", false, string(), "the payer's IP address"),
                param("return_url", false, string(), "where the browser returns after a 3-D Secure challenge, \
                      with transaction_id, partner_trans_id, status, ts and signature = hex HMAC-SHA256(secret, \
                      ts + \".\" + transaction_id + \".\" + status)"),
                param("three_ds", false, json!({"enum": ["auto", "force", "skip"], "default": "auto"}),
                      "3-D Secure: auto by the merchant's settings (enrolled cards from the currency's \
                      minimum amount; the DS failures the merchant allows are paid without it), always, or never"),
                param("three_ds_server_trans_id", false, string(), "from three_ds.prepare, after its 3DS Method"),
                param("browser", false, json!({"type": "object", "properties": {
                      "accept_header": string(), "user_agent": string(), "language": string(),
                      "color_depth": {"type": "integer"}, "screen_height": {"type": "integer"},
                      "screen_width": {"type": "integer"}, "tz_offset_min": {"type": "integer"},
                      "java_enabled": {"type": "boolean"}, "javascript_enabled": {"type": "boolean"}},
                      "required": ["accept_header", "user_agent", "language", "color_depth", "screen_height",
                      "screen_width", "tz_offset_min"]}),
                      "the payer's browser, for the issuer's risk assessment"),
            ], "Payment", &[-31001, -31002, -31010, -31011, -31020, -31021, -31022, -31040, -31300, -31303, -31400]),
            method("three_ds.prepare", "Start a 3-D Secure authentication before payment.create: when the card's \
                    range has a 3DS Method, load method.page_url in a hidden iframe (or post \
                    three_ds_method_data to three_ds_method_url) and pass three_ds_server_trans_id to \
                    payment.create within expires_at.", vec![
                param("card_token", true, string(), "a vault token of this merchant"),
            ], "Authentication", &[-31002, -31300, -31400]),
            method("payment.capture", "Capture all or part of a hold. Idempotent on partner_capture_id; \
                    without one, the same signed request bytes again get the first answer.", vec![
                tx(),
                param("amount", false, integer(), "default: all that is held"),
                param("final", false, json!({"type": "boolean", "default": true}),
                      "release the rest of the hold"),
                param("partner_capture_id", false, string(), "the merchant's idempotency key for this capture, \
                      1-64 characters"),
            ], "Payment", &[-31002, -31003, -31008, -31010, -31011, -31031, -31033]),
            method("payment.void", "Release a hold. The same signed request bytes again get the first answer.",
                   vec![tx()], "Payment", &[-31002, -31003, -31007, -31008, -31011]),
            method("payment.refund", "Refund captured money. Idempotent on partner_refund_id.", vec![
                tx(),
                param("amount", true, integer(), "at most captured minus refunded"),
                param("partner_refund_id", true, string(), "the merchant's idempotency key"),
            ], "Refund", &[-31002, -31003, -31008, -31010, -31011, -31032]),
            method("payment.check", "A payment by transaction_id or partner_trans_id (exactly one); resolves a \
                    processing payment by status inquiry.", vec![
                param("transaction_id", false, string(), ""),
                param("partner_trans_id", false, string(), ""),
            ], "Payment", &[-31003]),
            method("payment.list", "The merchant's payments, newest first.", vec![
                param("from", false, json!({"type": ["integer", "string"]}), "Unix ms or RFC 3339, inclusive"),
                param("to", false, json!({"type": ["integer", "string"]}), "Unix ms or RFC 3339, exclusive"),
                param("status", false, json!({"enum": statuses}), ""),
                param("count", false, json!({"type": "integer", "minimum": 1, "maximum": 50, "default": 50}), ""),
                param("offset", false, json!({"type": "integer", "minimum": 0, "default": 0}), ""),
            ], "PaymentList", &[]),
            method("refund.check", "A refund by refund_id or partner_refund_id (exactly one).", vec![
                param("refund_id", false, string(), ""),
                param("partner_refund_id", false, string(), ""),
            ], "Refund", &[-31003]),
            method("card.get", "Token metadata from the vault (brand, BIN, last 4, expiry; never the number).",
                   vec![param("card_token", true, string(), "")], "Card", &[-31002, -31300, -31400]),
            method("card.remove", "Stop using a token: the gateway refuses it for this merchant from now on, and the card data is deleted in the vault once no open payment needs it (card_data_deleted says whether that has happened yet).",
                   vec![param("card_token", true, string(), "")], "CardRemoved", &[-31002, -31300, -31400]),
            method("checkout.create", "A checkout: the hosted payment page (url) and the client secret the embedded \
                    form (paysys.js) needs. The buyer pays there; each attempt's payment has partner_trans_id \
                    {partner_trans_id}/{attempt number}; read the outcome with checkout.check. Idempotent on \
                    partner_trans_id (the same params answer the same checkout and secret).", vec![
                param("amount", true, integer(), "minor units"),
                param("currency", true, string(), "ISO 4217 alphabetic code"),
                param("partner_trans_id", true, string(), "the merchant's idempotency key, 1-64 printable characters"),
                param("return_url", true, string(), "where the buyer returns after paying, with transaction_id, \
                      partner_trans_id, checkout_id, status, ts and signature"),
                param("description", false, string(), "shown on the page; at most 255 characters"),
                param("cancel_url", false, string(), "where an expired or cancelled checkout sends the buyer \
                      (default return_url), with checkout_id, partner_trans_id, status, ts and signature"),
                param("capture_method", false, json!({"enum": ["auto", "manual"]}), ""),
                param("hold_ttl_sec", false, json!({"type": "integer", "minimum": 1, "maximum": 2_592_000}), ""),
                param("after_expired", false, json!({"enum": ["void", "capture"]}), ""),
                param("three_ds", false, json!({"enum": ["auto", "force", "skip"]}), ""),
                param("language", false, json!({"enum": ["uz", "ru", "en"]}), "default en"),
                param("expires_in_sec", false, json!({"type": "integer", "minimum": 60, "maximum": 86_400, "default": 1800}), ""),
                param("customer_id", false, string(), "the merchant's customer, 1-64 printable characters"),
                param("save_card", false, json!({"type": "boolean", "default": false}), "keep the card for \
                      customer_id after a successful payment (needs customer_id)"),
            ], "CheckoutCreated", &[-31001, -31010, -31050]),
            method("checkout.check", "A checkout by checkout_id or partner_trans_id (exactly one), with its \
                    latest payment as payment.check shows it.", vec![
                param("checkout_id", false, string(), ""),
                param("partner_trans_id", false, string(), ""),
            ], "Checkout", &[-31003]),
            method("checkout.cancel", "Cancel an open checkout.",
                   vec![param("checkout_id", true, string(), "")], "Checkout", &[-31003, -31008]),
            method("card.list", "A customer's saved cards (one per card: the same card saved again keeps its \
                    first token; never shared across customers).",
                   vec![param("customer_id", true, string(), "")], "CardList", &[]),
            json!({
                "name": "rpc.discover",
                "summary": "This document.",
                "params": [],
                "result": { "name": "OpenRPC", "schema": { "type": "object" } }
            }),
        ],
        "components": { "schemas": {
            "Payment": { "type": "object", "properties": {
                "transaction_id": string(), "partner_trans_id": string(), "status": { "enum": statuses },
                "amount": integer(), "currency": string(), "captured_amount": { "type": "integer" },
                "refunded_amount": { "type": "integer" }, "capturable_amount": { "type": "integer" },
                "refundable_amount": { "type": "integer" }, "capture_method": string(), "after_expired": string(),
                "card": { "type": "object", "properties": { "token": string(), "masked_number": string() } },
                "auth_code": string(), "rrn": string(), "decline_code": string(), "hold_expires_at": string(),
                "created_at": string(), "updated_at": string(),
                "three_ds": { "type": "object", "properties": {
                    "mode": string(), "version": string(), "trans_status": string(),
                    "trans_status_reason": string(), "eci": string(), "ds_trans_id": string(),
                    "authentication_value": { "type": "string", "description": "last four characters only" },
                    "challenge": { "type": "boolean" }, "method_completion": string(),
                    "three_ds_server_trans_id": string()
                }},
                "next_action": { "type": "object", "properties": {
                    "type": { "enum": ["redirect"] }, "url": string()
                }}
            }},
            "Authentication": { "type": "object", "properties": {
                "three_ds_server_trans_id": string(), "enrolled": { "type": ["boolean", "null"] },
                "method": { "type": ["object", "null"], "properties": {
                    "page_url": string(), "three_ds_method_url": string(), "three_ds_method_data": string()
                }},
                "method_budget_ms": { "type": "integer" }, "expires_at": string()
            }},
            "PaymentList": { "type": "object", "properties": {
                "payments": { "type": "array", "items": { "$ref": "#/components/schemas/Payment" } },
                "count": { "type": "integer" }, "offset": { "type": "integer" }
            }},
            "Refund": { "type": "object", "properties": {
                "refund_id": string(), "partner_refund_id": string(), "transaction_id": string(),
                "amount": integer(), "currency": string(),
                "status": { "enum": ["processing", "succeeded", "failed"] }, "rrn": string(),
                "created_at": string(), "updated_at": string()
            }},
            "Card": { "type": "object", "properties": {
                "card_token": string(), "brand": string(), "bin": string(), "last4": string(),
                "exp_month": { "type": "integer" }, "exp_year": { "type": "integer" }, "fingerprint": string(),
                "created_at": string()
            }},
            "CheckoutCreated": { "type": "object", "properties": {
                "checkout_id": string(), "url": string(), "client_secret": string(), "expires_at": string(),
                "status": { "enum": checkout_statuses }
            }},
            "Checkout": { "type": "object", "properties": {
                "checkout_id": string(), "partner_trans_id": string(), "status": { "enum": checkout_statuses },
                "url": string(), "amount": integer(), "currency": string(), "description": string(),
                "return_url": string(), "cancel_url": string(), "capture_method": string(), "three_ds": string(),
                "language": string(), "customer_id": string(), "save_card": { "type": "boolean" },
                "attempts": { "type": "integer" }, "expires_at": string(), "transaction_id": string(),
                "payment": { "$ref": "#/components/schemas/Payment" }, "created_at": string(), "updated_at": string()
            }},
            "CardList": { "type": "object", "properties": {
                "customer_id": string(),
                "cards": { "type": "array", "items": { "type": "object", "properties": {
                    "token": string(), "brand": string(), "masked_number": string(),
                    "exp_month": { "type": "integer" }, "exp_year": { "type": "integer" }, "created_at": string()
                }}}
            }},
            "CardRemoved": { "type": "object", "properties": {
                "card_token": string(), "removed": { "type": "boolean" },
                "card_data_deleted": { "type": "boolean" }
            }}
        }}
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_method_is_described() {
        let doc = super::document();
        let names: Vec<&str> = doc["methods"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        for m in [
            "payment.create",
            "payment.capture",
            "payment.void",
            "payment.refund",
            "payment.check",
            "payment.list",
            "refund.check",
            "card.get",
            "card.remove",
            "three_ds.prepare",
            "checkout.create",
            "checkout.check",
            "checkout.cancel",
            "card.list",
            "rpc.discover",
            "webhook.endpoint.create",
            "webhook.endpoint.list",
            "webhook.endpoint.update",
            "webhook.endpoint.delete",
            "webhook.endpoint.rotate_secret",
            "webhook.list",
            "webhook.resend",
        ] {
            assert!(names.contains(&m), "{m}");
        }
    }
}
