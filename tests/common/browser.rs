//! Headless Chromium driven through chromedriver's W3C WebDriver HTTP API
//! (<https://www.w3.org/TR/webdriver2/>) with the test suite's own HTTP
//! client: no WebDriver crate, because the handful of commands the page
//! tests need (navigate, find, click, key presses, screenshot) are one
//! JSON request each, and reqwest is already a test dependency.
//!
//! Each `Browser` is its own chromedriver on a free loopback port with its
//! own profile directory; `Drop` kills the driver (and with it the browser).
//! A missing browser follows the rule of `servers.rs`: under `CI=true` the
//! test fails; elsewhere too, unless `CARTERO_SKIP_SERVER_TESTS=1`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::servers::{free_port, unavailable};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Debug, Clone, Copy)]
pub struct Viewport {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    /// A phone: Chromium's mobile emulation (touch, the viewport meta tag
    /// honoured, device pixel ratio 3).
    pub mobile: bool,
}

pub const PHONE: Viewport = Viewport {
    name: "phone",
    width: 390,
    height: 844,
    mobile: true,
};
pub const DESKTOP: Viewport = Viewport {
    name: "desktop",
    width: 1280,
    height: 800,
    mobile: false,
};

pub struct Browser {
    driver: Child,
    url: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    pub viewport: Viewport,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session at `viewport`,
    /// with `accept_language` as the browser's language.
    pub async fn start(viewport: Viewport, accept_language: &str) -> Option<Browser> {
        for b in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(b).exists() {
                unavailable("Chromium and chromedriver", &format!("{b} is missing"));
                return None;
            }
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // Wait for the driver to listen (a start-up wait, not a measurement).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--lang={accept_language}"),
        ];
        let mut options = json!({
            "binary": CHROMIUM,
            "prefs": {"intl.accept_languages": accept_language},
        });
        if viewport.mobile {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": viewport.width, "height": viewport.height,
                                  "pixelRatio": 3.0, "touch": true, "mobile": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
            });
        } else {
            args.push(format!(
                "--window-size={},{}",
                viewport.width, viewport.height
            ));
        }
        options["args"] = json!(args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let mut b = Browser {
            driver,
            url,
            session: String::new(),
            http,
            _profile: profile,
            viewport,
        };
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        if !viewport.mobile {
            // The window's inner size is what pages see: set it exactly.
            b.cmd(
                "POST",
                "/window/rect",
                json!({"width": viewport.width, "height": viewport.height}),
            )
            .await;
        }
        Some(b)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let r = req.send().await.expect("chromedriver answers");
        let status = r.status();
        let v: Value =
            serde_json::from_str(&r.text().await.unwrap()).expect("JSON from chromedriver");
        if !status.is_success() {
            return Err(format!("WebDriver {method} {path}: {v}"));
        }
        Ok(v["value"].clone())
    }

    /// Runs `action` (a click or key press that submits a form) and waits
    /// until the next page has loaded: the old document carried a marker
    /// the new one lacks. A bounded wait for the browser, not a timing.
    pub async fn submits<F: std::future::Future<Output = ()>>(&self, action: F) {
        self.eval("window.__carteroOld = true").await;
        action.await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = self
                .try_call(
                    "POST",
                    &format!("/session/{}/execute/sync", self.session),
                    Some(json!({"script": "return window.__carteroOld !== true && document.readyState === 'complete'", "args": []})),
                )
                .await;
            if matches!(done, Ok(Value::Bool(true))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the form did not load a new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(
            method,
            &format!("/session/{}{path}", self.session),
            Some(body),
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.call("GET", &format!("/session/{}/url", self.session), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element matching `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .as_array()
        .map_or(0, |a| a.len())
    }

    /// A real click (WebDriver scrolls the element into view and clicks
    /// its centre; it fails if something else would receive the click).
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    pub async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
    }

    /// Types `text` into the element (key events, one per character).
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Presses keys on whatever has the focus (W3C key codes: Tab is
    /// `\u{E004}`, Enter `\u{E007}`, Space is `" "`).
    pub async fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.cmd("DELETE", "/actions", json!({})).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(
            "GET",
            &format!("/session/{}/element/{e}/text", self.session),
            None,
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    pub async fn is_selected(&self, css: &str) -> bool {
        let e = self.find(css).await;
        self.call(
            "GET",
            &format!("/session/{}/element/{e}/selected", self.session),
            None,
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// Runs `script` in the page (WebDriver's execute is not subject to
    /// the page's CSP; the pages themselves have no script).
    pub async fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The id of the focused element's `id` attribute.
    pub async fn focused_id(&self) -> String {
        self.eval("return document.activeElement ? document.activeElement.id : ''")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Saves a PNG of the viewport under target/test-artefacts/.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self
            .call(
                "GET",
                &format!("/session/{}/screenshot", self.session),
                None,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        self.call("DELETE", &path, None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
