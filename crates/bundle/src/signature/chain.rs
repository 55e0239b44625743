//! Certificate paths for certificate-signed archives (attack catalogue
//! B-01), built and checked by webpki (`rustls-webpki`).
//!
//! `bundle.pem` holds the leaf first, then intermediates in any order.
//! webpki's `EndEntityCert::verify_for_usage` builds the path from the leaf
//! through those intermediates to a root of the trust bundle: it matches
//! issuers by name, checks every certificate signature ([`ALGORITHMS`]),
//! that the leaf and the intermediates are valid at `now`, that every issuer
//! is a CA within its `pathLenConstraint` and that the leaf is not a CA,
//! applies name constraints, and refuses critical extensions it does not
//! process (as RFC 5280 requires). Its extended-key-usage hook,
//! [`CodeSigningUsage`], refuses a leaf or intermediate whose
//! extendedKeyUsage leaves out codeSigning.
//!
//! What webpki does not do is done here, on every complete path webpki
//! finds (a path refused here lets webpki try another):
//! - the leaf must name codeSigning (webpki's hook cannot demand the
//!   extension of the leaf alone), and its keyUsage, if any, must allow
//!   digitalSignature; every issuer's keyUsage, if any, must allow
//!   keyCertSign (webpki ignores keyUsage);
//! - webpki takes the root as a bare name and key, but the trust bundle
//!   holds it as a certificate, and that certificate still counts: it must
//!   be valid at `now`, its `pathLenConstraint`, keyUsage and
//!   extendedKeyUsage apply, and it may carry no critical extension webpki
//!   would refuse in an intermediate.
//!
//! webpki's errors say what failed, not where; [`locate`] finds the
//! certificate, so that every refusal names it ([`VerifyError`]). There is
//! no revocation checking: use short-lived leaves.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use const_oid::ObjectIdentifier;
use der::{Decode as _, Encode as _, Reader as _, SliceReader};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyPurposeId, KeyPurposeIdIter, VerifiedPath};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use super::error::{ChainProblem, MissingUsage, VerifyError};
use super::keys::{KeyProblem, PublicKey};
use super::oid;
use super::pem;
use super::trust::{CERTIFICATE_LABEL, TrustBundle};
use super::{MAX_CHAIN_CERTS, MAX_CHAIN_TEXT_BYTES};

/// What may sign certificates ([`ALGORITHMS`]), for error messages.
pub(crate) const CERTIFICATE_ALGORITHMS: &str = "ECDSA P-256 or P-384 with SHA-256 or SHA-384, Ed25519, and RSA \
     (2048 to 8192 bits) with SHA-256, SHA-384 or SHA-512, PKCS#1 v1.5 or PSS (MGF1 with the same hash, a salt \
     as long as the hash)";

/// The certificate signature algorithms webpki may use: ring's, without
/// anything of aws-lc-rs (not even when another crate turns it on).
static ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    // RFC 4055 asks verifiers to accept absent parameters as well as NULL.
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The contents of the DER OIDs webpki compares extended key usages by:
/// `id-kp-codeSigning` (1.3.6.1.5.5.7.3.3) and `anyExtendedKeyUsage`
/// (2.5.29.37.0).
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const ANY_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// The extended-key-usage hook webpki asks of the leaf and of every
/// intermediate: an extendedKeyUsage, when there is one, must include
/// codeSigning or anyExtendedKeyUsage (a CA restricted to other purposes
/// cannot vouch for code signing, as in openssl and browsers).
/// `webpki::KeyUsage::required` would demand the extension of the CAs too,
/// which rarely carry one; the leaf's stricter rule is
/// [`Cert::check_leaf_usage`].
struct CodeSigningUsage;

impl webpki::ExtendedKeyUsageValidator for CodeSigningUsage {
    fn validate(&self, usages: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut present = Vec::new();
        for usage in usages {
            let usage = usage?;
            if usage == KeyPurposeId::new(CODE_SIGNING) || usage == KeyPurposeId::new(ANY_EXTENDED_KEY_USAGE) {
                return Ok(());
            }
            present.push(usage.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(CODE_SIGNING),
                present,
            },
        ))
    }
}

/// A parsed certificate: what messages and the checks webpki does not make
/// need from it.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Whether it names itself as its issuer.
    self_issued: bool,
    cert: Certificate,
    /// The subject's key, or why it cannot be used.
    key: Result<PublicKey, KeyProblem>,
}

impl Cert {
    /// Parses one DER certificate.
    pub(crate) fn parse(der: Vec<u8>) -> Result<Self, String> {
        let cert = Certificate::from_der(&der).map_err(|e| e.to_string())?;
        let tbs_cert = &cert.tbs_certificate;
        let key = tbs_cert
            .subject_public_key_info
            .to_der()
            .map_err(|e| KeyProblem::Invalid(e.to_string()))
            .and_then(|spki| PublicKey::from_spki_der(&spki));
        Ok(Self {
            subject: tbs_cert.subject.to_string(),
            issuer: tbs_cert.issuer.to_string(),
            self_issued: tbs_cert.subject == tbs_cert.issuer,
            key,
            der,
            cert,
        })
    }

    /// The subject's public key.
    pub(crate) fn public_key(&self) -> Result<PublicKey, KeyProblem> {
        self.key.clone()
    }

    /// The basicConstraints extension, if present.
    pub(crate) fn basic_constraints(&self) -> Result<Option<BasicConstraints>, String> {
        self.extension::<BasicConstraints>("basicConstraints")
    }

    fn extension<'a, T: der::Decode<'a> + const_oid::AssociatedOid>(&'a self, name: &str) -> Result<Option<T>, String> {
        self.cert
            .tbs_certificate
            .get::<T>()
            .map(|found| found.map(|(_critical, value)| value))
            .map_err(|e| format!("its {name} extension ({}) is invalid or repeated: {e}", T::OID))
    }

    fn malformed(&self, reason: String) -> VerifyError {
        VerifyError::Malformed {
            what: format!("certificate `{}`", self.subject),
            reason,
        }
    }

    fn wrong_usage(&self, missing: MissingUsage) -> VerifyError {
        VerifyError::WrongUsage {
            subject: self.subject.clone(),
            missing,
        }
    }

    /// The first critical extension webpki does not process, by name.
    fn unsupported_critical_extension(&self) -> Option<String> {
        let extensions = self.cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
        extensions
            .iter()
            .find(|e| e.critical && !oid::UNDERSTOOD_EXTENSIONS.contains(&e.extn_id))
            .map(|e| oid::name(&e.extn_id))
    }

    fn check_validity(&self, now: SystemTime) -> Result<(), VerifyError> {
        let validity = &self.cert.tbs_certificate.validity;
        let not_before = validity.not_before.to_system_time();
        let not_after = validity.not_after.to_system_time();
        if now < not_before {
            return Err(VerifyError::NotYetValid {
                subject: self.subject.clone(),
                not_before,
                now,
            });
        }
        if now > not_after {
            return Err(VerifyError::Expired {
                subject: self.subject.clone(),
                not_after,
                now,
            });
        }
        Ok(())
    }

    /// A keyUsage, when present, must allow what the certificate does on
    /// the path.
    fn check_key_usage(&self, allows: fn(&KeyUsage) -> bool, missing: MissingUsage) -> Result<(), VerifyError> {
        let key_usage = self
            .extension::<KeyUsage>("keyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if key_usage.is_some_and(|ku| !allows(&ku)) {
            return Err(self.wrong_usage(missing));
        }
        Ok(())
    }

    /// An extendedKeyUsage, when present, must allow code signing.
    fn check_ca_extended_usage(&self) -> Result<(), VerifyError> {
        let eku = self
            .extension::<ExtendedKeyUsage>("extendedKeyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if eku.is_some_and(|eku| {
            !eku.0
                .iter()
                .any(|u| *u == oid::CODE_SIGNING || *u == oid::ANY_EXTENDED_KEY_USAGE)
        }) {
            return Err(self.wrong_usage(MissingUsage::CodeSigning));
        }
        Ok(())
    }

    /// The leaf must be for code signing: it must name codeSigning itself
    /// (anyExtendedKeyUsage is for CAs), and may not exclude signatures.
    fn check_leaf_usage(&self) -> Result<(), VerifyError> {
        let eku = self
            .extension::<ExtendedKeyUsage>("extendedKeyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if !eku.is_some_and(|eku| eku.0.contains(&oid::CODE_SIGNING)) {
            return Err(self.wrong_usage(MissingUsage::CodeSigning));
        }
        self.check_key_usage(KeyUsage::digital_signature, MissingUsage::DigitalSignature)
    }

    /// What the root must be, as a certificate, with `below` certificates
    /// under it on the path (the leaf included). The trust bundle only
    /// admits CAs.
    fn check_root(&self, below: usize, now: SystemTime) -> Result<(), VerifyError> {
        if let Some(extension) = self.unsupported_critical_extension() {
            return Err(VerifyError::UnsupportedExtension {
                subject: self.subject.clone(),
                extension,
            });
        }
        self.check_validity(now)?;
        self.check_key_usage(KeyUsage::key_cert_sign, MissingUsage::KeyCertSign)?;
        // pathLenConstraint counts the intermediate CAs below this one,
        // which excludes the leaf.
        let constraints = self.basic_constraints().map_err(|reason| self.malformed(reason))?;
        if let Some(path_len) = constraints.and_then(|c| c.path_len_constraint) {
            let max = usize::from(path_len) + 1;
            if below > max {
                return Err(VerifyError::ChainTooLong {
                    certs: below,
                    max,
                    limited_by: Some(self.subject.clone()),
                });
            }
        }
        self.check_ca_extended_usage()
    }
}

/// Validates the certificates of `pem_text` (leaf first) against the trust
/// bundle's roots at `now`; returns the leaf.
pub(crate) fn validate(pem_text: &str, trust: &TrustBundle, now: SystemTime) -> Result<Cert, VerifyError> {
    let malformed = |what: String, reason: String| VerifyError::Malformed { what, reason };
    if pem_text.len() > MAX_CHAIN_TEXT_BYTES {
        return Err(malformed(
            "certificate chain".to_string(),
            format!(
                "it is {} bytes long; at most {MAX_CHAIN_TEXT_BYTES} bytes of PEM are read",
                pem_text.len()
            ),
        ));
    }
    let blocks = pem::parse(pem_text).map_err(|e| malformed("certificate chain".to_string(), e.to_string()))?;
    if let Some((i, block)) = blocks.iter().enumerate().find(|(_, b)| b.label != CERTIFICATE_LABEL) {
        return Err(malformed(
            "certificate chain".to_string(),
            format!(
                "PEM block {} is `{}`; only `CERTIFICATE` blocks belong there",
                i + 1,
                block.label
            ),
        ));
    }
    if blocks.is_empty() {
        return Err(malformed(
            "certificate chain".to_string(),
            "it has no `CERTIFICATE` blocks".to_string(),
        ));
    }
    // Count before parsing: the cap bounds the work an upload can cause.
    if blocks.len() > MAX_CHAIN_CERTS {
        return Err(VerifyError::ChainTooLong {
            certs: blocks.len(),
            max: MAX_CHAIN_CERTS,
            limited_by: None,
        });
    }
    if trust.roots.is_empty() {
        return Err(VerifyError::NoTrustedRoots);
    }
    let certs = blocks
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            Cert::parse(block.der).map_err(|reason| {
                let which = if i == 0 {
                    "the leaf".to_string()
                } else {
                    format!("certificate {}", i + 1)
                };
                malformed(format!("{which} of the certificate chain"), reason)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let ders: Vec<CertificateDer<'_>> = certs.iter().map(|c| CertificateDer::from(c.der.as_slice())).collect();
    check_path(&certs, &ders, trust, now)?;
    Ok(certs.into_iter().next().expect("the chain has a leaf"))
}

/// Has webpki find a path from the leaf (`certs[0]`) through the other
/// certificates to a trusted root, on which [`check_found_path`] finds
/// nothing wrong either.
fn check_path(
    certs: &[Cert],
    ders: &[CertificateDer<'_>],
    trust: &TrustBundle,
    now: SystemTime,
) -> Result<(), VerifyError> {
    let leaf = EndEntityCert::try_from(&ders[0]).map_err(|error| refusal(error, &certs[0], 0, certs, now))?;
    let intermediates = &ders[1..];
    let time = unix_time(now);
    // The first path webpki accepted and we did not, with why.
    let ours: RefCell<Option<VerifyError>> = RefCell::new(None);
    let policy = |path: &VerifiedPath<'_>| {
        check_found_path(path, certs, trust, now).map_err(|refused| {
            ours.borrow_mut().get_or_insert(refused);
            // Only that the path is refused matters to webpki.
            webpki::Error::UnknownIssuer
        })
    };
    match leaf.verify_for_usage(
        ALGORITHMS,
        &trust.anchors,
        intermediates,
        time,
        CodeSigningUsage,
        None,
        Some(&policy),
    ) {
        Ok(_) => Ok(()),
        // A path to a trusted root that only our checks refused explains
        // more than webpki's dead ends do.
        Err(error) => Err(ours.borrow_mut().take().unwrap_or_else(|| {
            let (at, below) = locate(&leaf, intermediates, time);
            refusal(error, &certs[at], below, certs, now)
        })),
    }
}

/// What webpki leaves to us on a path it accepts; see the module comment.
fn check_found_path(
    path: &VerifiedPath<'_>,
    certs: &[Cert],
    trust: &TrustBundle,
    now: SystemTime,
) -> Result<(), VerifyError> {
    certs[0].check_leaf_usage()?;
    let mut below = 1;
    for intermediate in path.intermediate_certificates() {
        let der = intermediate.der();
        let cert = certs[1..]
            .iter()
            .find(|c| c.der.as_slice() == der.as_ref())
            .expect("webpki builds paths from the certificates it is given");
        cert.check_key_usage(KeyUsage::key_cert_sign, MissingUsage::KeyCertSign)?;
        below += 1;
    }
    let root = trust
        .anchors
        .iter()
        .position(|anchor| std::ptr::eq(anchor, path.anchor()))
        .map(|i| &trust.roots[i])
        .expect("webpki's anchor is one of the trust bundle's");
    root.check_root(below, now)
}

/// Where webpki's refusal happened, which its errors do not say: the
/// certificate highest up the chain that webpki still reaches from the
/// leaf, found by asking again with each intermediate as the only trust
/// anchor (webpki takes an anchor's own properties on trust, so what is
/// wrong with that certificate, or with its issuer, no longer stops it).
/// Returns its index in the chain (0, the leaf, when no intermediate is
/// reachable) and how many certificates are below it on that path.
fn locate(leaf: &EndEntityCert<'_>, intermediates: &[CertificateDer<'_>], time: UnixTime) -> (usize, usize) {
    let mut found = (0, 0);
    for (i, der) in intermediates.iter().enumerate() {
        let Ok(anchor) = webpki::anchor_from_trusted_cert(der) else {
            continue;
        };
        let others: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, other)| other.clone())
            .collect();
        if let Ok(path) = leaf.verify_for_usage(ALGORITHMS, &[anchor], &others, time, CodeSigningUsage, None, None) {
            let below = 1 + path.intermediate_certificates().count();
            if below > found.1 {
                found = (i + 1, below);
            }
        }
    }
    found
}

/// webpki's `error`, as the refusal of `cert` (where [`locate`] found it,
/// with `below` certificates under it on the path).
fn refusal(error: webpki::Error, cert: &Cert, below: usize, certs: &[Cert], now: SystemTime) -> VerifyError {
    use webpki::Error as E;
    let untrusted = |problem| VerifyError::UntrustedRoot {
        subject: cert.subject.clone(),
        issuer: cert.issuer.clone(),
        problem,
    };
    let signature_on = || format!("the signature on certificate `{}`", cert.subject);
    let signature_algorithm = || oid::name(&cert.cert.signature_algorithm.oid);
    match error {
        E::CertExpired { not_after, .. } => VerifyError::Expired {
            subject: cert.subject.clone(),
            not_after: system_time(not_after),
            now,
        },
        E::CertNotValidYet { not_before, .. } => VerifyError::NotYetValid {
            subject: cert.subject.clone(),
            not_before: system_time(not_before),
            now,
        },
        E::UnknownIssuer if cert.self_issued => untrusted(ChainProblem::SelfSignedNotTrusted),
        E::UnknownIssuer => untrusted(ChainProblem::IssuerNotFound),
        E::InvalidSignatureForPublicKey => {
            // ring refuses some keys only when it verifies with them (RSA
            // below 2048 bits): name such an issuer key rather than the
            // signature.
            let unusable_issuer = certs.iter().find_map(|c| match &c.key {
                Err(KeyProblem::Unsupported(algorithm)) if c.subject == cert.issuer => Some((c, algorithm)),
                _ => None,
            });
            match unusable_issuer {
                Some((issuer, algorithm)) => VerifyError::UnsupportedAlgorithm {
                    what: format!("the key of certificate `{}`", issuer.subject),
                    algorithm: algorithm.clone(),
                    supported: CERTIFICATE_ALGORITHMS,
                },
                None => untrusted(ChainProblem::SignatureMismatch),
            }
        }
        E::NameConstraintViolation => untrusted(ChainProblem::NameConstraints),
        E::CertDistrusted => untrusted(ChainProblem::Distrusted),
        E::EndEntityUsedAsCa => cert.wrong_usage(MissingUsage::CertificateAuthority),
        E::CaUsedAsEndEntity => cert.wrong_usage(MissingUsage::EndEntity),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => cert.wrong_usage(MissingUsage::CodeSigning),
        E::PathLenConstraintViolated => VerifyError::ChainTooLong {
            certs: below,
            max: cert
                .basic_constraints()
                .ok()
                .flatten()
                .and_then(|c| c.path_len_constraint)
                .map_or(0, |path_len| usize::from(path_len) + 1),
            limited_by: Some(cert.subject.clone()),
        },
        E::UnsupportedCriticalExtension => {
            // webpki refuses such a certificate as soon as it reads it,
            // wherever it is in `bundle.pem`.
            let (cert, extension) = std::iter::once(cert)
                .chain(certs)
                .find_map(|c| c.unsupported_critical_extension().map(|e| (c, e)))
                .unwrap_or_else(|| (cert, "of a kind it does not name".to_string()));
            VerifyError::UnsupportedExtension {
                subject: cert.subject.clone(),
                extension,
            }
        }
        E::UnsupportedSignatureAlgorithmContext(_) => VerifyError::UnsupportedAlgorithm {
            what: signature_on(),
            algorithm: signature_algorithm(),
            supported: CERTIFICATE_ALGORITHMS,
        },
        E::UnsupportedSignatureAlgorithmForPublicKeyContext(context) => VerifyError::UnsupportedAlgorithm {
            what: signature_on(),
            algorithm: format!(
                "{} by a {} key",
                signature_algorithm(),
                key_algorithm(&context.public_key_algorithm_id)
            ),
            supported: CERTIFICATE_ALGORITHMS,
        },
        other => cert.malformed(describe(&other)),
    }
}

/// The readable name of a key algorithm webpki reports as the contents of
/// an AlgorithmIdentifier: the curve of an EC key, else the algorithm.
fn key_algorithm(identifier: &[u8]) -> String {
    let Ok(mut reader) = SliceReader::new(identifier) else {
        return "another kind of".to_string();
    };
    match reader.decode::<ObjectIdentifier>() {
        Ok(algorithm) if algorithm == oid::EC_PUBLIC_KEY => match reader.decode::<ObjectIdentifier>() {
            Ok(curve) => oid::name(&curve),
            Err(_) => oid::name(&algorithm),
        },
        Ok(algorithm) => oid::name(&algorithm),
        Err(_) => "another kind of".to_string(),
    }
}

/// Why webpki cannot use a certificate at all, in words.
fn describe(error: &webpki::Error) -> String {
    use webpki::Error as E;
    match error {
        E::BadDer | E::TrailingData(_) => "webpki cannot read its DER".to_string(),
        E::BadDerTime => "its validity times are not valid DER times".to_string(),
        E::InvalidCertValidity => "its validity ends before it begins".to_string(),
        E::UnsupportedCertVersion => "it is not an X.509 version 3 certificate".to_string(),
        E::SignatureAlgorithmMismatch => {
            "the signature algorithm differs inside and outside the signed part".to_string()
        }
        E::MalformedExtensions | E::ExtensionValueInvalid => {
            "one of its extensions is malformed or repeated".to_string()
        }
        E::InvalidSerialNumber => "its serial number is not a positive integer of at most 20 bytes".to_string(),
        E::MalformedNameConstraint => "its nameConstraints extension is malformed".to_string(),
        other => format!("webpki refuses it ({other:?})"),
    }
}

/// `now` for webpki, in whole seconds; before 1970 nothing is valid anyway.
fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn system_time(time: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_oids_are_the_ones_named() {
        assert_eq!(CODE_SIGNING, oid::CODE_SIGNING.as_bytes());
        assert_eq!(ANY_EXTENDED_KEY_USAGE, oid::ANY_EXTENDED_KEY_USAGE.as_bytes());
    }
}
