//! Certificate path validation for certificate-signed archives (attack
//! catalogue B-01).
//!
//! `bundle.pem` holds the leaf first, then intermediates, in any order
//! after the leaf. The path is built upwards from the leaf by issuer name,
//! checking each certificate's signature with its issuer's key, until a
//! certificate is signed by a root in the trust bundle. Then every
//! certificate on the path, the root included, must be valid at `now`;
//! every issuer must be a CA allowed to sign certificates and within its
//! `pathLenConstraint`; and the leaf must carry the `codeSigning` extended
//! key usage. Critical extensions this code does not process (name
//! constraints, policies) make the certificate unusable, as RFC 5280
//! requires. There is no revocation checking: use short-lived leaves.

use std::time::SystemTime;

use der::{Decode as _, Encode as _, Reader as _, SliceReader};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use super::error::{ChainProblem, MissingUsage, VerifyError};
use super::keys::{CertSignatureProblem, KeyProblem, PublicKey};
use super::oid;
use super::pem;
use super::trust::{CERTIFICATE_LABEL, TrustBundle};
use super::{MAX_CHAIN_CERTS, MAX_CHAIN_TEXT_BYTES};

/// What may sign certificates, for error messages.
pub(crate) const CERTIFICATE_ALGORITHMS: &str =
    "ECDSA P-256 or P-384 (with SHA-256, SHA-384 or SHA-512) and Ed25519; RSA is not supported";

/// A parsed certificate and what path validation needs from it.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// DER of the subject and issuer names: issuers are matched by these.
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    /// The signed part, exactly as it appears in `der`.
    tbs: Vec<u8>,
    cert: Certificate,
    /// The subject's key, or why it cannot be used.
    key: Result<PublicKey, KeyProblem>,
}

impl Cert {
    /// Parses one DER certificate.
    pub(crate) fn parse(der: Vec<u8>) -> Result<Self, String> {
        let cert = Certificate::from_der(&der).map_err(|e| e.to_string())?;
        // Re-encoding the parsed TBSCertificate could differ from what the
        // issuer signed; take its bytes from the original.
        let tbs = SliceReader::new(&der)
            .and_then(|mut r| {
                r.sequence(|r| {
                    let tbs = r.tlv_bytes()?;
                    let rest = r.remaining_len();
                    r.read_slice(rest)?;
                    Ok(tbs.to_vec())
                })
            })
            .map_err(|e| e.to_string())?;
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err("the signature algorithm differs inside and outside the signed part".to_string());
        }
        let tbs_cert = &cert.tbs_certificate;
        let name_der = |name: &x509_cert::name::Name| name.to_der().map_err(|e| e.to_string());
        let key = tbs_cert
            .subject_public_key_info
            .to_der()
            .map_err(|e| KeyProblem::Invalid(e.to_string()))
            .and_then(|spki| PublicKey::from_spki_der(&spki));
        Ok(Self {
            subject: tbs_cert.subject.to_string(),
            issuer: tbs_cert.issuer.to_string(),
            subject_der: name_der(&tbs_cert.subject)?,
            issuer_der: name_der(&tbs_cert.issuer)?,
            tbs,
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

    /// Checks that `issuer`'s key made this certificate's signature.
    /// `Err(None)` is a plain mismatch; `Err(Some(_))` a more precise reason
    /// (an unsupported algorithm or an undecodable signature).
    fn check_signed_by(&self, issuer: &Cert) -> Result<(), Option<VerifyError>> {
        let key = issuer
            .public_key()
            .map_err(|problem| Some(problem.into_verify_error(&issuer.subject)))?;
        let algorithm = &self.cert.signature_algorithm;
        let signature = self
            .cert
            .signature
            .as_bytes()
            .ok_or_else(|| Some(self.malformed("the signature bit string is not whole bytes".to_string())))?;
        key.verify_certificate(&algorithm.oid, algorithm.parameters.is_some(), &self.tbs, signature)
            .map_err(|problem| match problem {
                CertSignatureProblem::Mismatch => None,
                CertSignatureProblem::Encoding(reason) => Some(self.malformed(format!("its signature: {reason}"))),
                CertSignatureProblem::Unsupported(algorithm) => Some(VerifyError::UnsupportedAlgorithm {
                    what: format!("the signature on certificate `{}`", self.subject),
                    algorithm,
                    supported: CERTIFICATE_ALGORITHMS,
                }),
            })
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

    fn check_critical_extensions(&self) -> Result<(), VerifyError> {
        let extensions = self.cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
        match extensions
            .iter()
            .find(|e| e.critical && !oid::UNDERSTOOD_EXTENSIONS.contains(&e.extn_id))
        {
            Some(e) => Err(VerifyError::UnsupportedExtension {
                subject: self.subject.clone(),
                extension: oid::name(&e.extn_id),
            }),
            None => Ok(()),
        }
    }

    fn wrong_usage(&self, missing: MissingUsage) -> VerifyError {
        VerifyError::WrongUsage {
            subject: self.subject.clone(),
            missing,
        }
    }

    /// The leaf must be for code signing.
    fn check_leaf_usage(&self) -> Result<(), VerifyError> {
        let eku = self
            .extension::<ExtendedKeyUsage>("extendedKeyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if !eku.is_some_and(|eku| eku.0.contains(&oid::CODE_SIGNING)) {
            return Err(self.wrong_usage(MissingUsage::CodeSigning));
        }
        let key_usage = self
            .extension::<KeyUsage>("keyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if key_usage.is_some_and(|ku| !ku.digital_signature()) {
            return Err(self.wrong_usage(MissingUsage::DigitalSignature));
        }
        Ok(())
    }

    /// An issuer must be a CA that may sign certificates, for code
    /// signing, with `below` certificates under it on this path (the leaf
    /// included).
    fn check_issuer_usage(&self, below: usize) -> Result<(), VerifyError> {
        let constraints = self.basic_constraints().map_err(|reason| self.malformed(reason))?;
        let Some(constraints) = constraints.filter(|c| c.ca) else {
            return Err(self.wrong_usage(MissingUsage::CertificateAuthority));
        };
        let key_usage = self
            .extension::<KeyUsage>("keyUsage")
            .map_err(|reason| self.malformed(reason))?;
        if key_usage.is_some_and(|ku| !ku.key_cert_sign()) {
            return Err(self.wrong_usage(MissingUsage::KeyCertSign));
        }
        // pathLenConstraint counts the intermediate CAs below this one,
        // which excludes the leaf.
        if let Some(path_len) = constraints.path_len_constraint {
            let max = usize::from(path_len) + 1;
            if below > max {
                return Err(VerifyError::ChainTooLong {
                    certs: below,
                    max,
                    limited_by: Some(self.subject.clone()),
                });
            }
        }
        // A CA restricted to other purposes cannot vouch for code signing
        // (what openssl and browsers do, beyond RFC 5280).
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

    // Build the path upwards from the leaf. Each step uses up one of the
    // given certificates, so this ends after at most `certs.len()` steps.
    let mut path = vec![0];
    let mut used = vec![false; certs.len()];
    used[0] = true;
    let root = loop {
        let current = &certs[path[path.len() - 1]];
        let mut precise: Option<VerifyError> = None;
        let mut name_matched = false;
        let mut note = |failure: Option<VerifyError>| {
            if precise.is_none() {
                precise = failure;
            }
        };
        let mut found_root = None;
        for root in trust.roots.iter().filter(|r| r.subject_der == current.issuer_der) {
            name_matched = true;
            match current.check_signed_by(root) {
                Ok(()) => {
                    found_root = Some(root);
                    break;
                }
                Err(failure) => note(failure),
            }
        }
        if let Some(root) = found_root {
            break root;
        }
        let mut next = None;
        for (i, candidate) in certs.iter().enumerate() {
            if used[i] || candidate.subject_der != current.issuer_der {
                continue;
            }
            name_matched = true;
            match current.check_signed_by(candidate) {
                Ok(()) => {
                    next = Some(i);
                    break;
                }
                Err(failure) => note(failure),
            }
        }
        if let Some(i) = next {
            used[i] = true;
            path.push(i);
            continue;
        }
        if let Some(error) = precise {
            return Err(error);
        }
        let problem = if name_matched {
            ChainProblem::SignatureMismatch
        } else if current.subject_der == current.issuer_der {
            ChainProblem::SelfSignedNotTrusted
        } else {
            ChainProblem::IssuerNotFound
        };
        return Err(VerifyError::UntrustedRoot {
            subject: current.subject.clone(),
            issuer: current.issuer.clone(),
            problem,
        });
    };

    // The path, leaf first, ending with the trusted root.
    let on_path: Vec<&Cert> = path.iter().map(|&i| &certs[i]).chain(std::iter::once(root)).collect();
    for (depth, cert) in on_path.iter().enumerate() {
        cert.check_critical_extensions()?;
        cert.check_validity(now)?;
        if depth == 0 {
            cert.check_leaf_usage()?;
        } else {
            cert.check_issuer_usage(depth)?;
        }
    }
    Ok(certs.into_iter().next().expect("the chain has a leaf"))
}
