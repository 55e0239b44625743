//! The Grafana dashboard and the Prometheus alert rules name only series
//! ext-runner exports. The real binary runs the runner and registry roles
//! and gets enough traffic for every family to appear (a publish and an
//! install through the registry, a successful execute, a refused one, a
//! guest stopped by its timeout, a denied `http.fetch`, a cache write that
//! fails); then every series named by a dashboard panel, a template
//! variable or an alert must be a sample name of its `/metrics` (counters
//! as `…_total`, histograms as `…_bucket`), and every label a selector
//! matches must be on that series. The copies of both files outside the
//! chart are the chart's, byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::registry::{HELLO, PUBLISHER, TENANT_A, hello_archive, tokens};
use crate::support::*;

/// The chart's files (Helm reads only files inside the chart) and their
/// copies for people without Helm.
/// The gateway's HS256 secret of user tokens in the process under test.
const USER_TOKEN_SECRET: &str = "observability-test-secret-0123456789";

const COPIES: [(&str, &str); 2] = [
    (
        "deploy/helm/ext-runner/dashboards/ext-runner.json",
        "deploy/grafana/ext-runner.json",
    ),
    (
        "deploy/helm/ext-runner/prometheus/ext-runner-rules.yaml",
        "deploy/prometheus/ext-runner-rules.yaml",
    ),
];

/// Series the alerts may name that ext-runner does not export, and who
/// does.
const EXTERNAL: [(&str, &str); 2] = [
    ("up", "Prometheus, one per scrape target"),
    ("kube_deployment_status_replicas_unavailable", "kube-state-metrics"),
];

/// Labels Prometheus attaches from the scrape target, never in `/metrics`.
const TARGET_LABELS: [&str; 5] = ["job", "instance", "namespace", "pod", "service"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A series named in a query, with the labels its matchers name.
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

/// PromQL words that are neither series nor functions called with `(`.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "atan2",
];
/// Modifiers followed by a list of label names, not of expressions.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Aggregations, which may be followed by `by (…)` before their `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The end of the string literal opening at `start`.
fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != quote {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Past the bracket closing the one at `start` (strings inside skipped).
fn skip_group(b: &[u8], start: usize, close: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() && b[i] != close {
        i = if matches!(b[i], b'"' | b'\'' | b'`') {
            skip_string(b, i)
        } else {
            i + 1
        };
    }
    i + 1
}

fn is_ident(c: u8, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || (!first && c.is_ascii_digit())
}

/// The label names of the matcher block `{…}` opening at `start`, and the
/// position after it.
fn matcher_labels(b: &[u8], start: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    let mut i = start + 1;
    while i < b.len() && b[i] != b'}' {
        if matches!(b[i], b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if is_ident(b[i], true) {
            let from = i;
            while i < b.len() && is_ident(b[i], false) {
                i += 1;
            }
            labels.push(String::from_utf8_lossy(&b[from..i]).into_owned());
        } else {
            i += 1;
        }
    }
    (labels, i + 1)
}

/// Every series `expr` selects, with Grafana's `$variables` allowed where
/// PromQL takes a string or a duration.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'[' {
            i = skip_group(b, i, b']');
        } else if c == b'{' {
            i = matcher_labels(b, i).1;
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                i = skip_group(b, i, b'}');
            }
            while i < b.len() && is_ident(b[i], false) {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
        } else if is_ident(c, true) {
            let from = i;
            while i < b.len() && is_ident(b[i], false) {
                i += 1;
            }
            let word = &expr[from..i];
            let mut next = i;
            while next < b.len() && b[next].is_ascii_whitespace() {
                next += 1;
            }
            let opens = b.get(next) == Some(&b'(');
            if LABEL_LISTS.contains(&word) {
                if opens {
                    i = skip_group(b, next, b')');
                }
            } else if KEYWORDS.contains(&word) || AGGREGATIONS.contains(&word) || opens {
                // An operator, or a function or aggregation whose arguments follow.
            } else {
                let mut labels = Vec::new();
                if b.get(next) == Some(&b'{') {
                    (labels, i) = matcher_labels(b, next);
                }
                found.push(Selector {
                    name: word.to_string(),
                    labels,
                });
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The series of a Grafana Prometheus variable query: `label_values(selector,
/// label)`, `query_result(expr)`, or none for `label_values(label)`.
fn variable_selectors(query: &str) -> Vec<Selector> {
    let query = query.trim();
    if let Some(inner) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        return match inner.rsplit_once(',') {
            Some((selector, _label)) => selectors(selector),
            None => Vec::new(),
        };
    }
    if let Some(inner) = query.strip_prefix("query_result(").and_then(|q| q.strip_suffix(')')) {
        return selectors(inner);
    }
    selectors(query)
}

/// Every query of the dashboard, named by where it is: panel targets (rows'
/// collapsed panels too) and template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, Vec<Selector>)> {
    fn panels(list: &Value, out: &mut Vec<(String, Vec<Selector>)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                out.push((format!("panel {title:?}: {expr}"), selectors(expr)));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = &variable["query"];
        let text = query["query"].as_str().or(query.as_str()).unwrap_or_default();
        out.push((format!("variable {name}: {text}"), variable_selectors(text)));
        if let Some(definition) = variable["definition"].as_str() {
            out.push((format!("variable {name}: {definition}"), variable_selectors(definition)));
        }
    }
    out
}

/// The `expr` of every rule in a rule-group file written as ours is: a
/// plain scalar after `expr:`, or a `|`/`>` block indented below it. The
/// count is checked against the rules (`- alert:`/`- record:`) so a rule
/// written otherwise fails the test rather than escaping it.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(rest.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    let rules = lines
        .iter()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    assert_eq!(
        exprs.len(),
        rules,
        "one `expr:` per rule, each plain or a block: {exprs:#?}"
    );
    exprs
}

/// Sample names in an OpenMetrics exposition, each with the label names
/// its samples carry.
fn scraped_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_string()).or_default();
        if line.as_bytes().get(end) == Some(&b'{') {
            labels.extend(matcher_labels(line.as_bytes(), end).0);
        }
    }
    series
}

/// What is wrong with `selector` against the scrape: not a sample name (with
/// the family's real sample names when it is a family), or a label no
/// sample of it has.
fn problem(selector: &Selector, scraped: &BTreeMap<String, BTreeSet<String>>, text: &str) -> Option<String> {
    let name = &selector.name;
    if EXTERNAL.iter().any(|(external, _)| external == name) {
        return None;
    }
    let Some(labels) = scraped.get(name) else {
        // A family named without (or with the wrong) suffix: say what its samples are.
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {family} ")))
            .map(|kind| {
                let samples: Vec<&String> = scraped
                    .keys()
                    .filter(|s| {
                        s.strip_prefix(family)
                            .is_some_and(|r| r.is_empty() || r.starts_with('_'))
                    })
                    .collect();
                format!(" (family {family} is a {kind}, its samples are {samples:?})")
            })
            .unwrap_or_default();
        return Some(format!("`{name}` is not a series of /metrics{kind}"));
    };
    let missing: Vec<&String> = selector
        .labels
        .iter()
        .filter(|l| !labels.contains(*l) && !TARGET_LABELS.contains(&l.as_str()) && *l != "__name__")
        .collect();
    (!missing.is_empty()).then(|| format!("`{name}` has no label {missing:?} (it has {labels:?})"))
}

/// The real binary with both roles on `data`, killed when dropped.
struct Process {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn start(data: &Path) -> Process {
        let tokens = tokens();
        let database = data.join("registry.db").display().to_string();
        let (child, port) = spawn_serve(
            data,
            &[],
            &[
                ("RUNNER_ROLES", "all"),
                ("REGISTRY_TOKENS", &tokens),
                ("REGISTRY_DATABASE_URL", &database),
                ("GATEWAY_JWT_SECRET", USER_TOKEN_SECRET),
                // The direct execute calls below come without a grant.
                ("RUNNER_GRANT_KEYS", "off"),
            ],
        );
        Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn execute(&self, envelope: &Value) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}/v1/execute", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(envelope.to_string());
        self.send(request).await
    }

    async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    }
}

/// A fixture bundle in `data`'s store declaring `capabilities`, with
/// `manifest` edits; its content hash.
fn stored_fixture(
    data: &Path,
    fixture: &str,
    capabilities: &[&str],
    edit: impl FnOnce(&mut Value),
) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component(fixture)).unwrap();
    let dir = bundle_dir_with(fixture, &wasm, capabilities);
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
    store_signed(data, &ext_bundle::pack_dir(dir.path()).unwrap())
}

/// Drive the traffic that makes every family appear, then scrape once the
/// revocation list has synced.
async fn scrape_after_traffic() -> String {
    let data = tempfile::tempdir().unwrap();
    let looping = stored_fixture(data.path(), "limits_infinite_loop", &[], |_| {});
    let denied_origin = format!("http://{}", closed_port_addr());
    let fetching = stored_fixture(data.path(), "fetch_probe", &["cap:http.fetch"], |m| {
        m["network"] = json!({"allowed_hosts": [denied_origin]});
    });
    let uncached = stored_fixture(data.path(), "echo", &[], |_| {});
    let process = Process::start(data.path());
    let base = &process.base;

    // The registry: a publish and an install.
    let archive = hello_archive("1.0.0", false);
    let publish = process
        .client
        .post(format!("{base}/v1/registry/bundles"))
        .bearer_auth(PUBLISHER)
        .header("x-ext-signature", sign(&archive))
        .body(archive);
    let (status, body) = process.send(publish).await;
    assert_eq!(status, 201, "publish: {body}");
    let install = process
        .client
        .put(format!("{base}/v1/registry/tenants/tenant-a/installs/{HELLO}"))
        .bearer_auth(TENANT_A)
        .header("content-type", "application/json")
        .body(json!({"version": "1.0.0"}).to_string());
    let (status, install) = process.send(install).await;
    assert_eq!(status, 201, "install: {install}");

    // The gateway: a signed-in user's call of the install, whose row the
    // execution log then holds.
    let user = ext_runner::gateway::users::sign_hs256(
        USER_TOKEN_SECRET,
        &ext_runner::gateway::users::UserTokenRequest {
            tenant: "tenant-a",
            user: "u-1",
            email: None,
            name: None,
            ttl_secs: 60,
        },
    )
    .unwrap();
    let call = process
        .client
        .get(format!("{base}/api/ext/{HELLO}/hello"))
        .bearer_auth(user);
    let (status, body) = process.send(call).await;
    assert_eq!(status, 200, "gateway: {body}");

    // The runner: the install executed, a bundle that does not exist, a
    // guest stopped by its timeout, a fetch the policy refuses.
    let hash = ext_bundle::Digest::parse(install["content_hash"].as_str().unwrap()).unwrap();
    let mut hello = envelope(&hash, "GET", "/hello");
    hello["context"]["extension_id"] = json!(HELLO);
    let (status, body) = process.execute(&hello).await;
    assert_eq!(status, 200, "execute: {body}");
    let (status, body) = process
        .execute(&envelope(&ext_bundle::Digest::of(b"absent"), "GET", "/"))
        .await;
    assert_eq!((status, error_code(&body)), (502, "bundle_not_found"), "{body}");
    let mut spin = envelope(&looping, "GET", "/");
    spin["limits"] = json!({"timeout_ms": 100});
    let (status, body) = process.execute(&spin).await;
    assert_eq!((status, error_code(&body)), (504, "execution_timeout"), "{body}");
    let mut fetch = envelope(&fetching, "POST", "/");
    fetch["http"]["body_b64"] = json!(b64(json!({"url": format!("{denied_origin}/")}).to_string().as_bytes()));
    let (status, body) = process.execute(&fetch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(guest_json(&body)["error"], "not-allowed", "{body}");

    // A cache that cannot be written (F-04): its directory replaced by a file.
    let bundles = data.path().join("cache/bundles");
    let moved = data.path().join("cache/bundles.moved");
    std::fs::rename(&bundles, &moved).unwrap();
    std::fs::write(&bundles, b"not a directory").unwrap();
    let (status, body) = process.execute(&envelope(&uncached, "GET", "/")).await;
    std::fs::remove_file(&bundles).unwrap();
    std::fs::rename(&moved, &bundles).unwrap();
    assert_eq!((status, error_code(&body)), (503, "bundle_unavailable"), "{body}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = process.metrics().await;
        let synced = text.contains("\next_runner_revocations_sync_age_seconds ");
        if synced && text.contains("ext_runner_gateway_execution_log_rows_total{result=\"written\"}") {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation list never synced: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn observability_dashboard_and_alerts_name_only_exported_series() {
    let dashboard: Value = serde_json::from_str(&read(COPIES[0].0)).unwrap();
    let mut queries = dashboard_queries(&dashboard);
    for expr in rule_exprs(&read(COPIES[1].0)) {
        queries.push((format!("alert rule: {}", expr.trim()), selectors(&expr)));
    }
    assert!(queries.len() > 30, "found only {} queries", queries.len());
    for (place, selectors) in &queries {
        assert!(!selectors.is_empty(), "{place} names no series");
    }

    let text = scrape_after_traffic().await;
    let scraped = scraped_series(&text);
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for (place, selectors) in &queries {
        for selector in selectors {
            named.insert(selector.name.as_str());
            if let Some(problem) = problem(selector, &scraped, &text) {
                problems.push(format!("{place}\n    {problem}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "series the dashboard or the alerts name that /metrics does not have:\n{}\n\n/metrics:\n{text}",
        problems.join("\n")
    );
    // The traffic reached both roles' families, the rarer ones too.
    for name in [
        "ext_runner_registry_operations_total",
        "ext_runner_limit_hits_total",
        "ext_runner_cache_write_failures_total",
        "ext_runner_egress_denied",
        "ext_runner_revocations_sync_age_seconds",
        "ext_runner_gateway_requests_total",
        "ext_runner_gateway_execution_log_rows_total",
    ] {
        assert!(named.contains(name), "{name} is in no panel or alert");
    }
}

#[test]
fn observability_copies_outside_the_chart_are_the_charts_files() {
    for (in_chart, copy) in COPIES {
        assert!(
            read(in_chart) == read(copy),
            "{copy} differs from {in_chart}: copy the chart's file over it"
        );
    }
}

#[test]
fn observability_series_and_labels_are_read_from_promql() {
    let sel = |name: &str, labels: &[&str]| Selector {
        name: name.to_string(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let cases: &[(&str, Vec<Selector>)] = &[
        (
            r#"sum by (tenant, le) (rate(a_bucket{tenant=~"$tenant", x!="}by(", y="a\"b"}[$__rate_interval]))"#,
            vec![sel("a_bucket", &["tenant", "x", "y"])],
        ),
        (
            "histogram_quantile(0.99, sum without (instance) (rate(b_seconds_bucket[5m]))) > 2.5",
            vec![sel("b_seconds_bucket", &[])],
        ),
        (
            "x_total / on (job) group_left (tenant) y unless z offset 5m and bool 1e3",
            vec![sel("x_total", &[]), sel("y", &[]), sel("z", &[])],
        ),
        ("topk(10, sum(c) by (d))", vec![sel("c", &[])]),
        (r#"up{job=~".*ext-runner.*"} == 0"#, vec![sel("up", &["job"])]),
    ];
    for (expr, expected) in cases {
        assert_eq!(&selectors(expr), expected, "{expr}");
    }
    assert_eq!(
        variable_selectors(r#"label_values(e_total{tenant=~"$tenant"}, extension)"#),
        vec![sel("e_total", &["tenant"])]
    );
    assert_eq!(variable_selectors("label_values(tenant)"), vec![]);
    let exprs = rule_exprs(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(a)\n            > 1\n        for: 1m\n      - alert: B\n        expr: b == 0\n",
    );
    assert_eq!(
        exprs,
        vec!["          sum(a)\n            > 1".to_string(), "b == 0".to_string()]
    );

    let text = "# TYPE f counter\nf_total{a=\"1\",b=\"x,y\"} 3\n# TYPE g gauge\ng 1\n# EOF\n";
    let scraped = scraped_series(text);
    assert_eq!(problem(&sel("f_total", &["a", "job"]), &scraped, text), None);
    assert_eq!(problem(&sel("up", &["job"]), &scraped, text), None);
    let wrong = problem(&sel("f", &[]), &scraped, text).unwrap();
    assert!(
        wrong.contains("family f is a counter") && wrong.contains("f_total"),
        "{wrong}"
    );
    assert!(
        problem(&sel("g_total", &[]), &scraped, text)
            .unwrap()
            .contains("family g is a gauge")
    );
    assert!(
        problem(&sel("f_total", &["c"]), &scraped, text)
            .unwrap()
            .contains("no label")
    );
}
