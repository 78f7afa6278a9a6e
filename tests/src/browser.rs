//! A real headless Chromium driven over WebDriver (chromedriver + fantoccini), and a
//! merchant's return page that records where browsers land.
//!
//! `.ci/run` installs Debian's `chromium` and `chromium-driver`. Elsewhere a test that
//! needs the browser is skipped with a message when chromedriver is missing — unless
//! `PAYSYS_REQUIRE_BROWSER=1` (CI sets it), which makes a missing browser a failure.

use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// A chromedriver process and one headless Chromium session. Dropping it (a failed
/// test included) stops chromedriver and every Chromium process of its profile.
#[derive(Debug)]
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.start_kill();
        // Chromium outlives a killed chromedriver: end it by its profile directory.
        let _ = std::process::Command::new("pkill").arg("-f").arg(&self.profile).status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Start chromedriver and a session; `None` (after saying why) when the browser is
    /// not installed and not required.
    pub async fn start() -> Option<Browser> {
        let Some(driver_path) = chromedriver() else {
            let required = std::env::var("PAYSYS_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(!required, "PAYSYS_REQUIRE_BROWSER=1 but chromedriver is not installed");
            eprintln!("SKIPPED: chromedriver not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile = crate::scratch_dir("chromium-profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("acceptInsecureCerts".into(), serde_json::json!(true));
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--window-size=1024,768",
                format!("--user-data-dir={}", profile.display())
            ]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => return Some(Browser { client, driver, profile }),
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last_error}");
    }

    /// Wait until the current URL satisfies `pred` (navigation by auto-submitted forms).
    pub async fn wait_for_url(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..150 {
            if let Ok(url) = self.client.current_url().await {
                if pred(url.as_str()) {
                    return url.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let source = self.client.source().await.unwrap_or_default();
        panic!("browser never reached {what}; at {url}:\n{source}");
    }

    /// Wait for an element by CSS selector.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        for _ in 0..150 {
            if let Ok(e) = self.client.find(fantoccini::Locator::Css(css)).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let source = self.client.source().await.unwrap_or_default();
        panic!("no element {css}:\n{source}");
    }

    /// End the session cleanly (then drop: chromedriver and any leftover process go).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The merchant's return page: answers every request with a small page and records the
/// path and query of each.
#[derive(Debug)]
pub struct ReturnSite {
    pub url: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl ReturnSite {
    pub async fn start() -> ReturnSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let uri = req.uri().to_string();
                            recorded.lock().unwrap().push(uri);
                            let page =
                                "<!doctype html><html><body><h1 id=\"returned\">Back at the shop</h1></body></html>";
                            hyper::Response::builder()
                                .header("content-type", "text/html")
                                .body(Full::new(Bytes::from(page)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        ReturnSite { url: format!("http://{addr}/shop/return"), hits }
    }

    /// The query parameters of the last request for the return page (URL-decoded).
    pub fn last_query(&self) -> Option<Vec<(String, String)>> {
        let last = self.hits.lock().unwrap().iter().rev().find(|h| h.starts_with("/shop/return")).cloned()?;
        let url = url::Url::parse(&format!("http://x{last}")).ok()?;
        Some(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }
}
