//! The verified pod-local cache and signature enforcement on the execute
//! path: signing policy (B-01), archive attacks through the runner (B-03,
//! B-04, B-05), store outages (F-01), corruption (F-02), left-overs of a
//! killed process (F-03) and LRU eviction.

use std::path::Path;
use std::process::Command;

use http::StatusCode;

use crate::support::*;

fn entries(t: &TestRunner) -> std::path::PathBuf {
    t.dir.path().join("cache/bundles")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn signed_bundle_runs_and_the_verdict_is_recorded() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let record = t.runner.bundles().cache().record(&digest).unwrap();
    let signer = record.signer.unwrap();
    assert!(signer.contains(&test_key().fingerprint().to_string()), "{signer}");
}

/// B-01: unsigned bundles are refused while SIGNING_REQUIRED (the default)
/// holds, and nothing reaches the cache.
#[tokio::test]
async fn b01_unsigned_bundle_is_refused_when_signing_is_required() {
    let t = TestRunner::new();
    let archive = ext_bundle::pack_dir(bundle_dir_for("echo", &fixture("echo")).path()).unwrap();
    let digest = t.publish_archive(&archive, None);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_signature_invalid");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("unsigned"),
        "{body}"
    );
    assert!(!entries(&t).join(digest.hex()).exists());

    let t = TestRunner::with_env(&[("SIGNING_REQUIRED", "false")]);
    let digest = t.publish_archive(&archive, None);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.bundles().cache().record(&digest).unwrap().signer, None);
}

/// B-01: a signature by a key outside the trust bundle, and a signature of
/// other bytes, are refused with the reason.
#[tokio::test]
async fn b01_unknown_signer_and_bad_signature_are_refused() {
    let t = TestRunner::new();
    let archive = ext_bundle::pack_dir(bundle_dir_for("echo", &fixture("echo")).path()).unwrap();
    let stranger = ext_bundle::signature::SigningKey::generate(ext_bundle::signature::KeyAlgorithm::EcdsaP256);
    let foreign = ext_bundle::signature::encode_signature(&stranger.sign(&archive));
    let digest = t.publish_archive(&archive, Some(&foreign));
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_signature_invalid");
    assert!(!entries(&t).join(digest.hex()).exists());

    let other = ext_bundle::pack_dir(&hello_dir()).unwrap();
    std::fs::write(t.store_dir(&digest).join("bundle.sig"), sign(&other)).unwrap();
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_signature_invalid");
}

/// A bundle signed with the `openssl` command-line tool loads when its
/// public key is trusted.
#[tokio::test]
async fn openssl_signed_bundle_loads() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    openssl(
        w,
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"],
    );
    openssl(w, &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    let archive = ext_bundle::pack_dir(bundle_dir_for("echo", &fixture("echo")).path()).unwrap();
    std::fs::write(w.join("bundle.tar.zst"), &archive).unwrap();
    openssl(
        w,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "key.pem",
            "-out",
            "bundle.der",
            "bundle.tar.zst",
        ],
    );
    let signature = b64(&std::fs::read(w.join("bundle.der")).unwrap());
    let trust = std::fs::read_to_string(w.join("pub.pem")).unwrap();

    let t = TestRunner::with_env(&[("SIGNING_TRUST_BUNDLE", &trust)]);
    let digest = t.publish_archive(&archive, Some(&signature));
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Build root → intermediate → leaf with openssl; `leaf_usage` is the
/// leaf's extendedKeyUsage. Returns (root PEM, leaf key path, chain PEM).
fn openssl_ca(w: &Path, leaf_usage: &str) -> (String, String) {
    std::fs::write(
        w.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        w.join("leaf.ext"),
        format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={leaf_usage}\n"),
    )
    .unwrap();
    for name in ["root", "int", "leaf"] {
        openssl(
            w,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{name}.key"),
            ],
        );
    }
    openssl(
        w,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/CN=Test Root",
            "-days",
            "30",
            "-out",
            "root.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        w,
        &[
            "req",
            "-new",
            "-key",
            "int.key",
            "-subj",
            "/CN=Test Intermediate",
            "-out",
            "int.csr",
        ],
    );
    openssl(
        w,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
            "-out",
            "int.pem",
        ],
    );
    openssl(
        w,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/CN=Release Signer/O=Acme",
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        w,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(w.join("leaf.pem")).unwrap(),
        std::fs::read_to_string(w.join("int.pem")).unwrap()
    );
    (std::fs::read_to_string(w.join("root.pem")).unwrap(), chain)
}

/// B-01: a bundle signed by a leaf certificate that chains (through an
/// intermediate) to a trusted root loads; a leaf without the code-signing
/// usage is refused.
#[tokio::test]
async fn b01_certificate_chain_to_a_trusted_root() {
    for (usage, expected) in [("codeSigning", StatusCode::OK), ("serverAuth", StatusCode::BAD_GATEWAY)] {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let (root, chain) = openssl_ca(w, usage);
        let archive = ext_bundle::pack_dir(bundle_dir_for("echo", &fixture("echo")).path()).unwrap();
        std::fs::write(w.join("bundle.tar.zst"), &archive).unwrap();
        openssl(
            w,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "leaf.key",
                "-out",
                "bundle.der",
                "bundle.tar.zst",
            ],
        );
        let signature = b64(&std::fs::read(w.join("bundle.der")).unwrap());

        let t = TestRunner::with_env(&[("SIGNING_TRUST_BUNDLE", &root)]);
        let digest = t.publish_archive(&archive, Some(&signature));
        std::fs::write(t.store_dir(&digest).join("bundle.pem"), &chain).unwrap();
        let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
        assert_eq!(status, expected, "{usage}: {body}");
        if expected == StatusCode::OK {
            let signer = t.runner.bundles().cache().record(&digest).unwrap().signer.unwrap();
            assert!(signer.contains("Release Signer"), "{signer}");
        } else {
            assert_eq!(error_code(&body), "bundle_signature_invalid");
            assert!(body["error"]["message"].as_str().unwrap().contains("usage"), "{body}");
        }
    }
}

/// F-01: with the store gone, a cached bundle keeps serving across a
/// restart; an uncached one is 503 `bundle_unavailable` with Retry-After.
#[tokio::test]
async fn f01_store_outage_serves_cached_bundles_and_503s_the_rest() {
    let t = TestRunner::new();
    let cached = t.publish_fixture("echo");
    let uncached = t.publish_fixture("context_info");
    let (status, _, _) = t.post(&envelope(&cached, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    let TestRunner { dir, .. } = t;

    // Same data and cache directories, but the store is a dead endpoint.
    let t = TestRunner::in_dir(dir, &[("BUNDLE_STORAGE_URL", "http://127.0.0.1:9/bundles")]);
    let (status, _, body) = t.post(&envelope(&cached, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.bundles().fetches(), 0);

    let (status, headers, body) = t.post(&envelope(&uncached, "GET", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "bundle_unavailable");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

/// F-02: a flipped byte in a cached file is detected before use; the entry
/// is evicted, fetched and verified again, and the request succeeds.
#[tokio::test]
async fn f02_corrupted_cache_entry_is_refetched() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let (status, _, _) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    let files = entries(&t).join(digest.hex()).join("files");
    let TestRunner { dir, .. } = t;

    // The component itself, with the compiled artifact gone so it is read.
    let wasm = files.join("dist/main.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&wasm, bytes).unwrap();
    std::fs::remove_dir_all(dir.path().join("cache/compiled")).unwrap();
    let t = TestRunner::in_dir(dir, &[]);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.bundles().fetches(), 1);
    let TestRunner { dir, .. } = t;

    // The manifest, checked whenever an entry is taken from disk.
    let manifest = files.join("manifest.json");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[0] = b' ';
    std::fs::write(&manifest, bytes).unwrap();
    let t = TestRunner::in_dir(dir, &[]);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.bundles().fetches(), 1);
}

/// A verdict reached under one trust bundle is not reused under another.
#[tokio::test]
async fn cached_verdict_is_rechecked_when_the_trust_bundle_changes() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let (status, _, _) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    let TestRunner { dir, .. } = t;

    let other = ext_bundle::signature::SigningKey::generate(ext_bundle::signature::KeyAlgorithm::EcdsaP256);
    let t = TestRunner::in_dir(dir, &[("SIGNING_TRUST_BUNDLE", &other.public_key_pem())]);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_signature_invalid");
    assert!(!entries(&t).join(digest.hex()).exists());
}

/// Bytes of echo's compiled artifact on this engine.
async fn echo_artifact_bytes() -> u64 {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.runner.bundles().cache().artifact_bytes()
}

/// LRU by bytes: beyond RUNNER_CACHE_MAX_BYTES the least recently used
/// entry goes; the cache stays within budget. The three bundles carry the
/// same component, so they share one compile and one compiled artifact,
/// which counts once and outlives the evicted bundle.
#[tokio::test]
async fn lru_eviction_keeps_the_cache_within_its_budget() {
    let one = std::fs::metadata(ext_test_fixtures::component("echo")).unwrap().len();
    let artifact = echo_artifact_bytes().await;
    // Room for the artifact and two bundles of about this size, not three.
    let budget = one * 5 / 2 + artifact;
    let t = TestRunner::with_env(&[("RUNNER_CACHE_MAX_BYTES", &budget.to_string())]);
    let digests: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|salt| {
            let dir = bundle_dir_for(&format!("echo_{salt}"), &fixture("echo"));
            t.publish_dir(dir.path())
        })
        .collect();
    for digest in &digests {
        let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(!entries(&t).join(digests[0].hex()).exists(), "oldest entry evicted");
    assert!(entries(&t).join(digests[1].hex()).exists());
    assert!(entries(&t).join(digests[2].hex()).exists());
    assert!(t.runner.bundles().cache().total_bytes() <= budget);
    assert_eq!(t.runner.bundles().cache().artifact_bytes(), artifact);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        load(&t.runner.engine_stats().compiles),
        1,
        "one artifact for three bundles"
    );
    assert_eq!(load(&t.runner.engine_stats().artifact_loads), 0, "served from memory");

    // Evicted means refetched (and verified) on next use.
    let (status, _, _) = t.post(&envelope(&digests[0], "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t.runner.bundles().fetches(), 4);
}

/// The artifact directories under `cache/compiled` (one per component).
fn artifact_dirs(t: &TestRunner) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(t.dir.path().join("cache/compiled"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

/// Issue 15, item 4: the compile cache is keyed by the component's own
/// SHA-256 (with its world), not by the bundle carrying it. Two bundles
/// with the same component bytes and different manifests (so different
/// content hashes), asked for at once, share one compile, one component in
/// memory and one artifact on disk, counted once in the budget; after a
/// restart that artifact is loaded once for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_component_in_two_bundles_is_compiled_once() {
    let t = TestRunner::new();
    let wasm = fixture("echo");
    let digests = [
        t.publish_dir(bundle_dir_for("echo_one", &wasm).path()),
        t.publish_dir(bundle_dir_for("echo_two", &wasm).path()),
    ];
    assert_ne!(digests[0], digests[1]);
    let envelopes = digests.map(|d| envelope(&d, "GET", "/"));
    let (one, two) = tokio::join!(t.post(&envelopes[0]), t.post(&envelopes[1]));
    for (status, _, body) in [one, two] {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let stats = t.runner.engine_stats();
    assert_eq!(
        (load(&stats.compiles), load(&stats.artifact_loads)),
        (1, 0),
        "one compile, and the second bundle served from memory"
    );
    assert_eq!(t.runner.runtime().loaded_components(), 1);
    let (_, scrape) = get_text(&t, "/metrics").await;
    assert_eq!(metric_value(&scrape, "ext_runner_compiles "), Some(1.0), "{scrape}");
    assert_eq!(artifact_dirs(&t), vec![ext_bundle::Digest::of(&wasm).hex()]);
    let artifact = t.runner.bundles().cache().artifact_bytes();
    assert!(artifact > 0);
    let bundles: u64 = digests
        .iter()
        .map(|d| t.runner.bundles().cache().record(d).unwrap().unpacked_bytes)
        .sum();
    assert_eq!(t.runner.bundles().cache().total_bytes(), bundles + artifact);

    // A restart loads the shared artifact from disk, once for both bundles.
    let TestRunner { dir, .. } = t;
    let t = TestRunner::in_dir(dir, &[]);
    assert_eq!(t.runner.bundles().cache().artifact_bytes(), artifact, "counted once");
    for digest in &digests {
        let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let stats = t.runner.engine_stats();
    assert_eq!((load(&stats.compiles), load(&stats.artifact_loads)), (0, 1));
    assert_eq!(t.runner.runtime().loaded_components(), 1);
}

/// `echo` made a distinct component (another SHA-256, the same code) by a
/// custom section carrying `salt`.
fn salted_echo(salt: &str) -> Vec<u8> {
    let mut wasm = fixture("echo");
    let name = b"salt";
    let payload_len = 1 + name.len() + salt.len();
    assert!(payload_len < 128 && name.len() < 128);
    wasm.extend_from_slice(&[0, payload_len as u8, name.len() as u8]);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(salt.as_bytes());
    wasm
}

/// Item 2 of issue 10: compiled artifacts (`cache/compiled`) count against
/// RUNNER_CACHE_MAX_BYTES and are evicted in the same LRU order as the
/// bundles; an evicted artifact is compiled again on next use.
#[tokio::test]
async fn compiled_artifacts_count_against_the_cache_budget_and_are_evicted() {
    let one = std::fs::metadata(ext_test_fixtures::component("echo")).unwrap().len();
    let artifact = echo_artifact_bytes().await;
    // Room for two (bundle + artifact) pairs and a half bundle, not three pairs.
    let budget = 2 * (one + artifact) + one / 2;
    let t = TestRunner::with_env(&[("RUNNER_CACHE_MAX_BYTES", &budget.to_string())]);
    let components: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|salt| salted_echo(salt)).collect();
    let digests: Vec<_> = components
        .iter()
        .enumerate()
        .map(|(i, wasm)| t.publish_component(&format!("echo_{i}"), wasm))
        .collect();
    for digest in &digests {
        let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let cache = t.runner.bundles().cache();
    assert!(cache.total_bytes() <= budget, "{} > {budget}", cache.total_bytes());
    let compiled = t.dir.path().join("cache/compiled");
    let artifact_dir = |wasm: &[u8]| compiled.join(ext_bundle::Digest::of(wasm).hex());
    assert!(
        !artifact_dir(&components[0]).exists(),
        "the oldest artifact was evicted"
    );
    assert!(
        !entries(&t).join(digests[0].hex()).exists(),
        "the oldest bundle was evicted"
    );
    for i in [1, 2] {
        assert!(artifact_dir(&components[i]).exists(), "artifact {i} kept");
        assert!(entries(&t).join(digests[i].hex()).exists(), "bundle {i} kept");
    }
    assert_eq!(cache.artifact_bytes(), 2 * artifact);

    // After a restart the kept one loads from its artifact; the evicted one
    // is fetched and compiled again.
    let TestRunner { dir, .. } = t;
    let t = TestRunner::in_dir(dir, &[("RUNNER_CACHE_MAX_BYTES", &budget.to_string())]);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (status, _, _) = t.post(&envelope(&digests[2], "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(load(&t.runner.engine_stats().compiles), 0);
    assert_eq!(load(&t.runner.engine_stats().artifact_loads), 1);
    let (status, _, _) = t.post(&envelope(&digests[0], "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(load(&t.runner.engine_stats().compiles), 1);
    assert!(t.runner.bundles().cache().total_bytes() <= budget);
}

/// Concurrent first requests for one bundle fetch it once (single-flight
/// per content hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_fetch_once() {
    let t = std::sync::Arc::new(TestRunner::new());
    let digest = t.publish_fixture("echo");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(
            async move { t.post(&envelope(&digest, "GET", "/")).await.0 },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(t.runner.bundles().fetches(), 1);
}

/// F-03: staging directories and entries without a record that a killed
/// process left behind are removed at start-up and never served.
#[tokio::test]
async fn f03_leftovers_of_a_killed_process_are_cleaned_at_start() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let TestRunner { dir, .. } = t;
    let bundles = dir.path().join("cache/bundles");
    std::fs::create_dir_all(bundles.join(".tmp-abandoned/files/dist")).unwrap();
    std::fs::write(bundles.join(".tmp-abandoned/bundle.tar.zst"), b"partial").unwrap();
    // A half-made entry for the very bundle we will ask for.
    std::fs::create_dir_all(bundles.join(digest.hex()).join("files/dist")).unwrap();
    std::fs::write(bundles.join(digest.hex()).join("files/dist/main.wasm"), b"garbage").unwrap();

    let t = TestRunner::in_dir(dir, &[]);
    assert!(!bundles.join(".tmp-abandoned").exists());
    assert!(!bundles.join(digest.hex()).exists());
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.bundles().fetches(), 1);
}

/// An artifact directory from before components were keyed by their own
/// hash (`compiled/<bundle hash>/<path hash>.<engine tag>.cwasm`) and
/// another engine's artifact are removed at start-up, never counted in the
/// budget nor loaded; the component compiles and its artifact is written
/// in today's layout.
#[tokio::test]
async fn artifacts_of_an_older_layout_or_another_engine_are_removed_at_start() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let TestRunner { dir, .. } = t;
    let compiled = dir.path().join("cache/compiled");
    let wasm = fixture("echo");
    let old_layout = compiled.join(digest.hex());
    let other_engine = compiled.join(ext_bundle::Digest::of(&wasm).hex());
    for (dir, stem) in [
        (&old_layout, "0123456789abcdef.fedcba9876543210"),
        (&other_engine, "0000000000000000"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        let artifact = b"not code for this engine";
        std::fs::write(dir.join(format!("{stem}.cwasm")), artifact).unwrap();
        let sidecar = ext_bundle::Digest::of(artifact).hex();
        std::fs::write(dir.join(format!("{stem}.sha256")), sidecar).unwrap();
    }

    let t = TestRunner::in_dir(dir, &[]);
    assert!(!old_layout.exists(), "the older layout's directory is removed");
    assert!(!other_engine.exists(), "another engine's artifact is removed");
    assert_eq!(t.runner.bundles().cache().artifact_bytes(), 0);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&t.runner.engine_stats().compiles), 1);
    let names: Vec<String> = std::fs::read_dir(&other_engine)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let tag = t.runner.runtime().engine_tag();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with(tag)), "{names:?}");
}

/// B-04 through the runner: a signed archive with a path-escaping entry is
/// refused with `bundle_invalid_entry`, and nothing lands outside staging.
#[tokio::test]
async fn b04_signed_archive_with_an_escaping_entry_is_refused() {
    let t = TestRunner::new();
    let mut tar = tar::Builder::new(Vec::new());
    let manifest = br#"{"name":"com.test.evil","publisher":"t","version":"1.0.0","runtime":"wasm-rust@1","entry":"dist/main.wasm"}"#;
    append(&mut tar, "manifest.json", manifest);
    append(&mut tar, "dist/main.wasm", &fixture("echo"));
    append_raw_path(&mut tar, "../escaped.txt", b"owned");
    let archive = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
    let digest = t.publish_archive(&archive, Some(&sign(&archive)));
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_invalid_entry");
    assert!(!t.dir.path().join("cache/escaped.txt").exists());
    assert!(!entries(&t).join("escaped.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(entries(&t)).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// B-05 through the runner: a zstd bomb (a small archive that inflates far
/// beyond the unpack cap) is `bundle_too_large`, with staging cleaned up.
#[tokio::test]
async fn b05_zstd_bomb_is_refused() {
    let t = TestRunner::new();
    let mut tar = tar::Builder::new(Vec::new());
    let manifest = br#"{"name":"com.test.bomb","publisher":"t","version":"1.0.0","runtime":"wasm-rust@1","entry":"dist/main.wasm"}"#;
    append(&mut tar, "manifest.json", manifest);
    append(&mut tar, "dist/main.wasm", &vec![0u8; 130 * 1024 * 1024]);
    let archive = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
    assert!(archive.len() < 1024 * 1024, "the bomb is small: {}", archive.len());
    let digest = t.publish_archive(&archive, Some(&sign(&archive)));
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_too_large");
    let leftovers: Vec<_> = std::fs::read_dir(entries(&t)).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(ext_test_fixtures::component(name)).unwrap()
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes).unwrap();
}

/// Write a header whose name is taken verbatim (the tar crate refuses `..`
/// through its safe API).
fn append_raw_path(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, bytes).unwrap();
}

/// `compile` adds this engine's artifact; the runner uses it only for a
/// signed bundle when RUNNER_TRUST_PRECOMPILED=true, else compiles itself.
#[tokio::test]
async fn precompiled_artifact_is_used_only_when_trusted() {
    let work = tempfile::tempdir().unwrap();
    let plain = work.path().join("plain.tar.zst");
    let compiled = work.path().join("compiled.tar.zst");
    std::fs::write(
        &plain,
        ext_bundle::pack_dir(bundle_dir_for("echo", &fixture("echo")).path()).unwrap(),
    )
    .unwrap();
    // The same engine settings as the test runners (see `test_config`).
    let env = std::collections::HashMap::from([("RUNNER_MAX_CONCURRENCY".to_string(), "8".to_string())]);
    let (digest, artifact) = ext_runner::cli::compile_with_env(&plain, &compiled, env).unwrap();
    let archive = std::fs::read(&compiled).unwrap();
    assert_eq!(digest, ext_bundle::Digest::of(&archive));
    let (files, _) = ext_bundle::list(&archive, &ext_bundle::UnpackLimits::default()).unwrap();
    assert!(files.contains_key(&artifact), "{files:?}");

    for (trusted, signed, precompiled_loads) in [("true", true, 1), ("false", true, 0), ("true", false, 0)] {
        let t = TestRunner::with_env(&[
            ("RUNNER_TRUST_PRECOMPILED", trusted),
            ("SIGNING_REQUIRED", if signed { "true" } else { "false" }),
        ]);
        let signature = signed.then(|| sign(&archive));
        let digest = t.publish_archive(&archive, signature.as_deref());
        let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let stats = t.runner.engine_stats();
        let loads = stats.precompiled_loads.load(std::sync::atomic::Ordering::Relaxed);
        let compiles = stats.compiles.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (loads, compiles),
            (precompiled_loads, 1 - precompiled_loads),
            "trusted={trusted} signed={signed}"
        );
    }
}

/// Where a first request's load stands, read from the cache directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadPhase {
    /// A staging directory without unpacked files: download, hash, verify.
    Fetch,
    /// A staging directory with `files/`: unpack, record, fsync.
    Unpack,
    /// The bundle entry is committed; its compiled artifact is not there yet.
    Compile,
    /// Entry and artifact both there: nothing left to interrupt.
    Done,
}

fn load_phase(cache: &Path, bundle: &ext_bundle::Digest, component: &ext_bundle::Digest) -> Option<LoadPhase> {
    let staging = std::fs::read_dir(cache.join("bundles"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
    if let Some(staging) = staging {
        return Some(match staging.path().join("files").exists() {
            true => LoadPhase::Unpack,
            false => LoadPhase::Fetch,
        });
    }
    if !cache.join("bundles").join(bundle.hex()).join("entry.json").exists() {
        return None;
    }
    let compiled = std::fs::read_dir(cache.join("compiled").join(component.hex()))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().ends_with(".cwasm"));
    Some(if compiled { LoadPhase::Done } else { LoadPhase::Compile })
}

/// Every file anywhere under `dir` whose name starts with `.tmp-`.
fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            found.push(entry.path());
        } else if entry.path().is_dir() {
            found.extend(temp_files(&entry.path()));
        }
    }
    found
}

/// No partial entry is visible: every bundle entry outside staging matches
/// its record, every compiled artifact has the sidecar that vouches for it.
fn assert_no_visible_partial_entry(cache: &Path, context: &str) {
    for entry in std::fs::read_dir(cache.join("bundles")).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            continue; // staging: never served, removed at start
        }
        let record: ext_runner::store::EntryRecord =
            serde_json::from_slice(&std::fs::read(entry.path().join("entry.json")).unwrap())
                .unwrap_or_else(|e| panic!("{context}: visible entry {name} without a record: {e}"));
        for (path, meta) in &record.files {
            let bytes = std::fs::read(entry.path().join("files").join(path)).unwrap();
            assert_eq!(ext_bundle::Digest::of(&bytes), meta.sha256, "{context}: {path}");
        }
    }
    for dir in std::fs::read_dir(cache.join("compiled")).into_iter().flatten() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                let sidecar = std::fs::read_to_string(path.with_extension("sha256"))
                    .unwrap_or_else(|e| panic!("{context}: {} has no sidecar: {e}", path.display()));
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(
                    sidecar.trim(),
                    ext_bundle::Digest::of(&bytes).hex(),
                    "{context}: {}",
                    path.display()
                );
            }
        }
    }
}

/// F-03: SIGKILL the real server in the middle of each step of a first
/// request: fetch (download, hash, verify), unpack and compile. Each kill is
/// made once the step is seen under way on disk, and the step is checked to
/// be still unfinished after the kill (so it really was interrupted). After
/// every kill no partial bundle entry or compiled artifact is visible; after
/// a restart no temp files remain, and the first request succeeds and
/// leaves a complete artifact.
#[test]
fn f03_kill_9_mid_fetch_unpack_or_compile_never_leaves_a_visible_partial_entry() {
    use std::io::{Read as _, Write as _};
    let data = tempfile::tempdir().unwrap();
    // A component that takes a while to compile, in a bundle that takes a
    // while to fetch and unpack (24 MiB of incompressible bytes).
    let wasm = crate::compile::slow_echo(1200, 7);
    let component = ext_bundle::Digest::of(&wasm);
    let bundle = bundle_dir_for("echo", &wasm);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let noise: Vec<u8> = (0..24 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::create_dir_all(bundle.path().join("ui")).unwrap();
    std::fs::write(bundle.path().join("ui/noise.bin"), noise).unwrap();
    let archive = ext_bundle::pack_dir(bundle.path()).unwrap();
    let digest = store_signed(data.path(), &archive);
    let body = envelope(&digest, "GET", "/").to_string();
    let cache = data.path().join("cache");

    let request = move |port: u16| {
        let mut response = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(&http_request(&body));
            let _ = stream.read_to_string(&mut response);
        }
        response
    };

    let mut interrupted = Vec::new();
    for attempt in 0..15 {
        let wanted = [LoadPhase::Fetch, LoadPhase::Unpack, LoadPhase::Compile]
            .into_iter()
            .find(|phase| !interrupted.contains(phase));
        let Some(wanted) = wanted else { break };
        // Start from nothing for this bundle.
        let _ = std::fs::remove_dir_all(cache.join("bundles").join(digest.hex()));
        let _ = std::fs::remove_dir_all(cache.join("compiled"));
        let (mut child, port) = spawn_serve(data.path(), &[], &[]);
        let client = {
            let request = request.clone();
            std::thread::spawn(move || request(port))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while load_phase(&cache, &digest, &component) != Some(wanted)
            && !client.is_finished()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let _ = client.join();
        let context = format!("attempt {attempt}, killed while waiting for {wanted:?}");
        let after = load_phase(&cache, &digest, &component);
        if let Some(phase) = after.filter(|p| *p != LoadPhase::Done) {
            interrupted.push(phase);
        }
        assert_no_visible_partial_entry(&cache, &context);
    }
    for phase in [LoadPhase::Fetch, LoadPhase::Unpack, LoadPhase::Compile] {
        assert!(
            interrupted.contains(&phase),
            "no kill interrupted {phase:?}: {interrupted:?}"
        );
    }

    let (mut child, port) = spawn_serve(data.path(), &[], &[]);
    let leftovers = temp_files(&cache);
    let response = request(port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(leftovers.is_empty(), "temp files survived a restart: {leftovers:?}");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(load_phase(&cache, &digest, &component), Some(LoadPhase::Done));
    assert_no_visible_partial_entry(&cache, "after the restart");
}

/// GET a path from the runner on `port` over a fresh connection; the raw response.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// POST an execute envelope to the runner on `port`; the raw response.
fn execute(port: u16, digest: &ext_bundle::Digest) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&http_request(&envelope(digest, "GET", "/").to_string()))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// The value of a series line (`name{labels} value`) in a Prometheus scrape.
fn series(scrape: &str, line_start: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// F-04: a real mid-write failure. The real binary runs under
/// `prlimit --fsize` (RLIMIT_FSIZE) set between the size of a small
/// bundle's files and the size of its compiled artifact, so writes past the
/// limit fail with EFBIG part-way through (the runner handles SIGXFSZ
/// instead of dying). The small bundle is served from memory although its
/// artifact cannot be written; a bundle with a file over the limit gets 503
/// `bundle_unavailable` with Retry-After; no partial or temp files remain;
/// `ext_runner_cache_write_failures_total` counts both, by cache. Without
/// the limit, the same data directory serves both.
#[tokio::test]
async fn f04_writes_failing_mid_file_fail_cleanly_and_are_counted() {
    let artifact = echo_artifact_bytes().await;
    let echo = fixture("echo");
    let small = ext_bundle::pack_dir(bundle_dir_for("echo", &echo).path()).unwrap();
    let big_dir = bundle_dir_for("echo_big", &echo);
    // 1 MiB of incompressible bytes.
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let noise: Vec<u8> = (0..(1 << 20) / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::create_dir_all(big_dir.path().join("ui")).unwrap();
    std::fs::write(big_dir.path().join("ui/noise.bin"), &noise).unwrap();
    let big = ext_bundle::pack_dir(big_dir.path()).unwrap();
    let limit = small.len().max(echo.len()) as u64 + 64 * 1024;
    assert!(
        artifact > limit && big.len() as u64 > limit,
        "artifact {artifact}, limit {limit}"
    );

    let data = tempfile::tempdir().unwrap();
    let small_digest = store_signed(data.path(), &small);
    let big_digest = store_signed(data.path(), &big);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--fsize={limit}:{limit}"))
        .arg(env!("CARGO_BIN_EXE_ext-runner"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("RUNNER_DATA_DIR", data.path())
        .env("RUNNER_SERVICE_TOKEN", TOKEN)
        .env("RUNNER_MAX_CONCURRENCY", "8")
        .env("SIGNING_TRUST_BUNDLE", test_key().public_key_pem())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runner exited under the file size limit"
        );
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // Compiled in memory; writing the artifact fails past the limit.
    for _ in 0..2 {
        let response = execute(port, &small_digest);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // The bundle's archive cannot be written: nothing to serve from memory.
    let response = execute(port, &big_digest);
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("bundle_unavailable"), "{response}");
    assert!(response.to_ascii_lowercase().contains("retry-after:"), "{response}");
    // The loaded bundle keeps serving.
    let response = execute(port, &small_digest);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let scrape = get(port, "/metrics");
    assert!(child.try_wait().unwrap().is_none(), "the runner died of SIGXFSZ");
    child.kill().unwrap();
    child.wait().unwrap();

    let failures = |cache: &str| {
        series(
            &scrape,
            &format!("ext_runner_cache_write_failures_total{{cache=\"{cache}\"}}"),
        )
    };
    assert_eq!(failures("compiled"), Some(1.0), "{scrape}");
    assert_eq!(failures("bundles"), Some(1.0), "{scrape}");
    let cache = data.path().join("cache");
    assert_eq!(temp_files(&cache), Vec::<std::path::PathBuf>::new());
    assert!(!cache.join("bundles").join(big_digest.hex()).exists());
    let artifacts: Vec<_> = std::fs::read_dir(cache.join("compiled"))
        .unwrap()
        .flat_map(|dir| std::fs::read_dir(dir.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .collect();
    assert!(artifacts.is_empty(), "partial artifact files: {artifacts:?}");
    assert_no_visible_partial_entry(&cache, "under the file size limit");

    // Without the limit the same directory serves both.
    let (mut child, port) = spawn_serve(data.path(), &[], &[]);
    let responses = [execute(port, &big_digest), execute(port, &small_digest)];
    child.kill().unwrap();
    child.wait().unwrap();
    for response in responses {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

/// F-04: the cache directory stops being writable mid-life (here: replaced
/// by a file, which fails every write like a full or read-only disk even for
/// root). The fetch fails cleanly with 503 `bundle_unavailable` and
/// Retry-After, nothing partial appears, and a bundle already loaded keeps
/// serving from memory.
#[tokio::test]
async fn f04_unwritable_cache_fails_cleanly_and_keeps_serving_loaded_bundles() {
    let t = TestRunner::new();
    let loaded = t.publish_fixture("echo");
    let fresh = t.publish_fixture("context_info");
    let (status, _, _) = t.post(&envelope(&loaded, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);

    let bundles = entries(&t);
    std::fs::rename(&bundles, t.dir.path().join("cache/bundles.moved")).unwrap();
    std::fs::write(&bundles, b"not a directory").unwrap();

    let (status, headers, body) = t.post(&envelope(&fresh, "GET", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "bundle_unavailable");
    assert!(headers.contains_key("retry-after"));
    let (status, _, body) = t.post(&envelope(&loaded, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Writable again: the next request succeeds, with no leftovers.
    std::fs::remove_file(&bundles).unwrap();
    std::fs::rename(t.dir.path().join("cache/bundles.moved"), &bundles).unwrap();
    let (status, _, body) = t.post(&envelope(&fresh, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let staging = std::fs::read_dir(&bundles)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(staging, 0);
}

/// RUNNER_MAX_LOADED_COMPONENTS bounds the compiled components held in
/// memory: the least recently used is dropped and comes back from the
/// on-disk artifact cache (a load, not a compile) when called again.
#[tokio::test]
async fn compiled_components_in_memory_are_bounded() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_LOADED_COMPONENTS", "1")]);
    let echo = t.publish_fixture("echo");
    let info = t.publish_fixture("context_info");
    for digest in [&echo, &info, &echo] {
        let (status, _, body) = t.post(&envelope(digest, "GET", "/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let stats = t.runner.engine_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&stats.compiles), 2, "each component compiled once");
    assert_eq!(load(&stats.unloads), 2, "echo, then context_info, dropped");
    assert_eq!(load(&stats.artifact_loads), 1, "echo came back from the artifact cache");
    assert_eq!(t.runner.runtime().loaded_components(), 1);
}

/// B-02: with RUNNER_REQUIRE_EXTENSION_MATCH, a validly signed bundle whose
/// manifest names another extension is refused (mix-and-match); the same
/// bundle runs for the extension it was signed for.
#[tokio::test]
async fn b02_bundle_signed_for_another_extension_is_refused() {
    let t = TestRunner::with_env(&[("RUNNER_REQUIRE_EXTENSION_MATCH", "true")]);
    let digest = t.publish_fixture("echo");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_signature_invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signed for extension `com.test.echo`, not `com.test.ext`"),
        "{body}"
    );
    let mut env = envelope(&digest, "GET", "/");
    env["context"]["extension_id"] = serde_json::json!("com.test.echo");
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
