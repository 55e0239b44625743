//! Keys, signature files and trust bundles without external tools; the
//! certificate cases and openssl interoperability are in `openssl_tests`.

use std::time::SystemTime;

use p256::pkcs8::EncodePublicKey as _;

use super::*;

const ARCHIVE: &[u8] = b"the archive bytes";

fn trust_of(keys: &[&SigningKey]) -> TrustBundle {
    let pem: String = keys.iter().map(|k| k.public_key_pem()).collect();
    TrustBundle::parse(&pem).unwrap()
}

fn sign_b64(key: &SigningKey, archive: &[u8]) -> String {
    encode_signature(&key.sign(archive))
}

#[test]
fn own_keys_sign_and_verify() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(algorithm);
        let other = SigningKey::generate(KeyAlgorithm::EcdsaP256);
        let trust = trust_of(&[&other, &key]);
        let signer = verify(ARCHIVE, &sign_b64(&key, ARCHIVE), None, &trust, SystemTime::now()).unwrap();
        assert_eq!(
            signer,
            Signer::Key {
                fingerprint: key.fingerprint()
            },
            "{algorithm}"
        );
        assert_eq!(signer.to_string(), format!("key {}", key.fingerprint()));
    }
}

#[test]
fn signature_shapes() {
    let p256 = SigningKey::generate(KeyAlgorithm::EcdsaP256).sign(ARCHIVE);
    // DER: SEQUENCE of two INTEGERs, 70 to 72 bytes for P-256 in practice.
    assert_eq!(p256[0], 0x30);
    assert!((8..=72).contains(&p256.len()), "{}", p256.len());
    assert_eq!(SigningKey::generate(KeyAlgorithm::Ed25519).sign(ARCHIVE).len(), 64);
}

#[test]
fn pkcs8_pem_round_trips_and_signing_is_deterministic() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(algorithm);
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.algorithm(), algorithm);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(again.sign(ARCHIVE), key.sign(ARCHIVE), "{algorithm}");
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }
}

#[test]
fn sec1_p256_key_is_read_and_other_curves_are_named() {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let sec1 = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let key = SigningKey::from_pem(&sec1).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
    let expected = Digest::of(secret.public_key().to_public_key_der().unwrap().as_bytes());
    assert_eq!(key.fingerprint(), expected);

    let p384 = p384::SecretKey::random(&mut rand_core::OsRng);
    let der = p384.to_sec1_der().unwrap();
    let err = SigningKey::from_pem(&pem::encode("EC PRIVATE KEY", &der)).unwrap_err();
    assert!(
        matches!(&err, KeyError::Unsupported { algorithm, .. } if algorithm.contains("P-384")),
        "{err}"
    );
}

#[test]
fn private_key_errors_name_the_block() {
    let public_only = SigningKey::generate(KeyAlgorithm::EcdsaP256).public_key_pem();
    let err = SigningKey::from_pem(&public_only).unwrap_err();
    assert_eq!(err.to_string().matches("`PUBLIC KEY`").count(), 1, "{err}");
    assert!(matches!(err, KeyError::NoKey { .. }), "{err}");
    assert!(matches!(SigningKey::from_pem("").unwrap_err(), KeyError::NoKey { found } if found.is_empty()));

    let two = format!(
        "{}{}",
        SigningKey::generate(KeyAlgorithm::EcdsaP256).to_pkcs8_pem(),
        SigningKey::generate(KeyAlgorithm::Ed25519).to_pkcs8_pem()
    );
    assert!(matches!(
        SigningKey::from_pem(&two).unwrap_err(),
        KeyError::SeveralKeys { count: 2 }
    ));

    let encrypted = pem::encode("ENCRYPTED PRIVATE KEY", b"\x30\x00");
    let err = SigningKey::from_pem(&encrypted).unwrap_err();
    assert!(matches!(err, KeyError::Encrypted { index: 1, .. }), "{err}");
    assert!(err.to_string().contains("openssl pkey"), "{err}");

    let rsa = pem::encode("RSA PRIVATE KEY", b"\x30\x00");
    let err = SigningKey::from_pem(&rsa).unwrap_err();
    assert!(
        matches!(&err, KeyError::Unsupported { algorithm, .. } if algorithm == "RSA"),
        "{err}"
    );

    let junk = format!("{public_only}{}", pem::encode("PRIVATE KEY", b"junk"));
    let err = SigningKey::from_pem(&junk).unwrap_err();
    assert!(matches!(err, KeyError::Invalid { index: 2, .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pem");
    let err = SigningKey::load(&missing).unwrap_err();
    assert!(err.to_string().contains("absent.pem"), "{err}");
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, public_only).unwrap();
    let err = SigningKey::load(&bad).unwrap_err();
    assert!(
        err.to_string().contains("bad.pem") && err.to_string().contains("no private key"),
        "{err}"
    );
}

#[test]
fn debug_never_shows_the_secret() {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let debug = format!("{key:?}");
    assert!(
        debug.contains("Ed25519") && debug.contains(&key.fingerprint().hex()),
        "{debug}"
    );
    let secret_b64 = key.to_pkcs8_pem();
    let secret_line = secret_b64.lines().nth(1).unwrap();
    assert!(!debug.contains(secret_line), "{debug}");
}

#[test]
fn tampered_archive_or_other_signer_is_refused() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let trust = trust_of(&[&key]);
    let signature = sign_b64(&key, ARCHIVE);
    let err = verify(b"the archive bytez", &signature, None, &trust, SystemTime::now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownSigner {
            trusted_keys: 1,
            checked: 1
        }
    );
    assert_eq!(err.code(), "unknown_signer");
    assert!(err.to_string().contains("bad signature"), "{err}");

    let stranger = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let err = verify(ARCHIVE, &sign_b64(&stranger, ARCHIVE), None, &trust, SystemTime::now()).unwrap_err();
    assert_eq!(err.code(), "unknown_signer");
}

/// The algorithm comes from the key: an Ed25519 signature checked against
/// P-256 keys only is an unknown signer, not something to reinterpret.
#[test]
fn signature_of_an_untrusted_kind_is_an_unknown_signer() {
    let p256 = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let ed = SigningKey::generate(KeyAlgorithm::Ed25519);
    let err = verify(
        ARCHIVE,
        &sign_b64(&ed, ARCHIVE),
        None,
        &trust_of(&[&p256]),
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownSigner {
            trusted_keys: 1,
            checked: 0
        }
    );
    let err = verify(
        ARCHIVE,
        &sign_b64(&p256, ARCHIVE),
        None,
        &trust_of(&[&ed]),
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unknown_signer", "{err}");
}

#[test]
fn malformed_signature_files() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let trust = trust_of(&[&key]);
    let now = SystemTime::now();
    let cases = [
        ("", "empty"),
        ("  \n", "empty"),
        ("not base64!", "base64"),
        ("AAAA", "DER"),
        (&"A".repeat(MAX_SIGNATURE_TEXT_BYTES + 4), "at most"),
    ];
    for (text, needle) in cases {
        let err = verify(ARCHIVE, text, None, &trust, now).unwrap_err();
        assert_eq!(err.code(), "malformed", "{text:?}: {err}");
        assert!(err.to_string().contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn signature_text_tolerates_whitespace() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let signature = sign_b64(&key, ARCHIVE);
    let wrapped = format!("{}\n{}\n", &signature[..40], &signature[40..]);
    verify(ARCHIVE, &wrapped, None, &trust_of(&[&key]), SystemTime::now()).unwrap();
    assert_eq!(decode_signature(&wrapped).unwrap(), key.sign(ARCHIVE));
}

#[test]
fn empty_trust_and_hash_mismatch() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let signature = sign_b64(&key, ARCHIVE);
    let err = verify(ARCHIVE, &signature, None, &TrustBundle::new(), SystemTime::now()).unwrap_err();
    assert_eq!(err, VerifyError::NoTrustedKeys);

    let trust = trust_of(&[&key]);
    let wrong = Digest::of(b"another archive");
    let err = verify_expected(ARCHIVE, &wrong, &signature, None, &trust, SystemTime::now()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::HashMismatch {
            expected: wrong,
            actual: Digest::of(ARCHIVE)
        }
    );
    assert_eq!(err.code(), "hash_mismatch");
    let signer = verify_expected(
        ARCHIVE,
        &Digest::of(ARCHIVE),
        &signature,
        None,
        &trust,
        SystemTime::now(),
    );
    assert!(signer.is_ok(), "{signer:?}");
}

#[test]
fn dev_key_can_be_trusted_programmatically() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let mut trust = TrustBundle::new();
    assert!(trust.is_empty());
    let fingerprint = trust.add_signing_key(&key);
    assert_eq!(trust.add_key(key.public_key()), fingerprint);
    assert_eq!(trust.key_fingerprints(), vec![fingerprint]);
    verify(ARCHIVE, &sign_b64(&key, ARCHIVE), None, &trust, SystemTime::now()).unwrap();
}

#[test]
fn trust_bundle_errors_name_the_origin_and_block() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let cases: Vec<(String, &str)> = vec![
        ("".to_string(), "has no `PUBLIC KEY` or `CERTIFICATE` blocks"),
        (
            "just some text\n".to_string(),
            "has no `PUBLIC KEY` or `CERTIFICATE` blocks",
        ),
        (
            format!("{}{}", key.public_key_pem(), key.to_pkcs8_pem()),
            "block 2 (`PRIVATE KEY`): only `PUBLIC KEY` and `CERTIFICATE` blocks belong in a trust bundle; never",
        ),
        (
            format!("{}{}", key.public_key_pem(), pem::encode("PUBLIC KEY", b"junk")),
            "block 2 (`PUBLIC KEY`)",
        ),
        (
            pem::encode("CERTIFICATE", b"junk"),
            "block 1 (`CERTIFICATE`): not an X.509 certificate",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n".to_string(),
            "not valid base64",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n".to_string(),
            "has no `-----END PUBLIC KEY-----` line",
        ),
    ];
    for (text, needle) in cases {
        let err = TrustBundle::parse(&text).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("trust bundle inline PEM"), "{message}");
        assert!(message.contains(needle), "{message}\nexpected: {needle}");
    }

    // P-384 keys verify certificates but do not sign archives.
    let p384 = p384::SecretKey::random(&mut rand_core::OsRng);
    let der = p384.public_key().to_public_key_der().unwrap();
    let err = TrustBundle::parse(&pem::encode("PUBLIC KEY", der.as_bytes())).unwrap_err();
    assert!(
        matches!(&err, TrustError::UnsupportedKey { algorithm, .. } if algorithm.contains("P-384")),
        "{err}"
    );
}

#[test]
fn trust_bundle_load_takes_inline_pem_or_a_path() {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let pem = format!("# signer keys\n{}", key.public_key_pem());
    // Inline: the value itself, recognised by its BEGIN line.
    let inline = TrustBundle::load(&key.public_key_pem()).unwrap();
    assert_eq!(inline.key_fingerprints(), vec![key.fingerprint()]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.pem");
    std::fs::write(&path, &pem).unwrap();
    let loaded = TrustBundle::load(path.to_str().unwrap()).unwrap();
    assert_eq!(loaded.key_fingerprints(), vec![key.fingerprint()]);

    let absent = dir.path().join("absent.pem");
    let err = TrustBundle::load(absent.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, TrustError::Read { .. }), "{err}");
    assert!(err.to_string().contains("absent.pem"), "{err}");

    std::fs::write(&path, "nothing here").unwrap();
    let err = TrustBundle::load(path.to_str().unwrap()).unwrap_err();
    assert!(err.to_string().contains(&format!("`{}`", path.display())), "{err}");

    // The same key twice is one key.
    let twice = TrustBundle::parse(&format!("{pem}{pem}")).unwrap();
    assert_eq!(twice.key_fingerprints().len(), 1);
}

#[test]
fn certificate_chain_input_is_checked_before_any_parsing() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
    let signature = sign_b64(&key, ARCHIVE);
    let trust = trust_of(&[&key]);
    let now = SystemTime::now();
    let junk_cert = pem::encode("CERTIFICATE", b"junk");
    let too_many = junk_cert.repeat(MAX_CHAIN_CERTS + 1);
    let err = verify(ARCHIVE, &signature, Some(&too_many), &trust, now).unwrap_err();
    assert_eq!(
        err,
        VerifyError::ChainTooLong {
            certs: MAX_CHAIN_CERTS + 1,
            max: MAX_CHAIN_CERTS,
            limited_by: None
        }
    );
    let err = verify(ARCHIVE, &signature, Some(&key.public_key_pem()), &trust, now).unwrap_err();
    assert_eq!(err.code(), "malformed", "{err}");
    assert!(err.to_string().contains("only `CERTIFICATE` blocks"), "{err}");
    let err = verify(ARCHIVE, &signature, Some(""), &trust, now).unwrap_err();
    assert_eq!(err.code(), "malformed", "{err}");
    let huge = " ".repeat(MAX_CHAIN_TEXT_BYTES + 1);
    let err = verify(ARCHIVE, &signature, Some(&huge), &trust, now).unwrap_err();
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    // A key-only trust bundle has no roots for certificates.
    let err = verify(ARCHIVE, &signature, Some(&junk_cert), &trust, now).unwrap_err();
    assert_eq!(err, VerifyError::NoTrustedRoots);
}

#[test]
fn error_codes_are_stable() {
    let d = Digest::of(b"");
    let t = SystemTime::UNIX_EPOCH;
    let s = String::new;
    let table = [
        (VerifyError::NoTrustedKeys, "no_trusted_keys"),
        (VerifyError::NoTrustedRoots, "no_trusted_roots"),
        (
            VerifyError::UnknownSigner {
                trusted_keys: 1,
                checked: 1,
            },
            "unknown_signer",
        ),
        (VerifyError::BadSignature { signer: s() }, "bad_signature"),
        (
            VerifyError::Expired {
                subject: s(),
                not_after: t,
                now: t,
            },
            "expired",
        ),
        (
            VerifyError::NotYetValid {
                subject: s(),
                not_before: t,
                now: t,
            },
            "not_yet_valid",
        ),
        (
            VerifyError::WrongUsage {
                subject: s(),
                missing: MissingUsage::CodeSigning,
            },
            "wrong_usage",
        ),
        (
            VerifyError::UntrustedRoot {
                subject: s(),
                issuer: s(),
                problem: ChainProblem::IssuerNotFound,
            },
            "untrusted_root",
        ),
        (
            VerifyError::ChainTooLong {
                certs: 5,
                max: 4,
                limited_by: None,
            },
            "chain_too_long",
        ),
        (VerifyError::Malformed { what: s(), reason: s() }, "malformed"),
        (VerifyError::HashMismatch { expected: d, actual: d }, "hash_mismatch"),
        (
            VerifyError::UnsupportedAlgorithm {
                what: s(),
                algorithm: s(),
                supported: "",
            },
            "unsupported_algorithm",
        ),
        (
            VerifyError::UnsupportedExtension {
                subject: s(),
                extension: s(),
            },
            "unsupported_extension",
        ),
    ];
    for (error, code) in table {
        assert_eq!(error.code(), code);
        // Every message starts with the reason in words.
        let words = code.replace('_', " ");
        assert!(error.to_string().starts_with(&words), "{code}: {error}");
    }
}

#[test]
fn pem_parse_and_encode_round_trip() {
    let der: Vec<u8> = (0..=255u8).collect();
    let text = format!("subject=CN = x\n{}trailing\n", pem::encode("CERTIFICATE", &der));
    let blocks = pem::parse(&text).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].label, "CERTIFICATE");
    assert_eq!(blocks[0].der, der);
    assert!(text.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    let headers = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(pem::parse(headers), Err(PemError::Headers { index: 1, .. })));
    let mismatched = "-----BEGIN A-----\nAAAA\n-----END B-----\n";
    assert!(matches!(pem::parse(mismatched), Err(PemError::MismatchedEnd { .. })));
}
