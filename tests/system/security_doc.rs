//! Every test named in the attack table of docs/security.md exists.

#[test]
fn every_test_named_in_the_attack_table_exists() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/security.md")).expect("docs/security.md");
    let mut sources = String::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() && !matches!(name, "target" | ".git" | "node_modules") {
                stack.push(path);
            } else if name.ends_with(".rs") {
                sources.push_str(&std::fs::read_to_string(&path).expect("readable"));
            }
        }
    }
    let table = doc
        .split("## Attacks and the tests that try them")
        .nth(1)
        .expect("the table")
        .split("\n## ")
        .next()
        .unwrap_or("");
    let mut named = 0;
    for row in table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| attack") && !l.starts_with("|---")) {
        let tests = row.rsplit('|').nth(1).expect("a test column");
        for name in tests.split('`').skip(1).step_by(2) {
            if matches!(name, "common" | "mailer" | "local" | "system-tests") {
                continue;
            }
            named += 1;
            assert!(sources.contains(&format!("fn {name}(")), "docs/security.md names `{name}`, which is not a test");
        }
    }
    assert!(named > 50, "the table names {named} tests");
}
