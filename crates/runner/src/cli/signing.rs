//! `keygen`, `sign` and `verify`: signing keys and detached signatures.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ext_bundle::Digest;

use super::files::{public_key_path, write_new_file};

/// Generate a signing key: the private key at `out` (PKCS#8 PEM, mode
/// 0600, never overwriting a file) and the public key beside it (see
/// [`public_key_path`]). Returns the public key's path and fingerprint.
///
/// # Errors
/// Either file already exists, or cannot be written; both named.
pub fn keygen(out: &Path, algorithm: ext_bundle::KeyAlgorithm) -> anyhow::Result<(PathBuf, Digest)> {
    let public = public_key_path(out);
    for path in [out, public.as_path()] {
        if path.symlink_metadata().is_ok() {
            bail!("{} already exists; keygen never overwrites a key", path.display());
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = ext_bundle::SigningKey::generate(algorithm);
    write_new_file(out, key.to_pkcs8_pem().as_bytes(), 0o600)?;
    write_new_file(&public, key.public_key_pem().as_bytes(), 0o644)?;
    Ok((public, key.fingerprint()))
}

/// What `sign` wrote.
#[derive(Debug)]
pub struct Signed {
    /// The signature file (base64, as `openssl dgst -sign | base64 -w0`).
    pub signature: PathBuf,
    /// `bundle.pem` beside it, when signed with a certificate.
    pub certificates: Option<PathBuf>,
    /// Who signed: the key fingerprint or the certificate subject.
    pub signer: ext_bundle::Signer,
}

/// Sign the archive bytes of `bundle` with the key in `key`, writing the
/// base64 signature to `out`. With `cert` (and optionally `chain`), also
/// writes `bundle.pem` (leaf, then intermediates) beside `out`, after
/// checking that the leaf certifies this key.
///
/// # Errors
/// Unreadable bundle or key, a certificate that does not match the key, or
/// unwritable output; each named.
pub fn sign(
    bundle: &Path,
    key: &Path,
    cert: Option<&Path>,
    chain: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Signed> {
    if chain.is_some() && cert.is_none() {
        bail!("--chain needs --cert (the leaf certificate of the signing key)");
    }
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let key = ext_bundle::SigningKey::load(key)?;
    let read_pem = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let certificates = match cert {
        None => None,
        Some(cert) => {
            let leaf = read_pem(cert)?;
            let chain_text = chain.map(read_pem).transpose()?;
            let files = match chain {
                Some(chain) => format!("--cert {} --chain {}", cert.display(), chain.display()),
                None => format!("--cert {}", cert.display()),
            };
            let built = ext_bundle::signature::certificate_bundle(&leaf, chain_text.as_deref(), &key.public_key())
                .with_context(|| files)?;
            Some(built)
        }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // `write_atomically` syncs the parent directory, which a bare file name
    // (`--out bundle.sig`) does not spell out.
    let out = &if out.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        Path::new(".").join(out)
    } else {
        out.to_path_buf()
    };
    let signature = ext_bundle::signature::encode_signature(&key.sign(&archive));
    crate::engine::write_atomically(out, signature.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let (certificates, signer) = match certificates {
        None => (
            None,
            ext_bundle::Signer::Key {
                fingerprint: key.fingerprint(),
            },
        ),
        Some(built) => {
            let path = out.with_file_name("bundle.pem");
            crate::engine::write_atomically(&path, built.pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            (
                Some(path),
                ext_bundle::Signer::Certificate {
                    subject: built.subject,
                    fingerprint: built.fingerprint,
                },
            )
        }
    };
    Ok(Signed {
        signature: out.to_path_buf(),
        certificates,
        signer,
    })
}

/// Verify `sig` (and the certificates in `certs`, if given) over the
/// archive bytes of `bundle` against `trust` (a PEM file, or inline PEM),
/// at the current time.
///
/// # Errors
/// Unreadable files or trust bundle, named; otherwise the precise reason
/// the signature is refused, with its code.
pub fn verify(bundle: &Path, sig: &Path, trust: &str, certs: Option<&Path>) -> anyhow::Result<ext_bundle::Signer> {
    let trust = ext_bundle::TrustBundle::load(trust).context("--trust")?;
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let signature = std::fs::read_to_string(sig).with_context(|| format!("reading {}", sig.display()))?;
    let certs_text = certs
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    ext_bundle::verify(
        &archive,
        &signature,
        certs_text.as_deref(),
        &trust,
        std::time::SystemTime::now(),
    )
    .map_err(|e| anyhow::anyhow!("{} with {}: {e} [{}]", bundle.display(), sig.display(), e.code()))
}

/// `ext-runner keygen`.
#[derive(clap::Args)]
pub struct KeygenCommand {
    /// Private key file to create (PKCS#8 PEM, mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Make an Ed25519 key instead of ECDSA P-256.
    #[arg(long)]
    ed25519: bool,
}

impl KeygenCommand {
    /// # Errors
    /// As [`keygen`].
    pub fn run(self) -> anyhow::Result<()> {
        let algorithm = match self.ed25519 {
            true => ext_bundle::KeyAlgorithm::Ed25519,
            false => ext_bundle::KeyAlgorithm::EcdsaP256,
        };
        let (public, fingerprint) = keygen(&self.out, algorithm)?;
        println!("{fingerprint}");
        eprintln!(
            "wrote {} (private, keep it secret) and {} (public: add it to the trust bundle)",
            self.out.display(),
            public.display()
        );
        Ok(())
    }
}

/// `ext-runner sign`.
#[derive(clap::Args)]
pub struct SignCommand {
    bundle: PathBuf,
    /// Private key (PEM: PKCS#8 or SEC1 "EC PRIVATE KEY").
    #[arg(long)]
    key: PathBuf,
    /// Leaf certificate of the key (code signing); writes bundle.pem beside --out.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Intermediate certificates to put in bundle.pem after the leaf.
    #[arg(long, requires = "cert")]
    chain: Option<PathBuf>,
    /// Signature file to write, e.g. bundle.sig.
    #[arg(long)]
    out: PathBuf,
}

impl SignCommand {
    /// # Errors
    /// As [`sign`].
    pub fn run(self) -> anyhow::Result<()> {
        let signed = sign(
            &self.bundle,
            &self.key,
            self.cert.as_deref(),
            self.chain.as_deref(),
            &self.out,
        )?;
        println!("{}", signed.signer);
        match &signed.certificates {
            Some(pem) => eprintln!("wrote {} and {}", signed.signature.display(), pem.display()),
            None => eprintln!("wrote {}", signed.signature.display()),
        }
        Ok(())
    }
}

/// `ext-runner verify`.
#[derive(clap::Args)]
pub struct VerifyCommand {
    bundle: PathBuf,
    /// Signature file (base64).
    #[arg(long)]
    sig: PathBuf,
    /// Trust bundle: a PEM file or inline PEM with PUBLIC KEY and CERTIFICATE (root) blocks.
    #[arg(long, env = "SIGNING_TRUST_BUNDLE", hide_env_values = true)]
    trust: String,
    /// bundle.pem with the leaf certificate and intermediates, for certificate signatures.
    #[arg(long)]
    certs: Option<PathBuf>,
}

impl VerifyCommand {
    /// # Errors
    /// As [`verify`].
    pub fn run(self) -> anyhow::Result<()> {
        let signer = verify(&self.bundle, &self.sig, &self.trust, self.certs.as_deref())?;
        println!("verified: signed by {signer}");
        Ok(())
    }
}
