//! The real binary's `keygen`, `sign` and `verify`, interoperating with the
//! `openssl` command-line tool (attack catalogue B-01). The exhaustive
//! certificate cases are unit tests in ext-bundle (`signature::openssl_tests`);
//! these show the commands, files and exit statuses a user sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ext-runner"));
    // `verify --trust` falls back to it; tests pass --trust explicitly.
    command.env_remove("SIGNING_TRUST_BUNDLE");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// Runs `openssl` in `dir`; panics with its stderr on failure (the tests
/// need it, they do not skip without it).
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
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

/// Packs the example extension into `dir/bundle.tar.zst`.
fn pack(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle.tar.zst");
    ok(run(bin().arg("pack").arg(hello_dir()).arg("--out").arg(&bundle)));
    bundle
}

fn keygen(out: &Path, ed25519: bool) -> String {
    let mut command = bin();
    command.arg("keygen").arg("--out").arg(out);
    if ed25519 {
        command.arg("--ed25519");
    }
    ok(run(&mut command)).trim().to_string()
}

fn verify(bundle: &Path, sig: &Path, trust: &Path, certs: Option<&Path>) -> Output {
    let mut command = bin();
    command
        .arg("verify")
        .arg(bundle)
        .arg("--sig")
        .arg(sig)
        .arg("--trust")
        .arg(trust);
    if let Some(certs) = certs {
        command.arg("--certs").arg(certs);
    }
    run(&mut command)
}

#[test]
fn keygen_pack_sign_verify_round_trip() {
    for ed25519 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let fingerprint = keygen(&key, ed25519);
        assert!(
            fingerprint.starts_with("sha256:") && fingerprint.len() == 71,
            "{fingerprint}"
        );
        let public = dir.path().join("key.pub.pem");
        assert!(
            std::fs::read_to_string(&public)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        // openssl agrees on the fingerprint (SHA-256 of the DER SubjectPublicKeyInfo).
        let der = openssl(dir.path(), &["pkey", "-pubin", "-in", "key.pub.pem", "-outform", "DER"]);
        assert_eq!(ext_bundle::Digest::of(&der).to_string(), fingerprint);

        let bundle = pack(dir.path());
        let sig = dir.path().join("bundle.sig");
        let signed = ok(run(bin()
            .arg("sign")
            .arg(&bundle)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(&sig)));
        assert!(signed.contains(&fingerprint), "{signed}");
        let text = std::fs::read_to_string(&sig).unwrap();
        assert!(!text.contains('\n'), "one base64 line, like `base64 -w0`: {text:?}");

        let verified = ok(verify(&bundle, &sig, &public, None));
        assert_eq!(verified.trim(), format!("verified: signed by key {fingerprint}"));
    }
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.pem");
    keygen(&key, false);
    let before = std::fs::read(&key).unwrap();
    let stderr = fails(run(bin().arg("keygen").arg("--out").arg(&key)));
    assert!(
        stderr.contains("already exists") && stderr.contains("signer.pem"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // A leftover public key blocks a new private key too.
    std::fs::remove_file(&key).unwrap();
    let stderr = fails(run(bin().arg("keygen").arg("--out").arg(&key)));
    assert!(stderr.contains("signer.pub.pem"), "{stderr}");
    assert!(!key.exists());
}

/// B-01 (tampered): one flipped byte in the archive is refused, naming
/// the reason; so is a signature by a key the trust bundle does not list.
#[test]
fn b01_tampered_bundle_and_unknown_signer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    keygen(&key, false);
    let bundle = pack(dir.path());
    let sig = dir.path().join("bundle.sig");
    ok(run(bin()
        .arg("sign")
        .arg(&bundle)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(&sig)));
    let public = dir.path().join("key.pub.pem");

    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = dir.path().join("tampered.tar.zst");
    std::fs::write(&tampered, bytes).unwrap();
    let stderr = fails(verify(&tampered, &sig, &public, None));
    assert!(stderr.contains("bad signature"), "{stderr}");
    assert!(stderr.contains("tampered.tar.zst"), "{stderr}");

    let stranger = dir.path().join("stranger.pem");
    keygen(&stranger, true);
    let stderr = fails(verify(&bundle, &sig, &dir.path().join("stranger.pub.pem"), None));
    assert!(
        stderr.contains("unknown signer") && stderr.contains("[unknown_signer]"),
        "{stderr}"
    );

    // A signature file that is not base64 is malformed, and says so.
    std::fs::write(&sig, "this is not a signature").unwrap();
    let stderr = fails(verify(&bundle, &sig, &public, None));
    assert!(stderr.contains("malformed signature"), "{stderr}");

    // A trust file with a private key in it is refused, naming the file.
    let stderr = fails(verify(&bundle, &sig, &key, None));
    assert!(stderr.contains("key.pem") && stderr.contains("PRIVATE KEY"), "{stderr}");
}

/// A bundle signed with `openssl dgst -sha256 -sign | base64 -w0` verifies
/// with our CLI, and ours verifies with `openssl dgst -verify`.
#[test]
fn openssl_signed_bundle_verifies_and_ours_verifies_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = pack(dir.path());
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ossl.key",
        ],
    );
    openssl(
        dir.path(),
        &["pkey", "-in", "ossl.key", "-pubout", "-out", "ossl.pub.pem"],
    );
    let der = openssl(dir.path(), &["dgst", "-sha256", "-sign", "ossl.key", "bundle.tar.zst"]);
    let sig = dir.path().join("bundle.sig");
    // What `base64 -w0` writes.
    std::fs::write(&sig, b64(&der)).unwrap();
    let verified = ok(verify(&bundle, &sig, &dir.path().join("ossl.pub.pem"), None));
    assert!(verified.starts_with("verified: signed by key sha256:"), "{verified}");

    // Our sign with openssl's key; openssl checks the decoded signature.
    let ours = dir.path().join("ours.sig");
    ok(run(bin()
        .arg("sign")
        .arg(&bundle)
        .arg("--key")
        .arg(dir.path().join("ossl.key"))
        .arg("--out")
        .arg(&ours)));
    let decoded = unb64(std::fs::read_to_string(&ours).unwrap().trim());
    std::fs::write(dir.path().join("ours.der"), decoded).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "dgst",
            "-sha256",
            "-verify",
            "ossl.pub.pem",
            "-signature",
            "ours.der",
            "bundle.tar.zst",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
}

/// A small CA for the certificate cases.
pub(crate) const CA_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[intermediate]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
[leaf_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
";

/// `name.key` + `name.pem` issued by `issuer` (self-signed when `None`).
pub(crate) fn certificate(dir: &Path, name: &str, subject: &str, issuer: Option<&str>, section: &str) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    match issuer {
        None => openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-subj",
                subject,
                "-days",
                "30",
                "-config",
                "ca.cnf",
                "-extensions",
                section,
                "-out",
                &pem,
            ],
        ),
        Some(issuer) => {
            let csr = format!("{name}.csr");
            openssl(
                dir,
                &[
                    "req", "-new", "-key", &key, "-subj", subject, "-config", "ca.cnf", "-out", &csr,
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &format!("{issuer}.pem"),
                    "-CAkey",
                    &format!("{issuer}.key"),
                    "-days",
                    "30",
                    "-extfile",
                    "ca.cnf",
                    "-extensions",
                    section,
                    "-out",
                    &pem,
                ],
            )
        }
    };
}

/// B-01: an openssl CA (root → intermediate → code-signing leaf) signs
/// through `sign --cert --chain`; `verify --certs` names the leaf. A TLS
/// leaf from the same CA is wrong usage, another CA is an untrusted root.
#[test]
fn b01_certificate_signed_bundle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.cnf"), CA_CONFIG).unwrap();
    certificate(d, "root", "/O=Example/CN=Example Root", None, "root");
    certificate(
        d,
        "int",
        "/O=Example/CN=Example Intermediate",
        Some("root"),
        "intermediate",
    );
    certificate(d, "leaf", "/O=Example/CN=Example Release", Some("int"), "leaf");
    certificate(d, "web", "/O=Example/CN=www.example.com", Some("int"), "leaf_server");
    certificate(d, "evil", "/CN=Evil Root", None, "root");
    certificate(d, "evil_leaf", "/CN=Evil Release", Some("evil"), "leaf");
    let bundle = pack(d);
    let out = d.join("signed").join("bundle.sig");

    let sign = |key: &str, cert: &str, chain: Option<&str>| {
        let mut command = bin();
        command
            .arg("sign")
            .arg(&bundle)
            .arg("--key")
            .arg(d.join(format!("{key}.key")))
            .arg("--cert")
            .arg(d.join(format!("{cert}.pem")))
            .arg("--out")
            .arg(&out);
        if let Some(chain) = chain {
            command.arg("--chain").arg(d.join(format!("{chain}.pem")));
        }
        run(&mut command)
    };
    let certs = d.join("signed").join("bundle.pem");

    let printed = ok(sign("leaf", "leaf", Some("int")));
    assert!(printed.contains("CN=Example Release,O=Example"), "{printed}");
    assert!(certs.is_file(), "bundle.pem is written beside --out");
    let verified = ok(verify(&bundle, &out, &d.join("root.pem"), Some(&certs)));
    assert!(
        verified.starts_with("verified: signed by certificate `CN=Example Release,O=Example`"),
        "{verified}"
    );

    // Without the certificates, the signature names no trusted key.
    let stderr = fails(verify(&bundle, &out, &d.join("root.pem"), None));
    assert!(stderr.contains("no trusted keys"), "{stderr}");

    // A key that the certificate does not certify is caught when signing.
    let stderr = fails(sign("web", "leaf", Some("int")));
    assert!(stderr.contains("not the signing key"), "{stderr}");

    ok(sign("web", "web", Some("int")));
    let stderr = fails(verify(&bundle, &out, &d.join("root.pem"), Some(&certs)));
    assert!(
        stderr.contains("wrong usage") && stderr.contains("codeSigning"),
        "{stderr}"
    );

    ok(sign("evil_leaf", "evil_leaf", None));
    let stderr = fails(verify(&bundle, &out, &d.join("root.pem"), Some(&certs)));
    assert!(
        stderr.contains("untrusted root") && stderr.contains("CN=Evil Root"),
        "{stderr}"
    );

    // openssl signs the archive with the leaf key; bundle.pem from our sign.
    ok(sign("leaf", "leaf", Some("int")));
    let der = openssl(d, &["dgst", "-sha256", "-sign", "leaf.key", "bundle.tar.zst"]);
    std::fs::write(&out, b64(&der)).unwrap();
    ok(verify(&bundle, &out, &d.join("root.pem"), Some(&certs)));
}

#[test]
fn bare_file_names_work_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    pack(dir.path());
    let in_dir = |args: &[&str]| ok(run(bin().args(args).current_dir(dir.path())));
    let fingerprint = in_dir(&["keygen", "--out", "k.pem"]);
    in_dir(&["sign", "bundle.tar.zst", "--key", "k.pem", "--out", "b.sig"]);
    let verified = in_dir(&["verify", "bundle.tar.zst", "--sig", "b.sig", "--trust", "k.pub.pem"]);
    assert!(verified.contains(fingerprint.trim()), "{verified}");
}
