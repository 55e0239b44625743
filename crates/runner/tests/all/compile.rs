//! compile storms. One compile per component (its SHA-256 and world,
//! whatever bundle carries it) however many callers give up, a bounded
//! compile pool with a per-tenant share whose waiting counts against the
//! request's deadline, a cap on component bytes, remembered refusals, and
//! `pack`/`publish` refusing up front what the runner would refuse.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::support::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(ext_test_fixtures::component(name)).unwrap()
}

/// A valid component that takes Cranelift a while: `echo` plus one more
/// core module (never instantiated, but compiled like every module of a
/// component) of `functions` large functions. `salt` makes components that
/// are otherwise alike distinct.
pub fn slow_echo(functions: usize, salt: u32) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut wat = String::from("(module\n");
    for f in 0..functions {
        let _ = writeln!(wat, "(func (export \"f{f}\") (param i64 i64) (result i64) (local i64)");
        for op in 0..150u32 {
            let k = u64::from(salt) * 1_000_003 + (f as u64) * 151 + u64::from(op);
            let _ = write!(
                wat,
                "local.get 0 i64.const {k} i64.mul local.get 1 i64.xor local.get 2 i64.rotl local.set 2\n\
                 local.get 2 local.get 0 i64.add local.set 0 local.get 1 i64.const {op} i64.shr_u local.set 1\n"
            );
        }
        wat.push_str("local.get 0 local.get 2 i64.add)\n");
    }
    wat.push(')');
    let module = wat::parse_str(&wat).unwrap();
    let mut component = fixture("echo");
    // A component's core module section: id 1, LEB128 size, the module.
    component.push(1);
    leb128(&mut component, module.len());
    component.extend_from_slice(&module);
    component
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Functions in [`slow_echo`] for a compile of roughly a second or more
/// here (the tests only need it to outlast their callers' patience).
const SLOW: usize = 1200;

fn stat(t: &TestRunner, pick: fn(&ext_runner::engine::Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
    pick(t.runner.engine_stats()).load(Ordering::Relaxed)
}

/// Wait (bounded) until no compile is running.
async fn compiles_settle(t: &TestRunner) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.runner.runtime().compiles_in_progress() > 0 {
        assert!(Instant::now() < deadline, "a compile did not finish within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (bounded) until a compile is running.
async fn compile_started(t: &TestRunner) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.runner.runtime().compiles_in_progress() == 0 {
        assert!(Instant::now() < deadline, "no compile started within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn for_tenant(digest: &ext_bundle::Digest, tenant: &str, timeout_ms: u64) -> serde_json::Value {
    let mut env = envelope(digest, "GET", "/");
    env["context"]["tenant_id"] = json!(tenant);
    env["limits"] = json!({"timeout_ms": timeout_ms});
    env
}

/// four callers give up (drop their requests) while the one slow
/// compile runs; it still completes, fills the cache once, and the next
/// request is served from memory without compiling again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_callers_that_give_up_do_not_restart_the_compile() {
    let t = Arc::new(TestRunner::new());
    let digest = t.publish_component("slow", &slow_echo(SLOW, 1));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let t = t.clone();
        callers.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(300), t.post(&envelope(&digest, "GET", "/")))
                .await
                .is_err()
        }));
    }
    for caller in callers {
        assert!(caller.await.unwrap(), "the caller was to give up mid-compile");
    }
    compiles_settle(&t).await;
    assert_eq!(stat(&t, |s| &s.compiles), 1, "one compile for four cancelled callers");

    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stat(&t, |s| &s.compiles), 1, "the next request compiled again");
    assert_eq!(stat(&t, |s| &s.artifact_loads), 0, "served from memory, not reloaded");
}

/// a component refused at load is compiled once; asking again gets
/// the remembered refusal (same code and message), for each kind of refusal.
#[tokio::test]
async fn a21_refusals_are_remembered_not_recompiled() {
    let t = TestRunner::new();
    let sockets = t.publish_fixture("wasi_sockets");
    let garbage = t.publish_component("garbage", b"\0asm garbage");
    for (digest, code) in [(&sockets, "unsupported_import"), (&garbage, "component_invalid")] {
        let before = stat(&t, |s| &s.compiles);
        let mut messages = Vec::new();
        for _ in 0..3 {
            let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
            assert_eq!(error_code(&body), code, "{body}");
            messages.push(body["error"]["message"].as_str().unwrap().to_string());
        }
        assert_eq!(
            stat(&t, |s| &s.compiles) - before,
            1,
            "{code}: compiled once for three requests"
        );
        assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    }
    assert!(
        t.runner.engine_stats().refusals_remembered.load(Ordering::Relaxed) >= 4,
        "two remembered answers per component"
    );
    // A good component on the same runner is unaffected.
    let echo = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&echo, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A refusal is remembered for the component, not the bundle: another
/// bundle carrying the same bytes (at another path) gets it without a
/// compile, and its message names that bundle's own path.
#[tokio::test]
async fn a21_a_refusal_is_shared_by_every_bundle_with_the_component_and_names_its_path() {
    let t = TestRunner::new();
    let wasm = std::fs::read(ext_test_fixtures::component("wasi_sockets")).unwrap();
    let first = t.publish_component("sockets_one", &wasm);
    let other = bundle_dir_for("sockets_two", &wasm);
    let manifest_path = other.path().join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["entry"] = "dist/handler.wasm".into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let dist = other.path().join("dist");
    std::fs::rename(dist.join("main.wasm"), dist.join("handler.wasm")).unwrap();
    let second = t.publish_dir(other.path());
    let mut messages = Vec::new();
    for digest in [&first, &second] {
        let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(error_code(&body), "unsupported_import", "{body}");
        messages.push(body["error"]["message"].as_str().unwrap().to_string());
    }
    assert_eq!(stat(&t, |s| &s.compiles), 1, "compiled once for both bundles");
    assert_eq!(stat(&t, |s| &s.refusals_remembered), 1);
    assert!(
        messages[0].starts_with("dist/main.wasm: imports interfaces"),
        "{messages:?}"
    );
    assert_eq!(
        messages[1],
        messages[0].replacen("dist/main.wasm", "dist/handler.wasm", 1),
        "the same refusal, naming the second bundle's path"
    );
}

/// with one compile slot busy with tenant A's slow component, tenant
/// B's request for another component waits only until its own deadline and
/// gets 503 `compile_busy` with Retry-After; once the slot frees, B's
/// component compiles and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_compile_pool_is_bounded_and_waiting_counts_against_the_deadline() {
    let t = Arc::new(TestRunner::with_env(&[("RUNNER_COMPILE_CONCURRENCY", "1")]));
    let first = t.publish_component("slow_a", &slow_echo(SLOW, 2));
    let second = t.publish_component("slow_b", &slow_echo(SLOW / 4, 3));
    let holder = {
        let t = t.clone();
        tokio::spawn(async move { t.post(&for_tenant(&first, "tenant-a", 30_000)).await.0 })
    };
    compile_started(&t).await;

    let started = Instant::now();
    let (status, headers, body) = t.post(&for_tenant(&second, "tenant-b", 200)).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "compile_busy", "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "waited {waited:?}: until about the 200 ms deadline, not longer"
    );
    assert_eq!(t.runner.runtime().compiles_in_progress(), 1, "never two at once");
    assert_eq!(t.runner.engine_stats().compile_busy.load(Ordering::Relaxed), 1);

    assert_eq!(holder.await.unwrap(), StatusCode::OK);
    let (status, _, body) = t.post(&for_tenant(&second, "tenant-b", 30_000)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stat(&t, |s| &s.compiles), 2);
}

/// one tenant holds at most half the compile slots: with two slots,
/// tenant A's second cold component waits (and gives up at its deadline)
/// while tenant B still gets the other slot at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_one_tenant_holds_at_most_its_share_of_compile_slots() {
    let t = Arc::new(TestRunner::with_env(&[("RUNNER_COMPILE_CONCURRENCY", "2")]));
    let a1 = t.publish_component("slow_a1", &slow_echo(SLOW, 4));
    let a2 = t.publish_component("slow_a2", &slow_echo(8, 5));
    let b = t.publish_component("slow_b1", &slow_echo(8, 6));
    let holder = {
        let t = t.clone();
        tokio::spawn(async move { t.post(&for_tenant(&a1, "tenant-a", 30_000)).await.0 })
    };
    compile_started(&t).await;

    let (status, _, body) = t.post(&for_tenant(&a2, "tenant-a", 200)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "compile_busy", "{body}");
    let (status, _, body) = t.post(&for_tenant(&b, "tenant-b", 30_000)).await;
    assert_eq!(status, StatusCode::OK, "tenant b used the free slot: {body}");
    assert_eq!(holder.await.unwrap(), StatusCode::OK);
}

/// a component over RUNNER_MAX_COMPONENT_BYTES is refused before it
/// is read or compiled (and the refusal is remembered); at the cap it runs.
#[tokio::test]
async fn a21_component_size_is_capped_before_compiling() {
    let size = fixture("echo").len();
    let t = TestRunner::with_env(&[("RUNNER_MAX_COMPONENT_BYTES", &(size - 1).to_string())]);
    let digest = t.publish_fixture("echo");
    for _ in 0..2 {
        let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(error_code(&body), "component_too_large", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("dist/main.wasm") && message.contains("RUNNER_MAX_COMPONENT_BYTES"),
            "{message}"
        );
    }
    assert_eq!(stat(&t, |s| &s.compiles), 0);

    let t = TestRunner::with_env(&[("RUNNER_MAX_COMPONENT_BYTES", &size.to_string())]);
    let digest = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `pack` (the binary: non-zero exit) and `publish` refuse a
/// component the runner would refuse at load, naming the file and the
/// import; nothing is written to the store.
#[tokio::test]
async fn a21_pack_and_publish_refuse_what_the_runner_refuses() {
    let dir = bundle_dir_for("sockets", &fixture("wasi_sockets"));
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle.tar.zst");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ext-runner"))
        .arg("pack")
        .arg(dir.path())
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "pack accepted it: {stderr}");
    assert!(
        stderr.contains("dist/main.wasm") && stderr.contains("wasi:sockets/"),
        "{stderr}"
    );
    assert!(!bundle.exists());

    // A bundle packed without the check (by another tool) is not published.
    std::fs::write(&bundle, ext_bundle::pack_dir(dir.path()).unwrap()).unwrap();
    let store = out.path().join("store");
    let args = ext_runner::cli::PublishArgs {
        bundle: bundle.clone(),
        store: format!("file://{}", store.display()),
        allow_unsigned: true,
        ..Default::default()
    };
    let error = ext_runner::cli::publish(&args, &Default::default(), false)
        .await
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains("is not published") && error.contains("dist/main.wasm") && error.contains("wasi:sockets/"),
        "{error}"
    );
    assert!(!store.exists() || std::fs::read_dir(&store).unwrap().next().is_none());

    // The same bundle around a component the runner accepts packs fine.
    let good = bundle_dir_for("echo", &fixture("echo"));
    ext_runner::cli::pack_dir(good.path()).unwrap();
}

/// A request that joined a compile another bundle's request started, which
/// failed for that bundle's own reason (its file changed on disk), does not
/// get that failure (nor that bundle's hash): it compiles from its own
/// bundle's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_compile_failing_for_the_other_bundle_is_retried_with_this_ones_files() {
    use ext_runner::engine::{Admission, ComponentSource, EngineLimits, Runtime, Unbudgeted};
    let dir = tempfile::tempdir().unwrap();
    let limits = EngineLimits {
        max_concurrency: 2,
        max_memory_bytes: 64 << 20,
        max_loaded_components: 8,
        compile_concurrency: 2,
        max_component_bytes: 64 << 20,
    };
    let runtime = Arc::new(Runtime::new(limits, dir.path(), Arc::new(Unbudgeted), None).unwrap());
    let wasm = fixture("echo");
    let (reading, read_started) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let broken = ext_bundle::Digest::of(b"bundle a");
    let source = |bundle: &[u8], read: ext_runner::engine::ReadBytes| ComponentSource {
        bundle: ext_bundle::Digest::of(bundle),
        path: "dist/main.wasm".into(),
        wasm: read,
        precompiled: None,
        sha256: ext_bundle::Digest::of(&wasm),
        bytes: wasm.len() as u64,
    };
    let corrupt = source(
        b"bundle a",
        Box::new(move || {
            reading.send(()).unwrap();
            released.recv().unwrap();
            Err(ext_runner::engine::Failure::new(
                ext_runner::error::ErrorCode::BundleIntegrity,
                format!("bundle {broken}: `dist/main.wasm` changed on disk since it was verified"),
            ))
        }),
    );
    let good_bytes = wasm.clone();
    let good = source(b"bundle b", Box::new(move || Ok(good_bytes)));
    let admission = || Admission {
        tenant: "tenant-a",
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };
    let first = tokio::spawn({
        let runtime = runtime.clone();
        async move {
            runtime
                .component(corrupt, ext_bundle::World::Runner, admission())
                .await
                .map(drop)
        }
    });
    // A's compile is reading its file: B joins it, then A's read fails.
    tokio::task::spawn_blocking(move || read_started.recv().unwrap())
        .await
        .unwrap();
    let second = tokio::spawn({
        let runtime = runtime.clone();
        async move {
            runtime
                .component(good, ext_bundle::World::Runner, admission())
                .await
                .map(drop)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    let failure = first.await.unwrap().unwrap_err();
    assert_eq!(failure.code, ext_runner::error::ErrorCode::BundleIntegrity);
    second
        .await
        .unwrap()
        .unwrap_or_else(|f| panic!("{}: {}", f.code.as_str(), f.message));
    let stats = runtime.stats();
    assert_eq!(stats.compiles.load(Ordering::Relaxed), 1, "B's own compile");
}
