//! The shared runner serves any function's router: health routes answer, and an unknown
//! route gets the JSON error shape rather than an empty 404.

use crate::harness::System;

#[tokio::test]
async fn every_function_answers_health_and_json_errors() {
    let system = System::start().await;
    let client = reqwest::Client::new();
    for (name, address) in [
        ("list-eligibility", system.list),
        ("request-approval", system.request),
        ("approve", system.approve),
        // Health probes reach the container, not through Cloud Run's invoker check.
        ("mailer", system.mailer_container),
    ] {
        for path in ["/health/alive", "/health/ready"] {
            let response = client.get(format!("http://{address}{path}")).send().await.expect("answers");
            assert_eq!(response.status(), 200, "{name}{path}");
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["healthy"], true, "{name}{path}: {body}");
        }
        let response = client.get(format!("http://{address}/no/such/route")).send().await.expect("answers");
        assert_eq!(response.status(), 404, "{name}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "route_not_found", "{name}: {body}");
    }
}
