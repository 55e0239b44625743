//! Where bundles come from and how they are trusted: the bundle store URL
//! grammar (`BUNDLE_STORAGE_URL`), its S3 connection settings, the key
//! layout, and the signing and cache settings.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::layout::KeyLayout;
use crate::config::source::{ConfigError, Source};
use crate::limits;

/// A bundle store location (`BUNDLE_STORAGE_URL`, `--store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///absolute/path` (or a plain path): a local directory.
    File(PathBuf),
    /// `s3://bucket/prefix`: an S3-compatible bucket; keys live under
    /// `prefix` (may be empty). Reached with [`S3Settings`].
    S3 { bucket: String, prefix: String },
    /// `http(s)://host/prefix`: read-only, plain GETs below this base URL.
    Http { url: String },
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(path) => write!(f, "file://{}", path.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::Http { url } => f.write_str(url),
        }
    }
}

impl StoreUrl {
    /// Parse `file:///abs/path`, a plain path, `s3://bucket[/prefix]` or
    /// `http(s)://host[:port][/prefix]`.
    ///
    /// # Errors
    /// A message naming what is wrong, for the caller to attach to its key.
    pub fn parse(value: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = value.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(format!("`{value}`: file URLs need an absolute path (file:///path)"));
            }
            return Ok(StoreUrl::File(PathBuf::from(rest)));
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_end_matches('/');
            if !is_bucket_name(bucket) {
                return Err(format!(
                    "`{value}`: `{bucket}` is not a bucket name (3-63 lowercase letters, digits, `.` and `-`)"
                ));
            }
            if !prefix.is_empty() {
                check_key_prefix(prefix).map_err(|why| format!("`{value}`: {why}"))?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            let (_, rest) = value.split_once("://").expect("checked the scheme");
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err(format!("`{value}`: the URL has no host"));
            }
            if rest.contains(['?', '#']) {
                return Err(format!("`{value}`: a store URL takes no query or fragment"));
            }
            return Ok(StoreUrl::Http {
                url: value.trim_end_matches('/').to_string(),
            });
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!(
                "`{value}`: scheme `{scheme}` is not supported (supported: file://, s3://, http://, https://)"
            ));
        }
        if value.is_empty() {
            return Err("must not be empty".to_string());
        }
        Ok(StoreUrl::File(PathBuf::from(value)))
    }
}

/// S3 bucket naming rules (the subset every S3-compatible server accepts).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The `prefix` of `s3://bucket/prefix`: segments of letters, digits, `.`,
/// `_` and `-`, none empty, `.` or `..`.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    for segment in prefix.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("the key prefix `{prefix}` has an empty, `.` or `..` segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "the key prefix `{prefix}` has the character {c:?} (letters, digits, `.`, `_`, `-` and `/` only)"
            ));
        }
    }
    Ok(())
}

/// Everything about the bundle store: `BUNDLE_STORAGE_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    /// `BUNDLE_STORAGE_URL` / `--store`.
    pub url: StoreUrl,
    /// How to reach an `s3://` store; ignored by the other schemes.
    pub s3: S3Settings,
    /// `BUNDLE_STORAGE_KEY_LAYOUT`: where a bundle sits in the store.
    pub layout: KeyLayout,
}

/// Connection settings of an `s3://` store.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `BUNDLE_STORAGE_ENDPOINT`: e.g. `https://minio.internal:9000`; unset
    /// means AWS S3 for the region. `http://` is accepted (local servers):
    /// bundles are verified by hash and signature, and SigV4 never sends the
    /// secret.
    pub endpoint: Option<String>,
    /// `BUNDLE_STORAGE_REGION` (default `us-east-1`).
    pub region: Option<String>,
    /// `BUNDLE_STORAGE_ACCESS_KEY_ID`; with the secret, static credentials.
    /// Without both, the standard AWS credential chain applies.
    pub access_key_id: Option<String>,
    /// `BUNDLE_STORAGE_SECRET_ACCESS_KEY` (redacted in `Debug`).
    pub secret_access_key: Option<String>,
    /// `BUNDLE_STORAGE_FORCE_PATH_STYLE`: `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key` (MinIO, SeaweedFS and most self-hosted servers
    /// need `true`).
    pub force_path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

impl StorageSettings {
    /// A local directory store with the default layout.
    pub fn file(root: PathBuf) -> StorageSettings {
        StorageSettings {
            url: StoreUrl::File(root),
            s3: S3Settings::default(),
            layout: KeyLayout::default(),
        }
    }

    /// The store at `url` (`--store`) with every other `BUNDLE_STORAGE_*`
    /// setting read from `env` (for commands such as `publish`).
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad setting.
    pub fn load(url: &str, env: &HashMap<String, String>) -> Result<StorageSettings, ConfigError> {
        let source = Source::new(env.clone());
        let url = StoreUrl::parse(url).unwrap_or_else(|why| {
            source.problem(format!("--store: {why}"));
            StoreUrl::File(PathBuf::from("/"))
        });
        let settings = StorageSettings::with_url(url, &source);
        source.finish_partial().map(|()| settings)
    }

    /// `BUNDLE_STORAGE_*`; the store is `default_root` unless a URL is set.
    pub fn from_source(source: &Source, default_root: PathBuf) -> StorageSettings {
        let url = match source.text("BUNDLE_STORAGE_URL") {
            None => StoreUrl::File(default_root),
            Some(text) => StoreUrl::parse(text).unwrap_or_else(|why| {
                source.problem(format!("BUNDLE_STORAGE_URL: {why}"));
                StoreUrl::File(default_root)
            }),
        };
        StorageSettings::with_url(url, source)
    }

    /// The settings besides the URL.
    fn with_url(url: StoreUrl, source: &Source) -> StorageSettings {
        let endpoint = source.text("BUNDLE_STORAGE_ENDPOINT").map(|text| {
            let valid = ["http://", "https://"].iter().any(|scheme| {
                text.strip_prefix(scheme)
                    .is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#']))
            });
            if !valid {
                source.problem(format!(
                    "BUNDLE_STORAGE_ENDPOINT: `{text}` must be a base URL like https://s3.example.com or http://127.0.0.1:8333"
                ));
            }
            text.to_string()
        });
        let region = source.text("BUNDLE_STORAGE_REGION").map(|text| {
            if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                source.problem(format!(
                    "BUNDLE_STORAGE_REGION: `{text}` is not a region name like eu-west-1"
                ));
            }
            text.to_string()
        });
        let access_key_id = source.text("BUNDLE_STORAGE_ACCESS_KEY_ID").map(String::from);
        let secret_access_key = source.text("BUNDLE_STORAGE_SECRET_ACCESS_KEY").map(String::from);
        match (&access_key_id, &secret_access_key) {
            (Some(_), None) => {
                source.problem("BUNDLE_STORAGE_SECRET_ACCESS_KEY: required when BUNDLE_STORAGE_ACCESS_KEY_ID is set")
            }
            (None, Some(_)) => {
                source.problem("BUNDLE_STORAGE_ACCESS_KEY_ID: required when BUNDLE_STORAGE_SECRET_ACCESS_KEY is set")
            }
            _ => {}
        }
        let force_path_style = source.flag("BUNDLE_STORAGE_FORCE_PATH_STYLE", false);
        let layout = source.parsed("BUNDLE_STORAGE_KEY_LAYOUT", "", parse_layout, KeyLayout::default());
        StorageSettings {
            url,
            s3: S3Settings {
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                force_path_style,
            },
            layout,
        }
    }
}

/// `BUNDLE_STORAGE_KEY_LAYOUT`; empty is the default layout.
fn parse_layout(text: &str) -> Result<KeyLayout, String> {
    match text {
        "" => Ok(KeyLayout::default()),
        text => KeyLayout::parse(text),
    }
}

/// How bundles are verified and kept.
#[derive(Clone)]
pub struct BundleSettings {
    /// `SIGNING_REQUIRED` (default true): refuse bundles whose signature
    /// does not verify against the trust bundle.
    pub signing_required: bool,
    /// `SIGNING_TRUST_BUNDLE`: trusted signer keys and root certificates.
    pub trust: Option<TrustSettings>,
    /// `RUNNER_CACHE_MAX_BYTES`: budget of the bundle disk cache.
    pub cache_max_bytes: u64,
    /// `RUNNER_REQUIRE_EXTENSION_MATCH` (default false): refuse a bundle
    /// whose manifest `name` is not the envelope's `extension_id` (B-02),
    /// for gateways that use manifest names as extension ids.
    pub require_extension_match: bool,
    /// `RUNNER_TRUST_PRECOMPILED` (default false): use a signed bundle's
    /// own `precompiled/<triple>.cwasm` when it matches this engine.
    pub trust_precompiled: bool,
}

impl BundleSettings {
    pub fn from_source(source: &Source) -> BundleSettings {
        BundleSettings {
            signing_required: source.flag("SIGNING_REQUIRED", true),
            trust: source.text("SIGNING_TRUST_BUNDLE").and_then(|value| {
                TrustSettings::load(value)
                    .map_err(|why| source.problem(format!("SIGNING_TRUST_BUNDLE: {why}")))
                    .ok()
            }),
            cache_max_bytes: source.bytes("RUNNER_CACHE_MAX_BYTES", limits::DEFAULT_CACHE_MAX_BYTES, 0),
            require_extension_match: source.flag("RUNNER_REQUIRE_EXTENSION_MATCH", false),
            trust_precompiled: source.flag("RUNNER_TRUST_PRECOMPILED", false),
        }
    }

    /// What `Bundles` checks a bundle against.
    pub fn verification(&self) -> super::Verification {
        super::Verification {
            required: self.signing_required,
            trust: self.trust.as_ref().map(|t| t.bundle.clone()),
            trust_id: self.trust.as_ref().map_or_else(|| "none".to_string(), |t| t.id.clone()),
        }
    }
}

impl fmt::Debug for BundleSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleSettings")
            .field("signing_required", &self.signing_required)
            .field("trust", &self.trust.as_ref().map(|t| &t.id))
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("require_extension_match", &self.require_extension_match)
            .field("trust_precompiled", &self.trust_precompiled)
            .finish()
    }
}

/// A parsed trust bundle and the identity of its text.
#[derive(Clone)]
pub struct TrustSettings {
    pub bundle: std::sync::Arc<ext_bundle::signature::TrustBundle>,
    /// SHA-256 of the PEM text: cached verdicts name the trust they used.
    pub id: String,
    /// The PEM text itself (public keys and certificates only).
    pub text: String,
}

impl TrustSettings {
    /// Parse PEM text (a trust bundle), naming `source` in errors.
    ///
    /// # Errors
    /// The parse problem, prefixed with `source`.
    pub fn parse(text: &str, source: &str) -> Result<TrustSettings, String> {
        let bundle = ext_bundle::signature::TrustBundle::parse(text).map_err(|e| {
            let message = e.to_string();
            // The parser names inline text itself; add the file it came from.
            if source.starts_with('`') {
                format!("{source}: {message}")
            } else {
                message
            }
        })?;
        Ok(TrustSettings {
            bundle: std::sync::Arc::new(bundle),
            id: ext_bundle::Digest::of(text.as_bytes()).to_string(),
            text: text.to_string(),
        })
    }

    /// `SIGNING_TRUST_BUNDLE`'s value: inline PEM text, or a file path.
    ///
    /// # Errors
    /// Unreadable file or invalid PEM, named.
    pub fn load(value: &str) -> Result<TrustSettings, String> {
        if value.trim_start().starts_with("-----BEGIN") {
            return TrustSettings::parse(value, "inline PEM");
        }
        let text = std::fs::read_to_string(value).map_err(|e| format!("`{value}`: {e}"))?;
        TrustSettings::parse(&text, &format!("`{value}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        let ok: &[(&str, StoreUrl)] = &[
            ("file:///srv/b", StoreUrl::File(PathBuf::from("/srv/b"))),
            ("relative/dir", StoreUrl::File(PathBuf::from("relative/dir"))),
            (
                "s3://bundles",
                StoreUrl::S3 {
                    bucket: "bundles".into(),
                    prefix: String::new(),
                },
            ),
            (
                "s3://my.bundles-1/prod/ext/",
                StoreUrl::S3 {
                    bucket: "my.bundles-1".into(),
                    prefix: "prod/ext".into(),
                },
            ),
            (
                "https://cdn.example.com/bundles/",
                StoreUrl::Http {
                    url: "https://cdn.example.com/bundles".into(),
                },
            ),
            (
                "http://127.0.0.1:8080",
                StoreUrl::Http {
                    url: "http://127.0.0.1:8080".into(),
                },
            ),
        ];
        for (text, expected) in ok {
            assert_eq!(&StoreUrl::parse(text).unwrap(), expected, "{text}");
        }
        assert_eq!(StoreUrl::parse("s3://b-1/p/q").unwrap().to_string(), "s3://b-1/p/q");
        let bad = [
            ("file://relative", "absolute path"),
            ("s3://", "not a bucket name"),
            ("s3://Upper", "not a bucket name"),
            ("s3://bucket/a//b", "empty, `.` or `..` segment"),
            ("s3://bucket/a/../b", "empty, `.` or `..` segment"),
            ("s3://bucket/a b", "the character ' '"),
            ("https:///x", "no host"),
            ("https://h/x?y=1", "no query"),
            ("ftp://h/x", "scheme `ftp` is not supported"),
            ("", "must not be empty"),
        ];
        for (text, needle) in bad {
            let err = StoreUrl::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
