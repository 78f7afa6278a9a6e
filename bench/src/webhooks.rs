//! `paysys-bench pay --with-webhooks`: the same stack paid in alternating rounds in one
//! run — with no webhook endpoint (it is disabled: no outbox rows, no deliveries), then
//! with one on every payment event, delivered to a receiver on loopback (the private
//! stack's gateway runs with the dev flag that allows it), and again — to show that
//! deliveries keep up (the outbox is empty soon after each round) and what webhooks
//! cost the payment path. Alternating keeps the store's growth from counting against
//! either side.

use crate::load::Report;
use paysys::stack::Stack;
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A receiver that answers every webhook `204` and counts them.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<AtomicU64>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhooks", listener.local_addr()?);
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let _ = req.into_body().collect().await;
                            count.fetch_add(1, Ordering::Relaxed);
                            hyper::Response::builder().status(204).body(http_body_util::Empty::<bytes::Bytes>::new())
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Ok(Receiver { url, received })
    }
}

/// Deliveries still waiting in the outbox (`webhook.list`, capped at its page of 50).
pub async fn pending(stack: &Stack) -> anyhow::Result<usize> {
    let answer = paysys::rpc::call(stack, "webhook.list", &json!({"status": "pending", "count": 50})).await?;
    Ok(answer["result"]["webhooks"].as_array().map_or(0, Vec::len))
}

/// Wait until the outbox is empty (at most `limit`); how long it took.
pub async fn drain(stack: &Stack, limit: Duration) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if pending(stack).await? == 0 {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Register the receiver for the stack's merchant, every event.
pub async fn register(stack: &Stack, receiver: &Receiver) -> anyhow::Result<Value> {
    paysys::dev_webhook::register(stack, &receiver.url).await
}

/// Enable or disable the registered endpoint (`webhook.endpoint.update`).
pub async fn set_enabled(stack: &Stack, endpoint: &Value, enabled: bool) -> anyhow::Result<()> {
    let params = json!({"endpoint_id": endpoint["endpoint_id"], "enabled": enabled});
    let answer = paysys::rpc::call(stack, "webhook.endpoint.update", &params).await?;
    anyhow::ensure!(answer["error"].is_null(), "webhook.endpoint.update: {}", answer["error"]);
    Ok(())
}

/// The rounds of a `--with-webhooks` run: `off[i]` was run right before `on[i]`.
#[derive(Debug, Default)]
pub struct Rounds {
    pub off: Vec<Report>,
    pub on: Vec<Report>,
    /// After each round with webhooks: deliveries pending when the load stopped (a page
    /// of 50 at most) and how long until the outbox was empty (`None`: not in 60 s).
    pub outbox: Vec<(usize, Option<Duration>)>,
    pub received: u64,
}

impl fmt::Display for Rounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "webhooks off and on in alternating rounds (same stack, same load):")?;
        let mut ratios = Vec::new();
        for (i, (off, on)) in self.off.iter().zip(&self.on).enumerate() {
            let ratio = on.ops_per_sec() / off.ops_per_sec().max(f64::MIN_POSITIVE);
            ratios.push(ratio);
            let (backlog, drained) = self.outbox.get(i).copied().unwrap_or((0, None));
            let drained = drained.map_or("not within 60 s".to_owned(), |d| format!("{} ms", d.as_millis()));
            writeln!(
                f,
                "round {}: off {:.0}/s p99 {:.1} ms | on {:.0}/s p99 {:.1} ms | on/off {ratio:.2} | \
                 outbox {backlog}{} pending at the end, empty after {drained}",
                i + 1,
                off.ops_per_sec(),
                off.percentile(99.0),
                on.ops_per_sec(),
                on.percentile(99.0),
                if backlog >= 50 { "+" } else { "" },
            )?;
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
        write!(
            f,
            "webhooks on / off: {mean:.2} (mean of {} rounds); webhooks received: {}",
            ratios.len(),
            self.received
        )
    }
}
