use serde_json::json;

use super::*;

/// A valid manifest with `patch`'s top-level keys replaced (a `null` in the
/// patch removes the key).
fn with(patch: Value) -> Vec<u8> {
    let mut base = json!({
        "name": "com.example.sales",
        "version": "1.2.3",
        "api": {"endpoints": [{"method": "get", "path": "/items", "handler": "dist/main"}]},
    });
    if let (Value::Object(base), Value::Object(patch)) = (&mut base, patch) {
        for (key, value) in patch {
            if value.is_null() {
                base.remove(&key);
            } else {
                base.insert(key, value);
            }
        }
    }
    serde_json::to_vec(&base).expect("json")
}

fn endpoints(list: Value) -> Vec<u8> {
    with(json!({"api": {"endpoints": list}}))
}

fn parse(bytes: &[u8]) -> Manifest {
    Manifest::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn minimal_manifest_gets_defaults() {
    let manifest = parse(&with(json!({"api": null})));
    assert_eq!(manifest.name, "com.example.sales");
    assert_eq!(manifest.version, semver::Version::new(1, 2, 3));
    assert_eq!(manifest.entry, DEFAULT_ENTRY);
    assert!(manifest.endpoints.is_empty());
    assert!(manifest.capabilities.is_empty());
    assert_eq!(manifest.ui, None);
    assert_eq!(manifest.publisher, None);
}

#[test]
fn full_manifest_is_normalised() {
    let bytes = serde_json::to_vec(&json!({
        "name": "com.example.sales-app_2",
        "publisher": "Example Ltd",
        "version": "2.0.0-beta.1+build.5",
        "runtime": "wasm-js@1",
        "capabilities": ["http.fetch", "storage.kv", "secrets.get", "log", "metrics",
                         "cap:log.emit", "cap:scheduler.manage", "user.read"],
        "entry": "./dist/app.wasm",
        "api": {"endpoints": [
            {"method": "get", "path": "/tickets/:id", "handler": "dist/main"},
            {"method": "POST", "path": "/sync", "handler": "./dist/sync.wasm", "schedulable": true},
        ]},
        "ui": {"type": "iframe", "entry": "index.html",
               "hooks": {"appMenu": {"label": "Sales"}, "clientPortalMenu": {"label": "Deals"}}},
        "precompiled": {"x86_64-unknown-linux-gnu": "precompiled/x86_64-unknown-linux-gnu.cwasm"},
        "assets": ["ui/**/*"],
        "sbom": "sbom.spdx.json",
        "events": [{"topic": "ticket.created"}],
        "somethingNew": {"ignored": true},
    }))
    .expect("json");
    let manifest = parse(&bytes);
    assert_eq!(
        manifest.capabilities,
        [
            "cap:http.fetch",
            "cap:storage.kv",
            "cap:secrets.get",
            "cap:log.emit",
            "cap:metrics.emit",
            "cap:scheduler.manage",
            "cap:user.read",
        ]
    );
    assert_eq!(manifest.entry, "dist/app.wasm");
    assert_eq!(manifest.endpoints[0].method, "GET");
    assert!(!manifest.endpoints[0].schedulable);
    assert!(manifest.endpoints[1].schedulable);
    assert_eq!(manifest.handler_component(&manifest.endpoints[0]), "dist/main.wasm");
    assert_eq!(manifest.handler_component(&manifest.endpoints[1]), "dist/sync.wasm");
    let ui = manifest.ui.as_ref().expect("ui");
    assert_eq!(ui.kind, "iframe");
    assert_eq!(ui.hooks["appMenu"]["label"], "Sales");
    assert_eq!(manifest.precompiled.len(), 1);
    assert_eq!(manifest.assets, ["ui/**/*"]);
    assert_eq!(manifest.sbom.as_deref(), Some("sbom.spdx.json"));
    assert_eq!(manifest.events.len(), 1);
    assert_eq!(
        manifest.required_files(),
        [
            ("entry".to_owned(), "dist/app.wasm".to_owned()),
            ("api.endpoints[0].handler".to_owned(), "dist/main.wasm".to_owned()),
            ("api.endpoints[1].handler".to_owned(), "dist/sync.wasm".to_owned()),
        ]
    );

    // The pretty form is itself a valid manifest describing the same thing.
    let pretty = manifest.to_json_pretty();
    assert_eq!(parse(pretty.as_bytes()), manifest, "{pretty}");
    let via_serde: Manifest = serde_json::from_str(&pretty).expect("deserialize");
    assert_eq!(via_serde, manifest);
}

/// No `network` (upstream manifests) declares no list; a `network` object
/// declares one, empty when it names no hosts. The pretty form keeps the
/// difference.
#[test]
fn network_absent_differs_from_an_empty_list() {
    let cases: &[(Value, Option<&[&str]>)] = &[
        (json!({}), None),
        (json!({"network": null}), None),
        (json!({"network": {}}), Some(&[])),
        (json!({"network": {"allowed_hosts": null}}), Some(&[])),
        (json!({"network": {"allowed_hosts": []}}), Some(&[])),
        (
            json!({"network": {"allowed_hosts": ["https://api.example.com", "https://*.example.org:8443"]}}),
            Some(&["https://api.example.com", "https://*.example.org:8443"]),
        ),
    ];
    for (patch, expected) in cases {
        let manifest = parse(&with(patch.clone()));
        let expected = expected.map(|hosts| hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        assert_eq!(manifest.allowed_hosts, expected, "{patch}");
        let pretty = manifest.to_json_pretty();
        assert_eq!(parse(pretty.as_bytes()).allowed_hosts, expected, "{pretty}");
    }
}

#[test]
fn ui_defaults() {
    let manifest = parse(&with(json!({"ui": {}})));
    let ui = manifest.ui.expect("ui");
    assert_eq!((ui.kind.as_str(), ui.entry.as_str()), ("iframe", "index.html"));
    assert_eq!(ui.hooks, Value::Null);
}

#[test]
fn byte_order_mark_and_nulls_are_tolerated() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(br#"{"name":"a.b","version":"0.1.0","publisher":null,"api":null}"#);
    let manifest = parse(&bytes);
    assert_eq!(manifest.publisher, None);
}

/// Golden messages: what a user sees is a contract.
#[test]
fn reject_table_with_exact_messages() {
    let long_name = format!("com.{}", "a".repeat(125));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{".to_vec(),
            "manifest.json: invalid JSON at line 1 column 1: EOF while parsing an object",
        ),
        (
            b"{\"name\": }".to_vec(),
            "manifest.json: invalid JSON at line 1 column 10: expected value",
        ),
        (b"[]".to_vec(), "manifest.json: must be a JSON object, found array"),
        (with(json!({"name": null})), "manifest.json: field `name`: is required"),
        (
            with(json!({"name": 7})),
            "manifest.json: field `name`: must be a string, found number",
        ),
        (
            with(json!({"name": "sales"})),
            "manifest.json: field `name`: `sales` is not a reverse-domain name like `com.example.app`: it needs at least two dot-separated segments",
        ),
        (
            with(json!({"name": "com..sales"})),
            "manifest.json: field `name`: `com..sales` has an empty segment",
        ),
        (
            with(json!({"name": "com.example."})),
            "manifest.json: field `name`: `com.example.` has an empty segment",
        ),
        (
            with(json!({"name": "com.Example.sales"})),
            "manifest.json: field `name`: segment `Example` may contain only a-z, 0-9, '-' and '_'",
        ),
        (
            with(json!({"name": long_name})),
            "manifest.json: field `name`: must be at most 128 characters, found 129",
        ),
        (
            with(json!({"version": null})),
            "manifest.json: field `version`: is required",
        ),
        (
            with(json!({"version": "1.0"})),
            "manifest.json: field `version`: `1.0` is not a semantic version like `1.2.3`: unexpected end of input while parsing minor version number",
        ),
        (
            with(json!({"publisher": ["x"]})),
            "manifest.json: field `publisher`: must be a string, found array",
        ),
        (
            with(json!({"capabilities": "cap:http.fetch"})),
            "manifest.json: field `capabilities`: must be an array, found string",
        ),
        (
            with(json!({"capabilities": ["cap:http.fetch", "filesystem"]})),
            "manifest.json: field `capabilities[1]`: unknown capability `filesystem`: write `cap:<name>` or one of context.read, http.fetch, log, log.emit, metrics, metrics.emit, secrets.get, storage.kv, ui.proxy, user.read",
        ),
        (
            with(json!({"capabilities": ["cap:Http"]})),
            "manifest.json: field `capabilities[0]`: capability `cap:Http` must match `cap:[a-z0-9][a-z0-9._-]*`",
        ),
        (
            with(json!({"capabilities": ["cap:"]})),
            "manifest.json: field `capabilities[0]`: capability `cap:` must match `cap:[a-z0-9][a-z0-9._-]*`",
        ),
        (
            with(json!({"capabilities": [true]})),
            "manifest.json: field `capabilities[0]`: must be a string, found boolean",
        ),
        (
            with(json!({"entry": "../main.wasm"})),
            "manifest.json: field `entry`: `../main.wasm` is not a safe relative path: it contains a `..` segment",
        ),
        (
            with(json!({"entry": "/dist/main.wasm"})),
            "manifest.json: field `entry`: `/dist/main.wasm` is not a safe relative path: it is absolute",
        ),
        (
            with(json!({"api": []})),
            "manifest.json: field `api`: must be an object, found array",
        ),
        (
            with(json!({"api": {"endpoints": {}}})),
            "manifest.json: field `api.endpoints`: must be an array, found object",
        ),
        (
            endpoints(json!(["GET /"])),
            "manifest.json: field `api.endpoints[0]`: must be an object, found string",
        ),
        (
            endpoints(json!([{"path": "/a", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].method`: is required",
        ),
        (
            endpoints(json!([{"method": "GE T", "path": "/a", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].method`: `GE T` is not a valid HTTP method",
        ),
        (
            endpoints(json!([{"method": "", "path": "/a", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].method`: `` is not a valid HTTP method",
        ),
        (
            endpoints(json!([
                {"method": "GET", "path": "/a", "handler": "dist/main"},
                {"method": "GET", "path": "/b", "handler": "dist/main"},
                {"method": "GET", "path": "b", "handler": "dist/main"},
            ])),
            "manifest.json: field `api.endpoints[2].path`: must start with '/'",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a?x=1", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].path`: must not contain a query string or fragment",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a//b", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].path`: must not contain empty segments",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a b", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].path`: must not contain whitespace or control characters",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/items/:", "handler": "dist/main"}])),
            "manifest.json: field `api.endpoints[0].path`: has a `:` parameter segment without a name",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a"}])),
            "manifest.json: field `api.endpoints[0].handler`: is required",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a", "handler": "../evil"}])),
            "manifest.json: field `api.endpoints[0].handler`: `../evil` is not a safe relative path: it contains a `..` segment",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a", "handler": "/dist/main"}])),
            "manifest.json: field `api.endpoints[0].handler`: `/dist/main` is not a safe relative path: it is absolute",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a", "handler": "dist\\main"}])),
            "manifest.json: field `api.endpoints[0].handler`: `dist\\main` is not a safe relative path: it contains a backslash",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a", "handler": "dist/\u{0}main"}])),
            "manifest.json: field `api.endpoints[0].handler`: `dist/\\u{0}main` is not a safe relative path: it contains a NUL byte",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/a", "handler": "dist/main", "schedulable": "yes"}])),
            "manifest.json: field `api.endpoints[0].schedulable`: must be a boolean, found string",
        ),
        (
            endpoints(json!([
                {"method": "GET", "path": "/items/:id", "handler": "dist/main"},
                {"method": "POST", "path": "/items/:id", "handler": "dist/main"},
                {"method": "get", "path": "/items/:name/", "handler": "dist/other"},
            ])),
            "manifest.json: field `api.endpoints[2]`: duplicates the route of api.endpoints[0] (GET /items/:name/)",
        ),
        (
            endpoints(json!([{"method": "GET", "path": "/", "handler": "dist/main", "world": "wasi:http"}])),
            "manifest.json: field `api.endpoints[0].world`: must be \"alga:extension/runner\" or \"wasi:http/proxy\", found `wasi:http`",
        ),
        (
            endpoints(json!([
                {"method": "GET", "path": "/a", "handler": "dist/main", "world": "wasi:http/proxy"},
                {"method": "GET", "path": "/b", "handler": "dist/main.wasm"},
            ])),
            "manifest.json: field `api.endpoints[1].world`: `alga:extension/runner` conflicts with api.endpoints[0], which runs the same component `dist/main.wasm` as `wasi:http/proxy`",
        ),
        (
            with(json!({"ui": {"type": "react"}})),
            "manifest.json: field `ui.type`: must be \"iframe\", found `react`",
        ),
        (
            with(json!({"ui": {"entry": "../index.html"}})),
            "manifest.json: field `ui.entry`: `../index.html` is not a safe relative path: it contains a `..` segment",
        ),
        (
            with(json!({"precompiled": {"x86_64 linux": "precompiled/a.cwasm"}})),
            "manifest.json: field `precompiled.x86_64 linux`: target name may contain only letters, digits, '.', '-' and '_'",
        ),
        (
            with(json!({"precompiled": {"x86_64-unknown-linux-gnu": "/tmp/a.cwasm"}})),
            "manifest.json: field `precompiled.x86_64-unknown-linux-gnu`: `/tmp/a.cwasm` is not a safe relative path: it is absolute",
        ),
        (
            with(json!({"assets": ["ui/**", "../secrets/*"]})),
            "manifest.json: field `assets[1]`: `../secrets/*` is not a safe relative path: it contains a `..` segment",
        ),
        (
            with(json!({"sbom": "a//b.json"})),
            "manifest.json: field `sbom`: `a//b.json` is not a safe relative path: it contains an empty segment",
        ),
        (
            with(json!({"events": {}})),
            "manifest.json: field `events`: must be an array, found object",
        ),
        (
            with(json!({"network": ["https://api.example.com"]})),
            "manifest.json: field `network`: must be an object, found array",
        ),
        (
            with(json!({"network": {"allowed_hosts": "https://api.example.com"}})),
            "manifest.json: field `network.allowed_hosts`: must be an array, found string",
        ),
        (
            with(json!({"network": {"allowed_hosts": ["https://api.example.com", 443]}})),
            "manifest.json: field `network.allowed_hosts[1]`: must be a string, found number",
        ),
    ];
    for (bytes, expected) in cases {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let err = Manifest::from_slice(&bytes).expect_err(&text);
        assert_eq!(err.to_string(), expected, "manifest: {text}");
    }
}

#[test]
fn field_and_reason_are_structured() {
    let err = Manifest::from_slice(&endpoints(
        json!([{"method": "GET", "path": "a", "handler": "dist/main"}]),
    ))
    .expect_err("bad path");
    assert_eq!(err.field, "api.endpoints[0].path");
    assert_eq!(err.reason, "must start with '/'");
    assert_eq!(err.position, None);

    let err = Manifest::from_slice(b"{\n  \"name\": 1,\n").expect_err("bad json");
    assert_eq!(err.position, Some(JsonPosition { line: 3, column: 0 }));
    assert_eq!(err.field, "");
}

#[test]
fn check_reports_every_problem_in_document_order() {
    let bytes = serde_json::to_vec(&json!({
        "name": "Sales",
        "capabilities": ["nope"],
        "api": {"endpoints": [{"method": "GET", "path": "x", "handler": "../h"}]},
    }))
    .expect("json");
    let errors = Manifest::check(&bytes).expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "name",
            "version",
            "capabilities[0]",
            "api.endpoints[0].path",
            "api.endpoints[0].handler",
        ]
    );
    // from_slice gives the first of them.
    let first = Manifest::from_slice(&bytes).expect_err("invalid");
    assert_eq!(first, errors[0]);
}

#[test]
fn component_path_table() {
    let cases = [
        ("dist/main", "dist/main.wasm"),
        ("dist/main.wasm", "dist/main.wasm"),
        ("./dist/x.wasm", "dist/x.wasm"),
        ("/dist/main", "dist/main.wasm"),
        ("handler", "handler.wasm"),
    ];
    for (input, expected) in cases {
        assert_eq!(component_path(input), expected, "{input}");
    }
}

#[test]
fn endpoint_by_handler_compares_component_paths() {
    let manifest = parse(&endpoints(json!([
        {"method": "GET", "path": "/a", "handler": "dist/a"},
        {"method": "GET", "path": "/b", "handler": "./dist/b.wasm"},
    ])));
    let path_of = |handler: &str| manifest.endpoint_by_handler(handler).map(|e| e.path.as_str());
    assert_eq!(path_of("dist/a.wasm"), Some("/a"));
    assert_eq!(path_of("./dist/a"), Some("/a"));
    assert_eq!(path_of("dist/b"), Some("/b"));
    assert_eq!(path_of("dist/c"), None);
}

#[test]
fn resolve_table() {
    let manifest = parse(&endpoints(json!([
        {"method": "GET", "path": "/", "handler": "dist/root"},
        {"method": "GET", "path": "/items", "handler": "dist/list"},
        {"method": "GET", "path": "/items/:id", "handler": "dist/get"},
        {"method": "GET", "path": "/items/new", "handler": "dist/new"},
        {"method": "POST", "path": "/items", "handler": "dist/create"},
        {"method": "GET", "path": "/items/:id/notes/:note", "handler": "dist/note"},
        {"method": "GET", "path": "/items/:id/notes/latest", "handler": "dist/latest"},
        {"method": "GET", "path": "/:kind/search", "handler": "dist/search_any"},
    ])));
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/", Some("dist/root")),
        ("GET", "", Some("dist/root")),
        ("GET", "/items", Some("dist/list")),
        ("get", "/items", Some("dist/list")),
        ("Get", "/items/", Some("dist/list")),
        ("GET", "/items?page=2", Some("dist/list")),
        ("GET", "/items/?page=2&x=/y", Some("dist/list")),
        ("POST", "/items", Some("dist/create")),
        ("post", "/items/", Some("dist/create")),
        ("GET", "/items/42", Some("dist/get")),
        ("GET", "/items/new", Some("dist/new")),
        ("GET", "/items/new/", Some("dist/new")),
        ("GET", "/items/42/notes/7", Some("dist/note")),
        ("GET", "/items/42/notes/latest", Some("dist/latest")),
        // Both have one literal among the first two segments: the earlier literal wins.
        ("GET", "/items/search", Some("dist/get")),
        ("GET", "/users/search", Some("dist/search_any")),
        ("DELETE", "/items", None),
        ("POST", "/items/42", None),
        ("GET", "/items//", None),
        ("GET", "/items/42/notes", None),
        ("GET", "/other", None),
        ("GET", "/items/42/extra/deep/path", None),
    ];
    for (method, path, expected) in cases {
        let got = manifest.resolve(method, path).map(|endpoint| endpoint.handler.as_str());
        assert_eq!(got, *expected, "{method} {path}");
    }
}

#[test]
fn endpoint_world_defaults_round_trips_and_names_the_component() {
    let manifest = parse(&endpoints(json!([
        {"method": "GET", "path": "/p", "handler": "dist/proxy", "world": "wasi:http/proxy"},
        {"method": "GET", "path": "/r", "handler": "dist/main"},
        {"method": "POST", "path": "/r", "handler": "dist/main", "world": "alga:extension/runner"},
    ])));
    assert_eq!(manifest.endpoints[0].world, World::Proxy);
    assert_eq!(manifest.endpoints[1].world, World::Runner);
    assert_eq!(manifest.component_world("dist/proxy.wasm"), World::Proxy);
    assert_eq!(manifest.component_world("dist/main.wasm"), World::Runner);
    assert_eq!(manifest.component_world("dist/unlisted.wasm"), World::Runner);
    let json: Value = serde_json::from_str(&manifest.to_json_pretty()).unwrap();
    assert_eq!(json["api"]["endpoints"][0]["world"], "wasi:http/proxy");
    assert!(
        json["api"]["endpoints"][1].get("world").is_none(),
        "the default is not written"
    );
    assert_eq!(parse(manifest.to_json_pretty().as_bytes()), manifest);
}
