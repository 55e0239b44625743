//! `cap:secrets.get`: opening the envelope's `secret_envelope`.
//!
//! Backends, chosen by the envelope's `algorithm`:
//! - `aes-256-gcm` (also when `algorithm` is absent): `ciphertext_b64` is
//!   base64 of a 12-byte nonce followed by AES-256-GCM ciphertext + tag under
//!   the runner key (`RUNNER_SECRETS_KEY` / `RUNNER_SECRETS_KEY_FILE`). The
//!   associated data binds it to `"<tenant>\0<extension>"`, so an envelope
//!   copied to another tenant or extension does not open (K-03). The
//!   plaintext is a JSON object of secret name → value. `ext-runner secrets
//!   seal` makes them.
//! - `vault-transit*`: Vault's transit decrypt API (`VAULT_ADDR`, token from
//!   `VAULT_TOKEN_FILE`), `mount` (default `transit`) and `key_path`; the
//!   decrypted plaintext is the same JSON object.
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
    /// AES-256 key for `aes-256-gcm` envelopes.
    pub key: Option<[u8; 32]>,
    /// Accept `inline/base64` envelopes.
    pub allow_inline: bool,
    /// Vault address and token for `vault-transit` envelopes.
    pub vault: Option<VaultConfig>,
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.map(|_| "<set>"))
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
    #[error("the secret envelope does not open: {0}")]
    Invalid(&'static str),
    #[error("the secret backend failed: {0}")]
    Backend(String),
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
    if let Some(expires_at) = &envelope.expires_at
        && is_past(expires_at)?
    {
        return Err(OpenError::Expired(expires_at.clone()));
    }
    if envelope.ciphertext_b64.len() > MAX_SECRET_ENVELOPE_BYTES {
        return Err(OpenError::Invalid("ciphertext too large"));
    }
    let algorithm = envelope.algorithm.as_deref().unwrap_or("aes-256-gcm");
    let plaintext = match algorithm {
        "aes-256-gcm" => {
            let key = config.key.ok_or(OpenError::Unsupported(
                "aes-256-gcm (no RUNNER_SECRETS_KEY configured)".into(),
            ))?;
            let sealed = BASE64
                .decode(envelope.ciphertext_b64.trim())
                .map_err(|_| OpenError::Invalid("ciphertext is not base64"))?;
            unseal(&key, &sealed, tenant, extension)?
        }
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
            vault_decrypt(vault, envelope).await?
        }
        other => return Err(OpenError::Unsupported(other.to_string())),
    };
    parse_map(&plaintext)
}

/// Seal name → value for (tenant, extension) under `key` (`secrets seal`).
///
/// # Errors
/// Only if the cipher fails, which it does not for valid inputs.
pub fn seal(
    key: &[u8; 32],
    secrets: &BTreeMap<String, String>,
    tenant: &str,
    extension: &str,
) -> Result<String, OpenError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce: [u8; NONCE_BYTES] = crate::random_bytes();
    let plaintext = serde_json::to_vec(secrets).map_err(|_| OpenError::Invalid("unserialisable secrets"))?;
    let aad = associated_data(tenant, extension);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Invalid("encryption failed"))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(BASE64.encode(sealed))
}

fn associated_data(tenant: &str, extension: &str) -> Vec<u8> {
    format!("{tenant}\0{extension}").into_bytes()
}

fn unseal(key: &[u8; 32], sealed: &[u8], tenant: &str, extension: &str) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_BYTES + 16 {
        return Err(OpenError::Invalid("ciphertext too short"));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let aad = associated_data(tenant, extension);
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Invalid("wrong key, another tenant's or extension's envelope, or tampered"))
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

async fn vault_decrypt(vault: &VaultConfig, envelope: &SecretEnvelope) -> Result<Vec<u8>, OpenError> {
    let key = envelope
        .key_path
        .as_deref()
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .ok_or(OpenError::Invalid(
            "vault-transit envelopes need a key_path of [A-Za-z0-9._-]",
        ))?;
    let mount = envelope.mount.as_deref().unwrap_or("transit");
    if !mount.chars().all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c)) || mount.contains("..") {
        return Err(OpenError::Invalid("vault mount has unexpected characters"));
    }
    let url = format!("{}/v1/{mount}/decrypt/{key}", vault.addr.trim_end_matches('/'));
    let client = &vault.client;
    let body = serde_json::json!({ "ciphertext": envelope.ciphertext_b64.trim() }).to_string();
    let response = client
        .post(&url)
        .header("x-vault-token", &vault.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| OpenError::Backend(format!("vault transit decrypt: {}", e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        return Err(OpenError::Backend(format!("vault transit decrypt answered {status}")));
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
        let sealed = seal(&key, &map(&[("api-key", "s3cr3t")]), "t1", "e1").unwrap();
        let opened = open(&aes(sealed.clone()), &config, "t1", "e1").await.unwrap();
        assert_eq!(opened["api-key"].expose(), "s3cr3t");
        assert!(!format!("{opened:?}").contains("s3cr3t"));
        // K-03: another tenant's or extension's envelope does not open.
        for (tenant, extension) in [("t2", "e1"), ("t1", "e2")] {
            let err = open(&aes(sealed.clone()), &config, tenant, extension)
                .await
                .unwrap_err();
            assert!(matches!(err, OpenError::Invalid(_)), "{err}");
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

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00.5+01:00"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2020-13-01T00:00:00Z"), None);
    }
}
