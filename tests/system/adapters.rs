//! The Google Cloud adapters, driven through the official SDK clients against the emulator.

use common::activation::{Activation, ActivationWindow, Approval};
use common::condition::ActivationType;
use common::entitlement::{Entitlement, EntitlementId};
use common::gcp::GcpError;
use common::gcp::catalog::{AssetInventoryCatalog, PolicyAnalyzerCatalog};
use common::gcp::events::{Event, EventPublisher, PubSubPublisher};
use common::gcp::iam::IamWriter;
use common::gcp::jwks::{JwksCache, Unverified};
use common::gcp::signer::IamCredentialsSigner;
use common::http::ApiError;
use common::iap::VerifiedAssertions;
use common::justification::JustificationPolicy;
use common::keys::LocalKey;
use common::timestamp::Timestamp;
use common::token::{ActivationRequest, TokenError, TokenSigner};

use crate::support::{ALICE, BOB, CAROL, activate, backend, backend_with, email, on_project, project};

fn entitlement(id: &str, activation_type: ActivationType) -> Entitlement {
    Entitlement { id: EntitlementId::parse(id).expect("valid id"), activation_type }
}

fn activation(user: &str, id: &str, start: i64, minutes: i64) -> Activation {
    let start = Timestamp::from_unix_seconds(start).expect("in range");
    Activation {
        request: format!("jit-{}", user.split('@').next().unwrap_or("x")),
        beneficiary: email(user),
        entitlement: EntitlementId::parse(id).expect("valid id"),
        window: ActivationWindow::new(start, start.plus_seconds(minutes * 60)).expect("window"),
        approval: Approval::SelfApproved,
        justification: JustificationPolicy::new(".*", "").expect("pattern").check("BUG-12345").expect("valid"),
    }
}

#[tokio::test]
async fn catalog_lists_a_users_entitlements() {
    let backend = backend().await;
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let alice = catalog.user_entitlements(&email(ALICE), &on_project("project-1")).await.expect("analysis");
    assert_eq!(alice.entitlements, vec![entitlement("project-1:roles/compute.admin", ActivationType::Mpa)]);
    assert!(alice.activations.is_empty());
    let carol = catalog.user_entitlements(&email(CAROL), &on_project("project-1")).await.expect("analysis");
    assert_eq!(carol.entitlements, vec![entitlement("project-1:roles/storage.admin", ActivationType::Jit)]);
    let on_project_2 = catalog.user_entitlements(&email(ALICE), &on_project("project-2")).await.expect("analysis");
    assert_eq!(on_project_2.entitlements.len(), 1);
    let condition = on_project_2.entitlements[0].id.resource_condition().expect("has a resource condition");
    assert_eq!(condition.as_str(), "resource.name.startsWith(\"projects/_/buckets/logs-\")");
}

/// `RESOURCE_SCOPE` with two scopes: the sandbox folder, then the production folder.
#[tokio::test]
async fn several_scopes_list_and_read_within_each_and_refuse_what_is_outside_them() {
    let backend = backend_with(emulator::DEFAULT_WORLD, "folders/200000000002, folders/200000000001").await;
    // As request-approval builds it: every read of a policy is a call, so the calls show
    // which scopes were asked.
    let catalog = AssetInventoryCatalog::new(&backend.settings, &backend.scope.fresh()).await.expect("client");
    let batch_gets = || backend.calls("asset.batchGetEffectiveIamPolicies");

    // A project nobody has listed yet: the sandbox answers "not here", production holds it.
    let found = catalog.user_entitlements(&email(BOB), &on_project("project-1")).await.expect("in production");
    assert!(found.entitlements.iter().any(|e| e.id.role().as_str() == "roles/compute.admin"));
    assert_eq!(batch_gets().await, 2);

    // Listing finds places in both scopes and remembers which holds which.
    let places = catalog.resources(&email(ALICE)).await.expect("listed");
    let names: Vec<String> = places.iter().map(|r| r.resource_name()).collect();
    assert_eq!(names, ["projects/project-1", "folders/200000000002"]);
    catalog.user_entitlements(&email(ALICE), &on_project("project-1")).await.expect("in production");
    assert_eq!(batch_gets().await, 3, "the remembered scope is asked first");

    // project-2 sits under the organization, outside both scopes: refused, not guessed.
    let outside = catalog.user_entitlements(&email(ALICE), &on_project("project-2")).await;
    assert!(matches!(outside, Err(GcpError::InvalidArgument(_))), "{outside:?}");
}

#[tokio::test]
async fn catalog_sees_activations_with_their_window() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let now = Timestamp::now().unix_seconds();
    activate(&writer, &activation(CAROL, "project-1:roles/storage.admin", now - 60, 30), "test")
        .await
        .expect("written");
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let carol = catalog.user_entitlements(&email(CAROL), &on_project("project-1")).await.expect("analysis");
    assert_eq!(carol.activations.len(), 1, "{carol:?}");
    assert_eq!(carol.activations[0].role.as_str(), "roles/storage.admin");
    assert_eq!(carol.activations[0].window.end().unix_seconds(), now - 60 + 1800);
}

#[tokio::test]
async fn catalog_lists_peers_through_nested_groups() {
    let backend = backend().await;
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let admins = catalog
        .reviewers(&entitlement("project-1:roles/compute.admin", ActivationType::Mpa))
        .await
        .expect("analysis")
        .peers;
    assert_eq!(admins, vec![email(ALICE), email(BOB)]);
    let on_call = catalog
        .reviewers(&entitlement("project-1:roles/logging.admin", ActivationType::Mpa))
        .await
        .expect("analysis")
        .peers;
    assert_eq!(on_call, vec![email("dave@example.com"), email("erin@example.com")]);
    // Holding the role some other way does not make one a peer.
    let jit = catalog
        .reviewers(&entitlement("project-1:roles/compute.admin", ActivationType::Jit))
        .await
        .expect("analysis")
        .peers;
    assert!(jit.is_empty(), "{jit:?}");
}

#[tokio::test]
async fn catalog_lists_projects_a_user_is_eligible_on() {
    let backend = backend().await;
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let projects = |user: &'static str| {
        let catalog = catalog.clone();
        async move { catalog.projects(&email(user)).await.expect("analysis") }
    };
    assert_eq!(projects(ALICE).await, vec![project("project-1"), project("project-2")]);
    assert_eq!(projects(CAROL).await, vec![project("project-1")]);
    assert_eq!(projects("erin@example.com").await, vec![project("project-1")]);
    assert!(projects("nobody@example.com").await.is_empty());
}

#[tokio::test]
async fn available_projects_query_searches_resource_manager() {
    let backend = backend().await;
    let mut scope = backend.scope.clone();
    scope.available_projects_query = Some("state:ACTIVE".into());
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &scope).await.expect("client");
    let projects = catalog.projects(&email("nobody@example.com")).await.expect("search");
    assert_eq!(projects, vec![project("project-1"), project("project-2")]);
    assert_eq!(backend.calls("resourcemanager.searchProjects").await, 1);
    assert_eq!(backend.calls("asset.analyzeIamPolicy").await, 0);
}

#[tokio::test]
async fn asset_429_surfaces_as_a_quota_error() {
    let backend = backend().await;
    backend.inject("asset", "analyzeIamPolicy", 429, 10).await;
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let error = catalog.user_entitlements(&email(ALICE), &on_project("project-1")).await.expect_err("quota");
    assert!(matches!(error, GcpError::AnalysisQuota(_)), "{error:?}");
    let error = ApiError::from(error);
    assert_eq!((error.status().as_u16(), error.code()), (429, "analysis_quota_exhausted"));
}

#[tokio::test]
async fn writer_adds_the_binding_keeps_the_rest_and_gives_a_reason() {
    let backend = backend().await;
    let before = backend.policy("projects/project-1").await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let new = activation(ALICE, "project-1:roles/compute.admin", 1_900_000_000, 60);
    let outcome =
        activate(&writer, &new, "Approved by bob@example.com, justification: BUG-12345").await.expect("written");
    assert!(outcome, "written");
    let after = backend.policy("projects/project-1").await;
    assert_eq!(after.bindings[..before.bindings.len()], before.bindings[..], "other bindings unchanged");
    assert_eq!(after.bindings.last(), Some(&new.binding()));
    assert_ne!(after.etag, before.etag);
    let audit: serde_json::Value = backend.get_json("/_emulator/audit").await;
    assert_eq!(audit[0]["reason"], "Approved by bob@example.com, justification: BUG-12345");
}

#[tokio::test]
async fn etag_conflicts_are_retried_and_win() {
    let backend = backend().await;
    // Google answers a stale etag with 409 ABORTED. (An injected 412 carries
    // FAILED_PRECONDITION, which is a final refusal since GcpError::FailedPrecondition.)
    backend.inject("resourcemanager", "setIamPolicy", 409, 2).await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let new = activation(ALICE, "project-1:roles/compute.admin", 1_900_000_000, 60);
    let outcome = activate(&writer, &new, "test").await.expect("written after retries");
    assert!(outcome, "written");
    assert_eq!(backend.calls("resourcemanager.getIamPolicy").await, 3, "each attempt re-reads");
    assert!(backend.policy("projects/project-1").await.bindings.contains(&new.binding()));
}

#[tokio::test]
async fn persistent_conflict_is_a_clear_error_and_writes_nothing() {
    let backend = backend().await;
    let before = backend.policy("projects/project-1").await;
    backend.inject("resourcemanager", "setIamPolicy", 409, 100).await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let new = activation(ALICE, "project-1:roles/compute.admin", 1_900_000_000, 60);
    let error = activate(&writer, &new, "test").await.expect_err("conflict");
    assert!(matches!(error, GcpError::Conflict(_)), "{error:?}");
    assert_eq!(backend.calls("resourcemanager.setIamPolicy").await, 4, "bounded attempts");
    assert_eq!(ApiError::from(error).status().as_u16(), 409);
    assert_eq!(backend.policy("projects/project-1").await, before);
}

#[tokio::test]
async fn repeating_an_activation_writes_nothing_new() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let new = activation(ALICE, "project-1:roles/compute.admin", 1_900_000_000, 60);
    activate(&writer, &new, "first").await.expect("written");
    assert!(!activate(&writer, &new, "again").await.expect("no error"), "nothing to write");
    assert_eq!(backend.calls("resourcemanager.setIamPolicy").await, 1);
}

#[tokio::test]
async fn resource_manager_503_surfaces_as_unavailable() {
    let backend = backend().await;
    backend.inject("resourcemanager", "getIamPolicy", 503, 100).await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let new = activation(ALICE, "project-1:roles/compute.admin", 1_900_000_000, 60);
    let error = activate(&writer, &new, "test").await.expect_err("unavailable");
    assert!(matches!(error, GcpError::Unavailable(_)), "{error:?}");
    assert_eq!(ApiError::from(error).status().as_u16(), 503);
}

fn request() -> ActivationRequest {
    let now = Timestamp::now();
    ActivationRequest {
        id: ActivationRequest::new_id([1; 12]),
        beneficiary: email(ALICE),
        reviewers: vec![email(BOB)],
        entitlement: EntitlementId::parse("project-1:roles/compute.admin").expect("id"),
        justification: "BUG-12345".into(),
        window: ActivationWindow::new(now, now.plus_seconds(3600)).expect("window"),
        expires: now.plus_seconds(3600),
        approvals_needed: 1,
        approver_reason_required: false,
        review_deadline: None,
    }
}

#[tokio::test]
async fn sign_jwt_tokens_verify_through_the_jwks_path() {
    let backend = backend().await;
    let account = backend.emulator.state.world().service_account.clone();
    let signer = IamCredentialsSigner::new(&backend.settings, &account).await.expect("client");
    // One request, so the comparison cannot straddle a second boundary.
    let request = request();
    let claims = request.claims(signer.issuer(), Timestamp::now());
    let token = signer.sign(&claims).await.expect("signed");
    let keys = JwksCache::service_account(reqwest::Client::new(), &backend.settings, &account);
    let verified = keys.verify_token(&token, &account, Timestamp::now()).await.expect("keys fetched, valid");
    assert_eq!(verified, request);
}

#[tokio::test]
async fn sign_jwt_for_another_account_is_denied_and_503_is_retryable() {
    let backend = backend().await;
    let other = IamCredentialsSigner::new(&backend.settings, "other@jit-project.iam.gserviceaccount.com")
        .await
        .expect("client");
    let claims = request().claims(other.issuer(), Timestamp::now());
    let error = other.sign(&claims).await.expect_err("denied");
    assert!(!error.retryable, "{error:?}");
    let account = backend.emulator.state.world().service_account.clone();
    let signer = IamCredentialsSigner::new(&backend.settings, &account).await.expect("client");
    backend.inject("iamcredentials", "signJwt", 503, 100).await;
    let error = signer.sign(&claims).await.expect_err("unavailable");
    assert!(error.retryable, "{error:?}");
}

#[tokio::test]
async fn an_unknown_kid_triggers_exactly_one_refresh() {
    let backend = backend().await;
    let account = backend.emulator.state.world().service_account.clone();
    let keys = JwksCache::service_account(reqwest::Client::new(), &backend.settings, &account);
    keys.keys().await.expect("fetched");
    keys.keys().await.expect("cached");
    assert_eq!(backend.calls("jwks.serviceAccount").await, 1, "cached after the first fetch");

    let stranger = LocalKey::generate_rs256("rotated-or-forged").expect("key");
    let claims = serde_json::to_value(request().claims(&account, Timestamp::now())).expect("json");
    let forged = stranger.sign_json(&claims).expect("signed");
    for _ in 0..5 {
        let result = keys.verify_token(&forged, &account, Timestamp::now()).await;
        assert!(
            matches!(result, Err(Unverified::Refused(TokenError::Jwt(common::jwt::JwtError::UnknownKeyId(_))))),
            "keys available, the token refused: {result:?}"
        );
    }
    assert_eq!(backend.calls("jwks.serviceAccount").await, 2, "one refresh, no storm");
}

#[tokio::test]
async fn iap_assertions_minted_by_the_emulator_verify() {
    let backend = backend().await;
    let audience = "/projects/300000000009/global/backendServices/42";
    let minted = backend
        .post_json("/_emulator/iap/assertion", &serde_json::json!({"email": "Bob@Example.com", "audience": audience}))
        .await;
    let keys = JwksCache::iap(reqwest::Client::new(), &backend.settings);
    let assertion = minted["assertion"].as_str().expect("assertion");
    let seen = VerifiedAssertions::new(16);
    let identity = keys.verify_iap(&seen, assertion, audience, Timestamp::now()).await.expect("keys, valid");
    assert_eq!(identity.email, email(BOB));
    let wrong = keys.verify_iap(&seen, assertion, "/projects/1/global/backendServices/2", Timestamp::now()).await;
    assert!(matches!(wrong, Err(Unverified::Refused(_))), "keys available, the audience refused: {wrong:?}");
}

#[tokio::test]
async fn events_are_published_with_the_official_grpc_publisher() {
    let backend = backend().await;
    let publisher =
        PubSubPublisher::new(&backend.settings, "projects/jit-project/topics/jit-events").await.expect("client");
    let event = Event {
        data: serde_json::json!({"type": "RequestActivation", "beneficiary": ALICE}),
        attributes: [("type".to_string(), "RequestActivation".to_string())].into(),
    };
    let id = publisher.publish(&event).await.expect("published");
    assert!(!id.is_empty());
    let messages: Vec<serde_json::Value> = backend.get_json("/_emulator/pubsub").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["attributes"]["type"], "RequestActivation");
    assert_eq!(messages[0]["topic"], "projects/jit-project/topics/jit-events");
    use base64::Engine as _;
    let data =
        base64::engine::general_purpose::STANDARD.decode(messages[0]["data"].as_str().expect("data")).expect("base64");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&data).expect("json"), event.data);
}

#[tokio::test]
async fn publishing_while_pubsub_is_down_fails_honestly() {
    let backend = backend().await;
    backend.inject("pubsub", "publish", 503, 100).await;
    let publisher =
        PubSubPublisher::new(&backend.settings, "projects/jit-project/topics/jit-events").await.expect("client");
    let event = Event { data: serde_json::json!({}), attributes: Default::default() };
    let error = publisher.publish(&event).await.expect_err("down");
    assert!(matches!(error, GcpError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn sign_jwt_exp_stays_inside_googles_12_hour_limit() {
    let backend = backend().await;
    let account = backend.emulator.state.world().service_account.clone();
    let signer = IamCredentialsSigner::new(&backend.settings, &account).await.expect("client");
    let now = Timestamp::now();
    // A request expiring just past 12 hours, as a 720-minute timeout on a clock ahead of
    // Google's gives.
    let request = ActivationRequest { expires: now.plus_seconds(12 * 3600 + 60), ..request() };
    let token = signer.sign(&request.claims(signer.issuer(), now)).await.expect("signed, not refused");
    use base64::Engine as _;
    let claims = token.split('.').nth(1).expect("claims");
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).expect("base64"))
            .expect("json");
    let exp = claims["exp"].as_i64().expect("exp");
    let limit = now.unix_seconds() + common::gcp::signer::MAX_EXP_SECONDS - common::gcp::signer::EXP_MARGIN_SECONDS;
    assert!(exp <= limit + 1, "exp {exp} stays a margin inside 12 hours ({limit})");
}

#[tokio::test]
async fn a_domain_restricted_sharing_refusal_is_final_not_an_etag_race() {
    let backend = backend().await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let outsider = activation("mallory@other.com", "project-1:roles/compute.admin", 1_900_000_000, 60);
    let error = activate(&writer, &outsider, "test").await.expect_err("refused by the organization policy");
    assert!(matches!(&error, GcpError::FailedPrecondition(d) if d.contains("permitted customer")), "{error:?}");
    assert_eq!(backend.calls("resourcemanager.setIamPolicy").await, 1, "a refusal a retry cannot change");
}

#[tokio::test]
async fn the_sweeper_walks_only_active_folders() {
    let world = "organization:\n  id: \"1\"\nfolders:\n  - id: \"2\"\n  - id: \"3\"\n    state: DELETE_REQUESTED\n  - id: \"4\"\n    parent: folders/2\n";
    let backend = backend_with(world, "organizations/1").await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let containers = writer.containers_under(&["organizations/1".to_string()]).await.expect("listed");
    let names: Vec<String> = containers.iter().map(|c| c.resource_name()).collect();
    assert_eq!(names, ["folders/2", "folders/4", "organizations/1"], "not the deleted folders/3");
}

/// Alice's eligibility on `ended` stopped in 2001; on `current` it runs.
const ENDED_ELIGIBILITY: &str = r#"
organization:
  id: "1"
projects:
  - id: ended
    bindings:
      - role: roles/compute.admin
        members: [user:alice@example.com]
        condition:
          title: Eligible until 2001
          expression: has({}.jitAccessConstraint) && request.time < timestamp("2001-01-01T00:00:00Z")
  - id: current
    bindings:
      - role: roles/compute.admin
        members: [user:alice@example.com]
        condition:
          title: Eligible
          expression: has({}.jitAccessConstraint)
"#;

#[tokio::test]
async fn the_project_listing_asks_for_projects_get_at_an_access_time() {
    let backend = backend_with(ENDED_ELIGIBILITY, "organizations/1").await;
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    assert_eq!(catalog.projects(&email(ALICE)).await.expect("analysis"), vec![project("current")]);
    let ended = catalog.user_entitlements(&email(ALICE), &on_project("ended")).await.expect("analysis");
    assert!(ended.entitlements.is_empty(), "an eligibility that ended is not one: {ended:?}");
    let queries: Vec<serde_json::Value> = backend.get_json("/_emulator/analysis").await;
    let listing = &queries[0]["analysisQuery"];
    assert_eq!(
        listing["accessSelector"]["permissions"],
        serde_json::json!(["resourcemanager.projects.get"]),
        "{listing}"
    );
    assert!(queries.iter().all(|q| q["analysisQuery"]["conditionContext"]["accessTime"].is_string()), "{queries:?}");
}

#[tokio::test]
async fn policy_analyzer_answers_partially_before_the_call_times_out() {
    let mut backend = backend().await;
    backend.settings.read_timeout = std::time::Duration::from_secs(2);
    // Each analysis takes 4 s: longer than the call may wait.
    let slow = serde_json::json!({"api": "asset", "method": "analyzeIamPolicy", "latencyMs": 4000, "count": 3});
    let response = backend.http.post(backend.url("/_emulator/faults")).json(&slow).send().await.expect("answers");
    assert_eq!(response.status(), 204);
    let catalog = PolicyAnalyzerCatalog::new(&backend.settings, &backend.scope).await.expect("client");
    let partial =
        catalog.user_entitlements(&email(ALICE), &on_project("project-1")).await.expect("partial, not a timeout");
    assert!(!partial.warnings.is_empty(), "partial results say so: {partial:?}");
    assert_eq!(backend.calls("asset.analyzeIamPolicy").await, 1, "no retry spends another query of the day");
    let queries: Vec<serde_json::Value> = backend.get_json("/_emulator/analysis").await;
    assert_eq!(queries[0]["executionTimeout"], "1s", "{queries:?}");
}
