//! The REST adapters (Firestore's ledger and Chat directory, Cloud Identity's groups) against
//! the emulator where it holds them to what Google does: percent-encoded document IDs, a
//! query's missing index, an error inside a query's stream, 503s on reads, the FULL view of
//! memberships, groups of another customer, and addresses inside CEL string literals.

use std::collections::BTreeSet;

use common::gcp::GcpError;
use common::gcp::chat::{ChatUser, ChatUsers};
use common::gcp::groups::{self, GroupDirectory};
use common::gcp::ledger::Ledger;
use common::gcp::rest::RestClient;
use common::http::ApiError;

use crate::support::{Backend, backend, backend_with, email};

const DATABASE: &str = "projects/jit-project/databases/(default)";

fn ledger(backend: &Backend) -> Ledger {
    Ledger::new(reqwest::Client::new(), &backend.emulator.url(), DATABASE, 400).expect("ledger")
}

/// An organization on Cloud Identity Free (no transitive search), with nested groups, a group
/// of another customer, and an address with a quote in it.
const GROUPS: &str = r#"
settings:
  transitive_group_search: false
organization:
  id: "1"
groups:
  - email: team@example.com
    members: [user:ann@example.com, group:nested@example.com]
  - email: nested@example.com
    members: [user:o'neil@example.com]
  - email: mixed@example.com
    members: [user:erin@example.com, group:partners@other.com, group:nested@example.com]
  - email: partners@other.com
    external: true
    members: [user:carl@other.com]
"#;

fn directory(backend: &Backend) -> GroupDirectory {
    let rest = RestClient::new(reqwest::Client::new(), &backend.settings.cloud_identity_endpoint, &[groups::SCOPE])
        .expect("client");
    GroupDirectory::new(rest)
}

fn emails(list: &[&str]) -> BTreeSet<common::email::Email> {
    list.iter().map(|e| email(e)).collect()
}

#[tokio::test]
async fn the_group_walk_lists_memberships_in_the_full_view_to_tell_users_from_groups() {
    let backend = backend_with(GROUPS, "organizations/1").await;
    let members = directory(&backend).members_of("team@example.com").await.expect("walked");
    assert_eq!(members, emails(&["ann@example.com", "o'neil@example.com"]), "users, through the nested group");
}

#[tokio::test]
async fn a_group_of_another_customer_is_skipped_not_a_failed_reviewer_lookup() {
    for transitive in [false, true] {
        let yaml = GROUPS.replace("transitive_group_search: false", &format!("transitive_group_search: {transitive}"));
        let backend = backend_with(&yaml, "organizations/1").await;
        let directory = directory(&backend);
        let members = directory.members_of("mixed@example.com").await.expect("not a failure");
        assert_eq!(members, emails(&["erin@example.com", "o'neil@example.com"]), "transitive search {transitive}");
        let outside = directory.members_of("partners@other.com").await.expect("not a failure");
        assert!(outside.is_empty(), "{outside:?}");
    }
}

#[tokio::test]
async fn an_address_with_a_quote_is_a_cel_string_literal_in_group_searches() {
    for transitive in [false, true] {
        let yaml = GROUPS.replace("transitive_group_search: false", &format!("transitive_group_search: {transitive}"));
        let backend = backend_with(&yaml, "organizations/1").await;
        let groups = directory(&backend).groups_of(&email("o'neil@example.com")).await.expect("searched");
        let expected: BTreeSet<String> =
            ["mixed@example.com", "nested@example.com", "team@example.com"].map(String::from).into();
        assert_eq!(groups, expected, "transitive search {transitive}");
    }
}

#[tokio::test]
async fn a_chat_user_whose_address_holds_a_percent_sign_is_found() {
    let backend = backend().await;
    let users = ChatUsers::new(reqwest::Client::new(), &backend.emulator.url(), DATABASE).expect("client");
    let user = ChatUser { user: "users/123".into(), space: Some("spaces/dm-123".into()) };
    for address in ["a%41b@example.com", "a%b@example.com", "o'neil@example.com"] {
        users.put(&email(address), &user).await.expect("recorded");
        assert_eq!(users.get(&email(address)).await.expect("read"), Some(user.clone()), "{address}");
    }
    assert_eq!(users.get(&email("aab@example.com")).await.expect("read"), None, "%41 is not an A");
}

#[tokio::test]
async fn a_ledger_query_without_its_index_says_the_index_is_missing_not_that_iam_kept_changing() {
    let backend = backend().await;
    emulator::state::lock(&backend.emulator.state.firestore).set_indexes(Vec::new());
    let error = ledger(&backend).made_by(&email("alice@example.com"), 10).await.expect_err("no index");
    let GcpError::FailedPrecondition(detail) = &error else { panic!("{error:?}") };
    assert!(detail.contains("missing or still building") && detail.contains("firestore-indexes.json"), "{detail}");
    let api = ApiError::from(error);
    assert_ne!(api.code(), "concurrent_modification", "{api:?}");

    // Still building: the same refusal, and the message says so.
    let building: Vec<emulator::firestore::Index> = emulator::firestore::declared_indexes()
        .expect("declared")
        .into_iter()
        .map(|index| emulator::firestore::Index { state: "CREATING".into(), ..index })
        .collect();
    emulator::state::lock(&backend.emulator.state.firestore).set_indexes(building);
    let error = ledger(&backend).naming_reviewer(&email("bob@example.com"), 10).await.expect_err("building");
    assert!(matches!(&error, GcpError::FailedPrecondition(d) if d.contains("currently building")), "{error:?}");
}

#[tokio::test]
async fn an_error_inside_a_query_stream_fails_the_query() {
    let backend = backend().await;
    let fault = serde_json::json!({"api": "firestore", "method": "runQuery", "status": 500, "inStream": true});
    let response = backend.http.post(backend.url("/_emulator/faults")).json(&fault).send().await.expect("answers");
    assert_eq!(response.status(), 204);
    let result = ledger(&backend).open_page(None, 10).await;
    assert!(matches!(result, Err(GcpError::Unavailable(_))), "a part of a result is not all of it: {result:?}");
}

#[tokio::test]
async fn ledger_reads_are_tried_again_after_a_503_and_writes_are_not() {
    let backend = backend().await;
    let ledger = ledger(&backend);
    backend.inject("firestore", "get", 503, 2).await;
    assert_eq!(ledger.get("mpa-none").await.expect("third time lucky"), None);
    assert_eq!(backend.calls("firestore.get").await, 3);
    backend.inject("firestore", "runQuery", 503, 2).await;
    assert_eq!(ledger.open_page(None, 10).await.expect("third time lucky"), Vec::new());
    assert_eq!(backend.calls("firestore.runQuery").await, 3);
    backend.inject("firestore", "get", 503, 3).await;
    assert!(matches!(ledger.get("mpa-none").await, Err(GcpError::Unavailable(_))), "two retries, no more");

    let users = ChatUsers::new(reqwest::Client::new(), &backend.emulator.url(), DATABASE).expect("client");
    backend.inject("firestore", "commit", 503, 1).await;
    let user = ChatUser { user: "users/1".into(), space: None };
    assert!(matches!(users.put(&email("bob@example.com"), &user).await, Err(GcpError::Unavailable(_))));
    assert_eq!(backend.calls("firestore.commit").await, 1, "a commit is not repeated blindly");
}
