//! The fence around the pure core, checked as an ordinary test: domain modules import no
//! async runtime, web framework, HTTP client or Google SDK.

const DOMAIN_MODULES: &[&str] = &[
    "activation.rs",
    "approval_policy.rs",
    "condition.rs",
    "config.rs",
    "eligibility.rs",
    "email.rs",
    "entitlement.rs",
    "event.rs",
    "iap.rs",
    "justification.rs",
    "jwt.rs",
    "lifecycle.rs",
    "policy.rs",
    "rules.rs",
    "timestamp.rs",
    "token.rs",
    "trace.rs",
];

const FORBIDDEN: &[&str] = &["tokio", "axum", "reqwest", "hyper", "tower", "google_cloud", "std::net", "std::fs"];

#[test]
fn domain_modules_do_no_io() {
    let source_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in DOMAIN_MODULES {
        let text = std::fs::read_to_string(source_dir.join(module)).expect("module exists");
        // Tests may use what they like; only the module's own code is fenced.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for forbidden in FORBIDDEN {
            assert!(
                !code.contains(&format!("{forbidden}::")) && !code.contains(&format!("use {forbidden}")),
                "{module} uses {forbidden}: domain code must stay free of I/O"
            );
        }
    }
}

#[test]
fn every_source_file_says_what_it_holds() {
    let source_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![source_dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("readable");
                assert!(text.starts_with("//!"), "{} must open with a //! line", path.display());
            }
        }
    }
}
