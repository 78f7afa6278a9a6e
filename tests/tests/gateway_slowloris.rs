//! Transport limits on a real gateway process: 500 slow-loris connections (half silent
//! after part of a request head, half trickling a header byte every half second) do
//! not stop a normal merchant from being served promptly, and the header-read timeout
//! closes every one of them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::Backend;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CONNECTIONS: usize = 500;
/// The gateway's `--header-read-timeout-secs` here (10 by default), so the test is short.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// One slow-loris client: part of a request head, then silence or a byte every 500 ms
/// until the server closes the connection. Returns how long the connection lived.
async fn slow_loris(addr: String, trickle: bool) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(format!("POST /rpc HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n").as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let trickler = tokio::spawn(async move {
        if trickle {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if writer.write_all(b"x").await.is_err() {
                    break;
                }
            }
        }
        // Keep the write half open: dropping it would send FIN, which is not slow-loris.
        std::future::pending::<()>().await;
    });
    let mut sink = Vec::new();
    // Whatever the server says (nothing, or an error status), it must then close.
    let closed = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut sink)).await;
    trickler.abort();
    assert!(closed.is_ok(), "a slow connection was still open after 30 s");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_do_not_starve_a_normal_client_and_are_closed_by_the_header_timeout() {
    let backend = Backend::Sqlite;
    let (vault, sandbox) = start_vault_and_sandbox(&backend, 5_000).await;
    let options = GatewayOptions {
        extra_args: vec!["--header-read-timeout-secs".into(), HEADER_TIMEOUT.as_secs().to_string()],
        ..GatewayOptions::default()
    };
    let gateway = TestGateway::start(&vault, &sandbox, &backend, options).await;
    let addr = gateway.url.strip_prefix("http://").unwrap().to_owned();

    let attack_started = Instant::now();
    let slow: Vec<_> = (0..SLOW_CONNECTIONS).map(|i| tokio::spawn(slow_loris(addr.clone(), i % 2 == 1))).collect();
    // Let every slow connection reach the gateway before the normal client comes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A merchant's signed calls are answered promptly all the while.
    for n in 0..5 {
        let started = Instant::now();
        let answer = gateway.call("payment.check", json!({"partner_trans_id": format!("missing-{n}")})).await;
        let took = started.elapsed();
        assert!(answer.get("error").is_some() || answer.get("result").is_some(), "{answer}");
        assert!(took < Duration::from_secs(1), "call {n} took {took:?} during the attack");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every slow connection is closed by the header timeout: not before it, and not
    // long after (the silent and the trickling ones alike).
    let mut lifetimes = Vec::new();
    for task in slow {
        lifetimes.push(task.await.unwrap());
    }
    let shortest = lifetimes.iter().min().unwrap();
    let longest = lifetimes.iter().max().unwrap();
    assert!(*shortest >= HEADER_TIMEOUT - Duration::from_millis(500), "closed after only {shortest:?}");
    assert!(*longest < HEADER_TIMEOUT + Duration::from_secs(5), "one lived {longest:?}");
    assert!(attack_started.elapsed() < HEADER_TIMEOUT + Duration::from_secs(10));

    // And the gateway serves on afterwards.
    let answer = gateway.call("payment.check", json!({"partner_trans_id": "after"})).await;
    assert!(answer.get("error").is_some() || answer.get("result").is_some(), "{answer}");
    gateway.finish().await;
    sandbox.stop().await;
    vault.finish().await;
}
