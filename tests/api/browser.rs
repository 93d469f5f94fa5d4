//! A real headless Chromium driven through chromedriver (WebDriver, with
//! fantoccini), for the console's tests. Both come from Debian
//! (`apt-get install chromium chromium-driver`; `scripts/test` installs
//! them); without them the tests fail and say so.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

impl Browser {
    pub async fn start() -> Self {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install it with `apt-get install chromium chromium-driver` \
                 (scripts/test does this)"
            );
        }
        let port = crate::helpers::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if http
                .get(format!("{driver_url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on {driver_url}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--lang=en-US"],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        // chromedriver is on localhost: plain HTTP, no TLS stack.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a Chromium session");
        Self {
            client,
            driver,
            driver_url,
        }
    }

    /// What the page logged to the console since the last call (entries
    /// of level SEVERE include CSP violations and failed loads).
    pub async fn log_errors(&self) -> Vec<String> {
        let session = self
            .client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let entries: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("read the browser log")
            .json()
            .await
            .expect("log JSON");
        entries["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
