//! Docs that must match the code: every attack-catalogue row cited in
//! `crates/` resolves to a row of `docs/security.md`, and every test named
//! for a row is listed there.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Row ids (`A-09`) cited in `text`: a catalogue letter, `-`, two digits,
/// then no further digit (so `P-256` is not one).
fn cited_rows(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut rows = Vec::new();
    for i in 0..bytes.len().saturating_sub(3) {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let shape = b"ASKBFUPM".contains(&bytes[i])
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && bytes.get(i + 4).is_none_or(|b| !b.is_ascii_digit());
        if starts_word && shape {
            rows.push(text[i..i + 4].to_string());
        }
    }
    rows
}

/// Functions named for a row: `fn a09_…`.
fn row_tests(text: &str) -> Vec<String> {
    text.split("fn ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let b = name.as_bytes();
            let named = b.len() > 4
                && b[0].is_ascii_lowercase()
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && b[3] == b'_';
            named.then_some(name)
        })
        .collect()
}

#[test]
fn security_doc_resolves_every_cited_row_and_lists_every_row_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 50, "found only {} sources", files.len());
    let (mut missing_rows, mut missing_tests) = (Vec::new(), Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for row in cited_rows(&text) {
            if !doc.contains(&format!("| {row} |")) {
                missing_rows.push(format!("{row} ({})", file.display()));
            }
        }
        for test in row_tests(&text) {
            if !doc.contains(&format!("`{test}`")) {
                missing_tests.push(format!("{test} ({})", file.display()));
            }
        }
    }
    missing_rows.dedup();
    assert!(
        missing_rows.is_empty(),
        "rows cited but not in docs/security.md: {missing_rows:?}"
    );
    assert!(
        missing_tests.is_empty(),
        "row tests not listed in docs/security.md: {missing_tests:?}"
    );
    assert_eq!(cited_rows("A-09, P-256, xA-01 B-02."), ["A-09", "B-02"]);
}
