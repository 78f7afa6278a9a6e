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
        -31031 => "capture exceeds the capturable amount",
        -31032 => "refund exceeds captured minus refunded",
        -31033 => "hold expired",
        -31040 => "issuer decline (data.decline_code)",
        -31300 => "invalid card token",
        -31303 => "insufficient funds",
        -31400 => "unknown card token",
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

/// The document.
pub fn document() -> Value {
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
                param("return_url", false, string(), "where a browser returns to"),
            ], "Payment", &[-31001, -31002, -31010, -31011, -31040, -31300, -31303, -31400]),
            method("payment.capture", "Capture all or part of a hold.", vec![
                tx(),
                param("amount", false, integer(), "default: all that is held"),
                param("final", false, json!({"type": "boolean", "default": true}),
                      "release the rest of the hold"),
            ], "Payment", &[-31002, -31003, -31008, -31011, -31031, -31033]),
            method("payment.void", "Release a hold.", vec![tx()], "Payment",
                   &[-31002, -31003, -31007, -31008, -31011]),
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
            method("card.remove", "Stop using a token: the gateway refuses it for this merchant from now on.",
                   vec![param("card_token", true, string(), "")], "CardRemoved", &[-31002, -31300, -31400]),
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
                "created_at": string(), "updated_at": string()
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
            "CardRemoved": { "type": "object", "properties": {
                "card_token": string(), "removed": { "type": "boolean" }
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
            "rpc.discover",
        ] {
            assert!(names.contains(&m), "{m}");
        }
    }
}
