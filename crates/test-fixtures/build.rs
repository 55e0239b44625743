//! Builds the guest components for tests and benches.
//!
//! Runs a nested `cargo build --release --target wasm32-wasip2` for the guest
//! fixture workspace (`tests/fixtures/guests`) and for `examples/hello`, in a
//! target directory of its own next to the outer one, then stages:
//! - `OUT_DIR/guests/<name>.wasm` for every fixture crate;
//! - `OUT_DIR/hello-bundle/` (manifest.json, ui/**, dist/main.wasm);
//! - `OUT_DIR/fixtures.rs` with their absolute paths, included by the library.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

/// Variables that configure the outer build and must not reach the nested one:
/// flags and wrappers meant for the host target (clippy-driver arrives as
/// RUSTC_WORKSPACE_WRAPPER), the outer target dir, the jobserver and the
/// variables cargo sets for this build script.
const REMOVED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
];

/// Prefixes of further variables cargo sets for the outer package or profile.
const REMOVED_PREFIXES: &[&str] = &[
    "CARGO_PROFILE_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/test-fixtures sits two levels below the repository root")
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let guests = root.join("tests/fixtures/guests");
    let hello = root.join("examples/hello");

    let fixtures = fixture_names(&guests);
    emit_rerun_if_changed(&root, &guests, &fixtures, &hello);
    check_target_installed();

    let target_dir = guest_target_dir(&out_dir);
    cargo_build(&guests.join("Cargo.toml"), &target_dir);
    cargo_build(&hello.join("Cargo.toml"), &target_dir);
    let built = target_dir.join(TARGET).join("release");

    let guests_out = out_dir.join("guests");
    recreate_dir(&guests_out);
    let mut paths = Vec::new();
    for name in &fixtures {
        let from = built.join(format!("{name}.wasm"));
        let to = guests_out.join(format!("{name}.wasm"));
        copy(&from, &to);
        paths.push((name.as_str(), to));
    }

    let bundle = out_dir.join("hello-bundle");
    recreate_dir(&bundle);
    copy(&hello.join("manifest.json"), &bundle.join("manifest.json"));
    copy_dir(&hello.join("ui"), &bundle.join("ui"));
    fs::create_dir_all(bundle.join("dist")).expect("create hello-bundle/dist");
    copy(&built.join("hello.wasm"), &bundle.join("dist/main.wasm"));

    write_generated(&out_dir.join("fixtures.rs"), &paths, &bundle);
}

fn env_var(name: &str) -> OsString {
    env::var_os(name).unwrap_or_else(|| panic!("cargo did not set {name}"))
}

/// Every crate directory of the guest workspace (a subdirectory with a Cargo.toml), sorted.
fn fixture_names(guests: &Path) -> Vec<String> {
    let entries = fs::read_dir(guests).unwrap_or_else(|e| panic!("cannot list {}: {e}", guests.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.expect("read guest workspace entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| {
            let name = path.file_name().expect("entry has a name");
            name.to_str()
                .unwrap_or_else(|| panic!("fixture directory {} is not UTF-8", path.display()))
                .to_owned()
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixture crates in {}", guests.display());
    names
}

/// Sources only: never a target directory, or every guest build would trigger another.
fn emit_rerun_if_changed(root: &Path, guests: &Path, fixtures: &[String], hello: &Path) {
    let mut paths = vec![
        root.join("Cargo.toml"), // ext-sdk inherits package fields and dependencies from it
        root.join("wit"),
        root.join("crates/sdk/Cargo.toml"),
        root.join("crates/sdk/src"),
        guests.join("Cargo.toml"),
        guests.join("Cargo.lock"),
        hello.join("Cargo.toml"),
        hello.join("Cargo.lock"),
        hello.join("src"),
        hello.join("manifest.json"),
        hello.join("ui"),
    ];
    for name in fixtures {
        paths.push(guests.join(name).join("Cargo.toml"));
        paths.push(guests.join(name).join("src"));
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let has_std = libdir.as_deref().is_some_and(|dir| {
        fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
    });
    if !has_std {
        panic!(
            "the {TARGET} target is not installed for this Rust toolchain; \
             run `rustup target add {TARGET}` and build again"
        );
    }
}

/// `<outer target dir>/wasm-guests`: shared by both guest workspaces and all outer
/// profiles, and never the outer target dir itself (cargo would wait on its own lock).
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out (maybe <target>/<triple>/...).
    let is_build_dir = out_dir
        .ancestors()
        .nth(2)
        .and_then(Path::file_name)
        .is_some_and(|name| name == "build");
    match out_dir.ancestors().nth(4) {
        Some(target) if is_build_dir => target.join("wasm-guests"),
        _ => out_dir.join("wasm-guests"),
    }
}

fn cargo_build(manifest: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // This script's stdout is read by cargo as `cargo:` directives.
        .stdout(Stdio::from(io::stderr()));
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if REMOVED_VARS.contains(&key) || REMOVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", manifest.display()));
    if !status.success() {
        panic!(
            "building {} for {TARGET} failed ({status}); see cargo's output above. \
             If the lock file is out of date (e.g. after changing crates/sdk), run \
             `cargo update --workspace --manifest-path {}`",
            manifest.display(),
            manifest.display()
        );
    }
}

fn recreate_dir(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", dir.display()),
    }
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap_or_else(|e| {
        panic!(
            "cannot copy {} to {}: {e} (is the crate a member of its workspace?)",
            from.display(),
            to.display()
        )
    });
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            copy(&path, &dest);
        }
    }
}

fn write_generated(file: &Path, fixtures: &[(&str, PathBuf)], hello_bundle: &Path) {
    let utf8 = |path: &Path| -> String {
        path.to_str()
            .unwrap_or_else(|| panic!("path {} is not UTF-8", path.display()))
            .to_owned()
    };
    let mut code = String::from("// Generated by crates/test-fixtures/build.rs.\n\n");
    code.push_str("/// All fixture names (crates of `tests/fixtures/guests`), sorted.\n");
    code.push_str("pub const FIXTURES: &[&str] = &[\n");
    for (name, _) in fixtures {
        code.push_str(&format!("    {name:?},\n"));
    }
    code.push_str("];\n\n");
    code.push_str("/// (fixture name, absolute path of its staged component).\n");
    code.push_str("const FIXTURE_PATHS: &[(&str, &str)] = &[\n");
    for (name, path) in fixtures {
        code.push_str(&format!("    ({name:?}, {:?}),\n", utf8(path)));
    }
    code.push_str("];\n\n");
    code.push_str("/// Absolute path of the staged examples/hello bundle directory.\n");
    code.push_str(&format!("const HELLO_BUNDLE_DIR: &str = {:?};\n", utf8(hello_bundle)));
    fs::write(file, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
}
