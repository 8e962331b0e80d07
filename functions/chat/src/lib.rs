//! The `chat` function: a Google Chat app, so reviewers decide where they already are.
//!
//! - `POST /events`: the events topic's Pub/Sub push (as the mailer's). A new peer-approval
//!   request posts its card to each reviewer by direct message, or once to `CHAT_SPACE`; any
//!   later change to the request (an approval, the grant, a deny, a withdrawal, a revocation)
//!   updates every copy, so nobody decides on a stale card. The card is drawn from the ledger's
//!   record, checked against its signed token, never from the event.
//! - `POST /`: the Chat app's HTTP endpoint. A click runs the approve function's own decision
//!   code through the ledger (quorum, single use, every refusal), as the clicker: the event's
//!   user, believed only from a request whose bearer token proves it came from Google Chat
//!   (`CHAT_AUDIENCE`: the project number, or the endpoint URL; see [`ChatAudience`]).
//!
//! Chat finds a direct message only by a person's Chat ID when an app asks, so the app keeps
//! who added it (address → `users/ID` and their direct message) from the `ADDED_TO_SPACE`
//! event, and asks Chat only when that space is gone; a reviewer who never added the app, or
//! removed it, gets mail only.
//!
//! One reviewer's failed post never stops the others' cards: failures are collected, and the
//! push asks for a redelivery only when one of them could pass next time. A click answers
//! within `CHAT_CLICK_TIMEOUT`, well inside Chat's reply deadline; a slower decision goes on
//! and its event updates the cards.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::chat::{
    ADD_ON_HINT, APPROVE, CHAT_ACCOUNT, ChatEvent, DENY, Dialog, RATIFY, REJECT, card, close_dialog, is_add_on_event,
    message_id, parse_event, request_id, update_message,
};
use common::condition::ActivationType;
use common::config::Env;
use common::door::Door;
use common::email::Email;
use common::event::{Event, Kind};
use common::gcp::GcpError;
use common::gcp::chat::{ChatClient, ChatUser, ChatUsers, Posted};
use common::gcp::jwks::{CLOCK_LEEWAY_SECONDS, JwksCache};
use common::http::ApiError;
use common::http::push::{PushAuth, authenticate, bearer, google_keys_url, parse_envelope, verify_google_id_token};
use common::jwt::{Expectations, JwtError};
use common::lifecycle::Record;
use common::rules::Action;
use common::timestamp::Timestamp;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Config {
    /// What the approve function reads, but IAP: no route here is behind IAP.
    pub decisions: common::config::Config,
    /// `CHAT_ENDPOINT`: Google Chat's API.
    pub endpoint: String,
    /// `CHAT_SPACE` (`spaces/…`): post cards there instead of to each reviewer.
    pub space: Option<String>,
    pub audience: ChatAudience,
    /// Pushes' check; its `jwks_url` (`PUSH_JWKS_URL`, Google's ID-token keys) also serves
    /// Chat's endpoint-URL form.
    pub push_auth: Option<PushAuth>,
    pub google_keys_url: String,
    /// `CHAT_CLICK_TIMEOUT`: how long a click may wait for its decision before it answers
    /// that the decision is still going on. Chat's own reply deadline is not documented
    /// (about 30 seconds is the common reading), so the default leaves a margin.
    pub click_timeout: Duration,
}

/// The two ways Google Chat proves a request came from it, as set in the Chat app's
/// configuration ("Authentication audience").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAudience {
    /// A JWT from `chat@system.gserviceaccount.com` (its own keys) with the project number as
    /// audience.
    ProjectNumber(String),
    /// A Google ID token for the app's URL, issued to `chat@system.gserviceaccount.com`.
    EndpointUrl(String),
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        let decisions = common::config::Config::read_without_iap(env);
        let audience = env
            .required("CHAT_AUDIENCE", "the Chat app's authentication audience: the project number or this app's URL");
        let audience = if !audience.is_empty() && audience.bytes().all(|b| b.is_ascii_digit()) {
            ChatAudience::ProjectNumber(audience)
        } else {
            if !(audience.is_empty() || audience.starts_with("https://") || audience.starts_with("http://")) {
                env.problem(format!("CHAT_AUDIENCE must be a project number or the app's URL, not '{audience}'"));
            }
            ChatAudience::EndpointUrl(audience)
        };
        let space = env.optional("CHAT_SPACE");
        if let Some(space) = &space
            && !space.starts_with("spaces/")
        {
            env.problem(format!("CHAT_SPACE must be a space name such as spaces/AAAA, not '{space}'"));
        }
        Config {
            decisions,
            endpoint: env.text("CHAT_ENDPOINT", "https://chat.googleapis.com"),
            space,
            audience,
            google_keys_url: google_keys_url(env),
            // Chat calls this service too, with a token Cloud Run's invoker check cannot
            // accept (its audience is the project number): the service checks both itself.
            push_auth: PushAuth::read(env, "the Chat app post cards", "verify"),
            click_timeout: env.seconds("CHAT_CLICK_TIMEOUT", 20, 1..=25),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    /// The one door to a request: the same decisions as the approve function's.
    door: Door,
    chat: ChatClient,
    users: ChatUsers,
    space: Option<String>,
    audience: ChatAudience,
    chat_keys: Arc<JwksCache>,
    /// Google's ID-token keys: for pushes and for Chat's endpoint-URL form alike.
    google_keys: Arc<JwksCache>,
    push: Option<PushAuth>,
    click_timeout: Duration,
}

/// A bound on the ledger read that draws the card when a decision outlives the click's
/// timeout, so the answer still comes inside Chat's deadline.
const LEDGER_READ_TIMEOUT: Duration = Duration::from_secs(3);

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, GcpError> {
        let backend = config.decisions.backend.clone();
        let ledger = config.decisions.ledger.clone();
        let http = JwksCache::http_client(&backend);
        Ok(AppState {
            door: Door::new(Arc::new(config.decisions), None).await?,
            chat: ChatClient::new(http.clone(), &config.endpoint)?,
            users: ChatUsers::new(http.clone(), &ledger.endpoint, &ledger.database)?,
            space: config.space,
            audience: config.audience,
            chat_keys: Arc::new(JwksCache::service_account(http.clone(), &backend, CHAT_ACCOUNT)),
            google_keys: Arc::new(JwksCache::new(http, &config.google_keys_url)),
            push: config.push_auth,
            click_timeout: config.click_timeout,
        })
    }
}

common::function!("chat");

pub fn routes() -> common::http::Routes<AppState> {
    vec![("POST", "/", post(chat_event)), ("POST", "/events", post(push))]
}

pub fn router(state: AppState) -> Router {
    common::http::service_router("chat", routes()).with_state(state)
}

/// 401 unless the request carries a token Google Chat signed for this app.
async fn verify_chat(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |message: String| ApiError::unauthenticated("chat_unauthenticated", message);
    let token = bearer(headers, "authorization", &refuse)?
        .ok_or_else(|| refuse("a Chat event needs Authorization: Bearer with Google Chat's token".into()))?;
    match &state.audience {
        ChatAudience::ProjectNumber(number) => {
            let expect = Expectations {
                algorithm: jsonwebtoken::Algorithm::RS256,
                issuer: CHAT_ACCOUNT,
                audience: number,
                now: Timestamp::now(),
                leeway_seconds: CLOCK_LEEWAY_SECONDS,
                require_not_before: false,
                check_times: true,
            };
            state
                .chat_keys
                .verify(|keys| common::jwt::verify(token, keys, &expect), |e| matches!(e, JwtError::UnknownKeyId(_)))
                .await
                .map(|_| ())
                .map_err(|error| error.map_refused(|e| refuse(e.to_string())).into())
        }
        ChatAudience::EndpointUrl(url) => verify_google_id_token(&state.google_keys, token, url, CHAT_ACCOUNT)
            .await
            .map_err(|error| error.map_refused(refuse).into()),
    }
}

async fn chat_event(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let event: Result<Value, _> = serde_json::from_slice(&body);
    // An app built as a Workspace add-on gets another event shape, and a token from the
    // add-on's service agent that the check below refuses: the shape is read, unverified,
    // only to say in the log how to configure the app.
    let add_on = event.as_ref().is_ok_and(is_add_on_event);
    if let Err(error) = verify_chat(&state, &headers).await {
        if add_on {
            tracing::error!(code = error.code(), reason = error.message(), "Chat event refused: {ADD_ON_HINT}");
        } else {
            tracing::warn!(code = error.code(), reason = error.message(), "Chat event refused");
        }
        return error.into_response();
    }
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            return ApiError::bad_request("chat_event_invalid", format!("not JSON ({error})")).into_response();
        }
    };
    if add_on {
        tracing::error!("Chat event refused: {ADD_ON_HINT}");
        return ApiError::bad_request("chat_event_add_on", ADD_ON_HINT).into_response();
    }
    match parse_event(&event) {
        Err(reason) => ApiError::bad_request("chat_event_invalid", reason).into_response(),
        Ok(ChatEvent::Added { email, user, direct_message }) => {
            let direct = direct_message.is_some();
            if direct && let Err(error) = state.users.put(&email, &ChatUser { user, space: direct_message }).await {
                return ApiError::from(error).into_response();
            }
            tracing::info!(user = %email, direct, "Chat app added");
            Json(json!({"text": "JIT access will post the requests you are asked to approve here."})).into_response()
        }
        Ok(ChatEvent::Removed { email, user, direct }) => {
            if direct && let Err(error) = state.users.put(&email, &ChatUser { user, space: None }).await {
                return ApiError::from(error).into_response();
            }
            tracing::info!(user = %email, direct, "Chat app removed");
            Json(json!({})).into_response()
        }
        Ok(ChatEvent::Clicked { email, function, request, dialog, reason }) => {
            Json(clicked(&state, &email, &function, &request, dialog, reason).await).into_response()
        }
        Ok(ChatEvent::Other) => Json(
            json!({"text": "JIT access posts approval requests here; open the app in a browser for everything else."}),
        )
        .into_response(),
    }
}

/// A reviewer's click: Approve (or the reason dialog, where the policy asks approvers for a
/// reason), Deny's dialog, or the dialog's submission.
async fn clicked(state: &AppState, caller: &Email, function: &str, id: &str, dialog: Dialog, reason: String) -> Value {
    let action = match (function, dialog) {
        (APPROVE | DENY | RATIFY | REJECT, Dialog::Requested) => return common::chat::reason_dialog(function, id),
        (_, Dialog::Cancelled) => return close_dialog("OK", "Nothing was decided."),
        (APPROVE, _) => Action::Approve { reason, end: None },
        (DENY, _) => Action::Deny { reason },
        (RATIFY, _) => Action::Ratify { reason },
        (REJECT, _) => Action::Reject { reason },
        (other, _) => return json!({"text": format!("Unknown action '{}'.", other.escape_debug())}),
    };
    let (event, done) = match action {
        Action::Approve { .. } => ("chat.approveRole", "Approved."),
        Action::Ratify { .. } => ("chat.ratifyRole", "Ratified."),
        Action::Reject { .. } => ("chat.rejectRole", "Rejected."),
        _ => ("chat.denyRole", "Denied."),
    };
    // The decision runs in a task of its own: past the click's timeout the click answers,
    // and the decision still runs to its end (recorded, audited, its event updating every
    // card) instead of being cut off between the ledger and setIamPolicy.
    let work = {
        let (door, caller, id) = (state.door.clone(), caller.clone(), id.to_string());
        tokio::spawn(async move {
            let result = door.act(&caller, &id, action).await;
            common::http::audit::request_decision(event, &caller, &id, &result);
            result
        })
    };
    let result = match tokio::time::timeout(state.click_timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(failed)) => Err(ApiError::backend(format!("the decision failed ({failed})"))),
        Err(_) => return still_deciding(state, id, dialog).await,
    };
    let now = Timestamp::now();
    let base_url = state.door.base_url();
    match (result, dialog) {
        (Ok(_), Dialog::Submitted) => close_dialog("OK", done),
        (Err(error), Dialog::Submitted) => close_dialog("INVALID_ARGUMENT", error.message()),
        (Ok(decided), _) => update_message(card(decided.record(), now, base_url, decided.message.as_deref())),
        (Err(error), _) => match state.door.reader().get(id).await {
            Ok(Some(verified)) => {
                let note = format!("Not done: {}", error.message());
                update_message(card(verified.record(), now, base_url, Some(&note)))
            }
            _ => json!({"text": format!("Not done: {}", error.message())}),
        },
    }
}

/// The answer to a click whose decision outlived `click_timeout`: the card as the ledger holds
/// it now, if a quick read gets it, saying the decision goes on; the decision's event updates
/// the card once it is recorded.
async fn still_deciding(state: &AppState, id: &str, dialog: Dialog) -> Value {
    const NOTE: &str = "Your decision is still being processed: this card updates once it is recorded.";
    tracing::warn!(
        activation_id = id,
        timeout_seconds = state.click_timeout.as_secs(),
        "Chat click answered before its decision ended"
    );
    if dialog == Dialog::Submitted {
        return close_dialog("OK", NOTE);
    }
    match tokio::time::timeout(LEDGER_READ_TIMEOUT, state.door.reader().get(id)).await {
        Ok(Ok(Some(verified))) => {
            update_message(card(verified.record(), Timestamp::now(), state.door.base_url(), Some(NOTE)))
        }
        _ => json!({"text": NOTE}),
    }
}

/// A Pub/Sub push of an event. 2xx acknowledges; 503 asks for a redelivery (Chat or the
/// ledger failed for a passing reason); a message that can never be handled is acknowledged
/// and logged, so it cannot loop.
async fn push(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(auth) = &state.push
        && let Err(error) = authenticate(auth, &state.google_keys, &headers).await
    {
        return error.into_response();
    }
    let delivery = match parse_envelope(&body) {
        Ok(delivery) => delivery,
        Err(reason) => return dropped("", &reason),
    };
    let Ok(event) = serde_json::from_slice::<Value>(&delivery.data) else {
        return dropped(&delivery.message_id, "data is not JSON");
    };
    let Some(kind) = Event::kind_of(&event) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let id = event["attributes"]["activation_id"].as_str().unwrap_or_default();
    // A card is posted for what asks a decision; every later change updates it.
    let posting = match kind {
        Kind::RequestActivation | Kind::BreakGlassActivated => true,
        Kind::ActivationSelfApproved => return StatusCode::NO_CONTENT.into_response(),
        Kind::ApprovalRecorded
        | Kind::ActivationApproved
        | Kind::RequestDenied
        | Kind::RequestWithdrawn
        | Kind::ActivationRevoked
        | Kind::ActivationEnded
        | Kind::ActivationFailed
        | Kind::ActivationExternallyModified
        | Kind::ExtensionRequested
        | Kind::ActivationExtended
        | Kind::ExtensionFailed
        | Kind::RatificationRecorded
        | Kind::BreakGlassRejected
        | Kind::BreakGlassUnreviewed => false,
    };
    let record = match state.door.reader().get(id).await {
        Ok(Some(verified)) if verified.record().activation_type == ActivationType::Mpa => verified.record().clone(),
        Ok(Some(_)) => return StatusCode::NO_CONTENT.into_response(),
        Ok(None) => return dropped(&delivery.message_id, &format!("request {id} is not in the ledger")),
        Err(error) if error.status().is_server_error() => return retry(&delivery.message_id, error.message()),
        Err(error) => return dropped(&delivery.message_id, error.message()),
    };
    let delivered = post_or_update(&state, &record, posting).await;
    let retrying = delivered.retry_could_help();
    for (reviewer, error) in &delivered.failures {
        if retrying {
            tracing::warn!(message_id = %delivery.message_id, activation_id = %record.id, reviewer, error = %error, "Chat card not delivered");
        } else {
            tracing::error!(message_id = %delivery.message_id, activation_id = %record.id, reviewer, error = %error, "Chat card not delivered, and a redelivery would not help: mail only");
        }
    }
    if retrying {
        let failed = delivered.failures.len();
        return retry(&delivery.message_id, &format!("{failed} reviewer(s) not reached yet"));
    }
    tracing::info!(message_id = %delivery.message_id, activation_id = %record.id, event_type = kind.name(), cards = delivered.cards, failed = delivered.failures.len(), "Chat cards {}", if posting { "posted" } else { "updated" });
    StatusCode::NO_CONTENT.into_response()
}

/// What posting or updating a request's cards came to: how many reached a reviewer, and each
/// failure with whom it concerned.
#[derive(Debug, Default)]
struct Delivered {
    cards: usize,
    failures: Vec<(String, GcpError)>,
}

impl Delivered {
    /// A redelivery could help: some failure was a passing one (Chat or Firestore unavailable
    /// or rate limited). The reviewers reached already get no second card from it: the
    /// request ID, or the message ID already taken, see to that.
    fn retry_could_help(&self) -> bool {
        self.failures.iter().any(|(_, error)| matches!(error, GcpError::Unavailable(_) | GcpError::RateLimited(_)))
    }

    fn add(&mut self, whom: &str, result: Result<bool, GcpError>) {
        match result {
            Ok(reached) => self.cards += usize::from(reached),
            Err(error) => self.failures.push((whom.to_string(), error)),
        }
    }
}

/// Posts the request's card (`posting`) or updates every posted copy, reviewer by reviewer:
/// one reviewer's failure is recorded and the next one's card still goes out.
async fn post_or_update(state: &AppState, record: &Record, posting: bool) -> Delivered {
    let cards = card(record, Timestamp::now(), state.door.base_url(), None);
    let text = match record.break_glass {
        Some(_) => format!("EMERGENCY ACCESS: {} broke glass; review it", record.beneficiary),
        None => format!("{} asks for your approval", record.beneficiary),
    };
    let mut delivered = Delivered::default();
    if let Some(space) = &state.space {
        delivered.add(space, deliver(state, record, space, posting, &text, &cards).await);
        return delivered;
    }
    for reviewer in &readers(state, record) {
        delivered.add(reviewer.as_str(), to_reviewer(state, record, reviewer, posting, &text, &cards).await);
    }
    delivered
}

/// Who gets the request's card: its reviewers; for emergency access also every administrator
/// named as a user (a group has no direct message; it is mailed).
fn readers(state: &AppState, record: &Record) -> Vec<Email> {
    let mut readers = record.reviewers.clone();
    if record.break_glass.is_some() {
        let administrators = state.door.administrators().iter().filter_map(|member| member.strip_prefix("user:"));
        for admin in administrators.filter_map(|a| Email::parse(a).ok()) {
            if !readers.contains(&admin) && admin != record.beneficiary {
                readers.push(admin);
            }
        }
    }
    readers
}

/// One reviewer's card, in the direct message recorded when they added the app; looked up
/// only when a post finds it gone (then recorded again). `Ok(false)`: nothing to do for them.
async fn to_reviewer(
    state: &AppState,
    record: &Record,
    reviewer: &Email,
    posting: bool,
    text: &str,
    cards: &Value,
) -> Result<bool, GcpError> {
    let Some(known) = state.users.get(reviewer).await? else {
        tracing::info!(activation_id = %record.id, reviewer = %reviewer, "reviewer has not added the Chat app: mail only");
        return Ok(false);
    };
    if let Some(space) = known.space.as_deref() {
        if deliver(state, record, space, posting, text, cards).await? {
            return Ok(true);
        }
        // An update that finds no card has nothing to do.
        if !posting {
            return Ok(false);
        }
    }
    match state.chat.direct_message(&known.user).await? {
        Some(space) if Some(&space) != known.space.as_ref() => {
            state.users.put(reviewer, &ChatUser { user: known.user.clone(), space: Some(space.clone()) }).await?;
            deliver(state, record, &space, posting, text, cards).await
        }
        _ => {
            tracing::info!(activation_id = %record.id, reviewer = %reviewer, "reviewer removed the Chat app: mail only");
            Ok(false)
        }
    }
}

/// Posts the card in `space` (`posting`) or updates it there. `Ok(false)`: no such space (the
/// app was removed), or, for an update, a card never posted (the reviewer added the app later).
async fn deliver(
    state: &AppState,
    record: &Record,
    space: &str,
    posting: bool,
    text: &str,
    cards: &Value,
) -> Result<bool, GcpError> {
    let message = message_id(&record.id);
    let result = if posting {
        match state.chat.post(space, &message, &request_id(space, &record.id), text, cards).await {
            // An earlier delivery posted it (its request ID expired since, perhaps), and the
            // request may have changed: the card is there, and is brought up to date.
            Ok(Posted::AlreadyThere) => state.chat.update(space, &message, cards).await,
            Ok(Posted::Created) => Ok(()),
            Err(error) => Err(error),
        }
    } else {
        state.chat.update(space, &message, cards).await
    };
    match result {
        Ok(()) => Ok(true),
        Err(GcpError::NotFound(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

fn retry(message_id: &str, reason: &str) -> Response {
    tracing::warn!(message_id, reason, "Chat not updated yet; Pub/Sub will deliver again");
    ApiError::unavailable(reason.to_string()).into_response()
}

fn dropped(message_id: &str, reason: &str) -> Response {
    tracing::error!(message_id, reason, "message dropped: it can never be handled");
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::ConfigError;

    fn read(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![
            ("RESOURCE_SCOPE", "organizations/1"),
            ("FIRESTORE_DATABASE", "projects/p/databases/(default)"),
            ("SIGNING_SERVICE_ACCOUNT", "jit@p.iam.gserviceaccount.com"),
            ("BASE_URL", "https://jit.example.com"),
            ("PUSH_AUDIENCE", "https://chat.example.com/events"),
            ("PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com"),
        ];
        all.extend(pairs);
        let mut env = Env::new(|name| all.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()));
        let config = Config::read(&mut env);
        env.finish().map(|_| config)
    }

    #[test]
    fn the_audience_says_which_token_chat_sends_and_nothing_else_is_taken() {
        let config = read(&[("CHAT_AUDIENCE", "123456789012")]).expect("valid");
        assert_eq!(config.audience, ChatAudience::ProjectNumber("123456789012".into()));
        assert_eq!(config.decisions.iap.audience, "", "no IAP route here");
        let config = read(&[("CHAT_AUDIENCE", "https://chat.example.com/")]).expect("valid");
        assert_eq!(config.audience, ChatAudience::EndpointUrl("https://chat.example.com/".into()));
        for (pairs, problem) in [
            (vec![], "CHAT_AUDIENCE is required"),
            (vec![("CHAT_AUDIENCE", "my-project")], "CHAT_AUDIENCE must be"),
            (vec![("CHAT_AUDIENCE", "1"), ("CHAT_SPACE", "general")], "CHAT_SPACE must be"),
            (
                vec![("CHAT_AUDIENCE", "1"), ("K_SERVICE", "jit-chat"), ("PUSH_AUTH", "false")],
                "PUSH_AUTH=false is refused",
            ),
        ] {
            let error = read(&pairs).expect_err(problem);
            assert!(error.to_string().contains(problem), "{error}");
        }
    }
}
