//! `ext-test-fixtures`: the guest components that tests and benches run.
//!
//! `build.rs` compiles `tests/fixtures/guests/*` (one small guest per behaviour
//! under test, named `<suite>_<behaviour>`) and `examples/hello` for
//! `wasm32-wasip2`, once per build, and this crate hands out their paths:
//! [`component`], [`FIXTURES`] and [`hello_bundle_dir`].
//!
//! ```no_run
//! let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
//! # let _ = wasm;
//! ```

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

/// Path of a built fixture component, e.g. `component("limits_infinite_loop")`.
///
/// # Panics
/// If `name` is not a fixture; the message names it and lists the known ones.
pub fn component(name: &str) -> PathBuf {
    match FIXTURE_PATHS.iter().find(|(fixture, _)| *fixture == name) {
        Some((_, path)) => PathBuf::from(path),
        None => panic!(
            "unknown guest fixture {name:?}: add a crate under tests/fixtures/guests \
             (and to its workspace members); known fixtures: {FIXTURES:?}"
        ),
    }
}

/// A staged bundle directory for `examples/hello`: `manifest.json`, `ui/`, `dist/main.wasm`.
pub fn hello_bundle_dir() -> PathBuf {
    PathBuf::from(HELLO_BUNDLE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preamble of a binary component (magic, version 0x0d, layer 1), not a core module.
    const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    fn assert_component(path: &std::path::Path) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(&COMPONENT_PREAMBLE),
            "{} is not a component",
            path.display()
        );
    }

    #[test]
    fn every_fixture_is_a_component() {
        assert!(FIXTURES.contains(&"echo"), "{FIXTURES:?}");
        for name in FIXTURES {
            let path = component(name);
            assert!(path.ends_with(format!("{name}.wasm")), "{}", path.display());
            assert_component(&path);
        }
    }

    #[test]
    #[should_panic(expected = "unknown guest fixture \"no_such_fixture\"")]
    fn unknown_fixture_panics_with_its_name() {
        component("no_such_fixture");
    }

    #[test]
    fn hello_bundle_is_staged() {
        let dir = hello_bundle_dir();
        assert_component(&dir.join("dist/main.wasm"));
        let manifest: String = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert!(manifest.contains("\"com.example.hello\""), "{manifest}");
        for file in ["index.html", "app.js", "style.css"] {
            assert!(dir.join("ui").join(file).is_file(), "ui/{file} missing");
        }
    }
}
