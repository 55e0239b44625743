//! `secrets keygen` and `secrets seal`: runner keys and sealed envelopes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;

/// A new random 32-byte runner key, base64 (`secrets keygen`).
pub fn secrets_keygen() -> String {
    base64::engine::general_purpose::STANDARD.encode(crate::random_bytes::<32>())
}

/// Seal the JSON object in `input` (or stdin) for (tenant, extension) with
/// the key from `RUNNER_SECRETS_KEY` / `RUNNER_SECRETS_KEY_FILE`; returns the
/// `secret_envelope` JSON. [`secrets_seal_until`] with no expiry.
///
/// # Errors
/// No key, unreadable input, input that is not an object of strings.
pub fn secrets_seal(
    env: &std::collections::HashMap<String, String>,
    tenant: &str,
    extension: &str,
    input: Option<&Path>,
) -> anyhow::Result<String> {
    secrets_seal_until(env, tenant, extension, None, input)
}

/// [`secrets_seal`] with an optional `expires_at` (RFC 3339), written into
/// the envelope and bound into its ciphertext (K-04): the runner refuses the
/// envelope after that time, and refuses it as altered if the field is
/// removed or changed.
///
/// # Errors
/// As [`secrets_seal`], and an `expires_at` that is not an RFC 3339 time.
pub fn secrets_seal_until(
    env: &std::collections::HashMap<String, String>,
    tenant: &str,
    extension: &str,
    expires_at: Option<&str>,
    input: Option<&Path>,
) -> anyhow::Result<String> {
    let key = match (env.get("RUNNER_SECRETS_KEY"), env.get("RUNNER_SECRETS_KEY_FILE")) {
        (Some(text), _) => {
            crate::host::secrets::secrets_key(text).map_err(|why| anyhow::anyhow!("RUNNER_SECRETS_KEY: {why}"))?
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("RUNNER_SECRETS_KEY_FILE: {path}"))?;
            crate::host::secrets::secrets_key(&text)
                .map_err(|why| anyhow::anyhow!("RUNNER_SECRETS_KEY_FILE: {path}: {why}"))?
        }
        (None, None) => {
            bail!("set RUNNER_SECRETS_KEY or RUNNER_SECRETS_KEY_FILE (make one with `ext-runner secrets keygen`)")
        }
    };
    let (text, source) = match input {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
            (text, "standard input".to_string())
        }
    };
    let secrets: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{source}: expected a JSON object of secret name -> string value"))?;
    let sealed = crate::host::secrets::seal(&key, &secrets, tenant, extension, expires_at)
        .map_err(|e| anyhow::anyhow!("--expires-at: {e} (like 2026-12-31T23:59:59Z)"))?;
    let mut envelope = serde_json::json!({"algorithm": "aes-256-gcm", "ciphertext_b64": sealed});
    if let Some(at) = expires_at {
        envelope["expires_at"] = serde_json::json!(at);
    }
    Ok(envelope.to_string())
}

/// `ext-runner secrets …`.
#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Print a new random runner key (base64) for RUNNER_SECRETS_KEY.
    Keygen,
    /// Seal a JSON object of secret name → value for one tenant and extension; prints the
    /// `secret_envelope` JSON for the execute envelope. Key from RUNNER_SECRETS_KEY(_FILE).
    Seal {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        extension: String,
        /// RFC 3339 time after which the runner refuses the envelope (e.g.
        /// 2026-12-31T23:59:59Z); bound into the ciphertext, so it cannot be
        /// removed or extended.
        #[arg(long)]
        expires_at: Option<String>,
        /// JSON file with the secrets (default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

impl SecretsCommand {
    /// # Errors
    /// As [`secrets_seal_until`].
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            SecretsCommand::Keygen => println!("{}", secrets_keygen()),
            SecretsCommand::Seal {
                tenant,
                extension,
                expires_at,
                input,
            } => {
                let env = super::environment();
                let json = secrets_seal_until(&env, &tenant, &extension, expires_at.as_deref(), input.as_deref())?;
                println!("{json}");
            }
        }
        Ok(())
    }
}
