//! The request ledger on Firestore: the adapter behaves the same on Google's Firestore emulator
//! and on ours (which the local run uses, so that it needs no Java), and the approval lifecycle
//! holds under races: three reviewers approving a 2-of-3 request at the same instant write one
//! binding and record every approval, also with injected Firestore and IAM conflicts; a deny
//! racing an approval ends in exactly one of DENIED or ACTIVE, the same in ledger and IAM.

use std::collections::BTreeSet;

use common::condition::ActivationType;
use common::gcp::GcpError;
use common::gcp::ledger::Ledger;
use common::lifecycle::{Entry, Record, State};
use common::timestamp::Timestamp;
use serde_json::{Value, json};

use crate::harness::System;
use crate::support::{ALICE, BOB, CAROL, GcloudEmulator, email};

const DATABASE: &str = "projects/jit-project/databases/(default)";
const DAVE: &str = "dave@example.com";

fn record(id: &str, beneficiary: &str, reviewers: &[&str], requested_at: i64) -> Record {
    Record {
        id: id.to_string(),
        activation_type: ActivationType::Mpa,
        beneficiary: email(beneficiary),
        reviewers: reviewers.iter().map(|r| email(r)).collect(),
        entitlements: vec!["project-1:roles/compute.admin".into()],
        justification: "BUG-1".into(),
        start: requested_at,
        end: requested_at + 3600,
        request_expiry: requested_at + 3600,
        approvals_needed: 2,
        approver_reason_required: false,
        break_glass: None,
        token: None,
        timeline: vec![Entry::Requested { at: requested_at, actor: email(beneficiary) }],
    }
}

/// The adapter's contract, on whichever Firestore `endpoint` serves.
async fn adapter_contract(name: &str, endpoint: &str) {
    let ledger = Ledger::new(reqwest::Client::new(), endpoint, DATABASE, 400).expect("ledger");
    let now = Timestamp::now().unix_seconds();
    let first = record("mpa-contract-1", ALICE, &[BOB, CAROL], now - 10);
    let second = record("mpa-contract-2", ALICE, &[CAROL], now);
    let created = ledger.create(&first).await.expect("created");
    ledger.create(&second).await.expect("created");
    assert!(matches!(ledger.create(&first).await, Err(GcpError::Conflict(_))), "{name}: a second create conflicts");
    let read = ledger.get("mpa-contract-1").await.expect("read").expect("found");
    assert_eq!(read.record, first, "{name}: read back as written");
    assert_eq!(read.update_time, created.update_time, "{name}: the version is the write's");
    assert_eq!(ledger.get("mpa-missing").await.expect("read"), None, "{name}");
    assert_eq!(ledger.get("../escape").await.expect("not ours"), None, "{name}: only our IDs are looked up");

    let mut changed = first.clone();
    changed.timeline.push(Entry::Approved { at: now, actor: email(BOB), reason: String::new(), end: None });
    let updated = ledger.update(&changed, &read.update_time).await.expect("current version wins");
    assert!(
        matches!(ledger.update(&first, &read.update_time).await, Err(GcpError::Conflict(_))),
        "{name}: stale loses"
    );
    assert_ne!(updated.update_time, read.update_time);

    // Sixteen writers append at once; every entry lands, none is lost.
    let writers = (0..16).map(|i| {
        let ledger = ledger.clone();
        async move {
            ledger
                .modify::<GcpError>("mpa-contract-2", |current| {
                    let mut next = current.clone();
                    next.timeline.push(Entry::Approved {
                        at: i,
                        actor: email(&format!("r{i}@example.com")),
                        reason: String::new(),
                        end: None,
                    });
                    Ok(Some(next))
                })
                .await
        }
    });
    for result in futures_join_all(writers).await {
        result.expect("written");
    }
    let appended = ledger.get("mpa-contract-2").await.expect("read").expect("found");
    assert_eq!(appended.record.timeline.len(), 17, "{name}: every concurrent append landed");

    let mine = ledger.made_by(&email(ALICE), 10).await.expect("query");
    let ids: Vec<&str> = mine.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(ids, ["mpa-contract-2", "mpa-contract-1"], "{name}: newest first");
    let carol: Vec<String> =
        ledger.naming_reviewer(&email(CAROL), 10).await.expect("query").into_iter().map(|s| s.record.id).collect();
    assert_eq!(carol, ["mpa-contract-2", "mpa-contract-1"], "{name}");
    let bob: Vec<String> =
        ledger.naming_reviewer(&email(BOB), 10).await.expect("query").into_iter().map(|s| s.record.id).collect();
    assert_eq!(bob, ["mpa-contract-1"], "{name}");
    let open = ledger.open_page(None, 10).await.expect("query");
    let ids: Vec<&str> = open.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(ids, ["mpa-contract-1", "mpa-contract-2"], "{name}: both open, in document order");
    let next = ledger.open_page(Some("mpa-contract-1"), 10).await.expect("query");
    assert_eq!(next.len(), 1, "{name}: the page after the first document");
    assert_eq!(ledger.open_page(None, 1).await.expect("query").len(), 1, "{name}: a page's limit");
    assert_eq!(ledger.open_of(&email(ALICE), 10).await.expect("query").len(), 2, "{name}: alice's open requests");
    assert!(ledger.open_of(&email(BOB), 10).await.expect("query").is_empty(), "{name}");
    let gone = ledger.get("mpa-contract-1").await.expect("read").expect("found");
    ledger.delete(&gone).await.expect("deleted");
    assert!(ledger.get("mpa-contract-1").await.expect("read").is_none(), "{name}: deleted");
    assert!(ledger.made_by(&email("nobody@example.com"), 10).await.expect("query").is_empty(), "{name}");
}

/// Runs futures concurrently on this task, without another crate.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.extend(results.into_iter().flatten());
    outputs
}

/// Makes Carol and Dave peers of Alice and Bob for compute.admin on project-1.
async fn more_peers(system: &System) {
    let mut policy = system.backend.policy("projects/project-1").await;
    policy.bindings.push(common::policy::Binding {
        role: "roles/compute.admin".into(),
        members: vec![format!("user:{CAROL}"), format!("user:{DAVE}")],
        condition: Some(common::policy::Expr {
            expression: "has({}.multiPartyApprovalConstraint)".into(),
            title: "Eligible for peer-approved activation".into(),
            description: String::new(),
            location: String::new(),
        }),
    });
    let url = system.backend.url("/v3/projects/project-1:setIamPolicy");
    let response = system.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
    assert_eq!(response.status(), 200);
}

async fn ask(system: &System, reviewers: &[&str]) -> String {
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": reviewers, "activationTimeout": 30});
    let reply = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string()
}

fn alice_bindings(policy: &common::policy::Policy) -> usize {
    policy.bindings.iter().filter(|b| b.role == "roles/compute.admin" && b.members == [format!("user:{ALICE}")]).count()
}

async fn request_view(system: &System, id: &str) -> Value {
    system.get(ALICE, system.approve, &format!("/api/requests/{id}")).await.body
}

const TWO_APPROVALS: &str = r#"[{"roles": ["roles/compute.admin"], "approvals": 2}]"#;

/// Bob, Carol and Dave approve Alice's 2-of-3 request at the same instant, with `faults`
/// injected just before.
async fn three_approve_at_once(system: &System, faults: &[(&str, &str, u16, u32)]) {
    more_peers(system).await;
    let id = ask(system, &[BOB, CAROL, DAVE]).await;
    for (api, method, status, count) in faults {
        system.backend.inject(api, method, *status, *count).await;
    }
    let path = format!("/api/requests/{id}/approve");
    let (a, b, c) = tokio::join!(
        system.post(BOB, system.approve, &path, json!({})),
        system.post(CAROL, system.approve, &path, json!({})),
        system.post(DAVE, system.approve, &path, json!({})),
    );
    for reply in [&a, &b, &c] {
        assert_eq!(reply.status, 200, "every approval is taken: {reply:?}");
    }
    let policy = system.backend.policy("projects/project-1").await;
    assert_eq!(alice_bindings(&policy), 1, "exactly one binding");
    let view = request_view(system, &id).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    let approvers: BTreeSet<&str> =
        view["approvals"].as_array().into_iter().flatten().filter_map(|a| a["email"].as_str()).collect();
    assert_eq!(approvers, BTreeSet::from([BOB, CAROL, DAVE]), "every approval recorded: {view}");
    let activated = view["timeline"].as_array().into_iter().flatten().filter(|e| e["type"] == "ACTIVATED").count();
    assert_eq!(activated, 1, "activated once: {view}");
}

/// Bob approves and Carol denies Alice's 1-approval request at the same instant, with
/// `faults` injected just before.
async fn deny_races_approve(system: &System, round: usize, faults: &[(&str, &str, u16, u32)]) {
    more_peers(system).await;
    let id = ask(system, &[BOB, CAROL]).await;
    for (api, method, status, count) in faults {
        system.backend.inject(api, method, *status, *count).await;
    }
    let (approve, deny) = (format!("/api/requests/{id}/approve"), format!("/api/requests/{id}/deny"));
    let (approved, denied) = tokio::join!(
        system.post(BOB, system.approve, &approve, json!({})),
        system.post(CAROL, system.approve, &deny, json!({"reason": "not today"})),
    );
    let view = request_view(system, &id).await;
    let state = view["state"].as_str().unwrap_or_default().to_string();
    let bound = alice_bindings(&system.backend.policy("projects/project-1").await);
    match state.as_str() {
        "ACTIVE" => {
            assert_eq!(approved.status, 200, "round {round}: {approved:?}");
            assert_eq!((denied.status, denied.code()), (409, "wrong_state"), "round {round}: {denied:?}");
            assert_eq!(bound, 1, "round {round}: ACTIVE has its binding");
        }
        "DENIED" => {
            assert_eq!(denied.status, 200, "round {round}: {denied:?}");
            assert_eq!((approved.status, approved.code()), (409, "wrong_state"), "round {round}: {approved:?}");
            assert_eq!(bound, 0, "round {round}: DENIED granted nothing");
        }
        other => panic!("round {round}: ended {other}: {view}"),
    }
}

#[tokio::test]
async fn on_googles_firestore_emulator() {
    let Some(firestore) = GcloudEmulator::start("firestore").await else { return };
    let endpoint = format!("http://{}", firestore.host);
    adapter_contract("Google's Firestore emulator", &endpoint).await;

    let settings = [("FIRESTORE_ENDPOINT", endpoint.as_str()), ("APPROVAL_POLICY", TWO_APPROVALS)];
    three_approve_at_once(&System::start_with(&settings).await, &[]).await;
    let settings = [("FIRESTORE_ENDPOINT", endpoint.as_str())];
    for round in 0..3 {
        deny_races_approve(&System::start_with(&settings).await, round, &[]).await;
    }
}

#[tokio::test]
async fn on_our_firestore_with_injected_conflicts() {
    let system = System::start().await;
    adapter_contract("our emulator", &system.backend.emulator.url()).await;

    // Commits and policy writes lose races a few times before they win.
    let conflicts = [("firestore", "commit", 409, 4), ("resourcemanager", "setIamPolicy", 409, 2)];
    three_approve_at_once(&System::start_with(&[("APPROVAL_POLICY", TWO_APPROVALS)]).await, &conflicts).await;
    for round in 0..3 {
        deny_races_approve(&System::start().await, round, &conflicts).await;
    }
}

#[tokio::test]
async fn a_half_done_activation_is_completed_by_the_next_touch() {
    // The approval was recorded, then the process died before writing IAM.
    let system = System::start().await;
    let id = ask(&system, &[BOB]).await;
    let ledger = Ledger::new(reqwest::Client::new(), &system.backend.emulator.url(), DATABASE, 400).expect("ledger");
    ledger
        .modify::<GcpError>(&id, |current| {
            let mut next = current.clone();
            next.timeline.push(Entry::Approved {
                at: Timestamp::now().unix_seconds(),
                actor: email(BOB),
                reason: String::new(),
                end: None,
            });
            Ok(Some(next))
        })
        .await
        .expect("recorded");
    let stored = ledger.get(&id).await.expect("read").expect("found");
    assert_eq!(stored.record.state(Timestamp::now()), State::Activating);
    assert_eq!(alice_bindings(&system.backend.policy("projects/project-1").await), 0);
    // Alice opens her request: the view completes the activation.
    let view = request_view(&system, &id).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(alice_bindings(&system.backend.policy("projects/project-1").await), 1);
}

#[tokio::test]
async fn a_forged_ledger_document_grants_nothing() {
    // Someone with write access to Firestore lowers the quorum and adds a reviewer: the token,
    // verified on every read, disagrees, so nothing is decided on the document.
    let system = System::start_with(&[("APPROVAL_POLICY", TWO_APPROVALS)]).await;
    more_peers(&system).await;
    let id = ask(&system, &[BOB, CAROL]).await;
    let ledger = Ledger::new(reqwest::Client::new(), &system.backend.emulator.url(), DATABASE, 400).expect("ledger");
    for forge in [
        (|r: &mut Record| r.approvals_needed = 1) as fn(&mut Record),
        |r: &mut Record| r.reviewers.push(email(DAVE)),
        |r: &mut Record| r.end += 86_400,
        |r: &mut Record| r.token = None,
    ] {
        let stored = ledger.get(&id).await.expect("read").expect("found");
        let original = stored.record.clone();
        let mut forged = stored.record.clone();
        forge(&mut forged);
        let written = ledger.update(&forged, &stored.update_time).await.expect("forged");
        let reply = system.post(BOB, system.approve, &format!("/api/requests/{id}/approve"), json!({})).await;
        assert!(matches!(reply.status, 403), "a forged document is refused: {reply:?}");
        assert_eq!(alice_bindings(&system.backend.policy("projects/project-1").await), 0, "nothing granted");
        ledger.update(&original, &written.update_time).await.expect("restored");
    }
    let reply = system.post(BOB, system.approve, &format!("/api/requests/{id}/approve"), json!({})).await;
    assert_eq!((reply.status, reply.body["state"].as_str()), (200, Some("APPROVAL_AWAITED")), "{reply:?}");
}
