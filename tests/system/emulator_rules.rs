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

/// project-1's policy as version 3, with `bindings` added, written back with its etag.
async fn set_with(backend: &Backend, bindings: Value) -> (u16, String, Value) {
    let (_, _, mut policy) = send(
        backend,
        "POST",
        "/v3/projects/project-1:getIamPolicy",
        serde_json::json!({"options": {"requestedPolicyVersion": 3}}),
    )
    .await;
    let list = policy["bindings"].as_array_mut().expect("bindings");
    list.extend(bindings.as_array().cloned().unwrap_or_default());
    send(backend, "POST", "/v3/projects/project-1:setIamPolicy", serde_json::json!({"policy": policy})).await
}

fn conditional(role: &str, member: &str) -> Value {
    serde_json::json!([{"role": role, "members": [member],
        "condition": {"title": "t", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}}])
}

#[tokio::test]
async fn set_iam_policy_refuses_conditions_on_basic_roles_and_on_everyone() {
    let backend = backend().await;
    for role in ["roles/owner", "roles/editor", "roles/viewer"] {
        let (status, name, body) = set_with(&backend, conditional(role, "user:alice@example.com")).await;
        assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "a condition on the basic role {role}: {body}");
    }
    for everyone in ["allUsers", "allAuthenticatedUsers"] {
        let (status, name, body) = set_with(&backend, conditional("roles/storage.objectViewer", everyone)).await;
        assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "a condition for {everyone}: {body}");
    }
    let (status, _, body) =
        set_with(&backend, conditional("roles/storage.objectViewer", "user:alice@example.com")).await;
    assert_eq!(status, 200, "a condition on a predefined role: {body}");
    let (status, _, body) =
        set_with(&backend, serde_json::json!([{"role": "roles/viewer", "members": ["user:alice@example.com"]}])).await;
    assert_eq!(status, 200, "a basic role without a condition: {body}");
    let world = "organization:\n  id: \"1\"\nprojects:\n  - id: p\n    bindings:\n      - role: roles/viewer\n        members: [user:a@example.com]\n        condition: {title: t, expression: \"has({}.jitAccessConstraint)\"}\n";
    let refused = emulator::World::new(emulator::WorldFile::parse(world).expect("parses"));
    assert!(refused.is_err(), "an organization file cannot hold what Google refuses");
}

#[tokio::test]
async fn set_iam_policy_keeps_deleted_members_as_given() {
    let backend = backend().await;
    let deleted = [
        "deleted:user:gone@example.com?uid=123456789012345678901",
        "deleted:group:old-team@example.com?uid=98765",
        "deleted:serviceAccount:old@project-1.iam.gserviceaccount.com?uid=42",
    ];
    let binding = serde_json::json!([{"role": "roles/storage.objectViewer", "members": deleted}]);
    let (status, _, stored) = set_with(&backend, binding).await;
    assert_eq!(status, 200, "{stored}");
    let written = stored["bindings"].as_array().expect("bindings").last().expect("binding").clone();
    assert_eq!(written["members"], serde_json::json!(deleted), "returned as given");
    for malformed in ["deleted:user:gone@example.com", "deleted:user:gone@example.com?uid=x", "deleted:alice"] {
        let binding = serde_json::json!([{"role": "roles/storage.objectViewer", "members": [malformed]}]);
        let (status, _, body) = set_with(&backend, binding).await;
        assert_eq!(status, 400, "{malformed}: {body}");
    }
}

#[tokio::test]
async fn get_iam_policy_honours_the_requested_policy_version() {
    let backend = backend().await;
    let get = |version: Value| {
        let body = if version.is_null() {
            serde_json::json!({})
        } else {
            serde_json::json!({"options": {"requestedPolicyVersion": version}})
        };
        send(&backend, "POST", "/v3/projects/project-1:getIamPolicy", body)
    };
    let (_, _, three) = get(serde_json::json!(3)).await;
    assert_eq!(three["version"], 3, "version 3 shows conditions: {three}");
    let conditional =
        three["bindings"].as_array().expect("bindings").iter().filter(|b| b["condition"].is_object()).count();
    assert!(conditional > 0, "{three}");
    for version in [Value::Null, serde_json::json!(0), serde_json::json!(1), serde_json::json!("1")] {
        let (status, _, one) = get(version.clone()).await;
        assert_eq!((status, &one["version"]), (200, &serde_json::json!(1)), "version {version}: {one}");
        let bindings = one["bindings"].as_array().expect("bindings");
        assert!(bindings.iter().all(|b| b["condition"].is_null()), "below 3 no condition is shown: {one}");
        let hidden = bindings.iter().filter(|b| b["role"].as_str().is_some_and(|r| r.contains("_withcond_"))).count();
        assert_eq!(hidden, conditional, "each conditional binding shows as ROLE_withcond_HASH: {one}");
        assert_eq!(one["etag"], three["etag"]);
    }
    for invalid in [2, 4, -1] {
        let (status, name, body) = get(serde_json::json!(invalid)).await;
        assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "version {invalid}: {body}");
    }
    // A version-1 read written back would drop every condition: refused with the etag.
    let (_, _, one) = get(serde_json::json!(1)).await;
    let (status, _, body) =
        send(&backend, "POST", "/v3/projects/project-1:setIamPolicy", serde_json::json!({"policy": one})).await;
    assert_eq!(status, 400, "a version-1 read cannot be written back over conditions: {body}");
}

#[tokio::test]
async fn a_policy_names_at_most_1500_principals_and_250_groups() {
    let backend = backend().await;
    let (_, _, policy) = send(
        &backend,
        "POST",
        "/v3/projects/project-1:getIamPolicy",
        serde_json::json!({"options": {"requestedPolicyVersion": 3}}),
    )
    .await;
    let present: usize = policy["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| b["members"].as_array().map_or(0, Vec::len))
        .sum();
    let users = |count: usize| -> Value {
        let members: Vec<String> = (0..count).map(|i| format!("user:u{i}@example.com")).collect();
        serde_json::json!([{"role": "roles/storage.objectViewer", "members": members}])
    };
    let (status, _, body) = set_with(&backend, users(1_500 - present)).await;
    assert_eq!(status, 200, "1,500 principals in all: {}", body["error"]);
    let backend = crate::support::backend().await;
    let (status, name, body) = set_with(&backend, users(1_501 - present)).await;
    assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "1,501 principals: {}", body["error"]);
    let groups: Vec<String> = (0..251).map(|i| format!("group:g{i}@example.com")).collect();
    let (status, _, body) =
        set_with(&backend, serde_json::json!([{"role": "roles/storage.objectViewer", "members": groups}])).await;
    assert_eq!(status, 400, "251 groups: {}", body["error"]);
}

#[tokio::test]
async fn domain_restricted_sharing_refuses_new_members_outside_the_allowed_domains() {
    let backend = backend().await;
    let grant = |member: &str| serde_json::json!([{"role": "roles/storage.objectViewer", "members": [member]}]);
    for outsider in
        ["user:mallory@other.com", "group:team@other.com", "domain:other.com", "allUsers", "allAuthenticatedUsers"]
    {
        let (status, name, body) = set_with(&backend, grant(outsider)).await;
        assert_eq!((status, name.as_str()), (400, "FAILED_PRECONDITION"), "{outsider}: {body}");
        assert_eq!(
            body["error"]["message"], "One or more users named in the policy do not belong to a permitted customer.",
            "Google's message"
        );
        assert_eq!(body["error"]["details"][0]["violations"][0]["type"], "constraints/iam.allowedPolicyMemberDomains");
    }
    for insider in [
        "user:new@example.com",
        "group:new-team@example.com",
        "domain:example.com",
        "serviceAccount:x@p.iam.gserviceaccount.com",
    ] {
        let (status, _, body) = set_with(&backend, grant(insider)).await;
        assert_eq!(status, 200, "{insider}: {body}");
    }
    // Members already in a policy stay: the constraint is not retroactive.
    let world = "organization:\n  id: \"1\"\n  allowed_policy_member_domains: [example.com]\nprojects:\n  - id: project-1\n    bindings:\n      - role: roles/storage.objectViewer\n        members: [user:old@other.com]\n";
    let backend = backend_with(world, "organizations/1").await;
    let (status, _, body) = set_with(&backend, grant("user:new@example.com")).await;
    assert_eq!(status, 200, "a member outside the domains from before the policy is kept: {body}");
}

#[tokio::test]
async fn project_search_requires_every_field_and_any_value_of_a_field() {
    let backend = backend().await;
    let search = |query: &str| format!("/v3/projects:search?query={}", encode(query));
    let ids = |body: &Value| -> Vec<String> {
        body["projects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["projectId"].as_str().map(str::to_string))
            .collect()
    };
    let cases: [(&str, &[&str]); 7] = [
        ("state:ACTIVE", &["project-1", "project-2"]),
        ("state:ACTIVE parent:folders/200000000001", &["project-1"]),
        ("id:project-1 id:project-2", &["project-1", "project-2"]),
        ("id:project-1 id:project-2 parent:organizations/100000000001", &["project-2"]),
        ("projectId:PROJECT-* lifecycleState:active", &["project-1", "project-2"]),
        ("parent.type:folder parent.id:200000000001", &["project-1"]),
        ("labels.color:red", &[]),
    ];
    for (query, expected) in cases {
        let body = accepted(&backend, query, &search(query)).await;
        assert_eq!(ids(&body), expected, "{query}");
    }
    refused(&backend, "explicit OR is not served", &search("id:project-1 OR id:project-2"), 400, "INVALID_ARGUMENT")
        .await;
    refused(&backend, "an unknown field", &search("owner:alice"), 400, "INVALID_ARGUMENT").await;
}

#[tokio::test]
async fn folder_search_returns_deleted_folders_unless_asked_for_active_ones() {
    let world = "organization:\n  id: \"1\"\nfolders:\n  - id: \"2\"\n  - id: \"3\"\n    state: DELETE_REQUESTED\n";
    let backend = backend_with(world, "organizations/1").await;
    let names = |body: &Value| -> Vec<String> {
        body["folders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect()
    };
    let all = accepted(&backend, "no query: every folder", "/v3/folders:search").await;
    assert_eq!(names(&all), ["folders/2", "folders/3"]);
    let active =
        accepted(&backend, "state=ACTIVE", &format!("/v3/folders:search?query={}", encode("state=ACTIVE"))).await;
    assert_eq!(names(&active), ["folders/2"]);
}

#[tokio::test]
async fn expand_resources_takes_a_project_selector_not_a_folder_or_organization() {
    let backend = backend().await;
    let base = format!("/v1/{SCOPE}:analyzeIamPolicy?analysisQuery.options.expandResources=true");
    let on = |name: &str| {
        format!(
            "{base}&analysisQuery.resourceSelector.fullResourceName={}",
            encode(&format!("//cloudresourcemanager.googleapis.com/{name}"))
        )
    };
    accepted(&backend, "a project", &on("projects/project-1")).await;
    refused(&backend, "a folder", &on("folders/200000000001"), 400, "INVALID_ARGUMENT").await;
    refused(&backend, "the organization", &on("organizations/100000000001"), 400, "INVALID_ARGUMENT").await;
}

#[tokio::test]
async fn analysis_conditions_on_time_need_an_access_time_and_it_is_not_in_the_past() {
    let backend = backend().await;
    let base = format!(
        "/v1/{SCOPE}:analyzeIamPolicy?analysisQuery.identitySelector.identity={}&analysisQuery.resourceSelector.fullResourceName={}",
        encode("user:alice@example.com"),
        encode("//cloudresourcemanager.googleapis.com/projects/project-1")
    );
    let audit_binding = |body: &Value| -> String {
        body["mainAnalysis"]["analysisResults"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["iamBinding"]["role"] == "roles/compute.viewer")
            .map(|r| {
                r["accessControlLists"][0]["conditionEvaluation"]["evaluationValue"].as_str().unwrap_or("").to_string()
            })
            .unwrap_or_default()
    };
    let without = accepted(&backend, "no access time", &base).await;
    assert_eq!(audit_binding(&without), "CONDITIONAL", "request.time is a missing input");
    let soon = common::timestamp::Timestamp::now().plus_seconds(60).to_string();
    let with = accepted(
        &backend,
        "an access time",
        &format!("{base}&analysisQuery.conditionContext.accessTime={}", encode(&soon)),
    )
    .await;
    assert_eq!(audit_binding(&with), "TRUE", "the audit binding runs to 2030");
    refused(
        &backend,
        "an access time in the past",
        &format!("{base}&analysisQuery.conditionContext.accessTime={}", encode("2020-01-01T00:00:00Z")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let eleven: Vec<String> = (0..11).map(|i| format!("analysisQuery.accessSelector.permissions=p.r.{i}")).collect();
    refused(
        &backend,
        "at most 10 roles and permissions",
        &format!("{base}&{}", eleven.join("&")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn sign_jwt_refuses_an_exp_past_12_hours_and_adds_one_hour_when_there_is_none() {
    let backend = backend().await;
    let path = "/v1/projects/-/serviceAccounts/jitaccess@jit-project.iam.gserviceaccount.com:signJwt";
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let sign = |payload: Value| send(&backend, "POST", path, serde_json::json!({"payload": payload.to_string()}));
    let (status, name, body) = sign(serde_json::json!({"sub": "x", "exp": now + 12 * 3600 + 60})).await;
    assert_eq!((status, name.as_str()), (400, "INVALID_ARGUMENT"), "more than 12 hours ahead: {body}");
    let (status, _, body) = sign(serde_json::json!({"sub": "x", "exp": now - 60})).await;
    assert_eq!(status, 400, "in the past: {body}");
    let (status, _, body) = sign(serde_json::json!({"sub": "x", "exp": "soon"})).await;
    assert_eq!(status, 400, "not an integer: {body}");
    let (status, _, body) = sign(serde_json::json!({"sub": "x", "exp": now + 12 * 3600 - 60})).await;
    assert_eq!(status, 200, "within 12 hours: {body}");
    let (status, _, body) = sign(serde_json::json!({"sub": "x"})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["signedJwt"].as_str().expect("signed");
    let claims = token.split('.').nth(1).expect("claims");
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).expect("base64"))
            .expect("json");
    let exp = claims["exp"].as_i64().expect("exp added");
    assert!((now + 3590..=now + 3610).contains(&exp), "one hour from now: {claims}");
}

#[tokio::test]
async fn chat_messages_hold_at_most_32000_bytes_and_request_ids_are_forgotten_after_an_hour() {
    let backend = backend().await;
    let space = emulator::state::lock(&backend.emulator.state.chat).add("bob@example.com", None)["name"]
        .as_str()
        .expect("space")
        .to_string();
    let create = |query: &str| format!("/v1/{space}/messages?{query}");
    let (status, _, body) =
        send(&backend, "POST", &create("messageId=client-big"), serde_json::json!({"text": "x".repeat(32_001)})).await;
    assert_eq!(status, 400, "more than 32,000 bytes: {}", body["error"]);
    let card = |size: usize| serde_json::json!([{"cardId": "c", "card": {"header": {"title": "x".repeat(size)}}}]);
    let (status, _, body) =
        send(&backend, "POST", &create("messageId=client-big"), serde_json::json!({"cardsV2": card(32_000)})).await;
    assert_eq!(status, 400, "text and cards count together: {}", body["error"]);
    let (status, _, body) = send(
        &backend,
        "POST",
        &create("messageId=client-a&requestId=r-a"),
        serde_json::json!({"text": "x".repeat(31_000)}),
    )
    .await;
    assert_eq!(status, 200, "{}", body["error"]);
    let message = format!("/v1/{space}/messages/client-a?updateMask=cardsV2");
    let (status, _, body) = send(&backend, "PATCH", &message, serde_json::json!({"cardsV2": card(2_000)})).await;
    assert_eq!(status, 400, "an update keeps within 32,000 bytes: {}", body["error"]);

    let (status, _, again) =
        send(&backend, "POST", &create("messageId=client-a&requestId=r-a"), serde_json::json!({"text": "hi"})).await;
    assert_eq!(status, 200, "within the hour a repeated requestId returns its message: {again}");
    let elapsed = emulator::chat::REQUEST_ID_MINUTES * 60;
    let response = backend
        .http
        .post(backend.url("/_emulator/clock"))
        .json(&serde_json::json!({"advanceSeconds": elapsed}))
        .send()
        .await;
    assert_eq!(response.expect("answers").status(), 204);
    let (status, name, body) =
        send(&backend, "POST", &create("messageId=client-a&requestId=r-a"), serde_json::json!({"text": "hi"})).await;
    assert_eq!(
        (status, name.as_str()),
        (409, "ALREADY_EXISTS"),
        "after the hour the create is new, and its messageId is taken: {body}"
    );
}

#[tokio::test]
async fn a_group_of_another_customer_is_found_but_its_memberships_are_refused() {
    let world = "organization:\n  id: \"1\"\ngroups:\n  - email: team@example.com\n    members: [user:ann@example.com, group:partners@other.com]\n  - email: partners@other.com\n    external: true\n    members: [user:ann@example.com, user:carl@other.com]\n";
    let backend = backend_with(world, "organizations/1").await;
    let lookup = accepted(&backend, "lookup finds it", "/v1/groups:lookup?groupKey.id=partners%40other.com").await;
    let group = lookup["name"].as_str().expect("groups/ID").to_string();
    refused(
        &backend,
        "memberships of another customer's group",
        &format!("/v1/{group}/memberships"),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    refused(
        &backend,
        "transitive memberships of another customer's group",
        &format!("/v1/{group}/memberships:searchTransitiveMemberships"),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    let query = encode("member_key_id == 'ann@example.com'");
    let direct =
        accepted(&backend, "direct groups", &format!("/v1/groups/-/memberships:searchDirectGroups?query={query}"))
            .await;
    let groups: Vec<&str> =
        direct["memberships"].as_array().into_iter().flatten().filter_map(|m| m["groupKey"]["id"].as_str()).collect();
    assert_eq!(groups, ["team@example.com"], "groups one may not view are filtered out");
}

#[tokio::test]
async fn memberships_carry_their_type_in_the_full_view_only() {
    let backend = backend().await;
    let lookup = accepted(&backend, "lookup", "/v1/groups:lookup?groupKey.id=oncall%40example.com").await;
    let group = lookup["name"].as_str().expect("groups/ID").to_string();
    let basic = accepted(&backend, "BASIC", &format!("/v1/{group}/memberships")).await;
    assert!(basic["memberships"].as_array().expect("members").iter().all(|m| m["type"].is_null()), "{basic}");
    let full = accepted(&backend, "FULL", &format!("/v1/{group}/memberships?view=FULL")).await;
    let types: Vec<&str> =
        full["memberships"].as_array().expect("members").iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(types, ["USER", "GROUP"], "{full}");
}

#[tokio::test]
async fn cloud_identity_queries_are_cel_with_escaped_string_literals() {
    let world =
        "organization:\n  id: \"1\"\ngroups:\n  - email: team@example.com\n    members: [user:o'neil@example.com]\n";
    let backend = backend_with(world, "organizations/1").await;
    let search = |query: &str| format!("/v1/groups/-/memberships:searchDirectGroups?query={}", encode(query));
    let found = accepted(&backend, "an escaped quote", &search(r"member_key_id == 'o\'neil@example.com'")).await;
    assert_eq!(found["memberships"][0]["groupKey"]["id"], "team@example.com", "{found}");
    refused(
        &backend,
        "an unescaped quote ends the literal",
        &search("member_key_id == 'o'neil@example.com'"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn a_query_that_needs_a_composite_index_fails_unless_it_is_declared() {
    let backend = backend().await;
    let path = "/v1/projects/jit-project/databases/(default)/documents:runQuery";
    let query = |field: &str| {
        serde_json::json!({"structuredQuery": {
            "from": [{"collectionId": "requests"}],
            "where": {"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": {"stringValue": "x"}}},
            "orderBy": [{"field": {"fieldPath": "requestedAt"}, "direction": "DESCENDING"}],
        }})
    };
    let response = backend.http.post(backend.url(path)).json(&query("beneficiary")).send().await.expect("answers");
    assert_eq!(response.status(), 200, "declared in firestore-indexes.json");
    let response = backend.http.post(backend.url(path)).json(&query("justification")).send().await.expect("answers");
    assert_eq!(response.status(), 400);
    let stream: Value = response.json().await.expect("json");
    assert_eq!(stream[0]["error"]["status"], "FAILED_PRECONDITION", "the error is the stream's one item: {stream}");
    let message = stream[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("The query requires an index"), "{message}");
    let terraform =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../terraform/modules/jit-access/ledger.tf"))
            .expect("ledger.tf");
    assert!(terraform.contains("firestore-indexes.json"), "Terraform deploys the indexes the emulator knows");
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
