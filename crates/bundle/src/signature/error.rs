//! [`VerifyError`]: every reason a signature is refused, each with a stable
//! [`code`](VerifyError::code) for logs, metrics and tests.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Digest;

/// Why an archive's signature was refused.
///
/// The `Display` text is for people (it starts with the reason, then the
/// detail); [`VerifyError::code`] is the stable machine-readable part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A bare signature, but the trust bundle lists no public keys.
    #[error(
        "no trusted keys: the trust bundle lists no `PUBLIC KEY`, so a signature without certificates cannot verify"
    )]
    NoTrustedKeys,
    /// A certificate-signed archive, but the trust bundle has no roots.
    #[error(
        "no trusted roots: the signature comes with certificates, but the trust bundle lists no `CERTIFICATE` roots"
    )]
    NoTrustedRoots,
    /// A bare signature that no trusted key made.
    #[error("{}", unknown_signer(*trusted_keys, *checked))]
    UnknownSigner {
        /// Keys in the trust bundle.
        trusted_keys: usize,
        /// How many of them are of the signature's kind and were tried.
        checked: usize,
    },
    /// The signer is known (a certificate names it) but the signature is not
    /// over these archive bytes.
    #[error(
        "bad signature: the signature does not verify under the key of {signer}; the archive changed after it \
         was signed, or another key signed it"
    )]
    BadSignature {
        /// Who was supposed to have signed, e.g. "certificate `CN=Release`".
        signer: String,
    },
    /// A certificate on the path is past its `notAfter`.
    #[error("expired: certificate `{subject}` expired at {} (now {})", timestamp(*not_after), timestamp(*now))]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// Its `notAfter`.
        not_after: SystemTime,
        /// The time verification used.
        now: SystemTime,
    },
    /// A certificate on the path is before its `notBefore`.
    #[error(
        "not yet valid: certificate `{subject}` is valid from {} (now {})",
        timestamp(*not_before),
        timestamp(*now)
    )]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// Its `notBefore`.
        not_before: SystemTime,
        /// The time verification used.
        now: SystemTime,
    },
    /// A certificate is not allowed to do what the path needs it to do.
    #[error("wrong usage: certificate `{subject}` {missing}")]
    WrongUsage {
        /// The certificate's subject.
        subject: String,
        /// What it lacks.
        missing: MissingUsage,
    },
    /// The certificates do not lead to a root in the trust bundle.
    #[error("untrusted root: certificate `{subject}` {}", problem.describe(issuer))]
    UntrustedRoot {
        /// The last certificate reached on the way up.
        subject: String,
        /// The issuer it names.
        issuer: String,
        /// Why the path stops there.
        problem: ChainProblem,
    },
    /// More certificates than allowed.
    #[error(
        "chain too long: {certs} certificates where {} allows at most {max}",
        limited_by.as_ref().map_or_else(
            || "this runner (MAX_CHAIN_CERTS)".to_string(),
            |subject| format!("the pathLenConstraint of `{subject}`")
        )
    )]
    ChainTooLong {
        /// How many certificates: in `bundle.pem`, or below the CA that
        /// limits the path length.
        certs: usize,
        /// The most allowed.
        max: usize,
        /// The CA whose `pathLenConstraint` is exceeded; `None` for the
        /// runner's own cap.
        limited_by: Option<String>,
    },
    /// Something does not decode: the signature file, a certificate, a key.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What, e.g. "signature" or "certificate 2 of the chain".
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive is not the one the caller expected.
    #[error("hash mismatch: expected {expected}, the archive is {actual}")]
    HashMismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The archive's digest.
        actual: Digest,
    },
    /// An algorithm this verifier does not implement.
    #[error("unsupported algorithm: {what} uses {algorithm}; supported: {supported}")]
    UnsupportedAlgorithm {
        /// What uses it.
        what: String,
        /// The algorithm (or curve) found.
        algorithm: String,
        /// What is supported there.
        supported: &'static str,
    },
    /// A certificate has a critical extension this verifier does not
    /// process; RFC 5280 requires refusing it.
    #[error(
        "unsupported extension: certificate `{subject}` has the critical extension {extension}, which this verifier does not process"
    )]
    UnsupportedExtension {
        /// The certificate's subject.
        subject: String,
        /// The extension's name and OID.
        extension: String,
    },
}

impl VerifyError {
    /// A stable snake_case code for the reason, for logs, metrics and
    /// tests: `unknown_signer`, `bad_signature`, `expired`, `not_yet_valid`,
    /// `wrong_usage`, `untrusted_root`, `chain_too_long`, `malformed`,
    /// `hash_mismatch`, `no_trusted_keys`, `no_trusted_roots`,
    /// `unsupported_algorithm`, `unsupported_extension`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoTrustedKeys => "no_trusted_keys",
            VerifyError::NoTrustedRoots => "no_trusted_roots",
            VerifyError::UnknownSigner { .. } => "unknown_signer",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::WrongUsage { .. } => "wrong_usage",
            VerifyError::UntrustedRoot { .. } => "untrusted_root",
            VerifyError::ChainTooLong { .. } => "chain_too_long",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::HashMismatch { .. } => "hash_mismatch",
            VerifyError::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            VerifyError::UnsupportedExtension { .. } => "unsupported_extension",
        }
    }
}

fn unknown_signer(trusted_keys: usize, checked: usize) -> String {
    if checked == 0 {
        format!(
            "unknown signer: none of the {trusted_keys} trusted keys makes this kind of signature \
             (a DER ECDSA signature needs a trusted P-256 key, a 64-byte Ed25519 signature a trusted Ed25519 key, \
             an RSA signature a trusted RSA key of its size)"
        )
    } else {
        // A bare signature names no key, so "another key signed it" and "the
        // archive changed" look the same; say both.
        format!(
            "unknown signer or bad signature: the signature verifies under none of the {checked} trusted keys that \
             could have made it; the archive changed after it was signed, or a key the trust bundle does not list \
             signed it"
        )
    }
}

/// What a certificate lacks for its place on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingUsage {
    /// The leaf has no extendedKeyUsage `codeSigning`, or a CA's
    /// extendedKeyUsage excludes it.
    CodeSigning,
    /// The leaf has a keyUsage without `digitalSignature`.
    DigitalSignature,
    /// An issuing certificate is not a CA (`basicConstraints cA` not true).
    CertificateAuthority,
    /// An issuing CA has a keyUsage without `keyCertSign`.
    KeyCertSign,
    /// The leaf is a CA certificate (`basicConstraints cA` true); webpki
    /// takes only end-entity certificates as leaves.
    EndEntity,
}

impl fmt::Display for MissingUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MissingUsage::CodeSigning => {
                "is not for code signing: its extendedKeyUsage does not include codeSigning (1.3.6.1.5.5.7.3.3)"
            }
            MissingUsage::DigitalSignature => "may not sign: its keyUsage does not include digitalSignature",
            MissingUsage::CertificateAuthority => {
                "issues a certificate on the path but is not a CA (basicConstraints cA is not true)"
            }
            MissingUsage::KeyCertSign => {
                "issues a certificate on the path but its keyUsage does not include keyCertSign"
            }
            MissingUsage::EndEntity => {
                "signs but is a CA certificate (basicConstraints cA is true); the signer must be an end-entity \
                 certificate"
            }
        })
    }
}

/// Why a certificate path stops before a trusted root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    /// No certificate with the issuer's name, in the chain or the trust
    /// bundle.
    IssuerNotFound,
    /// The certificate is self-signed and not in the trust bundle.
    SelfSignedNotTrusted,
    /// Certificates with the issuer's name exist, but none of their keys
    /// verifies this certificate's signature (a forged or re-keyed issuer).
    SignatureMismatch,
    /// A CA above it limits names (`nameConstraints`), and this
    /// certificate's names are outside the limits.
    NameConstraints,
    /// The path runs through a CA key that webpki distrusts outright (its
    /// list of publicly distrusted CAs).
    Distrusted,
}

impl ChainProblem {
    fn describe(self, issuer: &str) -> String {
        match self {
            ChainProblem::IssuerNotFound => format!(
                "was issued by `{issuer}`, which is neither a root in the trust bundle nor in the certificate chain"
            ),
            ChainProblem::SelfSignedNotTrusted => "is self-signed and not a root in the trust bundle".to_string(),
            ChainProblem::SignatureMismatch => format!(
                "names `{issuer}` as its issuer, but its signature verifies under the key of no certificate of that name"
            ),
            ChainProblem::NameConstraints => {
                format!("was issued by `{issuer}`, but its names are outside the nameConstraints of a CA on the path")
            }
            ChainProblem::Distrusted => {
                format!("was issued by `{issuer}`, but the path runs through a CA key that webpki distrusts")
            }
        }
    }
}

/// RFC 3339 UTC for messages; seconds since the epoch when out of range.
fn timestamp(time: SystemTime) -> String {
    match der::DateTime::from_system_time(time) {
        Ok(t) => t.to_string(),
        Err(_) => match time.duration_since(UNIX_EPOCH) {
            Ok(d) => format!("{}s after the Unix epoch", d.as_secs()),
            Err(e) => format!("{}s before the Unix epoch", e.duration().as_secs()),
        },
    }
}
