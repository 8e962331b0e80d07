//! Tidy checks, as ordinary tests: every source file of the crate says what it holds. `common`
//! runs the same file over its own sources.

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
