//! The secret envelope: its format, sealing, and opening it for a request.
//!
//! Backends, chosen by the envelope's `algorithm`:
//! - `aes-256-gcm` (also when `algorithm` is absent): `ciphertext_b64` is
//!   base64 of a 12-byte nonce followed by AES-256-GCM ciphertext + tag under
//!   the runner key (`RUNNER_SECRETS_KEY` / `RUNNER_SECRETS_KEY_FILE`), or
//!   under one of the earlier keys still accepted for opening
//!   (`RUNNER_SECRETS_PREVIOUS_KEYS` / `…_FILE`, tried after the current
//!   one: AES-GCM's tag says which key fits) while installs are re-sealed
//!   ([`reseal`]); sealing always uses the current key. The
//!   associated data is the envelope's [`binding`], so an envelope copied to
//!   another tenant or extension, or whose `expires_at` was removed,
//!   added or changed, does not open (K-03, K-04). The plaintext is a JSON
//!   object of secret name → value. `ext-runner secrets seal` makes them.
//! - `vault-transit*`: Vault's transit decrypt API (`VAULT_ADDR`, token from
//!   `VAULT_TOKEN_FILE`), `mount` (default `transit`) and `key_path`, each
//!   one name of `[A-Za-z0-9._-]` (no `/`, no `..`); the decrypted plaintext
//!   is the same JSON object. The decrypt call carries the [`binding`] as
//!   the key-derivation `context`, so with a transit key created with
//!   `derived=true` (which the runner expects, and whoever encrypts must use
//!   the same context) Vault opens the ciphertext only for the tenant,
//!   extension and `expires_at` it was encrypted for (K-04). With a key that
//!   is not derived, Vault ignores the context and that binding is not
//!   enforced.
//!
//! `expires_at` is checked only once the envelope has opened, so it is the
//! authenticated value that counts. An envelope that does not open for the
//! request (another tenant's or extension's, altered, or malformed) answers
//! the guest exactly like no envelope: `get` → `missing`, `list-keys` → `[]`
//! (no oracle, K-03); the log says why. An expired one is `expired`; an
//! algorithm the runner does not accept, or a secret backend that is down,
//! is `internal`.
//! - `inline/base64`: base64 of the JSON object itself, not encryption; only
//!   when the operator sets `RUNNER_ALLOW_INLINE_SECRETS=true`.
//!
//! Plaintext is minimised: an envelope is opened only when the guest first
//! calls `secrets.get`/`list-keys` with the capability granted, values live
//! in [`SecretValue`]s whose `Debug` is redacted, and errors never quote
//! ciphertext or plaintext.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// Nonce length of AES-256-GCM envelopes.
const NONCE_BYTES: usize = 12;

/// Largest `ciphertext_b64` accepted (secrets are small; this bounds the
/// work a hostile envelope can cause).
pub const MAX_SECRET_ENVELOPE_BYTES: usize = 256 * 1024;

/// Longest Vault `mount` or `key_path` name (Vault's own names are short).
pub const MAX_VAULT_NAME_BYTES: usize = 128;

/// Most earlier secrets keys accepted for opening
/// (`RUNNER_SECRETS_PREVIOUS_KEYS`). A rotation needs one (the key being
/// retired); a few more cover rotations that overlap. Each one is another
/// AES-GCM attempt on every envelope the current key does not open, so the
/// work an envelope that opens under no key costs stays bounded.
pub const MAX_PREVIOUS_SECRETS_KEYS: usize = 4;

/// Time limit of one Vault transit decrypt call.
pub const VAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The envelope's `secret_envelope`, as gateways send it (compat §2).
#[derive(Clone, Deserialize)]
pub struct SecretEnvelope {
    pub ciphertext_b64: String,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    /// RFC 3339 time after which the envelope must not be opened.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub key_path: Option<String>,
    #[serde(default)]
    pub mount: Option<String>,
}

impl fmt::Debug for SecretEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretEnvelope")
            .field("algorithm", &self.algorithm)
            .field("ciphertext_bytes", &self.ciphertext_b64.len())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A secret value; never printed.
#[derive(Clone)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The runner's secret-opening settings.
#[derive(Clone, Default)]
pub struct SecretsConfig {
    /// AES-256 key for `aes-256-gcm` envelopes: opens them first, and
    /// seals every new one.
    pub key: Option<[u8; 32]>,
    /// Earlier AES-256 keys (`RUNNER_SECRETS_PREVIOUS_KEYS`), tried in
    /// order after `key` when opening; never used to seal. At most
    /// [`MAX_PREVIOUS_SECRETS_KEYS`], and only beside a `key`.
    pub previous_keys: Vec<[u8; 32]>,
    /// Accept `inline/base64` envelopes.
    pub allow_inline: bool,
    /// Vault address and token for `vault-transit` envelopes.
    pub vault: Option<VaultConfig>,
}

impl SecretsConfig {
    /// `RUNNER_SECRETS_KEY(_FILE)`, `RUNNER_SECRETS_PREVIOUS_KEYS(_FILE)`,
    /// `RUNNER_ALLOW_INLINE_SECRETS`, `VAULT_ADDR` + `VAULT_TOKEN_FILE`.
    pub fn from_source(source: &crate::config::source::Source) -> SecretsConfig {
        let key = match (
            source.text("RUNNER_SECRETS_KEY"),
            source.text("RUNNER_SECRETS_KEY_FILE"),
        ) {
            (Some(_), Some(_)) => {
                source.problem("RUNNER_SECRETS_KEY and RUNNER_SECRETS_KEY_FILE: set one, not both");
                None
            }
            (Some(text), None) => secrets_key(text)
                .map_err(|why| source.problem(format!("RUNNER_SECRETS_KEY: {why}")))
                .ok(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("`{path}`: {e}"))
                .and_then(|text| secrets_key(&text))
                .map_err(|why| source.problem(format!("RUNNER_SECRETS_KEY_FILE: {why}")))
                .ok(),
            (None, None) => None,
        };
        // Set, even if it did not parse (that is its own problem).
        let has_current =
            source.text("RUNNER_SECRETS_KEY").is_some() || source.text("RUNNER_SECRETS_KEY_FILE").is_some();
        let previous_keys = previous_keys(source, has_current);
        let vault = match (source.text("VAULT_ADDR"), source.text("VAULT_TOKEN_FILE")) {
            (None, None) => None,
            (Some(addr), Some(path)) => {
                if !crate::config::source::is_http_url(addr) {
                    source.problem(format!("VAULT_ADDR: `{addr}` must be an http(s) URL"));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| format!("VAULT_TOKEN_FILE: `{path}`: {e}"))
                    .and_then(|token| {
                        VaultConfig::new(addr.to_string(), token.trim().to_string())
                            .map_err(|why| format!("VAULT_ADDR: {why}"))
                    })
                    .map_err(|why| source.problem(why))
                    .ok()
            }
            _ => {
                source.problem("VAULT_ADDR and VAULT_TOKEN_FILE: set both or neither");
                None
            }
        };
        SecretsConfig {
            key,
            previous_keys,
            allow_inline: source.flag("RUNNER_ALLOW_INLINE_SECRETS", false),
            vault,
        }
    }
}

/// `RUNNER_SECRETS_PREVIOUS_KEYS` (comma-separated) or
/// `RUNNER_SECRETS_PREVIOUS_KEYS_FILE` (commas or newlines): each key in
/// [`secrets_key`]'s form. A mistake is a problem naming the setting and the
/// key's position (`[0]` first), never the key.
fn previous_keys(source: &crate::config::source::Source, has_current: bool) -> Vec<[u8; 32]> {
    const TEXT: &str = "RUNNER_SECRETS_PREVIOUS_KEYS";
    const FILE: &str = "RUNNER_SECRETS_PREVIOUS_KEYS_FILE";
    let (setting, text) = match (source.text(TEXT), source.text(FILE)) {
        (None, None) => return Vec::new(),
        (Some(_), Some(_)) => {
            source.problem(format!("{TEXT} and {FILE}: set one, not both"));
            return Vec::new();
        }
        (Some(text), None) => (TEXT, text.to_string()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => (FILE, text),
            Err(e) => {
                source.problem(format!("{FILE}: `{path}`: {e}"));
                return Vec::new();
            }
        },
    };
    if !has_current {
        source.problem(format!(
            "{setting}: needs RUNNER_SECRETS_KEY (or RUNNER_SECRETS_KEY_FILE), the key new envelopes are sealed              with; previous keys only open"
        ));
        return Vec::new();
    }
    match parse_previous_keys(&text) {
        Ok(keys) => keys,
        Err(problems) => {
            for why in problems {
                source.problem(format!("{setting}{why}"));
            }
            Vec::new()
        }
    }
}

/// Keys separated by commas or newlines (blank entries skipped), at most
/// [`MAX_PREVIOUS_SECRETS_KEYS`].
///
/// # Errors
/// Every problem, each starting with the position it is at (`[1]: …`) or
/// `: ` for the list as a whole; never the key text.
fn parse_previous_keys(text: &str) -> Result<Vec<[u8; 32]>, Vec<String>> {
    let entries: Vec<&str> = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.len() > MAX_PREVIOUS_SECRETS_KEYS {
        return Err(vec![format!(
            ": {} keys; at most {MAX_PREVIOUS_SECRETS_KEYS} (drop the keys no install is sealed under any more)",
            entries.len()
        )]);
    }
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match secrets_key(entry) {
            Ok(key) => keys.push(key),
            Err(why) => problems.push(format!("[{index}]: {why}")),
        }
    }
    match problems.is_empty() {
        true => Ok(keys),
        false => Err(problems),
    }
}

/// A 32-byte AES key given as base64 (what `ext-runner secrets keygen` prints).
///
/// # Errors
/// A message saying what is wrong (never the key).
pub fn secrets_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "not base64 (expected 32 random bytes in base64, see `ext-runner secrets keygen`)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("decodes to {} bytes; 32 are required", bytes.len()))
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.map(|_| "<set>"))
            .field("previous_keys", &self.previous_keys.len())
            .field("allow_inline", &self.allow_inline)
            .field("vault", &self.vault.as_ref().map(|v| &v.addr))
            .finish()
    }
}

#[derive(Clone)]
pub struct VaultConfig {
    /// `VAULT_ADDR`, e.g. `https://vault.internal:8200`.
    pub addr: String,
    /// Read from `VAULT_TOKEN_FILE`.
    pub token: String,
    /// One client for every decrypt call (connection reuse; no proxies
    /// from the environment).
    client: reqwest::Client,
}

impl VaultConfig {
    /// # Errors
    /// If the HTTP client cannot be built (TLS roots unavailable).
    pub fn new(addr: String, token: String) -> Result<VaultConfig, String> {
        let client = reqwest::Client::builder()
            .timeout(VAULT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| format!("vault client: {e}"))?;
        Ok(VaultConfig { addr, token, client })
    }
}

/// Why an envelope did not open. Messages never contain secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the secret envelope expired at {0}")]
    Expired(String),
    #[error("secret envelope algorithm `{0}` is not accepted by this runner")]
    Unsupported(String),
    /// Malformed or altered, or not for this tenant, extension and
    /// `expires_at`: the guest sees the same as no envelope.
    #[error("the secret envelope does not open: {0}")]
    Invalid(&'static str),
    /// Vault refused to decrypt it for this binding (altered, another
    /// tenant's, extension's or expiry's, or another key): as `Invalid`.
    #[error("the secret envelope does not open: {0}")]
    Refused(String),
    #[error("the secret backend failed: {0}")]
    Backend(String),
}

impl OpenError {
    /// Whether the guest should see this as no envelope at all (`missing`):
    /// the envelope is not one that opens for this request.
    pub fn looks_missing(&self) -> bool {
        matches!(self, OpenError::Invalid(_) | OpenError::Refused(_))
    }
}

/// What an envelope is bound to: `"<tenant>\0<extension>"`, plus
/// `"\0<expires_at>"` when it has one. Ids carry no NUL (the envelope
/// refuses control characters), so different (tenant, extension, expiry)
/// triples never share a binding, and envelopes sealed without an expiry
/// before `expires_at` was bound still open.
pub fn binding(tenant: &str, extension: &str, expires_at: Option<&str>) -> Vec<u8> {
    let mut bound = format!("{tenant}\0{extension}");
    if let Some(at) = expires_at {
        bound.push('\0');
        bound.push_str(at);
    }
    bound.into_bytes()
}

/// Open `envelope` for (tenant, extension) into name → value.
///
/// # Errors
/// [`OpenError`]: expired, unsupported algorithm, wrong key/tenant/tamper,
/// or Vault trouble.
pub async fn open(
    envelope: &SecretEnvelope,
    config: &SecretsConfig,
    tenant: &str,
    extension: &str,
) -> Result<BTreeMap<String, SecretValue>, OpenError> {
    if envelope.ciphertext_b64.len() > MAX_SECRET_ENVELOPE_BYTES {
        return Err(OpenError::Invalid("ciphertext too large"));
    }
    let expires_at = envelope.expires_at.as_deref();
    let bound = binding(tenant, extension, expires_at);
    let algorithm = envelope.algorithm.as_deref().unwrap_or("aes-256-gcm");
    let plaintext = match algorithm {
        "aes-256-gcm" => unseal_any(config, &envelope.ciphertext_b64, &bound)?.1,
        "inline/base64" if config.allow_inline => BASE64
            .decode(envelope.ciphertext_b64.trim())
            .map_err(|_| OpenError::Invalid("inline secrets are not base64"))?,
        "inline/base64" => {
            return Err(OpenError::Unsupported(
                "inline/base64 (set RUNNER_ALLOW_INLINE_SECRETS=true to accept unencrypted secrets)".into(),
            ));
        }
        vault if vault.starts_with("vault-transit") => {
            let vault = config.vault.as_ref().ok_or(OpenError::Unsupported(format!(
                "{algorithm} (no VAULT_ADDR configured)"
            )))?;
            vault_decrypt(vault, envelope, &bound).await?
        }
        other => return Err(OpenError::Unsupported(other.to_string())),
    };
    // Only now, with the binding authenticated, does `expires_at` count.
    if let Some(at) = expires_at
        && is_past(at)?
    {
        return Err(OpenError::Expired(at.to_string()));
    }
    parse_map(&plaintext)
}

/// Seal name → value for (tenant, extension) and, when given, `expires_at`
/// (carried beside the ciphertext and bound into it) under `key`
/// (`secrets seal`).
///
/// # Errors
/// `expires_at` that is not an RFC 3339 time; otherwise only if the cipher
/// fails, which it does not for valid inputs.
pub fn seal(
    key: &[u8; 32],
    secrets: &BTreeMap<String, String>,
    tenant: &str,
    extension: &str,
    expires_at: Option<&str>,
) -> Result<String, OpenError> {
    if let Some(at) = expires_at
        && parse_rfc3339(at).is_none()
    {
        return Err(OpenError::Invalid("expires_at is not an RFC 3339 time"));
    }
    let plaintext = serde_json::to_vec(secrets).map_err(|_| OpenError::Invalid("unserialisable secrets"))?;
    seal_bytes(key, &plaintext, &binding(tenant, extension, expires_at))
}

/// The runner key `sealed` opens under: `Current`, or `Previous(i)` for
/// `config.previous_keys[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsed {
    Current,
    Previous(usize),
}

/// `RUNNER_SECRETS_KEY`, without which no `aes-256-gcm` envelope opens.
fn current_key(config: &SecretsConfig) -> Result<&[u8; 32], OpenError> {
    config.key.as_ref().ok_or(OpenError::Unsupported(
        "aes-256-gcm (no RUNNER_SECRETS_KEY configured)".into(),
    ))
}

/// Open a base64 AES-GCM ciphertext with the current key, then each previous key
/// in order: the first whose tag verifies.
fn unseal_any(config: &SecretsConfig, ciphertext_b64: &str, bound: &[u8]) -> Result<(KeyUsed, Vec<u8>), OpenError> {
    let key = current_key(config)?;
    if ciphertext_b64.len() > MAX_SECRET_ENVELOPE_BYTES {
        return Err(OpenError::Invalid("ciphertext too large"));
    }
    let sealed = BASE64
        .decode(ciphertext_b64.trim())
        .map_err(|_| OpenError::Invalid("ciphertext is not base64"))?;
    if sealed.len() < NONCE_BYTES + 16 {
        return Err(OpenError::Invalid("ciphertext too short"));
    }
    let keys = std::iter::once((KeyUsed::Current, key)).chain(
        config
            .previous_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (KeyUsed::Previous(i), k)),
    );
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    for (used, key) in keys {
        let opened = Aes256Gcm::new(key.into()).decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: bound,
            },
        );
        if let Ok(plaintext) = opened {
            return Ok((used, plaintext));
        }
    }
    Err(OpenError::Invalid(
        "not sealed for this tenant, extension and expires_at, altered, or sealed under a key this runner does not \
         accept",
    ))
}

/// What [`reseal`] did with an envelope.
#[derive(Debug, PartialEq, Eq)]
pub enum Resealed {
    /// It opens under the current key already: nothing to write.
    AlreadyCurrent,
    /// It opened under a previous key; this `ciphertext_b64` holds the same
    /// plaintext sealed under the current key, with the same binding.
    Sealed(String),
}

/// Re-seal an `aes-256-gcm` envelope for (tenant, extension) under the
/// current key: opened with any accepted key, sealed again with the current
/// one (a fresh nonce, the same binding and `expires_at`, the plaintext
/// unchanged).
///
/// # Errors
/// [`OpenError::Unsupported`] for another algorithm or without a current
/// key; [`OpenError::Invalid`] when no accepted key opens it.
pub fn reseal(
    envelope: &SecretEnvelope,
    config: &SecretsConfig,
    tenant: &str,
    extension: &str,
) -> Result<Resealed, OpenError> {
    let algorithm = envelope.algorithm.as_deref().unwrap_or("aes-256-gcm");
    if algorithm != "aes-256-gcm" {
        return Err(OpenError::Unsupported(algorithm.to_string()));
    }
    let bound = binding(tenant, extension, envelope.expires_at.as_deref());
    match unseal_any(config, &envelope.ciphertext_b64, &bound)? {
        (KeyUsed::Current, _) => Ok(Resealed::AlreadyCurrent),
        (KeyUsed::Previous(_), plaintext) => seal_bytes(current_key(config)?, &plaintext, &bound).map(Resealed::Sealed),
    }
}

/// AES-256-GCM of `plaintext` bound to `aad` under `key`, with a fresh
/// nonce: base64 of nonce ‖ ciphertext ‖ tag.
fn seal_bytes(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<String, OpenError> {
    let nonce: [u8; NONCE_BYTES] = crate::random_bytes();
    let ciphertext = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .map_err(|_| OpenError::Invalid("encryption failed"))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(BASE64.encode(sealed))
}

fn parse_map(plaintext: &[u8]) -> Result<BTreeMap<String, SecretValue>, OpenError> {
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(plaintext).map_err(|_| OpenError::Invalid("plaintext is not a JSON object"))?;
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, SecretValue(text))),
            _ => Err(OpenError::Invalid("secret values must be strings")),
        })
        .collect()
}

/// `expires_at` (RFC 3339, UTC `Z` or offset) is before now.
fn is_past(expires_at: &str) -> Result<bool, OpenError> {
    let at = parse_rfc3339(expires_at).ok_or(OpenError::Invalid("expires_at is not an RFC 3339 time"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(at <= now)
}

/// Seconds since the Unix epoch of `2026-12-01T10:00:00Z` /
/// `…T10:00:00.123+02:00`.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let (h, min, s): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    let offset_secs = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s - offset_secs)
}

#[derive(Deserialize)]
struct VaultResponse {
    data: VaultData,
}

#[derive(Deserialize)]
struct VaultData {
    plaintext: String,
}

/// A Vault `mount` or `key_path`: one name of `[A-Za-z0-9._-]`, never `.`
/// or containing `..` (and so never a path of its own, K-04).
fn vault_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VAULT_NAME_BYTES
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name != "."
        && !name.contains("..")
}

async fn vault_decrypt(vault: &VaultConfig, envelope: &SecretEnvelope, bound: &[u8]) -> Result<Vec<u8>, OpenError> {
    let key = envelope
        .key_path
        .as_deref()
        .filter(|k| vault_name(k))
        .ok_or(OpenError::Invalid(
            "vault-transit envelopes need a key_path of [A-Za-z0-9._-] without `/` or `..`",
        ))?;
    let mount = envelope.mount.as_deref().unwrap_or("transit");
    if !vault_name(mount) {
        return Err(OpenError::Invalid(
            "vault mount must be one name of [A-Za-z0-9._-] without `/` or `..`",
        ));
    }
    let url = format!("{}/v1/{mount}/decrypt/{key}", vault.addr.trim_end_matches('/'));
    let client = &vault.client;
    let body = serde_json::json!({
        "ciphertext": envelope.ciphertext_b64.trim(),
        "context": BASE64.encode(bound),
    })
    .to_string();
    let response = client
        .post(&url)
        .header("x-vault-token", &vault.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| OpenError::Backend(format!("vault transit decrypt: {}", e.without_url())))?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => {}
        // Vault's answers for a ciphertext that does not decrypt under this
        // key and context (400), or a key this runner may not use or that
        // does not exist (403, 404): this envelope does not open here.
        400 | 403 | 404 => {
            return Err(OpenError::Refused(format!(
                "vault transit decrypt answered {status} (altered, bound to another tenant, extension or expires_at, or another key)"
            )));
        }
        _ => return Err(OpenError::Backend(format!("vault transit decrypt answered {status}"))),
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| OpenError::Backend(format!("vault transit decrypt: {}", e.without_url())))?;
    let parsed: VaultResponse = serde_json::from_slice(&bytes)
        .map_err(|_| OpenError::Backend("vault answered without data.plaintext".into()))?;
    BASE64
        .decode(parsed.data.plaintext)
        .map_err(|_| OpenError::Backend("vault plaintext is not base64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn aes(ciphertext_b64: String) -> SecretEnvelope {
        SecretEnvelope {
            ciphertext_b64,
            algorithm: Some("aes-256-gcm".into()),
            version: None,
            expires_at: None,
            key_path: None,
            mount: None,
        }
    }

    #[tokio::test]
    async fn sealed_envelopes_open_only_for_their_tenant_and_extension() {
        let key = [7u8; 32];
        let config = SecretsConfig {
            key: Some(key),
            ..Default::default()
        };
        let sealed = seal(&key, &map(&[("api-key", "s3cr3t")]), "t1", "e1", None).unwrap();
        let opened = open(&aes(sealed.clone()), &config, "t1", "e1").await.unwrap();
        assert_eq!(opened["api-key"].expose(), "s3cr3t");
        assert!(!format!("{opened:?}").contains("s3cr3t"));
        // K-03: another tenant's or extension's envelope does not open.
        for (tenant, extension) in [("t2", "e1"), ("t1", "e2")] {
            let err = open(&aes(sealed.clone()), &config, tenant, extension)
                .await
                .unwrap_err();
            assert!(matches!(err, OpenError::Invalid(_)) && err.looks_missing(), "{err}");
            assert!(!err.to_string().contains("s3cr3t"));
        }
        let other_key = SecretsConfig {
            key: Some([8u8; 32]),
            ..Default::default()
        };
        assert!(open(&aes(sealed), &other_key, "t1", "e1").await.is_err());
    }

    #[tokio::test]
    async fn inline_needs_the_operator_and_expiry_is_enforced() {
        let inline = SecretEnvelope {
            ciphertext_b64: BASE64.encode(br#"{"a":"b"}"#),
            algorithm: Some("inline/base64".into()),
            ..aes(String::new())
        };
        let strict = SecretsConfig::default();
        assert!(matches!(
            open(&inline, &strict, "t", "e").await,
            Err(OpenError::Unsupported(_))
        ));
        let lax = SecretsConfig {
            allow_inline: true,
            ..Default::default()
        };
        assert_eq!(open(&inline, &lax, "t", "e").await.unwrap()["a"].expose(), "b");
        let expired = SecretEnvelope {
            expires_at: Some("2020-01-01T00:00:00Z".into()),
            ..inline.clone()
        };
        assert!(matches!(
            open(&expired, &lax, "t", "e").await,
            Err(OpenError::Expired(_))
        ));
        let later = SecretEnvelope {
            expires_at: Some("2999-01-01T00:00:00+01:00".into()),
            ..inline
        };
        assert!(open(&later, &lax, "t", "e").await.is_ok());
    }

    /// K-04: `expires_at` is bound into the AES envelope: removed, added or
    /// changed, it does not open (not even as `expired`); as sealed, it
    /// opens until then and is `expired` after.
    #[tokio::test]
    async fn k04_expires_at_is_authenticated() {
        let key = [7u8; 32];
        let config = SecretsConfig {
            key: Some(key),
            ..Default::default()
        };
        let secrets = map(&[("api-key", "s3cr3t")]);
        let until = "2999-01-01T00:00:00Z";
        let sealed = SecretEnvelope {
            expires_at: Some(until.into()),
            ..aes(seal(&key, &secrets, "t1", "e1", Some(until)).unwrap())
        };
        assert_eq!(
            open(&sealed, &config, "t1", "e1").await.unwrap()["api-key"].expose(),
            "s3cr3t"
        );
        for altered in [None, Some("3999-01-01T00:00:00Z"), Some("2020-01-01T00:00:00Z")] {
            let envelope = SecretEnvelope {
                expires_at: altered.map(String::from),
                ..sealed.clone()
            };
            let err = open(&envelope, &config, "t1", "e1").await.unwrap_err();
            assert!(err.looks_missing(), "{altered:?}: {err}");
        }
        // An expiry added to an envelope sealed without one.
        let plain = aes(seal(&key, &secrets, "t1", "e1", None).unwrap());
        let added = SecretEnvelope {
            expires_at: Some(until.into()),
            ..plain
        };
        assert!(open(&added, &config, "t1", "e1").await.unwrap_err().looks_missing());
        // Sealed with a past expiry: authentic, so `expired`.
        let past = "2020-01-01T00:00:00Z";
        let expired = SecretEnvelope {
            expires_at: Some(past.into()),
            ..aes(seal(&key, &secrets, "t1", "e1", Some(past)).unwrap())
        };
        assert_eq!(
            open(&expired, &config, "t1", "e1").await.unwrap_err(),
            OpenError::Expired(past.into())
        );
        assert!(seal(&key, &secrets, "t1", "e1", Some("tomorrow")).is_err());
        // Bindings are distinct for distinct triples.
        assert_ne!(binding("a", "b", None), binding("a", "b", Some("")));
    }

    fn rotated(current: u8, previous: &[u8]) -> SecretsConfig {
        SecretsConfig {
            key: Some([current; 32]),
            previous_keys: previous.iter().map(|b| [*b; 32]).collect(),
            ..Default::default()
        }
    }

    /// Rotation: an envelope sealed under a previous key opens; one sealed
    /// under a key that is neither current nor previous does not (as if
    /// absent); previous keys alone open nothing.
    #[tokio::test]
    async fn previous_keys_open_and_unknown_keys_do_not() {
        let secrets = map(&[("api-key", "s3cr3t")]);
        let under = |key: u8| aes(seal(&[key; 32], &secrets, "t1", "e1", None).unwrap());
        let config = rotated(2, &[9, 1]);
        for key in [2, 9, 1] {
            let opened = open(&under(key), &config, "t1", "e1").await.unwrap();
            assert_eq!(opened["api-key"].expose(), "s3cr3t", "key {key}");
        }
        let err = open(&under(3), &config, "t1", "e1").await.unwrap_err();
        assert!(err.looks_missing(), "{err}");
        // The binding still holds under a previous key.
        assert!(open(&under(1), &config, "t2", "e1").await.unwrap_err().looks_missing());
        let previous_only = SecretsConfig {
            key: None,
            ..rotated(0, &[1])
        };
        assert!(matches!(
            open(&under(1), &previous_only, "t1", "e1").await,
            Err(OpenError::Unsupported(_))
        ));
    }

    /// `reseal`: a previous key's envelope comes back sealed under the
    /// current key (opening with it alone, the binding and expiry kept), a
    /// current one is left, an unknown one refused.
    #[tokio::test]
    async fn reseal_moves_envelopes_to_the_current_key() {
        let secrets = map(&[("api-key", "s3cr3t")]);
        let until = "2999-01-01T00:00:00Z";
        let old = SecretEnvelope {
            expires_at: Some(until.into()),
            ..aes(seal(&[1; 32], &secrets, "t1", "e1", Some(until)).unwrap())
        };
        let config = rotated(2, &[1]);
        let Resealed::Sealed(ciphertext) = reseal(&old, &config, "t1", "e1").unwrap() else {
            panic!("not resealed");
        };
        assert!(!ciphertext.contains("s3cr3t"));
        let new = SecretEnvelope {
            ciphertext_b64: ciphertext,
            ..old.clone()
        };
        let current_only = rotated(2, &[]);
        assert_eq!(
            open(&new, &current_only, "t1", "e1").await.unwrap()["api-key"].expose(),
            "s3cr3t"
        );
        assert!(open(&new, &current_only, "t2", "e1").await.unwrap_err().looks_missing());
        let without_expiry = SecretEnvelope {
            expires_at: None,
            ..new.clone()
        };
        assert!(
            open(&without_expiry, &current_only, "t1", "e1")
                .await
                .unwrap_err()
                .looks_missing()
        );
        assert!(open(&old, &current_only, "t1", "e1").await.unwrap_err().looks_missing());
        assert_eq!(reseal(&new, &config, "t1", "e1"), Ok(Resealed::AlreadyCurrent));
        let err = reseal(&old, &rotated(2, &[3]), "t1", "e1").unwrap_err();
        assert!(err.looks_missing(), "{err}");
        assert!(matches!(
            reseal(&old, &rotated(2, &[1]), "t2", "e1"),
            Err(OpenError::Invalid(_))
        ));
        let vault = SecretEnvelope {
            algorithm: Some("vault-transit".into()),
            ..old
        };
        assert!(matches!(
            reseal(&vault, &config, "t1", "e1"),
            Err(OpenError::Unsupported(_))
        ));
    }

    fn problems(pairs: &[(&str, &str)]) -> (SecretsConfig, Vec<String>) {
        let values = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let source = crate::config::source::Source::new(values);
        let config = SecretsConfig::from_source(&source);
        let problems = source.finish_partial().map_or_else(|e| e.problems, |()| Vec::new());
        (config, problems)
    }

    #[test]
    fn previous_keys_settings() {
        let k = |b: u8| BASE64.encode([b; 32]);
        let (one, two, three) = (k(1), k(2), k(3));
        let list = format!("{two}, {three},");
        let (config, found) = problems(&[("RUNNER_SECRETS_KEY", &one), ("RUNNER_SECRETS_PREVIOUS_KEYS", &list)]);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(config.previous_keys, vec![[2; 32], [3; 32]]);
        assert!(format!("{config:?}").contains("previous_keys: 2"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("previous");
        std::fs::write(&file, format!("{two}\n{three}\n")).unwrap();
        let path = file.display().to_string();
        let (config, found) = problems(&[
            ("RUNNER_SECRETS_KEY", &one),
            ("RUNNER_SECRETS_PREVIOUS_KEYS_FILE", &path),
        ]);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(config.previous_keys.len(), 2);

        let short = BASE64.encode([7u8; 16]);
        let with_short = format!("{two},{short}");
        let five = [two.as_str(); 5].join(",");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("RUNNER_SECRETS_PREVIOUS_KEYS", &two)],
                "RUNNER_SECRETS_PREVIOUS_KEYS: needs RUNNER_SECRETS_KEY",
            ),
            (
                vec![
                    ("RUNNER_SECRETS_KEY", &one),
                    ("RUNNER_SECRETS_PREVIOUS_KEYS", "c2VjcmV0LWtleS10ZXh0!"),
                ],
                "RUNNER_SECRETS_PREVIOUS_KEYS[0]: not base64",
            ),
            (
                vec![
                    ("RUNNER_SECRETS_KEY", &one),
                    ("RUNNER_SECRETS_PREVIOUS_KEYS", &with_short),
                ],
                "RUNNER_SECRETS_PREVIOUS_KEYS[1]: decodes to 16 bytes",
            ),
            (
                vec![("RUNNER_SECRETS_KEY", &one), ("RUNNER_SECRETS_PREVIOUS_KEYS", &five)],
                "RUNNER_SECRETS_PREVIOUS_KEYS: 5 keys; at most 4",
            ),
            (
                vec![
                    ("RUNNER_SECRETS_KEY", &one),
                    ("RUNNER_SECRETS_PREVIOUS_KEYS", &two),
                    ("RUNNER_SECRETS_PREVIOUS_KEYS_FILE", &path),
                ],
                "RUNNER_SECRETS_PREVIOUS_KEYS and RUNNER_SECRETS_PREVIOUS_KEYS_FILE: set one, not both",
            ),
            (
                vec![
                    ("RUNNER_SECRETS_KEY", &one),
                    ("RUNNER_SECRETS_PREVIOUS_KEYS_FILE", "/nonexistent/previous-keys"),
                ],
                "RUNNER_SECRETS_PREVIOUS_KEYS_FILE: `/nonexistent/previous-keys`",
            ),
        ];
        // A current key that does not parse is its own problem, not "needs RUNNER_SECRETS_KEY".
        let (_, found) = problems(&[("RUNNER_SECRETS_KEY", "short"), ("RUNNER_SECRETS_PREVIOUS_KEYS", &two)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("RUNNER_SECRETS_KEY: "), "{found:?}");
        for (pairs, expected) in cases {
            let (config, found) = problems(&pairs);
            assert!(config.previous_keys.is_empty());
            assert!(found.iter().any(|p| p.starts_with(expected)), "{expected}: {found:?}");
            for problem in &found {
                for (_, value) in &pairs {
                    if value.len() > 8 && !value.starts_with('/') {
                        assert!(!problem.contains(value), "{problem} echoes a key");
                    }
                }
            }
        }
    }

    /// K-04: Vault names are one path segment.
    #[test]
    fn k04_vault_mount_and_key_are_single_names() {
        for good in ["transit", "ext-secrets", "tenant_a.v2"] {
            assert!(vault_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../sys",
            "transit/..",
            "a..b",
            "a b",
            "a%2fb",
            &"x".repeat(129),
        ] {
            assert!(!vault_name(bad), "{bad}");
        }
    }

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00.5+01:00"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2020-13-01T00:00:00Z"), None);
    }
}
