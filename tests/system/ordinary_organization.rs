//! An ordinary organization: no Security Command Center tier (Policy Analyzer answers 20
//! queries a day) and Cloud Identity Free (no transitive group search), as the example
//! organization is set up. The default catalog serves everything without one analysis query;
//! the Policy Analyzer catalog runs out and says how to fix it.

use serde_json::{Value, json};

use crate::harness::System;
use crate::support::{ALICE, BOB, CAROL};

/// A call through the local run's front door, as a signed-in person.
async fn call(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request =
        http.request(method, format!("{url}{path}")).header("x-local-user", user).header("x-jitaccess", "1");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the front door answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_story_self_activation_and_refusals_through_the_local_run_make_no_analysis_query() {
    let local = local::start(local::Options::default()).await.expect("local run starts");
    let http = reqwest::Client::new();
    let url = local.url.as_str();

    // The story: Alice lists, asks Bob; Bob sees and approves; Alice is active.
    assert_eq!(
        call(&http, url, ALICE, "GET", "/api/projects", None).await.1,
        json!({"projects": ["project-1", "project-2"]})
    );
    let (_, roles) = call(&http, url, ALICE, "GET", "/api/projects/project-1/roles", None).await;
    assert_eq!(roles["entitlements"][0]["id"], "project-1:roles/compute.admin");
    let peers = "/api/projects/project-1/peers?id=project-1:roles/compute.admin";
    assert_eq!(call(&http, url, ALICE, "GET", peers, None).await.1, json!({"peers": [{"email": BOB}]}));
    let ask = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-12345", "peers": [BOB], "activationTimeout": 30});
    let (status, _) = call(&http, url, ALICE, "POST", "/api/projects/project-1/roles/request", Some(ask.clone())).await;
    assert_eq!(status, 200);
    let messages: Vec<Value> = reqwest::get(format!("{}/_emulator/pubsub", local.emulator.url()))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let data = messages.last().expect("published")["data"].as_str().expect("data").to_string();
    use base64::Engine as _;
    let event: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(data).expect("base64")).expect("json");
    let link = event["attributes"]["action_url"].as_str().expect("link");
    let path = format!("/api/activation-request?{}", link.split('?').nth(1).expect("query"));
    assert_eq!(call(&http, url, BOB, "GET", &path, None).await.0, 200);
    assert_eq!(call(&http, url, BOB, "POST", &path, None).await.0, 200);
    // Alice opens the page again: its first listing asks for the policies as they are now.
    let fresh = reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::CACHE_CONTROL, reqwest::header::HeaderValue::from_static("no-cache"))]
                .into_iter()
                .collect(),
        )
        .build()
        .expect("client");
    let (_, roles) = call(&fresh, url, ALICE, "GET", "/api/projects/project-1/roles", None).await;
    assert_eq!(roles["entitlements"][0]["status"], "ACTIVE", "{roles}");

    // Nested groups without transitive search: Erin is in oncall-backup, inside oncall.
    let (_, erin) = call(&http, url, "erin@example.com", "GET", "/api/projects/project-1/roles", None).await;
    assert_eq!(erin["entitlements"][0]["id"], "project-1:roles/logging.admin", "{erin}");
    let peers = "/api/projects/project-1/peers?id=project-1:roles/logging.admin";
    assert_eq!(
        call(&http, url, "erin@example.com", "GET", peers, None).await.1,
        json!({"peers": [{"email": "dave@example.com"}]})
    );

    // Self-activation.
    let body =
        json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1", "activationTimeout": 30});
    assert_eq!(call(&http, url, CAROL, "POST", "/api/projects/project-1/roles/self-activate", Some(body)).await.0, 200);

    // The refusals.
    let refusals = [
        (ALICE, "POST", path.clone(), None, "self_approval"),
        (CAROL, "POST", path.clone(), None, "not_a_reviewer"),
        (CAROL, "GET", path.clone(), None, "not_involved"),
        (CAROL, "GET", peers.to_string(), None, "not_eligible"),
        (CAROL, "POST", "/api/projects/project-1/roles/request".to_string(), Some(ask.clone()), "not_eligible"),
        (
            ALICE,
            "POST",
            "/api/projects/project-1/roles/self-activate".to_string(),
            Some(json!({"entitlementIds": ["project-1:roles/compute.admin"], "justification": "BUG-1"})),
            "wrong_activation_type",
        ),
        (
            ALICE,
            "POST",
            "/api/projects/project-1/roles/request".to_string(),
            Some(json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [CAROL]})),
            "reviewer_not_eligible",
        ),
    ];
    for (user, method, path, body, code) in refusals {
        let (status, reply) = call(&http, url, user, method, &path, body).await;
        assert!((400..500).contains(&status), "{user} {method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{user} {method} {path}: {reply}");
    }

    let calls: Value = reqwest::get(format!("{}/_emulator/calls", local.emulator.url()))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["asset.analyzeIamPolicy"].as_u64().unwrap_or(0), 0, "no analysis query at all: {calls}");
    assert!(calls["asset.batchGetEffectiveIamPolicies"].as_u64().unwrap_or(0) > 0, "{calls}");
    assert!(calls["cloudidentity.searchDirectGroups"].as_u64().unwrap_or(0) > 0, "walked direct memberships: {calls}");
}

#[tokio::test]
async fn the_policy_analyzer_catalog_answers_its_21st_query_with_the_cause_and_the_fix() {
    let system = System::start_with(&[("RESOURCE_CATALOG", "PolicyAnalyzer")]).await;
    for load in 1..=20 {
        let reply = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
        assert_eq!(reply.status, 200, "page load {load}: {reply:?}");
    }
    let reply = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
    assert_eq!((reply.status, reply.code()), (429, "analysis_quota_exhausted"), "{reply:?}");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("20 analysis queries a day") && message.contains("RESOURCE_CATALOG=AssetInventory"),
        "{message}"
    );
}

#[tokio::test]
async fn the_asset_inventory_catalog_serves_1000_page_loads_in_a_row() {
    let system = System::start().await;
    for load in 1..=1_000 {
        let reply = system.get(ALICE, system.list, "/api/projects/project-1/roles").await;
        assert_eq!(reply.status, 200, "page load {load}: {reply:?}");
    }
    assert_eq!(system.backend.calls("asset.analyzeIamPolicy").await, 0);
}

#[tokio::test]
async fn listings_may_reuse_memberships_but_requests_and_approvals_read_them_afresh() {
    let system = System::start().await;
    let dave = "dave@example.com";
    let erin = "erin@example.com";
    let peers = "/api/projects/project-1/peers?id=project-1:roles/logging.admin";
    assert_eq!(system.get(dave, system.list, peers).await.body, json!({"peers": [{"email": erin}]}));
    let ask = json!({"entitlementId": "project-1:roles/logging.admin", "justification": "BUG-1", "peers": [dave], "activationTimeout": 30});
    let request = || async {
        let reply = system.post(erin, system.request, "/api/projects/project-1/roles/request", ask.clone()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let events = system.events().await;
        let link = events.last().expect("the request")["attributes"]["action_url"].as_str().expect("link").to_string();
        format!("/api/activation-request?{}", link.split('?').nth(1).expect("query"))
    };
    // Two requests; Dave approves the first, so every function has seen his groups.
    let first = request().await;
    let second = request().await;
    assert_eq!(system.call(dave, "POST", system.approve, &first, None).await.status, 200);

    // An administrator takes Dave out of the on-call group.
    let url = system.backend.url("/_emulator/groups/oncall@example.com");
    let response = system
        .backend
        .http
        .put(url)
        .json(&json!({"members": ["group:oncall-backup@example.com"]}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 204);

    // The listing may still show him as a peer for a while (RESOURCE_CACHE_TIMEOUT) ...
    assert_eq!(system.get(dave, system.list, peers).await.status, 200, "cached memberships");
    // ... but approving and requesting read memberships afresh.
    let reply = system.call(dave, "POST", system.approve, &second, None).await;
    assert_eq!((reply.status, reply.code()), (403, "approver_not_eligible"), "{reply:?}");
    let reply = system.post(erin, system.request, "/api/projects/project-1/roles/request", ask.clone()).await;
    assert_eq!((reply.status, reply.code()), (403, "reviewer_not_eligible"), "{reply:?}");
}
