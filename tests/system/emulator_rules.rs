//! Every request rule Google documents for a method we call, enforced by the emulator with
//! Google's status and error shape: one test per method, one assertion per rule, each naming
//! the rule. An emulator kinder than Google once let a refused `analyzeIamPolicy` query pass
//! every test; these keep that from happening again. Plain HTTP: this checks the wire.

use serde_json::Value;

use emulator::world::Settings;

use crate::support::{Backend, SCOPE, backend_with, backend_with_settings};

/// The example organization with a paid tier and every edition feature, so that each rule is
/// met only by its own test.
async fn backend() -> Backend {
    backend_with_settings(Settings::default()).await
}

/// `GET path` on the emulator: status and Google's `error.status`.
async fn get(backend: &Backend, path: &str) -> (u16, String, Value) {
    let response = backend.http.get(backend.url(path)).send().await.expect("answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["status"].as_str().unwrap_or("").to_string(), body)
}

async fn refused(backend: &Backend, rule: &str, path: &str, status: u16, name: &str) {
    let (got, got_name, body) = get(backend, path).await;
    assert_eq!((got, got_name.as_str()), (status, name), "{rule}: {path} → {body}");
}

async fn accepted(backend: &Backend, rule: &str, path: &str) -> Value {
    let (status, _, body) = get(backend, path).await;
    assert_eq!(status, 200, "{rule}: {path} → {body}");
    body
}

fn encode(text: &str) -> String {
    form_urlencoded_bytes(text)
}

fn form_urlencoded_bytes(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn analyze_iam_policy_rules() {
    let backend = backend().await;
    let identity = format!("analysisQuery.identitySelector.identity={}", encode("user:alice@example.com"));
    let base = format!("/v1/{SCOPE}:analyzeIamPolicy");
    refused(
        &backend,
        "expandGroups is not allowed with an identity selector",
        &format!("{base}?{identity}&analysisQuery.options.expandGroups=true"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    accepted(&backend, "an identity selector alone", &format!("{base}?{identity}")).await;
    refused(&backend, "a selector is required", &base, 400, "INVALID_ARGUMENT").await;
    refused(
        &backend,
        "the scope is an organization, folder or project",
        &format!("/v1/buckets/x:analyzeIamPolicy?{identity}"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &backend,
        "an unknown scope is not accessible",
        &format!("/v1/organizations/9:analyzeIamPolicy?{identity}"),
        403,
        "PERMISSION_DENIED",
    )
    .await;
}

#[tokio::test]
async fn analyze_iam_policy_free_tier_allows_20_queries_a_day() {
    let backend =
        backend_with_settings(Settings { free_analysis_queries_per_day: Some(20), ..Settings::default() }).await;
    let path = format!(
        "/v1/{SCOPE}:analyzeIamPolicy?analysisQuery.identitySelector.identity={}",
        encode("user:alice@example.com")
    );
    for query in 1..=20 {
        accepted(&backend, &format!("query {query} of the free 20"), &path).await;
    }
    refused(&backend, "the 21st query of the day", &path, 429, "RESOURCE_EXHAUSTED").await;
}

#[tokio::test]
async fn batch_get_effective_iam_policies_rules() {
    let backend = backend().await;
    let project =
        |id: &str| format!("names={}", encode(&format!("//cloudresourcemanager.googleapis.com/projects/{id}")));
    let base = format!("/v1/{SCOPE}/effectiveIamPolicies:batchGet");
    let body = accepted(&backend, "one name", &format!("{base}?{}", project("project-1"))).await;
    let policies = body["policyResults"][0]["policies"].as_array().cloned().unwrap_or_default();
    let attached: Vec<&str> = policies.iter().filter_map(|p| p["attachedResource"].as_str()).collect();
    assert_eq!(
        attached,
        [
            "//cloudresourcemanager.googleapis.com/projects/project-1",
            "//cloudresourcemanager.googleapis.com/folders/200000000001",
            "//cloudresourcemanager.googleapis.com/organizations/100000000001",
        ],
        "the resource first, then its ancestors up to the scope"
    );
    refused(&backend, "names is required", &base, 400, "INVALID_ARGUMENT").await;
    let twenty_one: Vec<String> = (0..21).map(|_| project("project-1")).collect();
    refused(&backend, "at most 20 names", &format!("{base}?{}", twenty_one.join("&")), 400, "INVALID_ARGUMENT").await;
    let twenty: Vec<String> = (0..20).map(|_| project("project-1")).collect();
    accepted(&backend, "20 names", &format!("{base}?{}", twenty.join("&"))).await;
    refused(
        &backend,
        "names are full resource names",
        &format!("{base}?names=projects%2Fproject-1"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let in_folder = "/v1/folders/200000000001/effectiveIamPolicies:batchGet";
    refused(
        &backend,
        "names lie within the scope",
        &format!("{in_folder}?{}", project("project-2")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &backend,
        "the scope is an organization, folder or project",
        &format!("/v1/folders/production/effectiveIamPolicies:batchGet?{}", project("project-1")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

/// An organization with 600 projects, each with a binding: more than one page of 500.
fn many_projects() -> String {
    let mut yaml = String::from("organization:\n  id: \"1\"\nprojects:\n");
    for i in 0..600 {
        yaml.push_str(&format!(
            "  - id: p-{i:03}\n    bindings:\n      - role: roles/viewer\n        members: [user:a@example.com]\n"
        ));
    }
    yaml
}

#[tokio::test]
async fn search_all_iam_policies_rules() {
    let backend = backend_with(&many_projects(), "organizations/1").await;
    let base = "/v1/organizations/1:searchAllIamPolicies";
    let page = accepted(&backend, "pageSize above 500 is capped, not refused", &format!("{base}?pageSize=1000")).await;
    assert_eq!(page["results"].as_array().map(Vec::len), Some(500), "capped at 500");
    let token = page["nextPageToken"].as_str().expect("a second page");
    let rest = accepted(&backend, "the next page", &format!("{base}?pageSize=1000&pageToken={token}")).await;
    assert_eq!(rest["results"].as_array().map(Vec::len), Some(100));
    assert!(rest["nextPageToken"].is_null());
    let default = accepted(&backend, "no pageSize: the default", base).await;
    assert_eq!(default["results"].as_array().map(Vec::len), Some(100));
    refused(&backend, "page tokens are the server's", &format!("{base}?pageToken=forged"), 400, "INVALID_ARGUMENT")
        .await;
    refused(&backend, "pageSize is a number", &format!("{base}?pageSize=many"), 400, "INVALID_ARGUMENT").await;
    refused(&backend, "orderBy names a sortable field", &format!("{base}?orderBy=policy"), 400, "INVALID_ARGUMENT")
        .await;
    refused(
        &backend,
        "a query the emulator cannot answer",
        &format!("{base}?query={}", encode("policy:(a")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(&backend, "the scope is well formed", "/v1/organizations/x:searchAllIamPolicies", 400, "INVALID_ARGUMENT")
        .await;
    let matched = accepted(
        &backend,
        "a member query",
        &format!("{base}?query={}", encode("policy:(\"user:a@example.com\" OR \"group:none@example.com\")")),
    )
    .await;
    assert_eq!(matched["results"].as_array().map(Vec::len), Some(100));
    let none =
        accepted(&backend, "no match", &format!("{base}?query={}", encode("policy:\"user:b@example.com\""))).await;
    assert_eq!(none["results"], serde_json::json!([]));
}

#[tokio::test]
async fn search_all_resources_rules() {
    let backend = backend().await;
    let base = format!("/v1/{SCOPE}:searchAllResources");
    let projects = accepted(
        &backend,
        "projects under the scope",
        &format!("{base}?assetTypes={}", encode("cloudresourcemanager.googleapis.com/Project")),
    )
    .await;
    let mut ids: Vec<&str> = projects["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["additionalAttributes"]["projectId"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["project-1", "project-2"]);
    refused(
        &backend,
        "asset types are SERVICE.googleapis.com/KIND",
        &format!("{base}?assetTypes=Project"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(&backend, "orderBy names a sortable field", &format!("{base}?orderBy=policy"), 400, "INVALID_ARGUMENT")
        .await;
    refused(&backend, "page tokens are the server's", &format!("{base}?pageToken=forged"), 400, "INVALID_ARGUMENT")
        .await;
}

#[tokio::test]
async fn cloud_identity_rules() {
    let backend = backend().await;
    let lookup = accepted(&backend, "lookup by email", "/v1/groups:lookup?groupKey.id=oncall%40example.com").await;
    let group = lookup["name"].as_str().expect("groups/ID").to_string();
    refused(&backend, "groupKey.id is required", "/v1/groups:lookup", 400, "INVALID_ARGUMENT").await;
    refused(&backend, "an unknown group", "/v1/groups:lookup?groupKey.id=none%40example.com", 404, "NOT_FOUND").await;

    accepted(&backend, "memberships, BASIC view, 1000 a page", &format!("/v1/{group}/memberships?pageSize=1000")).await;
    refused(
        &backend,
        "BASIC view: at most 1000 a page",
        &format!("/v1/{group}/memberships?pageSize=1001"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &backend,
        "FULL view: at most 500 a page",
        &format!("/v1/{group}/memberships?view=FULL&pageSize=501"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(&backend, "an unknown group's memberships", "/v1/groups/0000/memberships", 404, "NOT_FOUND").await;

    let member = encode("member_key_id == 'dave@example.com'");
    let labelled = encode(
        "member_key_id == 'dave@example.com' && 'cloudidentity.googleapis.com/groups.discussion_forum' in labels",
    );
    accepted(&backend, "direct groups", &format!("/v1/groups/-/memberships:searchDirectGroups?query={member}")).await;
    refused(
        &backend,
        "direct groups need a member query",
        "/v1/groups/-/memberships:searchDirectGroups",
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &backend,
        "direct groups search across groups/-",
        &format!("/v1/{group}/memberships:searchDirectGroups?query={member}"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let transitive = accepted(
        &backend,
        "transitive groups, with a label",
        &format!("/v1/groups/-/memberships:searchTransitiveGroups?query={labelled}"),
    )
    .await;
    assert_eq!(transitive["memberships"].as_array().map(Vec::len), Some(2), "oncall and everyone: {transitive}");
    refused(
        &backend,
        "transitive groups need a label in the query",
        &format!("/v1/groups/-/memberships:searchTransitiveGroups?query={member}"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &backend,
        "at most 1000 a page",
        &format!("/v1/groups/-/memberships:searchTransitiveGroups?query={labelled}&pageSize=1001"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    accepted(&backend, "transitive memberships", &format!("/v1/{group}/memberships:searchTransitiveMemberships")).await;

    // An edition without transitive search: 403, as Google answers.
    let ordinary = backend_with_settings(Settings { transitive_group_search: false, ..Settings::default() }).await;
    refused(
        &ordinary,
        "transitive groups need Enterprise or Premium",
        &format!("/v1/groups/-/memberships:searchTransitiveGroups?query={labelled}"),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    refused(
        &ordinary,
        "transitive memberships need Enterprise or Premium",
        &format!("/v1/{group}/memberships:searchTransitiveMemberships"),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    accepted(
        &ordinary,
        "direct groups in any edition",
        &format!("/v1/groups/-/memberships:searchDirectGroups?query={member}"),
    )
    .await;
}

#[tokio::test]
async fn search_folders_rules() {
    let backend = backend().await;
    let all = accepted(&backend, "no query returns every folder the caller may see", "/v3/folders:search").await;
    assert_eq!(all["folders"].as_array().map(Vec::len), Some(2), "{all}");
    let rule = "query restricts on displayName, state and parent";
    let sandbox =
        accepted(&backend, rule, &format!("/v3/folders:search?query={}", encode("displayName=sandbox"))).await;
    assert_eq!(sandbox["folders"][0]["name"], "folders/200000000002", "{sandbox}");
    refused(&backend, rule, &format!("/v3/folders:search?query={}", encode("owner=alice")), 400, "INVALID_ARGUMENT")
        .await;
    let paged = accepted(&backend, "pageSize bounds a page", "/v3/folders:search?pageSize=1").await;
    assert!(paged["nextPageToken"].is_string(), "{paged}");
    refused(
        &backend,
        "a page token comes from a previous call",
        "/v3/folders:search?pageToken=forged",
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

/// `POST`/`PATCH path` with a JSON body: status and Google's `error.status`.
async fn send(backend: &Backend, method: &str, path: &str, body: Value) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = backend.http.request(method, backend.url(path)).json(&body).send().await.expect("answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["status"].as_str().unwrap_or("").to_string(), body)
}

#[tokio::test]
async fn google_chat_rules() {
    let backend = backend().await;
    let bob = emulator::chat::user_of("bob@example.com");
    let space = emulator::state::lock(&backend.emulator.state.chat).add("bob@example.com", None)["name"]
        .as_str()
        .expect("space")
        .to_string();

    // spaces.findDirectMessage
    let find = |name: &str| format!("/v1/spaces:findDirectMessage?name={}", encode(name));
    refused(&backend, "name is required", "/v1/spaces:findDirectMessage", 400, "INVALID_ARGUMENT").await;
    refused(&backend, "name is users/{user}", &find("bob"), 400, "INVALID_ARGUMENT").await;
    refused(&backend, "an address needs user authentication", &find("users/bob@example.com"), 400, "INVALID_ARGUMENT")
        .await;
    refused(&backend, "no direct message with the app", &find("users/42"), 404, "NOT_FOUND").await;
    let found = accepted(&backend, "a person who added the app", &find(&bob)).await;
    assert_eq!(found["name"], space.as_str());

    // spaces.messages.create
    let card = serde_json::json!([{"cardId": "c", "card": {"header": {"title": "t"}}}]);
    let create = |query: &str| format!("/v1/{space}/messages?{query}");
    let body = serde_json::json!({"text": "hi", "cardsV2": card});
    for (rule, query) in [
        ("messageId starts with client-", "messageId=abc"),
        ("messageId: lowercase, digits, hyphens", "messageId=client-ABC"),
        ("messageId: 63 characters at most", &format!("messageId=client-{}", "a".repeat(57))),
    ] {
        let (status, name, answer) = send(&backend, "POST", &create(query), body.clone()).await;
        assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "{rule}: {answer}");
    }
    let (status, _, answer) = send(&backend, "POST", "/v1/spaces/elsewhere/messages", body.clone()).await;
    assert_eq!(status, 404, "the app must be in the space: {answer}");
    let (status, _, answer) = send(&backend, "POST", &create("messageId=client-a"), serde_json::json!({})).await;
    assert_eq!(status, 400, "a message needs text or cards: {answer}");
    let two = serde_json::json!({"cardsV2": [{"card": {}}, {"card": {}}]});
    let (status, _, answer) = send(&backend, "POST", &create("messageId=client-a"), two).await;
    assert_eq!(status, 400, "several cards each need a cardId: {answer}");
    let (status, _, first) =
        send(&backend, "POST", &create("messageId=client-a&requestId=client-a"), body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, _, again) =
        send(&backend, "POST", &create("messageId=client-a&requestId=client-a"), body.clone()).await;
    assert_eq!((status, &again["name"]), (200, &first["name"]), "a repeated requestId returns its message");
    let (status, name, answer) =
        send(&backend, "POST", &create("messageId=client-a&requestId=other"), body.clone()).await;
    assert_eq!((status, name.as_str()), (409, "ALREADY_EXISTS"), "a messageId is used once: {answer}");

    // spaces.messages.patch
    let message = format!("/v1/{space}/messages/client-a");
    let (status, _, answer) = send(&backend, "PATCH", &message, serde_json::json!({"cardsV2": card})).await;
    assert_eq!(status, 400, "updateMask is required: {answer}");
    let (status, _, answer) = send(&backend, "PATCH", &format!("{message}?updateMask=sender"), body.clone()).await;
    assert_eq!(status, 400, "only updatable fields: {answer}");
    let missing = format!("/v1/{space}/messages/client-b?updateMask=cardsV2");
    let (status, _, answer) = send(&backend, "PATCH", &missing, body.clone()).await;
    assert_eq!(status, 404, "the message must exist: {answer}");
    let (status, _, answer) = send(&backend, "PATCH", &format!("{message}?updateMask=cardsV2"), body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn the_emulator_answers_only_loopback_hosts() {
    let backend = backend().await;
    for host in ["rebind.evil.example", "rebind.evil.example:8081", "127.0.0.1.evil.example"] {
        let response =
            backend.http.get(backend.url("/_emulator/mail")).header("host", host).send().await.expect("answers");
        assert_eq!(response.status(), 403, "Host: {host}");
    }
    let port = backend.emulator.address.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let response =
            backend.http.get(backend.url("/_emulator/mail")).header("host", &host).send().await.expect("answers");
        assert_eq!(response.status(), 200, "Host: {host}");
    }
}
