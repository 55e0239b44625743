//! Noisy neighbours: how much one tenant's load slows another tenant and the
//! runner's own `/healthz`, on the real `ext-runner serve` binary.
//!
//! Tenant B sends cheap execute calls (the `echo` fixture, `GET /hello?n=…`,
//! each answer checked against its request) one after another on one
//! keep-alive connection, while a sampler asks for `/healthz` every 2 ms on
//! a connection of its own. This runs first with nothing else going on, then
//! while tenant A floods the runner in three ways:
//! 1. `spin`: 16 connections (A's concurrency cap) looping
//!    `limits_infinite_loop` with `timeout_ms` 1000, each answered 504
//!    `execution_timeout`;
//! 2. `cheap`: 64 connections looping `echo`, four times the cap (which
//!    refuses only what overlaps beyond it);
//! 3. `memory`: 16 connections looping `limits_memory_hog?mib=48` with
//!    `memory_mb` 64 (allocates and touches 48 MiB, then answers 200).
//!
//! A's throughput (its expected answers per second) is also measured with
//! each flood alone. The table gives B's p50/p99 and their ratio to B
//! alone, B's errors by status and code, `/healthz` p50/p99, A's answers
//! and throughput against alone, and the CPU of the server and of this load
//! generator (which shares the cores). The targets are printed as PASS or
//! MISS and never fail the run: B p99 ≤ B alone p99 + 2 ms, no errors for
//! B, `/healthz` p99 ≤ 5 ms. The run exits non-zero only if B got an error
//! or a wrong answer.
//!
//! The server runs with `RUNNER_EXTENSION_MAX_CONCURRENCY=16` (the default
//! tenant cap, so A's one extension can fill it) and every `RUNNER_*` and
//! `EXT_*` variable of this process's environment, except the ones the
//! bench owns ([`OWNED_ENV`]), so a scheduler setting can be tried without
//! editing this file.
//!
//! Run: `bench/neighbours` (release build), or `NEIGHBOURS_SAMPLES=300 cargo
//! bench --profile dev -p ext-runner --bench neighbours`. Knobs:
//! `NEIGHBOURS_SAMPLES` (B's samples per phase, default 2000) and
//! `NEIGHBOURS_FLOOD_SECONDS` (longest a flood runs while B samples, default
//! 120; B reports how many samples it got by then). Timings only mean
//! something on an otherwise idle machine.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Answer, Client, Publisher, Server, execute_request, percentiles};
use ext_bundle::signature::{KeyAlgorithm, SigningKey};
use serde_json::{Value, json};

const TENANT_A: &str = "neighbours-a";
const TENANT_B: &str = "neighbours-b";
const B_EXTENSION: &str = "com.neighbours.hello";
/// `RUNNER_TENANT_MAX_CONCURRENCY`'s default: the spinning and memory floods
/// keep this many of A's executions in flight, and the extension cap is
/// raised to it.
const TENANT_CAP: usize = 16;
/// Connections of the cheap flood: four times the cap, so A can also meet
/// its refusals (cheap executions on two cores seldom overlap that much).
const CHEAP_CONNECTIONS: usize = 64;
const DEFAULT_SAMPLES: usize = 2000;
const DEFAULT_FLOOD_SECONDS: u64 = 120;
/// A flood runs this long before anything is measured: the first spinning
/// guests all start at once, later ones spread out.
const RAMP: Duration = Duration::from_secs(1);
/// A's throughput window alone; a phase with B lasts at least this long
/// too (the `/healthz` sampler goes on after B's last sample).
const WINDOW: Duration = Duration::from_secs(5);
/// The `/healthz` sampler's pace: sequential, but not a load of its own.
const HEALTHZ_EVERY: Duration = Duration::from_millis(2);
/// Under a flood, B's p99 may exceed its p99 alone by this much.
const B_P99_SLACK_MS: f64 = 2.0;
const HEALTHZ_P99_TARGET_MS: f64 = 5.0;
/// `/proc/<pid>/stat` counts CPU time in these ticks (USER_HZ, 100 in
/// every Linux ABI).
const USER_HZ: f64 = 100.0;
/// Prefixes of the variables passed through to the server.
const PASSED_PREFIXES: &[&str] = &["RUNNER_", "EXT_"];
/// Variables the bench sets itself or that would move the server away from
/// its temp dir and port: never passed through.
const OWNED_ENV: &[&str] = &[
    "RUNNER_DATA_DIR",
    "RUNNER_CACHE_DIR",
    "RUNNER_LISTEN",
    "RUNNER_PUBLIC_LISTEN",
    "RUNNER_SERVICE_TOKEN",
];

/// Answers by the runner's status and the guest's status or the error code
/// (`io: <kind>` with status 0 when the connection failed).
type Counts = BTreeMap<(u16, String), usize>;

/// One way tenant A floods the runner.
struct Flood {
    name: &'static str,
    about: &'static str,
    connections: usize,
    request: Vec<u8>,
    /// The runner's status and the guest's status or the error code A's
    /// requests get when nothing refuses them; these count as A's throughput.
    expect: (u16, &'static str),
}

/// B's probe: the echo bundle and how long to sample.
struct Probe {
    digest: ext_bundle::Digest,
    samples: usize,
    /// Longest B samples under a flood (`NEIGHBOURS_FLOOD_SECONDS`).
    cap: Duration,
}

/// What one phase measured, over its window.
#[derive(Default)]
struct Phase {
    /// From the end of the ramp until the flood was told to stop.
    window: Duration,
    b: Vec<Duration>,
    /// Per B sample: the report's `cpu_wait_ms` and `wall_ms` (where the
    /// time went: waiting for a CPU slice, in the guest, or elsewhere).
    b_reports: Vec<(f64, f64)>,
    /// How long B took for its samples.
    b_time: Duration,
    /// B's failures by runner status and code (or guest status, or `wrong answer`).
    b_errors: Counts,
    /// B hit `NEIGHBOURS_FLOOD_SECONDS` before it had its samples.
    b_capped: bool,
    healthz: Vec<Duration>,
    healthz_errors: Counts,
    /// A's answers that arrived within the window, by status and detail.
    a: Counts,
    /// CPU used over the window, in cores: the server, and this process.
    server_cpu: f64,
    bench_cpu: f64,
}

impl Phase {
    /// A's expected answers per second.
    fn a_rate(&self, flood: &Flood) -> f64 {
        let done = self
            .a
            .get(&(flood.expect.0, flood.expect.1.to_string()))
            .copied()
            .unwrap_or(0);
        done as f64 / self.window.as_secs_f64()
    }

    fn b_errors(&self) -> usize {
        self.b_errors.values().sum()
    }
}

/// Switches a phase's threads read.
#[derive(Default)]
struct Flags {
    /// A's answers count while this is set.
    measuring: AtomicBool,
    stop_healthz: AtomicBool,
    stop_flood: AtomicBool,
}

fn main() {
    let samples = env_number("NEIGHBOURS_SAMPLES", DEFAULT_SAMPLES).max(1);
    let cap = Duration::from_secs(env_number("NEIGHBOURS_FLOOD_SECONDS", DEFAULT_FLOOD_SECONDS));
    let data = tempfile::tempdir().expect("temp dir");
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let publisher = Publisher {
        data: data.path(),
        key: &key,
        namespace: "neighbours",
    };
    let base = ["cap:context.read", "cap:log.emit"];
    let echo = publisher.fixture("echo", &base, &[]);
    let a_request = |name: &str, digest: &ext_bundle::Digest, path: &str, limits: Value| {
        execute_request(
            TENANT_A,
            &format!("com.neighbours.{name}"),
            digest,
            &json!({"method": "GET", "path": path}),
            &limits,
        )
    };
    let floods = [
        Flood {
            name: "spin",
            about: "16 connections of limits_infinite_loop, timeout_ms 1000",
            connections: TENANT_CAP,
            request: a_request(
                "spin",
                &publisher.fixture("limits_infinite_loop", &base, &[]),
                "/",
                json!({"timeout_ms": 1000}),
            ),
            expect: (504, "execution_timeout"),
        },
        Flood {
            name: "cheap",
            about: "64 connections of echo",
            connections: CHEAP_CONNECTIONS,
            request: a_request("cheap", &echo, "/hello", json!({})),
            expect: (200, "200"),
        },
        Flood {
            name: "memory",
            about: "16 connections of limits_memory_hog?mib=48, memory_mb 64",
            connections: TENANT_CAP,
            request: a_request(
                "memory",
                &publisher.fixture("limits_memory_hog", &base, &[]),
                "/?mib=48",
                json!({"memory_mb": 64}),
            ),
            expect: (200, "200"),
        },
    ];
    let probe = Probe {
        digest: echo,
        samples,
        cap,
    };

    // The extension cap raised to the tenant cap, then what is passed through.
    let passed = passed_env();
    let env = [("RUNNER_EXTENSION_MAX_CONCURRENCY".to_string(), TENANT_CAP.to_string())];
    let mut server = Server::start(data.path(), &key, env.into_iter().chain(passed.iter().cloned()));
    let (addr, pid) = (server.addr(), server.pid());
    let passed = if passed.is_empty() {
        "none".to_string()
    } else {
        passed.iter().map(|(k, v)| shown(k, v)).collect::<Vec<_>>().join(" ")
    };
    println!(
        "neighbours: ext-runner serve with RUNNER_EXTENSION_MAX_CONCURRENCY={TENANT_CAP}; passed through: {passed}"
    );
    println!(
        "B: tenant {TENANT_B}, echo GET /hello?n=…, sequential on one keep-alive connection, {samples} samples a \
         phase within {} s; /healthz every {} ms on its own; floods ramp {} s; a window lasts at least {} s",
        cap.as_secs(),
        HEALTHZ_EVERY.as_millis(),
        RAMP.as_secs(),
        WINDOW.as_secs(),
    );

    // Warm every bundle and component once. B failing here is a functional
    // failure; A may meet a refusal (a scheduler that counts the spinning
    // warm-up against it), which is only worth a note.
    let mut warm = Phase::default();
    let once = Probe { samples: 1, ..probe };
    sample_b(addr, &once, Instant::now() + cap, &mut warm);
    assert!(warm.b_errors.is_empty(), "warm-up of B: {:?}", warm.b_errors);
    let mut client = Client::connect(addr);
    for flood in &floods {
        let (status, detail, _) = client.exchange(&flood.request);
        if (status, detail.as_str()) != flood.expect {
            println!(
                "note: warm-up of A's {} got {status} {detail}, not {} {}",
                flood.name, flood.expect.0, flood.expect.1
            );
        }
    }
    drop(client);

    let solo = measure(addr, pid, None, Some(&probe));
    let (p50, p99) = percentiles(solo.b.clone());
    println!("  alone: B p50 {p50:.3} ms, p99 {p99:.3} ms");
    let mut results = Vec::new();
    for flood in &floods {
        let alone = measure(addr, pid, Some(flood), None);
        println!("  {}: A alone {:.1}/s", flood.name, alone.a_rate(flood));
        let with_b = measure(addr, pid, Some(flood), Some(&probe));
        let (p50, p99) = percentiles(with_b.b.clone());
        println!(
            "  {}: B p50 {p50:.3} ms, p99 {p99:.3} ms over {:.1} s",
            flood.name,
            with_b.b_time.as_secs_f64()
        );
        results.push((alone, with_b));
    }
    let failed = report(&probe, &solo, &floods, &results);
    server.stop();
    if failed {
        std::process::exit(1);
    }
}

/// One phase: the flood (if any) ramps up, then (if there is a probe) B
/// takes its samples within `probe.cap` while the `/healthz` sampler runs
/// until the window, at least [`WINDOW`], ends; without a probe the window
/// is [`WINDOW`].
fn measure(addr: SocketAddr, pid: u32, flood: Option<&Flood>, probe: Option<&Probe>) -> Phase {
    let flags = &Flags::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = flood
            .into_iter()
            .flat_map(|f| (0..f.connections).map(move |_| s.spawn(move || flood_worker(addr, f, flags))))
            .collect();
        if flood.is_some() {
            std::thread::sleep(RAMP);
        }
        let mut phase = Phase::default();
        let cpu = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
        let started = Instant::now();
        flags.measuring.store(true, Ordering::Relaxed);
        match probe {
            Some(probe) => {
                let healthz = s.spawn(|| sample_healthz(addr, flags));
                sample_b(addr, probe, started + probe.cap, &mut phase);
                sleep_until(started + WINDOW);
                flags.stop_healthz.store(true, Ordering::Relaxed);
                (phase.healthz, phase.healthz_errors) = healthz.join().expect("/healthz sampler");
            }
            None => std::thread::sleep(WINDOW),
        }
        flags.measuring.store(false, Ordering::Relaxed);
        phase.window = started.elapsed();
        let seconds = phase.window.as_secs_f64();
        phase.server_cpu = (cpu_seconds(&pid.to_string()) - cpu.0) / seconds;
        phase.bench_cpu = (cpu_seconds("self") - cpu.1) / seconds;
        flags.stop_flood.store(true, Ordering::Relaxed);
        for worker in workers {
            for (answer, count) in worker.join().expect("flood worker") {
                *phase.a.entry(answer).or_default() += count;
            }
        }
        phase
    })
}

/// One of A's connections: sends `flood.request` back to back until told
/// to stop, counting the answers that arrive while measuring.
fn flood_worker(addr: SocketAddr, flood: &Flood, flags: &Flags) -> Counts {
    let mut client = Client::connect(addr);
    let mut answers = BTreeMap::new();
    while !flags.stop_flood.load(Ordering::Relaxed) {
        let (status, detail, reconnect) = client.exchange(&flood.request);
        if flags.measuring.load(Ordering::Relaxed) {
            *answers.entry((status, detail)).or_default() += 1;
        }
        if reconnect {
            client = Client::connect(addr);
        }
    }
    answers
}

/// B's sequential samples into `phase`, until it has `probe.samples` or
/// `deadline` passes.
fn sample_b(addr: SocketAddr, probe: &Probe, deadline: Instant, phase: &mut Phase) {
    let started = Instant::now();
    let mut client = Client::connect(addr);
    for n in 1.. {
        if phase.b.len() >= probe.samples {
            break;
        }
        if Instant::now() >= deadline {
            phase.b_capped = true;
            break;
        }
        let path = format!("/hello?n={n}");
        let request = execute_request(
            TENANT_B,
            B_EXTENSION,
            &probe.digest,
            &json!({"method": "GET", "path": path}),
            &json!({}),
        );
        let sent = Instant::now();
        let answer = client.execute(&request);
        phase.b.push(sent.elapsed());
        let error = match answer {
            Ok(answer) => {
                let report = &answer.json["report"];
                let field = |name: &str| report[name].as_f64().unwrap_or(0.0);
                phase.b_reports.push((field("cpu_wait_ms"), field("wall_ms")));
                check_b(&answer, &path)
            }
            Err(e) => {
                client = Client::connect(addr);
                Some((0, format!("io: {}", e.kind())))
            }
        };
        if let Some(error) = error {
            *phase.b_errors.entry(error).or_default() += 1;
        }
    }
    phase.b_time = started.elapsed();
}

/// None if `answer` is the echo of B's request for `path`; otherwise its
/// status and code (or the guest's status, or `wrong answer`).
fn check_b(answer: &Answer, path: &str) -> Option<(u16, String)> {
    let detail = answer.detail();
    if answer.status != 200 || detail != "200" {
        return Some((answer.status, detail));
    }
    let echo: Value = serde_json::from_slice(&answer.guest_body()).unwrap_or_default();
    let url = echo["url"].as_str().unwrap_or_default();
    (!url.ends_with(path)).then(|| (200, "wrong answer".to_string()))
}

/// `/healthz` every [`HEALTHZ_EVERY`] (or right after the last answer when
/// that took longer) until told to stop: latencies and failures.
fn sample_healthz(addr: SocketAddr, flags: &Flags) -> (Vec<Duration>, Counts) {
    let mut client = Client::connect(addr);
    let (mut latencies, mut errors) = (Vec::new(), BTreeMap::new());
    let mut next = Instant::now();
    while !flags.stop_healthz.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answer = client.get("/healthz");
        latencies.push(sent.elapsed());
        match answer {
            Ok((200, _)) => {}
            Ok((status, _)) => *errors.entry((status, String::new())).or_default() += 1,
            Err(e) => {
                *errors.entry((0, format!("io: {}", e.kind()))).or_default() += 1;
                client = Client::connect(addr);
            }
        }
        next += HEALTHZ_EVERY;
        next = next.max(Instant::now());
        sleep_until(next);
    }
    (latencies, errors)
}

/// Prints the table and the verdicts; true if B got an error or a wrong answer.
fn report(probe: &Probe, solo: &Phase, floods: &[Flood], results: &[(Phase, Phase)]) -> bool {
    let (s50, s99) = percentiles(solo.b.clone());
    println!(
        "\n{:<8} {:>9} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11}",
        "phase",
        "B p50",
        "B p99",
        "×p50",
        "×p99",
        "B errors",
        "hz p50",
        "hz p99",
        "A done/s",
        "alone/s",
        "A kept",
        "CPU srv/gen"
    );
    let row = |name: &str, phase: &Phase, a: Option<(f64, f64)>| {
        let (p50, p99) = percentiles(phase.b.clone());
        let (h50, h99) = percentiles(phase.healthz.clone());
        let (with_b, alone, kept) = match a {
            Some((with_b, alone)) => (
                format!("{with_b:.1}"),
                format!("{alone:.1}"),
                format!("{:.0} %", with_b / alone.max(f64::MIN_POSITIVE) * 100.0),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{name:<8} {p50:>9.3} {p99:>9.3} {:>7.1} {:>7.1} {:>8} {h50:>9.3} {h99:>9.3} {with_b:>9} {alone:>9} {kept:>6} {:>5.2}/{:.2}",
            p50 / s50.max(f64::MIN_POSITIVE),
            p99 / s99.max(f64::MIN_POSITIVE),
            phase.b_errors(),
            phase.server_cpu,
            phase.bench_cpu
        );
    };
    row("alone", solo, None);
    for (flood, (alone, with_b)) in floods.iter().zip(results) {
        row(flood.name, with_b, Some((with_b.a_rate(flood), alone.a_rate(flood))));
    }
    println!(
        "(latencies in ms; hz = /healthz; ×p50/×p99 = B's against B alone; A done/s = A's expected answers per \
         second; CPU in cores)"
    );

    let samples = |phase: &Phase| {
        let capped = if phase.b_capped {
            format!(" (NEIGHBOURS_FLOOD_SECONDS={} ran out)", probe.cap.as_secs())
        } else {
            String::new()
        };
        format!(
            "{} of {} samples in {:.1} s{capped}; errors: {}",
            phase.b.len(),
            probe.samples,
            phase.b_time.as_secs_f64(),
            counts(&phase.b_errors)
        )
    };
    println!("\nalone:");
    println!("  B {}", samples(solo));
    println!(
        "  /healthz {} samples; errors: {}",
        solo.healthz.len(),
        counts(&solo.healthz_errors)
    );
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    for (flood, (alone, with_b)) in floods.iter().zip(results) {
        let (_, p99) = percentiles(with_b.b.clone());
        let (_, h99) = percentiles(with_b.healthz.clone());
        let (rate, alone_rate) = (with_b.a_rate(flood), alone.a_rate(flood));
        println!("\n{} ({}):", flood.name, flood.about);
        println!("  B {}", samples(with_b));
        println!(
            "  /healthz {} samples; errors: {}",
            with_b.healthz.len(),
            counts(&with_b.healthz_errors)
        );
        println!("  B's slowest 1 %: {}", slowest(with_b));
        println!("  A alone:  {}", counts(&alone.a));
        println!("  A with B: {}", counts(&with_b.a));
        println!(
            "  targets: B p99 {p99:.3} ≤ {:.3} ms {}; B errors {} {}; /healthz p99 {h99:.3} ≤ {HEALTHZ_P99_TARGET_MS} ms {}; \
             A {rate:.1}/s with B against {alone_rate:.1}/s alone",
            s99 + B_P99_SLACK_MS,
            verdict(p99 <= s99 + B_P99_SLACK_MS),
            with_b.b_errors(),
            if with_b.b_errors() == 0 { "PASS" } else { "FAIL" },
            verdict(h99 <= HEALTHZ_P99_TARGET_MS),
        );
    }
    let errors = solo.b_errors() + results.iter().map(|(_, with_b)| with_b.b_errors()).sum::<usize>();
    if errors == 0 {
        println!("\nneighbours: B always got its answer: passed");
    } else {
        println!("\nneighbours: FAILED: B got {errors} errors or wrong answers");
    }
    errors > 0
}

/// Where B's slowest 1 % of samples spent their time, on average: waiting
/// for a CPU slice, running in the guest, and the rest (HTTP, admission,
/// the hop to the guest threads and back).
fn slowest(phase: &Phase) -> String {
    let mut samples: Vec<(f64, f64, f64)> = phase
        .b
        .iter()
        .zip(&phase.b_reports)
        .map(|(total, (wait, wall))| (total.as_secs_f64() * 1000.0, *wait, *wall))
        .collect();
    if samples.is_empty() {
        return "no samples".to_string();
    }
    samples.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top = &samples[..samples.len().div_ceil(100)];
    let mean = |f: fn(&(f64, f64, f64)) -> f64| top.iter().map(f).sum::<f64>() / top.len() as f64;
    let (total, wait, wall) = (mean(|s| s.0), mean(|s| s.1), mean(|s| s.2));
    format!(
        "{total:.3} ms = CPU wait {wait:.3} + guest {wall:.3} + rest {:.3} (means of {})",
        total - wait - wall,
        top.len()
    )
}

/// `status code count, …`, or `none`.
fn counts(answers: &Counts) -> String {
    if answers.is_empty() {
        return "none".into();
    }
    answers
        .iter()
        .map(|((status, detail), count)| format!("{status} {detail} {count}").replace("  ", " "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The variables of this process passed through to the server, sorted.
fn passed_env() -> Vec<(String, String)> {
    let mut passed: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| PASSED_PREFIXES.iter().any(|p| k.starts_with(p)) && !OWNED_ENV.contains(&k.as_str()))
        .collect();
    passed.sort();
    passed
}

/// `NAME=value` for the header, without the values of secrets.
fn shown(name: &str, value: &str) -> String {
    let secret = ["TOKEN", "KEY", "SECRET", "PASSWORD", "URL"]
        .iter()
        .any(|s| name.contains(s));
    if secret {
        format!("{name}=…")
    } else {
        format!("{name}={value}")
    }
}

/// utime + stime of process `pid` (`self` for this one), in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command (field 2) is in parentheses and may hold spaces; after it
    // come state (field 3) … utime (14) and stime (15).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / USER_HZ
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn env_number<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
