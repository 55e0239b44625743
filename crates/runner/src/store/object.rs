//! The object-store seam: where bundles, their detached signatures and
//! manifests live, reached through [`object_store`].
//!
//! [`BundleObjects`] wraps one store (`file:///…`, `s3://bucket/prefix`, or a
//! read-only `http(s)://…` base URL) plus the [`KeyLayout`] that names a
//! bundle's key, by default `sha256/{hex}/bundle.tar.zst`. The signature
//! (`bundle.sig`), certificate chain (`bundle.pem`) and `manifest.json` sit
//! beside the bundle, in the same directory.
//!
//! Failures are typed so callers can answer correctly: a missing object
//! ([`ObjectError::NotFound`]) is not an unreachable store
//! ([`ObjectError::Unavailable`]). Client timeouts and retries are bounded so a
//! dead store fails in seconds, not minutes. Writes never overwrite: an
//! object that exists with other bytes is an [`ObjectError::Conflict`].

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ext_bundle::Digest;
use ext_bundle::digest::Hasher;
use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};

pub use super::layout::{
    BundleKeys, CERTIFICATES_FILE_NAME, DEFAULT_KEY_LAYOUT, KeyLayout, MANIFEST_FILE_NAME, SIGNATURE_FILE_NAME,
    escape_segment,
};
use super::settings::{S3Settings, StorageSettings, StoreUrl};

/// Time to establish a TCP (and TLS) connection to the store. A store in the
/// same region answers in milliseconds; two seconds tolerates a slow
/// handshake while a blackholed address fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time for one whole request, body included. Bounds a store that accepts a
/// connection and then stalls; generous enough for a 256 MiB bundle at
/// ~2 MiB/s, and multipart uploads send at most [`UPLOAD_PART_BYTES`] per request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Retries after a failed request (connection refused, timeout, 5xx). Two
/// retries ride out a store restart or a dropped connection; more would only
/// delay the 503 a caller should see when the store is down.
pub const MAX_RETRIES: usize = 2;

/// No retry starts later than this after the first attempt.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause between retries (doubling, capped at [`MAX_BACKOFF`]).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Uploads of at least this many bytes go up in parts (multipart upload), so a
/// progress bar can advance and a failed part does not resend everything.
pub const MULTIPART_THRESHOLD_BYTES: usize = 16 * 1024 * 1024;

/// Size of one part of a multipart upload (S3 needs at least 5 MiB per part
/// except the last).
pub const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store answered: there is no object at this key.
    #[error("`{key}` not found in the bundle store")]
    NotFound { key: String },
    /// The store could not be reached or failed (connection refused,
    /// timeout, 5xx, missing bucket). Retrying later may succeed.
    #[error("bundle store unavailable while accessing `{key}`: {reason}")]
    Unavailable { key: String, reason: String },
    /// The store refused the credentials or the request's signature.
    #[error("bundle store refused access to `{key}` (check the storage credentials): {reason}")]
    Denied { key: String, reason: String },
    /// The object is larger than the caller allows.
    #[error("`{key}` is larger than {max_bytes} bytes")]
    TooLarge { key: String, max_bytes: u64 },
    /// An object exists at this key with different content. Objects are
    /// immutable: they are never overwritten.
    #[error("`{key}` already exists in the bundle store with different content; objects are never overwritten")]
    Conflict { key: String },
    /// The store cannot be written (`http(s)://` stores are read-only).
    #[error("the bundle store {store} is read-only")]
    ReadOnly { store: String },
    /// Writing the downloaded bytes locally failed.
    #[error("writing `{key}` to local disk: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// What [`BundleObjects::put_if_absent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// The same bytes were already there; nothing was written.
    AlreadyPresent,
}

/// One bundle store: an `object_store` client, a key prefix and the layout.
///
/// Cheap to clone; clones share the client and its connection pool.
#[derive(Clone)]
pub struct BundleObjects {
    /// The store client (shared connection pool).
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key (`s3://bucket/<prefix>`); empty for the other
    /// schemes, whose base URL or directory already includes it.
    prefix: String,
    layout: KeyLayout,
    /// `http(s)://` stores: reads only.
    read_only: bool,
    /// The configured URL, for messages.
    url: StoreUrl,
}

impl fmt::Debug for BundleObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleObjects")
            .field("url", &self.url.to_string())
            .field("layout", &self.layout.template())
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BundleObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.url, f)
    }
}

impl BundleObjects {
    /// Build the client for `settings`. Does no I/O against the store
    /// (except creating a `file://` root directory).
    ///
    /// # Errors
    /// A message naming the setting the client could not be built from.
    pub fn open(settings: &StorageSettings) -> Result<BundleObjects, String> {
        let (store, prefix, read_only): (Arc<dyn ObjectStore>, String, bool) = match &settings.url {
            StoreUrl::File(root) => {
                std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
                let store = LocalFileSystem::new_with_prefix(root).map_err(|e| format!("{}: {e}", root.display()))?;
                (Arc::new(store), String::new(), false)
            }
            StoreUrl::S3 { bucket, prefix } => (Arc::new(s3_store(bucket, &settings.s3)?), prefix.clone(), false),
            StoreUrl::Http { url } => {
                let store = HttpBuilder::new()
                    .with_url(url.as_str())
                    .with_client_options(client_options(url.starts_with("http://")))
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| format!("{url}: {e}"))?;
                (Arc::new(store), String::new(), true)
            }
        };
        Ok(BundleObjects {
            store,
            prefix,
            layout: settings.layout.clone(),
            read_only,
            url: settings.url.clone(),
        })
    }

    /// The key layout in use.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// Whether writes are refused (`http(s)://` stores).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Keys of a bundle and the files beside it under this store's layout.
    pub fn keys(&self, digest: &Digest, tenant: &str, extension: &str) -> BundleKeys {
        self.layout.keys(digest, tenant, extension)
    }

    fn location(&self, key: &str) -> Result<ObjectPath, ObjectError> {
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(&full).map_err(|e| ObjectError::Unavailable {
            key: key.to_string(),
            reason: format!("invalid object key: {e}"),
        })
    }

    /// Stream the object at `key` into `dest` while hashing it.
    ///
    /// Stops with [`ObjectError::TooLarge`] as soon as more than `max_bytes`
    /// arrive (or the store announces a larger object); `dest` then holds a
    /// partial copy the caller must discard. Returns the SHA-256 and size of
    /// everything written.
    ///
    /// # Errors
    /// `NotFound`, `Unavailable`, `Denied`, `TooLarge`, or `Io` when `dest`
    /// cannot be written.
    pub async fn download<W>(&self, key: &str, dest: &mut W, max_bytes: u64) -> Result<(Digest, u64), ObjectError>
    where
        W: Write + Send + ?Sized,
    {
        let location = self.location(key)?;
        let result = self.store.get(&location).await.map_err(|e| map_error(key, e))?;
        let too_large = || ObjectError::TooLarge {
            key: key.to_string(),
            max_bytes,
        };
        if result.meta.size > max_bytes {
            return Err(too_large());
        }
        let mut stream = result.into_stream();
        let mut hasher = Hasher::new();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_error(key, e))?;
            total += chunk.len() as u64;
            if total > max_bytes {
                return Err(too_large());
            }
            hasher.update(&chunk);
            dest.write_all(&chunk).map_err(|source| ObjectError::Io {
                key: key.to_string(),
                source,
            })?;
        }
        dest.flush().map_err(|source| ObjectError::Io {
            key: key.to_string(),
            source,
        })?;
        Ok((hasher.finish(), total))
    }

    /// Whether an object exists at `key` (a `HEAD`, nothing downloaded).
    ///
    /// # Errors
    /// `Unavailable` or `Denied`.
    pub async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        let location = self.location(key)?;
        match self.store.head(&location).await.map_err(|e| map_error(key, e)) {
            Ok(_) => Ok(true),
            Err(ObjectError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A small object (signature, certificate chain) read into memory;
    /// `None` when there is none.
    ///
    /// # Errors
    /// `Unavailable`, `Denied`, or `TooLarge` beyond `max_bytes`.
    pub async fn get_small(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ObjectError> {
        let mut bytes = Vec::new();
        match self.download(key, &mut bytes, max_bytes).await {
            Ok(_) => Ok(Some(bytes)),
            Err(ObjectError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write `bytes` at `key` unless an object is already there: the same
    /// bytes mean [`PutOutcome::AlreadyPresent`], other bytes
    /// [`ObjectError::Conflict`]. Never overwrites.
    ///
    /// # Errors
    /// `ReadOnly` for `http(s)://` stores, `Conflict`, `Unavailable`, `Denied`.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<PutOutcome, ObjectError> {
        self.put_if_absent_with_progress(key, bytes, &|_| {}).await
    }

    /// [`Self::put_if_absent`], calling `progress` with the bytes sent so far
    /// after each part of a large upload (and once at the end).
    ///
    /// Objects under [`MULTIPART_THRESHOLD_BYTES`] are written in one
    /// conditional request (`If-None-Match: *` on S3, an exclusive create on
    /// disk), so two writers racing for one key cannot both win. Larger ones
    /// go up in parts after the existence check; the race window that leaves
    /// is harmless for bundles, whose key contains their own hash.
    ///
    /// # Errors
    /// As [`Self::put_if_absent`].
    pub async fn put_if_absent_with_progress(
        &self,
        key: &str,
        bytes: Bytes,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<PutOutcome, ObjectError> {
        if self.read_only {
            return Err(ObjectError::ReadOnly {
                store: self.url.to_string(),
            });
        }
        let location = self.location(key)?;
        // Checked first even though the conditional put below would catch it:
        // not every S3-compatible server honours `If-None-Match`.
        if let Some(outcome) = self.compare_existing(key, &bytes).await? {
            progress(bytes.len() as u64);
            return Ok(outcome);
        }
        let total = bytes.len();
        if total < MULTIPART_THRESHOLD_BYTES {
            let options = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&location, PutPayload::from(bytes.clone()), options)
                .await
            {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    // Another writer won the race: same bytes are fine.
                    return match self.compare_existing(key, &bytes).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(ObjectError::Conflict { key: key.to_string() }),
                    };
                }
                Err(e) => return Err(map_error(key, e)),
            }
            progress(total as u64);
            return Ok(PutOutcome::Created);
        }
        let mut upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| map_error(key, e))?;
        let mut sent = 0;
        while sent < total {
            let end = (sent + UPLOAD_PART_BYTES).min(total);
            if let Err(e) = upload.put_part(PutPayload::from(bytes.slice(sent..end))).await {
                let _ = upload.abort().await;
                return Err(map_error(key, e));
            }
            sent = end;
            progress(sent as u64);
        }
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(map_error(key, e));
        }
        Ok(PutOutcome::Created)
    }

    /// Remove the object at `key` (nothing there is fine): a publish that
    /// could not be recorded takes back what it wrote, so a later publish
    /// does not trip over it.
    ///
    /// # Errors
    /// `ReadOnly`, `Unavailable`, `Denied`.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        if self.read_only {
            return Err(ObjectError::ReadOnly {
                store: self.url.to_string(),
            });
        }
        match self.store.delete(&self.location(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(key, e)),
        }
    }

    /// `None` when nothing is at `key`; otherwise whether it holds `bytes`.
    async fn compare_existing(&self, key: &str, bytes: &Bytes) -> Result<Option<PutOutcome>, ObjectError> {
        match self.download(key, &mut std::io::sink(), bytes.len() as u64).await {
            Ok((digest, size)) if size == bytes.len() as u64 && digest == Digest::of(bytes) => {
                Ok(Some(PutOutcome::AlreadyPresent))
            }
            Ok(_) | Err(ObjectError::TooLarge { .. }) => Err(ObjectError::Conflict { key: key.to_string() }),
            Err(ObjectError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn s3_store(bucket: &str, s3: &S3Settings) -> Result<object_store::aws::AmazonS3, String> {
    // Without explicit keys, use the standard AWS credential chain (web
    // identity, container and instance credentials) that `from_env` sets up.
    let explicit_keys = s3.access_key_id.is_some() && s3.secret_access_key.is_some();
    let mut builder = if explicit_keys {
        AmazonS3Builder::new()
    } else {
        AmazonS3Builder::from_env()
    };
    builder = builder
        .with_bucket_name(bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_retry(retry_config());
    if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
    }
    let plain_http = s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    builder = builder
        .with_allow_http(plain_http)
        .with_client_options(client_options(plain_http));
    match (&s3.endpoint, s3.force_path_style) {
        (Some(endpoint), true) => {
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        (Some(endpoint), false) => {
            // Virtual-hosted style against a custom endpoint: the bucket
            // becomes part of the host name.
            let (scheme, host) = endpoint
                .split_once("://")
                .ok_or_else(|| format!("BUNDLE_STORAGE_ENDPOINT `{endpoint}` needs a scheme"))?;
            builder = builder
                .with_endpoint(format!("{scheme}://{bucket}.{host}"))
                .with_virtual_hosted_style_request(true);
        }
        (None, path_style) => builder = builder.with_virtual_hosted_style_request(!path_style),
    }
    builder.build().map_err(|e| format!("s3://{bucket}: {e}"))
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_allow_http(allow_http)
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

/// Sort an `object_store` error into what a caller must do differently.
fn map_error(key: &str, error: object_store::Error) -> ObjectError {
    let key = key.to_string();
    match error {
        // A missing bucket also answers 404; that is a broken configuration,
        // not a missing bundle.
        object_store::Error::NotFound { ref source, .. } if source.to_string().contains("NoSuchBucket") => {
            ObjectError::Unavailable {
                key,
                reason: format!("the bucket does not exist: {}", error_chain(&error)),
            }
        }
        object_store::Error::NotFound { .. } => ObjectError::NotFound { key },
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            ObjectError::Denied {
                key,
                reason: error_chain(&error),
            }
        }
        other => ObjectError::Unavailable {
            key,
            reason: error_chain(&other),
        },
    }
}

/// An error and its sources on one line (`object_store` wraps the useful
/// part, such as "connection refused", a few levels down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"bundle")
    }

    #[test]
    fn default_layout_and_siblings() {
        let hex = digest().hex();
        let keys = KeyLayout::default().keys(&digest(), "tenant-a", "com.example.hello");
        assert_eq!(keys.bundle, format!("sha256/{hex}/bundle.tar.zst"));
        assert_eq!(keys.signature, format!("sha256/{hex}/bundle.sig"));
        assert_eq!(keys.certificates, format!("sha256/{hex}/bundle.pem"));
        assert_eq!(keys.manifest, format!("sha256/{hex}/manifest.json"));
    }

    /// The upstream layout of alga-compat §3, as the README shows it.
    #[test]
    fn layout_with_tenant_and_extension() {
        let layout = KeyLayout::parse("tenants/{tenant}/extensions/{extension}/sha256/{hex}/bundle.tar.zst").unwrap();
        let hex = digest().hex();
        let keys = layout.keys(&digest(), "t-1", "com.acme.sales");
        let dir = format!("tenants/t-1/extensions/com.acme.sales/sha256/{hex}");
        assert_eq!(keys.bundle, format!("{dir}/bundle.tar.zst"));
        assert_eq!(keys.signature, format!("{dir}/bundle.sig"));
        assert_eq!(keys.manifest, format!("{dir}/manifest.json"));
        let other = KeyLayout::parse("tenants/{tenant}/ext/{extension}/{hex}/b.tar.zst").unwrap();
        assert_eq!(
            other.render(&digest(), "t-1", "com.acme.sales"),
            format!("tenants/t-1/ext/com.acme.sales/{hex}/b.tar.zst")
        );
        let mixed = KeyLayout::parse("x/{tenant}-{hex}/bundle.tar.zst").unwrap();
        assert_eq!(mixed.render(&digest(), "t", "e"), format!("x/t-{hex}/bundle.tar.zst"));
    }

    #[test]
    fn ids_cannot_escape_their_segment() {
        let layout = KeyLayout::parse("{tenant}/{extension}/{hex}/bundle.tar.zst").unwrap();
        let hex = digest().hex();
        let cases = [
            ("..", "e", format!("%2E./e/{hex}/bundle.tar.zst")),
            (".", "e", format!("%2E/e/{hex}/bundle.tar.zst")),
            ("a/../b", "e", format!("a%2F..%2Fb/e/{hex}/bundle.tar.zst")),
            ("", "e", format!("_/e/{hex}/bundle.tar.zst")),
            ("t", "a b%", format!("t/a%20b%25/{hex}/bundle.tar.zst")),
            ("t", "é", format!("t/%C3%A9/{hex}/bundle.tar.zst")),
            ("t", ".hidden", format!("t/%2Ehidden/{hex}/bundle.tar.zst")),
        ];
        for (tenant, extension, expected) in cases {
            let key = layout.render(&digest(), tenant, extension);
            assert_eq!(key, expected, "tenant {tenant:?} extension {extension:?}");
            ObjectPath::parse(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn invalid_layouts_are_refused_with_the_reason() {
        let cases = [
            ("", "must not be empty"),
            ("/sha256/{hex}/bundle.tar.zst", "must be relative"),
            ("sha256/bundle.tar.zst", "must contain `{hex}`"),
            ("sha256/{hex}", "last segment must be a literal file name"),
            ("sha256/{hex}/", "empty path segment"),
            ("sha256//{hex}/bundle.tar.zst", "empty path segment"),
            ("../{hex}/bundle.tar.zst", "`..` segments are not allowed"),
            ("./{hex}/bundle.tar.zst", "`.` segments are not allowed"),
            (
                "sha256/{hex}/{tenant}.tar.zst",
                "last segment must be a literal file name",
            ),
            ("sha256/{hash}/bundle.tar.zst", "unknown placeholder `{hash}`"),
            ("sha256/{hex/bundle.tar.zst", "unclosed `{`"),
            ("sha256/{hex}/bundle.sig", "reserved"),
            ("sha 256/{hex}/bundle.tar.zst", "character ' ' is not allowed"),
            ("sha256/{hex}}/bundle.tar.zst", "character '}' is not allowed"),
        ];
        for (template, needle) in cases {
            let err = KeyLayout::parse(template).expect_err(template);
            assert!(err.contains(needle), "{template:?}: {err}");
        }
        KeyLayout::parse(DEFAULT_KEY_LAYOUT).unwrap();
    }

    #[tokio::test]
    async fn file_store_round_trip_conflict_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StorageSettings::file(dir.path().join("store"));
        let objects = BundleObjects::open(&settings).unwrap();
        let keys = objects.keys(&digest(), "t", "e");
        let bytes = Bytes::from_static(b"bundle");

        assert_eq!(
            objects.put_if_absent(&keys.bundle, bytes.clone()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            objects.put_if_absent(&keys.bundle, bytes.clone()).await.unwrap(),
            PutOutcome::AlreadyPresent
        );
        let err = objects
            .put_if_absent(&keys.bundle, Bytes::from_static(b"other"))
            .await
            .unwrap_err();
        assert!(matches!(err, ObjectError::Conflict { .. }), "{err}");
        assert!(dir.path().join("store").join(&keys.bundle).is_file());

        let mut out = Vec::new();
        let (got, size) = objects.download(&keys.bundle, &mut out, 6).await.unwrap();
        assert_eq!((got, size, out.as_slice()), (digest(), 6, b"bundle".as_slice()));
        let err = objects.download(&keys.bundle, &mut Vec::new(), 5).await.unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { max_bytes: 5, .. }), "{err}");
        let err = objects.download(&keys.signature, &mut Vec::new(), 5).await.unwrap_err();
        assert!(matches!(err, ObjectError::NotFound { .. }), "{err}");
        assert_eq!(objects.get_small(&keys.signature, 100).await.unwrap(), None);
        assert_eq!(
            objects.get_small(&keys.bundle, 100).await.unwrap().as_deref(),
            Some(b"bundle".as_slice())
        );
    }
}
