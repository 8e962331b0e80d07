//! The `mailer` function: activation events from a Pub/Sub push subscription (or Eventarc),
//! turned into email through SendGrid.
//!
//! `POST /` takes one delivery. Answers follow Pub/Sub's rules: 2xx acknowledges, anything
//! else asks for a redelivery with the subscription's backoff. So a mail that failed for a
//! passing reason (SendGrid 429 or 5xx, a timeout) gets 503 and comes back; a message that
//! can never be sent (not JSON, unknown type, refused by SendGrid) is acknowledged, logged
//! with its message ID and counted, so it cannot loop. Delivery is at least once: a
//! redelivered message can send the same mail twice.

pub mod compose;
pub mod envelope;
pub mod sendgrid;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::config::{BackendSettings, Env};
use common::gcp::jwks::JwksCache;
use common::http::ApiError;
use common::http::push::authenticate;
pub use common::http::push::{PushAuth, SignatureCheck};

use crate::compose::{Skip, Style, compose};
use crate::sendgrid::{SendGrid, Sent};

#[derive(Debug, Clone)]
pub struct Config {
    /// `SENDGRID_API_KEY` (local) or read from `SENDGRID_API_KEY_SECRET` at start.
    pub api_key: ApiKey,
    pub sendgrid_url: String,
    pub sender_name: String,
    pub sender_address: String,
    pub time_zone: String,
    pub self_approved_mail: bool,
    pub push_auth: Option<PushAuth>,
    /// `BASE_URL`: links in mail are built from it, never taken from an event.
    pub base_url: String,
    pub secret_manager_endpoint: String,
    /// `ADMINISTRATORS`, as addresses: mailed of every emergency access.
    pub administrators: Vec<common::email::Email>,
    pub backend: BackendSettings,
}

/// Where the SendGrid key comes from.
#[derive(Clone)]
pub enum ApiKey {
    Value(String),
    /// `projects/P/secrets/S/versions/V`
    Secret(String),
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiKey::Value(_) => f.write_str("ApiKey::Value(…)"),
            ApiKey::Secret(path) => write!(f, "ApiKey::Secret({path})"),
        }
    }
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        let api_key = match (env.optional("SENDGRID_API_KEY"), env.optional("SENDGRID_API_KEY_SECRET")) {
            // A secret without a version means its latest one.
            (_, Some(secret)) if secret.contains("/versions/") => ApiKey::Secret(secret),
            (_, Some(secret)) => ApiKey::Secret(format!("{secret}/versions/latest")),
            (Some(key), None) => ApiKey::Value(key),
            (None, None) => {
                env.problem(
                    "SENDGRID_API_KEY_SECRET (projects/P/secrets/S/versions/V) or SENDGRID_API_KEY is required".into(),
                );
                ApiKey::Value(String::new())
            }
        };
        let time_zone = env.text("NOTIFICATION_TIMEZONE", "UTC");
        if jiff::tz::TimeZone::get(&time_zone).is_err() {
            env.problem(format!(
                "NOTIFICATION_TIMEZONE must be an IANA time zone such as Europe/Berlin, not '{time_zone}'"
            ));
        }
        let sender_address = env.required("SMTP_SENDER_ADDRESS", "the address mail is sent from");
        if !sender_address.is_empty() && common::email::Email::parse(&sender_address).is_err() {
            env.problem(format!("SMTP_SENDER_ADDRESS must be an email address, not '{sender_address}'"));
        }
        let push_auth = PushAuth::read(env, "the mailer send mail", "cloud-run");
        let base_url = env.required("BASE_URL", "the URL people open JIT access at; every link in mail starts with it");
        if !(base_url.is_empty() || base_url.starts_with("https://") || base_url.starts_with("http://")) {
            env.problem(format!("BASE_URL must be an http(s) URL, not '{base_url}'"));
        }
        Config {
            api_key,
            sendgrid_url: env.text("SENDGRID_BASE_URL", "https://api.sendgrid.com"),
            sender_name: env.text("SMTP_SENDER_NAME", "JIT Access"),
            sender_address,
            time_zone,
            self_approved_mail: env.boolean("NOTIFY_SELF_APPROVED", true),
            push_auth,
            base_url: base_url.trim_end_matches('/').to_string(),
            secret_manager_endpoint: env.text("SECRET_MANAGER_ENDPOINT", "https://secretmanager.googleapis.com"),
            // Told of every emergency access, users and groups alike (a group's address is mailed).
            administrators: common::config::administrators(env)
                .iter()
                .filter_map(|member| member.split_once(':'))
                .filter_map(|(_, address)| common::email::Email::parse(address).ok())
                .collect(),
            backend: BackendSettings::read(env),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    sendgrid: SendGrid,
    style: Style,
    push_auth: Option<(PushAuth, Arc<JwksCache>)>,
    counters: Arc<Counters>,
}

/// Running totals, logged with each outcome so an operator can chart them.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub poison: AtomicU64,
    pub retried: AtomicU64,
}

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, String> {
        let api_key = match &config.api_key {
            ApiKey::Value(key) => key.clone(),
            ApiKey::Secret(path) => read_secret(&config, path).await?,
        };
        let sendgrid = SendGrid::new(
            &config.sendgrid_url,
            api_key,
            &config.sender_name,
            &config.sender_address,
            config.backend.read_timeout,
        );
        let style = Style {
            time_zone: jiff::tz::TimeZone::get(&config.time_zone).map_err(|e| e.to_string())?,
            thread_domain: config.sender_address.rsplit('@').next().unwrap_or("jit-access").to_string(),
            self_approved: config.self_approved_mail,
            base_url: config.base_url.clone(),
            administrators: config.administrators.clone(),
        };
        let push_auth = config.push_auth.map(|auth| {
            let keys = JwksCache::new(JwksCache::http_client(&config.backend), &auth.jwks_url);
            (auth, Arc::new(keys))
        });
        Ok(AppState { sendgrid, style, push_auth, counters: Arc::default() })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

async fn read_secret(config: &Config, path: &str) -> Result<String, String> {
    common::gcp::secrets::read_secret(&config.secret_manager_endpoint, path)
        .await
        .map_err(|e| format!("reading the SendGrid key: {e}"))
}

common::function!("mailer");

pub fn routes() -> common::http::Routes<AppState> {
    vec![("POST", "/", post(push))]
}

pub fn router(state: AppState) -> Router {
    common::http::service_router("mailer", routes()).with_state(state)
}

async fn push(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some((auth, keys)) = &state.push_auth
        && let Err(error) = authenticate(auth, keys, &headers).await
    {
        return error.into_response();
    }
    let delivery = match envelope::parse(&body) {
        Ok(delivery) => delivery,
        Err(reason) => return poison(&state, "", &reason),
    };
    let event: serde_json::Value = match serde_json::from_slice(&delivery.data) {
        Ok(event) => event,
        Err(error) => return poison(&state, &delivery.message_id, &format!("data is not JSON ({error})")),
    };
    let mail = match compose(&event, &state.style) {
        Ok(mail) => mail,
        Err(Skip::Poison(reason)) => return poison(&state, &delivery.message_id, &reason),
        Err(Skip::NotMailed(reason)) => {
            tracing::info!(message_id = %delivery.message_id, reason, "event not mailed");
            return StatusCode::NO_CONTENT.into_response();
        }
    };
    let event_type = event["type"].as_str().unwrap_or_default();
    match state.sendgrid.send(&mail).await {
        Sent::Accepted => {
            let sent = state.counters.sent.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(message_id = %delivery.message_id, event_type, recipients = mail.to.len() + mail.cc.len(), sent_total = sent, "mail sent");
            StatusCode::NO_CONTENT.into_response()
        }
        Sent::Retry(reason) => {
            let retried = state.counters.retried.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(message_id = %delivery.message_id, event_type, reason, retried_total = retried, "mail not sent yet; Pub/Sub will deliver again");
            ApiError::unavailable(reason).into_response()
        }
        Sent::Rejected(reason) => poison(&state, &delivery.message_id, &reason),
    }
}

/// Acknowledges a message that can never be sent, so it cannot loop; logs and counts it.
fn poison(state: &AppState, message_id: &str, reason: &str) -> Response {
    let poison = state.counters.poison.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(message_id, reason, poison_total = poison, "message dropped: it can never be mailed");
    StatusCode::NO_CONTENT.into_response()
}
