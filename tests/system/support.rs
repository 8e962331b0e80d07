//! Shared set-up: an emulator on a free port and settings that point the SDK clients at it.

use common::config::{BackendSettings, Env, ScopeSettings};
use emulator::{Emulator, World, WorldFile};

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const CAROL: &str = "carol@example.com";
pub const SCOPE: &str = "organizations/100000000001";

/// The answer to one call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    /// The refusal code, for `{"error": {"code"}}` bodies.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// The JSON answer to `request`.
pub async fn json_answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.expect("answers").json().await.expect("json")
}

pub struct Backend {
    pub emulator: Emulator,
    pub settings: BackendSettings,
    pub scope: ScopeSettings,
    pub http: reqwest::Client,
}

/// The emulator loaded with the default organization (the seed's story).
pub async fn backend() -> Backend {
    backend_with(emulator::DEFAULT_WORLD, SCOPE).await
}

pub async fn backend_with(yaml: &str, scope: &str) -> Backend {
    backend_of(WorldFile::parse(yaml).expect("valid world"), scope).await
}

/// The default organization with other settings (edition, quotas, page sizes).
pub async fn backend_with_settings(settings: emulator::world::Settings) -> Backend {
    let file = WorldFile::parse(emulator::DEFAULT_WORLD).expect("valid world");
    backend_of(WorldFile { settings, ..file }, SCOPE).await
}

pub async fn backend_of(file: WorldFile, scope: &str) -> Backend {
    let world = World::new(file).expect("consistent world");
    let emulator = Emulator::start(world).await.expect("emulator starts");
    let mut pairs = emulator.environment();
    pairs.push(("RESOURCE_SCOPE", scope.to_string()));
    let (settings, scope) = settings_from(&pairs);
    Backend { emulator, settings, scope, http: reqwest::Client::new() }
}

pub fn settings_from(pairs: &[(&str, String)]) -> (BackendSettings, ScopeSettings) {
    let lookup = |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    let mut env = Env::new(lookup);
    let backend = BackendSettings::read(&mut env);
    let scope = ScopeSettings::read(&mut env);
    env.finish().expect("valid settings");
    (backend, scope)
}

impl Backend {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.url())
    }

    /// Makes the next `count` calls to `api.method` fail with `status`.
    pub async fn inject(&self, api: &str, method: &str, status: u16, count: u32) {
        let fault = serde_json::json!({"api": api, "method": method, "status": status, "count": count});
        let response =
            self.http.post(self.url("/_emulator/faults")).json(&fault).send().await.expect("emulator answers");
        assert_eq!(response.status(), 204);
    }

    /// `GET path` on the emulator, as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http.get(self.url(path)).send().await.expect("emulator answers").json().await.expect("json")
    }

    /// `POST path` with a JSON body on the emulator, as JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        self.http.post(self.url(path)).json(body).send().await.expect("emulator answers").json().await.expect("json")
    }

    pub async fn calls(&self, key: &str) -> u64 {
        let calls: serde_json::Value = self.get_json("/_emulator/calls").await;
        calls[key].as_u64().unwrap_or(0)
    }

    pub async fn policy(&self, resource: &str) -> common::policy::Policy {
        let url = self.url(&format!("/v3/{resource}:getIamPolicy"));
        let body = serde_json::json!({"options": {"requestedPolicyVersion": 3}});
        self.http.post(url).json(&body).send().await.expect("answers").json().await.expect("policy")
    }
}

pub fn email(text: &str) -> common::email::Email {
    common::email::Email::parse(text).expect("valid email")
}

pub fn project(text: &str) -> common::entitlement::ProjectId {
    common::entitlement::ProjectId::parse(text).expect("valid project")
}

/// A project as the resource an entitlement sits on.
pub fn on_project(text: &str) -> common::entitlement::ResourceId {
    common::entitlement::ResourceId::Project(project(text))
}

/// One of Google's own emulators from `gcloud` (`pubsub` or `firestore`), on a free port,
/// stopped on drop.
pub struct GcloudEmulator {
    child: std::process::Child,
    pub host: String,
}

impl GcloudEmulator {
    /// `None` where gcloud is not installed (a laptop); CI has it and must run these tests.
    pub async fn start(kind: &str) -> Option<GcloudEmulator> {
        use std::process::{Command, Stdio};
        let gcloud_present = Command::new("gcloud")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !gcloud_present {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI needs gcloud for the {kind} emulator");
            eprintln!("skipping: gcloud is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
        let host = format!("127.0.0.1:{port}");
        let data_dir = std::env::temp_dir().join(format!("{kind}-emulator-{port}"));
        std::fs::create_dir_all(&data_dir).expect("data directory");
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{kind}-emulator-{port}.log"))).expect("log");
        let mut command = Command::new("gcloud");
        command.args(["beta", "emulators", kind, "start", "--quiet"]).arg(format!("--host-port={host}"));
        if kind == "pubsub" {
            command.arg("--project=jit-project").arg(format!("--data-dir={}", data_dir.display()));
        }
        use std::os::unix::process::CommandExt as _;
        let child = command
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            // Its own process group, so that stopping it also stops the Java server it starts.
            .process_group(0)
            .spawn()
            .expect("gcloud starts");
        let emulator = GcloudEmulator { child, host };
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client.get(format!("http://{}/", emulator.host)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Some(emulator);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the {kind} emulator did not start within 60 s");
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) {
        let response = reqwest::Client::new()
            .put(format!("http://{}{path}", self.host))
            .json(&body)
            .send()
            .await
            .expect("emulator answers");
        assert!(response.status().is_success(), "{path}: {}", response.text().await.unwrap_or_default());
    }
}

impl Drop for GcloudEmulator {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

/// Writes one activation's binding, owned by its request, as the door would (tests of the
/// IAM adapter and of the sweeper). `true` when it wrote.
pub async fn activate(
    writer: &common::gcp::iam::IamWriter,
    activation: &common::activation::Activation,
    reason: &str,
) -> Result<bool, common::gcp::GcpError> {
    let key = common::policy::GrantKey { request: activation.request.clone(), legacy: Vec::new() };
    let resource = activation.entitlement.resource();
    writer.set_grant(resource, &key, &[activation.binding()], &[], reason, None).await
}
