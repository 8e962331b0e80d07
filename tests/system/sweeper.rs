//! The sweeper job against the emulator: expired activations go, everything else stays,
//! including a hand-made time-bound binding; a dry run writes nothing.

use common::activation::{Activation, ActivationWindow, Approval};
use common::config::Env;
use common::entitlement::EntitlementId;
use common::gcp::iam::IamWriter;
use common::justification::JustificationPolicy;
use common::timestamp::Timestamp;

use crate::support::{SCOPE, backend, email};

fn activation(user: &str, id: &str, start: i64, end: i64) -> Activation {
    Activation {
        request: format!("jit-{}{}", user.split('@').next().unwrap_or("x"), start.rem_euclid(100_000)),
        beneficiary: email(user),
        entitlement: EntitlementId::parse(id).expect("id"),
        window: ActivationWindow::new(
            Timestamp::from_unix_seconds(start).expect("t"),
            Timestamp::from_unix_seconds(end).expect("t"),
        )
        .expect("window"),
        approval: Approval::SelfApproved,
        justification: JustificationPolicy::new(".*", "").expect("pattern").check("BUG-1").expect("valid"),
    }
}

fn config(backend: &crate::support::Backend, dry_run: bool) -> sweeper::Config {
    config_for(backend, SCOPE, dry_run)
}

fn config_for(backend: &crate::support::Backend, scopes: &str, dry_run: bool) -> sweeper::Config {
    let mut pairs = backend.emulator.environment();
    pairs.push(("RESOURCE_SCOPE", scopes.to_string()));
    pairs.push(("BASE_URL", "https://jit.example.com".to_string()));
    if dry_run {
        pairs.push(("SWEEP_DRY_RUN", "true".to_string()));
    }
    let mut env = Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = sweeper::Config::read(&mut env);
    env.finish().expect("valid");
    config
}

#[tokio::test]
async fn expired_activations_are_swept_and_nothing_else() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let now = Timestamp::now().unix_seconds();
    let expired = activation("carol@example.com", "project-1:roles/storage.admin", now - 10_000, now - 7_200);
    let recent = activation("alice@example.com", "project-2:roles/storage.objectViewer", now - 3_000, now - 600);
    let active = activation("bob@example.com", "project-1:roles/compute.admin", now - 60, now + 3_600);
    let on_folder = activation(
        "carol@example.com",
        "folders/200000000002:roles/resourcemanager.folderEditor",
        now - 10_000,
        now - 7_200,
    );
    let on_organization = activation(
        "alice@example.com",
        "organizations/100000000001:roles/iam.securityReviewer",
        now - 9_000,
        now - 7_000,
    );
    for activation in [&expired, &recent, &active, &on_folder, &on_organization] {
        crate::support::activate(&writer, activation, "test").await.expect("written");
    }
    let before_1 = backend.policy("projects/project-1").await;
    let before_2 = backend.policy("projects/project-2").await;

    let dry = sweeper::run(&config(&backend, true), Timestamp::now()).await.expect("runs");
    assert_eq!((dry.projects_seen, dry.containers_seen, dry.bindings_removed, dry.errors), (2, 3, 3, 0), "{dry}");
    assert_eq!(backend.policy("projects/project-1").await, before_1, "a dry run writes nothing");

    let summary = sweeper::run(&config(&backend, false), Timestamp::now()).await.expect("runs");
    assert_eq!(
        summary.to_string(),
        "sweep: projects seen 2, folders and organizations seen 3, bindings removed 3, conflicts retried 0, errors 0, open requests 0, completed 0, flagged 0, rewritten 0, closed 0, unowned bindings removed 1, break glass escalated 0"
    );
    for resource in ["folders/200000000002", "organizations/100000000001"] {
        let policy = backend.policy(resource).await;
        let left =
            policy.bindings.iter().filter(|b| b.condition.as_ref().is_some_and(|c| c.title == "JIT access activation"));
        assert_eq!(left.count(), 0, "{resource}: folder and organization policies are swept too");
    }
    let after_1 = backend.policy("projects/project-1").await;
    assert!(!after_1.bindings.contains(&expired.binding()));
    // Live, but owned by no request in the ledger: removed.
    assert!(!after_1.bindings.contains(&active.binding()), "no binding of ours belongs to no request");
    let hand_made =
        before_1.bindings.iter().find(|b| b.role == "roles/compute.viewer").expect("the hand-made time-bound binding");
    assert!(after_1.bindings.contains(hand_made), "a hand-made time-bound binding survives");
    assert_eq!(after_1.bindings.len(), before_1.bindings.len() - 2);
    assert_eq!(backend.policy("projects/project-2").await, before_2, "ended within the grace period: kept");
}

#[tokio::test]
async fn a_failing_project_is_counted_and_conflicts_are_retried() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let now = Timestamp::now().unix_seconds();
    crate::support::activate(
        &writer,
        &activation("carol@example.com", "project-1:roles/storage.admin", now - 10_000, now - 7_200),
        "t",
    )
    .await
    .expect("w");
    backend.inject("resourcemanager", "setIamPolicy", 409, 1).await;
    let summary = sweeper::run(&config(&backend, false), Timestamp::now()).await.expect("runs");
    assert_eq!((summary.bindings_removed, summary.conflicts_retried, summary.errors), (1, 1, 0), "{summary}");
    backend.inject("resourcemanager", "getIamPolicy", 403, 10).await;
    let summary = sweeper::run(&config(&backend, false), Timestamp::now()).await.expect("runs");
    assert_eq!(summary.errors, 2, "{summary}");
}

#[tokio::test]
async fn several_scopes_are_each_swept_and_nothing_outside_them() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let now = Timestamp::now().unix_seconds();
    let ids = [
        "folders/200000000002:roles/resourcemanager.folderEditor",
        "project-2:roles/storage.objectViewer",
        "project-1:roles/storage.admin",
        "organizations/100000000001:roles/iam.securityReviewer",
    ];
    for id in ids {
        crate::support::activate(&writer, &activation("carol@example.com", id, now - 10_000, now - 7_200), "t")
            .await
            .expect("written");
    }
    let config = config_for(&backend, "folders/200000000002,projects/project-2", false);
    let summary = sweeper::run(&config, Timestamp::now()).await.expect("runs");
    // The project search sees every project here (the emulator grants the job everything);
    // in Google the job sees only what its roles on the scopes show it.
    assert_eq!((summary.containers_seen, summary.errors), (1, 0), "{summary}");
    let expired_in = |policy: common::policy::Policy| {
        policy.bindings.iter().any(|b| b.condition.as_ref().is_some_and(|c| c.title == "JIT access activation"))
    };
    assert!(!expired_in(backend.policy("folders/200000000002").await), "the folder scope is swept");
    assert!(!expired_in(backend.policy("projects/project-2").await), "the project scope is swept");
    assert!(expired_in(backend.policy("organizations/100000000001").await), "the organization is no scope here");
}

/// Every open request is read, page by page; each resource's policy is read once in a run
/// where nothing needs mending; only a live grant whose binding is gone is flagged.
#[tokio::test]
async fn every_open_request_is_read_page_by_page_and_each_policy_once() {
    use serde_json::json;
    let system = crate::harness::System::start().await;
    // Three open requests per person and role at most: Alice asks three times, Dave twice.
    for (who, role, peer) in [
        (crate::support::ALICE, "compute.admin", crate::support::BOB),
        (crate::support::ALICE, "compute.admin", crate::support::BOB),
        (crate::support::ALICE, "compute.admin", crate::support::BOB),
        ("dave@example.com", "logging.admin", "erin@example.com"),
        ("dave@example.com", "logging.admin", "erin@example.com"),
    ] {
        let body =
            json!({"entitlementId": format!("project-1:roles/{role}"), "justification": "BUG-1", "peers": [peer]});
        let reply = system.post(who, system.request, "/api/projects/project-1/roles/request", body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let body = json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1"});
    let reply =
        system.post(crate::support::CAROL, system.request, "/api/projects/project-1/roles/self-activate", body).await;
    let granted = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let mut config = config(&system.backend, false);
    config.page_size = 2;
    let before = policy_reads(&system.backend).await;
    let summary = sweeper::run(&config, Timestamp::now()).await.expect("runs");
    assert_eq!(summary.requests_seen, 6, "three pages of two: {summary}");
    assert_eq!(summary.errors, 0, "{summary}");
    assert_eq!(
        policy_reads(&system.backend).await - before,
        (summary.projects_seen + summary.containers_seen) as u64,
        "one read per resource: {summary}"
    );
    assert_eq!(summary.requests_flagged, 0, "{summary}");

    // Carol's binding is removed by hand: flagged once, and only while her grant is live.
    let mut policy = system.backend.policy("projects/project-1").await;
    policy.bindings.retain(|b| !(b.role == "roles/storage.admin" && b.members == ["user:carol@example.com"]));
    let url = system.backend.url("/v3/projects/project-1:setIamPolicy");
    system.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
    let summary = sweeper::run(&config, Timestamp::now()).await.expect("runs");
    assert_eq!(summary.requests_flagged, 1, "{summary}");
    let summary = sweeper::run(&config, Timestamp::now()).await.expect("runs");
    assert_eq!(summary.requests_flagged, 0, "once: {summary}");
    let reply = system
        .post(crate::support::CAROL, system.request, &format!("/api/requests/{granted}/withdraw"), json!({}))
        .await;
    assert_eq!(reply.body["state"], "ENDED", "{reply:?}");
    let summary = sweeper::run(&config, Timestamp::now()).await.expect("runs");
    assert_eq!((summary.requests_flagged, summary.errors), (0, 0), "an ended grant is not flagged: {summary}");
}

async fn policy_reads(backend: &crate::support::Backend) -> u64 {
    backend.calls("resourcemanager.getIamPolicy").await
        + backend.calls("resourcemanager.folders.getIamPolicy").await
        + backend.calls("resourcemanager.organizations.getIamPolicy").await
}
