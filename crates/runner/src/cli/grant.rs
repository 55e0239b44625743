//! `grant keygen` and `grant sign`: the key pair execution grants are
//! signed with, and a grant for one envelope (tests and other gateways).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::files::{beside_key, write_new_file};
use crate::grant::{Claims, GrantSigner, MAX_GRANT_TTL_SECS};

/// How long `grant sign` makes a grant last unless told.
const DEFAULT_GRANT_TTL_SECS: u64 = 60;

/// Where `grant keygen` puts the public JWKS: `grant.pem` → `grant.jwks.json`.
pub fn jwks_path(private: &Path) -> PathBuf {
    beside_key(private, "jwks.json")
}

/// A new Ed25519 grant key: the private key at `out` (PKCS#8 PEM, mode
/// 0600) and its public JWKS beside it ([`jwks_path`]), neither
/// overwriting a file. Returns the JWKS path and the key id.
///
/// # Errors
/// Either file exists or cannot be written; named.
pub fn grant_keygen(out: &Path) -> anyhow::Result<(PathBuf, String)> {
    let jwks = jwks_path(out);
    for path in [out, jwks.as_path()] {
        if path.symlink_metadata().is_ok() {
            bail!("{} already exists; keygen never overwrites a key", path.display());
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::Ed25519).to_pkcs8_pem();
    let signer = GrantSigner::from_pem(pem.as_bytes())?;
    write_new_file(out, pem.as_bytes(), 0o600)?;
    write_new_file(&jwks, signer.jwks()?.as_bytes(), 0o644)?;
    Ok((jwks, signer.kid().to_string()))
}

/// `ext-runner grant …`.
#[derive(clap::Subcommand)]
pub enum GrantCommand {
    /// Generate an Ed25519 grant key: the private key at --out (mode 0600) and its public JWKS
    /// beside it (grant.pem -> grant.jwks.json, for RUNNER_GRANT_KEYS); prints the key id.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print an execution grant (for the `x-ext-grant` header) binding one envelope.
    Sign(SignGrant),
}

/// `ext-runner grant sign`.
#[derive(clap::Args)]
pub struct SignGrant {
    /// Private grant key (from `grant keygen`).
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    extension: String,
    /// `sha256:<hex>` of the bundle.
    #[arg(long)]
    content_hash: String,
    #[arg(long)]
    install_id: Option<String>,
    #[arg(long)]
    version_id: Option<String>,
    /// A granted capability (repeat it); none grants only the always-granted ones.
    #[arg(long = "capability")]
    capabilities: Vec<String>,
    /// An egress pattern (repeat it), e.g. https://api.example.com; none reaches no host.
    #[arg(long = "egress")]
    egress: Vec<String>,
    /// Bind the grant to this envelope `context.request_id`.
    #[arg(long)]
    request_id: Option<String>,
    /// Seconds the grant lasts (at most 300).
    #[arg(long, default_value_t = DEFAULT_GRANT_TTL_SECS)]
    ttl: u64,
}

impl SignGrant {
    /// The signed grant.
    ///
    /// # Errors
    /// An unreadable key, a TTL over the runners' cap, or a claim the
    /// runner would refuse; each named.
    pub fn token(self) -> anyhow::Result<String> {
        if self.ttl == 0 || self.ttl > MAX_GRANT_TTL_SECS {
            bail!("--ttl: 1-{MAX_GRANT_TTL_SECS} seconds (runners refuse longer grants)");
        }
        ext_bundle::Digest::parse(self.content_hash.trim()).map_err(|e| anyhow::anyhow!("--content-hash: {e}"))?;
        crate::host::grants::canonical_providers(&self.capabilities)
            .map_err(|(index, why)| anyhow::anyhow!("--capability {}: {why}", self.capabilities[index]))?;
        crate::host::http::canonical_egress(&self.egress).map_err(|(index, why)| {
            anyhow::anyhow!("--egress {}: {why}", self.egress.get(index).map_or("", String::as_str))
        })?;
        let signer = GrantSigner::load(&self.key).context("--key")?;
        signer.sign(&Claims {
            tenant: self.tenant,
            extension: self.extension,
            install_id: self.install_id,
            version_id: self.version_id,
            content_hash: self.content_hash.trim().to_string(),
            capabilities: self.capabilities,
            egress: self.egress,
            request_id: self.request_id,
            exp: crate::grant::now_secs() + self.ttl,
        })
    }
}

impl GrantCommand {
    /// # Errors
    /// As [`grant_keygen`] and [`SignGrant::token`].
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            GrantCommand::Keygen { out } => {
                let (jwks, kid) = grant_keygen(&out)?;
                println!("{kid}");
                eprintln!(
                    "wrote {} (private, for the gateway) and {} (public: list it in RUNNER_GRANT_KEYS)",
                    out.display(),
                    jwks.display()
                );
            }
            GrantCommand::Sign(sign) => println!("{}", sign.token()?),
        }
        Ok(())
    }
}
