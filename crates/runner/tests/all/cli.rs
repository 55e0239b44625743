//! The real binary: pack/inspect/publish/exec and `serve --dev` with the
//! README's curl.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ext-runner"))
}

#[test]
fn pack_is_deterministic_and_inspect_describes() {
    let out = tempfile::tempdir().unwrap();
    let a = out.path().join("a.tar.zst");
    let b = out.path().join("b.tar.zst");
    let run = |path: &std::path::Path| {
        let output = bin()
            .args(["pack"])
            .arg(hello_dir())
            .arg("--out")
            .arg(path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let hash_a = run(&a);
    let hash_b = run(&b);
    assert!(hash_a.starts_with("sha256:") && hash_a.len() == 71, "{hash_a}");
    assert_eq!(hash_a, hash_b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ext_bundle::Digest::of(&std::fs::read(&a).unwrap()).to_string(), hash_a);

    let output = bin().arg("inspect").arg(&a).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&hash_a), "{text}");
    assert!(text.contains("com.example.hello"), "{text}");
    assert!(text.contains("/hello/:name"), "{text}");
    assert!(text.contains("dist/main.wasm"), "{text}");
    assert!(text.contains("ui/index.html"), "{text}");

    let store = out.path().join("store");
    for expected in ["published", "already present"] {
        let output = bin()
            .arg("publish")
            .arg(&a)
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .arg("--allow-unsigned")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains(expected), "{text}");
    }
    let hex = hash_a.trim_start_matches("sha256:");
    assert!(store.join(format!("sha256/{hex}/bundle.tar.zst")).is_file());
}

#[test]
fn cli_errors_name_the_file_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .arg("pack")
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("x.tar.zst"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("manifest.json"), "{stderr}");

    let output = bin()
        .arg("inspect")
        .arg(dir.path().join("absent.tar.zst"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.tar.zst"));

    let output = bin()
        .arg("serve")
        .env_clear()
        .env("RUNNER_MAX_MEMORY_MB", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RUNNER_MAX_MEMORY_MB") && stderr.contains("RUNNER_SERVICE_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn exec_runs_one_handler() {
    let output = bin()
        .arg("exec")
        .arg(hello_dir())
        .args(["--path", "/hello/Grace"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("status: 200"), "{text}");
    assert!(text.contains("Hello, Grace!"), "{text}");

    let output = bin()
        .arg("exec")
        .arg(hello_dir())
        .args(["--path", "/missing"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("endpoint_not_found"));
}

/// The README's first command ends in `serve --dev`; the curl it prints works.
#[test]
fn serve_dev_prints_a_working_curl() {
    let data = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = bin()
        .args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--extension",
        ])
        .arg(hello_dir())
        .env_clear()
        .env("RUNNER_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = curl_lines(child.stdout.take().unwrap());
    let curl = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve --dev printed no curl line");
    let response = post_printed_curl(port, &curl, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(guest_json(&json)["message"], "Hello, world!");
}
