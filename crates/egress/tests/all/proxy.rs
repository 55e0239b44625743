//! S-09: proxy variables in the environment are ignored. The environment of this process is
//! never changed (habit 8): the test re-runs this binary as a child with `HTTP_PROXY` and
//! friends pointing at a counting listener, and the child fetches from the upstream.

use std::time::Duration;

use crate::{Harness, Upstream, allowing, get};

/// Where the child finds the upstream; unset in a normal run.
const CHILD_UPSTREAM: &str = "EXT_EGRESS_TEST_CHILD_UPSTREAM";

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

#[tokio::test]
async fn s09_proxy_env_ignored() {
    let upstream = Upstream::start().await;
    let proxy = Upstream::start().await;
    let proxy_url = format!("http://{}", proxy.addr);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", "proxy::s09_proxy_env_child", "--ignored", "--test-threads=1"])
        .env(CHILD_UPSTREAM, upstream.addr.to_string())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for var in PROXY_VARS {
        child.env(var, &proxy_url);
    }
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    assert_eq!(proxy.connections().await, 0, "nothing went through the proxy");
    assert_eq!(
        upstream.connections().await,
        1,
        "the request went straight to the upstream"
    );
}

/// The child half of [`s09_proxy_env_ignored`]; passes trivially when run on its own.
#[tokio::test]
#[ignore = "run by s09_proxy_env_ignored in a child process"]
async fn s09_proxy_env_child() {
    let Ok(upstream) = std::env::var(CHILD_UPSTREAM) else {
        return;
    };
    for var in PROXY_VARS {
        assert!(std::env::var(var).is_ok(), "{var} should be set in the child");
    }
    let port = upstream.rsplit(':').next().unwrap();
    let h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://upstream.test:{port}")]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        h.fetch(get(format!("http://upstream.test:{port}/"))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status, 200);
}
