//! The [`TrustBundle`]: which signers the runner believes.
//!
//! `SIGNING_TRUST_BUNDLE` is a path or inline PEM text holding any mix of
//! `PUBLIC KEY` blocks (signer keys: bare signatures must verify under one
//! of them) and `CERTIFICATE` blocks (root CAs: certificate-signed bundles
//! must chain to one of them). Everything is checked when the bundle is
//! loaded, so a bad entry stops the runner at start-up instead of
//! silently trusting less than the operator meant.

use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, TrustAnchor};

use super::chain::{self, Cert};
use super::keys::{KeyProblem, PUBLIC_KEY_LABEL, PublicKey, SigningKey};
use super::pem::{self, PemError};
use crate::Digest;

/// PEM label of a certificate.
pub(crate) const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Why a trust bundle was refused. `origin` is the file (`` `path` ``) or
/// `inline PEM`; blocks are counted from 1.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    // The messages include the cause, so the causes are not `source`s
    // (anyhow's `{:#}` would print them twice).
    /// The file could not be read.
    #[error("reading trust bundle `{}`: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The text is not PEM.
    #[error("trust bundle {origin}: {error}")]
    Pem {
        /// Where the text came from.
        origin: String,
        /// What is wrong.
        error: PemError,
    },
    /// No keys and no certificates.
    #[error("trust bundle {origin} has no `PUBLIC KEY` or `CERTIFICATE` blocks")]
    Empty {
        /// Where the text came from.
        origin: String,
    },
    /// A block that has no place in a trust bundle.
    #[error(
        "trust bundle {origin}, block {index} (`{label}`): only `PUBLIC KEY` and `CERTIFICATE` blocks belong in a \
         trust bundle{}",
        if label.contains("PRIVATE KEY") { "; never give the runner a private key" } else { "" }
    )]
    UnexpectedBlock {
        /// Where the text came from.
        origin: String,
        /// Which block.
        index: usize,
        /// Its label.
        label: String,
    },
    /// A key or certificate that does not decode.
    #[error("trust bundle {origin}, block {index} (`{label}`): {reason}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Which block.
        index: usize,
        /// Its label.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// A key (or a root's key) of an algorithm that cannot verify here.
    #[error("trust bundle {origin}, block {index} (`{label}`): {what} is a {algorithm} key; {supported}")]
    UnsupportedKey {
        /// Where the text came from.
        origin: String,
        /// Which block.
        index: usize,
        /// Its label.
        label: String,
        /// "the key" or "the key of certificate `CN=…`".
        what: String,
        /// The algorithm or curve found.
        algorithm: String,
        /// What is supported there.
        supported: &'static str,
    },
    /// A certificate that is not a CA cannot be a root.
    #[error(
        "trust bundle {origin}, block {index} (`CERTIFICATE`): `{subject}` is not a CA certificate (basicConstraints \
         cA is not true); the trust bundle holds root CAs, and signer keys as `PUBLIC KEY`"
    )]
    NotCa {
        /// Where the text came from.
        origin: String,
        /// Which block.
        index: usize,
        /// The certificate's subject.
        subject: String,
    },
}

/// A trusted signer key.
#[derive(Debug, Clone)]
pub(crate) struct TrustedKey {
    pub key: PublicKey,
    pub fingerprint: Digest,
}

/// The keys and root certificates signatures are checked against.
#[derive(Debug, Clone, Default)]
pub struct TrustBundle {
    /// Signer keys, without duplicates, in the order given.
    pub(crate) keys: Vec<TrustedKey>,
    /// Root certificates, without duplicates, in the order given.
    pub(crate) roots: Vec<Cert>,
    /// The same roots as webpki's trust anchors (name, key and name
    /// constraints), in the same order.
    pub(crate) anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// An empty trust bundle: it trusts nothing until keys are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `SIGNING_TRUST_BUNDLE`: inline PEM when the value (after
    /// leading whitespace) starts with `-----BEGIN`, otherwise a file path.
    ///
    /// # Errors
    /// [`TrustError`] naming the file (or `inline PEM`) and the block.
    pub fn load(value: &str) -> Result<Self, TrustError> {
        if value.trim_start().starts_with("-----BEGIN") {
            Self::parse(value)
        } else {
            Self::load_file(Path::new(value))
        }
    }

    /// Reads a trust bundle file.
    ///
    /// # Errors
    /// [`TrustError`] naming the file and the block.
    pub fn load_file(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|error| TrustError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse_from(&text, format!("`{}`", path.display()))
    }

    /// Parses PEM text given inline.
    ///
    /// # Errors
    /// [`TrustError`] naming the block: not PEM, no keys or certificates, a
    /// private key or other foreign block, an undecodable or unsupported key
    /// or certificate, or a certificate that is not a CA.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        Self::parse_from(text, "inline PEM".to_string())
    }

    fn parse_from(text: &str, origin: String) -> Result<Self, TrustError> {
        let blocks = pem::parse(text).map_err(|error| TrustError::Pem {
            origin: origin.clone(),
            error,
        })?;
        if blocks.is_empty() {
            return Err(TrustError::Empty { origin });
        }
        let mut trust = Self::new();
        for (i, block) in blocks.into_iter().enumerate() {
            let index = i + 1;
            let invalid = |reason: String| TrustError::Invalid {
                origin: origin.clone(),
                index,
                label: block.label.clone(),
                reason,
            };
            let unsupported = |what: String, algorithm: String, supported: &'static str| TrustError::UnsupportedKey {
                origin: origin.clone(),
                index,
                label: block.label.clone(),
                what,
                algorithm,
                supported,
            };
            match block.label.as_str() {
                PUBLIC_KEY_LABEL => {
                    let key = PublicKey::from_spki_der(&block.der).map_err(|problem| match problem {
                        KeyProblem::Unsupported(algorithm) => {
                            unsupported("the key".to_string(), algorithm, super::keys::SIGNER_ALGORITHMS)
                        }
                        KeyProblem::Invalid(reason) => invalid(reason),
                    })?;
                    if !key.signs_archives() {
                        return Err(unsupported(
                            "the key".to_string(),
                            key.algorithm_name().to_string(),
                            super::keys::SIGNER_ALGORITHMS,
                        ));
                    }
                    trust.add_key(key);
                }
                CERTIFICATE_LABEL => {
                    let cert = Cert::parse(block.der.clone())
                        .map_err(|reason| invalid(format!("not an X.509 certificate: {reason}")))?;
                    if let Err(problem) = cert.public_key() {
                        return Err(match problem {
                            KeyProblem::Unsupported(algorithm) => unsupported(
                                format!("the key of `{}`", cert.subject),
                                algorithm,
                                chain::CERTIFICATE_ALGORITHMS,
                            ),
                            KeyProblem::Invalid(reason) => invalid(format!("the key of `{}`: {reason}", cert.subject)),
                        });
                    }
                    match cert.basic_constraints() {
                        Ok(Some(constraints)) if constraints.ca => {}
                        Ok(_) => {
                            return Err(TrustError::NotCa {
                                origin: origin.clone(),
                                index,
                                subject: cert.subject.clone(),
                            });
                        }
                        Err(reason) => return Err(invalid(reason)),
                    }
                    let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(cert.der.as_slice()))
                        .map_err(|e| {
                            invalid(format!(
                                "webpki cannot take `{}` as a trust anchor ({e:?})",
                                cert.subject
                            ))
                        })?
                        .to_owned();
                    if !trust.roots.iter().any(|root| root.der == cert.der) {
                        trust.roots.push(cert);
                        trust.anchors.push(anchor);
                    }
                }
                _ => {
                    return Err(TrustError::UnexpectedBlock {
                        origin: origin.clone(),
                        index,
                        label: block.label,
                    });
                }
            }
        }
        Ok(trust)
    }

    /// Trusts `key` as a signer (for example the runner's generated dev
    /// key). Returns its fingerprint; adding a key twice changes nothing.
    pub fn add_key(&mut self, key: PublicKey) -> Digest {
        let fingerprint = key.fingerprint();
        if !self.keys.iter().any(|k| k.fingerprint == fingerprint) {
            self.keys.push(TrustedKey { key, fingerprint });
        }
        fingerprint
    }

    /// Trusts the public half of `key`; see [`TrustBundle::add_key`].
    pub fn add_signing_key(&mut self, key: &SigningKey) -> Digest {
        self.add_key(key.public_key())
    }

    /// Fingerprints of the trusted signer keys.
    pub fn key_fingerprints(&self) -> Vec<Digest> {
        self.keys.iter().map(|k| k.fingerprint).collect()
    }

    /// Subjects of the trusted root certificates.
    pub fn root_subjects(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.subject.clone()).collect()
    }

    /// Whether it trusts nothing at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.roots.is_empty()
    }
}
