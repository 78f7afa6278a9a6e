//! `paysys up --webhook-url URL`: a webhook endpoint for the dev merchant, registered
//! over the gateway's own JSON-RPC (`webhook.endpoint.create`) once the stack is up.
//! The dev stack's gateway runs with `--dev --webhooks-allow-loopback-http`, so a
//! receiver on `http://127.0.0.1:PORT/…` works. The endpoint's `whsec_` secret is
//! written to `DIR/dev-webhook.json` (mode 0600) for the receiver to verify with; an
//! endpoint already registered for the URL (a restarted stack) gets a fresh secret
//! (`webhook.endpoint.rotate_secret`, no overlap) instead of a second endpoint.

use crate::files;
use crate::rpc;
use crate::stack::Stack;
use anyhow::{bail, Context};
use serde_json::{json, Value};

/// The file the endpoint and its secret are written to, in the stack's directory.
pub const DEV_WEBHOOK_FILE: &str = "dev-webhook.json";

/// Register `url` for the stack's dev merchant (or renew its secret); the endpoint as
/// the gateway answered it, with its secret.
pub async fn register(stack: &Stack, url: &str) -> anyhow::Result<Value> {
    let listed = result(rpc::call(stack, "webhook.endpoint.list", &json!({})).await?)?;
    let same = |e: &&Value| e["url"].as_str().is_some_and(|u| u == url || u.strip_suffix('/') == Some(url));
    let existing = listed["endpoints"].as_array().and_then(|all| all.iter().find(same)).cloned();
    let endpoint = match existing {
        Some(e) => {
            let params = json!({"endpoint_id": e["endpoint_id"], "overlap_sec": 0});
            result(rpc::call(stack, "webhook.endpoint.rotate_secret", &params).await?)?
        }
        None => result(rpc::call(stack, "webhook.endpoint.create", &json!({"url": url})).await?)?,
    };
    let file = stack.dir.join(DEV_WEBHOOK_FILE);
    let contents = serde_json::to_vec_pretty(&endpoint)?;
    files::write_atomically(&file, &contents, 0o600).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "paysys: webhooks of the dev merchant go to {url} (endpoint {}; its secret is in {})",
        endpoint["endpoint_id"].as_str().unwrap_or_default(),
        file.display()
    );
    Ok(endpoint)
}

fn result(answer: Value) -> anyhow::Result<Value> {
    if let Some(error) = answer.get("error") {
        bail!("the gateway refused the webhook endpoint: {error}");
    }
    Ok(answer["result"].clone())
}
