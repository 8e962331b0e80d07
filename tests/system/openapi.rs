//! The OpenAPI description covers exactly the routes the routers serve.

use std::collections::BTreeSet;

fn served() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut add = |method: &str, path: &str| routes.insert((method.to_lowercase(), path.to_string()));
    for (method, path, _) in list_eligibility::routes() {
        add(method, path);
    }
    for (method, path, _) in request_approval::routes() {
        add(method, path);
    }
    for (method, path, _) in approve::routes() {
        add(method, path);
    }
    routes
}

fn described() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
        .expect("docs/openapi.yaml");
    let spec: serde_json::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_string(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_served_route_is_described_and_nothing_more() {
    let served = served();
    let described = described();
    let undocumented: Vec<_> = served.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.yaml: {undocumented:?}");
    assert!(unserved.is_empty(), "docs/openapi.yaml describes routes nobody serves: {unserved:?}");
}
