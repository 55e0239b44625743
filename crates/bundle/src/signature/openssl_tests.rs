//! Interoperability with the `openssl` command-line tool: keys and
//! signatures it makes verify here, signatures made here verify there, and
//! a small CA (root → intermediate → leaf) built with `openssl req`/`x509`
//! and extension files drives the certificate cases of attack catalogue
//! B-01. The tests fail (they do not skip) when `openssl` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// Validity of every certificate the tests issue, in days.
const DAYS: u64 = 30;

/// Extension sections for `openssl req -x509 -extensions` and
/// `openssl x509 -req -extfile … -extensions`.
const CA_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[root_pathlen0]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate_server_only]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
extendedKeyUsage = serverAuth
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
[leaf_no_eku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
[leaf_critical_policy]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
certificatePolicies = critical, 1.2.3.4
";

/// The archive every test signs: any bytes do.
const ARCHIVE: &[u8] = b"bundle.tar.zst stand-in: the signature covers these exact bytes\n";

#[derive(Clone, Copy)]
enum Kind {
    P256,
    P384,
    Ed25519,
}

/// A scratch directory with the openssl CA config in it.
struct Pki {
    dir: tempfile::TempDir,
    serial: std::cell::Cell<u32>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.cnf"), CA_CONFIG).unwrap();
        std::fs::write(dir.path().join("archive.bin"), ARCHIVE).unwrap();
        Self {
            dir,
            serial: std::cell::Cell::new(1),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Runs `openssl` in the directory; panics with its stderr on failure.
    fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running `openssl` (is it installed?): {e}"));
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn genkey(&self, name: &str, kind: Kind) {
        let out = format!("{name}.key");
        match kind {
            Kind::P256 => self.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &out,
            ]),
            Kind::P384 => self.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                &out,
            ]),
            Kind::Ed25519 => self.openssl(&["genpkey", "-algorithm", "ed25519", "-out", &out]),
        };
    }

    fn next_serial(&self) -> String {
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        serial.to_string()
    }

    /// A self-signed root `<name>.pem` with a fresh `<name>.key`.
    fn root(&self, name: &str, subject: &str, kind: Kind, section: &str) {
        self.genkey(name, kind);
        let days = DAYS.to_string();
        let serial = self.next_serial();
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-days",
            &days,
            "-set_serial",
            &serial,
            "-config",
            "ca.cnf",
            "-extensions",
            section,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// `<name>.pem` for a fresh `<name>.key`, issued by `issuer`; `digest`
    /// is the hash for an ECDSA issuer (`None` for Ed25519 issuers).
    fn issue(&self, name: &str, subject: &str, kind: Kind, issuer: &str, section: &str, digest: Option<&str>) {
        self.genkey(name, kind);
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-config",
            "ca.cnf",
            "-out",
            &format!("{name}.csr"),
        ]);
        let days = DAYS.to_string();
        let serial = self.next_serial();
        let mut args = vec![
            "x509".to_string(),
            "-req".to_string(),
            "-in".to_string(),
            format!("{name}.csr"),
            "-CA".to_string(),
            format!("{issuer}.pem"),
            "-CAkey".to_string(),
            format!("{issuer}.key"),
            "-set_serial".to_string(),
            serial,
            "-days".to_string(),
            days,
            "-extfile".to_string(),
            "ca.cnf".to_string(),
            "-extensions".to_string(),
            section.to_string(),
            "-out".to_string(),
            format!("{name}.pem"),
        ];
        if let Some(digest) = digest {
            args.push(format!("-{digest}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.openssl(&args);
    }

    /// `bundle.pem`: the named certificates concatenated, leaf first.
    fn chain(&self, names: &[&str]) -> String {
        names.iter().map(|n| self.read(&format!("{n}.pem"))).collect()
    }

    fn trust(&self, names: &[&str]) -> TrustBundle {
        TrustBundle::parse(&self.chain(names)).unwrap()
    }

    /// The base64 signature of the archive by `<key>.key`, made by openssl.
    fn openssl_sign(&self, key: &str, kind: Kind) -> String {
        let key = format!("{key}.key");
        let signature = match kind {
            Kind::Ed25519 => self.openssl(&["pkeyutl", "-sign", "-rawin", "-inkey", &key, "-in", "archive.bin"]),
            Kind::P256 | Kind::P384 => self.openssl(&["dgst", "-sha256", "-sign", &key, "archive.bin"]),
        };
        encode_signature(&signature)
    }

    /// The standard CA: P-256 root → P-384 intermediate (which signs with
    /// SHA-384) → P-256 code-signing leaf.
    fn standard(&self) {
        self.root("root", "/O=Example/CN=Test Root", Kind::P256, "root");
        self.issue(
            "int",
            "/O=Example/CN=Test Intermediate",
            Kind::P384,
            "root",
            "intermediate",
            Some("sha256"),
        );
        self.issue(
            "leaf",
            "/O=Example/CN=Release Signing",
            Kind::P256,
            "int",
            "leaf",
            Some("sha384"),
        );
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn der_fingerprint(pki: &Pki, args: &[&str]) -> Digest {
    Digest::of(&pki.openssl(args))
}

#[test]
fn openssl_p256_signature_verifies_and_fingerprints_agree() {
    let pki = Pki::new();
    pki.genkey("signer", Kind::P256);
    pki.openssl(&["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub.pem"]);
    let trust = TrustBundle::parse(&pki.read("signer.pub.pem")).unwrap();
    let signature = pki.openssl_sign("signer", Kind::P256);
    let signer = verify(ARCHIVE, &signature, None, &trust, now()).unwrap();
    let expected = der_fingerprint(&pki, &["pkey", "-pubin", "-in", "signer.pub.pem", "-outform", "DER"]);
    assert_eq!(signer, Signer::Key { fingerprint: expected });
    // Our key loader reads openssl's PKCS#8 key and agrees on the fingerprint.
    let key = SigningKey::from_pem(&pki.read("signer.key")).unwrap();
    assert_eq!(key.fingerprint(), expected);
}

#[test]
fn openssl_base64_wrapped_signature_verifies() {
    let pki = Pki::new();
    pki.genkey("signer", Kind::P256);
    pki.openssl(&["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub.pem"]);
    pki.openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        "signer.key",
        "-out",
        "archive.sig.der",
        "archive.bin",
    ]);
    // `openssl base64` wraps at 64 columns and ends with a newline.
    let text = String::from_utf8(pki.openssl(&["base64", "-in", "archive.sig.der"])).unwrap();
    assert!(
        text.trim_end().contains('\n'),
        "a DER signature is more than 64 base64 characters: {text}"
    );
    let trust = TrustBundle::parse(&pki.read("signer.pub.pem")).unwrap();
    verify(ARCHIVE, &text, None, &trust, now()).unwrap();
}

#[test]
fn openssl_ed25519_signature_verifies() {
    let pki = Pki::new();
    pki.genkey("signer", Kind::Ed25519);
    pki.openssl(&["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub.pem"]);
    let trust = TrustBundle::parse(&pki.read("signer.pub.pem")).unwrap();
    let signature = pki.openssl_sign("signer", Kind::Ed25519);
    let signer = verify(ARCHIVE, &signature, None, &trust, now()).unwrap();
    let expected = der_fingerprint(&pki, &["pkey", "-pubin", "-in", "signer.pub.pem", "-outform", "DER"]);
    assert_eq!(signer, Signer::Key { fingerprint: expected });
    // Ed25519 is deterministic: our signature with openssl's key is the same.
    let key = SigningKey::from_pem(&pki.read("signer.key")).unwrap();
    assert_eq!(encode_signature(&key.sign(ARCHIVE)), signature);
}

#[test]
fn openssl_sec1_key_with_ec_parameters_signs() {
    let pki = Pki::new();
    // `ecparam -genkey` writes an `EC PARAMETERS` block, then the SEC1 key.
    pki.openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-out", "sec1.key"]);
    assert!(pki.read("sec1.key").contains("EC PRIVATE KEY"));
    let key = SigningKey::from_pem(&pki.read("sec1.key")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
    pki.openssl(&["pkey", "-in", "sec1.key", "-pubout", "-out", "sec1.pub.pem"]);
    let trust = TrustBundle::parse(&pki.read("sec1.pub.pem")).unwrap();
    let signature = encode_signature(&key.sign(ARCHIVE));
    verify(ARCHIVE, &signature, None, &trust, now()).unwrap();
}

#[test]
fn our_signatures_and_keys_work_in_openssl() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let pki = Pki::new();
        let key = SigningKey::generate(algorithm);
        std::fs::write(pki.path("ours.key"), key.to_pkcs8_pem()).unwrap();
        std::fs::write(pki.path("ours.pub.pem"), key.public_key_pem()).unwrap();
        std::fs::write(pki.path("ours.sig"), key.sign(ARCHIVE)).unwrap();
        // openssl accepts our signature under our public key...
        let verified = match algorithm {
            KeyAlgorithm::EcdsaP256 => pki.openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                "ours.pub.pem",
                "-signature",
                "ours.sig",
                "archive.bin",
            ]),
            KeyAlgorithm::Ed25519 => pki.openssl(&[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "ours.pub.pem",
                "-rawin",
                "-in",
                "archive.bin",
                "-sigfile",
                "ours.sig",
            ]),
        };
        assert!(
            String::from_utf8_lossy(&verified).contains("Verified"),
            "{algorithm}: {}",
            String::from_utf8_lossy(&verified)
        );
        // ...reads our private key, derives the same public key...
        let public = pki.openssl(&["pkey", "-in", "ours.key", "-pubout"]);
        assert_eq!(String::from_utf8(public).unwrap(), key.public_key_pem(), "{algorithm}");
        // ...and agrees on the fingerprint.
        let fingerprint = der_fingerprint(&pki, &["pkey", "-pubin", "-in", "ours.pub.pem", "-outform", "DER"]);
        assert_eq!(fingerprint, key.fingerprint(), "{algorithm}");
    }
}

/// B-01: a chain built by openssl (P-256 root, P-384 intermediate signing
/// with SHA-384, code-signing leaf) verifies, and names the leaf.
#[test]
fn b01_openssl_ca_chain_verifies() {
    let pki = Pki::new();
    pki.standard();
    let trust = pki.trust(&["root"]);
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let signer = verify(ARCHIVE, &signature, Some(&pki.chain(&["leaf", "int"])), &trust, now()).unwrap();
    let leaf_der = der_fingerprint(&pki, &["x509", "-in", "leaf.pem", "-outform", "DER"]);
    assert_eq!(
        signer,
        Signer::Certificate {
            subject: "CN=Release Signing,O=Example".to_string(),
            fingerprint: leaf_der,
        }
    );
    // The root may travel in bundle.pem too, and our own signature with the
    // leaf's key is as good as openssl's.
    let ours = encode_signature(&SigningKey::from_pem(&pki.read("leaf.key")).unwrap().sign(ARCHIVE));
    let with_root = pki.chain(&["leaf", "int", "root"]);
    verify(ARCHIVE, &ours, Some(&with_root), &trust, now()).unwrap();
}

/// B-01: an Ed25519 root directly issuing an Ed25519 leaf (openssl signs
/// the archive with `pkeyutl -rawin`).
#[test]
fn b01_openssl_ed25519_chain_verifies() {
    let pki = Pki::new();
    pki.root("root", "/CN=Ed Root", Kind::Ed25519, "root");
    pki.issue("leaf", "/CN=Ed Leaf", Kind::Ed25519, "root", "leaf", None);
    let signature = pki.openssl_sign("leaf", Kind::Ed25519);
    let signer = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["leaf"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap();
    assert!(
        matches!(signer, Signer::Certificate { ref subject, .. } if subject == "CN=Ed Leaf"),
        "{signer:?}"
    );
}

/// B-01 (tampered archive): the certificate names the signer, so the
/// refusal is a bad signature.
#[test]
fn b01_tampered_archive_is_a_bad_signature() {
    let pki = Pki::new();
    pki.standard();
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let mut tampered = ARCHIVE.to_vec();
    tampered[0] ^= 1;
    let err = verify(
        &tampered,
        &signature,
        Some(&pki.chain(&["leaf", "int"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "bad_signature", "{err}");
    assert!(err.to_string().contains("CN=Release Signing"), "{err}");
}

/// B-01 (wrong usage): a leaf for TLS servers, or with no extended key
/// usage at all, may not sign bundles.
#[test]
fn b01_leaf_without_code_signing_is_wrong_usage() {
    for section in ["leaf_server", "leaf_no_eku"] {
        let pki = Pki::new();
        pki.standard();
        pki.issue("other", "/CN=Web Server", Kind::P256, "int", section, Some("sha256"));
        let signature = pki.openssl_sign("other", Kind::P256);
        let err = verify(
            ARCHIVE,
            &signature,
            Some(&pki.chain(&["other", "int"])),
            &pki.trust(&["root"]),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            VerifyError::WrongUsage {
                subject: "CN=Web Server".to_string(),
                missing: MissingUsage::CodeSigning,
            },
            "{section}"
        );
        assert!(err.to_string().contains("codeSigning"), "{err}");
    }
}

/// B-01 (wrong usage): an intermediate restricted to serverAuth cannot
/// vouch for a code-signing leaf; a leaf cannot act as a CA.
#[test]
fn b01_issuers_must_be_code_signing_cas() {
    let pki = Pki::new();
    pki.standard();
    pki.issue(
        "tls_ca",
        "/CN=TLS CA",
        Kind::P256,
        "root",
        "intermediate_server_only",
        Some("sha256"),
    );
    pki.issue(
        "leaf2",
        "/CN=Signed By TLS CA",
        Kind::P256,
        "tls_ca",
        "leaf",
        Some("sha256"),
    );
    let signature = pki.openssl_sign("leaf2", Kind::P256);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["leaf2", "tls_ca"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::WrongUsage {
            subject: "CN=TLS CA".to_string(),
            missing: MissingUsage::CodeSigning,
        }
    );

    // The code-signing leaf "issues" another certificate.
    pki.issue(
        "sub",
        "/CN=Issued By A Leaf",
        Kind::P256,
        "leaf",
        "leaf",
        Some("sha256"),
    );
    let signature = pki.openssl_sign("sub", Kind::P256);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["sub", "leaf", "int"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::WrongUsage {
            subject: "CN=Release Signing,O=Example".to_string(),
            missing: MissingUsage::CertificateAuthority,
        }
    );
}

/// B-01 (untrusted root): another CA, a same-named impostor root, and a
/// self-signed root shipped in bundle.pem are all refused.
#[test]
fn b01_untrusted_root_is_refused() {
    let pki = Pki::new();
    pki.standard();
    pki.root("evil", "/CN=Evil Root", Kind::P256, "root");
    pki.issue("evil_leaf", "/CN=Evil Leaf", Kind::P256, "evil", "leaf", Some("sha256"));
    let signature = pki.openssl_sign("evil_leaf", Kind::P256);
    let trust = pki.trust(&["root"]);

    let err = verify(ARCHIVE, &signature, Some(&pki.chain(&["evil_leaf"])), &trust, now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UntrustedRoot {
            subject: "CN=Evil Leaf".to_string(),
            issuer: "CN=Evil Root".to_string(),
            problem: ChainProblem::IssuerNotFound,
        }
    );

    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["evil_leaf", "evil"])),
        &trust,
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::UntrustedRoot {
            subject: "CN=Evil Root".to_string(),
            issuer: "CN=Evil Root".to_string(),
            problem: ChainProblem::SelfSignedNotTrusted,
        }
    );

    // An impostor with the trusted root's exact name.
    pki.root("impostor", "/O=Example/CN=Test Root", Kind::P256, "root");
    pki.issue(
        "imp_leaf",
        "/CN=Impostor Leaf",
        Kind::P256,
        "impostor",
        "leaf",
        Some("sha256"),
    );
    let signature = pki.openssl_sign("imp_leaf", Kind::P256);
    let err = verify(ARCHIVE, &signature, Some(&pki.chain(&["imp_leaf"])), &trust, now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UntrustedRoot {
            subject: "CN=Impostor Leaf".to_string(),
            issuer: "CN=Test Root,O=Example".to_string(),
            problem: ChainProblem::SignatureMismatch,
        }
    );
    assert_eq!(err.code(), "untrusted_root");

    // Certificates without any trusted root at all.
    let keys_only = TrustBundle::parse(&SigningKey::generate(KeyAlgorithm::EcdsaP256).public_key_pem()).unwrap();
    let err = verify(ARCHIVE, &signature, Some(&pki.chain(&["imp_leaf"])), &keys_only, now()).unwrap_err();
    assert_eq!(err, VerifyError::NoTrustedRoots);
}

/// B-01 (expired leaf, in place of faketime): verification at a `now`
/// after notAfter, or before notBefore, is refused.
#[test]
fn b01_expired_and_not_yet_valid_are_refused() {
    let pki = Pki::new();
    pki.standard();
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let chain = pki.chain(&["leaf", "int"]);
    let trust = pki.trust(&["root"]);
    let later = now() + Duration::from_secs((DAYS + 1) * 24 * 3600);
    let err = verify(ARCHIVE, &signature, Some(&chain), &trust, later).unwrap_err();
    assert_eq!(err.code(), "expired", "{err}");
    assert!(
        matches!(&err, VerifyError::Expired { subject, .. } if subject == "CN=Release Signing,O=Example"),
        "{err}"
    );

    let earlier = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let err = verify(ARCHIVE, &signature, Some(&chain), &trust, earlier).unwrap_err();
    assert_eq!(err.code(), "not_yet_valid", "{err}");
    assert!(err.to_string().contains("2001-09-09T01:46:40Z"), "{err}");
}

/// B-01 (over-long chain): more certificates than MAX_CHAIN_CERTS, and a
/// path longer than a root's pathLenConstraint.
#[test]
fn b01_over_long_chain_is_refused() {
    let pki = Pki::new();
    pki.root("root", "/CN=Deep Root", Kind::P256, "root");
    let mut issuer = "root".to_string();
    let mut names = Vec::new();
    for i in 1..=MAX_CHAIN_CERTS {
        let name = format!("int{i}");
        pki.issue(
            &name,
            &format!("/CN=Intermediate {i}"),
            Kind::P256,
            &issuer,
            "intermediate",
            Some("sha256"),
        );
        names.push(name.clone());
        issuer = name;
    }
    pki.issue("leaf", "/CN=Deep Leaf", Kind::P256, &issuer, "leaf", Some("sha256"));
    names.push("leaf".to_string());
    names.reverse();
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let trust = pki.trust(&["root"]);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = verify(ARCHIVE, &signature, Some(&pki.chain(&all)), &trust, now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::ChainTooLong {
            certs: MAX_CHAIN_CERTS + 1,
            max: MAX_CHAIN_CERTS,
            limited_by: None,
        }
    );
    // Dropping the top intermediate leaves a chain that cannot reach the root.
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&all[..MAX_CHAIN_CERTS])),
        &trust,
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_root", "{err}");

    // pathlen:0 on the root allows no intermediate.
    let pki = Pki::new();
    pki.root("root", "/CN=Flat Root", Kind::P256, "root_pathlen0");
    pki.issue(
        "int",
        "/CN=Not Allowed",
        Kind::P256,
        "root",
        "intermediate",
        Some("sha256"),
    );
    pki.issue("leaf", "/CN=Leaf", Kind::P256, "int", "leaf", Some("sha256"));
    pki.issue("direct", "/CN=Direct Leaf", Kind::P256, "root", "leaf", Some("sha256"));
    let trust = pki.trust(&["root"]);
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let err = verify(ARCHIVE, &signature, Some(&pki.chain(&["leaf", "int"])), &trust, now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::ChainTooLong {
            certs: 2,
            max: 1,
            limited_by: Some("CN=Flat Root".to_string()),
        }
    );
    let signature = pki.openssl_sign("direct", Kind::P256);
    verify(ARCHIVE, &signature, Some(&pki.chain(&["direct"])), &trust, now()).unwrap();
}

/// B-01: a critical extension the verifier does not process (certificate
/// policies) makes the leaf unusable.
#[test]
fn b01_unknown_critical_extension_is_refused() {
    let pki = Pki::new();
    pki.standard();
    pki.issue(
        "pol",
        "/CN=Policy Leaf",
        Kind::P256,
        "int",
        "leaf_critical_policy",
        Some("sha256"),
    );
    let signature = pki.openssl_sign("pol", Kind::P256);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["pol", "int"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported_extension", "{err}");
    assert!(err.to_string().contains("certificatePolicies"), "{err}");
}

/// B-01 (wrong signature algorithm): an RSA root cannot be trusted, and a
/// P-384 leaf cannot sign archives; the algorithm comes from the key.
#[test]
fn b01_unsupported_algorithms_are_named() {
    let pki = Pki::new();
    pki.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.key",
    ]);
    pki.openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "rsa.key",
        "-subj",
        "/CN=RSA Root",
        "-days",
        "30",
        "-config",
        "ca.cnf",
        "-extensions",
        "root",
        "-out",
        "rsa.pem",
    ]);
    let err = TrustBundle::parse(&pki.read("rsa.pem")).unwrap_err();
    assert!(matches!(err, TrustError::UnsupportedKey { index: 1, .. }), "{err}");
    assert!(err.to_string().contains("RSA"), "{err}");

    pki.standard();
    pki.issue("p384leaf", "/CN=P-384 Leaf", Kind::P384, "int", "leaf", Some("sha384"));
    let signature = pki.openssl_sign("p384leaf", Kind::P384);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["p384leaf", "int"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported_algorithm", "{err}");
    assert!(err.to_string().contains("P-384"), "{err}");
}

/// Path building takes the intermediates in any order after the leaf and
/// ignores extras.
#[test]
fn b01_chain_order_after_the_leaf_does_not_matter() {
    let pki = Pki::new();
    pki.standard();
    pki.root("other", "/CN=Unrelated Root", Kind::P256, "root");
    let signature = pki.openssl_sign("leaf", Kind::P256);
    let chain = pki.chain(&["leaf", "other", "int"]);
    verify(ARCHIVE, &signature, Some(&chain), &pki.trust(&["root"]), now()).unwrap();
    // A trust bundle with several roots and a key finds the right root.
    let mut mixed = pki.chain(&["other", "root"]);
    mixed.push_str(&SigningKey::generate(KeyAlgorithm::Ed25519).public_key_pem());
    let trust = TrustBundle::parse(&mixed).unwrap();
    assert_eq!(trust.root_subjects().len(), 2);
    assert_eq!(trust.key_fingerprints().len(), 1);
    verify(ARCHIVE, &signature, Some(&chain), &trust, now()).unwrap();
}

#[test]
fn trust_bundle_refuses_a_leaf_certificate_as_root() {
    let pki = Pki::new();
    pki.standard();
    let err = TrustBundle::parse(&pki.chain(&["root", "leaf"])).unwrap_err();
    assert!(
        matches!(&err, TrustError::NotCa { index: 2, subject, .. } if subject == "CN=Release Signing,O=Example"),
        "{err}"
    );
    let path: &Path = &pki.path("trust.pem");
    std::fs::write(path, pki.chain(&["root", "leaf"])).unwrap();
    let err = TrustBundle::load(path.to_str().unwrap()).unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert!(err.to_string().contains("block 2"), "{err}");
}

#[test]
fn certificate_bundle_checks_what_the_signer_can_get_wrong() {
    let pki = Pki::new();
    pki.standard();
    let key = SigningKey::from_pem(&pki.read("leaf.key")).unwrap();
    let built = certificate_bundle(&pki.read("leaf.pem"), Some(&pki.read("int.pem")), &key.public_key()).unwrap();
    assert_eq!(built.subject, "CN=Release Signing,O=Example");
    let trust = pki.trust(&["root"]);
    let signature = encode_signature(&key.sign(ARCHIVE));
    verify(ARCHIVE, &signature, Some(&built.pem), &trust, now()).unwrap();
    // A full-chain leaf file works without a separate chain file.
    let full = certificate_bundle(&pki.chain(&["leaf", "int"]), None, &key.public_key()).unwrap();
    assert_eq!(full, built);

    let stranger = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let err = certificate_bundle(&pki.read("leaf.pem"), None, &stranger.public_key()).unwrap_err();
    assert!(err.to_string().contains("not the signing key"), "{err}");
    let err = certificate_bundle(&pki.read("leaf.key"), None, &key.public_key()).unwrap_err();
    assert!(err.to_string().contains("`PRIVATE KEY`"), "{err}");
    let err = certificate_bundle(
        &pki.chain(&["leaf", "int", "int", "int", "root"]),
        None,
        &key.public_key(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "chain_too_long");
}
