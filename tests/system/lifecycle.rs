//! The approval lifecycle through the local run, as people drive it: a quorum of two, deny,
//! withdraw, end early, revoke (by an approver and by an administrator), the refusals, the
//! lists of my requests and of those waiting for me, and an event for every transition.

use serde_json::{Value, json};

use crate::support::{ALICE, BOB, CAROL, json_answer};

const DAVE: &str = "dave@example.com";
const ADMIN: &str = "admin@example.com";

struct Local {
    running: local::Running,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or("")
    }
}

impl Local {
    async fn start() -> Local {
        let settings = vec![
            (
                "APPROVAL_POLICY",
                r#"[{"roles": ["roles/compute.admin"], "approvals": 2, "approverReason": "optional"}]"#.to_string(),
            ),
            ("ADMINISTRATORS", format!("user:{ADMIN}")),
        ];
        let running = local::start(local::Options { settings, ..local::Options::default() }).await.expect("local run");
        let local = Local { running, http: reqwest::Client::new() };
        local.more_peers().await;
        local
    }

    async fn call(&self, user: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.running.url))
            .header("x-local-user", user)
            .header("x-jitaccess", "1");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the front door answers");
        let status = response.status().as_u16();
        Reply { status, body: response.json().await.unwrap_or(Value::Null) }
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Reply {
        self.call(user, "POST", path, Some(body)).await
    }

    /// Carol and Dave become peers of Alice and Bob for compute.admin on project-1.
    async fn more_peers(&self) {
        let mut policy = self.policy("projects/project-1").await;
        policy["bindings"].as_array_mut().expect("bindings").push(json!({
            "role": "roles/compute.admin", "members": [format!("user:{CAROL}"), format!("user:{DAVE}")],
            "condition": {"title": "Eligible", "expression": "has({}.multiPartyApprovalConstraint)"}}));
        self.set_policy("projects/project-1", policy).await;
    }

    /// Alice asks `reviewers`; returns the request's ID.
    async fn ask(&self, reviewers: &[&str]) -> String {
        let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": reviewers, "activationTimeout": 30});
        let reply = self.post(ALICE, "/api/projects/project-1/roles/request", body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string()
    }

    async fn act(&self, user: &str, id: &str, action: &str, reason: &str) -> Reply {
        self.post(user, &format!("/api/requests/{id}/{action}"), json!({"reason": reason})).await
    }

    async fn alice_bound(&self) -> bool {
        let policy = self.policy("projects/project-1").await;
        policy["bindings"].as_array().into_iter().flatten().any(|b| {
            b["role"] == "roles/compute.admin"
                && b["members"] == json!([format!("user:{ALICE}")])
                && b["condition"]["title"] == "JIT access activation"
        })
    }

    async fn event_types(&self) -> Vec<String> {
        let messages: Vec<Value> =
            json_answer(self.http.get(format!("{}/_emulator/pubsub", self.running.emulator.url()))).await;
        messages.iter().filter_map(|m| m["attributes"]["type"].as_str().map(str::to_string)).collect()
    }
}

#[tokio::test]
async fn quorum_then_refusals_then_ending_early() {
    let local = Local::start().await;
    // A request naming fewer reviewers than the policy's approvals is refused.
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB]});
    let reply = local.post(ALICE, "/api/projects/project-1/roles/request", body).await;
    assert_eq!((reply.status, reply.code()), (400, "reviewer_count"), "{reply:?}");
    let roles = local.call(ALICE, "GET", "/api/projects/project-1/roles", None).await;
    assert_eq!(roles.body["entitlements"][0]["approvalsNeeded"], 2, "the page can say: needs 2 approvals");

    let id = local.ask(&[BOB, CAROL, DAVE]).await;
    let first = local.act(BOB, &id, "approve", "looks right").await;
    assert_eq!((first.status, first.state()), (200, "APPROVAL_AWAITED"), "one of two: {first:?}");
    assert_eq!(first.body["approvals"].as_array().map(Vec::len), Some(1));
    assert!(!local.alice_bound().await, "nothing granted on one approval");

    // Refusals: a stranger, the beneficiary, the same reviewer twice.
    let stranger = local.act("erin@example.com", &id, "approve", "").await;
    assert_eq!((stranger.status, stranger.code()), (403, "not_a_reviewer"), "{stranger:?}");
    let own = local.act(ALICE, &id, "approve", "").await;
    assert_eq!((own.status, own.code()), (403, "self_approval"), "{own:?}");
    let twice = local.act(BOB, &id, "approve", "").await;
    assert_eq!((twice.status, twice.code()), (409, "already_approved"), "{twice:?}");
    let strangers_view = local.call("erin@example.com", "GET", &format!("/api/requests/{id}"), None).await;
    assert_eq!((strangers_view.status, strangers_view.code()), (403, "not_involved"));

    // The second approval completes the quorum and grants.
    let second = local.act(CAROL, &id, "approve", "").await;
    assert_eq!((second.status, second.state()), (200, "ACTIVE"), "{second:?}");
    assert!(local.alice_bound().await);

    // Lists: Alice's requests, and Dave's queue (empty: the request no longer waits).
    let mine = local.call(ALICE, "GET", "/api/requests?view=mine", None).await;
    assert_eq!(mine.body["requests"][0]["state"], "ACTIVE", "{mine:?}");
    let queue = local.call(DAVE, "GET", "/api/requests?view=review", None).await;
    assert_eq!(queue.body["requests"], json!([]), "{queue:?}");

    // Alice ends it early: the binding goes, the request is ENDED, nothing more can happen.
    let view = local.call(ALICE, "GET", &format!("/api/requests/{id}"), None).await;
    assert!(view.body["actions"].as_array().is_some_and(|a| a.contains(&json!("withdraw"))), "{view:?}");
    let ended = local.act(ALICE, &id, "withdraw", "done early").await;
    assert_eq!((ended.status, ended.state()), (200, "ENDED"), "{ended:?}");
    assert!(!local.alice_bound().await, "the binding is removed at once");
    let late = local.act(DAVE, &id, "approve", "").await;
    assert_eq!((late.status, late.code()), (409, "wrong_state"), "{late:?}");

    let events = local.event_types().await;
    for kind in ["RequestActivation", "ApprovalRecorded", "ActivationApproved", "ActivationEnded"] {
        assert!(events.iter().any(|e| e == kind), "{kind} published: {events:?}");
    }
}

#[tokio::test]
async fn deny_withdraw_and_revoke() {
    let local = Local::start().await;

    // One deny ends it; approvals after it are refused.
    let denied = local.ask(&[BOB, CAROL]).await;
    let no_reason = local.act(BOB, &denied, "deny", " ").await;
    assert_eq!((no_reason.status, no_reason.code()), (400, "reason_required"));
    let reply = local.act(BOB, &denied, "deny", "no ticket").await;
    assert_eq!((reply.status, reply.state()), (200, "DENIED"), "{reply:?}");
    let after = local.act(CAROL, &denied, "approve", "").await;
    assert_eq!((after.status, after.code()), (409, "wrong_state"), "after a deny: {after:?}");

    // Withdrawn by the requester; only the requester may; nothing can be approved after.
    let withdrawn = local.ask(&[BOB, CAROL]).await;
    let not_hers = local.act(BOB, &withdrawn, "withdraw", "").await;
    assert_eq!((not_hers.status, not_hers.code()), (403, "not_the_requester"));
    let reply = local.act(ALICE, &withdrawn, "withdraw", "").await;
    assert_eq!((reply.status, reply.state()), (200, "WITHDRAWN"), "{reply:?}");
    let after = local.act(BOB, &withdrawn, "approve", "").await;
    assert_eq!((after.status, after.code()), (409, "wrong_state"), "after a withdrawal: {after:?}");

    // Revoked by an approver; a reviewer who did not approve may not; a reason is needed.
    let revoked = local.ask(&[BOB, CAROL, DAVE]).await;
    local.act(BOB, &revoked, "approve", "").await;
    assert_eq!(local.act(CAROL, &revoked, "approve", "").await.state(), "ACTIVE");
    let not_an_approver = local.act(DAVE, &revoked, "revoke", "I want to").await;
    assert_eq!((not_an_approver.status, not_an_approver.code()), (403, "may_not_revoke"));
    let beneficiary = local.act(ALICE, &revoked, "revoke", "mine").await;
    assert_eq!((beneficiary.status, beneficiary.code()), (403, "may_not_revoke"), "she may end it, not revoke it");
    let no_reason = local.act(BOB, &revoked, "revoke", "").await;
    assert_eq!((no_reason.status, no_reason.code()), (400, "reason_required"));
    let reply = local.act(BOB, &revoked, "revoke", "incident closed").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "{reply:?}");
    assert!(!local.alice_bound().await, "the binding is removed at once");

    // An administrator may revoke any grant, and see any request.
    let second = local.ask(&[BOB, CAROL]).await;
    local.act(BOB, &second, "approve", "").await;
    assert_eq!(local.act(CAROL, &second, "approve", "").await.state(), "ACTIVE");
    assert_eq!(local.call(ADMIN, "GET", &format!("/api/requests/{second}"), None).await.status, 200);
    let reply = local.act(ADMIN, &second, "revoke", "access review").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "{reply:?}");
    let timeline: Vec<&str> =
        reply.body["timeline"].as_array().into_iter().flatten().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(timeline, ["REQUESTED", "APPROVED", "APPROVED", "ACTIVATED", "REVOKED", "BINDING_REMOVED"]);

    let events = local.event_types().await;
    for kind in ["RequestDenied", "RequestWithdrawn", "ActivationRevoked"] {
        assert!(events.iter().any(|e| e == kind), "{kind} published: {events:?}");
    }
    // Bob's queue holds what still waits for him: nothing.
    let queue = local.call(BOB, "GET", "/api/requests?view=review", None).await;
    assert_eq!(queue.body["requests"], json!([]), "{queue:?}");
    let pending = local.ask(&[BOB, CAROL]).await;
    let queue = local.call(BOB, "GET", "/api/requests?view=review", None).await;
    assert_eq!(queue.body["requests"][0]["id"], pending.as_str());
    assert_eq!(queue.body["requests"][0]["actions"], json!(["approve", "deny"]));
}

fn rfc3339(seconds: i64) -> String {
    common::timestamp::Timestamp::from_unix_seconds(seconds).expect("in range").to_string()
}

fn now() -> i64 {
    common::timestamp::Timestamp::now().unix_seconds()
}

impl Local {
    /// Alice's roles/compute.admin activation bindings, as (start, end) strings.
    async fn alice_windows(&self, role: &str, member: &str) -> Vec<String> {
        let policy = self.policy("projects/project-1").await;
        policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["role"] == role && b["members"] == json!([format!("user:{member}")]))
            .filter(|b| b["condition"]["title"] == "JIT access activation")
            .map(|b| b["condition"]["expression"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[tokio::test]
async fn scheduled_start_extension_and_narrowing() {
    let local = Local::start().await;
    let storage = "project-1:roles/storage.admin";

    // Refusals: a start in the past, a start too far ahead.
    for (start, code) in [(now() - 3_600, "start_in_past"), (now() + 8 * 86_400, "start_too_far"), (0, "time_invalid")]
    {
        let start = if start == 0 { "tomorrow".to_string() } else { rfc3339(start) };
        let body =
            json!({"entitlementIds": [storage], "justification": "BUG-1", "activationTimeout": 30, "startTime": start});
        let reply = local.post(CAROL, "/api/projects/project-1/roles/self-activate", body).await;
        assert_eq!((reply.status, reply.code()), (400, code), "{reply:?}");
    }

    // Scheduled self-activation: the binding's window starts later; SCHEDULED, then ACTIVE.
    // Seconds ahead enough that a loaded CI machine still sees it SCHEDULED first.
    let start = now() + 6;
    let body = json!({"entitlementIds": [storage], "justification": "BUG-1", "activationTimeout": 30, "startTime": rfc3339(start)});
    let reply = local.post(CAROL, "/api/projects/project-1/roles/self-activate", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let windows = local.alice_windows("roles/storage.admin", CAROL).await;
    assert_eq!(windows.len(), 1);
    assert!(windows[0].contains(&format!("request.time >= timestamp(\"{}\")", rfc3339(start))), "{windows:?}");
    let view = local.call(CAROL, "GET", &format!("/api/requests/{id}"), None).await;
    assert_eq!(view.state(), "SCHEDULED", "{view:?}");
    tokio::time::sleep(std::time::Duration::from_secs((start - now() + 1).max(0) as u64)).await;
    let view = local.call(CAROL, "GET", &format!("/api/requests/{id}"), None).await;
    assert_eq!(view.state(), "ACTIVE", "{view:?}");

    // Self-approved extension: at once, without a gap (one binding, new end).
    let reply = local.post(CAROL, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 90})).await;
    assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
    assert_eq!(reply.body["endTime"], start + 90 * 60);
    let windows = local.alice_windows("roles/storage.admin", CAROL).await;
    assert_eq!(windows.len(), 1, "replaced, not added: {windows:?}");
    assert!(windows[0].contains(&rfc3339(start + 90 * 60)), "{windows:?}");
    let too_long = local.post(CAROL, &format!("/api/requests/{id}/extend"), json!({"activationTimeout": 500})).await;
    assert_eq!((too_long.status, too_long.code()), (400, "duration_invalid"), "{too_long:?}");

    // Peer approval, narrowed by the approvers: the earliest end wins.
    let asked = local.ask(&[BOB, CAROL]).await;
    let view = local.call(ALICE, "GET", &format!("/api/requests/{asked}"), None).await;
    let requested_end = view.body["endTime"].as_i64().expect("end");
    let longer = local
        .post(BOB, &format!("/api/requests/{asked}/approve"), json!({"endTime": rfc3339(requested_end + 600)}))
        .await;
    assert_eq!((longer.status, longer.code()), (400, "window_lengthened"), "an approver never lengthens: {longer:?}");
    let narrowed = requested_end - 600;
    local.post(BOB, &format!("/api/requests/{asked}/approve"), json!({"endTime": rfc3339(narrowed)})).await;
    let reply =
        local.post(CAROL, &format!("/api/requests/{asked}/approve"), json!({"endTime": rfc3339(narrowed + 60)})).await;
    assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
    assert_eq!(reply.body["endTime"], narrowed, "the earliest end wins");
    let windows = local.alice_windows("roles/compute.admin", ALICE).await;
    assert!(windows.iter().any(|w| w.contains(&rfc3339(narrowed))), "the binding ends when narrowed: {windows:?}");

    // Peer-approved extension: asked, the grant runs on, a new quorum extends it.
    let reply = local.post(ALICE, &format!("/api/requests/{asked}/extend"), json!({"activationTimeout": 60})).await;
    assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
    assert_eq!(reply.body["endTime"], narrowed, "runs on until approved");
    let asked_end = reply.body["pendingExtensionEndTime"].as_i64().expect("pending");
    // The original request's approval approves nothing more: the extension has its own.
    let old_link = local.act(BOB, &asked, "approve", "").await;
    assert_eq!(old_link.code(), "already_approved", "{old_link:?}");
    let approve_until = json!({"endTime": rfc3339(asked_end)});
    local.post(BOB, &format!("/api/requests/{asked}/approve-extension"), approve_until.clone()).await;
    let reply = local.post(CAROL, &format!("/api/requests/{asked}/approve-extension"), approve_until).await;
    assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
    let extended_end = reply.body["startTime"].as_i64().expect("start") + 3_600;
    assert_eq!(reply.body["endTime"], extended_end, "{reply:?}");
    let windows = local.alice_windows("roles/compute.admin", ALICE).await;
    assert_eq!(windows.len(), 1, "replaced without a gap: {windows:?}");
    assert!(windows[0].contains(&rfc3339(extended_end)), "{windows:?}");

    // A revoked grant cannot be extended.
    local.act(BOB, &asked, "revoke", "done").await;
    let reply = local.post(ALICE, &format!("/api/requests/{asked}/extend"), json!({"activationTimeout": 90})).await;
    assert_eq!((reply.status, reply.code()), (409, "wrong_state"), "{reply:?}");

    // A scheduled peer-approval request must be approved before it starts, and expires then.
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB, CAROL],
        "activationTimeout": 30, "startTime": rfc3339(now() + 3_600)});
    let reply = local.post(ALICE, "/api/projects/project-1/roles/request", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let scheduled = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let view = local.call(ALICE, "GET", &format!("/api/requests/{scheduled}"), None).await;
    assert_eq!(view.body["requestExpiryTime"], view.body["startTime"], "expires at its start: {view:?}");
    local.act(BOB, &scheduled, "approve", "").await;
    let reply = local.act(CAROL, &scheduled, "approve", "").await;
    assert_eq!(reply.state(), "SCHEDULED", "{reply:?}");
    let reply = local.act(ALICE, &scheduled, "withdraw", "plans changed").await;
    assert_eq!(reply.state(), "ENDED", "a scheduled grant can be withdrawn before it starts: {reply:?}");
}

const SANDBOX: &str = "folders/200000000002";
const ORGANIZATION: &str = "organizations/100000000001";

impl Local {
    async fn policy(&self, resource: &str) -> Value {
        let url = format!("{}/v3/{resource}:getIamPolicy", self.running.emulator.url());
        self.http
            .post(url)
            .json(&json!({"options": {"requestedPolicyVersion": 3}}))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("policy")
    }

    async fn set_policy(&self, resource: &str, policy: Value) {
        let url = format!("{}/v3/{resource}:setIamPolicy", self.running.emulator.url());
        let response = self.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
        assert_eq!(response.status(), 200);
    }

    /// Every policy in the example organization, by resource.
    async fn policies(&self) -> Vec<(String, Value)> {
        let mut all = Vec::new();
        for resource in [ORGANIZATION, "folders/200000000001", SANDBOX, "projects/project-1", "projects/project-2"] {
            let mut policy = self.policy(resource).await;
            policy.as_object_mut().expect("object").remove("etag");
            all.push((resource.to_string(), policy));
        }
        all
    }
}

/// The activation bindings for `member` in a policy.
fn activations(policy: &Value, member: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["members"] == json!([format!("user:{member}")]))
        .filter(|b| b["condition"]["title"] == "JIT access activation")
        .filter_map(|b| b["role"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn folder_and_organization_activation_write_only_their_own_policy() {
    let local = Local::start().await;
    // Alice and Bob may also activate Security Reviewer on the organization with a peer's approval.
    let mut policy = local.policy(ORGANIZATION).await;
    policy["bindings"].as_array_mut().expect("bindings").push(json!({
        "role": "roles/iam.securityReviewer", "members": [format!("user:{ALICE}"), format!("user:{BOB}")],
        "condition": {"title": "Eligible", "expression": "has({}.multiPartyApprovalConstraint)"}}));
    policy["version"] = json!(3);
    local.set_policy(ORGANIZATION, policy).await;

    // The sandbox folder is listed with Carol's projects, with its role under its own route.
    let resources = local.call(CAROL, "GET", "/api/resources", None).await;
    assert_eq!(resources.status, 200, "{resources:?}");
    let listed = &resources.body["resources"];
    assert!(listed.as_array().expect("list").contains(&json!({"id": SANDBOX, "kind": "folder"})), "{listed}");
    assert!(listed.as_array().expect("list").contains(&json!({"id": "project-1", "kind": "project"})), "{listed}");
    let roles = local.call(CAROL, "GET", "/api/folders/200000000002/roles", None).await;
    let editor = format!("{SANDBOX}:roles/resourcemanager.folderEditor");
    assert_eq!(roles.body["entitlements"][0]["id"], editor.as_str(), "{roles:?}");

    // Refusals: the folder's role on a project it does not cover, and an ID naming another resource.
    let elsewhere =
        json!({"entitlementIds": ["project-2:roles/resourcemanager.folderEditor"], "justification": "BUG-1"});
    let reply = local.post(CAROL, "/api/projects/project-2/roles/self-activate", elsewhere).await;
    assert_eq!((reply.status, reply.code()), (403, "not_eligible"), "{reply:?}");
    let mismatch = json!({"entitlementIds": [editor], "justification": "BUG-1"});
    let reply = local.post(CAROL, "/api/projects/project-1/roles/self-activate", mismatch).await;
    assert_eq!((reply.status, reply.code()), (400, "project_mismatch"), "{reply:?}");
    let sandbox_admin = format!("{SANDBOX}:roles/resourcemanager.folderAdmin");
    let mismatch = json!({"entitlementId": sandbox_admin, "justification": "BUG-1", "peers": [BOB]});
    let reply = local.post(ALICE, "/api/organizations/100000000001/roles/request", mismatch).await;
    assert_eq!((reply.status, reply.code()), (400, "project_mismatch"), "{reply:?}");
    let bad = json!({"entitlementIds": [editor], "justification": "BUG-1"});
    let reply = local.post(CAROL, "/api/folders/not-a-number/roles/self-activate", bad).await;
    assert_eq!(reply.status, 400, "{reply:?}");

    // Self-approval on the folder: written to the folder's policy, nothing else touched.
    let before = local.policies().await;
    let body = json!({"entitlementIds": [editor], "justification": "BUG-1", "activationTimeout": 30});
    let reply = local.post(CAROL, "/api/folders/200000000002/roles/self-activate", body).await;
    assert_eq!((reply.status, &reply.body["entitlements"][0]["status"]), (200, &json!("ACTIVE")), "{reply:?}");
    let folder_grant = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let after = local.policies().await;
    for ((resource, old), (_, new)) in before.iter().zip(&after) {
        if resource == SANDBOX {
            assert_eq!(activations(new, CAROL), ["roles/resourcemanager.folderEditor"]);
        } else {
            assert_eq!(old, new, "{resource} untouched");
        }
    }

    // Peer approval on the organization: Bob approves, the organization's policy holds it.
    let reviewer = format!("{ORGANIZATION}:roles/iam.securityReviewer");
    let peers = local.call(ALICE, "GET", &format!("/api/organizations/100000000001/peers?id={reviewer}"), None).await;
    assert_eq!(peers.status, 200, "{peers:?}");
    let body = json!({"entitlementId": reviewer, "justification": "BUG-2", "peers": [BOB], "activationTimeout": 30});
    let reply = local.post(ALICE, "/api/organizations/100000000001/roles/request", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let asked = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    let before = local.policies().await;
    let reply = local.act(BOB, &asked, "approve", "").await;
    assert_eq!((reply.status, reply.state()), (200, "ACTIVE"), "{reply:?}");
    let after = local.policies().await;
    for ((resource, old), (_, new)) in before.iter().zip(&after) {
        if resource == ORGANIZATION {
            assert_eq!(activations(new, ALICE), ["roles/iam.securityReviewer"]);
        } else {
            assert_eq!(old, new, "{resource} untouched");
        }
    }

    // Both end like project grants: revoked by the approver, ended early by Carol.
    let reply = local.act(BOB, &asked, "revoke", "done").await;
    assert_eq!((reply.status, reply.state()), (200, "REVOKED"), "{reply:?}");
    assert!(activations(&local.policy(ORGANIZATION).await, ALICE).is_empty(), "removed from the organization");
    let reply = local.act(CAROL, &folder_grant, "withdraw", "done").await;
    assert_eq!((reply.status, reply.state()), (200, "ENDED"), "{reply:?}");
    assert!(activations(&local.policy(SANDBOX).await, CAROL).is_empty(), "removed from the folder");
}
