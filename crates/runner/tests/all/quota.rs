//! Tenant quotas (catalogue A-09): concurrency caps per tenant and per
//! extension answered at once with 429, the global cap with 503
//! `overloaded`, and the per-tenant rate limit in memory and shared through
//! Redis by several runners.
//!
//! Slow guests are `limits_sleep` (`?ms=N` sleeps in a host call); tests wait
//! on the runner's own in-flight counters instead of sleeping and hoping.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// An envelope for `digest` from `tenant` and `extension`.
fn envelope_for(digest: &ext_bundle::Digest, path: &str, tenant: &str, extension: &str) -> Value {
    let mut env = envelope(digest, "GET", path);
    env["context"]["tenant_id"] = tenant.into();
    env["context"]["extension_id"] = extension.into();
    env
}

/// A `limits_sleep` call that holds its slot for `ms` milliseconds.
fn sleeper(digest: &ext_bundle::Digest, ms: u64, tenant: &str, extension: &str) -> Value {
    let mut env = envelope_for(digest, &format!("/?ms={ms}"), tenant, extension);
    env["limits"] = json!({"timeout_ms": ms + 20_000});
    env
}

/// Wait (bounded) until `tenant` has `n` executions in flight.
async fn wait_in_flight(t: &TestRunner, tenant: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.runner.quotas().in_flight(tenant) != n {
        assert!(
            Instant::now() < deadline,
            "{tenant} never reached {n} executions in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn retry_after(headers: &std::collections::HashMap<String, String>) -> u64 {
    headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no retry-after in {headers:?}"))
        .parse()
        .unwrap()
}

/// tenant A keeps its cap busy with slow guests and sends 10× its cap
/// more; every excess request is refused at once with 429
/// `tenant_concurrency_exceeded` and `Retry-After`, while tenant B's
/// requests, sent at the same time, all succeed quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a09_noisy_neighbour_does_not_hurt_other_tenants() {
    const CAP: u32 = 2;
    let t = Arc::new(TestRunner::with_env(&[
        ("RUNNER_TENANT_MAX_CONCURRENCY", &CAP.to_string()),
        ("RUNNER_MAX_CONCURRENCY", "8"),
    ]));
    let sleep = t.publish_fixture("limits_sleep");
    let echo = t.publish_fixture("echo");
    // Compile both first so timings below are about quotas only.
    let (status, _, body) = t.post(&sleeper(&sleep, 0, "warm", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "warm", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // B alone first, for the ratio printed at the end.
    let mut alone = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-b", "com.test.ext")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        alone.push(started.elapsed());
    }

    // Tenant A fills its cap with guests that sleep 5 s.
    let mut holders = Vec::new();
    for _ in 0..CAP {
        let t = t.clone();
        let env = sleeper(&sleep, 5_000, "tenant-a", "com.test.slow");
        holders.push(tokio::spawn(async move { t.post(&env).await }));
    }
    wait_in_flight(&t, "tenant-a", CAP).await;

    // 10x its cap more from A, all at once, while B works normally (two
    // requests at a time, within its own cap).
    let flood: Vec<_> = (0..10 * CAP)
        .map(|_| {
            let t = t.clone();
            let env = envelope_for(&echo, "/", "tenant-a", "com.test.ext");
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = t.post(&env).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let neighbours: Vec<_> = (0..2)
        .map(|_| {
            let t = t.clone();
            let env = envelope_for(&echo, "/", "tenant-b", "com.test.ext");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for _ in 0..10 {
                    let started = Instant::now();
                    let (status, _, body) = t.post(&env).await;
                    assert_eq!(status, StatusCode::OK, "tenant B was refused: {body}");
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();

    for task in flood {
        let ((status, headers, body), elapsed) = task.await.unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(error_code(&body), "tenant_concurrency_exceeded");
        assert_eq!(body["status"], 429);
        assert_eq!(retry_after(&headers), 1);
        assert!(
            elapsed < Duration::from_secs(1),
            "a refusal took {elapsed:?}: it must not queue"
        );
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in neighbours {
        latencies.extend(task.await.unwrap());
    }
    let worst = *latencies.iter().max().unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "tenant B's slowest request took {worst:?}"
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (alone_p50, beside_p50) = (median(&mut alone), median(&mut latencies));
    println!(
        "A-09: tenant B p50 alone {alone_p50:?}, beside A's flood {beside_p50:?} (ratio {:.1}x), slowest {worst:?}",
        beside_p50.as_secs_f64() / alone_p50.as_secs_f64()
    );
    // A's slow guests were in flight the whole time (else the refusals above
    // would prove nothing).
    assert_eq!(
        t.runner.quotas().in_flight("tenant-a"),
        CAP,
        "the slow guests ended too early"
    );
    let stats = t.runner.quotas().stats();
    assert_eq!(
        stats.tenant_concurrency_rejections.load(Ordering::Relaxed),
        u64::from(10 * CAP)
    );

    for holder in holders {
        let (status, _, body) = holder.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Slots given back: A is served again, and nothing is left behind.
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.quotas().tenants_in_flight(), 0);
}

/// the per-(tenant, extension) cap refuses the busy extension with
/// 429 `extension_concurrency_exceeded`; the tenant's other extensions and
/// other tenants' use of the same extension still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a09_extension_cap() {
    let t = Arc::new(TestRunner::with_env(&[
        ("RUNNER_TENANT_MAX_CONCURRENCY", "4"),
        ("RUNNER_EXTENSION_MAX_CONCURRENCY", "1"),
    ]));
    let sleep = t.publish_fixture("limits_sleep");
    let echo = t.publish_fixture("echo");
    let _ = t.post(&sleeper(&sleep, 0, "warm", "com.test.ext")).await;
    let _ = t.post(&envelope_for(&echo, "/", "warm", "com.test.ext")).await;

    let holder = {
        let t = t.clone();
        let env = sleeper(&sleep, 3_000, "tenant-a", "com.test.busy");
        tokio::spawn(async move { t.post(&env).await })
    };
    wait_in_flight(&t, "tenant-a", 1).await;

    let (status, headers, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.busy")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "extension_concurrency_exceeded");
    assert_eq!(retry_after(&headers), 1);
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.other")).await;
    assert_eq!(status, StatusCode::OK, "the tenant's other extension: {body}");
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-b", "com.test.busy")).await;
    assert_eq!(status, StatusCode::OK, "another tenant's use of the extension: {body}");
    assert_eq!(
        t.runner.quotas().in_flight("tenant-a"),
        1,
        "the slow guest ended too early"
    );

    let (status, _, body) = holder.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.busy")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The global cap: tenants each within their own cap fill every execution
/// slot; the next request gets 503 `overloaded` with `Retry-After` (not a
/// 429: it is the runner that is full), after at most the short slot wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_cap_answers_503_overloaded() {
    let t = Arc::new(TestRunner::with_env(&[
        ("RUNNER_MAX_CONCURRENCY", "2"),
        ("RUNNER_TENANT_MAX_CONCURRENCY", "1"),
    ]));
    let sleep = t.publish_fixture("limits_sleep");
    let echo = t.publish_fixture("echo");
    let _ = t.post(&sleeper(&sleep, 0, "warm", "com.test.ext")).await;
    let _ = t.post(&envelope_for(&echo, "/", "warm", "com.test.ext")).await;

    let mut holders = Vec::new();
    for tenant in ["tenant-a", "tenant-b"] {
        let t = t.clone();
        let env = sleeper(&sleep, 3_000, tenant, "com.test.ext");
        holders.push(tokio::spawn(async move { t.post(&env).await }));
    }
    wait_in_flight(&t, "tenant-a", 1).await;
    wait_in_flight(&t, "tenant-b", 1).await;

    let started = Instant::now();
    let (status, headers, body) = t.post(&envelope_for(&echo, "/", "tenant-c", "com.test.ext")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "overloaded");
    assert_eq!(body["status"], 503);
    assert_eq!(retry_after(&headers), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        t.runner.quotas().in_flight("tenant-a"),
        1,
        "the slow guests ended too early"
    );

    for holder in holders {
        let (status, _, body) = holder.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-c", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The in-memory token bucket: a burst passes, the next request gets 429
/// `rate_limited` with the `Retry-After` the bucket computes, other tenants
/// are unaffected, and after that wait the tenant is served again.
#[tokio::test]
async fn rate_limit_in_memory_burst_then_429_then_refill() {
    // One token every 2 s, two back to back.
    let t = TestRunner::with_env(&[("RUNNER_TENANT_RATE_LIMIT", "0.5:2")]);
    let echo = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "warm", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for _ in 0..2 {
        let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.ext")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, headers, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.ext")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "rate_limited");
    let wait = retry_after(&headers);
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    // Another tenant has its own bucket.
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-b", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Retry-After is honest: after it, a token is there.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.ext")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.quotas().stats().rate_limited.load(Ordering::Relaxed), 1);
    assert_eq!(t.runner.quotas().buckets_held(), 3);
}

/// The rate limit shared through Redis: two runners (two "processes")
/// pointing at one Redis give a tenant one budget between them, not one each.
#[tokio::test]
async fn rate_limit_shared_through_redis_by_two_runners() {
    let url = redis_url();
    let settings = [
        // One token every 10 s, a burst of 3: the whole test runs well inside one refill.
        ("RUNNER_TENANT_RATE_LIMIT", "0.1:3"),
        ("RUNNER_RATE_LIMIT_REDIS_URL", url.as_str()),
    ];
    let runners = [TestRunner::with_env(&settings), TestRunner::with_env(&settings)];
    let digests: Vec<_> = runners.iter().map(|t| t.publish_fixture("echo")).collect();
    // Each tenant id is new, so earlier runs' keys in the shared Redis do not count.
    let tenant = format!("tenant-{}", uuid());
    for (t, digest) in runners.iter().zip(&digests) {
        let (status, _, body) = t
            .post(&envelope_for(digest, "/", &format!("warm-{}", uuid()), "com.test.ext"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let mut passed = 0;
    for i in 0..10 {
        let (t, digest) = (&runners[i % 2], &digests[i % 2]);
        let (status, headers, body) = t.post(&envelope_for(digest, "/", &tenant, "com.test.ext")).await;
        match status {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(error_code(&body), "rate_limited");
                assert!((1..=10).contains(&retry_after(&headers)), "{headers:?}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(passed, 3, "the burst is shared: 3 in total, not 3 per runner");
    for t in &runners {
        let stats = t.runner.quotas().stats();
        assert_eq!(
            stats.rate_limit_fail_open.load(Ordering::Relaxed),
            0,
            "Redis was not used"
        );
        assert!(stats.rate_limited.load(Ordering::Relaxed) >= 3);
        assert_eq!(
            t.runner.quotas().buckets_held(),
            0,
            "buckets live in Redis, not in memory"
        );
    }

    // The bucket is one key per tenant that expires once it would be full again.
    let ttl_ms = redis_ttl_ms(&url, &format!("ext-rl:{tenant}")).await;
    assert!(ttl_ms > 0 && ttl_ms <= 31_000, "ttl {ttl_ms} ms");
}

/// The bar: two real `ext-runner serve` processes against one Redis
/// share one tenant's budget.
#[test]
fn rate_limit_shared_through_redis_by_two_processes() {
    let url = redis_url();
    let tenant = format!("tenant-{}", uuid());
    // Each process has its own data directory (and bundle store).
    let stores: Vec<TestRunner> = (0..2).map(|_| TestRunner::new()).collect();
    let mut servers = Vec::new();
    let mut bodies = Vec::new();
    for store in &stores {
        let digest = store.publish_fixture("echo");
        let server = Server::start(
            store.dir.path(),
            &[
                ("RUNNER_TENANT_RATE_LIMIT", "0.1:3"),
                ("RUNNER_RATE_LIMIT_REDIS_URL", &url),
            ],
        );
        // Warm the process (compile) with a tenant of its own.
        let warm = envelope_for(&digest, "/", &format!("warm-{}", uuid()), "com.test.ext").to_string();
        let response = server.post(&warm);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        servers.push(server);
        bodies.push(envelope_for(&digest, "/", &tenant, "com.test.ext").to_string());
    }
    let mut passed = 0;
    for i in 0..10 {
        let response = servers[i % 2].post(&bodies[i % 2]);
        if response.starts_with("HTTP/1.1 200") {
            passed += 1;
        } else {
            assert!(response.starts_with("HTTP/1.1 429"), "{response}");
            assert!(response.contains("rate_limited"), "{response}");
            assert!(response.to_ascii_lowercase().contains("retry-after: "), "{response}");
        }
    }
    assert_eq!(passed, 3, "two processes share one burst of 3");
}

/// When Redis is unreachable the rate limit fails open: requests are served
/// (not refused), and the runner counts them.
#[tokio::test]
async fn rate_limit_fails_open_when_redis_is_down() {
    let url = format!("redis://{}", closed_port_addr());
    let t = TestRunner::with_env(&[
        ("RUNNER_TENANT_RATE_LIMIT", "0.1:1"),
        ("RUNNER_RATE_LIMIT_REDIS_URL", &url),
    ]);
    let echo = t.publish_fixture("echo");
    for _ in 0..3 {
        let (status, _, body) = t.post(&envelope_for(&echo, "/", "tenant-a", "com.test.ext")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let fail_open = t.runner.quotas().stats().rate_limit_fail_open.load(Ordering::Relaxed);
    assert_eq!(fail_open, 3);
}

/// A real `ext-runner serve` on a free loopback port, killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
        let port = closed_port_addr().port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ext-runner"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("RUNNER_DATA_DIR", data_dir)
            .env("RUNNER_SERVICE_TOKEN", TOKEN)
            .env("RUNNER_MAX_CONCURRENCY", "8")
            .env("SIGNING_TRUST_BUNDLE", test_key().public_key_pem())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in extra {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ext-runner serve exited with {status}");
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    /// POST /v1/execute; the raw HTTP response.
    fn post(&self, body: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(&http_request(body)).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis goes away and comes back: while it is gone requests are admitted
/// (fail open, counted); once it is back the shared bucket applies again.
/// A TCP relay in front of the real Redis plays the outage.
#[tokio::test]
async fn rate_limit_recovers_when_redis_comes_back() {
    let relay = Relay::start(&redis_url()).await;
    let url = format!("redis://{}", relay.addr);
    // One token per 100 s: a tenant that used its token stays refused for the whole test.
    let t = TestRunner::with_env(&[
        ("RUNNER_TENANT_RATE_LIMIT", "0.01:1"),
        ("RUNNER_RATE_LIMIT_REDIS_URL", &url),
    ]);
    let echo = t.publish_fixture("echo");
    let tenant = format!("tenant-{}", uuid());
    let env = envelope_for(&echo, "/", &tenant, "com.test.ext");
    let post = || t.post(&env);
    let fail_open = || t.runner.quotas().stats().rate_limit_fail_open.load(Ordering::Relaxed);

    let (status, _, body) = post().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = post().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "Redis says no: {body}");
    assert_eq!(fail_open(), 0);

    relay.set_up(false);
    let (status, _, body) = post().await;
    assert_eq!(status, StatusCode::OK, "Redis is down: fail open: {body}");
    assert!(fail_open() >= 1);

    relay.set_up(true);
    // Redis is retried after the pause (1 s); the first try may still meet
    // the dead connection, so allow a few rounds.
    let mut refused = false;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let (status, _, body) = post().await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error_code(&body), "rate_limited");
            refused = true;
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(refused, "the shared limit never applied again after Redis came back");
}

/// A TCP relay to Redis that can be cut (open connections dropped, new ones
/// closed at once) and restored.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(redis_url: &str) -> Relay {
        let target = redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (up, connections) = (up.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let target = target.clone();
                    connections.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            })
        };
        Relay {
            addr,
            up,
            connections,
            accept,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_up(false);
    }
}
