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

/// Every `` `path` `test` `` pair in `docs/security.md` names a file that
/// holds that test (paths under `crates/runner/` may leave that prefix off),
/// so the doc follows files that move.
#[test]
fn security_doc_names_the_file_each_listed_test_is_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let mut pairs = 0;
    let mut wrong = Vec::new();
    for cell in doc.split("<br>").flat_map(|c| c.split('|')) {
        let parts: Vec<&str> = cell.split('`').collect();
        // ` `path` `test` ` splits into ["", path, " ", test, ""].
        let [_, path, " ", test, _] = parts.as_slice() else {
            continue;
        };
        if !path.ends_with(".rs") {
            continue;
        }
        pairs += 1;
        let file = match path.starts_with("crates/") {
            true => root.join(path),
            false => root.join("crates/runner").join(path),
        };
        let holds = std::fs::read_to_string(&file).is_ok_and(|text| text.contains(&format!("fn {test}(")));
        if !holds {
            wrong.push(format!("{path} {test}"));
        }
    }
    assert!(pairs > 50, "found only {pairs} listed tests");
    assert!(wrong.is_empty(), "listed tests not found in the named file: {wrong:?}");
}

/// The module paths a source file (outside its tests and comments) uses:
/// `crate::a::b` and `super::a`, as absolute segment lists.
fn used_paths(file_module: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    for keyword in ["crate::", "super::"] {
        for (start, _) in code.match_indices(keyword) {
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // `super` of `a/b.rs` and of `a/b/mod.rs` is `a`.
            let mut path: Vec<String> = match keyword {
                "crate::" => Vec::new(),
                _ => file_module[..file_module.len().saturating_sub(1)].to_vec(),
            };
            let tail = &code[start + keyword.len()..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            path.extend(tail[..end].split("::").filter(|s| !s.is_empty()).map(String::from));
            paths.push(path);
        }
    }
    paths
}

/// ARCHITECTURE.md: imports inside `crates/runner/src` run one way. No
/// source file reaches itself through the files it imports (a `use` of a
/// re-export counts as an import of the module file that re-exports it).
#[test]
fn runner_sources_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |file: &Path| -> Vec<String> {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        parts
    };
    let by_module: std::collections::HashMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(f), f.clone()))
        .collect();
    let mut edges: std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<PathBuf>> = Default::default();
    for file in by_module.values() {
        let text = std::fs::read_to_string(file).unwrap();
        let me = module_of(file);
        for path in used_paths(&me, &text) {
            // The longest prefix that is a module file is what is imported.
            let target = (0..=path.len()).rev().find_map(|n| by_module.get(&path[..n]));
            if let Some(target) = target.filter(|t| *t != file) {
                edges.entry(file.clone()).or_default().insert(target.clone());
            }
        }
    }
    // Depth-first search; a grey node reached again closes a cycle.
    fn visit<'a>(
        node: &'a PathBuf,
        edges: &'a std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<PathBuf>>,
        state: &mut std::collections::HashMap<&'a PathBuf, bool>,
        stack: &mut Vec<&'a PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node, true);
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(true) => {
                    let at = stack.iter().position(|n| *n == next).unwrap();
                    let names: Vec<String> = stack[at..].iter().map(|p| p.display().to_string()).collect();
                    cycles.push(names.join(" -> "));
                }
                Some(false) => {}
                None => visit(next, edges, state, stack, cycles),
            }
        }
        stack.pop();
        state.insert(node, false);
    }
    let mut state = std::collections::HashMap::new();
    let (mut stack, mut cycles) = (Vec::new(), Vec::new());
    for node in edges.keys() {
        if !state.contains_key(node) {
            visit(node, &edges, &mut state, &mut stack, &mut cycles);
        }
    }
    assert!(edges.len() > 40, "read only {} files' imports", edges.len());
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

/// The README's configuration table names every setting the runner reads;
/// the list comes from the readers themselves (`config::known_settings`).
#[test]
fn readme_names_every_setting() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let known = ext_runner::config::known_settings();
    assert!(known.len() > 60, "only {} settings known", known.len());
    let missing: Vec<&&str> = known.iter().filter(|k| !readme.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "settings the README does not name: {missing:?}");
}
