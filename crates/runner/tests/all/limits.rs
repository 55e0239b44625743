//! Limits and guest faults (catalogue rows A-01 ... A-15). Every fault is
//! followed by a successful request from the same tenant: a fault never
//! poisons the runner.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::support::*;

/// The same tenant gets a 200 from `echo` right after a fault.
async fn next_request_succeeds(t: &TestRunner) {
    let echo = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&echo, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "after a fault: {body}");
}

/// A-01: a guest spinning without host calls is interrupted by the epoch
/// deadline within the deadline plus a tick (Spin's bar: < 2 s for 100 ms).
#[tokio::test]
async fn a01_infinite_loop_times_out() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_infinite_loop");
    // Warm the compile cache so the measurement is the execution alone.
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"timeout_ms": 100});
    let _ = t.post(&env).await;
    let started = Instant::now();
    let (status, headers, body) = t.post(&env).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "execution_timeout");
    assert_eq!(body["status"], 504);
    assert_eq!(headers["x-request-id"], env["context"]["request_id"].as_str().unwrap());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    next_request_succeeds(&t).await;
}

/// A-01: the operator's ceiling clamps what the envelope asks for.
#[tokio::test]
async fn a01_timeout_is_clamped_by_operator_max() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_TIMEOUT_MS", "150")]);
    let digest = t.publish_fixture("limits_infinite_loop");
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"timeout_ms": 600_000});
    let _ = t.post(&env).await;
    let started = Instant::now();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// A-01 (fuel): an envelope fuel budget stops the same loop with its own code.
#[tokio::test]
async fn a01_fuel_exhaustion() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_infinite_loop");
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"fuel": 1_000_000, "timeout_ms": 20_000});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "fuel_exhausted");
    next_request_succeeds(&t).await;
}

/// A-02: a guest blocked inside a host call (a WASI sleep: no epoch
/// checks run there) is cut off by the outer async timeout, without panic.
#[tokio::test]
async fn a02_blocking_host_call_times_out() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_sleep");
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"timeout_ms": 200});
    let _ = t.post(&env).await;
    let started = Instant::now();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "execution_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    next_request_succeeds(&t).await;
}

/// A-04: growing memory past the limit is refused; the guest aborts and the
/// client sees `memory_limit_exceeded`.
#[tokio::test]
async fn a04_memory_growth_is_refused() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_memory_hog");
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"memory_mb": 32});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "memory_limit_exceeded");
    assert_eq!(body["status"], 502);
    next_request_succeeds(&t).await;
}

/// A-05: a component whose initial memory exceeds the limit fails to
/// instantiate cleanly.
#[tokio::test]
async fn a05_initial_memory_over_limit() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_big_initial_memory");
    let mut env = envelope(&digest, "GET", "/");
    env["limits"] = json!({"memory_mb": 16});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "instantiation_failed");
    // With enough memory the same component runs.
    env["limits"] = json!({"memory_mb": 128});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A-06: unbounded recursion is a clean stack-overflow trap; the process
/// keeps serving.
#[tokio::test]
async fn a06_stack_overflow_is_a_trap() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_deep_recursion");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "extension_trap");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("stack overflow"),
        "{body}"
    );
    next_request_succeeds(&t).await;
}

/// A-11: a handler that returns without a response, and one that traps.
#[tokio::test]
async fn a11_no_response_and_trap() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("no_response");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "extension_no_response");

    let digest = t.publish_fixture("trap");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "extension_trap");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unreachable"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    next_request_succeeds(&t).await;
}

/// A-12: a component importing an interface outside the provided set is
/// refused at load with the import named; nothing is instantiated.
#[tokio::test]
async fn a12_unsupported_import_is_refused() {
    let t = TestRunner::new();
    let wasm = wat::parse_str(
        r#"(component
             (import "wasi:sockets/tcp@0.2.0" (instance))
             (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
    )
    .unwrap();
    let digest = t.publish_component("sockets", &wasm);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "unsupported_import");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("wasi:sockets/tcp@0.2.0"), "{message}");
    assert!(message.contains("wasi:http/outgoing-handler@0.2.0"), "{message}");

    // An ordinary Rust guest using std::net imports wasi:sockets: refused.
    let digest = t.publish_fixture("wasi_sockets");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "unsupported_import");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi:sockets/tcp@0.2"),
        "{body}"
    );

    // A component without the `handler` export is invalid, not a trap.
    let wasm = wat::parse_str("(component)").unwrap();
    let digest = t.publish_component("empty", &wasm);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "component_invalid");

    // Not a component at all.
    let digest = t.publish_component("garbage", b"\0asm garbage");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "component_invalid");
    next_request_succeeds(&t).await;
}

/// A-03: a component whose core module uses a proposal this runner
/// disables is refused at load with `unsupported_feature`, one proposal at
/// a time; the same module without it loads (and is then refused only for
/// lacking the `handler` export).
#[tokio::test]
async fn a03_disabled_proposals_are_refused_at_load() {
    let t = TestRunner::new();
    let cases = [
        ("control", "(func $f (result i32) i32.const 1)", "component_invalid"),
        ("threads: shared memory", "(memory 1 1 shared)", "unsupported_feature"),
        (
            "threads: atomics",
            "(memory 1 1) (func (result i32) i32.const 0 i32.atomic.load)",
            "unsupported_feature",
        ),
        ("exceptions", "(tag $e) (func (throw $e))", "unsupported_feature"),
        (
            "function references: call_ref",
            "(type $t (func)) (func $f (type $t)) (elem declare func $f) (func (call_ref $t (ref.func $f)))",
            "unsupported_feature",
        ),
        ("tail calls", "(func $f) (func (return_call $f))", "unsupported_feature"),
        (
            "gc",
            "(type $s (struct (field i32))) (func (drop (struct.new_default $s)))",
            "unsupported_feature",
        ),
        ("memory64", "(memory i64 1)", "unsupported_feature"),
        ("custom page sizes", "(memory 1 (pagesize 1))", "unsupported_feature"),
        (
            "wide arithmetic",
            "(func (param i64 i64 i64 i64) (result i64 i64) local.get 0 local.get 1 local.get 2 local.get 3 i64.add128)",
            "unsupported_feature",
        ),
    ];
    for (proposal, module, code) in cases {
        let wasm =
            wat::parse_str(format!("(component (core module {module}))")).unwrap_or_else(|e| panic!("{proposal}: {e}"));
        let digest = t.publish_component(&proposal.replace([' ', ':'], "_"), &wasm);
        let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{proposal}: {body}");
        assert_eq!(error_code(&body), code, "{proposal}: {body}");
    }
}

/// A-13: a decoded body over the limit is refused before the guest runs.
#[tokio::test]
async fn a13_request_body_over_limit() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_REQUEST_BYTES", "1024")]);
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "POST", "/");
    env["http"]["body_b64"] = b64(&vec![b'a'; 1025]).into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    assert_eq!(body["status"], 413);
    env["http"]["body_b64"] = b64(&vec![b'a'; 1024]).into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A-13: a declared Content-Length over the envelope limit is refused
/// without reading the body.
#[tokio::test]
async fn a13_declared_length_over_limit() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_REQUEST_BYTES", "1024")]);
    let (status, _, body) = t
        .post_raw(
            b"{}".to_vec(),
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                ("content-length", "999999999"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

/// A-14: a guest response body over the limit is refused, never truncated.
#[tokio::test]
async fn a14_response_over_limit() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_RESPONSE_BYTES", "65536")]);
    let digest = t.publish_fixture("limits_big_response");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/?bytes=65537")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "response_too_large");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/?bytes=65536")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(unb64(body["body_b64"].as_str().unwrap()).len(), 65536);
}

/// A-15: forbidden response headers are dropped, the response stays 200; a
/// lying Content-Length is an invalid response.
#[tokio::test]
async fn a15_forbidden_response_headers_are_dropped() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("headers_forbidden");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let headers = body["headers"].as_object().unwrap();
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-type",
            "etag",
            "x-ext-custom",
            "x-ext-request-id"
        ],
        "{body}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    // set-cookie, access-control-allow-origin, strict-transport-security,
    // content-security-policy, connection, transfer-encoding, server, x-powered-by
    assert_eq!(t.runner.headers_dropped(), 8);

    let (status, _, body) = t.post(&envelope(&digest, "GET", "/?cc=evil")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["headers"].get("cache-control").is_none(), "{body}");

    let (status, _, body) = t.post(&envelope(&digest, "GET", "/?cl=bad")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "invalid_response");
}

/// A-10: an instance slot recycled from a previous execution never shows
/// that execution's memory. The probe writes a canary into `.bss` and into
/// freshly grown heap pages each time and reports any non-zero byte it finds
/// before writing; 1,000 executions reuse the same pooling slots.
#[tokio::test]
async fn a10_no_memory_residue_across_executions() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_residue");
    for i in 0..1000 {
        let mut env = envelope(&digest, "GET", "/");
        env["context"]["tenant_id"] = if i % 2 == 0 { "tenant-a" } else { "tenant-b" }.into();
        let (status, _, body) = t.post(&env).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let guest = guest_json(&body);
        assert_eq!(
            guest,
            json!({"dirty_bss": false, "dirty_heap": false}),
            "execution {i} saw residue"
        );
    }
}

/// All execution slots busy: the next request waits briefly, then gets 503
/// `overloaded` with `Retry-After`, and succeeds once a slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_runner_answers_503_quickly() {
    let t = std::sync::Arc::new(TestRunner::with_env(&[("RUNNER_MAX_CONCURRENCY", "1")]));
    let spin = t.publish_fixture("limits_infinite_loop");
    let echo = t.publish_fixture("echo");
    // Compile both first so the timing below is about slots only.
    let mut warm = envelope(&spin, "GET", "/");
    warm["limits"] = json!({"timeout_ms": 10});
    let _ = t.post(&warm).await;
    let _ = t.post(&envelope(&echo, "GET", "/")).await;

    let holder = t.clone();
    let mut hold = envelope(&spin, "GET", "/");
    hold["limits"] = json!({"timeout_ms": 1500});
    let busy = tokio::spawn(async move { holder.post(&hold).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let (status, headers, body) = t.post(&envelope(&echo, "GET", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "overloaded");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    let (status, _, _) = busy.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    next_request_succeeds(&t).await;
}

/// A-01: fuel that runs out while the component is still instantiating
/// (its start-up code) is the same limit: 504 `fuel_exhausted`.
#[tokio::test]
async fn a01_fuel_exhausted_during_instantiation_is_504() {
    let t = TestRunner::new();
    let digest = t.publish_dir(&hello_dir());
    let mut env = envelope(&digest, "GET", "/hello");
    env["limits"] = serde_json::json!({"fuel": 0});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "fuel_exhausted");
}

/// A-07: one huge argument to a host API (a 100 MiB log message) is refused
/// by the hostcall fuel before the host copies it: a trap, 502; a message of
/// honest size still passes.
#[tokio::test]
async fn a07_huge_host_call_argument_is_refused() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_host_alloc");
    let mut env = envelope(&digest, "GET", "/?mib=100");
    env["limits"] = json!({"memory_mb": 256});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "extension_trap");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("fuel allocated for hostcalls"), "{message}");

    let (status, _, body) = t.post(&envelope(&digest, "GET", "/?mib=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    next_request_succeeds(&t).await;
}

/// A-08: `memory.fill` and `memory.copy` over most of a 96 MiB memory, in a
/// loop: each instruction runs at host speed, but the deadline still ends
/// the execution (504) within the deadline plus a margin.
#[tokio::test]
async fn a08_bulk_memory_loop_ends_at_the_deadline() {
    // The fixture really uses both instructions.
    let wasm = std::fs::read(ext_test_fixtures::component("limits_bulk_memory")).unwrap();
    let (mut fill, mut copy) = (false, false);
    let mut stack = vec![wasm.as_slice()];
    while let Some(bytes) = stack.pop() {
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.unwrap() {
                wasmparser::Payload::ModuleSection { unchecked_range, .. }
                | wasmparser::Payload::ComponentSection { unchecked_range, .. } => {
                    stack.push(&bytes[unchecked_range]);
                }
                wasmparser::Payload::CodeSectionEntry(body) => {
                    for op in body.get_operators_reader().unwrap() {
                        match op.unwrap() {
                            wasmparser::Operator::MemoryFill { .. } => fill = true,
                            wasmparser::Operator::MemoryCopy { .. } => copy = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(fill && copy, "memory.fill {fill}, memory.copy {copy}");

    let t = TestRunner::new();
    let digest = t.publish_component("limits_bulk_memory", &wasm);
    let mut env = envelope(&digest, "GET", "/?mib=96");
    env["limits"] = json!({"timeout_ms": 300});
    let _ = t.post(&env).await; // compile outside the measurement
    let started = Instant::now();
    let (status, _, body) = t.post(&env).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "execution_timeout");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    next_request_succeeds(&t).await;
}
