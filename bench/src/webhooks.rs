//! `paysys-bench pay --with-webhooks`: the same stack paid twice in one run — first
//! with no webhook endpoint, then with one on every payment event, delivered to a
//! receiver on loopback (the private stack's gateway runs with the dev flag that allows
//! it) — to show that deliveries keep up (the outbox holds no backlog at the end) and
//! what webhooks cost the payment path.

use paysys::stack::Stack;
use serde_json::{json, Value};
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
