//! Guest CPU (catalogue A-09, the noisy-neighbours issue): guests run on
//! their own threads under a fair share of CPU slices, every execution's
//! CPU time is measured and charged to its tenant, and a tenant's CPU
//! budget refuses it with 429 `tenant_cpu_exceeded` once used up, in one
//! runner and across runners sharing Redis.
//!
//! Latency is printed, never asserted: `bench/neighbours` measures it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn envelope_for(digest: &ext_bundle::Digest, tenant: &str, limits: Value) -> Value {
    let mut env = envelope(digest, "GET", "/");
    env["context"]["tenant_id"] = tenant.into();
    env["limits"] = limits;
    env
}

fn millis(durations: &mut [Duration]) -> (f64, f64) {
    durations.sort_unstable();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(1.0))
}

/// B's sequential echo calls (all must succeed), with `/healthz` between.
async fn tenant_b_samples(t: &TestRunner, echo: &ext_bundle::Digest, n: usize) -> (Vec<Duration>, Vec<Value>) {
    let mut latencies = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let (status, _, body) = t.post(&envelope_for(echo, "tenant-b", json!({}))).await;
        latencies.push(started.elapsed());
        assert_eq!(status, StatusCode::OK, "tenant B was refused: {body}");
        reports.push(body["report"].clone());
        let (status, text) = get_text(t, "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    (latencies, reports)
}

/// tenant A keeps every one of its slots busy with guests that spin
/// until their deadline; tenant B's calls and `/healthz` keep succeeding,
/// A's spinners end as timeouts with their CPU time in the report and the
/// metrics. Prints B's latency alone and beside A (the ratio the fair share
/// is for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a09_spinning_neighbour_leaves_other_tenants_their_share() {
    const A_CAP: usize = 8;
    let t = Arc::new(TestRunner::with_env(&[
        ("RUNNER_TENANT_MAX_CONCURRENCY", "8"),
        ("RUNNER_EXTENSION_MAX_CONCURRENCY", "8"),
        ("RUNNER_GUEST_THREADS", "2"),
        ("RUNNER_MAX_CONCURRENCY", "12"),
    ]));
    let spin = t.publish_fixture("limits_infinite_loop");
    let echo = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope_for(&spin, "warm", json!({"timeout_ms": 50}))).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let (mut alone, _) = tenant_b_samples(&t, &echo, 30).await;

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..A_CAP)
        .map(|_| {
            let (t, stop) = (t.clone(), stop.clone());
            let env = envelope_for(&spin, "tenant-a", json!({"timeout_ms": 1000}));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    answers.push(t.post(&env).await);
                }
                answers
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.runner.quotas().in_flight("tenant-a") < A_CAP as u32 {
        assert!(Instant::now() < deadline, "tenant A never filled its slots");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut beside, reports) = tenant_b_samples(&t, &echo, 30).await;
    assert!(
        t.runner.quotas().in_flight("tenant-a") > 0,
        "A's spinners were not running while B was measured"
    );
    stop.store(true, Ordering::Relaxed);

    for report in &reports {
        assert!(report["cpu_wait_ms"].is_number(), "{report}");
        assert!(report["cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
    }
    let mut a_cpu_ms = 0.0;
    for spinner in spinners {
        for (status, _, body) in spinner.await.unwrap() {
            assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
            assert_eq!(error_code(&body), "execution_timeout");
            let report = &body["report"];
            let (cpu, wall) = (report["cpu_ms"].as_f64().unwrap(), report["wall_ms"].as_f64().unwrap());
            assert!(cpu > 0.0, "a spinner used no CPU: {report}");
            assert!(cpu <= wall + 1.0, "more CPU than wall time: {report}");
            a_cpu_ms += cpu;
        }
    }
    let (_, metrics) = get_text(&t, "/metrics").await;
    let series = metrics
        .lines()
        .find(|l| l.starts_with("ext_runner_cpu_seconds_total{") && l.contains("tenant=\"tenant-a\""))
        .unwrap_or_else(|| panic!("no CPU series for tenant-a in\n{metrics}"));
    let counted: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
    // Everything has ended: every slice is free again and no tenant is left in the share.
    assert_eq!(
        metric_value(&metrics, "ext_runner_cpu_slices_free"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "ext_runner_cpu_tenants_active"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        (counted * 1000.0 - a_cpu_ms).abs() < 1.0,
        "metric {counted} s vs reports {a_cpu_ms} ms"
    );

    let ((alone_p50, alone_max), (beside_p50, beside_max)) = (millis(&mut alone), millis(&mut beside));
    println!(
        "A-09: tenant B alone p50 {alone_p50:.3} ms max {alone_max:.3} ms; beside {A_CAP} spinners of A \
         p50 {beside_p50:.3} ms max {beside_max:.3} ms (p50 ratio {:.1}x); A's spinners used {a_cpu_ms:.0} ms of CPU",
        beside_p50 / alone_p50
    );
}

/// A tenant that used its CPU budget up is refused with 429
/// `tenant_cpu_exceeded` and a `Retry-After` before any guest runs; other
/// tenants are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_budget_refuses_a_tenant_that_used_it_up() {
    // 20 CPU ms per second, 20 ms of burst: one 200 ms spinner overdraws it.
    let t = TestRunner::with_env(&[("RUNNER_TENANT_CPU_MS_PER_SEC", "20:20")]);
    let spin = t.publish_fixture("limits_infinite_loop");
    let echo = t.publish_fixture("echo");
    let (status, headers, body) = spin_until_refused(&t, &spin, "tenant-a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "tenant_cpu_exceeded");
    assert!(body.get("report").is_none(), "a guest ran: {body}");
    let retry: u64 = headers["retry-after"].parse().unwrap();
    assert!((1..=3).contains(&retry), "retry-after {retry}");
    let (status, _, body) = t.post(&envelope_for(&echo, "tenant-b", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "another tenant was refused: {body}");
    assert!(t.runner.cpu().budget_refusals() >= 1);
    let (_, metrics) = get_text(&t, "/metrics").await;
    let refused = metric_value(&metrics, "ext_runner_cpu_refusals{reason=\"budget\"}");
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
}

/// Spinners of 200 ms for `tenant` until it is refused (at most 20).
async fn spin_until_refused(
    t: &TestRunner,
    spin: &ext_bundle::Digest,
    tenant: &str,
) -> (StatusCode, std::collections::HashMap<String, String>, Value) {
    for _ in 0..20 {
        let answer = t.post(&envelope_for(spin, tenant, json!({"timeout_ms": 200}))).await;
        if answer.0 != StatusCode::GATEWAY_TIMEOUT {
            return answer;
        }
        // Past the budget's Redis sync interval, so the next admission syncs.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("{tenant} was never refused");
}

/// The CPU budget shared through Redis: what one runner charged refuses
/// the tenant on another runner too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_budget_shared_through_redis_by_two_runners() {
    let url = redis_url();
    let settings = [
        // 10 CPU ms per second, 20 ms of burst: refilling takes seconds.
        ("RUNNER_TENANT_CPU_MS_PER_SEC", "10:20"),
        ("RUNNER_RATE_LIMIT_REDIS_URL", url.as_str()),
    ];
    let (one, two) = (TestRunner::with_env(&settings), TestRunner::with_env(&settings));
    let spin = one.publish_fixture("limits_infinite_loop");
    let echo = two.publish_fixture("echo");
    // A new tenant id, so earlier runs' keys in the shared Redis do not count.
    let tenant = format!("tenant-{}", uuid());
    let (status, _, body) = spin_until_refused(&one, &spin, &tenant).await;
    assert_eq!(error_code(&body), "tenant_cpu_exceeded", "{status}: {body}");

    let (status, _, body) = two.post(&envelope_for(&echo, &tenant, json!({}))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the other runner ignored the debt: {body}"
    );
    assert_eq!(error_code(&body), "tenant_cpu_exceeded");
    let (status, _, body) = two
        .post(&envelope_for(&echo, &format!("other-{}", uuid()), json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for t in [&one, &two] {
        assert_eq!(t.runner.cpu().budget_fail_open(), 0, "Redis was not used");
    }
    let ttl_ms = redis_ttl_ms(&url, &format!("ext-cpu:{tenant}")).await;
    // Full again within (20 + 20) ms / 10 ms per s = 4 s, plus 1 s of slack.
    assert!(ttl_ms > 0 && ttl_ms <= 5_000, "ttl {ttl_ms} ms");
}
