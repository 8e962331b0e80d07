//! Everything the emulator holds: the organization, its keys, captured mail and messages,
//! call counts, and the faults tests ask it to inject.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::keys::LocalKey;
use serde::Deserialize;
use serde_json::Value;

use crate::google::GoogleError;
use crate::pubsub::PubSub;
use crate::world::World;

#[derive(Debug)]
pub struct State {
    world: Mutex<World>,
    pub service_account_key: LocalKey,
    pub iap_key: LocalKey,
    /// Google's OIDC key: signs Pub/Sub push tokens.
    pub google_oidc_key: LocalKey,
    /// `chat@system.gserviceaccount.com`'s key: signs Google Chat's calls to the app.
    pub chat_key: LocalKey,
    pub chat: Mutex<crate::chat::Chat>,
    faults: Mutex<Vec<Fault>>,
    /// Every Google API call takes this long (milliseconds), as Google's do across a network:
    /// `scripts/perf` counts round trips on an operation's critical path by it.
    latency_ms: std::sync::atomic::AtomicU64,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Policy Analyzer queries answered since start: the emulator's "day".
    analysis_queries: Mutex<u64>,
    /// Each Policy Analyzer query as received (its `analysisQuery` echo and execution
    /// timeout), for tests that check what the catalog asks.
    analyses: Mutex<Vec<Value>>,
    /// Seconds added to the real clock by `POST /_emulator/clock`: time-bound rules (Chat's
    /// request IDs) can be aged without waiting.
    clock_offset: Mutex<i64>,
    mail: Mutex<Vec<Value>>,
    audit: Mutex<Vec<Value>>,
    pub pubsub: Mutex<PubSub>,
    pub firestore: Mutex<crate::firestore::Firestore>,
    pub http: reqwest::Client,
    /// Print captured mail to the console (the local run does, tests do not).
    pub echo_mail: bool,
}

/// Makes the next `count` calls to an API (optionally one method) fail or slow down.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// `asset`, `resourcemanager`, `iamcredentials`, `pubsub`, `sendgrid` or `jwks`.
    pub api: String,
    /// e.g. `setIamPolicy`; any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// The HTTP status to answer with (409, 412, 429, 503, …); none = only add latency.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub latency_ms: u64,
    /// Firestore `runQuery` only: answer 200 and put the error in the stream, after the
    /// documents, as an element `{"error": …}` (a query that fails part-way).
    #[serde(default)]
    pub in_stream: bool,
}

fn one() -> u32 {
    1
}

/// A poisoned lock only means another request panicked; the data is still usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(world: World, echo_mail: bool) -> anyhow::Result<State> {
        let topics = world.topics.clone();
        Ok(State {
            world: Mutex::new(world),
            service_account_key: LocalKey::generate_rs256("emulator-service-account-key-1")?,
            iap_key: LocalKey::generate_es256("emulator-iap-key-1")?,
            google_oidc_key: LocalKey::generate_rs256("emulator-google-oidc-key-1")?,
            chat_key: LocalKey::generate_rs256("emulator-chat-key-1")?,
            chat: Mutex::default(),
            faults: Mutex::default(),
            latency_ms: Default::default(),
            calls: Mutex::default(),
            analysis_queries: Mutex::default(),
            analyses: Mutex::default(),
            clock_offset: Mutex::default(),
            mail: Mutex::default(),
            audit: Mutex::default(),
            pubsub: Mutex::new(PubSub::with_topics(&topics)),
            firestore: Mutex::default(),
            http: reqwest::Client::new(),
            echo_mail,
        })
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Counts one Policy Analyzer query against the organization's free daily limit, if it
    /// has one: past it, Google answers 429 RESOURCE_EXHAUSTED.
    pub fn spend_analysis_query(&self) -> Result<(), GoogleError> {
        let limit = self.world().settings.free_analysis_queries_per_day;
        let mut spent = lock(&self.analysis_queries);
        if let Some(limit) = limit
            && *spent >= limit
        {
            return Err(GoogleError::new(
                429,
                &format!(
                    "Quota exceeded: this organization's free Policy Analyzer quota of {limit} analysis queries per day is used up. Activate Security Command Center Premium or Enterprise for more."
                ),
            ));
        }
        *spent += 1;
        Ok(())
    }

    /// Counts the call, then applies the first matching fault, if any.
    pub async fn enter(&self, api: &str, method: &str) -> Result<(), GoogleError> {
        self.enter_within(api, method, None).await.map(|_| ())
    }

    /// As [`State::enter`], for a method that stops working after `budget` (Policy Analyzer's
    /// `executionTimeout`): an injected latency is served up to the budget, and the answer
    /// says whether the budget ran out first (`true`: answer with what was found so far).
    pub async fn enter_within(&self, api: &str, method: &str, budget: Option<Duration>) -> Result<bool, GoogleError> {
        *lock(&self.calls).entry(format!("{api}.{method}")).or_default() += 1;
        let every_call = self.latency_ms.load(std::sync::atomic::Ordering::Relaxed);
        if every_call > 0 && !matches!(api, "jwks" | "sendgrid") {
            tokio::time::sleep(Duration::from_millis(every_call)).await;
        }
        let Some(fault) = self.take_fault(api, method, false) else {
            return Ok(false);
        };
        let latency = Duration::from_millis(fault.latency_ms);
        let cut_short = budget.is_some_and(|budget| budget < latency);
        let waited = budget.map_or(latency, |budget| budget.min(latency));
        if !waited.is_zero() {
            tokio::time::sleep(waited).await;
        }
        match fault.status {
            Some(status) => Err(GoogleError::new(status, &format!("injected fault: {api}.{method} answers {status}"))),
            None => Ok(cut_short),
        }
    }

    /// The error to put inside a stream's answer (a fault with `inStream`), if one is due.
    pub fn stream_fault(&self, api: &str, method: &str) -> Option<GoogleError> {
        let fault = self.take_fault(api, method, true)?;
        let status = fault.status.unwrap_or(503);
        Some(GoogleError::new(status, &format!("injected fault: {api}.{method} fails in its stream with {status}")))
    }

    fn take_fault(&self, api: &str, method: &str, in_stream: bool) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let position = faults.iter().position(|f| {
            f.api == api && f.method.as_deref().is_none_or(|m| m == method) && f.count > 0 && f.in_stream == in_stream
        })?;
        faults[position].count -= 1;
        let fault = faults[position].clone();
        if faults[position].count == 0 {
            faults.remove(position);
        }
        Some(fault)
    }

    /// Makes every Google API call take `ms` milliseconds from now on (0: none).
    pub fn set_latency(&self, ms: u64) {
        self.latency_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The emulator's clock: the real one plus what tests advanced it by.
    pub fn now(&self) -> common::timestamp::Timestamp {
        common::timestamp::Timestamp::now().plus_seconds(*lock(&self.clock_offset))
    }

    pub fn advance_clock(&self, seconds: i64) {
        *lock(&self.clock_offset) += seconds;
    }

    pub fn record_analysis(&self, query: Value) {
        lock(&self.analyses).push(query);
    }

    pub fn analyses(&self) -> Vec<Value> {
        lock(&self.analyses).clone()
    }

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }

    pub fn capture_mail(&self, body: Value) {
        if self.echo_mail {
            print_mail(&body);
        }
        lock(&self.mail).push(body);
    }

    pub fn mail(&self) -> Vec<Value> {
        lock(&self.mail).clone()
    }

    /// A Google-signed OIDC token, as Pub/Sub attaches to an authenticated push.
    pub fn oidc_token(&self, email: &str, audience: &str) -> Result<String, GoogleError> {
        let now = common::timestamp::Timestamp::now().unix_seconds();
        let claims = serde_json::json!({
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": format!("{}", email.bytes().map(u64::from).sum::<u64>()),
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        });
        self.google_oidc_key.sign_json(&claims).map_err(|e| GoogleError::new(500, &e.to_string()))
    }

    /// The token Google Chat sends its app: for a project-number audience a JWT signed as
    /// `chat@system.gserviceaccount.com`, for a URL audience a Google ID token issued to it.
    pub fn chat_token(&self, audience: &str) -> Result<String, GoogleError> {
        if !audience.bytes().all(|b| b.is_ascii_digit()) {
            return self.oidc_token(common::chat::CHAT_ACCOUNT, audience);
        }
        let now = common::timestamp::Timestamp::now().unix_seconds();
        let claims = serde_json::json!({
            "iss": common::chat::CHAT_ACCOUNT, "aud": audience, "iat": now, "exp": now + 3600,
        });
        self.chat_key.sign_json(&claims).map_err(|e| GoogleError::new(500, &e.to_string()))
    }

    pub fn record_audit(&self, entry: Value) {
        lock(&self.audit).push(entry);
    }

    pub fn audit(&self) -> Vec<Value> {
        lock(&self.audit).clone()
    }
}

fn print_mail(body: &Value) {
    let to: Vec<&str> = body["personalizations"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["to"].as_array().into_iter().flatten())
        .filter_map(|t| t["email"].as_str())
        .collect();
    let text = body["content"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "text/plain")
        .and_then(|c| c["value"].as_str())
        .unwrap_or("");
    println!("\n── mail to {} ──\nSubject: {}\n{}\n──", to.join(", "), body["subject"].as_str().unwrap_or(""), text);
}
