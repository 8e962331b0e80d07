//! The `/api/` surface of the three functions, served for real against the emulator: every
//! endpoint's success path, and each refusal by name.

use serde_json::{Value, json};

use crate::harness::{AUDIENCE, BASE_URL, System};
use crate::support::{ALICE, BOB, CAROL};

const ADMIN: &str = "project-1:roles/compute.admin";
const STORAGE: &str = "project-1:roles/storage.admin";

fn request_body(peers: &[&str]) -> Value {
    json!({"entitlementId": ADMIN, "justification": "BUG-12345", "peers": peers, "activationTimeout": 30})
}

/// Alice asks Bob; returns the token from the published event's link.
async fn alice_requests(system: &System) -> String {
    let reply = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", request_body(&[BOB])).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let events = system.events().await;
    let url = events.last().expect("an event")["attributes"]["action_url"].as_str().expect("action url").to_string();
    url.split("activation=").nth(1).expect("token in link").to_string()
}

// ---- list-eligibility ----------------------------------------------------------------------

#[tokio::test]
async fn policy_describes_the_rules_and_the_caller() {
    let system = System::start().await;
    let reply = system.get("Alice@Example.com", system.list, "/api/policy").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["signedInUser"]["email"], ALICE);
    assert_eq!(reply.body["justificationHint"], "Bug or case number");
    assert_eq!(reply.body["defaultActivationTimeout"], 60);
    assert_eq!(reply.body["maxActivationTimeout"], 120);
}

#[tokio::test]
async fn projects_are_those_the_caller_is_eligible_on() {
    let system = System::start().await;
    let reply = system.get(ALICE, system.list, "/api/projects").await;
    assert_eq!(reply.body, json!({"projects": ["project-1", "project-2"]}));
}

#[tokio::test]
async fn roles_show_type_and_status() {
    let system = System::start().await;
    let reply = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["entitlements"][0]["id"], ADMIN);
    assert_eq!(reply.body["entitlements"][0]["activationType"], "MPA");
    assert_eq!(reply.body["entitlements"][0]["status"], "INACTIVE");
    assert_eq!(reply.body["entitlements"].as_array().map(Vec::len), Some(1));

    let body = json!({"entitlementIds": [STORAGE], "justification": "BUG-1", "activationTimeout": 30});
    assert_eq!(
        system.post(CAROL, system.request, "/api/projects/project-1/roles/self-activate", body).await.status,
        200
    );
    let reply = system.get_fresh(CAROL, system.list, "/api/projects/project-1/roles").await;
    let entitlement = &reply.body["entitlements"][0];
    assert_eq!(entitlement["activationType"], "JIT");
    assert_eq!(entitlement["status"], "ACTIVE");
    assert!(entitlement["validUntil"].as_i64().is_some(), "{reply:?}");
}

#[tokio::test]
async fn unknown_or_malformed_project_is_refused() {
    let system = System::start().await;
    let reply = system.get(ALICE, system.list, "/api/projects/no-such-project/roles").await;
    assert_eq!((reply.status, reply.code()), (404, "project_not_found"), "{reply:?}");
    let reply = system.get(ALICE, system.list, "/api/projects/Not_A_Project/roles").await;
    assert_eq!((reply.status, reply.code()), (400, "entitlement_invalid"), "{reply:?}");
}

#[tokio::test]
async fn peers_are_listed_without_the_caller() {
    let system = System::start().await;
    let reply = system.get(ALICE, system.list, &format!("/api/projects/project-1/peers?id={ADMIN}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, json!({"peers": [{"email": BOB}]}));
}

#[tokio::test]
async fn peers_are_hidden_from_non_peers() {
    let system = System::start().await;
    let reply = system.get(CAROL, system.list, &format!("/api/projects/project-1/peers?id={ADMIN}")).await;
    assert_eq!((reply.status, reply.code()), (403, "not_eligible"), "{reply:?}");
    let reply = system.get(ALICE, system.list, "/api/projects/project-1/peers").await;
    assert_eq!((reply.status, reply.code()), (400, "query_invalid"), "{reply:?}");
    let reply =
        system.get(ALICE, system.list, "/api/projects/project-1/peers?id=project-2:roles/storage.objectViewer").await;
    assert_eq!((reply.status, reply.code()), (400, "project_mismatch"), "{reply:?}");
}

// ---- request-approval: self-activation ------------------------------------------------------

#[tokio::test]
async fn self_activation_writes_the_binding_and_publishes() {
    let system = System::start().await;
    let body = json!({"entitlementIds": [STORAGE, STORAGE], "justification": "BUG-1", "activationTimeout": 30});
    let reply = system.post(CAROL, system.request, "/api/projects/project-1/roles/self-activate", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["entitlements"][0]["status"], "ACTIVE");
    assert_eq!(reply.body["entitlements"].as_array().map(Vec::len), Some(1), "duplicates folded");
    let policy = system.backend.policy("projects/project-1").await;
    let binding = policy.bindings.last().expect("binding");
    assert_eq!(binding.members, vec![format!("user:{CAROL}")]);
    let description = &binding.condition.as_ref().expect("condition").description;
    assert!(description.starts_with("Self-approved, justification: BUG-1 [request jit-"), "{description}");
    let events = system.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ActivationSelfApproved");
    assert_eq!(events[0]["attributes"]["role"], "roles/storage.admin");
}

/// A self-activation reads eligibility afresh: one granted moments ago does not keep the next
/// one eligible once the binding that made it so is gone.
#[tokio::test]
async fn self_activation_after_eligibility_is_removed_is_refused_at_once() {
    let system = System::start().await;
    let body = json!({"entitlementIds": [STORAGE], "justification": "BUG-1", "activationTimeout": 30});
    let reply = system.post(CAROL, system.request, SELF, body.clone()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    system.revoke_eligibility("project-1", "roles/storage.admin", &format!("user:{CAROL}")).await;
    let reply = system.post(CAROL, system.request, SELF, body).await;
    assert_eq!(reply.status, 403, "{reply:?}");
}

/// Every refusal leaves the policy and the topic as they were.
async fn assert_refused(system: &System, user: &str, path: &str, body: Value, status: u16, code: &str) {
    let before = system.backend.policy("projects/project-1").await;
    let reply = system.post(user, system.request, path, body).await;
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert_eq!(system.backend.policy("projects/project-1").await, before, "nothing written");
    assert!(system.events().await.is_empty(), "nothing published");
}

const SELF: &str = "/api/projects/project-1/roles/self-activate";
const REQUEST: &str = "/api/projects/project-1/roles/request";

#[tokio::test]
async fn self_activation_refusals() {
    let system = System::start().await;
    let body = |ids: Value, justification: &str, minutes: Value| json!({"entitlementIds": ids, "justification": justification, "activationTimeout": minutes});
    // A peer-approved role cannot be self-activated.
    assert_refused(&system, ALICE, SELF, body(json!([ADMIN]), "BUG-1", json!(30)), 403, "wrong_activation_type").await;
    assert_refused(&system, CAROL, SELF, body(json!([ADMIN]), "BUG-1", json!(30)), 403, "not_eligible").await;
    assert_refused(&system, CAROL, SELF, body(json!([STORAGE]), "", json!(30)), 400, "justification_invalid").await;
    assert_refused(
        &system,
        CAROL,
        SELF,
        body(json!([STORAGE]), &"x".repeat(101), json!(30)),
        400,
        "justification_invalid",
    )
    .await;
    assert_refused(&system, CAROL, SELF, body(json!([STORAGE]), "BUG-1", json!(0)), 400, "duration_invalid").await;
    assert_refused(&system, CAROL, SELF, body(json!([STORAGE]), "BUG-1", json!(121)), 400, "duration_invalid").await;
    assert_refused(&system, CAROL, SELF, body(json!([]), "BUG-1", json!(30)), 400, "entitlements_missing").await;
    assert_refused(
        &system,
        CAROL,
        SELF,
        body(json!(["project-2:roles/storage.objectViewer"]), "BUG-1", json!(30)),
        400,
        "project_mismatch",
    )
    .await;
    assert_refused(&system, CAROL, SELF, body(json!(["nonsense"]), "BUG-1", json!(30)), 400, "entitlement_invalid")
        .await;
    let eleven: Vec<String> = (0..11).map(|i| format!("project-1:roles/r{i}")).collect();
    assert_refused(&system, CAROL, SELF, body(json!(eleven), "BUG-1", json!(30)), 400, "too_many_roles").await;
    assert_refused(
        &system,
        CAROL,
        SELF,
        json!({"entitlementIds": [STORAGE], "justification": "x", "extra": 1}),
        400,
        "body_invalid",
    )
    .await;
}

#[tokio::test]
async fn justification_pattern_is_enforced() {
    let system = System::start_with(&[("JUSTIFICATION_PATTERN", "BUG-\\d+")]).await;
    let body = json!({"entitlementIds": [STORAGE], "justification": "because", "activationTimeout": 30});
    assert_refused(&system, CAROL, SELF, body, 400, "justification_invalid").await;
    let body = json!({"entitlementIds": [STORAGE], "justification": "BUG-7", "activationTimeout": 30});
    assert_eq!(system.post(CAROL, system.request, SELF, body).await.status, 200);
}

// ---- request-approval: peer-approval requests -----------------------------------------------

#[tokio::test]
async fn a_request_is_signed_and_sent_to_the_reviewers() {
    let system = System::start().await;
    let reply = system.post(ALICE, system.request, REQUEST, request_body(&[BOB])).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["entitlements"][0]["status"], "ACTIVATION_PENDING");
    assert_eq!(reply.body["reviewers"], json!([{"email": BOB}]));
    assert!(reply.body["requestExpiryTime"].as_i64().is_some());
    let events = system.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "RequestActivation");
    let action_url = events[0]["attributes"]["action_url"].as_str().expect("link");
    assert!(action_url.starts_with(&format!("{BASE_URL}/?activation=")), "{action_url}");
    assert_eq!(events[0]["attributes"]["reviewers"], json!([BOB]));
    // Nothing is granted until a reviewer approves.
    let policy = system.backend.policy("projects/project-1").await;
    assert!(
        policy.bindings.iter().all(|b| { b.condition.as_ref().is_none_or(|c| c.title != "JIT access activation") })
    );
}

#[tokio::test]
async fn request_refusals() {
    let system = System::start().await;
    let with = |peers: Value, justification: &str| json!({"entitlementId": ADMIN, "justification": justification, "peers": peers, "activationTimeout": 30});
    assert_refused(&system, ALICE, REQUEST, with(json!([ALICE]), "BUG-1"), 400, "self_review").await;
    assert_refused(&system, ALICE, REQUEST, with(json!([BOB, ALICE]), "BUG-1"), 400, "self_review").await;
    assert_refused(&system, ALICE, REQUEST, with(json!([CAROL]), "BUG-1"), 403, "reviewer_not_eligible").await;
    assert_refused(&system, ALICE, REQUEST, with(json!([]), "BUG-1"), 400, "reviewer_count").await;
    let many: Vec<String> = (0..11).map(|i| format!("peer{i}@example.com")).collect();
    assert_refused(&system, ALICE, REQUEST, with(json!(many), "BUG-1"), 400, "reviewer_count").await;
    assert_refused(
        &system,
        ALICE,
        REQUEST,
        with(json!(["bob@example.com, eve@example.com"]), "BUG-1"),
        400,
        "email_invalid",
    )
    .await;
    assert_refused(&system, ALICE, REQUEST, with(json!([BOB]), ""), 400, "justification_invalid").await;
    assert_refused(&system, CAROL, REQUEST, with(json!([BOB]), "BUG-1"), 403, "not_eligible").await;
    // A self-approvable role is not pushed through peer approval.
    let jit = json!({"entitlementId": STORAGE, "justification": "BUG-1", "peers": [BOB], "activationTimeout": 30});
    assert_refused(&system, CAROL, REQUEST, jit, 403, "wrong_activation_type").await;
    let other_project =
        json!({"entitlementId": "project-2:roles/storage.objectViewer", "justification": "BUG-1", "peers": [BOB]});
    assert_refused(&system, ALICE, REQUEST, other_project, 400, "project_mismatch").await;
    let long = json!({"entitlementId": ADMIN, "justification": "BUG-1", "peers": [BOB], "activationTimeout": 500});
    assert_refused(&system, ALICE, REQUEST, long, 400, "duration_invalid").await;
}

// ---- approve --------------------------------------------------------------------------------

#[tokio::test]
async fn the_request_is_visible_to_its_parties_only() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    let path = format!("/api/activation-request?activation={token}");
    for user in [ALICE, BOB] {
        let reply = system.get(user, system.approve, &path).await;
        assert_eq!(reply.status, 200, "{user}: {reply:?}");
        assert_eq!(reply.body["beneficiary"]["email"], ALICE);
        assert_eq!(reply.body["justification"], "BUG-12345");
        assert_eq!(reply.body["isReviewer"], user == BOB);
    }
    let reply = system.get(CAROL, system.approve, &path).await;
    assert_eq!((reply.status, reply.code()), (403, "not_involved"), "{reply:?}");
    // The ledger's view of it too: its parties (and administrators) only.
    let id = system.get(ALICE, system.approve, &path).await.body["request"]["id"].as_str().expect("id").to_string();
    let view = format!("/api/requests/{id}");
    assert_eq!(system.get(BOB, system.approve, &view).await.status, 200);
    let reply = system.get(CAROL, system.approve, &view).await;
    assert_eq!((reply.status, reply.code()), (403, "not_involved"), "{reply:?}");
}

#[tokio::test]
async fn a_listed_peer_approves_and_the_binding_is_written() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    let before = system.backend.policy("projects/project-1").await;
    let path = format!("/api/activation-request?activation={token}");
    let reply = system.call(BOB, "POST", system.approve, &path, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["entitlements"][0]["status"], "ACTIVE");
    let after = system.backend.policy("projects/project-1").await;
    assert_eq!(after.bindings[..before.bindings.len()], before.bindings[..], "every other binding unchanged");
    let binding = after.bindings.last().expect("binding");
    assert_eq!(binding.role, "roles/compute.admin");
    assert_eq!(binding.members, vec![format!("user:{ALICE}")]);
    let condition = binding.condition.as_ref().expect("condition");
    assert!(
        condition.description.starts_with("Approved by bob@example.com, justification: BUG-12345 [request mpa-"),
        "the binding names its request: {}",
        condition.description
    );
    let events = system.events().await;
    assert_eq!(events.last().expect("event")["type"], "ActivationApproved");
    assert_eq!(events.last().expect("event")["attributes"]["approver"], BOB);

    // Approving again is harmless, says so, and tells nobody twice.
    let again = system.call(BOB, "POST", system.approve, &path, None).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert!(again.body["message"].as_str().is_some_and(|m| m.contains("already")), "{again:?}");
    assert_eq!(system.backend.policy("projects/project-1").await, after);
    assert_eq!(system.events().await.len(), events.len());
}

async fn assert_approval_refused(system: &System, user: &str, token: &str, status: u16, code: &str) {
    let before = system.backend.policy("projects/project-1").await;
    let events = system.events().await.len();
    let reply =
        system.call(user, "POST", system.approve, &format!("/api/activation-request?activation={token}"), None).await;
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert_eq!(system.backend.policy("projects/project-1").await, before, "nothing written");
    assert_eq!(system.events().await.len(), events, "nothing published");
}

#[tokio::test]
async fn the_beneficiary_cannot_approve_their_own_request() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    assert_approval_refused(&system, ALICE, &token, 403, "self_approval").await;
}

#[tokio::test]
async fn a_peer_who_is_not_listed_cannot_approve() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    let catalog_calls = || async {
        let calls: std::collections::BTreeMap<String, u64> = system.backend.get_json("/_emulator/calls").await;
        calls
            .into_iter()
            .filter(|(call, _)| call.starts_with("asset.") || call.starts_with("cloudidentity."))
            .collect::<Vec<_>>()
    };
    let asked = catalog_calls().await;
    assert_approval_refused(&system, CAROL, &token, 403, "not_a_reviewer").await;
    // Refused before any catalog call: a stranger with a leaked link costs no quota.
    assert_eq!(catalog_calls().await, asked, "no catalog call for a caller who is not listed");
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    let middle = token.len() / 2;
    let flipped = if &token[middle..=middle] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..middle], &token[middle + 1..]);
    assert_approval_refused(&system, BOB, &tampered, 403, "token_invalid").await;
    assert_approval_refused(&system, BOB, "not-a-token", 403, "token_invalid").await;
}

fn claims(now: i64, exp: i64, start: i64, end: i64) -> Value {
    let account = "jitaccess@jit-project.iam.gserviceaccount.com";
    json!({
        "jti": "mpa-forged", "iss": account, "aud": account, "iat": now, "nbf": now, "exp": exp,
        "beneficiary": ALICE, "reviewers": [BOB],
        "entitlement": {"project": "project-1", "role": "roles/compute.admin"},
        "justification": "BUG-12345", "start": start, "end": end,
    })
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let system = System::start().await;
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let token = system.sign(&claims(now - 7200, now - 3600, now - 7200, now + 3600)).await;
    assert_approval_refused(&system, BOB, &token, 403, "token_expired").await;
}

#[tokio::test]
async fn approval_after_the_window_is_refused() {
    let system = System::start().await;
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let token = system.sign(&claims(now - 7200, now + 600, now - 7200, now - 3600)).await;
    assert_approval_refused(&system, BOB, &token, 403, "window_ended").await;
}

#[tokio::test]
async fn a_reviewer_who_lost_eligibility_cannot_approve() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    system.revoke_eligibility("project-1", "roles/compute.admin", &format!("user:{BOB}")).await;
    assert_approval_refused(&system, BOB, &token, 403, "approver_not_eligible").await;
}

#[tokio::test]
async fn a_beneficiary_who_lost_eligibility_cannot_be_approved() {
    let system = System::start().await;
    let token = alice_requests(&system).await;
    system.revoke_eligibility("project-1", "roles/compute.admin", &format!("user:{ALICE}")).await;
    assert_approval_refused(&system, BOB, &token, 403, "beneficiary_not_eligible").await;
}

#[tokio::test]
async fn a_changed_justification_policy_applies_at_approval() {
    let system = System::start_with(&[("JUSTIFICATION_PATTERN", "BUG-\\d+")]).await;
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let mut forged = claims(now, now + 600, now, now + 1800);
    forged["justification"] = json!("no ticket");
    let token = system.sign(&forged).await;
    assert_approval_refused(&system, BOB, &token, 400, "justification_invalid").await;
}

// ---- identity and input, on every function ----------------------------------------------------

#[tokio::test]
async fn identity_comes_only_from_a_valid_iap_assertion() {
    let system = System::start().await;
    let other_audience = system.assertion(ALICE, "/projects/1/global/backendServices/2").await;
    let forger = common::keys::LocalKey::generate_es256("emulator-iap-key-1").expect("key");
    let claims = common::iap::assertion_claims(ALICE, "x", AUDIENCE, common::timestamp::Timestamp::now());
    let forged = forger.sign_json(&claims).expect("signed");
    let ok = system.assertion(ALICE, AUDIENCE).await;
    // Every function, each with a call it answers for a signed-in caller.
    for (at, method, path) in [
        (system.list, "GET", "/api/policy"),
        (system.request, "POST", SELF),
        (system.approve, "GET", "/api/activation-request?activation=x"),
    ] {
        let body = Some(json!({}));
        let reply = system
            .send(method, at, path, body.clone(), &[("x-goog-iap-jwt-assertion", &ok), ("x-jitaccess", "1")])
            .await;
        assert_ne!(reply.status, 401, "{path}: a valid assertion is accepted: {reply:?}");

        let missing = system.send(method, at, path, body.clone(), &[("x-jitaccess", "1")]).await;
        assert_eq!((missing.status, missing.code()), (401, "iap_assertion_missing"), "{path}");

        let plain =
            [("x-jitaccess", "1"), ("x-goog-authenticated-user-email", "accounts.google.com:alice@example.com")];
        let reply = system.send(method, at, path, body.clone(), &plain).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "iap_assertion_missing"),
            "{path}: a plain header is never trusted"
        );

        for bad in [&other_audience, &forged] {
            let reply = system
                .send(method, at, path, body.clone(), &[("x-goog-iap-jwt-assertion", bad), ("x-jitaccess", "1")])
                .await;
            assert_eq!((reply.status, reply.code()), (401, "iap_assertion_invalid"), "{path}");
        }
    }
}

#[tokio::test]
async fn every_api_call_needs_the_xsrf_header() {
    let system = System::start().await;
    let assertion = system.assertion(ALICE, AUDIENCE).await;
    for (at, method, path) in [
        (system.list, "GET", "/api/policy"),
        (system.request, "POST", REQUEST),
        (system.approve, "GET", "/api/activation-request?activation=x"),
    ] {
        let reply = system.send(method, at, path, Some(json!({})), &[("x-goog-iap-jwt-assertion", &assertion)]).await;
        assert_eq!((reply.status, reply.code()), (400, "xsrf_header_missing"), "{path}: {reply:?}");
        assert_eq!(reply.body["message"], "Missing header: X-JITACCESS");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let system = System::start().await;
    let assertion = system.assertion(ALICE, AUDIENCE).await;
    let headers =
        [("x-goog-iap-jwt-assertion", assertion.as_str()), ("x-jitaccess", "1"), ("content-type", "application/json")];
    let send_raw = |body: String| {
        let mut request = system.backend.http.post(format!("http://{}{REQUEST}", system.request)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(send_raw("{not json".into()).await, (400, "body_malformed".into()));
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(send_raw(nested).await.0, 400);
    let huge = format!("{{\"entitlementId\": \"{}\"}}", "x".repeat(70_000));
    assert_eq!(send_raw(huge).await, (413, "body_too_large".into()));
    let reply = system
        .send("POST", system.request, REQUEST, None, &[("x-goog-iap-jwt-assertion", &assertion), ("x-jitaccess", "1")])
        .await;
    assert_eq!((reply.status, reply.code()), (400, "content_type_invalid"), "{reply:?}");
}

#[tokio::test]
async fn unknown_routes_get_json_errors() {
    let system = System::start().await;
    let reply = system.get(ALICE, system.list, "/api/nothing-here").await;
    assert_eq!((reply.status, reply.code()), (404, "route_not_found"));
}
