//! The three HTTP functions served for real on 127.0.0.1, configured like production but
//! pointed at the emulator, and a client that calls them as a person behind IAP would.

use std::net::SocketAddr;

use common::config::Env;
use serde_json::Value;

pub use crate::support::Reply;
use crate::support::{Backend, SCOPE, backend, json_answer};

pub const AUDIENCE: &str = "/projects/300000000009/global/backendServices/4242";
pub const TOPIC: &str = "projects/jit-project/topics/jit-events";
pub const BASE_URL: &str = "https://jit.example.com";
pub const PUSH_AUDIENCE: &str = "https://mailer.example.com/";
pub const PUSH_ACCOUNT: &str = "jit-push@jit-project.iam.gserviceaccount.com";

pub struct System {
    pub backend: Backend,
    pub list: SocketAddr,
    pub request: SocketAddr,
    pub approve: SocketAddr,
    /// The mailer's Cloud Run front (invoker check, signature removed), where pushes go.
    pub mailer: SocketAddr,
    /// The mailer's container itself, behind that front.
    pub mailer_container: SocketAddr,
}

impl System {
    pub async fn start() -> System {
        System::start_with(&[]).await
    }

    /// Starts the functions with extra settings (e.g. a stricter justification pattern).
    pub async fn start_with(extra: &[(&'static str, &str)]) -> System {
        let backend = backend().await;
        let push = local::Push { account: PUSH_ACCOUNT, audience: PUSH_AUDIENCE };
        let mut pairs = local::function_settings(&backend.emulator, SCOPE, AUDIENCE, BASE_URL, TOPIC);
        pairs.extend(push.mailer_settings());
        pairs.push(("SENDGRID_API_KEY_SECRET", "projects/jit-project/secrets/sendgrid-api-key".to_string()));
        pairs.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));

        let mut env = Env::from_pairs(&pairs);
        let list_config = list_eligibility::Config::read(&mut env);
        let request_config = request_approval::Config::read(&mut env);
        let approve_config = approve::Config::read(&mut env);
        let mailer_config = mailer::Config::read(&mut env);
        env.finish().expect("valid configuration");

        let serve =
            |router| async move { common::runner::spawn_local(common::runner::app(router)).await.expect("binds") };
        let list =
            serve(list_eligibility::router(list_eligibility::AppState::new(list_config).await.expect("state"))).await;
        let request =
            serve(request_approval::router(request_approval::AppState::new(request_config).await.expect("state")))
                .await;
        let approve = serve(approve::router(approve::AppState::new(approve_config).await.expect("state"))).await;
        let mailer_container = serve(mailer::router(mailer::AppState::new(mailer_config).await.expect("state"))).await;
        let mailer = local::front_mailer(&backend.emulator, mailer_container, push, false).await.expect("front");
        // The emulator pushes the topic to the mailer with an OIDC token, as Pub/Sub does.
        let subscription = serde_json::json!({"topic": TOPIC, "pushConfig": {
            "pushEndpoint": format!("http://{mailer}/"),
            "oidcToken": {"serviceAccountEmail": PUSH_ACCOUNT, "audience": PUSH_AUDIENCE}}});
        let url = backend.url("/v1/projects/jit-project/subscriptions/mailer");
        let response = backend.http.put(url).json(&subscription).send().await.expect("emulator answers");
        assert_eq!(response.status(), 200);
        System { backend, list, request, approve, mailer, mailer_container }
    }

    /// An IAP assertion for `email`, minted by the emulator's IAP key.
    pub async fn assertion(&self, email: &str, audience: &str) -> String {
        let minted = self
            .backend
            .post_json("/_emulator/iap/assertion", &serde_json::json!({"email": email, "audience": audience}))
            .await;
        minted["assertion"].as_str().expect("assertion").to_string()
    }

    /// Calls as `user` behind IAP, with the XSRF header, as the page does.
    pub async fn call(&self, user: &str, method: &str, at: SocketAddr, path: &str, body: Option<Value>) -> Reply {
        let assertion = self.assertion(user, AUDIENCE).await;
        self.send(method, at, path, body, &[("x-goog-iap-jwt-assertion", &assertion), ("x-jitaccess", "1")]).await
    }

    /// Calls with exactly the given headers.
    pub async fn send(
        &self,
        method: &str,
        at: SocketAddr,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.backend.http.request(method, format!("http://{at}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("function answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    pub async fn get(&self, user: &str, at: SocketAddr, path: &str) -> Reply {
        self.call(user, "GET", at, path, None).await
    }

    /// A GET that asks for data as it is now (`Cache-Control: no-cache`), as the page does when
    /// it opens and after the person changed something.
    pub async fn get_fresh(&self, user: &str, at: SocketAddr, path: &str) -> Reply {
        let assertion = self.assertion(user, AUDIENCE).await;
        let headers =
            [("x-goog-iap-jwt-assertion", assertion.as_str()), ("x-jitaccess", "1"), ("cache-control", "no-cache")];
        self.send("GET", at, path, None, &headers).await
    }

    pub async fn post(&self, user: &str, at: SocketAddr, path: &str, body: Value) -> Reply {
        self.call(user, "POST", at, path, Some(body)).await
    }

    /// Messages published to the topic so far.
    pub async fn events(&self) -> Vec<Value> {
        let messages: Vec<Value> = self.backend.get_json("/_emulator/pubsub").await;
        messages
            .into_iter()
            .map(|message| {
                use base64::Engine as _;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(message["data"].as_str().unwrap_or_default())
                    .expect("base64");
                serde_json::from_slice(&data).expect("json data")
            })
            .collect()
    }

    /// Waits until the SendGrid capture holds `count` mails, and returns them.
    pub async fn wait_for_mail(&self, count: usize) -> Vec<Value> {
        for _ in 0..300 {
            let mail: Vec<Value> = self.backend.get_json("/_emulator/mail").await;
            if mail.len() >= count {
                return mail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("fewer than {count} mails arrived within 15 s");
    }

    /// A push OIDC token minted by the emulator's Google key.
    pub async fn push_token(&self, email: &str, audience: &str) -> String {
        let minted = self
            .backend
            .post_json("/_emulator/oidc/token", &serde_json::json!({"email": email, "audience": audience}))
            .await;
        minted["token"].as_str().expect("token").to_string()
    }

    /// Signs arbitrary claims with the app's service account key, through `signJwt`, as an
    /// attacker with Token Creator would, or a test that needs an expired token. `signJwt`
    /// refuses an `exp` in the past, so a token that has expired since it was signed is
    /// signed with the key directly.
    pub async fn sign(&self, claims: &Value) -> String {
        let now = common::timestamp::Timestamp::now().unix_seconds();
        if claims["exp"].as_i64().is_some_and(|exp| exp < now) {
            return self.backend.emulator.state.service_account_key.sign_json(claims).expect("signed");
        }
        let account = self.backend.emulator.state.world().service_account.clone();
        let url = self.backend.url(&format!("/v1/projects/-/serviceAccounts/{account}:signJwt"));
        let signed: Value =
            json_answer(self.backend.http.post(url).json(&serde_json::json!({"payload": claims.to_string()}))).await;
        signed["signedJwt"].as_str().expect("signed").to_string()
    }

    /// Removes `member` from every binding of `role` on the project, as an administrator would.
    pub async fn revoke_eligibility(&self, project: &str, role: &str, member: &str) {
        let mut policy = self.backend.policy(&format!("projects/{project}")).await;
        for binding in policy.bindings.iter_mut().filter(|b| b.role == role) {
            binding.members.retain(|m| m != member);
        }
        policy.bindings.retain(|b| !b.members.is_empty());
        let url = self.backend.url(&format!("/v3/projects/{project}:setIamPolicy"));
        let response =
            self.backend.http.post(url).json(&serde_json::json!({"policy": policy})).send().await.expect("answers");
        assert_eq!(response.status(), 200);
    }
}
