//! The object identifiers this module acts on, and readable names for the
//! ones it reports when it refuses something.

use const_oid::ObjectIdentifier;

/// `id-ecPublicKey`: an elliptic-curve key; the curve is in the parameters.
pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1` / `secp256r1` / NIST P-256.
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` / NIST P-384.
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-Ed25519` (RFC 8410): both the key type and the signature algorithm.
pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `rsaEncryption` (RFC 3279): an RSA key, with NULL parameters.
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `ecdsa-with-SHA256` (RFC 5758).
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// `ecdsa-with-SHA384` (RFC 5758).
pub const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// `ecdsa-with-SHA512` (RFC 5758).
pub const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
/// `id-kp-codeSigning` (RFC 5280 4.2.1.12).
pub const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// `anyExtendedKeyUsage` (RFC 5280 4.2.1.12): a CA not restricted by EKU.
pub const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// The certificate extensions webpki processes (its `remember_cert_extension`:
/// keyUsage, subjectAltName, basicConstraints, nameConstraints,
/// cRLDistributionPoints, extendedKeyUsage and the SCT list). webpki refuses
/// a leaf or intermediate with any other extension marked critical (RFC 5280
/// 4.2) without saying which; this list names it, and applies the same rule
/// to the trusted roots, which webpki reads as bare trust anchors.
pub const UNDERSTOOD_EXTENSIONS: [ObjectIdentifier; 7] = [
    ObjectIdentifier::new_unwrap("2.5.29.15"),               // keyUsage
    ObjectIdentifier::new_unwrap("2.5.29.17"),               // subjectAltName
    ObjectIdentifier::new_unwrap("2.5.29.19"),               // basicConstraints
    ObjectIdentifier::new_unwrap("2.5.29.30"),               // nameConstraints
    ObjectIdentifier::new_unwrap("2.5.29.31"),               // cRLDistributionPoints
    ObjectIdentifier::new_unwrap("2.5.29.37"),               // extendedKeyUsage
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2"), // signed certificate timestamps
];

/// A readable name for an OID in an error message; the dotted form for
/// anything not listed.
pub fn name(oid: &ObjectIdentifier) -> String {
    let known = [
        (EC_PUBLIC_KEY, "id-ecPublicKey"),
        (SECP256R1, "P-256"),
        (SECP384R1, "P-384"),
        (ED25519, "Ed25519"),
        (ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
        (ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
        (CODE_SIGNING, "codeSigning"),
        (ANY_EXTENDED_KEY_USAGE, "anyExtendedKeyUsage"),
        (ObjectIdentifier::new_unwrap("2.5.29.14"), "subjectKeyIdentifier"),
        (ObjectIdentifier::new_unwrap("2.5.29.35"), "authorityKeyIdentifier"),
        (ObjectIdentifier::new_unwrap("2.5.29.30"), "nameConstraints"),
        (ObjectIdentifier::new_unwrap("2.5.29.32"), "certificatePolicies"),
        (ObjectIdentifier::new_unwrap("2.5.29.36"), "policyConstraints"),
        (ObjectIdentifier::new_unwrap("2.5.29.54"), "inhibitAnyPolicy"),
        (ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.1"), "P-192"),
        (ObjectIdentifier::new_unwrap("1.3.132.0.35"), "P-521"),
        (ObjectIdentifier::new_unwrap("1.3.101.113"), "Ed448"),
        (ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"), "ecdsa-with-SHA1"),
        (ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
        (RSA_ENCRYPTION, "RSA"),
        (
            ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5"),
            "sha1WithRSAEncryption",
        ),
        (ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"), "RSASSA-PSS"),
        (
            ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            "sha256WithRSAEncryption",
        ),
        (
            ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12"),
            "sha384WithRSAEncryption",
        ),
        (
            ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13"),
            "sha512WithRSAEncryption",
        ),
        (ObjectIdentifier::new_unwrap("1.2.840.10040.4.1"), "DSA"),
    ];
    known
        .iter()
        .find(|(known, _)| known == oid)
        .map_or_else(|| oid.to_string(), |(_, name)| format!("{name} ({oid})"))
}
