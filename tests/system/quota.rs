//! One person cannot spend everyone's Cloud Asset quota (security review 2026-12, finding 8;
//! issue 21): listings reuse a resource's effective policies for `POLICY_CACHE_TIMEOUT`, one
//! call in flight per resource; a peer lookup checks the caller's own standing before it
//! expands anyone's groups; each person's uncached reads come out of their own budget, past
//! which they get 429 with `Retry-After`, which the page shows. Requests and approvals keep
//! reading afresh.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{AUDIENCE, System};
use crate::support::{ALICE, BOB, CAROL};

const ERIN: &str = "erin@example.com";
const DAVE: &str = "dave@example.com";
const COMPUTE_PEERS: &str = "/api/projects/project-1/peers?id=project-1:roles/compute.admin";
const LOGGING_PEERS: &str = "/api/projects/project-1/peers?id=project-1:roles/logging.admin";

/// A listing's answer with its `Retry-After`, if any.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A GET to list-eligibility as `user`, optionally asking for data as it is now.
async fn list(system: &System, user: &str, path: &str, fresh: bool) -> Answer {
    let assertion = system.assertion(user, AUDIENCE).await;
    list_with(system, &assertion, path, fresh).await
}

async fn list_with(system: &System, assertion: &str, path: &str, fresh: bool) -> Answer {
    let mut request = system
        .backend
        .http
        .get(format!("http://{}{path}", system.list))
        .header("x-goog-iap-jwt-assertion", assertion)
        .header("x-jitaccess", "1");
    if fresh {
        request = request.header("cache-control", "no-cache");
    }
    let response = request.send().await.expect("list-eligibility answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    Answer { status, retry_after, body: response.json().await.unwrap_or(Value::Null) }
}

async fn calls(system: &System) -> BTreeMap<String, u64> {
    system.backend.get_json("/_emulator/calls").await
}

async fn reset_calls(system: &System) {
    let response = system.backend.http.delete(system.backend.url("/_emulator/calls")).send().await.expect("answers");
    assert!(response.status().is_success(), "{response:?}");
}

fn count(calls: &BTreeMap<String, u64>, key: &str) -> u64 {
    calls.get(key).copied().unwrap_or(0)
}

/// Cloud Identity calls that expand a group into its members (not the caller's own groups).
fn expansions(calls: &BTreeMap<String, u64>) -> u64 {
    ["cloudidentity.lookup", "cloudidentity.listMemberships", "cloudidentity.searchTransitiveMemberships"]
        .iter()
        .map(|key| count(calls, key))
        .sum()
}

const BATCH_GET: &str = "asset.batchGetEffectiveIamPolicies";

/// The review's reproduction: it cost 30 Cloud Asset calls, now 2, and asking afresh past the
/// budget gets 429 with `Retry-After` and makes no further call.
#[tokio::test]
async fn erin_eligible_for_nothing_costs_two_cloud_asset_calls_then_429_past_her_budget() {
    let system = System::start().await;
    reset_calls(&system).await;
    for listing in 1..=20 {
        let answer = list(&system, ERIN, "/api/projects/project-2/roles", false).await;
        assert_eq!(answer.status, 200, "listing {listing}: {answer:?}");
        assert_eq!(answer.body["entitlements"], json!([]), "{answer:?}");
    }
    for lookup in 1..=10 {
        let answer = list(&system, ERIN, COMPUTE_PEERS, false).await;
        assert_eq!((answer.status, answer.code()), (403, "not_eligible"), "lookup {lookup}: {answer:?}");
    }
    let after = calls(&system).await;
    assert_eq!(count(&after, BATCH_GET), 2, "one per project, was 30: {after:?}");
    assert_eq!(expansions(&after), 0, "refused lookups expand no group: {after:?}");

    // Asking afresh every time spends her budget (10 reads, 3 spent above) and then stops.
    let mut served = 0;
    let refused = loop {
        let answer = list(&system, ERIN, "/api/projects/project-2/roles", true).await;
        if answer.status != 200 {
            break answer;
        }
        served += 1;
        assert!(served <= 10, "never refused: {answer:?}");
    };
    assert_eq!((refused.status, refused.code()), (429, "listing_budget_exhausted"), "{refused:?}");
    let wait = refused.retry_after.unwrap_or_else(|| panic!("Retry-After: {refused:?}"));
    assert!((1..=10).contains(&wait), "one read comes back every 10 s: {wait}");
    let message = refused.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("try again in {wait} second")), "{message}");
    let spent = count(&calls(&system).await, BATCH_GET);
    assert!(spent <= 2 + 8, "at most the burst: {spent}");
    for _ in 0..5 {
        assert_eq!(list(&system, ERIN, "/api/projects/project-1/roles", true).await.status, 429);
        assert_eq!(list(&system, ERIN, COMPUTE_PEERS, true).await.status, 429);
    }
    assert_eq!(count(&calls(&system).await, BATCH_GET), spent, "refused listings call nobody");
}

#[tokio::test]
async fn concurrent_first_listings_of_a_project_share_one_cloud_asset_call() {
    let system = System::start().await;
    reset_calls(&system).await;
    // The first call takes a while, so that every listing arrives while it is in flight.
    let fault = json!({"api": "asset", "method": "batchGetEffectiveIamPolicies", "latencyMs": 500, "count": 1});
    let response = system.backend.http.post(system.backend.url("/_emulator/faults")).json(&fault).send().await;
    assert!(response.expect("emulator answers").status().is_success());
    let users = [ALICE, BOB, CAROL, DAVE, ERIN, ALICE, BOB, CAROL];
    let mut assertions = Vec::new();
    for user in users {
        assertions.push(system.assertion(user, AUDIENCE).await);
    }
    let listings =
        assertions.iter().map(|assertion| list_with(&system, assertion, "/api/projects/project-1/roles", false));
    let answers = join_all(listings).await;
    for (user, answer) in users.iter().zip(&answers) {
        assert_eq!(answer.status, 200, "{user}: {answer:?}");
    }
    assert_eq!(answers[0].body["entitlements"][0]["id"], "project-1:roles/compute.admin", "{:?}", answers[0]);
    assert_eq!(answers[2].body["entitlements"][0]["id"], "project-1:roles/storage.admin", "{:?}", answers[2]);
    let after = calls(&system).await;
    assert_eq!(count(&after, BATCH_GET), 1, "eight listings, one call: {after:?}");
}

#[tokio::test]
async fn a_refused_peer_lookup_expands_no_group_and_makes_no_call_after_a_listing() {
    let system = System::start().await;
    reset_calls(&system).await;
    // Carol holds nothing with peer approval; the on-call group holds logging.admin.
    let answer = list(&system, CAROL, LOGGING_PEERS, false).await;
    assert_eq!((answer.status, answer.code()), (403, "not_eligible"), "{answer:?}");
    let after = calls(&system).await;
    assert_eq!(expansions(&after), 0, "the on-call group was not expanded: {after:?}");
    assert_eq!(count(&after, BATCH_GET), 1, "{after:?}");

    // As the page does it: roles first, then peers. The refusal then costs nothing at all.
    assert_eq!(list(&system, CAROL, "/api/projects/project-1/roles", false).await.status, 200);
    let before = calls(&system).await;
    let answer = list(&system, CAROL, COMPUTE_PEERS, false).await;
    assert_eq!((answer.status, answer.code()), (403, "not_eligible"), "{answer:?}");
    assert_eq!(calls(&system).await, before, "no call for a refused lookup");

    // A peer's lookup still expands: Erin, in a group nested in on-call, sees Dave.
    let answer = list(&system, ERIN, LOGGING_PEERS, false).await;
    assert_eq!(answer.body, json!({"peers": [{"email": DAVE}]}), "{answer:?}");
    assert!(expansions(&calls(&system).await) > 0);
}

#[tokio::test]
async fn one_persons_spent_budget_leaves_another_persons_listings_and_stored_answers_alone() {
    let system = System::start_with(&[("LISTING_BUDGET_BURST", "3"), ("LISTING_BUDGET_PER_MINUTE", "1")]).await;
    let mut refused = None;
    for _ in 0..5 {
        let answer = list(&system, ERIN, "/api/projects/project-2/roles", true).await;
        if answer.status == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("erin's budget runs out");
    assert!(refused.retry_after.is_some_and(|s| (1..=60).contains(&s)), "one read a minute: {refused:?}");

    // Stored answers cost nothing, even with the budget spent.
    let answer = list(&system, ERIN, "/api/projects/project-2/roles", false).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Alice's budget is her own: she reads afresh while Erin waits.
    let before = count(&calls(&system).await, BATCH_GET);
    let answer = list(&system, ALICE, "/api/projects/project-2/roles", true).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["entitlements"][0]["name"], "roles/storage.objectViewer", "{answer:?}");
    assert_eq!(count(&calls(&system).await, BATCH_GET), before + 1, "read afresh");
    assert_eq!(list(&system, ERIN, "/api/projects/project-2/roles", true).await.status, 429);
}

/// A listing has just stored project-1's policies, in which Bob is a peer; an administrator
/// then removes him. The listing may go on showing the old policies for a few seconds, but
/// a request naming him and his approval read them afresh and are refused.
#[tokio::test]
async fn requests_and_approvals_read_policies_afresh_after_a_listing() {
    let running = System::start().await;
    let system = &running;
    let ask = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB], "activationTimeout": 30});
    let request = || async {
        let reply = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", ask.clone()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string()
    };
    // Two requests; Bob approves the first, so every function has read project-1 just now.
    let first = request().await;
    let second = request().await;
    let approve = |id: String| async move {
        system.post(BOB, system.approve, &format!("/api/requests/{id}/approve"), json!({"reason": ""})).await
    };
    assert_eq!(approve(first).await.status, 200);
    let listed = list(system, BOB, "/api/projects/project-1/roles", false).await;
    assert_eq!(listed.body["entitlements"][0]["id"], "project-1:roles/compute.admin", "{listed:?}");

    system.revoke_eligibility("project-1", "roles/compute.admin", &format!("user:{BOB}")).await;
    let stored = list(system, BOB, "/api/projects/project-1/roles", false).await;
    assert_eq!(stored.body["entitlements"][0]["id"], "project-1:roles/compute.admin", "stored for a while: {stored:?}");

    let reply = approve(second).await;
    assert_eq!((reply.status, reply.code()), (403, "approver_not_eligible"), "{reply:?}");
    let reply = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", ask.clone()).await;
    assert_eq!((reply.status, reply.code()), (403, "reviewer_not_eligible"), "{reply:?}");
    // Asked afresh, the listing agrees.
    let fresh = list(system, BOB, "/api/projects/project-1/roles", true).await;
    assert_eq!(fresh.body["entitlements"], json!([]), "{fresh:?}");
}

/// The page says when to come back: a person whose budget runs out while the page opens
/// sees the reason and the time.
#[tokio::test]
async fn the_page_says_when_to_try_again() {
    let Some(driver) = crate::webdriver::Driver::start().await else { return };
    let settings = vec![("LISTING_BUDGET_BURST", "1".to_string()), ("LISTING_BUDGET_PER_MINUTE", "1".to_string())];
    let local = local::start(local::Options { settings, ..local::Options::default() }).await.expect("local run starts");
    let browser = driver.browser().await;
    browser.open(&format!("{}/", local.url)).await;
    browser.click("#users a[href*='alice']").await;
    // Her one read opens the listing of her projects (its searches run into debt); her roles
    // listing is then past her budget.
    let error = browser.wait_for_text("#error", "try again in").await;
    assert!(error.contains("seconds (at "), "the reason and the time: {error}");
    browser.close().await;
}

/// Runs the futures concurrently on this task; their answers in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut waiting = false;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("ready")).collect()
}

/// Asks are decided on fresh reads, so they are charged too: Erin, eligible for nothing,
/// asking again and again (self-activation, request, break glass, extension) is refused with 429 once
/// her budget is spent, before any Google read; Alice's ask is not touched by Erin's.
#[tokio::test]
async fn a_person_refused_again_and_again_spends_only_their_own_budget_of_asks() {
    let system = System::start().await;
    reset_calls(&system).await;
    let asks = [
        (
            "/api/projects/project-1/roles/self-activate",
            json!({"entitlementIds": ["project-1:roles/compute.admin"], "justification": "BUG-1", "activationTimeout": 5}),
        ),
        (
            "/api/projects/project-1/roles/request",
            json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB], "activationTimeout": 5}),
        ),
        (
            "/api/projects/project-1/roles/break-glass",
            json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "activationTimeout": 5}),
        ),
        ("/api/requests/jit-AAAAAAAAAAAAAAAA/extend", json!({"activationTimeout": 5})),
    ];
    let mut refused = None;
    for attempt in 0..30 {
        let (path, body) = &asks[attempt % asks.len()];
        let reply = system.post(ERIN, system.request, path, body.clone()).await;
        if reply.status == 429 {
            refused = Some((attempt, reply));
            break;
        }
        assert_eq!(reply.status / 100, 4, "refused, not granted: {reply:?}");
    }
    let (attempt, reply) = refused.expect("refused once her budget is spent");
    assert_eq!(attempt, 10, "the burst, then 429: {reply:?}");
    assert_eq!(reply.code(), "listing_budget_exhausted", "{reply:?}");
    let spent = count(&calls(&system).await, BATCH_GET);
    assert!(spent <= 10, "at most one Cloud Asset call an ask: {spent}");
    for (path, body) in &asks {
        assert_eq!(system.post(ERIN, system.request, path, body.clone()).await.status, 429);
    }
    assert_eq!(count(&calls(&system).await, BATCH_GET), spent, "refused asks call nobody");
    let ask = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB], "activationTimeout": 30});
    let reply = system.post(ALICE, system.request, "/api/projects/project-1/roles/request", ask).await;
    assert_eq!(reply.status, 200, "another person's ask goes on: {reply:?}");
}
