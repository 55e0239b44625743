use super::*;

#[test]
fn component_imports_lists_top_level_import_names() {
    let wasm = wat::parse_str(
        r#"(component
            (import "alga:extension/storage" (instance))
            (type $f (func (param "x" u32)))
            (import "wasi:cli/stdout@0.2.6" (instance (export "f" (func (type 0)))))
            (import "f" (func (type $f)))
            (import "t" (type (sub resource)))
            (component (import "nested:not/top-level" (instance)))
        )"#,
    )
    .unwrap();
    assert_eq!(
        component_imports(&wasm).unwrap(),
        ["alga:extension/storage", "wasi:cli/stdout@0.2.6", "f"]
    );
}

#[test]
fn component_imports_refuses_modules_and_garbage() {
    let module = wat::parse_str("(module)").unwrap();
    assert!(
        component_imports(&module)
            .unwrap_err()
            .contains("core WebAssembly module")
    );
    let garbage = component_imports(b"not wasm").unwrap_err();
    assert!(garbage.contains("not a readable WebAssembly component"), "{garbage}");
    let mut truncated = wat::parse_str(r#"(component (import "a:b/c" (instance)))"#).unwrap();
    truncated.pop();
    let truncated = component_imports(&truncated).unwrap_err();
    assert!(truncated.contains("unexpected end"), "{truncated}");
}

#[test]
fn undeclared_capabilities_name_interface_and_capability() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(component
            (import "alga:extension/storage" (instance))
            (import "alga:extension/http" (instance))
            (import "alga:extension/logging" (instance))
        )"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("dist")).unwrap();
    std::fs::write(dir.path().join("dist/main.wasm"), wasm).unwrap();
    let manifest = |caps: &str| {
        format!(r#"{{"name":"com.test.caps","version":"1.0.0","runtime":"wasm-rust@1","capabilities":{caps}}}"#)
    };
    std::fs::write(dir.path().join("manifest.json"), manifest(r#"["http.fetch"]"#)).unwrap();
    assert_eq!(
        undeclared_capabilities(dir.path()).unwrap(),
        [UndeclaredImport {
            component: "dist/main.wasm".into(),
            interface: "alga:extension/storage",
            capability: "cap:storage.kv",
        }]
    );
    let warnings = capability_warnings(dir.path());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("`alga:extension/storage`") && warnings[0].contains("\"cap:storage.kv\""),
        "{warnings:?}"
    );

    std::fs::write(
        dir.path().join("manifest.json"),
        manifest("[]").replace("wasm-rust@1", "wasm-js@1"),
    )
    .unwrap();
    let warnings = capability_warnings(dir.path());
    assert_eq!(warnings.len(), 1, "one line per JavaScript component: {warnings:?}");
    assert!(
        warnings[0].contains("alga:extension/storage, alga:extension/http")
            && warnings[0].contains("cap:storage.kv, cap:http.fetch"),
        "{warnings:?}"
    );

    // A wasi:http/proxy component's outbound requests need cap:http.fetch too.
    let proxy = wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#).unwrap();
    std::fs::write(dir.path().join("dist/main.wasm"), proxy).unwrap();
    std::fs::write(dir.path().join("manifest.json"), manifest("[]")).unwrap();
    assert_eq!(
        undeclared_capabilities(dir.path()).unwrap(),
        [UndeclaredImport {
            component: "dist/main.wasm".into(),
            interface: "wasi:http/outgoing-handler",
            capability: "cap:http.fetch",
        }]
    );
}

#[test]
fn a_missing_component_names_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"name":"com.test.missing","version":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"my-ext\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let error = format!("{:#}", pack_dir(dir.path()).unwrap_err());
    assert!(error.contains("field `entry`"), "{error}");
    assert!(
        error.contains("cargo build --release --target wasm32-wasip2") && error.contains("release/my_ext.wasm"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("Cargo.toml")).unwrap();
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    let error = format!("{:#}", pack_dir(dir.path()).unwrap_err());
    assert!(error.contains("`npm run build`"), "{error}");
}
