//! The keys grants are signed and checked with: Ed25519 only (`EdDSA`),
//! identified by their RFC 7638 thumbprint (`kid`) so that several can be
//! trusted at once while keys rotate.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::claims::Claims;
use crate::error::{ErrorCode, Failure};

/// How far a grant's `exp` may lie ahead: grants are per request, so a
/// longer one is a token someone kept, refused even when its signature is
/// good (a leaked grant is a bearer token for at most this long).
pub const MAX_GRANT_TTL_SECS: u64 = 300;
/// Clock difference tolerated between the signer and this runner.
pub const GRANT_CLOCK_SKEW_SECS: u64 = 5;

/// The public keys a runner accepts grants from (`RUNNER_GRANT_KEYS`),
/// by `kid`. Each is kept as a parsed point: jsonwebtoken's EdDSA check
/// decodes and decompresses the key again for every token, about a fifth
/// of a verification, which runs once per call of a runner behind a
/// gateway.
pub struct GrantKeys {
    keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
}

impl std::fmt::Debug for GrantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kids()).finish()
    }
}

impl GrantKeys {
    /// Every key of the JWKS documents `texts` (`(name, text)`, the name
    /// used in errors). A key without `kid` is known by its thumbprint.
    ///
    /// # Errors
    /// A document that is not a JWKS, a key that is not Ed25519, a `kid`
    /// given twice, or no key at all; each naming the document and key.
    pub fn from_jwks(texts: &[(String, String)]) -> anyhow::Result<GrantKeys> {
        let mut keys: Vec<(String, ed25519_dalek::VerifyingKey)> = Vec::new();
        for (name, text) in texts {
            let set: JwkSet = serde_json::from_str(text).with_context(|| format!("{name}: not a JWKS document"))?;
            for (index, jwk) in set.keys.iter().enumerate() {
                let at = || format!("{name}: keys[{index}]");
                let Some(public) = ed25519_public(jwk) else {
                    bail!("{}: grants are signed with Ed25519 (kty OKP, crv Ed25519) only", at());
                };
                let kid = match &jwk.common.key_id {
                    Some(kid) => kid.clone(),
                    None => key_id(jwk).with_context(at)?,
                };
                if keys.iter().any(|(known, _)| *known == kid) {
                    bail!("{}: kid `{kid}` is given twice", at());
                }
                keys.push((kid, verifying_key(public).with_context(at)?));
            }
        }
        if keys.is_empty() {
            bail!("no keys: give at least one Ed25519 public key (`ext-runner grant keygen` writes one)");
        }
        Ok(GrantKeys { keys })
    }

    /// The public half of a key pair made now whose private half is
    /// dropped: no grant verifies (see [`super::GrantSettings`]).
    pub fn process_made() -> GrantKeys {
        let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::Ed25519).to_pkcs8_pem();
        let jwks = GrantSigner::from_pem(pem.as_bytes())
            .and_then(|signer| signer.jwks())
            .expect("a freshly made Ed25519 key has a JWKS");
        GrantKeys::from_jwks(&[("process-made key".to_string(), jwks)]).expect("a freshly made key's JWKS parses")
    }

    /// The key ids, in file order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(kid, _)| kid.as_str())
    }

    /// The claims of `token` (a compact JWS) when one of these keys signed
    /// it and, at `now` (seconds since the epoch), it has not expired and
    /// does not expire further ahead than [`MAX_GRANT_TTL_SECS`]; the
    /// signature is checked strictly (no small-order keys, no malleable
    /// signatures).
    ///
    /// # Errors
    /// [`ErrorCode::GrantInvalid`] saying which of those it is not.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Failure> {
        let invalid = |why: String| Failure::new(ErrorCode::GrantInvalid, format!("the execution grant {why}"));
        let not_jws = |why: &dyn std::fmt::Display| invalid(format!("is not a JWS: {why}"));
        let (signed, signature) = token.rsplit_once('.').ok_or_else(|| not_jws(&"no signature part"))?;
        let (_, payload) = signed.split_once('.').ok_or_else(|| not_jws(&"no payload part"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| not_jws(&e))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid(format!("is signed with {:?}; grants are EdDSA", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("has no `kid` header".into()))?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| *known == kid)
            .ok_or_else(|| invalid(format!("is signed by an unknown key `{kid}`")))?;
        let signature = BASE64URL
            .decode(signature)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
            .ok_or_else(|| not_jws(&"the signature is not 64 base64url-encoded bytes"))?;
        key.verify_strict(signed.as_bytes(), &signature)
            .map_err(|_| invalid("has a bad signature".into()))?;
        let payload = BASE64URL.decode(payload).map_err(|e| not_jws(&e))?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|e| invalid(format!("is invalid: {e}")))?;
        if claims.exp.saturating_add(GRANT_CLOCK_SKEW_SECS) < now {
            return Err(invalid("has expired".into()));
        }
        if claims.exp > now + MAX_GRANT_TTL_SECS + GRANT_CLOCK_SKEW_SECS {
            return Err(invalid(format!(
                "expires more than {MAX_GRANT_TTL_SECS} s ahead; grants are per request"
            )));
        }
        Ok(claims)
    }
}

/// An Ed25519 private key that signs grants (`grant sign`, the gateway).
pub struct GrantSigner {
    kid: String,
    /// For the JWKS (jsonwebtoken's JWK from it).
    key: EncodingKey,
    /// For signing: jsonwebtoken's EdDSA signer parses the PKCS#8 document
    /// and derives the public key again for every signature (a second
    /// scalar multiplication; bench/gateway found Ed25519 at about 15 % of
    /// the gateway's CPU), so signatures are made with this key, parsed
    /// once.
    signing: ed25519_dalek::SigningKey,
    /// The JWS header, base64url-encoded: the same for every grant.
    header_b64: String,
}

impl GrantSigner {
    /// The key in `path` (PKCS#8 PEM, as `grant keygen` writes it).
    ///
    /// # Errors
    /// The file cannot be read or holds no Ed25519 private key; the file named.
    pub fn load(path: &Path) -> anyhow::Result<GrantSigner> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        GrantSigner::from_pem(&pem)
            .with_context(|| format!("{}: not an Ed25519 private key (PKCS#8 PEM)", path.display()))
    }

    /// The key in PEM text.
    ///
    /// # Errors
    /// The text holds no Ed25519 PKCS#8 private key.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<GrantSigner> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let text = std::str::from_utf8(pem).context("the PEM text is not UTF-8")?;
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = EncodingKey::from_ed_pem(pem)?;
        let kid = key_id(&Jwk::from_encoding_key(&key, Algorithm::EdDSA)?)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let header_b64 = BASE64URL.encode(serde_json::to_vec(&header)?);
        Ok(GrantSigner {
            kid,
            key,
            signing,
            header_b64,
        })
    }

    /// The public half as a JWKS document (what `RUNNER_GRANT_KEYS` reads).
    ///
    /// # Errors
    /// Never for a key [`GrantSigner::from_pem`] accepted.
    pub fn jwks(&self) -> anyhow::Result<String> {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::EdDSA)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(serde_json::to_string_pretty(&JwkSet { keys: vec![jwk] })?)
    }

    /// This key's id (its thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims` (a [`Claims`], or any JSON a test needs
    /// signed).
    ///
    /// # Errors
    /// `claims` does not serialize.
    pub fn sign(&self, claims: &impl serde::Serialize) -> anyhow::Result<String> {
        use ed25519_dalek::Signer as _;
        let mut token = format!("{}.{}", self.header_b64, BASE64URL.encode(serde_json::to_vec(claims)?));
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        BASE64URL.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }
}

/// The `x` (base64url public key) of an Ed25519 JWK.
fn ed25519_public(jwk: &Jwk) -> Option<&str> {
    let alg_ok = jwk
        .common
        .key_algorithm
        .is_none_or(|alg| alg == jsonwebtoken::jwk::KeyAlgorithm::EdDSA);
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 && alg_ok => Some(&p.x),
        _ => None,
    }
}

fn verifying_key(x: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = BASE64URL
        .decode(x)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("`x` is not 32 base64url-encoded bytes")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).context("`x` is not an Ed25519 public key")
}

/// RFC 7638 SHA-256 thumbprint.
fn key_id(jwk: &Jwk) -> anyhow::Result<String> {
    Ok(jwk.thumbprint(ThumbprintHash::SHA256)?)
}
