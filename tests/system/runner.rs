//! Every function serves its router through the shared runner: health routes answer, and an
//! unknown route gets the JSON error shape rather than an empty 404.

use axum::Router;

fn functions() -> Vec<(&'static str, Router)> {
    vec![
        ("list-eligibility", list_eligibility::router()),
        ("request-approval", request_approval::router()),
        ("approve", approve::router()),
        ("mailer", mailer::router()),
    ]
}

#[tokio::test]
async fn every_function_answers_health_and_json_errors() {
    let client = reqwest::Client::new();
    for (name, router) in functions() {
        let address = common::runner::spawn_local(common::runner::app(router))
            .await
            .expect("binds");
        for path in ["/health/alive", "/health/ready"] {
            let response = client
                .get(format!("http://{address}{path}"))
                .send()
                .await
                .expect("answers");
            assert_eq!(response.status(), 200, "{name}{path}");
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["healthy"], true, "{name}{path}: {body}");
        }
        let response = client
            .get(format!("http://{address}/no/such/route"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 404, "{name}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "route_not_found", "{name}: {body}");
    }
}
