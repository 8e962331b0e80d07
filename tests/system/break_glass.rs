//! Emergency access (break glass) through the local run: granted at once through the one
//! door, everyone who may approve the role and the administrators told by mail, Chat and the
//! topic, ratified after the fact by the role's quorum, or rejected (and revoked) by one.
//! The deadline and its escalation are followed past their end in `tests/across_time`.

use serde_json::{Value, json};

use crate::chat::Local;
use crate::support::{BOB, CAROL};

const DAVE: &str = "dave@example.com";
const ERIN: &str = "erin@example.com";
const ADMIN: &str = "admin@example.com";
const LOGGING: &str = "project-1:roles/logging.admin";
const BREAK_GLASS: &str = "/api/projects/project-1/roles/break-glass";

/// The on-call group (Dave, and Erin through a nested group) and Bob may activate
/// logging.admin with two approvals; its rule opens break glass for 30 minutes, ratified
/// within 4 hours.
async fn on_call(extra: &[(&'static str, &str)]) -> Local {
    let policy = r#"[{"roles": ["roles/logging.admin"], "approvals": 2, "breakGlass": {"maxDuration": 30, "reviewWithin": 240}}]"#;
    let mut settings = vec![("APPROVAL_POLICY", policy.to_string()), ("ADMINISTRATORS", format!("user:{ADMIN}"))];
    settings.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));
    let local = Local::start(settings).await;
    local.eligible("roles/logging.admin", BOB).await;
    local
}

async fn break_glass(local: &Local, who: &str, minutes: u64) -> (u16, Value) {
    let body = json!({"entitlementId": LOGGING, "justification": "INC-4711 outage", "activationTimeout": minutes});
    local.post(who, BREAK_GLASS, body).await
}

fn subject(mail: &Value) -> String {
    mail["personalizations"][0]["subject"].as_str().or(mail["subject"].as_str()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn dave_breaks_glass_bob_and_erin_ratify_it_after_the_fact() {
    let local = on_call(&[]).await;
    let (status, granted) = break_glass(&local, DAVE, 30).await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["entitlements"][0]["status"], "ACTIVE", "granted within the same request: {granted}");
    assert_eq!(granted["breakGlass"]["review"], "PENDING", "{granted}");
    let reviewers: Vec<&str> =
        granted["reviewers"].as_array().expect("reviewers").iter().filter_map(|r| r["email"].as_str()).collect();
    assert_eq!(reviewers, [BOB, ERIN], "everyone who may approve the role but Dave");
    assert_eq!(local.bindings_of(DAVE, "roles/logging.admin").await, 1, "the binding is there at once");
    let id = granted["entitlements"][0]["activationId"].as_str().expect("id").to_string();

    // Everyone told at once: a distinct event, a mail to each reviewer and the administrator,
    // and a card with Ratify and Reject.
    let events = local.events().await;
    assert!(
        events.iter().any(|e| e["type"] == "BreakGlassActivated" && e["attributes"]["activation_id"] == id),
        "{events:#?}"
    );
    for who in [BOB, ERIN, ADMIN] {
        let mail = local.mail_until(who, |m| subject(m).starts_with("EMERGENCY ACCESS")).await;
        assert!(mail.to_string().contains(&format!("/?request={id}")), "{who}: a link to review it: {mail}");
    }
    let cards = local.cards_until(&[BOB, ERIN], |card| card.contains("Emergency access: awaiting review")).await;
    let bobs = Local::card_of(&cards, BOB);
    let text = bobs["cardsV2"].to_string();
    assert!(text.contains("Ratify") && text.contains("Reject") && !text.contains("\"function\":\"approve\""), "{text}");

    // The beneficiary never counts: Dave's own ratification is refused.
    let (status, refused) = local.post(DAVE, &format!("/api/requests/{id}/ratify"), json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("self_approval")), "{refused}");

    // Bob ratifies in Chat, Erin in the browser: the quorum of two is complete.
    let message = bobs["name"].clone();
    let answer = local
        .in_chat(json!({"type": "CARD_CLICKED", "email": BOB, "message": message, "function": "ratify", "id": id}))
        .await;
    assert!(answer["reply"]["cardsV2"].to_string().contains("1 of 2 ratifications"), "{answer}");
    let listed = local.get(ERIN, "/api/requests?view=review&breakGlass=true").await;
    assert_eq!(listed["requests"][0]["id"], json!(id), "awaiting Erin's ratification: {listed}");
    let (status, view) =
        local.post(ERIN, &format!("/api/requests/{id}/ratify"), json!({"reason": "the outage was real"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["breakGlass"]["review"].as_str(), view["state"].as_str()),
        (Some("RATIFIED"), Some("ACTIVE")),
        "{view}"
    );
    let timeline: Vec<&str> =
        view["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(timeline, ["REQUESTED", "ACTIVATED", "RATIFIED", "RATIFIED"], "the evidence: {view}");
    local.cards_until(&[BOB, ERIN], |card| card.contains("Emergency access: ratified")).await;
    let listed = local.get(ERIN, "/api/requests?view=review").await;
    assert_eq!(listed["requests"], json!([]), "nothing left to review: {listed}");
}

#[tokio::test]
async fn a_reject_revokes_a_live_emergency_grant_and_says_so_to_everyone() {
    let local = on_call(&[]).await;
    let (status, granted) = break_glass(&local, DAVE, 30).await;
    assert_eq!(status, 200, "{granted}");
    let id = granted["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let (status, refused) = local.post(ERIN, &format!("/api/requests/{id}/reject"), json!({"reason": " "})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("reason_required")), "{refused}");
    let (status, view) = local.post(ERIN, &format!("/api/requests/{id}/reject"), json!({"reason": "no outage"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["state"].as_str(), view["breakGlass"]["review"].as_str()),
        (Some("REVOKED"), Some("REJECTED")),
        "{view}"
    );
    assert_eq!(local.bindings_of(DAVE, "roles/logging.admin").await, 0, "revoked at once");
    for who in [BOB, ERIN, ADMIN] {
        let mail = local.mail_until(who, |m| m.to_string().contains("rejected the emergency access")).await;
        assert!(mail.to_string().contains("no outage"), "{who}: with its reason: {mail}");
    }
    let events = local.events().await;
    let rejected = events.iter().find(|e| e["type"] == "BreakGlassRejected").expect("event");
    assert_eq!(
        (rejected["attributes"]["actor"].as_str(), rejected["attributes"]["state"].as_str()),
        (Some(ERIN), Some("REVOKED"))
    );
    local.cards_until(&[BOB, ERIN], |card| card.contains("Emergency access: rejected")).await;
}

#[tokio::test]
async fn break_glass_is_refused_without_a_rule_to_the_ineligible_past_its_cap_and_past_its_longest() {
    let local = on_call(&[("BREAK_GLASS_LIMIT", "1/7d")]).await;
    // A role whose rule opens no emergency path.
    let body =
        json!({"entitlementId": "project-1:roles/compute.admin", "justification": "INC-1", "activationTimeout": 10});
    let (status, reply) = local.post("alice@example.com", BREAK_GLASS, body).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (403, Some("no_break_glass")), "{reply}");
    // A person not eligible for peer approval of the role.
    let (status, reply) = break_glass(&local, CAROL, 10).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (403, Some("not_eligible")), "{reply}");
    // Longer than the rule's maxDuration.
    let (status, reply) = break_glass(&local, DAVE, 31).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("duration_invalid")), "{reply}");
    // The cap: one in seven days; the refusal says when the next is allowed.
    assert_eq!(break_glass(&local, DAVE, 10).await.0, 200);
    let response = local
        .http
        .post(format!("{}{BREAK_GLASS}", local.running.url))
        .header("x-local-user", DAVE)
        .header("x-jitaccess", "1")
        .json(&json!({"entitlementId": LOGGING, "justification": "INC-2", "activationTimeout": 10}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((7 * 86_400 - 120..=7 * 86_400).contains(&wait), "{wait}");
    let reply: Value = response.json().await.expect("json");
    assert_eq!(reply["error"]["code"], "break_glass_limit", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap_or_default().contains("the next is allowed at"), "{reply}");
    assert_eq!(local.bindings_of("alice@example.com", "roles/compute.admin").await, 0, "nothing granted by a refusal");
}

/// Two emergency grants at once by one person with one left under the cap: exactly one lands
/// (the record and the person's uses are written in one commit).
#[tokio::test]
async fn two_at_once_cannot_both_pass_the_cap() {
    let local = on_call(&[("BREAK_GLASS_LIMIT", "1/1d")]).await;
    let (a, b) = tokio::join!(break_glass(&local, DAVE, 10), break_glass(&local, DAVE, 10));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429], "{a:?} {b:?}");
    assert_eq!(local.bindings_of(DAVE, "roles/logging.admin").await, 1);
}
