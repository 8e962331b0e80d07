//! Benchmarks of the hot pure code: conditions, eligibility over a policy at IAM's maximum
//! size, the policy update, token signing and verification, IAP verification with cached keys.
//! `cargo bench -p domain`; `cargo test` runs each once as a smoke test.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use domain::activation::{Activation, ActivationWindow, Approval};
use domain::condition::{eligibility, split_and};
use domain::email::Email;
use domain::entitlement::{EntitlementId, ProjectId, ResourceId, eligible_entitlements};
use domain::iap::{VerifiedAssertions, assertion_claims, verify_iap_assertion};
use domain::justification::JustificationPolicy;
use domain::keys::LocalKey;
use domain::policy::{Binding, Expr, GrantKey, Policy, set_grant};
use domain::timestamp::Timestamp;
use domain::token::{ActivationRequest, verify_activation_token};

const SERVICE_ACCOUNT: &str = "jit@p.iam.gserviceaccount.com";

/// A policy at IAM's limit: 1,500 principals, spread over bindings of 10 members, a third of
/// them eligible, a third time-bound activations.
fn big_policy() -> Policy {
    let bindings = (0..150)
        .map(|i| {
            let expression = match i % 3 {
                0 => "has({}.multiPartyApprovalConstraint) && resource.name.startsWith('projects/_/buckets/b')".to_string(),
                1 => "(request.time >= timestamp(\"2026-01-01T00:00:00Z\") && request.time < timestamp(\"2026-01-01T01:00:00Z\"))".to_string(),
                _ => String::new(),
            };
            Binding {
                role: format!("roles/role{}.admin", i % 40),
                members: (0..10).map(|m| format!("user:u{}@example.com", i * 10 + m)).collect(),
                condition: (!expression.is_empty()).then(|| Expr { expression, title: "JIT access activation".into(), ..Expr::default() }),
            }
        })
        .collect();
    Policy { version: 3, bindings, audit_configs: Vec::new(), etag: "BwYAAAAAAAE=".into() }
}

fn conditions(c: &mut Criterion) {
    let expression = "// eligible\nhas({}.multiPartyApprovalConstraint) && resource.name.startsWith(\"projects/_/buckets/logs-\") && (resource.type == 'storage.googleapis.com/Bucket' || resource.type == 'storage.googleapis.com/Object')";
    c.bench_function("condition: split_and", |b| b.iter(|| split_and(black_box(expression))));
    c.bench_function("condition: eligibility", |b| b.iter(|| eligibility(black_box(expression))));
}

fn eligibility_at_iam_limit(c: &mut Criterion) {
    let policy = big_policy();
    let project = ResourceId::Project(ProjectId::parse("project-1").expect("project"));
    c.bench_function("eligibility: 1,500-principal policy", |b| {
        b.iter(|| eligible_entitlements(black_box(&project), black_box(&policy.bindings)))
    });
}

fn policy_update(c: &mut Criterion) {
    let policy = big_policy();
    let start = Timestamp::from_unix_seconds(1_800_000_000).expect("in range");
    let activation = Activation {
        request: "jit-bench".into(),
        beneficiary: Email::parse("u42@example.com").expect("email"),
        entitlement: EntitlementId::parse("project-1:roles/role2.admin").expect("id"),
        window: ActivationWindow::new(start, start.plus_seconds(3600)).expect("window"),
        approval: Approval::SelfApproved,
        justification: JustificationPolicy::new(".*", "").expect("pattern").check("BUG-1").expect("valid"),
    };
    let key = GrantKey { request: "jit-bench".into(), legacy: Vec::new() };
    let binding = [activation.binding()];
    c.bench_function("policy: set_grant on a 1,500-principal policy", |b| {
        b.iter(|| set_grant(black_box(&policy), black_box(&key), black_box(&binding), &[]))
    });
}

fn tokens(c: &mut Criterion) {
    let key = LocalKey::generate_rs256("k1").expect("key");
    let keys = key.jwks();
    let now = Timestamp::from_unix_seconds(1_800_000_000).expect("in range");
    let request = ActivationRequest {
        id: ActivationRequest::new_id([1; 12]),
        beneficiary: Email::parse("alice@example.com").expect("email"),
        reviewers: vec![Email::parse("bob@example.com").expect("email")],
        entitlement: EntitlementId::parse("project-1:roles/compute.admin").expect("id"),
        justification: "BUG-12345".into(),
        window: ActivationWindow::new(now, now.plus_seconds(3600)).expect("window"),
        expires: now.plus_seconds(3600),
        approvals_needed: 1,
        approver_reason_required: false,
        review_deadline: None,
    };
    let claims = serde_json::to_value(request.claims(SERVICE_ACCOUNT, now)).expect("json");
    let token = key.sign_json(&claims).expect("signed");
    c.bench_function("token: sign (local RS256 key)", |b| b.iter(|| key.sign_json(black_box(&claims))));
    c.bench_function("token: verify", |b| {
        b.iter(|| verify_activation_token(black_box(&token), &keys, SERVICE_ACCOUNT, now, 30))
    });

    let iap = LocalKey::generate_es256("iap-1").expect("key");
    let iap_keys = iap.jwks();
    let audience = "/projects/1/global/backendServices/2";
    let assertion =
        iap.sign_json(&assertion_claims("alice@example.com", "accounts.google.com:1", audience, now)).expect("signed");
    c.bench_function("iap: verify with cached keys", |b| {
        b.iter(|| verify_iap_assertion(black_box(&assertion), &iap_keys, audience, now, 30))
    });
    let seen = VerifiedAssertions::new(1024);
    c.bench_function("iap: verify an assertion seen before", |b| {
        b.iter(|| seen.verify(black_box(&assertion), &iap_keys, audience, now, 30))
    });
}

criterion_group!(benches, conditions, eligibility_at_iam_limit, policy_update, tokens);
criterion_main!(benches);
