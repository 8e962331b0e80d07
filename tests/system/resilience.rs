//! Reliability under pressure: arbitrary request bodies, sixteen concurrent writers with
//! injected etag conflicts, and failing backends. The user always gets an honest answer:
//! never "granted" when it was not, never an error when it was, and nothing is lost.

use common::activation::{Activation, ActivationWindow, Approval};
use common::entitlement::EntitlementId;
use common::gcp::GcpError;
use common::gcp::iam::IamWriter;
use common::justification::JustificationPolicy;
use common::timestamp::Timestamp;
use proptest::strategy::{Strategy as _, ValueTree as _};
use serde_json::{Value, json};

use crate::harness::System;
use crate::support::{ALICE, BOB, CAROL, backend};

const SELF: &str = "/api/projects/project-1/roles/self-activate";
const REQUEST: &str = "/api/projects/project-1/roles/request";

/// Bodies that look like requests, with every field possibly wrong in type, size or content.
fn arbitrary_body() -> impl proptest::strategy::Strategy<Value = String> {
    let text = proptest::prop_oneof![
        proptest::string::string_regex("\\PC{0,40}").expect("regex"),
        proptest::sample::select(vec![
            "project-1:roles/storage.admin".to_string(),
            "project-1:roles/compute.admin".to_string(),
            BOB.to_string()
        ]),
    ];
    let value = proptest::prop_oneof![
        text.clone().prop_map(Value::String),
        proptest::num::i64::ANY.prop_map(|n| json!(n)),
        proptest::collection::vec(text.clone(), 0..4).prop_map(|v| json!(v)),
        proptest::strategy::Just(Value::Null),
    ];
    let fields = proptest::sample::subsequence(
        vec!["entitlementIds", "entitlementId", "justification", "peers", "activationTimeout", "extra"],
        0..6,
    );
    (fields, proptest::collection::vec(value, 6), proptest::bool::ANY, text).prop_map(
        |(fields, values, raw, garbage)| {
            if raw {
                return garbage;
            }
            let object: serde_json::Map<String, Value> =
                fields.iter().zip(values).map(|(k, v)| (k.to_string(), v)).collect();
            Value::Object(object).to_string()
        },
    )
}

#[tokio::test]
async fn fuzz_arbitrary_bodies_get_4xx_and_write_nothing() {
    let system = System::start().await;
    let before = system.backend.policy("projects/project-1").await;
    let assertion = system.assertion(ALICE, crate::harness::AUDIENCE).await;
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(150);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arbitrary_body();
    for case in 0..cases {
        let body = strategy.new_tree(&mut runner).expect("a value").current();
        let path = if case % 2 == 0 { SELF } else { REQUEST };
        let response = system
            .backend
            .http
            .post(format!("http://{}{path}", system.request))
            .header("x-goog-iap-jwt-assertion", &assertion)
            .header("x-jitaccess", "1")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        assert!((400..500).contains(&status) || status == 200, "{path} with {body:?} answered {status}");
        let json: Value = response.json().await.expect("always JSON");
        if status != 200 {
            assert!(json["error"]["code"].is_string(), "{json}");
        }
    }
    // Alice holds no self-approvable role on project-1: whatever was sent, nothing was granted.
    assert_eq!(system.backend.policy("projects/project-1").await, before);
}

fn activation(index: usize) -> Activation {
    let now = Timestamp::now();
    Activation {
        request: format!("jit-writer{index}"),
        beneficiary: crate::support::email(&format!("user{index}@example.com")),
        entitlement: EntitlementId::parse("project-1:roles/compute.admin").expect("id"),
        window: ActivationWindow::new(now, now.plus_seconds(3600)).expect("window"),
        approval: Approval::SelfApproved,
        justification: JustificationPolicy::new(".*", "").expect("pattern").check("BUG-1").expect("valid"),
    }
}

#[tokio::test]
async fn sixteen_concurrent_writers_with_injected_conflicts_lose_nothing() {
    let backend = backend().await;
    let before = backend.policy("projects/project-1").await;
    backend.inject("resourcemanager", "setIamPolicy", 409, 6).await;
    let writer = IamWriter::new(&backend.settings).await.expect("client");
    let activations: Vec<Activation> = (0..16).map(activation).collect();
    let tasks: Vec<_> = activations
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, activation)| {
            let writer = writer.clone();
            tokio::spawn(
                async move { (index, crate::support::activate(&writer, &activation, "concurrency test").await) },
            )
        })
        .collect();
    let mut landed = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (index, outcome) = task.await.expect("task ran");
        match outcome {
            Ok(true) => landed.push(index),
            Err(GcpError::Conflict(_)) => conflicts += 1,
            other => panic!("writer {index}: neither landed nor a clear conflict: {other:?}"),
        }
    }
    let after = backend.policy("projects/project-1").await;
    // Every binding that was there before is still there, byte for byte.
    let serialized = |binding: &common::policy::Binding| serde_json::to_string(binding).expect("json");
    let after_bindings: Vec<String> = after.bindings.iter().map(serialized).collect();
    for binding in &before.bindings {
        assert!(after_bindings.contains(&serialized(binding)), "lost {binding:?}");
    }
    // Every writer that was told "written" is in the policy; no other activation is.
    for index in &landed {
        assert!(after.bindings.contains(&activations[*index].binding()), "writer {index} was told it landed");
    }
    assert_eq!(after.bindings.len(), before.bindings.len() + landed.len(), "conflicts: {conflicts}");
    assert!(landed.len() + conflicts == 16);
    assert!(!landed.is_empty());
}

#[tokio::test]
async fn resource_manager_failures_are_honest_and_grant_nothing() {
    let system = System::start().await;
    let before = system.backend.policy("projects/project-1").await;
    let body = json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1"});
    system.backend.inject("resourcemanager", "setIamPolicy", 503, 100).await;
    let reply = system.post(CAROL, system.request, SELF, body.clone()).await;
    assert_eq!((reply.status, reply.code()), (503, "backend_unavailable"), "{reply:?}");
    system.backend.http.delete(system.backend.url("/_emulator/faults")).send().await.expect("cleared");
    system.backend.inject("resourcemanager", "getIamPolicy", 429, 100).await;
    let reply = system.post(CAROL, system.request, SELF, body).await;
    assert_eq!((reply.status, reply.code()), (429, "quota_exceeded"), "{reply:?}");
    system.backend.http.delete(system.backend.url("/_emulator/faults")).send().await.expect("cleared");
    assert_eq!(system.backend.policy("projects/project-1").await, before, "nothing granted");
    assert!(system.events().await.is_empty(), "nothing announced");
}

#[tokio::test]
async fn asset_quota_and_sign_jwt_outage_are_honest() {
    let system = System::start().await;
    system.backend.inject("asset", "batchGetEffectiveIamPolicies", 429, 100).await;
    let reply = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
    assert_eq!((reply.status, reply.code()), (429, "quota_exceeded"), "{reply:?}");
    system.backend.http.delete(system.backend.url("/_emulator/faults")).send().await.expect("cleared");

    system.backend.inject("iamcredentials", "signJwt", 503, 100).await;
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB]});
    let reply = system.post(ALICE, system.request, REQUEST, body).await;
    assert_eq!((reply.status, reply.code()), (503, "backend_unavailable"), "{reply:?}");
    assert!(system.events().await.is_empty(), "no request went out unsigned");
}

#[tokio::test]
async fn pubsub_down_after_a_grant_still_says_granted() {
    let system = System::start().await;
    system.backend.inject("pubsub", "publish", 503, 1_000).await;
    let body = json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1"});
    let reply = system.post(CAROL, system.request, SELF, body).await;
    assert_eq!(reply.status, 200, "the role was granted: {reply:?}");
    assert!(reply.body["message"].as_str().is_some_and(|m| m.contains("notification failed")), "{reply:?}");
    let policy = system.backend.policy("projects/project-1").await;
    assert!(policy.bindings.iter().any(|b| b.members == [format!("user:{CAROL}")] && b.role == "roles/storage.admin"));

    // A request, by contrast, is worthless if nobody hears of it: it fails honestly.
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB]});
    let reply = system.post(ALICE, system.request, REQUEST, body).await;
    assert_eq!((reply.status, reply.code()), (503, "backend_unavailable"), "{reply:?}");
}
