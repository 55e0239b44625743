//! Detached bundle signatures that standard tools make and check.
//!
//! A signature file is the base64 (standard alphabet, one line) of the raw
//! signature over the archive bytes: a DER ECDSA-P256-SHA256 signature, a
//! 64-byte Ed25519 signature, or an RSA signature with SHA-256 (PKCS#1 v1.5,
//! or PSS with a 32-byte salt). Those are exactly the bytes that
//! `openssl dgst -sha256 -sign key.pem bundle.tar.zst | base64 -w0` (with
//! `-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest` for PSS,
//! `openssl pkeyutl -sign -rawin` for Ed25519) and `cosign sign-blob --key`
//! produce, so bundles signed with them verify here and the other way round.
//! The signer here makes P-256 and Ed25519 signatures only.
//!
//! - [`keys`]: [`SigningKey`] generation, PEM import/export and signing.
//! - [`trust`]: the [`TrustBundle`] of trusted signer keys and root
//!   certificates (`SIGNING_TRUST_BUNDLE`).
//! - [`verify`] / [`verify_expected`]: who signed an archive, or the precise
//!   [`VerifyError`]; certificate paths are built and checked by webpki in
//!   `chain`, with the checks webpki leaves out (attack catalogue B-01), and
//!   [`certificate_bundle`] assembles the signer's `bundle.pem`.
//! - `pem` and `oid`: the PEM blocks and object identifiers all of the
//!   above read.
//!
//! The algorithm always comes from the trusted key or certificate, never from
//! the signature file: a signature is only ever checked the way its
//! supposed signer's key signs.

mod chain;
mod error;
pub mod keys;
mod oid;
mod pem;
pub mod trust;

#[cfg(test)]
mod openssl_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::Digest;
pub use error::{ChainProblem, MissingUsage, VerifyError};
pub use keys::{KeyAlgorithm, KeyError, PublicKey, SigningKey};
pub use pem::PemError;
pub use trust::{TrustBundle, TrustError};

/// Most certificates a signature may bring along (`bundle.pem`): the leaf and
/// up to three intermediates. Real code-signing hierarchies are two or three
/// deep; the cap bounds the parsing and path-building work an untrusted
/// upload can cause. The trusted root comes from the trust bundle and is not
/// counted.
pub const MAX_CHAIN_CERTS: usize = 4;

/// Longest `bundle.pem` accepted, in bytes of PEM text. Four certificates
/// of a few kilobytes each fit many times over; the cap bounds what an
/// uploaded file costs before its certificates are even counted.
pub const MAX_CHAIN_TEXT_BYTES: usize = 64 * 1024;

/// Longest signature file accepted, in bytes of base64 text (whitespace
/// included). A DER P-256 signature is at most 72 bytes (96 in base64); the
/// cap turns a wrong file passed as the signature into a clear error instead
/// of decoding megabytes.
pub const MAX_SIGNATURE_TEXT_BYTES: usize = 4096;

/// Who signed an archive, as established by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A public key listed in the trust bundle.
    Key {
        /// SHA-256 of the key's DER SubjectPublicKeyInfo, as `keygen` prints
        /// it (`openssl pkey -pubin -outform DER | sha256sum` gives the same).
        fingerprint: Digest,
    },
    /// A leaf certificate that chains to a root in the trust bundle.
    Certificate {
        /// The leaf's subject, RFC 4514 style (`CN=Release,O=Acme`).
        subject: String,
        /// SHA-256 of the leaf certificate's DER, like
        /// `openssl x509 -fingerprint -sha256`.
        fingerprint: Digest,
    },
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Key { fingerprint } => write!(f, "key {fingerprint}"),
            Signer::Certificate { subject, fingerprint } => write!(f, "certificate `{subject}` ({fingerprint})"),
        }
    }
}

/// Encodes raw signature bytes as signature-file text: standard base64, one
/// line, no trailing newline.
pub fn encode_signature(signature: &[u8]) -> String {
    BASE64.encode(signature)
}

/// Decodes signature-file text, ignoring whitespace anywhere in it (so
/// wrapped `openssl base64` output and a trailing newline are fine).
///
/// # Errors
/// [`VerifyError::Malformed`] when the text is too long, empty or not base64.
pub fn decode_signature(text: &str) -> Result<Vec<u8>, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed {
        what: "signature".to_string(),
        reason,
    };
    if text.len() > MAX_SIGNATURE_TEXT_BYTES {
        return Err(malformed(format!(
            "it is {} bytes long; a signature file is base64 text of at most {MAX_SIGNATURE_TEXT_BYTES} bytes",
            text.len()
        )));
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(malformed("the signature file is empty".to_string()));
    }
    BASE64
        .decode(compact.as_bytes())
        .map_err(|e| malformed(format!("not standard base64 ({e})")))
}

/// The `bundle.pem` that travels beside a certificate signature, as
/// [`certificate_bundle`] builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBundle {
    /// PEM text: the leaf, then the intermediates.
    pub pem: String,
    /// The leaf's subject, RFC 4514 style.
    pub subject: String,
    /// SHA-256 of the leaf's DER.
    pub fingerprint: Digest,
}

/// Builds `bundle.pem` for a signer: the leaf certificate (the first one in
/// `leaf_pem`, which may already hold the whole chain), then any further
/// certificates of `leaf_pem` and `chain_pem`. Checks what the signer can
/// get wrong before anything is published: only certificates, at most
/// [`MAX_CHAIN_CERTS`], each one decodable, and the leaf certifying
/// `key` (otherwise no verifier could ever accept the signature). Whether
/// the chain reaches a trusted root is for [`verify`] to decide.
///
/// # Errors
/// [`VerifyError::Malformed`] or [`VerifyError::ChainTooLong`] naming the
/// problem.
pub fn certificate_bundle(
    leaf_pem: &str,
    chain_pem: Option<&str>,
    key: &PublicKey,
) -> Result<CertificateBundle, VerifyError> {
    let malformed = |what: &str, reason: String| VerifyError::Malformed {
        what: what.to_string(),
        reason,
    };
    let mut blocks = pem::parse(leaf_pem).map_err(|e| malformed("leaf certificate file", e.to_string()))?;
    if blocks.is_empty() {
        return Err(malformed(
            "leaf certificate file",
            "it has no `CERTIFICATE` block".to_string(),
        ));
    }
    if let Some(chain_pem) = chain_pem {
        blocks.extend(pem::parse(chain_pem).map_err(|e| malformed("chain file", e.to_string()))?);
    }
    if let Some(block) = blocks.iter().find(|b| b.label != trust::CERTIFICATE_LABEL) {
        return Err(malformed(
            "certificate files",
            format!(
                "they hold a `{}` block; only `CERTIFICATE` blocks belong there",
                block.label
            ),
        ));
    }
    if blocks.len() > MAX_CHAIN_CERTS {
        return Err(VerifyError::ChainTooLong {
            certs: blocks.len(),
            max: MAX_CHAIN_CERTS,
            limited_by: None,
        });
    }
    let mut subject = String::new();
    let mut fingerprint = Digest::of(b"");
    let mut text = String::new();
    for (i, block) in blocks.into_iter().enumerate() {
        let encoded = pem::encode(trust::CERTIFICATE_LABEL, &block.der);
        let cert = chain::Cert::parse(block.der)
            .map_err(|reason| malformed(&format!("certificate {} of the chain", i + 1), reason))?;
        if i == 0 {
            match cert.public_key() {
                Ok(leaf_key) if leaf_key == *key => {}
                Ok(leaf_key) => {
                    return Err(malformed(
                        "leaf certificate",
                        format!(
                            "`{}` certifies the key {}, not the signing key {}",
                            cert.subject,
                            leaf_key.fingerprint(),
                            key.fingerprint()
                        ),
                    ));
                }
                Err(problem) => return Err(problem.into_verify_error(&cert.subject)),
            }
            subject = cert.subject.clone();
            fingerprint = Digest::of(&cert.der);
        }
        text.push_str(&encoded);
    }
    Ok(CertificateBundle {
        pem: text,
        subject,
        fingerprint,
    })
}

/// Like [`verify`], after checking that `archive` is the one the caller
/// asked for (its content hash), so a swapped archive with a valid
/// signature of its own is refused too.
///
/// # Errors
/// [`VerifyError::HashMismatch`] first, else as [`verify`].
pub fn verify_expected(
    archive: &[u8],
    expected: &Digest,
    signature_b64: &str,
    certs: Option<&str>,
    trust: &TrustBundle,
    now: SystemTime,
) -> Result<Signer, VerifyError> {
    let actual = Digest::of(archive);
    if actual != *expected {
        return Err(VerifyError::HashMismatch {
            expected: *expected,
            actual,
        });
    }
    verify(archive, signature_b64, certs, trust, now)
}

/// Establishes who signed `archive`.
///
/// Without `certs`, the signature must verify under one of the trust
/// bundle's public keys. With `certs` (PEM: the leaf first, then
/// intermediates), webpki must find a path from the leaf to a root
/// certificate in the trust bundle, every certificate on the path must be
/// valid at `now`, the leaf must allow code signing, and the signature must
/// verify under the leaf's key (which must be one that signs archives: not
/// P-384).
///
/// # Errors
/// A [`VerifyError`] that names the precise reason; [`VerifyError::code`]
/// gives a stable machine-readable code for it.
pub fn verify(
    archive: &[u8],
    signature_b64: &str,
    certs: Option<&str>,
    trust: &TrustBundle,
    now: SystemTime,
) -> Result<Signer, VerifyError> {
    let signature = decode_signature(signature_b64)?;
    match certs {
        None => verify_with_keys(archive, &signature, trust),
        Some(pem_text) => {
            let leaf = chain::validate(pem_text, trust, now)?;
            let key = leaf.public_key().map_err(|problem| match problem {
                // The leaf signs archives, so the archive algorithms apply.
                keys::KeyProblem::Unsupported(algorithm) => VerifyError::UnsupportedAlgorithm {
                    what: format!("the key of certificate `{}`", leaf.subject),
                    algorithm,
                    supported: keys::SIGNER_ALGORITHMS,
                },
                problem => problem.into_verify_error(&leaf.subject),
            })?;
            match key.verify_message(archive, &signature) {
                Ok(()) => Ok(Signer::Certificate {
                    subject: leaf.subject.clone(),
                    fingerprint: Digest::of(&leaf.der),
                }),
                Err(keys::MessageProblem::Encoding(reason)) => Err(VerifyError::Malformed {
                    what: "signature".to_string(),
                    reason,
                }),
                Err(keys::MessageProblem::Mismatch) => Err(VerifyError::BadSignature {
                    signer: format!("certificate `{}`", leaf.subject),
                }),
                Err(keys::MessageProblem::Unsupported(algorithm)) => Err(VerifyError::UnsupportedAlgorithm {
                    what: format!("the key of certificate `{}`", leaf.subject),
                    algorithm: algorithm.to_string(),
                    supported: keys::SIGNER_ALGORITHMS,
                }),
            }
        }
    }
}

/// A bare signature: try every trusted key. The file names no key, so a
/// miss cannot tell "another key signed it" from "the archive changed".
fn verify_with_keys(archive: &[u8], signature: &[u8], trust: &TrustBundle) -> Result<Signer, VerifyError> {
    if trust.keys.is_empty() {
        return Err(VerifyError::NoTrustedKeys);
    }
    let mut encoding_problems: Vec<String> = Vec::new();
    let mut checked = 0;
    for trusted in &trust.keys {
        match trusted.key.verify_message(archive, signature) {
            Ok(()) => {
                return Ok(Signer::Key {
                    fingerprint: trusted.fingerprint,
                });
            }
            Err(keys::MessageProblem::Mismatch) => checked += 1,
            Err(keys::MessageProblem::Encoding(reason)) => {
                if !encoding_problems.contains(&reason) {
                    encoding_problems.push(reason);
                }
            }
            // Trust bundles only admit keys that sign archives.
            Err(keys::MessageProblem::Unsupported(_)) => {}
        }
    }
    // Nothing could even try it: either it is some trusted-elsewhere kind
    // of signature (a DER ECDSA one with only Ed25519 keys trusted, or the
    // other way round), or it is no signature at all.
    if checked == 0 && !looks_like_signature(signature) {
        return Err(VerifyError::Malformed {
            what: "signature".to_string(),
            reason: encoding_problems.join("; "),
        });
    }
    Err(VerifyError::UnknownSigner {
        trusted_keys: trust.keys.len(),
        checked,
    })
}

/// Whether `signature` has the shape of a signature this module makes: a
/// DER ECDSA P-256 signature or 64 Ed25519 bytes.
fn looks_like_signature(signature: &[u8]) -> bool {
    signature.len() == 64 || p256::ecdsa::Signature::from_der(signature).is_ok()
}
