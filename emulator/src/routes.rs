//! The HTTP surface: Google's REST paths (with their `:verb` suffixes, matched by hand rather
//! than fought over with the router: one routing table per emulated service, [`SERVICES`],
//! asked in turn by one fallback), IAP and SendGrid, and the test controls under `/_emulator/`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::timestamp::Timestamp;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::analysis::{Query, analyze};
use crate::google::GoogleError;
use crate::publisher::{GrpcPublisher, publish_rest};
use crate::state::{Fault, State, lock};
use crate::world::World;
use crate::{assets, identity, paging};

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/_emulator/mail", get(mail))
        .route("/_emulator/pubsub", get(pubsub_messages))
        .route("/_emulator/calls", get(calls).delete(reset_calls))
        .route("/_emulator/faults", post(add_fault).delete(clear_faults))
        .route("/_emulator/latency", axum::routing::put(set_latency))
        .route("/_emulator/audit", get(audit))
        .route("/_emulator/users", get(users))
        .route("/_emulator/groups/{group}", axum::routing::put(set_group))
        .route("/_emulator/iap/assertion", post(mint_assertion))
        .route("/_emulator/oidc/token", post(mint_oidc_token))
        .route("/_emulator/chat", get(chat_messages))
        .route("/_emulator/chat/app", axum::routing::put(chat_app))
        .route("/_emulator/chat/events", post(chat_event))
        .route("/_emulator/chat/page", get(chat_page))
        .route("/_emulator/clock", post(advance_clock))
        .route("/_emulator/analysis", get(analyses))
        .route_service("/google.pubsub.v1.Publisher/Publish", GrpcPublisher(state.clone()))
        .fallback(google_api)
        // DNS rebinding: a page on another name must not reach the test controls (which mint
        // IAP assertions for anyone) through the developer's browser.
        .layer(axum::middleware::from_fn(crate::loopback::only_local_hosts))
        .with_state(state)
}

type Reply = Result<Response, GoogleError>;

async fn google_api(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        state: &state,
        method: &method,
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    match dispatch(&call).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// One call to a Google API, as the services' tables read it.
struct Call<'a> {
    state: &'a Arc<State>,
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

impl<'a> Call<'a> {
    /// The JSON body; `{}` when there is none.
    fn json(&self) -> Result<Value, GoogleError> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(self.body).map_err(|e| GoogleError::new(400, &format!("Invalid JSON payload: {e}")))
    }

    fn parameters(&self) -> Vec<(String, String)> {
        paging::parameters(self.query)
    }

    /// The path after `prefix`, when the call is a `method` one.
    fn after(&self, method: Method, prefix: &str) -> Option<&'a str> {
        if *self.method == method { self.path.strip_prefix(prefix) } else { None }
    }

    /// Whether the call is `method path`.
    fn is(&self, method: Method, path: &str) -> bool {
        *self.method == method && self.path == path
    }
}

/// What a service answers a call with.
type Answer<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// An emulated service's routing table: the answer to a call it serves, `None` for any other.
type Service = for<'a> fn(&'a Call<'a>) -> Option<Answer<'a>>;

/// Every emulated service, asked in this order; the first whose table holds the call answers
/// it. No call is held by two tables (their paths differ by prefix, suffix or method), but
/// Firestore's, which claims every path under a database's `/documents`, comes first.
const SERVICES: &[Service] = &[
    firestore,
    google_chat,
    cloud_asset,
    cloud_identity,
    resource_manager,
    iam_credentials,
    sendgrid,
    pubsub,
    secret_manager,
    public_keys,
];

async fn dispatch(call: &Call<'_>) -> Reply {
    for service in SERVICES {
        if let Some(answer) = service(call) {
            return answer.await;
        }
    }
    Err(GoogleError::new(404, &format!("The emulator does not serve {} {}", call.method, call.path)))
}

fn answer<'a>(reply: impl Future<Output = Reply> + Send + 'a) -> Option<Answer<'a>> {
    Some(Box::pin(reply))
}

/// A JSON answer, or the error.
fn json_reply(value: Result<Value, GoogleError>) -> Reply {
    Ok(Json(value?).into_response())
}

/// Firestore: `/v1/projects/P/databases/D/documents…`: a document's `GET`, `:commit` and
/// `:runQuery`.
fn firestore<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let (database, rest) = call.path.strip_prefix("/v1/")?.split_once("/documents")?;
    if !(database.starts_with("projects/") && database.contains("/databases/")) {
        return None;
    }
    let state = call.state;
    match (call.method, rest) {
        (&Method::POST, ":commit") => answer(async move {
            state.enter("firestore", "commit").await?;
            json_reply(lock(&state.firestore).commit(database, &call.json()?))
        }),
        (&Method::POST, ":runQuery") => answer(run_query(call, database)),
        (&Method::GET, document) if document.starts_with('/') => answer(async move {
            state.enter("firestore", "get").await?;
            let name = format!("{database}/documents{}", crate::firestore::decode_path(document)?);
            json_reply(lock(&state.firestore).get(&name))
        }),
        (method, _) => {
            let error = GoogleError::new(404, &format!("The emulator does not serve {method} …/documents{rest}"));
            answer(async move { Err(error) })
        }
    }
}

/// A stream: over REST a JSON array of responses, and an error is an element of it, with the
/// HTTP status when nothing was sent yet, after the documents when it comes part-way (HTTP 200
/// then).
async fn run_query(call: &Call<'_>, database: &str) -> Reply {
    let state = call.state;
    state.enter("firestore", "runQuery").await.map_err(stream_error)?;
    let answer = lock(&state.firestore).run_query(database, &call.json()?).map_err(stream_error)?;
    let Some(error) = state.stream_fault("firestore", "runQuery") else {
        return Ok(Json(answer).into_response());
    };
    let mut items: Vec<Value> =
        answer.as_array().into_iter().flatten().filter(|item| item.get("document").is_some()).cloned().collect();
    items.push(error.body());
    Ok(Json(items).into_response())
}

/// Google Chat: find a direct message, create and update the app's messages.
fn google_chat<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let state = call.state;
    if call.is(Method::GET, "/v1/spaces:findDirectMessage") {
        return answer(async move {
            state.enter("chat", "findDirectMessage").await?;
            let parameters = call.parameters();
            json_reply(lock(&state.chat).find_direct_message(paging::parameter(&parameters, "name")))
        });
    }
    let rest = call.path.strip_prefix("/v1/spaces/")?;
    if *call.method == Method::POST
        && let Some(space) = rest.strip_suffix("/messages")
    {
        return answer(async move {
            state.enter("chat", "createMessage").await?;
            let body = call.json()?;
            let now = state.now().unix_seconds();
            json_reply(lock(&state.chat).create_message(&format!("spaces/{space}"), &call.parameters(), &body, now))
        });
    }
    if *call.method == Method::PATCH && rest.contains("/messages/") {
        return answer(async move {
            state.enter("chat", "updateMessage").await?;
            let body = call.json()?;
            json_reply(lock(&state.chat).patch_message(&format!("spaces/{rest}"), &call.parameters(), &body))
        });
    }
    None
}

/// Cloud Asset: `GET /v1/{scope}:analyzeIamPolicy`, `…/effectiveIamPolicies:batchGet`,
/// `:searchAllIamPolicies`, `:searchAllResources`.
fn cloud_asset<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let rest = call.after(Method::GET, "/v1/")?;
    if let Some(scope) = rest.strip_suffix(":analyzeIamPolicy") {
        return answer(analyze_iam_policy(call, scope));
    }
    let reads: [(&str, &'static str, Read); 3] = [
        ("/effectiveIamPolicies:batchGet", "batchGetEffectiveIamPolicies", assets::batch_get_effective_iam_policies),
        (":searchAllIamPolicies", "searchAllIamPolicies", assets::search_all_iam_policies),
        (":searchAllResources", "searchAllResources", assets::search_all_resources),
    ];
    read_by_suffix(call, rest, "asset", &reads)
}

/// A read of the world about a name in the path (a scope, a group): the call's query
/// parameters in, JSON out.
type Read = fn(&World, &str, &[(String, String)]) -> Result<Value, GoogleError>;

/// The first of `reads` (suffix, method, read) whose suffix ends `rest`: counted as the call
/// `api.method`, then the read of what precedes the suffix.
fn read_by_suffix<'a>(
    call: &'a Call<'a>,
    rest: &'a str,
    api: &'static str,
    reads: &[(&str, &'static str, Read)],
) -> Option<Answer<'a>> {
    let state = call.state;
    reads.iter().find_map(|&(suffix, method, read)| {
        let name = rest.strip_suffix(suffix)?;
        answer(async move {
            state.enter(api, method).await?;
            json_reply(read(&state.world(), name, &call.parameters()))
        })
    })
}

async fn analyze_iam_policy(call: &Call<'_>, scope: &str) -> Reply {
    let state = call.state;
    let query = Query::from_query_string(scope, call.query)?;
    state.record_analysis(query.recorded());
    // An injected latency is how long the analysis takes; `executionTimeout` stops it early
    // with what it found, as Google does when that is shorter than the call's deadline
    // (otherwise the caller's deadline ends it: DEADLINE_EXCEEDED).
    let cut_short = state.enter_within("asset", "analyzeIamPolicy", query.execution_timeout).await?;
    state.spend_analysis_query()?;
    let mut response = analyze(&state.world(), &query, Timestamp::now())?;
    if cut_short {
        crate::analysis::cut_short(&mut response);
    }
    Ok(Json(response).into_response())
}

/// Cloud Identity: `GET /v1/groups:lookup`, a group's `memberships`, and the searches of a
/// member's groups, direct and transitive.
fn cloud_identity<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let rest = call.after(Method::GET, "/v1/")?;
    let state = call.state;
    if rest == "groups:lookup" {
        return answer(async move {
            state.enter("cloudidentity", "lookup").await?;
            json_reply(identity::lookup(&state.world(), &call.parameters()))
        });
    }
    let searches: [(&str, &'static str, Read); 3] = [
        ("/memberships:searchDirectGroups", "searchDirectGroups", identity::search_direct_groups),
        ("/memberships:searchTransitiveGroups", "searchTransitiveGroups", identity::search_transitive_groups),
        (
            "/memberships:searchTransitiveMemberships",
            "searchTransitiveMemberships",
            identity::search_transitive_memberships,
        ),
    ];
    if let Some(search) = read_by_suffix(call, rest, "cloudidentity", &searches) {
        return Some(search);
    }
    if rest.strip_suffix("/memberships").is_some_and(|p| p.starts_with("groups/")) {
        return read_by_suffix(
            call,
            rest,
            "cloudidentity",
            &[("/memberships", "listMemberships", identity::list_memberships)],
        );
    }
    None
}

/// Resource Manager v3 (and v1, which gcloud calls): `POST {resource}:getIamPolicy` and
/// `:setIamPolicy` on any node; `GET /v3/folders:search` (the sweeper walks folder policies)
/// and `/v3/projects:search`.
fn resource_manager<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let state = call.state;
    if *call.method == Method::POST {
        let versioned = call.path.strip_prefix("/v3/").or_else(|| call.path.strip_prefix("/v1/"));
        if let Some(resource) = versioned.and_then(|p| p.strip_suffix(":getIamPolicy")) {
            return answer(get_iam_policy(call, resource));
        }
        if let Some(resource) = versioned.and_then(|p| p.strip_suffix(":setIamPolicy")) {
            return answer(set_iam_policy(call, resource));
        }
    }
    if call.is(Method::GET, "/v3/folders:search") {
        return answer(async move {
            state.enter("resourcemanager", "searchFolders").await?;
            search_folders(state, &call.parameters())
        });
    }
    if call.is(Method::GET, "/v3/projects:search") {
        return answer(async move {
            state.enter("resourcemanager", "searchProjects").await?;
            search_projects(state, call.query)
        });
    }
    None
}

async fn get_iam_policy(call: &Call<'_>, resource: &str) -> Reply {
    let state = call.state;
    state.enter("resourcemanager", iam_method(resource, "getIamPolicy")).await?;
    let requested = &call.json()?["options"]["requestedPolicyVersion"];
    // proto3 JSON takes an int32 as a number or a string.
    let version = match requested {
        Value::Null => None,
        other => Some(
            other
                .as_i64()
                .or_else(|| other.as_str().and_then(|text| text.parse().ok()))
                .ok_or_else(|| GoogleError::new(400, &format!("Invalid requestedPolicyVersion {other}")))?,
        ),
    };
    let policy = state.world().get_policy_as(resource, version)?;
    Ok(Json(policy).into_response())
}

async fn set_iam_policy(call: &Call<'_>, resource: &str) -> Reply {
    let state = call.state;
    state.enter("resourcemanager", iam_method(resource, "setIamPolicy")).await?;
    let body = call.json()?;
    let policy: common::policy::Policy = serde_json::from_value(body["policy"].clone())
        .map_err(|e| GoogleError::new(400, &format!("Invalid policy: {e}")))?;
    let reason = call.headers.get("x-goog-request-reason").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let stored = state.world().set_policy(resource, policy)?;
    state.record_audit(json!({"method": "setIamPolicy", "resource": resource, "reason": reason, "etag": stored.etag}));
    Ok(Json(stored).into_response())
}

/// IAM Credentials: `POST /v1/projects/-/serviceAccounts/EMAIL:signJwt`.
fn iam_credentials<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let account = call.after(Method::POST, "/v1/projects/-/serviceAccounts/")?.strip_suffix(":signJwt")?;
    answer(async move {
        call.state.enter("iamcredentials", "signJwt").await?;
        sign_jwt(call.state, account, &call.json()?)
    })
}

/// SendGrid v3: `POST /v3/mail/send`, captured.
fn sendgrid<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    if !call.is(Method::POST, "/v3/mail/send") {
        return None;
    }
    answer(async move {
        call.state.enter("sendgrid", "send").await?;
        send_mail(call.state, call.headers, call.json()?)
    })
}

/// Pub/Sub over REST: `POST /v1/{topic}:publish`; `PUT /v1/projects/P/topics/T` and
/// `/v1/projects/P/subscriptions/S` create them. Its gRPC `Publish` has a route of its own.
fn pubsub<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let state = call.state;
    if let Some(topic) = call.after(Method::POST, "/v1/").and_then(|p| p.strip_suffix(":publish")) {
        return answer(async move { json_reply(publish_rest(state, topic, &call.json()?).await) });
    }
    let name = call.after(Method::PUT, "/v1/")?;
    if name.contains("/topics/") {
        return answer(async move { json_reply(lock(&state.pubsub).create_topic(name)) });
    }
    if name.contains("/subscriptions/") {
        return answer(async move { json_reply(lock(&state.pubsub).create_subscription(name, &call.json()?)) });
    }
    None
}

/// Secret Manager: `GET /v1/projects/P/secrets/S/versions/V:access`.
fn secret_manager<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let version = call.after(Method::GET, "/v1/")?.strip_suffix(":access")?;
    answer(async move {
        call.state.enter("secretmanager", "accessSecretVersion").await?;
        access_secret(call.state, version)
    })
}

/// Public keys: a service account's (ours, and Google Chat's), Google's OIDC keys and IAP's.
fn public_keys<'a>(call: &'a Call<'a>) -> Option<Answer<'a>> {
    let state = call.state;
    if let Some(account) = call.after(Method::GET, "/service_accounts/v1/metadata/jwk/") {
        return answer(async move {
            state.enter("jwks", "serviceAccount").await?;
            if account.eq_ignore_ascii_case(common::chat::CHAT_ACCOUNT) {
                return Ok(jwks_response(state.chat_key.jwks()));
            }
            if !account.eq_ignore_ascii_case(&state.world().service_account) {
                return Err(GoogleError::new(404, "Not found"));
            }
            Ok(jwks_response(state.service_account_key.jwks()))
        });
    }
    if call.is(Method::GET, "/oauth2/v3/certs") {
        return answer(async move {
            state.enter("jwks", "google").await?;
            Ok(jwks_response(state.google_oidc_key.jwks()))
        });
    }
    if call.is(Method::GET, "/iap/verify/public_key-jwk") {
        return answer(async move {
            state.enter("jwks", "iap").await?;
            Ok(jwks_response(state.iap_key.jwks()))
        });
    }
    None
}

/// An error of a streaming method over REST: the body is the stream, `[{"error": …}]`.
fn stream_error(error: GoogleError) -> GoogleError {
    GoogleError { stream: true, ..error }
}

fn jwks_response(keys: JwkSet) -> Response {
    // Google's key endpoints allow caching for a few hours.
    ([("cache-control", "public, max-age=3600")], Json(keys)).into_response()
}

/// "If the JWT Claims Set contains an expiration time (`exp`) claim, it must be an integer
/// timestamp that is not in the past and no more than 12 hours in the future. If the JWT
/// Claims Set does not contain an expiration time (`exp`) claim, this claim is added
/// automatically, with a timestamp that is 1 hour in the future." (IAM Credentials
/// `signJwt`, the `payload` field.)
pub const SIGN_JWT_MAX_LIFETIME_SECONDS: i64 = 12 * 3600;

fn sign_jwt(state: &State, account: &str, body: &Value) -> Reply {
    if !account.eq_ignore_ascii_case(&state.world().service_account) {
        return Err(GoogleError::new(403, &format!("Permission 'iam.serviceAccounts.signJwt' denied on {account}")));
    }
    let mut payload: Value = body["payload"]
        .as_str()
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(Value::is_object)
        .ok_or_else(|| GoogleError::new(400, "payload must be a JSON object as a string"))?;
    let now = Timestamp::now().unix_seconds();
    match &payload["exp"] {
        Value::Null => payload["exp"] = json!(now + 3600),
        exp => {
            let exp = exp.as_i64().ok_or_else(|| {
                GoogleError::new(400, &format!("Invalid JWT payload: exp {exp} is not an integer timestamp"))
            })?;
            if exp < now {
                return Err(GoogleError::new(400, &format!("Invalid JWT payload: exp {exp} is in the past")));
            }
            if exp > now + SIGN_JWT_MAX_LIFETIME_SECONDS {
                return Err(GoogleError::new(
                    400,
                    &format!("Invalid JWT payload: exp {exp} is more than 12 hours in the future"),
                ));
            }
        }
    }
    let signed = state.service_account_key.sign_json(&payload).map_err(|e| GoogleError::new(500, &e.to_string()))?;
    Ok(Json(json!({"keyId": state.service_account_key.kid(), "signedJwt": signed})).into_response())
}

/// Validates what SendGrid requires of `/v3/mail/send` and answers 202 with no body.
fn send_mail(state: &State, headers: &HeaderMap, body: Value) -> Reply {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !authorized {
        return Ok((StatusCode::UNAUTHORIZED, Json(json!({"errors": [{"message": "authorization required"}]})))
            .into_response());
    }
    let mut problems = Vec::new();
    let personalizations = body["personalizations"].as_array().cloned().unwrap_or_default();
    if personalizations.is_empty() {
        problems.push("personalizations is required");
    }
    for personalization in &personalizations {
        let to = personalization["to"].as_array().cloned().unwrap_or_default();
        if to.is_empty() || to.iter().any(|t| !t["email"].as_str().is_some_and(|e| e.contains('@'))) {
            problems.push("each personalization needs a to list of {email}");
        }
    }
    if !body["from"]["email"].as_str().is_some_and(|e| e.contains('@')) {
        problems.push("from.email is required");
    }
    let has_subject = body["subject"].is_string() || personalizations.iter().all(|p| p["subject"].is_string());
    if !has_subject && body["template_id"].is_null() {
        problems.push("subject is required");
    }
    let content = body["content"].as_array().cloned().unwrap_or_default();
    let content_ok = !content.is_empty()
        && content.iter().all(|c| c["type"].is_string() && c["value"].as_str().is_some_and(|v| !v.is_empty()));
    if !content_ok && body["template_id"].is_null() {
        problems.push("content must hold at least one {type, value}");
    }
    if !problems.is_empty() {
        let errors: Vec<Value> = problems.iter().map(|p| json!({"message": p, "field": null})).collect();
        return Ok((StatusCode::BAD_REQUEST, Json(json!({"errors": errors}))).into_response());
    }
    state.capture_mail(body);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Counted apart by kind, since each needs its own permission: `getIamPolicy` (projects),
/// `folders.getIamPolicy`, `organizations.getIamPolicy`.
fn iam_method(resource: &str, method: &'static str) -> &'static str {
    match (resource.split('/').next(), method) {
        (Some("folders"), "getIamPolicy") => "folders.getIamPolicy",
        (Some("folders"), _) => "folders.setIamPolicy",
        (Some("organizations"), "getIamPolicy") => "organizations.getIamPolicy",
        (Some("organizations"), _) => "organizations.setIamPolicy",
        _ => method,
    }
}

/// "Query expressions can be used to restrict results based upon displayName, state and
/// parent"; no query returns every folder the caller may see.
fn search_folders(state: &State, parameters: &[(String, String)]) -> Reply {
    let filter = paging::parameter(parameters, "query").unwrap_or_default().to_string();
    let world = state.world();
    let mut matches = Vec::new();
    for node in world.nodes().filter(|n| n.name.starts_with("folders/")) {
        let mut keep = true;
        for term in filter.split_whitespace().filter(|t| !t.eq_ignore_ascii_case("AND")) {
            keep &= match term.split_once(':').or_else(|| term.split_once('=')) {
                Some(("state" | "lifecycleState", value)) => value.eq_ignore_ascii_case(&node.state),
                Some(("parent", value)) => node.parent.as_deref() == Some(value),
                Some(("displayName", value)) => node.display_name == value.trim_matches('"'),
                _ => return Err(GoogleError::new(400, &format!("Unsupported query term '{term}'"))),
            };
        }
        if keep {
            matches.push(json!({
                "name": node.name,
                "parent": node.parent,
                "displayName": node.display_name,
                "state": node.state,
            }));
        }
    }
    let rule = paging::PageRule { default: 100, max: 1000, refuse_above_max: false };
    let (folders, next) = paging::page(&matches, parameters, rule, None)?;
    let mut body = json!({"folders": folders});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(Json(body).into_response())
}

/// `GET /v3/projects:search?query=…`. Google documents both readings of several terms: "If
/// multiple fields are included in the query, then it will return results that match any of
/// the fields", beside the example `labels.color:red labels.size:big` read once as "and" and
/// once as "or" (`resourcemanager/v3/projects.proto`, v1 `projects.list`). The emulator takes
/// the narrower one: terms on different fields must all match (AND), several terms on the same
/// field match if any does (OR). Values are case-insensitive; a trailing `*` is a prefix.
/// Explicit `AND` and `OR` keywords are not served (400), so a query means one thing here.
fn search_projects(state: &State, query: &str) -> Reply {
    let mut filter = String::new();
    let mut page_size = 500usize;
    let mut offset = 0usize;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "query" => filter = value.to_string(),
            "pageSize" => page_size = value.parse().ok().filter(|&size| size > 0).unwrap_or(500).min(500),
            "pageToken" if !value.is_empty() => {
                offset = value.parse().map_err(|_| GoogleError::new(400, "Invalid page token"))?
            }
            _ => {}
        }
    }
    let terms = project_query(&filter)?;
    let world = state.world();
    let mut matches = Vec::new();
    for node in world.nodes().filter(|n| n.project_number.is_some()) {
        let id = node.name.trim_start_matches("projects/");
        let field_matches = |field: &str, value: &str| -> bool {
            let parent = node.parent.as_deref().unwrap_or_default();
            match field {
                "state" => matches_value(&node.state, value),
                "parent" => matches_value(parent, value),
                "parent.type" => {
                    let kind = if parent.starts_with("folders/") { "folder" } else { "organization" };
                    matches_value(kind, value)
                }
                "parent.id" => matches_value(parent.split('/').nth(1).unwrap_or_default(), value),
                "id" => matches_value(id, value),
                "displayName" => matches_value(&node.display_name, value),
                // The emulator's projects carry no labels.
                _ => false,
            }
        };
        let keep = terms.iter().all(|(field, values)| values.iter().any(|value| field_matches(field, value)));
        if keep {
            matches.push(json!({
                "name": format!("projects/{}", node.project_number.as_deref().unwrap_or_default()),
                "projectId": id,
                "parent": node.parent,
                "state": node.state,
                "displayName": node.display_name,
            }));
        }
    }
    let page: Vec<Value> = matches.iter().skip(offset).take(page_size).cloned().collect();
    let next = offset + page.len();
    let mut body = json!({"projects": page});
    if next < matches.len() {
        body["nextPageToken"] = json!(next.to_string());
    }
    Ok(Json(body).into_response())
}

/// A `projects.search` query as its fields (aliases folded: `name` → `displayName`,
/// `projectId` → `id`, `lifecycleState` → `state`), each with the values asked for it.
fn project_query(filter: &str) -> Result<BTreeMap<String, Vec<String>>, GoogleError> {
    let mut terms: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for term in filter.split_whitespace() {
        let unsupported = || GoogleError::new(400, &format!("Unsupported query term '{term}'"));
        if term.eq_ignore_ascii_case("AND") || term.eq_ignore_ascii_case("OR") {
            return Err(GoogleError::new(
                400,
                &format!(
                    "The emulator does not serve '{term}' in a project search: Google documents the combination of terms two ways"
                ),
            ));
        }
        let (field, value) = term.split_once(':').or_else(|| term.split_once('=')).ok_or_else(unsupported)?;
        let field = match field.to_ascii_lowercase().as_str() {
            "displayname" | "name" => "displayName".to_string(),
            "id" | "projectid" => "id".to_string(),
            "state" | "lifecyclestate" => "state".to_string(),
            "parent" => "parent".to_string(),
            "parent.type" => "parent.type".to_string(),
            "parent.id" => "parent.id".to_string(),
            "labels" => "labels".to_string(),
            label if label.starts_with("labels.") => label.to_string(),
            _ => return Err(unsupported()),
        };
        terms.entry(field).or_default().push(value.trim_matches('"').to_string());
    }
    Ok(terms)
}

/// Case-insensitive, with a trailing `*` as a prefix match (`*` alone: any value).
fn matches_value(actual: &str, wanted: &str) -> bool {
    match wanted.strip_suffix('*') {
        Some(prefix) => actual.to_lowercase().starts_with(&prefix.to_lowercase()),
        None => actual.eq_ignore_ascii_case(wanted),
    }
}

async fn mail(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    Json(state.mail())
}

async fn pubsub_messages(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    Json(lock(&state.pubsub).messages())
}

async fn calls(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    Json(json!(state.calls()))
}

async fn reset_calls(Extract(state): Extract<Arc<State>>) -> StatusCode {
    state.reset_calls();
    StatusCode::NO_CONTENT
}

async fn add_fault(Extract(state): Extract<Arc<State>>, Json(fault): Json<Fault>) -> StatusCode {
    state.add_fault(fault);
    StatusCode::NO_CONTENT
}

/// `PUT /_emulator/latency` with `{"ms": N}`: every Google API call takes N ms from now on.
async fn set_latency(Extract(state): Extract<Arc<State>>, Json(body): Json<Value>) -> Reply {
    let ms = body["ms"].as_u64().filter(|ms| *ms <= 10_000).ok_or_else(|| GoogleError::new(400, "ms: 0 to 10000"))?;
    state.set_latency(ms);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_faults(Extract(state): Extract<Arc<State>>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

async fn audit(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    Json(state.audit())
}

async fn users(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    let world = state.world();
    Json(json!({"users": world.users(), "groups": world.groups()}))
}

/// `PUT /_emulator/groups/EMAIL` with `{"members": ["user:…", "group:…"]}`: changes a group.
async fn set_group(
    Extract(state): Extract<Arc<State>>,
    axum::extract::Path(group): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> StatusCode {
    let members = body["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_string));
    state.world().set_group_members(&group, members.collect());
    StatusCode::NO_CONTENT
}

/// `GET /v1/projects/P/secrets/S/versions/V:access`: any version reads the secret's value.
fn access_secret(state: &State, version: &str) -> Reply {
    let secret = version.split("/versions/").next().unwrap_or_default();
    let value = state
        .world()
        .secrets
        .get(secret)
        .cloned()
        .ok_or_else(|| GoogleError::new(404, &format!("Secret [{secret}] not found")))?;
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(value);
    Ok(Json(json!({"name": version, "payload": {"data": data}})).into_response())
}

/// Mints a Google OIDC token: `{"email", "audience"}` → `{"token"}`.
async fn mint_oidc_token(Extract(state): Extract<Arc<State>>, Json(request): Json<Value>) -> Reply {
    let email = request["email"].as_str().unwrap_or_default();
    let audience = request["audience"].as_str().unwrap_or_default();
    Ok(Json(json!({"token": state.oidc_token(email, audience)?})).into_response())
}

/// Mints an IAP assertion: `{"email", "audience"}` → `{"assertion"}`.
async fn mint_assertion(Extract(state): Extract<Arc<State>>, Json(request): Json<Value>) -> Reply {
    let email = request["email"].as_str().unwrap_or_default().to_lowercase();
    let audience = request["audience"].as_str().unwrap_or_default();
    if email.is_empty() || audience.is_empty() {
        return Err(GoogleError::new(400, "email and audience are required"));
    }
    let subject = format!("accounts.google.com:{}", email.bytes().map(u64::from).sum::<u64>());
    let claims = common::iap::assertion_claims(&email, &subject, audience, Timestamp::now());
    let assertion = state.iap_key.sign_json(&claims).map_err(|e| GoogleError::new(500, &e.to_string()))?;
    Ok(Json(json!({"assertion": assertion})).into_response())
}

async fn chat_messages(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    Json(lock(&state.chat).captured())
}

/// Configures the Chat app, as its page in the Cloud console does: `{"url", "audience"}`.
async fn chat_app(Extract(state): Extract<Arc<State>>, Json(app): Json<Value>) -> Reply {
    let (Some(url), Some(audience)) = (app["url"].as_str(), app["audience"].as_str()) else {
        return Err(GoogleError::new(400, "url and audience are required"));
    };
    lock(&state.chat).app = Some(crate::chat::App { url: url.to_string(), audience: audience.to_string() });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a person does in Chat, delivered to the app as Google Chat does: `{"type", "email",
/// "space"?, "message"?, "function"?, "id"?, "dialog"?, "reason"?}` → `{"status", "reply"}`.
/// A reply that updates the clicked message updates the captured one.
async fn chat_event(Extract(state): Extract<Arc<State>>, Json(mut request): Json<Value>) -> Reply {
    let email = request["email"].as_str().unwrap_or_default().to_lowercase();
    if email.is_empty() || request["type"].as_str().is_none() {
        return Err(GoogleError::new(400, "type and email are required"));
    }
    let room = request["space"].as_str();
    let (app, space) = {
        let mut chat = lock(&state.chat);
        let app = chat
            .app
            .clone()
            .ok_or_else(|| GoogleError::new(400, "no Chat app is configured (PUT /_emulator/chat/app)"))?;
        let space = match request["type"].as_str() {
            Some("ADDED_TO_SPACE") => chat.add(&email, room),
            Some("REMOVED_FROM_SPACE") => chat.remove(&email),
            _ => json!({"name": room.map(str::to_string).unwrap_or_else(|| {
                request["message"].as_str().and_then(|m| m.split("/messages/").next()).unwrap_or_default().to_string()
            })}),
        };
        (app, space)
    };
    request["email"] = json!(email);
    let event = crate::chat::event(&request, &space);
    let token = state.chat_token(&app.audience)?;
    let response = state
        .http
        .post(&app.url)
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .map_err(|e| GoogleError::new(502, &format!("the Chat app did not answer: {e}")))?;
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    if reply["actionResponse"]["type"] == "UPDATE_MESSAGE"
        && let Some(message) = request["message"].as_str()
    {
        lock(&state.chat).replace_cards(message, reply["cardsV2"].clone());
    }
    Ok(Json(json!({"status": status, "reply": reply})).into_response())
}

/// `POST /_emulator/clock` with `{"advanceSeconds": N}`: moves the emulator's clock on, for
/// rules that end with time (Chat's request IDs).
async fn advance_clock(Extract(state): Extract<Arc<State>>, Json(body): Json<Value>) -> Reply {
    let seconds = body["advanceSeconds"].as_i64().ok_or_else(|| GoogleError::new(400, "advanceSeconds is required"))?;
    state.advance_clock(seconds);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /_emulator/analysis`: every Policy Analyzer query received, as its echo.
async fn analyses(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    Json(state.analyses())
}

async fn chat_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("chat.html"))
}
