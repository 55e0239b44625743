//! Idempotency keys (`x-idempotency-key`): a repeated call answers what the
//! first one answered, and one key never runs the guest twice at the same
//! time.
//!
//! A key is scoped to (tenant, extension, install, user, key): a key of one
//! tenant, or of one user, never answers another's call. Each key remembers
//! the request it came with (method, endpoint, path and query, a SHA-256 of
//! the body); the same key with another request is refused
//! (`idempotency_key_reused`), never answered with the other's answer.
//!
//! The lifecycle of one keyed call ([`Idempotency::claim`]):
//! - nothing stored: the call leads ([`Lead`]) and runs; once its guest has
//!   started ([`Lead::mark_started`]) whatever it ends with is stored
//!   ([`Lead::finish`]), a failure included, so a retry never repeats side
//!   effects; a call that ends before the guest starts (quota, overload,
//!   bundle not found) stores nothing and a retry runs;
//! - the first call still running: the second waits for it, up to its own
//!   deadline (`idempotency_key_in_progress` after it), and answers the
//!   same; it never starts the guest;
//! - stored: the stored answer is replayed ([`Claim::Replay`]).
//!
//! The store is this process's memory ([`memory`]), bounded by a TTL, an
//! entry count and a byte total (oldest evicted first); answers over
//! [`IdempotencySettings::max_response_bytes`] reach the callers waiting at
//! the time but are not kept. A fleet-wide store (Redis, PostgreSQL) would
//! be another variant of `Backend`; it is not built yet.

mod memory;
pub(crate) mod metrics;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::config::source::Source;
use crate::envelope::Envelope;
use crate::error::{ErrorCode, Failure};

pub use memory::Lead;

/// The header a caller names its key in (upstream gateways send it for
/// non-GET calls; compat §2).
pub const KEY_HEADER: &str = "x-idempotency-key";

/// The IETF draft's spelling, accepted from users by the gateway.
pub const KEY_HEADER_STANDARD: &str = "idempotency-key";

/// The header a replayed answer carries (`true`).
pub const REPLAY_HEADER: &str = "x-idempotent-replay";

/// Longest key accepted: the longest request id (`MAX_ID_BYTES`), since
/// scheduled invocations use the request id as their key; a UUID is 36.
pub const MAX_KEY_BYTES: usize = crate::limits::MAX_ID_BYTES;

/// How long an answer is kept unless told: a day, the convention of public
/// APIs with idempotency keys (a client retrying after an outage or the
/// next morning's job still gets its answer); the caps below bound memory.
pub const DEFAULT_TTL_SECS: u64 = 24 * 3600;

/// Longest TTL accepted: a week. Beyond it a "retry" is a new request.
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// Bytes kept in all, unless told: 64 MiB, a small share of a runner's
/// memory (guests get 128 MiB each) for thousands of typical JSON answers.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Answers kept in all, unless told: bounds the map's bookkeeping when
/// answers are tiny.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

/// Most entries accepted for `RUNNER_IDEMPOTENCY_MAX_ENTRIES`.
pub const MAX_MAX_ENTRIES: u64 = 10_000_000;

/// Largest answer kept, unless told: 1 MiB. A bigger answer (up to
/// `RUNNER_MAX_RESPONSE_BYTES`, 10 MiB) would take a sixth of the store
/// alone; it reaches the calls waiting for it, but a later retry runs again.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// What one entry costs beyond its answer and key (map slot, order index,
/// scope strings' allocations), counted against the byte total.
pub const ENTRY_OVERHEAD_BYTES: u64 = 256;

/// The store's bounds (`RUNNER_IDEMPOTENCY_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencySettings {
    /// `RUNNER_IDEMPOTENCY_TTL_SECS`: how long an answer is replayed.
    pub ttl: Duration,
    /// `RUNNER_IDEMPOTENCY_MAX_BYTES`: bytes kept in all (oldest evicted).
    pub max_bytes: u64,
    /// `RUNNER_IDEMPOTENCY_MAX_ENTRIES`: answers kept in all (oldest evicted).
    pub max_entries: u64,
    /// `RUNNER_IDEMPOTENCY_MAX_RESPONSE_BYTES`: larger answers are not kept.
    pub max_response_bytes: u64,
}

impl IdempotencySettings {
    pub fn from_source(source: &Source) -> IdempotencySettings {
        IdempotencySettings {
            ttl: Duration::from_secs(source.number("RUNNER_IDEMPOTENCY_TTL_SECS", DEFAULT_TTL_SECS, 1..=MAX_TTL_SECS)),
            max_bytes: source.bytes("RUNNER_IDEMPOTENCY_MAX_BYTES", DEFAULT_MAX_BYTES, 0),
            max_entries: source.number(
                "RUNNER_IDEMPOTENCY_MAX_ENTRIES",
                DEFAULT_MAX_ENTRIES,
                1..=MAX_MAX_ENTRIES,
            ),
            max_response_bytes: source.bytes("RUNNER_IDEMPOTENCY_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, 0),
        }
    }
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        IdempotencySettings {
            ttl: Duration::from_secs(DEFAULT_TTL_SECS),
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A key as a caller sent it, checked: 1 to [`MAX_KEY_BYTES`] visible ASCII
/// characters (`!` to `~`).
///
/// # Errors
/// `idempotency_key_invalid` saying what is wrong.
pub fn check_key(key: &str) -> Result<(), Failure> {
    let invalid = |why: String| Failure::new(ErrorCode::IdempotencyKeyInvalid, format!("{KEY_HEADER}: {why}"));
    if key.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "{} bytes, more than the limit of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("only visible ASCII characters (`!` to `~`) are allowed".into()));
    }
    Ok(())
}

/// The key of an HTTP request's headers: `x-idempotency-key`, or (when
/// `standard` is set) `Idempotency-Key` when that is absent.
///
/// # Errors
/// `idempotency_key_invalid` for a value that is not text, a bad key, or
/// both headers given with different values.
pub fn key_of(headers: &http::HeaderMap, standard: bool) -> Result<Option<String>, Failure> {
    let read = |name: &str| -> Result<Option<String>, Failure> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Failure::new(
                ErrorCode::IdempotencyKeyInvalid,
                format!("{name}: given more than once"),
            ));
        }
        let text = value.to_str().map_err(|_| {
            Failure::new(
                ErrorCode::IdempotencyKeyInvalid,
                format!("{name}: only visible ASCII characters (`!` to `~`) are allowed"),
            )
        })?;
        check_key(text)?;
        Ok(Some(text.to_string()))
    };
    let ours = read(KEY_HEADER)?;
    if !standard {
        return Ok(ours);
    }
    match (ours, read(KEY_HEADER_STANDARD)?) {
        (Some(a), Some(b)) if a != b => Err(Failure::new(
            ErrorCode::IdempotencyKeyInvalid,
            format!("{KEY_HEADER} and {KEY_HEADER_STANDARD} name different keys"),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Whose key it is: a key answers only calls of the same tenant,
/// extension, install and user.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Scope {
    tenant: String,
    extension: String,
    install: Option<String>,
    user: Option<String>,
    key: String,
}

impl Scope {
    fn of(envelope: &Envelope, key: &str) -> Scope {
        Scope {
            tenant: envelope.tenant_id.clone(),
            extension: envelope.extension_id.clone(),
            install: envelope.install_id.clone(),
            user: envelope.user.as_ref().map(|u| u.user_id.clone()),
            key: key.to_string(),
        }
    }

    /// What the scope costs in the byte total.
    fn bytes(&self) -> u64 {
        let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        (self.tenant.len() + self.extension.len() + optional(&self.install) + optional(&self.user) + self.key.len())
            as u64
    }
}

/// What a key's request was: SHA-256 over method, endpoint, path, query
/// pairs and body, each length-prefixed (no two requests spell the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(envelope: &Envelope) -> Fingerprint {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(envelope.method.as_bytes());
        field(envelope.endpoint.as_deref().unwrap_or_default().as_bytes());
        field(envelope.path.as_bytes());
        field(&(envelope.query.len() as u64).to_be_bytes());
        for (name, value) in &envelope.query {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        match &envelope.body {
            None => field(b"none"),
            Some(body) => {
                field(b"some");
                field(body);
            }
        }
        Fingerprint(hash.finalize().into())
    }
}

/// What the store keeps of an answer.
pub trait Replayable: Clone + Send + Sync + 'static {
    /// Bytes it takes (body, headers, message), for the caps.
    fn bytes(&self) -> u64;
    /// The answer of a call whose caller went away after its guest started:
    /// its outcome is unknown, and it must not run again.
    fn abandoned() -> Self;
}

/// What a keyed call does.
pub enum Claim<V: Replayable> {
    /// Run: nothing is stored for the key, and no other call runs it.
    Lead(Lead<V>),
    /// Answer this (stored, or the answer of the call waited for).
    Replay(Arc<V>),
}

/// Where keys are kept. Today the process's memory; a fleet's store (Redis,
/// PostgreSQL) would be another variant with the same claim/finish.
enum Backend<V: Replayable> {
    Memory(Arc<memory::MemoryStore<V>>),
}

/// The replay store and its metrics; one per runner.
pub struct Idempotency<V: Replayable> {
    backend: Backend<V>,
}

impl<V: Replayable> Idempotency<V> {
    pub fn new(settings: &IdempotencySettings, metrics: &crate::metrics::Metrics) -> Idempotency<V> {
        let recorded = metrics::IdempotencyMetrics::register(metrics);
        Idempotency {
            backend: Backend::Memory(Arc::new(memory::MemoryStore::new(settings.clone(), recorded))),
        }
    }

    /// What the call with `key` does: lead, or replay; waiting for a
    /// running call with the same key at most until `deadline`.
    ///
    /// # Errors
    /// `idempotency_key_invalid` for a bad key ([`check_key`]);
    /// `idempotency_key_reused` when the key was used with another request;
    /// `idempotency_key_in_progress` when the call with it still runs at
    /// `deadline`.
    pub async fn claim(
        &self,
        envelope: &Envelope,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Claim<V>, Failure> {
        // The HTTP surfaces check it already; a library caller may not have.
        check_key(key)?;
        let scope = Scope::of(envelope, key);
        let fingerprint = Fingerprint::of(envelope);
        match &self.backend {
            Backend::Memory(store) => store.claim(scope, fingerprint, deadline).await,
        }
    }

    /// Answers kept now and their bytes (for tests and gauges).
    pub fn usage(&self) -> (usize, u64) {
        match &self.backend {
            Backend::Memory(store) => store.usage(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_within_the_cap() {
        let long = "k".repeat(MAX_KEY_BYTES);
        let too_long = "k".repeat(MAX_KEY_BYTES + 1);
        for (key, ok) in [
            ("3f2b6c1e-8d4a-4c2e-9b1a-0e5f7d9c2a11", true),
            ("a", true),
            ("!~", true),
            (long.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            ("with space", false),
            ("tab\there", false),
            ("é", false),
            ("nul\0", false),
        ] {
            assert_eq!(check_key(key).is_ok(), ok, "{key:?}");
        }
        assert_eq!(check_key("a b").unwrap_err().code, ErrorCode::IdempotencyKeyInvalid);
    }

    #[test]
    fn the_key_comes_from_either_header_but_not_two_different_ones() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, http::HeaderValue::from_static(value));
            }
            map
        };
        let key = |pairs, standard| key_of(&headers(pairs), standard).map_err(|f| f.code);
        assert_eq!(key(&[], true), Ok(None));
        assert_eq!(key(&[("x-idempotency-key", "a")], false), Ok(Some("a".into())));
        assert_eq!(key(&[("idempotency-key", "b")], true), Ok(Some("b".into())));
        assert_eq!(key(&[("idempotency-key", "b")], false), Ok(None));
        assert_eq!(
            key(&[("x-idempotency-key", "a"), ("idempotency-key", "a")], true),
            Ok(Some("a".into()))
        );
        assert_eq!(
            key(&[("x-idempotency-key", "a"), ("idempotency-key", "b")], true),
            Err(ErrorCode::IdempotencyKeyInvalid)
        );
        assert_eq!(
            key(&[("x-idempotency-key", "a"), ("x-idempotency-key", "b")], false),
            Err(ErrorCode::IdempotencyKeyInvalid)
        );
        assert_eq!(
            key(&[("x-idempotency-key", "a b")], false),
            Err(ErrorCode::IdempotencyKeyInvalid)
        );
    }

    fn envelope() -> Envelope {
        let json = format!(
            r#"{{"context":{{"tenant_id":"t","extension_id":"e","content_hash":"sha256:{}"}},"http":{{"method":"POST","path":"/a","body_b64":"eA=="}}}}"#,
            "1".repeat(64)
        );
        Envelope::parse(json.as_bytes(), 1024).unwrap()
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let base = envelope();
        assert_eq!(Fingerprint::of(&base), Fingerprint::of(&envelope()));
        let changes: [fn(&mut Envelope); 7] = [
            |e| e.method = "PUT".into(),
            |e| e.path = "/b".into(),
            |e| e.query = vec![("q".into(), "1".into())],
            |e| e.endpoint = Some("dist/handlers/other.wasm".into()),
            |e| e.body = Some(b"y".to_vec()),
            |e| e.body = Some(Vec::new()),
            |e| e.body = None,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(Fingerprint::of(&base), Fingerprint::of(&other), "change {i}");
        }
        // Only the request counts: headers (a new request id) do not.
        let mut resent = base.clone();
        resent.headers.push(("x-request-id".into(), "another".into()));
        assert_eq!(Fingerprint::of(&base), Fingerprint::of(&resent));
    }
}
