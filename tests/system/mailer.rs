//! The mailer behind its push subscription: who may push, what each event mails, and which
//! failures ask Pub/Sub for a redelivery.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{PUSH_ACCOUNT, PUSH_AUDIENCE, System};
use crate::support::{ALICE, BOB};

fn envelope(event: &Value) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    json!({"message": {"data": data, "attributes": {"type": event["type"]}, "messageId": "42", "publishTime": "2026-11-24T15:00:00Z"},
           "subscription": "projects/jit-project/subscriptions/mailer"})
}

fn request_event(justification: &str) -> Value {
    json!({"type": "RequestActivation", "attributes": {
        "activation_id": "mpa-test", "beneficiary": ALICE, "reviewers": [BOB], "project_id": "project-1",
        "role": "roles/compute.admin", "resource_condition": "", "start_time": "2026-11-24T15:00:00Z",
        "end_time": "2026-11-24T16:00:00Z", "request_expiry_time": "2026-11-24T16:00:00Z",
        "justification": justification, "base_url": "https://jit.example.com",
        "action_url": "https://jit.example.com/?activation=aa.bb.cc"}})
}

async fn push(system: &System, body: &Value, token: Option<&str>) -> u16 {
    let mut request = system.backend.http.post(format!("http://{}/", system.mailer)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("mailer answers").status().as_u16()
}

async fn mail_count(system: &System) -> usize {
    let mail: Vec<Value> = system.backend.get_json("/_emulator/mail").await;
    mail.len()
}

#[tokio::test]
async fn an_authenticated_push_sends_the_mail() {
    let system = System::start().await;
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    assert_eq!(push(&system, &envelope(&request_event("BUG-1")), Some(&token)).await, 204);
    let mail = system.wait_for_mail(1).await;
    assert_eq!(mail[0]["personalizations"][0]["to"], json!([{"email": BOB}]));
    assert_eq!(mail[0]["personalizations"][0]["cc"], json!([{"email": ALICE}]));
    assert_eq!(mail[0]["headers"]["Precedence"], "bulk");
    assert_eq!(mail[0]["from"], json!({"email": "jit-access@example.com", "name": "JIT Access"}));
}

#[tokio::test]
async fn pushes_without_a_valid_token_are_refused_and_send_nothing() {
    let system = System::start().await;
    let body = envelope(&request_event("BUG-1"));
    assert_eq!(push(&system, &body, None).await, 401);
    let wrong_audience = system.push_token(PUSH_ACCOUNT, "https://elsewhere.example.com/").await;
    assert_eq!(push(&system, &body, Some(&wrong_audience)).await, 401);
    let wrong_account = system.push_token("someone@evil.iam.gserviceaccount.com", PUSH_AUDIENCE).await;
    assert_eq!(push(&system, &body, Some(&wrong_account)).await, 403, "Cloud Run: not an invoker");
    let forger = common::keys::LocalKey::generate_rs256("emulator-google-oidc-key-1").expect("key");
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let claims = json!({"iss": "https://accounts.google.com", "aud": PUSH_AUDIENCE, "email": PUSH_ACCOUNT,
        "email_verified": true, "sub": "1", "iat": now, "exp": now + 600});
    let forged = forger.sign_json(&claims).expect("signed");
    assert_eq!(push(&system, &body, Some(&forged)).await, 401);
    assert_eq!(mail_count(&system).await, 0);
}

#[tokio::test]
async fn poison_messages_are_acknowledged_and_send_nothing() {
    let system = System::start().await;
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    let not_json =
        json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode("{oops"), "messageId": "1"}});
    assert_eq!(push(&system, &not_json, Some(&token)).await, 204);
    assert_eq!(push(&system, &envelope(&json!({"type": "Unknown"})), Some(&token)).await, 204);
    assert_eq!(push(&system, &json!({"no": "message"}), Some(&token)).await, 204);
    assert_eq!(mail_count(&system).await, 0);
}

#[tokio::test]
async fn sendgrid_failures_decide_between_redelivery_and_giving_up() {
    let system = System::start().await;
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    let body = envelope(&request_event("BUG-1"));
    system.backend.inject("sendgrid", "send", 503, 1).await;
    assert_eq!(push(&system, &body, Some(&token)).await, 503, "5xx: Pub/Sub delivers again");
    system.backend.inject("sendgrid", "send", 429, 1).await;
    assert_eq!(push(&system, &body, Some(&token)).await, 503, "429: Pub/Sub delivers again");
    system.backend.inject("sendgrid", "send", 400, 1).await;
    assert_eq!(push(&system, &body, Some(&token)).await, 204, "4xx: never going to work, acknowledged");
    assert_eq!(push(&system, &body, Some(&token)).await, 204);
    assert_eq!(system.wait_for_mail(1).await.len(), 1);
}

#[tokio::test]
async fn a_cloud_event_from_eventarc_is_mailed_too() {
    let system = System::start().await;
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    let cloud_event = json!({"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/jit-project/topics/jit-events", "id": "42",
        "data": envelope(&request_event("BUG-1"))});
    assert_eq!(push(&system, &cloud_event, Some(&token)).await, 204);
    assert_eq!(system.wait_for_mail(1).await.len(), 1);
}

/// Straight to the container, past Cloud Run's front, with one token header.
async fn push_to_container(system: &System, body: &Value, header: &str, token: &str) -> u16 {
    let request = system.backend.http.post(format!("http://{}/", system.mailer_container)).json(body);
    request.header(header, format!("Bearer {token}")).send().await.expect("mailer answers").status().as_u16()
}

#[tokio::test]
async fn behind_cloud_run_the_mailer_checks_the_claims_of_the_token_cloud_run_verified() {
    let system = System::start().await;
    let body = envelope(&request_event("BUG-1"));
    // Through the front: Cloud Run verifies the signature and removes it; the mailer accepts.
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    assert_eq!(push(&system, &body, Some(&token)).await, 204);
    // A signature-removed token is still checked claim by claim.
    let stripped = |token: String| local::cloud_run::remove_signature(&token);
    let wrong_audience = stripped(system.push_token(PUSH_ACCOUNT, "https://elsewhere.example.com/").await);
    let wrong_account = stripped(system.push_token("someone@evil.iam.gserviceaccount.com", PUSH_AUDIENCE).await);
    for bad in [&wrong_audience, &wrong_account] {
        assert_eq!(push_to_container(&system, &body, "authorization", bad).await, 401);
    }
    // Cloud Run checks X-Serverless-Authorization when present and passes Authorization
    // through untouched: a forged marker in Authorization gains nothing.
    let forged = stripped(system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await);
    let request = system.backend.http.post(format!("http://{}/", system.mailer)).json(&body);
    let outsider = system.push_token("someone@evil.iam.gserviceaccount.com", PUSH_AUDIENCE).await;
    let reply = request
        .header("x-serverless-authorization", format!("Bearer {outsider}"))
        .header("authorization", format!("Bearer {forged}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(reply.status(), 403, "Cloud Run checked the outsider's token");
    assert_eq!(system.wait_for_mail(1).await.len(), 1);
}

#[tokio::test]
async fn a_removed_signature_is_refused_where_nobody_checked_it() {
    // The production defect: a mailer that checks signatures itself, behind Cloud Run's
    // invoker check, refused every push. And off Cloud Run, a marker must never pass.
    let system = System::start_with(&[("PUSH_AUTH", "verify")]).await;
    let body = envelope(&request_event("BUG-1"));
    let token = system.push_token(PUSH_ACCOUNT, PUSH_AUDIENCE).await;
    assert_eq!(push(&system, &body, Some(&token)).await, 401, "verify mode behind Cloud Run cannot work");
    let stripped = local::cloud_run::remove_signature(&token);
    assert_eq!(push_to_container(&system, &body, "authorization", &stripped).await, 401);
    assert_eq!(push_to_container(&system, &body, "authorization", &token).await, 204, "a full check passes");
    // And the configuration refuses cloud-run mode off Cloud Run.
    let mut env = common::config::Env::new(|name| match name {
        "PUSH_AUTH" => Some("cloud-run".into()),
        "PUSH_AUDIENCE" | "PUSH_SERVICE_ACCOUNT" | "BASE_URL" | "SENDGRID_API_KEY" | "SMTP_SENDER_ADDRESS" => {
            Some("https://x@example.com".into())
        }
        _ => None,
    });
    let _ = mailer::Config::read(&mut env);
    let problems = env.finish().expect_err("refused").to_string();
    assert!(problems.contains("PUSH_AUTH=cloud-run needs Cloud Run"), "{problems}");
}
