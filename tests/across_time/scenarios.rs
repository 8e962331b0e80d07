//! The security review's reproductions (`shared/reviews/2026-12-security.md`, findings 1 to
//! 9), each followed past its deadlines or through its race: what IAM holds is what the
//! ledger says, and revoke wins.

use std::time::Duration;

use serde_json::json;

use crate::deployment::*;

/// Finding 1: the approval deadline (the token's `exp`) bounds approving the original request
/// only. Long after it, the beneficiary still sees the grant, an extension is approved, and
/// an approver's and an administrator's revocations go through.
#[tokio::test]
async fn revoke_view_and_extension_work_long_after_the_approval_deadline() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let id = system.granted(180).await;
    let other = system.granted(180).await;
    advance_minutes(90);
    let view = system.get(ALICE, &format!("/api/requests/{id}")).await;
    assert_eq!((view.status, view.state()), (200, "ACTIVE"), "the beneficiary's view: {view:?}");
    let late = system.act(DAVE, &id, "approve", "").await;
    assert_eq!(late.code(), "wrong_state", "the original request's deadline still holds: {late:?}");

    let reply = system.post(ALICE, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 200})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let end = reply.body["pendingExtensionEndTime"].as_i64().expect("pending");
    for reviewer in [BOB, CAROL] {
        let reply = system
            .post(reviewer, &format!("/api/requests/{id}/approve-extension"), json!({"endTime": rfc3339(end)}))
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert_eq!(system.bindings_of("projects/project-1", &id).await[0].window.end().unix_seconds(), end, "extended");

    let reply = system.act(BOB, &id, "revoke", "incident over").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "{reply:?}");
    let reply = system.act(ADMIN, &other, "revoke", "access review").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "{reply:?}");
    for request in [&id, &other] {
        assert!(system.bindings_of("projects/project-1", request).await.is_empty(), "{request}: gone");
    }
}

/// Finding 2: a revocation (or an early end) whose IAM removal fails stays REVOKING, open,
/// until a repeated revoke, a reader or the sweeper removes the binding.
#[tokio::test]
async fn a_revocation_whose_removal_fails_is_finished_by_a_repeat_or_by_the_sweeper() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let fail_writes = json!({"api": "resourcemanager", "method": "setIamPolicy", "status": 503, "count": 10});

    let id = system.granted(60).await;
    system.inject(fail_writes.clone()).await;
    let reply = system.act(BOB, &id, "revoke", "incident over").await;
    assert_eq!(reply.status, 503, "{reply:?}");
    system.clear_faults().await;
    let view = system.get(ALICE, &format!("/api/requests/{id}")).await;
    assert_eq!(view.state(), "REVOKED", "the next reader finished it: {view:?}");
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty());

    let second = system.granted(60).await;
    system.inject(fail_writes.clone()).await;
    assert_eq!(system.act(BOB, &second, "revoke", "again").await.status, 503);
    system.clear_faults().await;
    let reply = system.act(BOB, &second, "revoke", "again").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "a repeated revoke finishes it: {reply:?}");
    assert!(system.bindings_of("projects/project-1", &second).await.is_empty());

    let ended = system.granted(60).await;
    system.inject(fail_writes).await;
    assert_eq!(system.act(ALICE, &ended, "withdraw", "done").await.status, 503);
    system.clear_faults().await;
    assert_eq!(
        system.record(&ended).await.expect("record").state(common::timestamp::Timestamp::now()).name(),
        "ENDING"
    );
    let summary = system.sweep().await;
    assert!(summary.requests_completed >= 1, "{summary}");
    assert_eq!(system.get(ALICE, &format!("/api/requests/{ended}")).await.state(), "ENDED");
    assert!(system.bindings_of("projects/project-1", &ended).await.is_empty());
}

/// Finding 3: an extension whose binding is being written while the grant is revoked: revoke
/// wins, and no binding is left with the extended end.
#[tokio::test]
async fn an_extension_racing_a_revocation_leaves_no_binding() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let id = system.granted(10).await;
    let reply = system.post(ALICE, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 60})).await;
    let end = reply.body["pendingExtensionEndTime"].as_i64().expect("pending");
    let path = format!("/api/requests/{id}/approve-extension");
    let approve = |who: &'static str| system.post(who, &path, json!({"endTime": rfc3339(end)}));
    assert_eq!(approve(BOB).await.status, 200);
    system.inject(json!({"api": "resourcemanager", "method": "setIamPolicy", "latencyMs": 1500, "count": 1})).await;
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        system.act(BOB, &id, "revoke", "incident over").await
    };
    let (extended, revoked) = tokio::join!(approve(CAROL), revoke);
    assert_eq!((revoked.status, revoked.state()), (200, "REVOKED"), "{revoked:?} after {extended:?}");
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty(), "revoke wins: {extended:?}");
    system.sweep().await;
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty());
    assert_eq!(system.get(ALICE, &format!("/api/requests/{id}")).await.state(), "REVOKED");
}

/// Finding 4: narrowing is taken only while the request awaits approval; once the quorum is
/// being written it is refused, so IAM and the ledger keep one window, and a revoke removes it.
#[tokio::test]
async fn narrowing_racing_the_quorum_never_widens_the_binding() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let id = system.ask(&[BOB, CAROL, DAVE], 60).await;
    assert_eq!(system.act(BOB, &id, "approve", "").await.status, 200);
    system.inject(json!({"api": "resourcemanager", "method": "setIamPolicy", "latencyMs": 1500, "count": 1})).await;
    let narrow = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = json!({"endTime": rfc3339(now() + 300)});
        system.post(DAVE, &format!("/api/requests/{id}/approve"), body).await
    };
    let (quorum, narrowed) = tokio::join!(system.act(CAROL, &id, "approve", ""), narrow);
    assert_eq!(quorum.state(), "ACTIVE", "{quorum:?}");
    assert_eq!(narrowed.code(), "too_late_to_narrow", "{narrowed:?}");
    let view = system.get(ALICE, &format!("/api/requests/{id}")).await;
    let bindings = system.bindings_of("projects/project-1", &id).await;
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].window.end().unix_seconds(), view.body["endTime"].as_i64().expect("end"), "one window");
    assert_eq!(system.act(BOB, &id, "revoke", "done").await.state(), "REVOKED");
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty(), "revoke removed it");
}

/// Finding 5: the original request's mailed link approves only the original request: clicked
/// again after an extension was asked, it approves nothing.
#[tokio::test]
async fn the_mailed_link_never_approves_a_later_extension() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let token = {
        let body =
            json!({"entitlementId": COMPUTE, "justification": "BUG-1", "peers": [BOB, CAROL], "activationTimeout": 10});
        system.post(ALICE, "/api/projects/project-1/roles/request", body).await;
        let messages: Vec<serde_json::Value> = system.backend.get_json("/_emulator/pubsub").await;
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .decode(messages.last().expect("published")["data"].as_str().expect("data"))
            .expect("base64");
        let event: serde_json::Value = serde_json::from_slice(&data).expect("json");
        let url = event["attributes"]["action_url"].as_str().expect("link").to_string();
        url.split("activation=").nth(1).expect("token").to_string()
    };
    let link = format!("/api/activation-request?activation={token}");
    for reviewer in [BOB, CAROL] {
        assert_eq!(system.call(reviewer, "POST", &link, None).await.status, 200);
    }
    let id =
        system.get(ALICE, "/api/requests?view=mine").await.body["requests"][0]["id"].as_str().expect("id").to_string();
    let before = system.bindings_of("projects/project-1", &id).await;
    assert_eq!(before.len(), 1, "granted by the link");
    let reply = system.post(ALICE, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 40})).await;
    assert!(reply.body["pendingExtensionEndTime"].is_i64(), "{reply:?}");
    for reviewer in [BOB, CAROL] {
        let again = system.call(reviewer, "POST", &link, None).await;
        assert_eq!(again.status, 200, "a repeat is harmless: {again:?}");
        assert!(again.body["message"].as_str().is_some_and(|m| m.contains("Nothing changed")), "{again:?}");
    }
    let view = system.get(ALICE, &format!("/api/requests/{id}")).await;
    assert!(view.body["pendingExtensionEndTime"].is_i64(), "still pending: {view:?}");
    assert_eq!(system.bindings_of("projects/project-1", &id).await, before, "the binding did not grow");
}

/// Finding 6: a self-approved extension checks eligibility as a new activation does.
#[tokio::test]
async fn a_self_approved_extension_needs_eligibility_as_a_new_activation_does() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let reply = system.self_activate(CAROL, STORAGE, 5, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.id();
    let before = system.bindings_of("projects/project-1", &id).await;
    system.remove_eligibility("roles/storage.admin", CAROL).await;
    let reply = system.post(CAROL, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 60})).await;
    assert_eq!((reply.status, reply.code()), (403, "beneficiary_not_eligible"), "{reply:?}");
    assert_eq!(system.bindings_of("projects/project-1", &id).await, before, "the binding did not grow");
    let fresh = system.self_activate(CAROL, STORAGE, 5, None).await;
    assert_eq!(fresh.code(), "not_eligible", "{fresh:?}");
}

/// Finding 7: a document written by anyone who can write the ledger grants nothing: a
/// self-activation naming a role its beneficiary is not eligible for, a peer-approval
/// record without its token, and approvals by people who were never asked.
#[tokio::test]
async fn a_forged_ledger_document_writes_no_binding_through_a_reader_or_the_sweeper() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let ledger = system.ledger();
    let at = now();
    let alice = crate::support::email(ALICE);
    let forged = common::lifecycle::Record {
        id: "jit-forgedByDbWriter1".into(),
        activation_type: common::condition::ActivationType::Jit,
        beneficiary: alice.clone(),
        reviewers: Vec::new(),
        entitlements: vec![STORAGE.into()],
        justification: "BUG-1".into(),
        start: at,
        end: at + 3600,
        request_expiry: at,
        approvals_needed: 0,
        approver_reason_required: false,
        break_glass: None,
        token: None,
        timeline: vec![common::lifecycle::Entry::Requested { at, actor: alice.clone() }],
    };
    ledger.create(&forged).await.expect("a document writer writes");
    let no_token = common::lifecycle::Record {
        id: "mpa-forgedByDbWriter2".into(),
        activation_type: common::condition::ActivationType::Mpa,
        reviewers: vec![crate::support::email(BOB)],
        entitlements: vec![COMPUTE.into()],
        approvals_needed: 1,
        timeline: vec![
            common::lifecycle::Entry::Requested { at, actor: alice.clone() },
            common::lifecycle::Entry::Approved {
                at,
                actor: crate::support::email(BOB),
                reason: String::new(),
                end: None,
            },
        ],
        ..forged.clone()
    };
    ledger.create(&no_token).await.expect("written");
    let view = system.get(ALICE, "/api/requests/jit-forgedByDbWriter1").await;
    assert_eq!(view.state(), "ACTIVATION_FAILED", "checked against the catalog: {view:?}");
    let view = system.get(ALICE, "/api/requests/mpa-forgedByDbWriter2").await;
    assert_eq!((view.status, view.code()), (403, "record_invalid"), "{view:?}");
    system.sweep().await;
    for id in ["jit-forgedByDbWriter1", "mpa-forgedByDbWriter2"] {
        assert!(system.bindings_of("projects/project-1", id).await.is_empty(), "{id} granted nothing");
    }

    // Approvals appended by people who were never asked count for nothing.
    let id = system.ask(&[BOB, CAROL], 60).await;
    let mut stored = ledger.get(&id).await.expect("read").expect("found");
    for outsider in ["eve@example.com", "mallory@example.com", ALICE] {
        let entry = common::lifecycle::Entry::Approved {
            at,
            actor: crate::support::email(outsider),
            reason: String::new(),
            end: None,
        };
        stored = ledger.append(&stored, entry).await.expect("appended");
    }
    assert_eq!(system.get(ALICE, &format!("/api/requests/{id}")).await.state(), "APPROVAL_AWAITED");
    system.sweep().await;
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty());
}

/// Finding 8: each grant owns its binding. A self-activation scheduled for tomorrow leaves
/// today's binding alone; one starting now supersedes today's, which ends saying so.
#[tokio::test]
async fn a_second_activation_of_an_entitlement_never_takes_the_live_binding() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let today = system.self_activate(CAROL, STORAGE, 60, None).await.id();
    let tomorrow = system.self_activate(CAROL, STORAGE, 60, Some(now() + 86_400)).await;
    assert_eq!(tomorrow.status, 200, "{tomorrow:?}");
    let tomorrow = tomorrow.id();
    assert_eq!(system.get(CAROL, &format!("/api/requests/{today}")).await.state(), "ACTIVE");
    assert_eq!(system.bindings_of("projects/project-1", &today).await.len(), 1, "today's binding stays");
    assert_eq!(system.bindings_of("projects/project-1", &tomorrow).await.len(), 1, "tomorrow's has its own");
    let summary = system.sweep().await;
    assert_eq!((summary.requests_flagged, summary.unowned_removed), (0, 0), "{summary}");

    let again = system.self_activate(CAROL, STORAGE, 30, None).await;
    assert_eq!(again.status, 200, "{again:?}");
    let again = again.id();
    let old = system.get(CAROL, &format!("/api/requests/{today}")).await;
    assert_eq!((old.state(), old.body["supersededBy"].as_str()), ("ENDED", Some(again.as_str())), "{old:?}");
    assert!(system.bindings_of("projects/project-1", &today).await.is_empty(), "replaced in one write");
    assert_eq!(system.bindings_of("projects/project-1", &again).await.len(), 1);
    assert_eq!(system.bindings_of("projects/project-1", &tomorrow).await.len(), 1, "tomorrow's still there");
    let third = system.self_activate(CAROL, STORAGE, 30, Some(now() + 2 * 86_400)).await;
    assert_eq!(third.status, 200, "{third:?}");
    let too_many = system.self_activate(CAROL, STORAGE, 30, Some(now() + 3 * 86_400)).await;
    assert_eq!((too_many.status, too_many.code()), (409, "too_many_open"), "{too_many:?}");
}

/// Finding 9: an organization policy refusing the member ends the request as
/// ACTIVATION_FAILED with Google's message, after one attempt, and nothing retries it.
#[tokio::test]
async fn an_organization_policy_refusal_ends_the_activation_at_once() {
    let _turn = exclusive().await;
    // Someone eligible from outside the allowed domains: an eligibility granted before the
    // organization policy was set, which Google keeps.
    let mut file = emulator::WorldFile::parse(emulator::DEFAULT_WORLD).expect("world");
    assert_eq!(file.organization.allowed_policy_member_domains, ["example.com"]);
    let project = file.projects.iter_mut().find(|p| p.id == "project-1").expect("project-1");
    project.bindings.push(serde_yaml_ng::from_str(
        "role: roles/storage.admin\nmembers: [\"user:partner@other.com\"]\ncondition: {title: Eligible, expression: \"has({}.jitAccessConstraint)\"}",
    ).expect("binding"));
    let backend = crate::support::backend_of(file, crate::support::SCOPE).await;
    let system = Deployment::start_on(backend, &[]).await;
    let reply = system.self_activate("partner@other.com", STORAGE, 30, None).await;
    assert_eq!((reply.status, reply.code()), (403, "activation_failed"), "{reply:?}");
    assert!(reply.body["error"]["message"].as_str().is_some_and(|m| m.contains("permitted customer")), "{reply:?}");
    assert_eq!(system.backend.calls("resourcemanager.setIamPolicy").await, 2, "one attempt (and the set-up's own)");
    let mine = system.get("partner@other.com", "/api/requests?view=mine").await;
    assert_eq!(mine.body["requests"][0]["state"], "ACTIVATION_FAILED", "{mine:?}");
    system.sweep().await;
    assert_eq!(system.backend.calls("resourcemanager.setIamPolicy").await, 2, "the sweeper does not retry it");
}

/// A reader completing an activation that Google failed to write, slowly (its eligibility
/// read takes a while), while the grant is revoked: the reader's write lands after the
/// revocation, so it undoes it at once, before any sweeper comes.
#[tokio::test]
async fn a_writer_that_lost_to_a_revocation_undoes_its_own_write() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let id = system.ask(&[BOB, CAROL], 60).await;
    assert_eq!(system.act(BOB, &id, "approve", "").await.status, 200);
    system.inject(json!({"api": "resourcemanager", "method": "setIamPolicy", "status": 503, "count": 3})).await;
    let quorum = system.act(CAROL, &id, "approve", "").await;
    assert_eq!(quorum.status, 503, "Google failed the write: {quorum:?}");
    assert_eq!(
        system.record(&id).await.expect("record").state(common::timestamp::Timestamp::now()).name(),
        "ACTIVATING"
    );
    system.clear_faults().await;
    system
        .inject(json!({"api": "asset", "method": "batchGetEffectiveIamPolicies", "latencyMs": 1500, "count": 1}))
        .await;
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        system.act(BOB, &id, "revoke", "not needed after all").await
    };
    let path = format!("/api/requests/{id}");
    let (view, revoked) = tokio::join!(system.get(ALICE, &path), revoke);
    assert_eq!(revoked.state(), "REVOKED", "{revoked:?}");
    assert_eq!(view.state(), "REVOKED", "the reader saw what it wrote lose: {view:?}");
    assert!(system.bindings_of("projects/project-1", &id).await.is_empty(), "undone before any sweep");
}

/// Break glass, past its review deadline: granted at once, unreviewed by the deadline, the
/// sweeper escalates it once (event `BreakGlassUnreviewed`, mail to the administrators), and
/// the grant's own end is unaffected by the pending review.
#[tokio::test]
async fn unratified_emergency_access_is_escalated_at_its_deadline() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    let id = system.break_glass(30).await;
    assert_eq!(system.bindings_of("projects/project-1", &id).await.len(), 1, "granted at once");
    let view = system.get(BOB, &format!("/api/requests/{id}")).await;
    assert_eq!(view.body["breakGlass"]["review"], "PENDING", "{view:?}");
    assert!(view.body["actions"].as_array().expect("actions").contains(&json!("ratify")), "{view:?}");
    let reply = system.post(BOB, &format!("/api/requests/{id}/ratify"), json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // Before the deadline the sweeper leaves it be, and keeps it open.
    advance_minutes(19);
    assert_eq!(system.sweep().await.break_glass_escalated, 0);
    // Past it, with Pub/Sub failing: not escalated, since nobody could be told; left open
    // for the next sweep.
    advance_minutes(2);
    system.inject(json!({"api": "pubsub", "status": 503, "count": 100})).await;
    assert_eq!(system.sweep().await.break_glass_escalated, 0);
    assert!(!system.record(&id).await.expect("record").escalated(), "never closed with nobody told");
    system.clear_faults().await;
    // Then escalated once, however often the sweeper comes.
    assert_eq!(system.sweep().await.break_glass_escalated, 1);
    assert_eq!(system.sweep().await.break_glass_escalated, 0, "once");
    let record = system.record(&id).await.expect("record");
    assert!(record.escalated() && record.state(common::timestamp::Timestamp::now()).is_live(), "the grant runs on");
    let late = system.post(CAROL, &format!("/api/requests/{id}/ratify"), json!({})).await;
    assert_eq!((late.status, late.code()), (409, "review_closed"), "{late:?}");

    let events = system.events().await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["BreakGlassActivated", "RatificationRecorded", "BreakGlassUnreviewed"], "{events:#?}");
    let unreviewed = events.last().expect("escalation");
    assert_eq!(unreviewed["attributes"]["break_glass"]["review"], "UNREVIEWED");
    // The mailer's answer to it: the administrators, everyone else in copy.
    let style = mailer::compose::Style {
        time_zone: jiff::tz::TimeZone::UTC,
        thread_domain: "example.com".into(),
        self_approved: true,
        base_url: "https://jit.example.com".into(),
        administrators: vec![crate::support::email(ADMIN)],
    };
    let mail = mailer::compose::compose(unreviewed, &style).expect("mailed");
    assert_eq!(mail.to, vec![crate::support::email(ADMIN)]);
    assert!(mail.cc.contains(&crate::support::email(DAVE)) && mail.cc.contains(&crate::support::email(BOB)));
    assert!(mail.text.contains("was not ratified by its deadline"), "{}", mail.text);

    // The grant ends at its own end; then nothing is left open.
    advance_minutes(10);
    let summary = system.sweep().await;
    assert!(system.granting("projects/project-1", common::timestamp::Timestamp::now()).await.is_empty(), "{summary}");
    assert!(!system.record(&id).await.expect("record").is_open(common::timestamp::Timestamp::now()));
}

/// A self-activation refused for a reason other than eligibility (here Cloud Asset failing)
/// whose record cannot be deleted afterwards (Firestore failing once) is closed as failed:
/// the sweeper, which finds the person eligible again, never grants what was refused.
#[tokio::test]
async fn a_refused_self_activation_whose_record_stays_is_never_granted_later() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    system.inject(json!({"api": "asset", "status": 503, "latencyMs": 2000, "count": 20})).await;
    let refuse_the_delete = async {
        // The record is created at once, side by side with the slow catalog read.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        system.inject(json!({"api": "firestore", "method": "commit", "status": 503, "count": 1})).await;
    };
    let (reply, ()) = tokio::join!(system.self_activate(CAROL, STORAGE, 5, None), refuse_the_delete);
    assert_eq!(reply.status, 503, "{reply:?}");
    system.clear_faults().await;
    system.sweep().await;
    let granting = system.granting("projects/project-1", common::timestamp::Timestamp::now()).await;
    assert!(granting.iter().all(|b| b.member.as_str() != CAROL), "nothing granted: {granting:?}");
}

/// A self-activation stopped after its binding was written and before `ACTIVATED` was
/// recorded; the person then loses eligibility. The sweeper's check refuses the grant and
/// records `ACTIVATION_FAILED`, and in the same run removes the binding the stopped attempt
/// wrote: the ledger never says "not granted" while IAM grants.
#[tokio::test]
async fn a_grant_failed_on_its_check_removes_what_a_stopped_attempt_wrote() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    // The record's creation and its ACTIVATED outcome each take 3 s; the handler is stopped
    // after 4.5 s, once the binding is written, while the outcome is being recorded.
    system.inject(json!({"api": "firestore", "method": "commit", "latencyMs": 3000, "count": 2})).await;
    let body = json!({"entitlementIds": [STORAGE], "justification": "BUG-1", "activationTimeout": 30});
    let path = "/api/projects/project-1/roles/self-activate";
    let stopped = system.call_within(CAROL, "POST", path, Some(body), Duration::from_millis(4500)).await;
    assert!(stopped.is_none(), "stopped part-way: {stopped:?}");
    system.clear_faults().await;
    let carols = || async {
        let now = common::timestamp::Timestamp::now();
        system.granting("projects/project-1", now).await.into_iter().filter(|b| b.member.as_str() == CAROL).count()
    };
    assert_eq!(carols().await, 1, "the stopped attempt wrote the binding");
    system.remove_eligibility("roles/storage.admin", CAROL).await;
    system.sweep().await;
    assert_eq!(carols().await, 0, "the failed grant holds nothing after one sweep");
}

/// Break glass while Pub/Sub fails: the grant stands (it is an emergency), and the person who
/// broke the glass is told plainly that nobody was told, and to tell them.
#[tokio::test]
async fn break_glass_whose_reviewers_cannot_be_told_says_so_to_the_person() {
    let _turn = exclusive().await;
    let system = Deployment::start(&[]).await;
    system.inject(json!({"api": "pubsub", "status": 503, "count": 100})).await;
    let body = json!({"entitlementId": COMPUTE, "justification": "INC-7 outage", "activationTimeout": 10});
    let reply = system.post(DAVE, "/api/projects/project-1/roles/break-glass", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("tell them yourself now"), "{reply:?}");
}
