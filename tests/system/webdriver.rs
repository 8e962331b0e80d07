//! A minimal W3C WebDriver client over HTTP, enough to drive headless Chromium through
//! ChromeDriver: open a page, find, click, type, read text, take a screenshot.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver on a free port, stopped on drop.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

/// One browser session.
pub struct Browser {
    url: String,
    http: reqwest::Client,
    /// Chromium's profile directory, removed when the browser closes.
    profile: std::path::PathBuf,
}

impl Driver {
    /// `None` where Chromium or ChromeDriver is missing (a laptop); `.ci/run` installs both.
    pub async fn start() -> Option<Driver> {
        let present = ["/usr/bin/chromium", "/usr/bin/chromedriver"].iter().all(|p| std::path::Path::new(p).exists());
        if !present {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI needs chromium and chromium-driver");
            eprintln!("skipping: chromium or chromedriver is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        for _ in 0..100 {
            if driver.http.get(format!("{}/status", driver.url)).send().await.is_ok() {
                return Some(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    pub async fn browser(&self) -> Browser {
        // One profile per browser: two Chromiums on one profile (tests run concurrently) clash.
        static BROWSERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = BROWSERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = std::env::temp_dir().join(format!("chromium-profile-{}-{n}", std::process::id()));
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let response: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("driver answers")
            .json()
            .await
            .expect("json");
        let session = response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}"));
        Browser { url: format!("{}/session/{session}", self.url), http: self.http.clone(), profile }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.expect("driver answers").json().await.expect("json");
        response["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Waits up to 10 s for an element matching `css` that is displayed.
    pub async fn find(&self, css: &str) -> String {
        for _ in 0..200 {
            let found = self
                .command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                let shown = self.command(reqwest::Method::GET, &format!("/element/{id}/displayed"), None).await;
                if shown == json!(true) {
                    return id.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no visible element matches {css}; the page says: {}", self.text("body").await);
    }

    /// Whether an element matching `css` exists and is displayed, now.
    pub async fn displayed(&self, css: &str) -> bool {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        match found[ELEMENT].as_str() {
            Some(id) => {
                self.command(reqwest::Method::GET, &format!("/element/{id}/displayed"), None).await == json!(true)
            }
            None => false,
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        match found[ELEMENT].as_str() {
            Some(id) => self
                .command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        }
    }

    /// Waits up to 10 s for `css` to show `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        for _ in 0..200 {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} never showed {needle:?}; the page says: {}", self.text("body").await);
    }

    /// Saves a PNG screenshot.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("base64 PNG");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("screenshot directory");
        std::fs::write(path, bytes).expect("screenshot written");
    }

    pub async fn close(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
