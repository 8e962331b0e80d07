//! The seed's story end to end, with the real Pub/Sub emulator in the middle: Alice asks, Bob's
//! mail arrives, Bob approves from its link, the binding is written, Alice's mail arrives.
//! Then the refusals, on the same setup.

use serde_json::{Value, json};

use crate::harness::{PUSH_ACCOUNT, PUSH_AUDIENCE, System};
use crate::support::{ALICE, BOB, CAROL, GcloudEmulator};

fn mail_to(mail: &[Value], email: &str) -> Vec<Value> {
    mail.iter()
        .filter(|m| m["personalizations"][0]["to"].as_array().is_some_and(|to| to.iter().any(|t| t["email"] == email)))
        .cloned()
        .collect()
}

fn content(mail: &Value, kind: &str) -> String {
    mail["content"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["value"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn alice_asks_bob_approves_through_the_real_pubsub_emulator() {
    let Some(pubsub) = GcloudEmulator::start("pubsub").await else { return };
    // As deployed: the push reaches the mailer through Cloud Run's invoker check, which
    // verifies the push token and removes its signature. The real emulator pushes unsigned, so
    // the push first gets the OIDC token Google's Pub/Sub would add.
    let endpoint = format!("http://{}", pubsub.host);
    let system = System::start_with(&[("PUBSUB_ENDPOINT", &endpoint)]).await;
    let push = local::Push { account: PUSH_ACCOUNT, audience: PUSH_AUDIENCE };
    let signed =
        local::front_mailer(&system.backend.emulator, system.mailer_container, push, true).await.expect("front");
    pubsub.put("/v1/projects/jit-project/topics/jit-events", json!({})).await;
    pubsub
        .put(
            "/v1/projects/jit-project/subscriptions/mailer",
            json!({"topic": "projects/jit-project/topics/jit-events", "pushConfig": {"pushEndpoint": format!("http://{signed}/")}}),
        )
        .await;

    // 1. Alice sees roles/compute.admin on project-1, needing peer approval.
    let roles = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
    let entitlement = &roles.body["entitlements"][0];
    assert_eq!(
        (entitlement["name"].as_str(), entitlement["activationType"].as_str()),
        (Some("roles/compute.admin"), Some("MPA"))
    );

    // 2. She lists peers, picks Bob, and asks, with a justification that tries to be HTML.
    let id = entitlement["id"].as_str().expect("id");
    let peers = system.get(ALICE, system.list, &format!("/api/projects/project-1/peers?id={id}")).await;
    assert_eq!(peers.body["peers"], json!([{"email": BOB}]));
    let justification = "BUG-12345 <script>alert(1)</script>";
    let body = json!({"entitlementId": id, "justification": justification, "peers": [BOB], "activationTimeout": 60});
    let requested = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", body).await;
    assert_eq!(requested.status, 200, "{requested:?}");

    // 3. Bob's mail arrives through Pub/Sub: Alice seeks his approval, with a link.
    let mail = system.wait_for_mail(1).await;
    let to_bob = mail_to(&mail, BOB);
    assert_eq!(to_bob.len(), 1, "{mail:?}");
    assert_eq!(to_bob[0]["subject"], "alice@example.com requests access to project project-1");
    let html = content(&to_bob[0], "text/html");
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "escaped: {html}");
    let text = content(&to_bob[0], "text/plain");
    let link = text.split_whitespace().find(|w| w.contains("?activation=")).expect("a link in the mail");
    let token = link.split("activation=").nth(1).expect("token");

    // 4. Bob follows the link: he sees resource, role and justification, and approves.
    let path = format!("/api/activation-request?activation={token}");
    let seen = system.get(BOB, system.approve, &path).await;
    assert_eq!(seen.body["entitlements"][0]["name"], "roles/compute.admin");
    assert_eq!(seen.body["entitlements"][0]["projectId"], "project-1");
    assert_eq!(seen.body["justification"], justification);
    let before = system.backend.policy("projects/project-1").await;

    // The refusals, on the same request: Alice approving herself, Carol (not listed), a token
    // with one changed character.
    let refused = system.call(ALICE, "POST", system.approve, &path, None).await;
    assert_eq!(refused.code(), "self_approval");
    let refused = system.call(CAROL, "POST", system.approve, &path, None).await;
    assert_eq!(refused.code(), "not_a_reviewer");
    let middle = token.len() / 2;
    let flipped = format!(
        "{}{}{}",
        &token[..middle],
        if &token[middle..=middle] == "A" { "B" } else { "A" },
        &token[middle + 1..]
    );
    let refused =
        system.call(BOB, "POST", system.approve, &format!("/api/activation-request?activation={flipped}"), None).await;
    assert_eq!(refused.code(), "token_invalid");
    assert_eq!(system.backend.policy("projects/project-1").await, before, "no refusal wrote anything");

    let approved = system.call(BOB, "POST", system.approve, &path, None).await;
    assert_eq!(approved.status, 200, "{approved:?}");

    // 5. Project-1's policy holds Alice's time-bound binding; every other binding unchanged.
    let after = system.backend.policy("projects/project-1").await;
    assert_eq!(after.bindings[..before.bindings.len()], before.bindings[..]);
    let binding = after.bindings.last().expect("new binding");
    assert_eq!(
        (binding.role.as_str(), binding.members.as_slice()),
        ("roles/compute.admin", &[format!("user:{ALICE}")][..])
    );
    let condition = binding.condition.as_ref().expect("condition");
    assert!(condition.expression.starts_with("(request.time >= timestamp(\""), "{}", condition.expression);
    let id = approved.body["entitlements"][0]["activationId"].as_str().unwrap_or_default().to_string();
    assert_eq!(condition.description, format!("Approved by {BOB}, justification: {justification} [request {id}]"));

    // 6. Alice's mail arrives: Bob approved her access.
    let mail = system.wait_for_mail(2).await;
    let to_alice = mail_to(&mail, ALICE);
    assert_eq!(to_alice.len(), 1, "{mail:?}");
    assert_eq!(to_alice[0]["subject"], "Re: alice@example.com requests access to project project-1");
    assert!(content(&to_alice[0], "text/plain").starts_with("bob@example.com approved"));
    assert!(!content(&to_alice[0], "text/html").contains("<script>"));
}

#[tokio::test]
async fn bob_cannot_approve_after_losing_eligibility_nor_with_an_expired_token() {
    let system = System::start().await;
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-12345", "peers": [BOB]});
    assert_eq!(system.post(ALICE, system.request, "/api/projects/project-1/roles/request", body).await.status, 200);
    let events = system.events().await;
    let link = events[0]["attributes"]["action_url"].as_str().expect("link").to_string();
    let token = link.split("activation=").nth(1).expect("token");
    system.revoke_eligibility("project-1", "roles/compute.admin", &format!("user:{BOB}")).await;
    let refused =
        system.call(BOB, "POST", system.approve, &format!("/api/activation-request?activation={token}"), None).await;
    assert_eq!(refused.code(), "approver_not_eligible");

    let now = common::timestamp::Timestamp::now().unix_seconds();
    let account = "jitaccess@jit-project.iam.gserviceaccount.com";
    let expired = system
        .sign(&json!({"jti": "mpa-old", "iss": account, "aud": account, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
            "beneficiary": ALICE, "reviewers": [BOB], "entitlement": {"project": "project-1", "role": "roles/compute.admin"},
            "justification": "BUG-1", "start": now - 7200, "end": now - 3600}))
        .await;
    let refused =
        system.call(BOB, "POST", system.approve, &format!("/api/activation-request?activation={expired}"), None).await;
    assert_eq!(refused.code(), "token_expired");
}
