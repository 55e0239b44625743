//! Bundle storage against a real S3 server (SeaweedFS, started by
//! `scripts/test`, which checks SigV4 like AWS does) and a read-only HTTP
//! store: publish and download back, immutability, not-found versus
//! unavailable, key layouts and size caps.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ext_bundle::Digest;
use ext_runner::store::StorageSettings;
use ext_runner::store::object::{BundleObjects, ObjectError, PutOutcome};
use http::StatusCode;

use crate::support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ext-runner"))
}

/// `ext-runner publish` with the store's settings and nothing else from the
/// process environment.
fn publish_cli(env: &[(String, String)], args: &[&str], bundle: &Path) -> Output {
    bin()
        .arg("publish")
        .arg(bundle)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The hello bundle, its signature by the test key and a trust bundle file
/// with that key, in a temp directory.
struct SignedHello {
    dir: tempfile::TempDir,
    archive: Vec<u8>,
    digest: Digest,
}

impl SignedHello {
    fn new() -> SignedHello {
        let dir = tempfile::tempdir().unwrap();
        let archive = ext_bundle::pack_dir(&hello_dir()).unwrap();
        std::fs::write(dir.path().join("bundle.tar.zst"), &archive).unwrap();
        std::fs::write(dir.path().join("bundle.sig"), sign(&archive)).unwrap();
        std::fs::write(dir.path().join("trust.pem"), test_key().public_key_pem()).unwrap();
        let digest = Digest::of(&archive);
        SignedHello { dir, archive, digest }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn bundle(&self) -> std::path::PathBuf {
        self.dir.path().join("bundle.tar.zst")
    }
}

async fn download_all(objects: &BundleObjects, key: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    objects.download(key, &mut bytes, 1 << 30).await.unwrap();
    bytes
}

/// The author's path: `publish` a signed bundle to S3, then everything is
/// there under the default layout, byte for byte, and a runner configured
/// for the same bucket verifies and executes it.
#[tokio::test(flavor = "multi_thread")]
async fn publish_to_s3_then_download_and_execute() {
    let s3 = TestS3::from_env();
    let prefix = unique_prefix("publish");
    let env = s3.storage_env(&prefix);
    let hello = SignedHello::new();
    let store = s3.url(&prefix);
    let args = [
        "--store",
        &store,
        "--sig",
        &hello.path("bundle.sig"),
        "--trust",
        &hello.path("trust.pem"),
    ];

    let output = publish_cli(&env, &args, &hello.bundle());
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&format!("{} published", hello.digest)), "{stdout}");
    assert!(stdout.contains("signed by key"), "{stdout}");

    let objects = s3.objects(&prefix, &[]);
    let keys = objects.keys(&hello.digest, "", "");
    assert_eq!(keys.bundle, format!("sha256/{}/bundle.tar.zst", hello.digest.hex()));
    let mut file = tempfile::tempfile().unwrap();
    let (digest, size) = objects.download(&keys.bundle, &mut file, 1 << 30).await.unwrap();
    assert_eq!((digest, size), (hello.digest, hello.archive.len() as u64));
    assert_eq!(
        download_all(&objects, &keys.signature).await,
        sign(&hello.archive).into_bytes()
    );
    assert_eq!(
        download_all(&objects, &keys.manifest).await,
        std::fs::read(hello_dir().join("manifest.json")).unwrap()
    );
    assert_eq!(objects.get_small(&keys.certificates, 1024).await.unwrap(), None);

    // Idempotent: the same bytes again are "already present", nothing fails.
    let output = publish_cli(&env, &args, &hello.bundle());
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!("{} already present", hello.digest)),
        "{stdout}"
    );

    // A runner on the same bucket fetches, verifies the signature and runs it.
    let env_pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runner = TestRunner::with_env(&env_pairs);
    let (status, _, body) = runner.post(&envelope(&hello.digest, "GET", "/hello/Ada")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body)["message"], "Hello, Ada!");
}

/// `publish` refuses what it must not upload, and uploads nothing then.
#[test]
fn publish_refuses_unsigned_badly_signed_and_read_only() {
    let s3 = TestS3::from_env();
    let prefix = unique_prefix("refuse");
    let env = s3.storage_env(&prefix);
    let hello = SignedHello::new();
    let store = s3.url(&prefix);

    let output = publish_cli(&env, &["--store", &store], &hello.bundle());
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unsigned"),
        "{}",
        text(&output)
    );

    let other = tempfile::tempdir().unwrap();
    let wrong_sig = other.path().join("bundle.sig");
    std::fs::write(&wrong_sig, sign(b"some other archive")).unwrap();
    let output = publish_cli(
        &env,
        &[
            "--store",
            &store,
            "--sig",
            &wrong_sig.display().to_string(),
            "--trust",
            &hello.path("trust.pem"),
        ],
        &hello.bundle(),
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("does not verify"),
        "{}",
        text(&output)
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects = s3.objects(&prefix, &[]);
    let keys = objects.keys(&hello.digest, "", "");
    for key in [&keys.bundle, &keys.signature, &keys.manifest] {
        let found = rt.block_on(objects.get_small(key, 1 << 30)).unwrap();
        assert_eq!(found, None, "{key} was uploaded by a refused publish");
    }

    // --allow-unsigned: the bundle and manifest go up, no signature.
    let output = publish_cli(&env, &["--store", &store, "--allow-unsigned"], &hello.bundle());
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        rt.block_on(objects.get_small(&keys.manifest, 1 << 20))
            .unwrap()
            .is_some()
    );
    assert_eq!(rt.block_on(objects.get_small(&keys.signature, 1 << 20)).unwrap(), None);

    let output = publish_cli(
        &env,
        &["--store", "http://127.0.0.1:9/bundles", "--allow-unsigned"],
        &hello.bundle(),
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("read-only"),
        "{}",
        text(&output)
    );
}

/// SigV4 is really checked: the right key id with a wrong secret is refused,
/// for reads and writes, and reported as a credentials problem.
#[tokio::test]
async fn wrong_secret_is_refused() {
    let s3 = TestS3::from_env();
    let prefix = unique_prefix("sigv4");
    let good = s3.objects(&prefix, &[]);
    assert_eq!(
        good.put_if_absent("a/object", Bytes::from_static(b"x")).await.unwrap(),
        PutOutcome::Created
    );
    let bad = s3.objects(
        &prefix,
        &[("BUNDLE_STORAGE_SECRET_ACCESS_KEY", "not-the-secret-0123456789")],
    );
    let err = bad.get_small("a/object", 1024).await.unwrap_err();
    assert!(matches!(err, ObjectError::Denied { .. }), "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");
    let err = bad
        .put_if_absent("a/other", Bytes::from_static(b"y"))
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::Denied { .. }), "{err}");
    assert_eq!(good.get_small("a/other", 1024).await.unwrap(), None);
}

/// Objects are immutable: the same bytes again are fine, other bytes at the
/// same key are a conflict and leave the original untouched.
#[tokio::test]
async fn put_if_absent_is_idempotent_and_never_overwrites() {
    let s3 = TestS3::from_env();
    let objects = s3.objects(&unique_prefix("immutable"), &[]);
    let key = "sha256/abc/bundle.sig";
    let original = Bytes::from_static(b"signature one");
    assert_eq!(
        objects.put_if_absent(key, original.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        objects.put_if_absent(key, original.clone()).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    for other in [&b"signature two"[..], b"signature one, longer", b"sig"] {
        let err = objects.put_if_absent(key, Bytes::from(other)).await.unwrap_err();
        assert!(matches!(err, ObjectError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("never overwritten"), "{err}");
    }
    assert_eq!(
        objects.get_small(key, 1024).await.unwrap().as_deref(),
        Some(&original[..])
    );

    // Two writers racing for one key with different bytes: exactly one
    // wins (the conditional put or the existence check stops the other).
    let race_key = "sha256/race/bundle.sig";
    let (a, b) = tokio::join!(
        objects.put_if_absent(race_key, Bytes::from_static(b"writer a")),
        objects.put_if_absent(race_key, Bytes::from_static(b"writer b")),
    );
    let (winner, loser) = match (a, b) {
        (Ok(PutOutcome::Created), Err(e)) => (&b"writer a"[..], e),
        (Err(e), Ok(PutOutcome::Created)) => (&b"writer b"[..], e),
        other => panic!("expected one Created and one Conflict, got {other:?}"),
    };
    assert!(matches!(loser, ObjectError::Conflict { .. }), "{loser}");
    assert_eq!(
        objects.get_small(race_key, 1024).await.unwrap().as_deref(),
        Some(winner)
    );
}

/// Large objects go up in parts with progress; the download hashes to the
/// same digest and a second upload finds them present.
#[tokio::test]
async fn large_upload_in_parts_round_trips() {
    let s3 = TestS3::from_env();
    let objects = s3.objects(&unique_prefix("multipart"), &[]);
    let size = ext_runner::store::object::MULTIPART_THRESHOLD_BYTES + 1024 * 1024 + 7;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let payload: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let payload = Bytes::from(payload);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        move |sent: u64| seen.lock().unwrap().push(sent)
    };
    let outcome = objects
        .put_if_absent_with_progress("big/bundle.tar.zst", payload.clone(), &record)
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "progress reported per part: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(size as u64));

    let mut sink = Vec::new();
    let (digest, got) = objects
        .download("big/bundle.tar.zst", &mut sink, size as u64)
        .await
        .unwrap();
    assert_eq!((digest, got), (Digest::of(&payload), size as u64));
    assert_eq!(
        objects.put_if_absent("big/bundle.tar.zst", payload).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
}

/// A missing object is `NotFound`; a store that cannot be reached, or a
/// bucket that does not exist, is `Unavailable` (the runner answers 502
/// and 503 respectively) and fails within seconds.
#[tokio::test]
async fn not_found_is_not_unavailable() {
    let s3 = TestS3::from_env();
    let objects = s3.objects(&unique_prefix("missing"), &[]);
    let err = objects
        .download("sha256/none/bundle.tar.zst", &mut Vec::new(), 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::NotFound { .. }), "{err}");

    let closed = format!("http://{}", closed_port_addr());
    let dead = s3.objects("p", &[("BUNDLE_STORAGE_ENDPOINT", &closed)]);
    let started = Instant::now();
    let err = dead
        .download("sha256/x/bundle.tar.zst", &mut Vec::new(), 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let err = dead.get_small("sha256/x/bundle.sig", 1024).await.unwrap_err();
    assert!(
        matches!(err, ObjectError::Unavailable { .. }),
        "get_small must not turn this into None: {err}"
    );
    let err = dead.put_if_absent("k", Bytes::from_static(b"v")).await.unwrap_err();
    assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");

    let no_bucket = s3.objects("p", &[("BUNDLE_STORAGE_URL", "s3://no-such-bucket-ext-runner/p")]);
    let err = no_bucket.get_small("k", 1024).await.unwrap_err();
    assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");
}

/// F-01 against the real server: a runner whose store is down answers 503
/// `bundle_unavailable` with Retry-After for an uncached bundle; a bundle
/// that is not in the store is 502 `bundle_not_found`.
#[tokio::test(flavor = "multi_thread")]
async fn runner_maps_store_failures() {
    let s3 = TestS3::from_env();
    let prefix = unique_prefix("runner-errors");
    let mut env = s3.storage_env(&prefix);
    let missing = Digest::of(b"never published");

    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runner = TestRunner::with_env(&pairs);
    let (status, _, body) = runner.post(&envelope(&missing, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_not_found");

    let closed = format!("http://{}", closed_port_addr());
    env.retain(|(k, _)| k != "BUNDLE_STORAGE_ENDPOINT");
    env.push(("BUNDLE_STORAGE_ENDPOINT".to_string(), closed));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runner = TestRunner::with_env(&pairs);
    let (status, headers, body) = runner.post(&envelope(&missing, "GET", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "bundle_unavailable");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

/// `BUNDLE_STORAGE_KEY_LAYOUT` with `{tenant}` and `{extension}`: publish
/// puts everything under that key, and ids cannot climb out of it.
#[tokio::test]
async fn key_layout_with_tenant_and_extension() {
    let s3 = TestS3::from_env();
    let prefix = unique_prefix("layout");
    let layout = "tenants/{tenant}/extensions/{extension}/{hex}/bundle.tar.zst";
    let mut env = s3.storage_env(&prefix);
    env.push(("BUNDLE_STORAGE_KEY_LAYOUT".to_string(), layout.to_string()));
    let hello = SignedHello::new();
    let store = s3.url(&prefix);

    let output = publish_cli(&env, &["--store", &store, "--allow-unsigned"], &hello.bundle());
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--tenant"),
        "{}",
        text(&output)
    );

    let output = publish_cli(
        &env,
        &["--store", &store, "--allow-unsigned", "--tenant", "acme"],
        &hello.bundle(),
    );
    assert!(output.status.success(), "{}", text(&output));

    let objects = s3.objects(&prefix, &[("BUNDLE_STORAGE_KEY_LAYOUT", layout)]);
    let keys = objects.keys(&hello.digest, "acme", "com.example.hello");
    let hex = hello.digest.hex();
    assert_eq!(
        keys.bundle,
        format!("tenants/acme/extensions/com.example.hello/{hex}/bundle.tar.zst")
    );
    assert_eq!(
        keys.manifest,
        format!("tenants/acme/extensions/com.example.hello/{hex}/manifest.json")
    );
    // Read back through a store with the default layout: the raw keys are
    // exactly the layout's.
    let raw = s3.objects(&prefix, &[]);
    assert_eq!(download_all(&raw, &keys.bundle).await, hello.archive);
    assert!(raw.get_small(&keys.manifest, 1 << 20).await.unwrap().is_some());

    let escaped = objects.keys(&hello.digest, "../other", "x/y");
    assert_eq!(
        escaped.bundle,
        format!("tenants/%2E.%2Fother/extensions/x%2Fy/{hex}/bundle.tar.zst")
    );
}

/// A bundle over the caller's cap stops with `TooLarge`, whether the store
/// announces the size or not.
#[tokio::test]
async fn download_stops_at_the_cap() {
    let s3 = TestS3::from_env();
    let objects = s3.objects(&unique_prefix("cap"), &[]);
    let bytes = Bytes::from(vec![7u8; 64 * 1024]);
    objects.put_if_absent("k/bundle.tar.zst", bytes.clone()).await.unwrap();
    let err = objects
        .download("k/bundle.tar.zst", &mut Vec::new(), 64 * 1024 - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectError::TooLarge { max_bytes, .. } if max_bytes == 64 * 1024 - 1),
        "{err}"
    );
    let err = objects.get_small("k/bundle.tar.zst", 100).await.unwrap_err();
    assert!(matches!(err, ObjectError::TooLarge { .. }), "{err}");
    let (_, size) = objects
        .download("k/bundle.tar.zst", &mut Vec::new(), 64 * 1024)
        .await
        .unwrap();
    assert_eq!(size, 64 * 1024);
}

/// A read-only `http(s)://` store: plain GETs below a base URL (here a tiny
/// server in the test), writes refused, 404 vs 5xx kept apart, the size cap
/// enforced.
#[tokio::test]
async fn http_store_reads_and_refuses_writes() {
    let files: Arc<HashMap<String, Vec<u8>>> = Arc::new(HashMap::from([
        ("/base/sha256/abc/bundle.tar.zst".to_string(), b"archive bytes".to_vec()),
        ("/base/sha256/abc/bundle.sig".to_string(), b"c2ln".to_vec()),
        ("/base/sha256/big/bundle.tar.zst".to_string(), vec![1u8; 16 * 1024]),
    ]));
    let app = axum::Router::new().fallback(move |uri: http::Uri| {
        let files = files.clone();
        async move {
            use axum::response::IntoResponse as _;
            let path = uri.path();
            if path.starts_with("/base/broken/") {
                return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
            }
            match files.get(path) {
                Some(bytes) => bytes.clone().into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let settings = StorageSettings::load(&format!("http://{addr}/base/"), &HashMap::new()).unwrap();
    let objects = BundleObjects::open(&settings).unwrap();
    assert!(objects.is_read_only());
    let mut out = Vec::new();
    let (digest, size) = objects
        .download("sha256/abc/bundle.tar.zst", &mut out, 1024)
        .await
        .unwrap();
    assert_eq!(
        (digest, size, out.as_slice()),
        (Digest::of(b"archive bytes"), 13, &b"archive bytes"[..])
    );
    assert_eq!(
        objects.get_small("sha256/abc/bundle.sig", 64).await.unwrap().as_deref(),
        Some(&b"c2ln"[..])
    );
    assert_eq!(objects.get_small("sha256/abc/bundle.pem", 64).await.unwrap(), None);
    let err = objects
        .download("broken/bundle.tar.zst", &mut Vec::new(), 64)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");
    let err = objects
        .download("sha256/big/bundle.tar.zst", &mut Vec::new(), 4096)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::TooLarge { .. }), "{err}");

    let err = objects
        .put_if_absent("sha256/new/bundle.tar.zst", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::ReadOnly { .. }), "{err}");
}
