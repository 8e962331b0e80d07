//! The emulator speaks Google's wire format: error bodies, etag semantics, paging, and
//! SendGrid's validation. Plain HTTP here on purpose: this checks the wire, not our clients.

use serde_json::{Value, json};

use crate::support::{backend, json_answer};

async fn post(backend: &crate::support::Backend, path: &str, body: Value) -> (u16, Value) {
    let response = backend.http.post(backend.url(path)).json(&body).send().await.expect("answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_stale_etag_is_refused_with_409_aborted() {
    let backend = backend().await;
    let (_, policy) =
        post(&backend, "/v3/projects/project-1:getIamPolicy", json!({"options": {"requestedPolicyVersion": 3}})).await;
    let (status, _) = post(&backend, "/v3/projects/project-1:setIamPolicy", json!({"policy": policy})).await;
    assert_eq!(status, 200, "the first write with the etag wins");
    let (status, body) = post(&backend, "/v3/projects/project-1:setIamPolicy", json!({"policy": policy})).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["status"], "ABORTED");
    assert_eq!(body["error"]["code"], 409);
}

#[tokio::test]
async fn conditions_need_policy_version_3() {
    let backend = backend().await;
    let policy = json!({"version": 1, "bindings": [{"role": "roles/storage.objectViewer", "members": ["user:a@example.com"],
        "condition": {"title": "t", "expression": "true"}}]});
    let (status, body) = post(&backend, "/v3/projects/project-1:setIamPolicy", json!({"policy": policy})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn v1_paths_serve_the_same_policy() {
    let backend = backend().await;
    let (status_v1, v1) = post(&backend, "/v1/projects/project-1:getIamPolicy", json!({})).await;
    let (_, v3) = post(&backend, "/v3/projects/project-1:getIamPolicy", json!({})).await;
    assert_eq!(status_v1, 200);
    assert_eq!(v1, v3);
    let (status, _) = post(&backend, "/v3/projects/300000000001:getIamPolicy", json!({})).await;
    assert_eq!(status, 200, "a project number names the project too");
}

#[tokio::test]
async fn unknown_paths_and_projects_get_googles_error_shape() {
    let backend = backend().await;
    let (status, body) = post(&backend, "/v3/projects/nope:getIamPolicy", json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    let (status, body) = post(&backend, "/v9/whatever", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn project_search_pages() {
    let backend = backend().await;
    let first: Value =
        json_answer(backend.http.get(backend.url("/v3/projects:search?query=state%3AACTIVE&pageSize=1"))).await;
    assert_eq!(first["projects"][0]["projectId"], "project-1");
    let token = first["nextPageToken"].as_str().expect("more pages");
    let second: Value =
        json_answer(backend.http.get(backend.url(&format!("/v3/projects:search?pageSize=1&pageToken={token}")))).await;
    assert_eq!(second["projects"][0]["projectId"], "project-2");
    assert!(second.get("nextPageToken").is_none());
}

#[tokio::test]
async fn sendgrid_capture_validates_like_sendgrid() {
    let backend = backend().await;
    let mail = json!({
        "personalizations": [{"to": [{"email": "bob@example.com"}]}],
        "from": {"email": "jit@example.com", "name": "JIT Access"},
        "subject": "Alice requests access",
        "content": [{"type": "text/plain", "value": "hello"}],
    });
    let send = |body: Value, key: Option<&'static str>| {
        let mut request = backend.http.post(backend.url("/v3/mail/send")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(send(mail.clone(), None).await, 401);
    let mut no_recipient = mail.clone();
    no_recipient["personalizations"] = json!([{"to": []}]);
    assert_eq!(send(no_recipient, Some("SG.key")).await, 400);
    let mut no_content = mail.clone();
    no_content.as_object_mut().expect("object").remove("content");
    assert_eq!(send(no_content, Some("SG.key")).await, 400);
    assert_eq!(send(mail.clone(), Some("SG.key")).await, 202);
    let captured: Vec<Value> = backend.get_json("/_emulator/mail").await;
    assert_eq!(captured, vec![mail]);
}
