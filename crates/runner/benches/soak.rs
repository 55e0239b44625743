//! Soak (catalogue F-07): the real `ext-runner serve` under a mix of good,
//! failing, looping, memory-hungry and egress-calling requests from several
//! tenants at about 70 % of the capacity measured first, for `SOAK_SECONDS`
//! (default 300). Every few seconds it samples the server's RSS, open file
//! descriptors, threads, async tasks, executions in flight and bundle cache
//! bytes. It prints the outcomes by kind, p50/p99 per minute and the RSS
//! drift, and exits non-zero if a request got an answer other than its
//! kind's (a good request failing above all) or RSS grew more than 10 %
//! after warm-up.
//!
//! Run: `bench/soak` (release build), or `SOAK_SECONDS=60 cargo bench -p
//! ext-runner --bench soak`. `scripts/test` runs a 60 s soak on the test
//! build.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Publisher, Server, percentiles};
use ext_bundle::signature::{KeyAlgorithm, SigningKey};
use serde_json::{Value, json};

/// Load-generator connections (keep-alive, one request at a time each).
const CONNECTIONS: usize = 16;
/// Tenants the requests are spread over.
const TENANTS: usize = 4;
/// How long capacity is measured before the soak.
const CAPACITY_SECONDS: u64 = 5;
/// Share of the measured capacity the soak offers.
const LOAD_SHARE: f64 = 0.7;
/// Server samples are taken this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// RSS may grow this much after warm-up before the soak fails.
const MAX_RSS_GROWTH: f64 = 0.10;

/// One kind of request in the mix, with the answer it must get.
struct Kind {
    name: &'static str,
    /// Requests of this kind per 20 in the mix.
    weight: usize,
    digest: ext_bundle::Digest,
    path: &'static str,
    body: Option<Value>,
    limits: Value,
    /// HTTP status of the runner's answer, and the guest's status or the error code.
    expect: (u16, &'static str),
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let data = tempfile::tempdir().expect("temp dir");
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let upstream = start_upstream();
    let publisher = Publisher {
        data: data.path(),
        key: &key,
        namespace: "soak",
    };
    let base = ["cap:context.read", "cap:log.emit"];
    let kinds = vec![
        Kind {
            name: "good",
            weight: 12,
            digest: publisher.fixture("echo", &base, &[]),
            path: "/soak?x=1",
            body: None,
            limits: json!({}),
            expect: (200, "200"),
        },
        Kind {
            name: "trap",
            weight: 3,
            digest: publisher.fixture("trap", &base, &[]),
            path: "/",
            body: None,
            limits: json!({}),
            expect: (502, "extension_trap"),
        },
        Kind {
            name: "loop",
            weight: 1,
            digest: publisher.fixture("limits_infinite_loop", &base, &[]),
            path: "/",
            body: None,
            limits: json!({"timeout_ms": 50}),
            expect: (504, "execution_timeout"),
        },
        Kind {
            name: "memory",
            weight: 1,
            digest: publisher.fixture("limits_memory_hog", &base, &[]),
            path: "/",
            body: None,
            limits: json!({"memory_mb": 16}),
            expect: (502, "memory_limit_exceeded"),
        },
        Kind {
            name: "egress",
            weight: 3,
            digest: publisher.fixture(
                "fetch_probe",
                &["cap:context.read", "cap:log.emit", "cap:http.fetch"],
                &[format!("http://{upstream}")],
            ),
            path: "/",
            body: Some(json!({"method": "GET", "url": format!("http://{upstream}/soak")})),
            limits: json!({}),
            expect: (200, "200"),
        },
    ];
    let mut server = start_server(data.path(), &key, upstream);
    let addr = server.addr();
    // Which kind each slot of the mix is (weights out of 20).
    let mix: Arc<Vec<usize>> = Arc::new(
        kinds
            .iter()
            .enumerate()
            .flat_map(|(i, kind)| std::iter::repeat_n(i, kind.weight))
            .collect(),
    );
    let requests: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
        kinds
            .iter()
            .map(|kind| (0..TENANTS).map(|t| request_bytes(kind, t)).collect())
            .collect(),
    );

    // Warm every bundle and component once.
    for (i, kind) in kinds.iter().enumerate() {
        let mut client = Client::connect(addr);
        let (status, detail, _) = client.exchange(&requests[i][0]);
        assert_eq!(
            (status, detail.as_str()),
            (kind.expect.0, kind.expect.1),
            "warm-up of `{}`",
            kind.name
        );
    }

    let capacity = {
        let results = run_load(addr, &mix, &requests, Duration::from_secs(CAPACITY_SECONDS), None);
        results.len() as f64 / CAPACITY_SECONDS as f64
    };
    let rate = capacity * LOAD_SHARE;
    println!("soak: capacity {capacity:.0} req/s with this mix; offering {rate:.0} req/s for {seconds} s");

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop, pid) = (samples.clone(), stop.clone(), server.pid());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                samples.lock().unwrap().push(Sample::take(pid, addr, started.elapsed()));
                std::thread::sleep(SAMPLE_EVERY);
            }
        })
    };
    let results = run_load(addr, &mix, &requests, Duration::from_secs(seconds), Some(rate));
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let samples = samples.lock().unwrap().clone();
    let failed = report(&kinds, &results, &samples, seconds);
    server.stop();
    if failed {
        std::process::exit(1);
    }
}

/// One answer: when it was sent (since the soak began), which kind, the
/// runner's status, the guest status or error code, and the latency.
struct Outcome {
    at: Duration,
    kind: usize,
    status: u16,
    detail: String,
    latency: Duration,
}

/// Closed loop (`rate` = None) or paced to `rate` requests per second in
/// all, over [`CONNECTIONS`] keep-alive connections.
fn run_load(
    addr: SocketAddr,
    mix: &Arc<Vec<usize>>,
    requests: &Arc<Vec<Vec<Vec<u8>>>>,
    duration: Duration,
    rate: Option<f64>,
) -> Vec<Outcome> {
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let (mix, requests) = (mix.clone(), requests.clone());
            std::thread::spawn(move || {
                let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 / r));
                let mut client = Client::connect(addr);
                let mut out = Vec::new();
                let mut n = w;
                let mut next = started + interval.map_or(Duration::ZERO, |i| i.mul_f64(w as f64 / CONNECTIONS as f64));
                while started.elapsed() < duration {
                    if let Some(interval) = interval {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += interval;
                    }
                    let kind = mix[n % mix.len()];
                    let tenant = (n / mix.len()) % TENANTS;
                    n += CONNECTIONS;
                    let at = started.elapsed();
                    let sent = Instant::now();
                    let (status, detail, reconnect) = client.exchange(&requests[kind][tenant]);
                    out.push(Outcome {
                        at,
                        kind,
                        status,
                        detail,
                        latency: sent.elapsed(),
                    });
                    if reconnect {
                        client = Client::connect(addr);
                    }
                }
                out
            })
        })
        .collect();
    workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
}

/// Prints the soak's figures; true if it failed.
fn report(kinds: &[Kind], results: &[Outcome], samples: &[Sample], seconds: u64) -> bool {
    let mut failed = false;
    println!("\noutcomes by kind (expected answer → count; anything else is a failure):");
    for (i, kind) in kinds.iter().enumerate() {
        let mut answers: BTreeMap<(u16, &str), usize> = BTreeMap::new();
        for r in results.iter().filter(|r| r.kind == i) {
            *answers.entry((r.status, r.detail.as_str())).or_default() += 1;
        }
        for ((status, detail), count) in &answers {
            let ok = (*status, *detail) == kind.expect;
            failed |= !ok;
            println!(
                "  {:<7} {status} {detail:<24} {count:>8}{}",
                kind.name,
                if ok { "" } else { "  UNEXPECTED" }
            );
        }
    }
    println!("\nlatency per minute (all kinds; good requests in brackets), ms:");
    let minutes = seconds.div_ceil(60);
    for minute in 0..minutes {
        let window = |r: &&Outcome| r.at.as_secs() / 60 == minute;
        let all: Vec<Duration> = results.iter().filter(window).map(|r| r.latency).collect();
        let good: Vec<Duration> = results
            .iter()
            .filter(window)
            .filter(|r| r.kind == 0)
            .map(|r| r.latency)
            .collect();
        let (p50, p99) = percentiles(all);
        let (g50, g99) = percentiles(good);
        println!(
            "  minute {:>2}: p50 {p50:>7.2} p99 {p99:>7.2}   [p50 {g50:>6.2} p99 {g99:>6.2}]",
            minute + 1
        );
    }
    println!("\nserver samples (t s: RSS MiB, fds, threads, tasks, in flight, cache MiB):");
    for s in samples.iter().step_by((samples.len() / 12).max(1)) {
        println!(
            "  {:>5.0}: {:>7.1} {:>5} {:>4} {:>6} {:>4} {:>7.1}",
            s.at.as_secs_f64(),
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.tasks,
            s.in_flight,
            s.cache_bytes / 1_048_576.0
        );
    }
    // RSS swings with the guests in flight (a memory-hungry one holds
    // 16 MiB for a moment), so the retained memory is the floor of a window:
    // the lowest sample just after warm-up (the first fifth of the run, at
    // most a minute) against the lowest of the same length at the end.
    let warm = Duration::from_secs((seconds / 5).clamp(1, 60));
    let window = Duration::from_secs((seconds / 10).max(10));
    let end = samples.last().map_or(Duration::ZERO, |s| s.at);
    let floor = |from: Duration, to: Duration| {
        samples
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .min_by_key(|s| s.rss_kib)
    };
    let base = floor(warm, warm + window);
    let last = floor(end.saturating_sub(window), end);
    if let (Some(base), Some(last)) = (base, last)
        && end >= warm + window
    {
        let growth = last.rss_kib as f64 / base.rss_kib.max(1) as f64 - 1.0;
        println!(
            "\nRSS floor after warm-up ({:.0}-{:.0} s) {:.1} MiB → floor of the last {:.0} s {:.1} MiB: {:+.1} % (limit {:+.0} %)",
            warm.as_secs_f64(),
            (warm + window).as_secs_f64(),
            base.rss_kib as f64 / 1024.0,
            window.as_secs_f64(),
            last.rss_kib as f64 / 1024.0,
            growth * 100.0,
            MAX_RSS_GROWTH * 100.0,
        );
        let first = &samples[0];
        let final_ = &samples[samples.len() - 1];
        println!(
            "fds {} → {}, threads {} → {}, tasks {} → {}, bundle cache {:.1} → {:.1} MiB",
            first.fds,
            final_.fds,
            first.threads,
            final_.threads,
            first.tasks,
            final_.tasks,
            first.cache_bytes / 1_048_576.0,
            final_.cache_bytes / 1_048_576.0
        );
        if growth > MAX_RSS_GROWTH {
            println!(
                "soak: FAILED: RSS grew more than {:.0} % after warm-up",
                MAX_RSS_GROWTH * 100.0
            );
            failed = true;
        }
    } else {
        println!(
            "soak: FAILED: too few samples (run at least {} s)",
            (warm + window).as_secs() + 2
        );
        failed = true;
    }
    println!(
        "\nsoak: {} requests, {:.0} req/s, {}",
        results.len(),
        results.len() as f64 / seconds as f64,
        if failed { "FAILED" } else { "passed" }
    );
    failed
}

/// What the sampler read off the server process and its `/metrics`.
#[derive(Clone)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    tasks: u64,
    in_flight: u64,
    cache_bytes: f64,
}

impl Sample {
    fn take(pid: u32, addr: SocketAddr, at: Duration) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        let metrics = Client::connect(addr)
            .get("/metrics")
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        let gauge = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Sample {
            at,
            rss_kib: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
            tasks: gauge("ext_runner_tokio_tasks") as u64,
            in_flight: gauge("ext_runner_executions_in_flight") as u64,
            cache_bytes: gauge("ext_runner_bundle_cache_bytes"),
        }
    }
}

/// The execute request of `kind` for tenant number `tenant`.
fn request_bytes(kind: &Kind, tenant: usize) -> Vec<u8> {
    let mut http = json!({"method": if kind.body.is_some() { "POST" } else { "GET" }, "path": kind.path});
    if let Some(body) = &kind.body {
        use base64::Engine as _;
        http["body_b64"] = base64::engine::general_purpose::STANDARD
            .encode(body.to_string())
            .into();
    }
    common::execute_request(
        &format!("soak-tenant-{tenant}"),
        &format!("com.soak.{}", kind.name),
        &kind.digest,
        &http,
        &kind.limits,
    )
}

/// A loopback upstream for the egress kind: answers every request `ok`.
fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("upstream");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The request head, then the answer (egress sends one request per connection).
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            });
        }
    });
    addr
}

/// `ext-runner serve` trusting `key`, allowed to reach `upstream`.
fn start_server(data: &std::path::Path, key: &SigningKey, upstream: SocketAddr) -> Server {
    let env = [
        ("EXT_EGRESS_ALLOWLIST", format!("http://{upstream}")),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32".to_string()),
        // The mix never needs more than the connections in flight.
        ("RUNNER_TENANT_MAX_CONCURRENCY", CONNECTIONS.to_string()),
        ("RUNNER_EXTENSION_MAX_CONCURRENCY", CONNECTIONS.to_string()),
    ];
    Server::start(data, key, env.map(|(k, v)| (k.to_string(), v)))
}
