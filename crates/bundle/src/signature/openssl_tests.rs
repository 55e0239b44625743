//! Interoperability with the `openssl` command-line tool: keys and
//! signatures it makes verify here, signatures made here verify there, and
//! a small CA (root → intermediate → leaf, EC, Ed25519 or RSA with PKCS#1
//! v1.5 or PSS) built with `openssl req`/`x509` and extension files drives
//! the certificate cases of attack catalogue B-01. The tests fail (they do
//! not skip) when `openssl` is missing.

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
[intermediate_pathlen0]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
[intermediate_no_cert_sign]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature
[intermediate_critical_policy]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
certificatePolicies = critical, 1.2.3.4
[root_server_only]
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
[leaf_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = codeSigning
[leaf_no_digital_signature]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyEncipherment
extendedKeyUsage = codeSigning
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
    /// RSA, 2048 bits.
    Rsa,
}

/// The openssl options of RSA-PSS signatures that ring and webpki take:
/// MGF1 with the signature's hash and a salt as long as the hash.
const PSS: [&str; 4] = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"];

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
            Kind::Rsa => self.openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &out,
            ]),
        };
    }

    fn next_serial(&self) -> String {
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        serial.to_string()
    }

    /// A self-signed root `<name>.pem` with a fresh `<name>.key`.
    fn root(&self, name: &str, subject: &str, kind: Kind, section: &str) {
        self.root_with(name, subject, kind, section, &[]);
    }

    /// [`Pki::root`], with extra signing options for `openssl req`.
    fn root_with(&self, name: &str, subject: &str, kind: Kind, section: &str, sign_args: &[&str]) {
        self.genkey(name, kind);
        let days = DAYS.to_string();
        let serial = self.next_serial();
        let key = format!("{name}.key");
        let out = format!("{name}.pem");
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
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
            &out,
        ];
        args.extend_from_slice(sign_args);
        self.openssl(&args);
    }

    /// `<name>.pem` for a fresh `<name>.key`, issued by `issuer`; `digest`
    /// is the hash for an ECDSA issuer (`None` for Ed25519 issuers).
    fn issue(&self, name: &str, subject: &str, kind: Kind, issuer: &str, section: &str, digest: Option<&str>) {
        let digest = digest.map(|digest| format!("-{digest}"));
        self.issue_with(name, subject, kind, issuer, section, digest.as_slice());
    }

    /// [`Pki::issue`], with the signing options for `openssl x509 -req`
    /// given in full (`-sha384`, [`PSS`]).
    fn issue_with(
        &self,
        name: &str,
        subject: &str,
        kind: Kind,
        issuer: &str,
        section: &str,
        sign_args: &[impl AsRef<str>],
    ) {
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
        args.extend(sign_args.iter().map(|arg| arg.as_ref().to_string()));
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
            // For RSA keys: PKCS#1 v1.5.
            Kind::P256 | Kind::P384 | Kind::Rsa => self.openssl(&["dgst", "-sha256", "-sign", &key, "archive.bin"]),
        };
        encode_signature(&signature)
    }

    /// The base64 RSA-PSS (SHA-256) signature of the archive by `<key>.key`.
    fn openssl_sign_pss(&self, key: &str) -> String {
        let key = format!("{key}.key");
        let mut args = vec!["dgst", "-sha256", "-sign", &key];
        args.extend(PSS);
        args.push("archive.bin");
        encode_signature(&self.openssl(&args))
    }

    /// An all-RSA CA: root → intermediate → code-signing leaf (`leaf`,
    /// `CN=RSA Release`), every certificate signed with PKCS#1 v1.5 or with
    /// PSS; the intermediate signs with SHA-384, the root with SHA-256.
    fn rsa(&self, padding: Padding) {
        let sign = |digest: &'static str| -> Vec<&'static str> {
            let mut args = vec![digest];
            if padding == Padding::Pss {
                args.extend(PSS);
            }
            args
        };
        self.root_with("root", "/O=Example/CN=RSA Root", Kind::Rsa, "root", &sign("-sha256"));
        self.issue_with(
            "int",
            "/O=Example/CN=RSA Intermediate",
            Kind::Rsa,
            "root",
            "intermediate",
            &sign("-sha256"),
        );
        self.issue_with("leaf", "/CN=RSA Release", Kind::Rsa, "int", "leaf", &sign("-sha384"));
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

/// How an RSA key signs, in [`Pki::rsa`] and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Padding {
    Pkcs1,
    Pss,
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

/// B-01 (wrong signature algorithm): a P-384 leaf cannot sign archives
/// (the algorithm comes from the key), an ECDSA signature with SHA-512 on a
/// certificate is not one webpki checks with ring, and an RSA root of
/// fewer than 2048 bits cannot be trusted.
#[test]
fn b01_unsupported_algorithms_are_named() {
    let pki = Pki::new();
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

    pki.issue(
        "sha512leaf",
        "/CN=SHA-512 Leaf",
        Kind::P256,
        "int",
        "leaf",
        Some("sha512"),
    );
    let signature = pki.openssl_sign("sha512leaf", Kind::P256);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["sha512leaf", "int"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported_algorithm", "{err}");
    assert!(
        err.to_string()
            .contains("the signature on certificate `CN=SHA-512 Leaf` uses ecdsa-with-SHA512"),
        "{err}"
    );

    pki.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        "rsa1024.key",
    ]);
    pki.openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "rsa1024.key",
        "-subj",
        "/CN=Small RSA Root",
        "-days",
        "30",
        "-config",
        "ca.cnf",
        "-extensions",
        "root",
        "-out",
        "rsa1024.pem",
    ]);
    let err = TrustBundle::parse(&pki.read("rsa1024.pem")).unwrap_err();
    assert!(
        matches!(&err, TrustError::UnsupportedKey { index: 1, algorithm, .. } if algorithm == "1024-bit RSA"),
        "{err}"
    );
    assert!(err.to_string().contains("2048 to 8192 bits"), "{err}");

    // Nor can such a key issue certificates further down.
    std::fs::copy(pki.path("rsa1024.key"), pki.path("small.key")).unwrap();
    pki.openssl(&[
        "req",
        "-new",
        "-key",
        "small.key",
        "-subj",
        "/CN=Small RSA CA",
        "-config",
        "ca.cnf",
        "-out",
        "small.csr",
    ]);
    pki.openssl(&[
        "x509",
        "-req",
        "-in",
        "small.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-set_serial",
        "99",
        "-days",
        "30",
        "-extfile",
        "ca.cnf",
        "-extensions",
        "intermediate",
        "-out",
        "small.pem",
    ]);
    pki.issue(
        "small_leaf",
        "/CN=Leaf Of Small CA",
        Kind::P256,
        "small",
        "leaf",
        Some("sha256"),
    );
    let signature = pki.openssl_sign("small_leaf", Kind::P256);
    let err = verify(
        ARCHIVE,
        &signature,
        Some(&pki.chain(&["small_leaf", "small"])),
        &pki.trust(&["root"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported_algorithm", "{err}");
    assert!(
        err.to_string()
            .contains("the key of certificate `CN=Small RSA CA` uses 1024-bit RSA"),
        "{err}"
    );
}

/// B-01 with RSA: an openssl-made RSA root → intermediate → code-signing
/// leaf verifies, every certificate and the archive signed with PKCS#1
/// v1.5, or all with PSS; the archive signature takes either padding.
#[test]
fn openssl_rsa_chain_verifies_with_pkcs1_and_pss() {
    for padding in [Padding::Pkcs1, Padding::Pss] {
        let pki = Pki::new();
        pki.rsa(padding);
        let text = String::from_utf8(pki.openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"])).unwrap();
        let expected = match padding {
            Padding::Pkcs1 => "sha384WithRSAEncryption",
            Padding::Pss => "rsassaPss",
        };
        assert!(text.contains(expected), "{padding:?}: {text}");

        let trust = pki.trust(&["root"]);
        let chain = pki.chain(&["leaf", "int"]);
        let leaf_der = der_fingerprint(&pki, &["x509", "-in", "leaf.pem", "-outform", "DER"]);
        for signature in [pki.openssl_sign("leaf", Kind::Rsa), pki.openssl_sign_pss("leaf")] {
            let signer = verify(ARCHIVE, &signature, Some(&chain), &trust, now()).unwrap();
            assert_eq!(
                signer,
                Signer::Certificate {
                    subject: "CN=RSA Release".to_string(),
                    fingerprint: leaf_der,
                },
                "{padding:?}"
            );
            // The certificate names the signer, so another archive is a bad
            // signature, whichever the padding.
            let err = verify(b"another archive", &signature, Some(&chain), &trust, now()).unwrap_err();
            assert_eq!(err.code(), "bad_signature", "{padding:?}: {err}");
        }
        // An RSA signature must be exactly as long as the modulus.
        let err = verify(ARCHIVE, &encode_signature(&[1; 255]), Some(&chain), &trust, now()).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
        assert!(err.to_string().contains("2048-bit RSA key is 256 bytes"), "{err}");
    }
}

/// B-01 with RSA: an RSA leaf for TLS servers, or with no extended key
/// usage, may not sign bundles, whatever the padding.
#[test]
fn openssl_rsa_leaf_without_code_signing_is_wrong_usage() {
    for padding in [Padding::Pkcs1, Padding::Pss] {
        let pki = Pki::new();
        pki.rsa(padding);
        let sign_args: &[&str] = match padding {
            Padding::Pkcs1 => &["-sha256"],
            Padding::Pss => &["-sha256", PSS[0], PSS[1], PSS[2], PSS[3]],
        };
        for section in ["leaf_server", "leaf_no_eku"] {
            pki.issue_with("other", "/CN=RSA Web Server", Kind::Rsa, "int", section, sign_args);
            let signature = match padding {
                Padding::Pkcs1 => pki.openssl_sign("other", Kind::Rsa),
                Padding::Pss => pki.openssl_sign_pss("other"),
            };
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
                    subject: "CN=RSA Web Server".to_string(),
                    missing: MissingUsage::CodeSigning,
                },
                "{padding:?} {section}"
            );
        }
    }
}

/// A bare RSA signature (no certificates) verifies under a trusted RSA
/// `PUBLIC KEY`, with either padding, and the fingerprints agree.
#[test]
fn openssl_rsa_key_signature_verifies() {
    let pki = Pki::new();
    pki.genkey("signer", Kind::Rsa);
    pki.openssl(&["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub.pem"]);
    let trust = TrustBundle::parse(&pki.read("signer.pub.pem")).unwrap();
    let expected = der_fingerprint(&pki, &["pkey", "-pubin", "-in", "signer.pub.pem", "-outform", "DER"]);
    for signature in [pki.openssl_sign("signer", Kind::Rsa), pki.openssl_sign_pss("signer")] {
        let signer = verify(ARCHIVE, &signature, None, &trust, now()).unwrap();
        assert_eq!(signer, Signer::Key { fingerprint: expected });
        let err = verify(b"another archive", &signature, None, &trust, now()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::UnknownSigner {
                trusted_keys: 1,
                checked: 1
            }
        );
    }
    // Our signer makes no RSA signatures: it says so for openssl's key.
    let err = SigningKey::from_pem(&pki.read("signer.key")).unwrap_err();
    assert!(
        matches!(&err, KeyError::Unsupported { algorithm, .. } if algorithm.starts_with("RSA")),
        "{err}"
    );
}

/// webpki's errors do not name the certificate; the refusals still do:
/// the one webpki stopped at, above the leaf too, or the trusted root for
/// what is checked beside webpki.
#[test]
fn refusals_name_the_certificate_at_fault() {
    let refuse = |pki: &Pki, leaf: &str, chain: &[&str], trust: &[&str], at: SystemTime| {
        let signature = pki.openssl_sign(leaf, Kind::P256);
        verify(ARCHIVE, &signature, Some(&pki.chain(chain)), &pki.trust(trust), at).unwrap_err()
    };
    let days = |n: u64| now() + Duration::from_secs(n * 24 * 3600);

    // An intermediate that expires before the leaf, and a root that does.
    let pki = Pki::new();
    pki.standard();
    pki.issue_with(
        "short",
        "/CN=Short Intermediate",
        Kind::P256,
        "root",
        "intermediate",
        &["-days", "10"],
    );
    pki.issue(
        "leaf2",
        "/CN=Leaf Of Short",
        Kind::P256,
        "short",
        "leaf",
        Some("sha256"),
    );
    let err = refuse(&pki, "leaf2", &["leaf2", "short"], &["root"], days(15));
    assert!(
        matches!(&err, VerifyError::Expired { subject, .. } if subject == "CN=Short Intermediate"),
        "{err}"
    );
    pki.root_with("short_root", "/CN=Short Root", Kind::P256, "root", &["-days", "10"]);
    pki.issue(
        "leaf3",
        "/CN=Leaf Of Short Root",
        Kind::P256,
        "short_root",
        "leaf",
        Some("sha256"),
    );
    let err = refuse(&pki, "leaf3", &["leaf3"], &["short_root"], days(15));
    assert!(
        matches!(&err, VerifyError::Expired { subject, .. } if subject == "CN=Short Root"),
        "{err}"
    );

    // pathlen:0 on an intermediate allows no intermediate under it.
    pki.issue(
        "flat",
        "/CN=Flat Intermediate",
        Kind::P256,
        "root",
        "intermediate_pathlen0",
        Some("sha256"),
    );
    pki.issue(
        "under",
        "/CN=Under Flat",
        Kind::P256,
        "flat",
        "intermediate",
        Some("sha256"),
    );
    pki.issue("leaf4", "/CN=Deep Leaf", Kind::P256, "under", "leaf", Some("sha256"));
    let err = refuse(&pki, "leaf4", &["leaf4", "under", "flat"], &["root"], now());
    assert_eq!(
        err,
        VerifyError::ChainTooLong {
            certs: 2,
            max: 1,
            limited_by: Some("CN=Flat Intermediate".to_string()),
        }
    );

    // An intermediate with a critical extension webpki does not process.
    pki.issue(
        "pol",
        "/CN=Policy CA",
        Kind::P256,
        "root",
        "intermediate_critical_policy",
        Some("sha256"),
    );
    pki.issue(
        "leaf5",
        "/CN=Leaf Of Policy CA",
        Kind::P256,
        "pol",
        "leaf",
        Some("sha256"),
    );
    let err = refuse(&pki, "leaf5", &["leaf5", "pol"], &["root"], now());
    assert!(
        matches!(&err, VerifyError::UnsupportedExtension { subject, extension }
            if subject == "CN=Policy CA" && extension.contains("certificatePolicies")),
        "{err}"
    );

    // keyUsage, which webpki ignores: an issuer without keyCertSign, a leaf
    // without digitalSignature.
    pki.issue(
        "nocs",
        "/CN=No CertSign",
        Kind::P256,
        "root",
        "intermediate_no_cert_sign",
        Some("sha256"),
    );
    pki.issue(
        "leaf6",
        "/CN=Leaf Of No CertSign",
        Kind::P256,
        "nocs",
        "leaf",
        Some("sha256"),
    );
    let err = refuse(&pki, "leaf6", &["leaf6", "nocs"], &["root"], now());
    let wrong = |subject: &str, missing| VerifyError::WrongUsage {
        subject: subject.to_string(),
        missing,
    };
    assert_eq!(err, wrong("CN=No CertSign", MissingUsage::KeyCertSign));
    pki.issue(
        "nods",
        "/CN=No DigitalSignature",
        Kind::P256,
        "int",
        "leaf_no_digital_signature",
        Some("sha384"),
    );
    let err = refuse(&pki, "nods", &["nods", "int"], &["root"], now());
    assert_eq!(err, wrong("CN=No DigitalSignature", MissingUsage::DigitalSignature));

    // A CA certificate as the leaf; a root restricted to TLS servers.
    pki.issue(
        "ca_leaf",
        "/CN=CA As Leaf",
        Kind::P256,
        "int",
        "leaf_ca",
        Some("sha384"),
    );
    let err = refuse(&pki, "ca_leaf", &["ca_leaf", "int"], &["root"], now());
    assert_eq!(err, wrong("CN=CA As Leaf", MissingUsage::EndEntity));
    pki.root("tls_root", "/CN=TLS Root", Kind::P256, "root_server_only");
    pki.issue(
        "leaf7",
        "/CN=Leaf Of TLS Root",
        Kind::P256,
        "tls_root",
        "leaf",
        Some("sha256"),
    );
    let err = refuse(&pki, "leaf7", &["leaf7"], &["tls_root"], now());
    assert_eq!(err, wrong("CN=TLS Root", MissingUsage::CodeSigning));
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
