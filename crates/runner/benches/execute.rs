//! In-process latency of the hello handler through `Runner::execute`
//! (envelope parsed once; bundle and component cached, as in steady state).
//!
//! Run: `cargo bench -p ext-runner --bench execute` (optionally
//! `BENCH_ITERATIONS=50000`). Prints p50/p90/p99/mean in microseconds and the
//! single-core throughput they imply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ext_runner::Runner;
use ext_runner::config::{Config, Overrides};
use ext_runner::envelope::Envelope;

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::EcdsaP256);
    // The bundle store comes from the environment when set (bench/cold-start
    // points it at S3); otherwise a directory under the temp dir.
    let mut env: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BUNDLE_STORAGE_"))
        .collect();
    env.extend([
        ("RUNNER_DATA_DIR".to_string(), dir.path().display().to_string()),
        ("RUNNER_SERVICE_TOKEN".to_string(), "bench-token-0123456789".to_string()),
        ("SIGNING_TRUST_BUNDLE".to_string(), key.public_key_pem()),
    ]);
    let config = Config::load(&env, &Overrides::default()).expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = Arc::new(Runner::new(config.clone()).expect("runner"));
    let archive = ext_bundle::pack_dir(&ext_test_fixtures::hello_bundle_dir()).expect("pack hello");
    let digest = ext_bundle::Digest::of(&archive);
    let signature = ext_bundle::signature::encode_signature(&key.sign(&archive));
    let keys = runner
        .bundle_objects()
        .keys(&digest, "bench-tenant", "com.example.hello");
    rt.block_on(async {
        let objects = runner.bundle_objects();
        objects
            .put_if_absent(&keys.bundle, archive.clone().into())
            .await
            .expect("publish bundle");
        objects
            .put_if_absent(&keys.signature, signature.into_bytes().into())
            .await
            .expect("publish signature");
    });
    let json = serde_json::json!({
        "context": {"request_id": "bench", "tenant_id": "bench-tenant", "extension_id": "com.example.hello", "content_hash": digest.to_string()},
        "http": {"method": "GET", "path": "/hello"}
    });
    let envelope = Envelope::parse(json.to_string().as_bytes(), 1 << 20).expect("envelope");

    // Cold start: nothing cached; fetch, hash, verify, unpack, compile, run.
    let started = Instant::now();
    rt.block_on(runner.execute(&envelope, "bench")).expect("cold execute");
    let cold = started.elapsed();
    // Restart with a warm disk cache: a new process state on the same
    // directories (verified bundle entry + compiled artifact on disk).
    drop(runner);
    let started = Instant::now();
    runner = Arc::new(Runner::new(config).expect("runner"));
    rt.block_on(runner.execute(&envelope, "bench")).expect("warm execute");
    let warm = started.elapsed();
    println!(
        "cold start (fetch + verify + unpack + compile + first call): {:8.1} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "restart to first response, warm disk cache:                 {:8.1} ms",
        warm.as_secs_f64() * 1e3
    );

    let mut samples = Vec::with_capacity(iterations);
    rt.block_on(async {
        for _ in 0..1_000 {
            runner.execute(&envelope, "bench").await.expect("warm-up execute");
        }
        for _ in 0..iterations {
            let started = Instant::now();
            let response = runner.execute(&envelope, "bench").await.expect("execute");
            samples.push(started.elapsed());
            assert_eq!(response.status, 200);
        }
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("hello via Runner::execute, {iterations} iterations, one thread");
    println!("  p50  {:8.1} µs", us(pct(0.50)));
    println!("  p90  {:8.1} µs", us(pct(0.90)));
    println!("  p99  {:8.1} µs", us(pct(0.99)));
    println!(
        "  mean {:8.1} µs  (≈ {:.0} executions/s per core)",
        us(mean),
        1.0 / mean.as_secs_f64()
    );
}
