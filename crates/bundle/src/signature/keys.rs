//! Keys: the [`SigningKey`] an author signs archives with (ECDSA P-256 or
//! Ed25519), and the [`PublicKey`] that checks archive signatures (P-256,
//! Ed25519, RSA) or stands for a certificate's key (those and P-384).
//! Certificate signatures are webpki's business (see `chain`); these keys
//! only ever check signatures over archives.
//!
//! Private keys are read from the PEM that `openssl` writes: PKCS#8
//! (`PRIVATE KEY`, from `openssl genpkey`) or SEC1 (`EC PRIVATE KEY`, from
//! `openssl ecparam -genkey`), and written as unencrypted PKCS#8. Public keys
//! are X.509 SubjectPublicKeyInfo (`PUBLIC KEY`), as `openssl pkey -pubout`
//! and `cosign generate-key-pair` write them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, BitStringRef, OctetStringRef, UintRef};
use der::{Encode as _, Reader as _, SliceReader, TagMode, TagNumber};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use spki::SubjectPublicKeyInfoRef;

use super::oid;
use super::pem::{self, PemError};
use crate::Digest;

/// What may sign an archive, for error messages.
pub(crate) const SIGNER_ALGORITHMS: &str = "ECDSA P-256 with SHA-256, Ed25519, or RSA (2048 to 8192 bits) with \
     SHA-256 and PKCS#1 v1.5 or PSS padding (MGF1 with SHA-256, a 32-byte salt)";

/// What a [`SigningKey`] can be, for error messages: the archive signer
/// itself makes no RSA signatures (openssl does, and they verify).
const SIGNING_KEY_ALGORITHMS: &str = "ECDSA P-256 (SHA-256) or Ed25519 keys";

/// The RSA moduli that verify: what ring's (and webpki's) RSA algorithms take.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// PEM label of an unencrypted PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of a SEC1 elliptic-curve private key.
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of a SubjectPublicKeyInfo.
pub(crate) const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The algorithms a [`SigningKey`] can have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256; DER signatures. The default: what
    /// `cosign generate-key-pair` makes and every tool checks.
    #[default]
    EcdsaP256,
    /// Ed25519 (RFC 8032); 64-byte signatures.
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::Ed25519 => "Ed25519",
        })
    }
}

/// Why a private key could not be read. PEM blocks are counted from 1.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    // The messages include the cause, so the causes are not `source`s
    // (anyhow's `{:#}` would print them twice).
    #[error("reading key file `{}`: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The key file was read but its contents are wrong.
    #[error("key file `{}`: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        error: Box<KeyError>,
    },
    /// The text is not PEM.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// No private-key block.
    #[error(
        "no private key: expected a `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1) PEM block, found {}",
        describe_labels(found)
    )]
    NoKey {
        /// The labels of the blocks that were there.
        found: Vec<String>,
    },
    /// More than one private-key block.
    #[error("{count} private keys in one file; a key file holds exactly one")]
    SeveralKeys {
        /// How many.
        count: usize,
    },
    /// An encrypted private key.
    #[error(
        "PEM block {index} (`{label}`) is encrypted; give the signer an unencrypted key \
         (`openssl pkey -in ENCRYPTED.pem -out key.pem`)"
    )]
    Encrypted {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
    },
    /// A key of another algorithm or curve.
    #[error(
        "PEM block {index} (`{label}`) holds a {algorithm} key; bundles are signed here with {SIGNING_KEY_ALGORITHMS}"
    )]
    Unsupported {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
        /// The algorithm or curve found.
        algorithm: String,
    },
    /// The block decodes but is not a valid key.
    #[error("PEM block {index} (`{label}`) is not a valid private key: {reason}")]
    Invalid {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
        /// What the decoder said.
        reason: String,
    },
}

fn describe_labels(labels: &[String]) -> String {
    if labels.is_empty() {
        "no PEM blocks at all".to_string()
    } else {
        labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
    }
}

/// A private key that signs archives.
///
/// `Debug` shows the algorithm and the public key's fingerprint, never the
/// secret.
pub struct SigningKey {
    secret: Secret,
}

enum Secret {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(algorithm: KeyAlgorithm) -> Self {
        let mut rng = rand_core::OsRng;
        let secret = match algorithm {
            KeyAlgorithm::EcdsaP256 => Secret::P256(p256::ecdsa::SigningKey::random(&mut rng)),
            KeyAlgorithm::Ed25519 => Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
        };
        Self { secret }
    }

    /// Reads a private key from PEM text: one `PRIVATE KEY` (PKCS#8, P-256
    /// or Ed25519) or `EC PRIVATE KEY` (SEC1, P-256) block. Other blocks,
    /// such as the `EC PARAMETERS` that `openssl ecparam -genkey` writes
    /// first, are skipped.
    ///
    /// # Errors
    /// [`KeyError`] naming the block: not PEM, no key, several keys,
    /// encrypted, another algorithm or curve, or not a valid key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse(text)?;
        let mut found = None;
        let mut count = 0;
        for (i, block) in blocks.iter().enumerate() {
            let index = i + 1;
            match block.label.as_str() {
                PKCS8_LABEL | SEC1_LABEL => {
                    count += 1;
                    found.get_or_insert((index, block));
                }
                label if label.starts_with("ENCRYPTED ") && label.ends_with("PRIVATE KEY") => {
                    return Err(KeyError::Encrypted {
                        index,
                        label: block.label.clone(),
                    });
                }
                "RSA PRIVATE KEY" | "DSA PRIVATE KEY" => {
                    return Err(KeyError::Unsupported {
                        index,
                        label: block.label.clone(),
                        algorithm: block.label.trim_end_matches(" PRIVATE KEY").to_string(),
                    });
                }
                _ => {}
            }
        }
        if count > 1 {
            return Err(KeyError::SeveralKeys { count });
        }
        let Some((index, block)) = found else {
            return Err(KeyError::NoKey {
                found: blocks.into_iter().map(|b| b.label).collect(),
            });
        };
        let unsupported = |algorithm: String| KeyError::Unsupported {
            index,
            label: block.label.clone(),
            algorithm,
        };
        let invalid = |reason: String| KeyError::Invalid {
            index,
            label: block.label.clone(),
            reason,
        };
        let secret = if block.label == SEC1_LABEL {
            match sec1_curve(&block.der) {
                Some(curve) if curve != oid::SECP256R1 => return Err(unsupported(oid::name(&curve))),
                _ => {}
            }
            let key = p256::SecretKey::from_sec1_der(&block.der)
                .map_err(|_| invalid("not a SEC1 P-256 private key (RFC 5915)".to_string()))?;
            Secret::P256(key.into())
        } else {
            let info = p256::pkcs8::PrivateKeyInfo::try_from(block.der.as_slice())
                .map_err(|e| invalid(format!("not PKCS#8 ({e})")))?;
            let algorithm = info.algorithm.oid;
            if algorithm == oid::EC_PUBLIC_KEY {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                match curve {
                    Some(curve) if curve == oid::SECP256R1 => {}
                    Some(curve) => return Err(unsupported(oid::name(&curve))),
                    None => return Err(unsupported("elliptic-curve (explicit parameters)".to_string())),
                }
                let key = p256::SecretKey::from_pkcs8_der(&block.der)
                    .map_err(|e| invalid(format!("not a P-256 PKCS#8 key ({e})")))?;
                Secret::P256(key.into())
            } else if algorithm == oid::ED25519 {
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(&block.der)
                    .map_err(|e| invalid(format!("not an Ed25519 PKCS#8 key ({e})")))?;
                Secret::Ed25519(key)
            } else {
                return Err(unsupported(oid::name(&algorithm)));
            }
        };
        Ok(Self { secret })
    }

    /// Reads a private key file (see [`SigningKey::from_pem`]).
    ///
    /// # Errors
    /// [`KeyError::Read`] or [`KeyError::InFile`], both naming the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|error| KeyError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_pem(&text).map_err(|e| KeyError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.secret {
            Secret::P256(_) => KeyAlgorithm::EcdsaP256,
            Secret::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The private key as unencrypted PKCS#8 PEM (`PRIVATE KEY`), readable
    /// by `openssl pkey` and `openssl dgst -sign`. Store it with mode 0600.
    pub fn to_pkcs8_pem(&self) -> String {
        let der = match &self.secret {
            Secret::P256(key) => p256::SecretKey::from(key).to_pkcs8_der(),
            // Version 1 (no embedded public key), as openssl writes it: the
            // most widely readable form.
            Secret::Ed25519(key) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
        };
        // Encoding a valid in-memory key cannot fail.
        let der = der.expect("encoding a private key as PKCS#8");
        pem::encode(PKCS8_LABEL, der.as_bytes())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        let key = match &self.secret {
            Secret::P256(key) => Public::P256(*key.verifying_key()),
            Secret::Ed25519(key) => Public::Ed25519(key.verifying_key()),
        };
        PublicKey::new(key)
    }

    /// The public key as `PUBLIC KEY` PEM, for a trust bundle.
    pub fn public_key_pem(&self) -> String {
        self.public_key().to_pem()
    }

    /// SHA-256 of the public key's DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> Digest {
        self.public_key().fingerprint()
    }

    /// Signs `archive`: a DER ECDSA-P256-SHA256 signature (deterministic,
    /// RFC 6979) or a 64-byte Ed25519 signature. Encode it with
    /// [`super::encode_signature`] for a signature file.
    pub fn sign(&self, archive: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(archive);
                signature.to_der().as_bytes().to_vec()
            }
            Secret::Ed25519(key) => key.sign(archive).to_bytes().to_vec(),
        }
    }
}

/// The curve of a SEC1 `ECPrivateKey`: its `namedCurve` when present (openssl
/// writes it), else guessed from the private key's length.
fn sec1_curve(der: &[u8]) -> Option<ObjectIdentifier> {
    let mut reader = SliceReader::new(der).ok()?;
    let (key_len, named) = reader
        .sequence(|r| {
            let _version: u8 = r.decode()?;
            let key: OctetStringRef<'_> = r.decode()?;
            let curve = r.context_specific::<ObjectIdentifier>(TagNumber::N0, TagMode::Explicit)?;
            // The optional public key follows; it is not needed here.
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok((key.as_bytes().len(), curve))
        })
        .ok()?;
    named.or(match key_len {
        32 => Some(oid::SECP256R1),
        48 => Some(oid::SECP384R1),
        66 => Some(ObjectIdentifier::new_unwrap("1.3.132.0.35")),
        _ => None,
    })
}

/// A public key that checks signatures.
#[derive(Clone)]
pub struct PublicKey {
    key: Public,
    /// Canonical DER SubjectPublicKeyInfo (uncompressed EC point), so the
    /// fingerprint does not depend on how a PEM file encoded the point.
    spki_der: Vec<u8>,
}

#[derive(Clone)]
enum Public {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An `rsaEncryption` key: its DER RSAPublicKey (what ring verifies
    /// with) and the modulus size.
    Rsa {
        public_key: Vec<u8>,
        bits: usize,
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm_name(), self.fingerprint())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

/// Why a SubjectPublicKeyInfo is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// Another algorithm or curve.
    Unsupported(String),
    /// Not a valid key encoding.
    Invalid(String),
}

impl KeyProblem {
    /// The error for the key of certificate `subject`.
    pub(crate) fn into_verify_error(self, subject: &str) -> super::VerifyError {
        match self {
            KeyProblem::Unsupported(algorithm) => super::VerifyError::UnsupportedAlgorithm {
                what: format!("the key of certificate `{subject}`"),
                algorithm,
                supported: super::chain::CERTIFICATE_ALGORITHMS,
            },
            KeyProblem::Invalid(reason) => super::VerifyError::Malformed {
                what: format!("the key of certificate `{subject}`"),
                reason,
            },
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Unsupported(algorithm) => write!(f, "a {algorithm} key is not supported"),
            KeyProblem::Invalid(reason) => write!(f, "not a valid public key: {reason}"),
        }
    }
}

/// Why a signature over a message did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageProblem {
    /// The signature bytes are not a signature of this key's kind.
    Encoding(String),
    /// Well-formed, but made by another key or over other bytes.
    Mismatch,
    /// This key's algorithm does not sign archives.
    Unsupported(&'static str),
}

impl PublicKey {
    fn new(key: Public) -> Self {
        // Encoding a valid in-memory key cannot fail.
        let spki_der = match &key {
            Public::P256(k) => p256::PublicKey::from(k).to_public_key_der().map(|d| d.into_vec()),
            Public::P384(k) => p384::PublicKey::from(k).to_public_key_der().map(|d| d.into_vec()),
            Public::Ed25519(k) => k.to_public_key_der().map(|d| d.into_vec()),
            Public::Rsa { public_key, .. } => rsa_spki_der(public_key),
        }
        .expect("encoding a public key as SubjectPublicKeyInfo");
        Self { key, spki_der }
    }

    /// Reads a DER SubjectPublicKeyInfo: EC P-256 or P-384 (named curve),
    /// Ed25519, or RSA (`rsaEncryption`, 2048 to 8192 bits).
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let spki = SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| KeyProblem::Invalid(format!("not a SubjectPublicKeyInfo ({e})")))?;
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyProblem::Invalid("the key bit string is not whole bytes".to_string()))?;
        let algorithm = spki.algorithm.oid;
        let key = if algorithm == oid::EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| KeyProblem::Unsupported("elliptic-curve (explicit parameters)".to_string()))?;
            let invalid = |_| KeyProblem::Invalid(format!("not a point on {}", oid::name(&curve)));
            if curve == oid::SECP256R1 {
                Public::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(invalid)?)
            } else if curve == oid::SECP384R1 {
                Public::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(invalid)?)
            } else {
                return Err(KeyProblem::Unsupported(oid::name(&curve)));
            }
        } else if algorithm == oid::ED25519 {
            if spki.algorithm.parameters.is_some() {
                return Err(KeyProblem::Invalid(
                    "Ed25519 keys have no algorithm parameters (RFC 8410)".to_string(),
                ));
            }
            let bytes: &[u8; 32] = bytes
                .try_into()
                .map_err(|_| KeyProblem::Invalid(format!("an Ed25519 key is 32 bytes, not {}", bytes.len())))?;
            Public::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| KeyProblem::Invalid("not a valid Ed25519 point".to_string()))?,
            )
        } else if algorithm == oid::RSA_ENCRYPTION {
            if !spki.algorithm.parameters.is_some_and(|p| p.is_null()) {
                return Err(KeyProblem::Invalid(
                    "RSA keys have NULL algorithm parameters (RFC 3279)".to_string(),
                ));
            }
            let bits = rsa_modulus_bits(bytes)?;
            if !RSA_BITS.contains(&bits) {
                return Err(KeyProblem::Unsupported(format!("{bits}-bit RSA")));
            }
            Public::Rsa {
                public_key: bytes.to_vec(),
                bits,
            }
        } else {
            return Err(KeyProblem::Unsupported(oid::name(&algorithm)));
        };
        Ok(Self::new(key))
    }

    /// The algorithm, for messages: `ECDSA P-256`, `ECDSA P-384`, `Ed25519`,
    /// `RSA`.
    pub fn algorithm_name(&self) -> &'static str {
        match self.key {
            Public::P256(_) => "ECDSA P-256",
            Public::P384(_) => "ECDSA P-384",
            Public::Ed25519(_) => "Ed25519",
            Public::Rsa { .. } => "RSA",
        }
    }

    /// Whether this key can sign archives (P-256, Ed25519 or RSA).
    pub fn signs_archives(&self) -> bool {
        !matches!(self.key, Public::P384(_))
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo; the same as
    /// `openssl pkey -pubin -in key.pub.pem -outform DER | sha256sum`.
    pub fn fingerprint(&self) -> Digest {
        Digest::of(&self.spki_der)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_LABEL, &self.spki_der)
    }

    /// Checks an archive signature; the key decides the algorithm.
    pub(crate) fn verify_message(&self, message: &[u8], signature: &[u8]) -> Result<(), MessageProblem> {
        match &self.key {
            Public::P256(key) => {
                let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| {
                    MessageProblem::Encoding(format!(
                        "{} bytes that are not a DER ECDSA P-256 signature",
                        signature.len()
                    ))
                })?;
                key.verify(message, &signature).map_err(|_| MessageProblem::Mismatch)
            }
            Public::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
                    MessageProblem::Encoding(format!(
                        "{} bytes, but an Ed25519 signature is 64 bytes",
                        signature.len()
                    ))
                })?;
                key.verify_strict(message, &signature)
                    .map_err(|_| MessageProblem::Mismatch)
            }
            Public::P384(_) => Err(MessageProblem::Unsupported("ECDSA P-384")),
            Public::Rsa { public_key, bits } => {
                let len = bits.div_ceil(8);
                if signature.len() != len {
                    return Err(MessageProblem::Encoding(format!(
                        "{} bytes, but a signature by a {bits}-bit RSA key is {len} bytes",
                        signature.len()
                    )));
                }
                // The key says RSA, not which padding, so both are taken:
                // `openssl dgst -sha256 -sign`, and the same with `-sigopt
                // rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest` (ring
                // takes PSS salts as long as the hash only).
                let verifies = |algorithm: &'static ring::signature::RsaParameters| {
                    ring::signature::UnparsedPublicKey::new(algorithm, public_key)
                        .verify(message, signature)
                        .is_ok()
                };
                if verifies(&ring::signature::RSA_PKCS1_2048_8192_SHA256)
                    || verifies(&ring::signature::RSA_PSS_2048_8192_SHA256)
                {
                    Ok(())
                } else {
                    Err(MessageProblem::Mismatch)
                }
            }
        }
    }
}

/// The SubjectPublicKeyInfo of a DER RSAPublicKey, as `openssl pkey -pubout`
/// writes it: `rsaEncryption` with NULL parameters.
fn rsa_spki_der(public_key: &[u8]) -> spki::Result<Vec<u8>> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: oid::RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        subject_public_key: BitStringRef::from_bytes(public_key)?,
    };
    Ok(spki.to_der()?)
}

/// The size in bits of the modulus of a DER RSAPublicKey (RFC 8017 A.1.1),
/// after checking what ring needs of the key: an odd modulus and an odd
/// public exponent from 3 to 2^33 - 1.
fn rsa_modulus_bits(der: &[u8]) -> Result<usize, KeyProblem> {
    let invalid = |reason: &str| KeyProblem::Invalid(format!("not a usable RSA public key: {reason}"));
    let (modulus, exponent) = SliceReader::new(der)
        .and_then(|mut r| {
            let pair = r.sequence(|r| Ok((r.decode::<UintRef<'_>>()?, r.decode::<UintRef<'_>>()?)))?;
            r.finish(pair)
        })
        .map_err(|e| invalid(&e.to_string()))?;
    let (n, e) = (modulus.as_bytes(), exponent.as_bytes());
    let odd = |bytes: &[u8]| bytes.last().is_some_and(|b| b & 1 == 1);
    if !odd(n) {
        return Err(invalid("the modulus is even"));
    }
    let exponent_bits = e.len() * 8 - e.first().map_or(8, |b| b.leading_zeros() as usize);
    if !odd(e) || e == [1] || exponent_bits > 33 {
        return Err(invalid("the public exponent is not an odd number from 3 to 2^33 - 1"));
    }
    Ok(n.len() * 8 - n[0].leading_zeros() as usize)
}
