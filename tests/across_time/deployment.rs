//! The HTTP functions and the sweeper as deployed, on the emulator, called in-process (so a
//! call can be stopped part-way, as Cloud Run's timeout or a lost instance stops a handler),
//! and a clock that moves for all of them at once.

use std::time::Duration;

use axum::Router;
use common::activation::{ActivationBinding, read_activation_binding};
use common::config::Env;
use common::lifecycle::Record;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub use crate::support::Reply;
use crate::support::{Backend, SCOPE, backend};

pub const AUDIENCE: &str = "/projects/300000000009/global/backendServices/4242";
pub const TOPIC: &str = "projects/jit-project/topics/jit-events";
pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const CAROL: &str = "carol@example.com";
pub const DAVE: &str = "dave@example.com";
pub const ADMIN: &str = "admin@example.com";
pub const COMPUTE: &str = "project-1:roles/compute.admin";
pub const STORAGE: &str = "project-1:roles/storage.admin";

/// One test at a time: the clock is the process's.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = TURN.lock().await;
    common::timestamp::travel::reset();
    turn
}

/// Moves every clock of the process ahead.
pub fn advance_minutes(minutes: i64) {
    common::timestamp::travel::advance(minutes * 60);
}

pub fn now() -> i64 {
    common::timestamp::Timestamp::now().unix_seconds()
}

pub fn rfc3339(seconds: i64) -> String {
    common::timestamp::Timestamp::from_unix_seconds(seconds).expect("in range").to_string()
}

impl Reply {
    pub fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or("")
    }

    pub fn id(&self) -> String {
        self.body["entitlements"][0]["activationId"].as_str().unwrap_or_default().to_string()
    }
}

pub struct Deployment {
    pub backend: Backend,
    list: Router,
    request: Router,
    approve: Router,
    sweeper: sweeper::Config,
}

impl Deployment {
    /// The example organization, Carol and Dave also peers of compute.admin on project-1,
    /// compute.admin needing two approvals, `admin@example.com` an administrator; `extra`
    /// settings over those.
    pub async fn start(extra: &[(&'static str, &str)]) -> Deployment {
        Deployment::start_on(backend().await, extra).await
    }

    pub async fn start_on(backend: Backend, extra: &[(&'static str, &str)]) -> Deployment {
        let mut pairs = local::function_settings(&backend.emulator, SCOPE, AUDIENCE, "https://jit.example.com", TOPIC);
        pairs.extend([
            (
                "APPROVAL_POLICY",
                r#"[{"roles": ["roles/compute.admin"], "approvals": 2, "breakGlass": {"maxDuration": 30, "reviewWithin": 20}}]"#
                    .to_string(),
            ),
            ("BREAK_GLASS_LIMIT", "4/1h".to_string()),
            ("ADMINISTRATORS", format!("user:{ADMIN}")),
            ("ACTIVATION_TIMEOUT", "240".to_string()),
            ("ACTIVATION_REQUEST_TIMEOUT", "60".to_string()),
            ("POLICY_CACHE_TIMEOUT", "0".to_string()),
            // The histories' few people ask dozens of times a minute: no budget of asks here
            // (tests/system/quota.rs tries that one).
            ("LISTING_BUDGET_BURST", "1000".to_string()),
            ("LISTING_BUDGET_PER_MINUTE", "6000".to_string()),
        ]);
        pairs.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));
        let mut env = Env::from_pairs(&pairs);
        let list = list_eligibility::Config::read(&mut env);
        let request = request_approval::Config::read(&mut env);
        let approve = approve::Config::read(&mut env);
        let sweeper = sweeper::Config::read(&mut env);
        env.finish().expect("valid configuration");
        let deployment = Deployment {
            list: common::runner::app(list_eligibility::router(
                list_eligibility::AppState::new(list).await.expect("state"),
            )),
            request: common::runner::app(request_approval::router(
                request_approval::AppState::new(request).await.expect("state"),
            )),
            approve: common::runner::app(approve::router(approve::AppState::new(approve).await.expect("state"))),
            sweeper,
            backend,
        };
        deployment.more_peers().await;
        deployment
    }

    async fn more_peers(&self) {
        let mut policy = self.policy_json("projects/project-1").await;
        policy["bindings"].as_array_mut().expect("bindings").push(json!({
            "role": "roles/compute.admin", "members": [format!("user:{CAROL}"), format!("user:{DAVE}")],
            "condition": {"title": "Eligible", "expression": "has({}.multiPartyApprovalConstraint)"}}));
        self.set_policy_json("projects/project-1", policy).await;
    }

    /// The events published so far, oldest first.
    pub async fn events(&self) -> Vec<Value> {
        use base64::Engine as _;
        let messages: Vec<Value> = self.backend.get_json("/_emulator/pubsub").await;
        messages
            .iter()
            .filter_map(|m| base64::engine::general_purpose::STANDARD.decode(m["data"].as_str()?).ok())
            .filter_map(|data| serde_json::from_slice(&data).ok())
            .collect()
    }

    /// Dave breaks glass on compute.admin for `minutes`: the request's ID.
    pub async fn break_glass(&self, minutes: u64) -> String {
        let body = json!({"entitlementId": COMPUTE, "justification": "INC-7 outage", "activationTimeout": minutes});
        let reply = self.post(DAVE, "/api/projects/project-1/roles/break-glass", body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.id()
    }

    /// Calls as `user` behind IAP, as the page does.
    pub async fn call(&self, user: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call_within(user, method, path, body, Duration::from_secs(120)).await.expect("answered in time")
    }

    /// As `call`, stopped after `limit`: `None` when the handler was still running then and
    /// was dropped part-way, wherever it stood.
    pub async fn call_within(
        &self,
        user: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> Option<Reply> {
        let minted =
            self.backend.post_json("/_emulator/iap/assertion", &json!({"email": user, "audience": AUDIENCE})).await;
        let assertion = minted["assertion"].as_str().expect("assertion").to_string();
        let router = if path.starts_with("/api/requests?") || path.contains("/roles?") || path.ends_with("/roles") {
            &self.list
        } else if path.contains("/roles/self-activate")
            || path.contains("/roles/request")
            || path.contains("/roles/break-glass")
            || path.ends_with("/withdraw")
            || path.ends_with("/extend")
        {
            &self.request
        } else {
            &self.approve
        };
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-goog-iap-jwt-assertion", assertion)
            .header("x-jitaccess", "1")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .expect("request");
        let response = tokio::time::timeout(limit, router.clone().oneshot(request)).await.ok()?.expect("answers");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        Some(Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
    }

    pub async fn post(&self, user: &str, path: &str, body: Value) -> Reply {
        self.call(user, "POST", path, Some(body)).await
    }

    pub async fn get(&self, user: &str, path: &str) -> Reply {
        self.call(user, "GET", path, None).await
    }

    pub async fn act(&self, user: &str, id: &str, action: &str, reason: &str) -> Reply {
        self.post(user, &format!("/api/requests/{id}/{action}"), json!({"reason": reason})).await
    }

    /// Alice asks for compute.admin on project-1, `minutes` long; returns the request's ID.
    pub async fn ask(&self, reviewers: &[&str], minutes: u64) -> String {
        let body = json!({"entitlementId": COMPUTE, "justification": "BUG-1", "peers": reviewers, "activationTimeout": minutes});
        let reply = self.post(ALICE, "/api/projects/project-1/roles/request", body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.id()
    }

    /// Alice asks Bob and Carol, both approve: an active two-approval grant.
    pub async fn granted(&self, minutes: u64) -> String {
        let id = self.ask(&[BOB, CAROL, DAVE], minutes).await;
        assert_eq!(self.act(BOB, &id, "approve", "").await.status, 200);
        let reply = self.act(CAROL, &id, "approve", "").await;
        assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
        id
    }

    /// Carol self-activates storage.admin on project-1.
    pub async fn self_activate(&self, user: &str, id: &str, minutes: u64, start: Option<i64>) -> Reply {
        let mut body = json!({"entitlementIds": [id], "justification": "BUG-1", "activationTimeout": minutes});
        if let Some(start) = start {
            body["startTime"] = json!(rfc3339(start));
        }
        let project = id.split(':').next().unwrap_or_default();
        self.post(user, &format!("/api/projects/{project}/roles/self-activate"), body).await
    }

    /// One run of the sweeper job.
    pub async fn sweep(&self) -> sweeper::Summary {
        sweeper::run(&self.sweeper, common::timestamp::Timestamp::now()).await.expect("the sweep runs")
    }

    /// Our activation bindings on `resource` that belong to request `id`.
    pub async fn bindings_of(&self, resource: &str, id: &str) -> Vec<ActivationBinding> {
        self.ours(resource).await.into_iter().filter(|b| b.request.as_deref() == Some(id)).collect()
    }

    /// Our activation bindings on `resource` that still grant something at `now`.
    pub async fn granting(&self, resource: &str, now: common::timestamp::Timestamp) -> Vec<ActivationBinding> {
        self.ours(resource).await.into_iter().filter(|b| b.window.end() > now).collect()
    }

    async fn ours(&self, resource: &str) -> Vec<ActivationBinding> {
        self.backend.policy(resource).await.bindings.iter().filter_map(read_activation_binding).collect()
    }

    /// The request as the ledger holds it, unverified (what a document writer sees).
    pub async fn record(&self, id: &str) -> Option<Record> {
        self.ledger().get(id).await.expect("read").map(|s| s.record)
    }

    pub fn ledger(&self) -> common::gcp::ledger::Ledger {
        let endpoint = self.backend.emulator.url();
        common::gcp::ledger::Ledger::new(
            reqwest::Client::new(),
            &endpoint,
            "projects/jit-project/databases/(default)",
            30,
        )
        .expect("client")
    }

    pub async fn inject(&self, fault: Value) {
        let response =
            self.backend.http.post(self.backend.url("/_emulator/faults")).json(&fault).send().await.expect("answers");
        assert_eq!(response.status(), 204);
    }

    pub async fn clear_faults(&self) {
        self.backend.http.delete(self.backend.url("/_emulator/faults")).send().await.expect("cleared");
    }

    pub async fn policy_json(&self, resource: &str) -> Value {
        let url = self.backend.url(&format!("/v3/{resource}:getIamPolicy"));
        let body = json!({"options": {"requestedPolicyVersion": 3}});
        self.backend.http.post(url).json(&body).send().await.expect("answers").json().await.expect("policy")
    }

    pub async fn set_policy_json(&self, resource: &str, policy: Value) {
        let url = self.backend.url(&format!("/v3/{resource}:setIamPolicy"));
        let response = self.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    }

    /// Changes a policy as an administrator would, read-modify-write with its etag, until it
    /// lands (faults injected for the functions hit this too).
    pub async fn modify_policy(&self, resource: &str, change: impl Fn(&mut Value)) {
        for _ in 0..50 {
            let url = self.backend.url(&format!("/v3/{resource}:getIamPolicy"));
            let body = json!({"options": {"requestedPolicyVersion": 3}});
            let read = self.backend.http.post(url).json(&body).send().await.expect("answers");
            if read.status() != 200 {
                continue;
            }
            let mut policy: Value = read.json().await.expect("policy");
            change(&mut policy);
            let url = self.backend.url(&format!("/v3/{resource}:setIamPolicy"));
            let written = self.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
            if written.status() == 200 {
                return;
            }
        }
        panic!("the policy of {resource} could not be changed");
    }

    /// Removes `member` from every eligible binding of `role` on project-1.
    pub async fn remove_eligibility(&self, role: &str, member: &str) {
        self.modify_policy("projects/project-1", |policy| {
            for binding in policy["bindings"].as_array_mut().expect("bindings") {
                let eligible = binding["condition"]["title"] != "JIT access activation";
                if binding["role"] == role && eligible {
                    let member = json!(format!("user:{member}"));
                    binding["members"].as_array_mut().expect("members").retain(|m| m != &member);
                }
            }
            policy["bindings"].as_array_mut().expect("bindings").retain(|b| b["members"] != json!([]));
        })
        .await;
    }
}
